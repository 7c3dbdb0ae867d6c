"""The peer benchmark's table, from the rounds that scripts/peers-bench.sh ran.

Usage: python table.py RESULTS.jsonl
Each line: {"corpus", "round", "side": "tool"|"peer", "phases": {...},
"wall": s}. Prints, per corpus, per phase and whole run: each side's median
over the rounds, every round's ratio tool / peer (below 1: the tool is
faster) and the median of those ratios.
"""

import json
import statistics
import sys

PHASES = ["load", "matrix", "similar", "walks", "whole", "process wall"]


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    for corpus in dict.fromkeys(r["corpus"] for r in rows):
        runs = {"tool": {}, "peer": {}}
        for r in rows:
            if r["corpus"] == corpus:
                runs[r["side"]][r["round"]] = dict(r["phases"], **{"process wall": r["wall"]})
        rounds = sorted(set(runs["tool"]) & set(runs["peer"]))
        print(f"\n{corpus} ({len(rounds)} rounds)")
        print(f"| phase | this tool (median) | peer (median) | tool / peer per round | median ratio |")
        print("| --- | --- | --- | --- | --- |")
        for p in PHASES:
            tool = [runs["tool"][i][p] for i in rounds]
            peer = [runs["peer"][i][p] for i in rounds]
            ratios = [a / b for a, b in zip(tool, peer)]
            per = ", ".join(f"{x:.2f}" for x in ratios)
            print(
                f"| {p} | {statistics.median(tool):.3f} s | {statistics.median(peer):.3f} s "
                f"| {per} | {statistics.median(ratios):.2f} |"
            )
        jit = [runs["peer"][i]["jit"] for i in rounds]
        print(f"(peer's numba compile or cache load, outside its phases: median {statistics.median(jit):.2f} s)")


if __name__ == "__main__":
    main()
