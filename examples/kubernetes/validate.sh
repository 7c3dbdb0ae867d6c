#!/usr/bin/env bash
# Schema check of the manifests, offline: kubernetes-validate (PyPI) bundles
# the Kubernetes JSON schemas. --strict rejects unknown fields (a typo such as
# `completionmode` would otherwise pass). Then the checks a schema cannot
# make: the Job is Indexed, its completions match SHARDS, the shard comes from
# JOB_COMPLETION_INDEX, and every pod mounts the claim that pvc.yaml defines.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${K8S_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/diversity-gpu/k8s-validate}"
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.*"
fi
"$venv/bin/kubernetes-validate" --strict --kubernetes-version "${K8S_VERSION:-1.33.0}" \
  "$here/pvc.yaml" "$here/shards-job.yaml" "$here/merge-job.yaml"
"$venv/bin/python" - "$here" <<'PY'
import sys, yaml, pathlib
d = pathlib.Path(sys.argv[1])
load = lambda n: yaml.safe_load((d / n).read_text())
pvc, shards, merge = load("pvc.yaml"), load("shards-job.yaml"), load("merge-job.yaml")
claim = pvc["metadata"]["name"]
assert "ReadWriteMany" in pvc["spec"]["accessModes"], "shard pods on several nodes need ReadWriteMany"
spec = shards["spec"]
assert spec["completionMode"] == "Indexed", "the shard Job must be Indexed"
c = spec["template"]["spec"]["containers"][0]
env = {e["name"]: e.get("value") for e in c.get("env", [])}
assert env.get("SHARDS") == str(spec["completions"]), f"SHARDS={env.get('SHARDS')} but completions={spec['completions']}"
cmd = " ".join(c["command"] + c["args"])
assert '--shard "$JOB_COMPLETION_INDEX/$SHARDS"' in cmd and "shards/$JOB_COMPLETION_INDEX" in cmd, cmd
m = " ".join(merge["spec"]["template"]["spec"]["containers"][0]["args"])
assert "merge" in m and "/work/shards/*" in m, m
for job in (shards, merge):
    vols = job["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("persistentVolumeClaim", {}).get("claimName") == claim for v in vols), job["metadata"]["name"]
print("manifests: consistent (Indexed Job, shard from JOB_COMPLETION_INDEX, shared claim", claim + ")")
PY
