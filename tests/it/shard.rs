//! End-to-end tests of `precompute --shard` and `merge`.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

/// `merge --out out shards…`, whatever the outcome.
fn merge(out: &Path, shards: &[&Path]) -> Output {
    let mut args = vec!["merge", "--out", out.to_str().unwrap()];
    args.extend(shards.iter().map(|s| s.to_str().unwrap()));
    run(&args)
}

/// The export of a cache, as bytes.
fn export(cache: &Path) -> Vec<u8> {
    let o = ok(&["export", "--cache", cache.to_str().unwrap()]);
    assert!(!o.stdout.is_empty());
    o.stdout
}

/// Precomputes shards `I/n` for each `I` in `which` into `dir/sI`.
fn shards(dir: &Path, n: usize, which: &[usize], extra: &[&str]) -> Vec<PathBuf> {
    which
        .iter()
        .map(|i| {
            let out = dir.join(format!("s{i}of{n}"));
            let spec = format!("{i}/{n}");
            precompute(&out, &[&["--shard", spec.as_str()][..], extra].concat());
            out
        })
        .collect()
}

/// Copies every file of the cache `from` (not its lock), generation
/// folders included, into a new `to`.
fn copy_cache(from: &Path, to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if entry.file_type().unwrap().is_dir() {
            copy_cache(&from.join(&name), &to.join(&name));
        } else if name != "lock" {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

/// Asserts a failed merge whose message contains every one of `needles`.
fn refused(o: &Output, needles: &[&str]) {
    assert!(!o.status.success(), "merge should have been refused");
    let err = stderr(o);
    for n in needles {
        assert!(err.contains(n), "message lacks {n:?}: {err}");
    }
}

#[test]
fn merged_shards_are_the_unsharded_cache_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    precompute(&whole, &[]);
    let files = ["similar.bin", "different.bin", "vectors.bin"];
    // Three shards with their own checkpoint sizes, named out of order.
    let s = shards(dir.path(), 3, &[0, 1, 2], &["--chunk", "50"]);
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(s[1].join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        m["shard"],
        serde_json::json!({"index": 1, "count": 3, "start": 146, "end": 293})
    );
    // The shard's orderings hold only its rows.
    assert_eq!(
        std::fs::metadata(cache_file(&s[1], "similar.bin")).unwrap().len(),
        147 * 439 * 2
    );
    let merged = dir.path().join("merged");
    let o = merge(&merged, &[&s[2], &s[0], &s[1]]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("merged 3 shards"), "{}", stderr(&o));
    assert_same_files(&whole, &merged, &files);
    assert_eq!(export(&whole), export(&merged));
    ok(&["verify", "--cache", merged.to_str().unwrap(), "--sample", "5"]);
    // The merged cache is the whole cache: a whole run finds it up to date.
    assert!(stderr(&precompute(&merged, &[])).contains("up to date"));

    // With --top-k, one shard (1/1), and more shards than a tiny corpus has
    // poems (empty shards), the same holds.
    let top = dir.path().join("top");
    precompute(&top, &["--top-k", "17"]);
    let t = shards(&dir.path().join("k"), 4, &[0, 1, 2, 3], &["--top-k", "17"]);
    let tm = dir.path().join("top-merged");
    assert!(merge(&tm, &t.iter().map(|p| p.as_path()).collect::<Vec<_>>())
        .status
        .success());
    assert_same_files(&top, &tm, &files);
    let one = shards(&dir.path().join("one"), 1, &[0], &["--top-k", "17"]);
    let om = dir.path().join("one-merged");
    assert!(merge(&om, &[&one[0]]).status.success());
    assert_same_files(&top, &om, &files);
}

#[test]
fn more_shards_than_poems_still_merge_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    synthetic(&corpus, 5, 8, 11);
    let pre = |out: &Path, shard: Option<String>| {
        let mut args = vec![
            "precompute",
            "--poems",
            corpus.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(["--backend", "cpu"]);
        if let Some(s) = &shard {
            args.extend(["--shard", s.as_str()]);
        }
        ok(&args);
    };
    let whole = dir.path().join("whole");
    pre(&whole, None);
    let parts: Vec<PathBuf> = (0..8).map(|i| dir.path().join(format!("s{i}"))).collect();
    for (i, p) in parts.iter().enumerate() {
        pre(p, Some(format!("{i}/8")));
    }
    let merged = dir.path().join("merged");
    let o = merge(&merged, &parts.iter().map(|p| p.as_path()).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_files(&whole, &merged, &["similar.bin", "different.bin"]);
}

#[test]
fn shards_from_the_gpu_and_the_cpu_merge_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    precompute(&whole, &["--top-k", "60"]);
    // GPU shards at both ends (one starting mid-corpus), a CPU shard between.
    let gpu = |i: usize| -> Option<PathBuf> {
        let out = dir.path().join(format!("gpu{i}"));
        let spec = format!("{i}/3");
        let o = try_precompute(
            &out,
            &["--backend", "gpu", "--shard", &spec, "--top-k", "60", "--chunk", "64"],
        );
        if !o.status.success() && stderr(&o).contains("no suitable GPU adapter") {
            skip("a GPU adapter");
            return None;
        }
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(stderr(&o).contains("backend: gpu"), "{}", stderr(&o));
        Some(out)
    };
    let (Some(first), Some(last)) = (gpu(0), gpu(2)) else {
        return;
    };
    let cpu = dir.path().join("cpu1");
    precompute(&cpu, &["--backend", "cpu", "--shard", "1/3", "--top-k", "60"]);
    let merged = dir.path().join("merged");
    let o = merge(&merged, &[&last, &cpu, &first]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_files(&whole, &merged, &["similar.bin", "different.bin", "vectors.bin"]);
    assert_eq!(export(&whole), export(&merged));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(merged.join("manifest.json")).unwrap()).unwrap();
    let backend = m["backend"].as_str().unwrap();
    assert!(
        backend.contains("0/3 gpu") && backend.contains("1/3 cpu") && backend.contains("2/3 gpu"),
        "{backend}"
    );
}

#[test]
fn an_interrupted_shard_resumes_to_its_rows_of_the_whole_cache() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    precompute(&whole, &[]);
    let part = dir.path().join("part");
    let args = ["--shard", "1/3", "--chunk", "20"];
    let o = try_precompute_stopped(&part, &args, Some(2));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(!part.join("manifest.json").exists());
    refused(
        &merge(&dir.path().join("m"), &[&part]),
        &["part", "unfinished precompute"],
    );
    // Shard 1/3 holds starts 146..293: 147 rows, 8 chunks of 20.
    let o = precompute(&part, &args);
    assert!(
        stderr(&o).contains("resuming: 2 of 8 chunks already done"),
        "{}",
        stderr(&o)
    );
    let row = 439 * 2;
    for f in ["similar.bin", "different.bin"] {
        let w = std::fs::read(cache_file(&whole, f)).unwrap();
        assert!(
            std::fs::read(cache_file(&part, f)).unwrap() == w[146 * row..293 * row],
            "{f} of the resumed shard differs from the whole cache's rows"
        );
    }
    // A shard directory reused for another shard is rebuilt, saying why.
    let o = precompute(&part, &["--shard", "2/3"]);
    assert!(
        stderr(&o).contains("shard 1/3 (starts 146..293) → shard 2/3 (starts 293..440)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn readers_refuse_a_shard_and_say_to_merge() {
    let dir = tempfile::tempdir().unwrap();
    let s = shards(dir.path(), 2, &[0], &["--top-k", "5"]);
    let c = s[0].to_str().unwrap();
    let site = dir.path().join("site");
    let p = corpus("poems.json");
    for args in [
        vec!["export", "--cache", c],
        vec!["verify", "--cache", c],
        vec![
            "render",
            "--cache",
            c,
            "--poems",
            p.to_str().unwrap(),
            "--out",
            site.to_str().unwrap(),
        ],
    ] {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(
            err.contains("holds only shard 0/2 (starts 0..220) of 440 poems") && err.contains("diversity-gpu merge"),
            "{args:?}: {err}"
        );
    }
    assert!(!site.exists(), "render made a site from a shard");
}

#[test]
fn merge_refuses_bad_shard_sets_naming_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("out");
    let four = shards(d, 4, &[0, 1, 2, 3], &["--top-k", "9"]);
    let [a, b, c, e] = [&four[0], &four[1], &four[2], &four[3]].map(|p| p.as_path());

    // Missing: the message names the absent shard.
    refused(&merge(&out, &[a, b, e]), &["shard 2/4 (starts 220..330) missing"]);
    refused(&merge(&out, &[b, c, e]), &["shard 0/4 (starts 0..110) missing"]);
    // Duplicated: the same directory twice, or two copies of one shard.
    refused(&merge(&out, &[a, b, c, e, b]), &["is named twice"]);
    let copy = d.join("copy");
    copy_cache(c, &copy);
    refused(&merge(&out, &[a, b, c, &copy, e]), &["are both shard 2/4", "copy"]);
    // Overlapping: shards of two different splits.
    let half = shards(d, 2, &[1], &["--top-k", "9"]);
    refused(
        &merge(&out, &[a, b, c, &half[0]]),
        &["overlaps", "s1of2", "shard 1/2 (starts 220..440)"],
    );
    assert!(!out.join("manifest.json").exists(), "a refused merge left a cache");

    // Mismatched: other parameters, corpus, model, version.
    let top = shards(&d.join("top"), 4, &[3], &["--top-k", "8"]);
    refused(
        &merge(&out, &[a, b, c, &top[0]]),
        &[
            "does not match",
            "top/s3of4",
            "parameters top-k Some(9)",
            "top-k Some(8)",
        ],
    );
    let excl = d.join("exclude.txt");
    std::fs::write(&excl, "love/0001\n").unwrap();
    let other = shards(
        &d.join("other"),
        4,
        &[3],
        &["--top-k", "9", "--exclude", excl.to_str().unwrap()],
    );
    refused(&merge(&out, &[a, b, c, &other[0]]), &["other/s3of4", "does not match"]);
    let mut emb: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus("embeddings.json")).unwrap()).unwrap();
    emb["metadata"]["embedding_model"] = "another-model".into();
    let emb_path = d.join("embeddings.json");
    std::fs::write(&emb_path, serde_json::to_vec(&emb).unwrap()).unwrap();
    let model = d.join("model");
    let poems = corpus("poems.json");
    ok(&[
        "precompute",
        "--poems",
        poems.to_str().unwrap(),
        "--embeddings",
        emb_path.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--backend",
        "cpu",
        "--top-k",
        "9",
        "--shard",
        "3/4",
    ]);
    refused(&merge(&out, &[a, b, c, &model]), &["model", "another-model"]);
    let old = d.join("old");
    copy_cache(e, &old);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(e.join("manifest.json")).unwrap()).unwrap();
    m["algorithm_version"] = 0.into();
    std::fs::write(old.join("manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    refused(&merge(&out, &[a, b, c, &old]), &["shard", "old", "another version"]);

    // A whole cache is not a shard; the output may not be a shard; a damaged shard is refused.
    let whole = d.join("whole");
    precompute(&whole, &["--top-k", "9"]);
    refused(&merge(&out, &[&whole]), &["whole", "is a whole cache, not a shard"]);
    refused(&merge(a, &[a, b, c, e]), &["is the shard", "s0of4"]);
    let damaged = d.join("damaged");
    copy_cache(e, &damaged);
    let v = cache_file(&damaged, "similar.bin");
    let bytes = std::fs::read(&v).unwrap();
    std::fs::write(&v, &bytes[..bytes.len() - 2]).unwrap();
    refused(
        &merge(&out, &[a, b, c, &damaged]),
        &["damaged", "damaged/gen-1/similar.bin"],
    );
    let mut vec = std::fs::read(cache_file(e, "vectors.bin")).unwrap();
    vec[0] ^= 1;
    std::fs::copy(cache_file(e, "similar.bin"), &v).unwrap();
    std::fs::write(cache_file(&damaged, "vectors.bin"), &vec).unwrap();
    refused(
        &merge(&out, &[&damaged, a, b, c]),
        &["damaged", "vectors.bin does not match"],
    );

    // Nothing refused above wrote a cache; the good set still merges.
    assert!(!out.join("manifest.json").exists());
    let o = merge(&out, &[a, b, c, e]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bench_scale_runs_the_sharded_row_and_checks_its_merge_against_the_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().to_str().unwrap();
    // The smallest sizes whose on-the-fly run fits under the matrix's need.
    let sizes = ["--sizes", "800,1000,1200", "--top-k", "5"];
    let o = bench(&[&["scale", "--shards", "2", "--dir", scratch][..], &sizes].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Σ 2 shards s") && out.contains("2 shards summed ∝ n^"),
        "{out}"
    );
    for n in ["800", "1000", "1200"] {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("no line for n = {n}:\n{out}"));
        // Matrix, rows and shard peak RSS; "yes": all three wrote the same bytes.
        assert!(line.matches("MiB").count() == 3 && line.ends_with("yes"), "{line}");
    }
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the shards' scratch files are removed"
    );
    let o = bench(&[&["scale", "--shards", "801"][..], &sizes].concat());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--shards 801 is more shards than the 800 poems"),
        "{}",
        stderr(&o)
    );
}

/// merge copies each shard's bytes from the check it made, never from the
/// files opened again: a shard recomputed with other parameters during the
/// merge does not reach the merged cache, and a shard file changed in place
/// after its check is caught before anything is sealed.
#[test]
fn merge_seals_the_bytes_it_verified_even_when_a_shard_is_rewritten_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let whole = d.join("whole");
    precompute(&whole, &["--top-k", "7"]);
    let s = shards(d, 2, &[0, 1], &["--top-k", "7"]);
    let merge_cmd = |out: &Path| {
        let mut cmd = bin();
        cmd.args(["merge", "--out", out.to_str().unwrap()]).args([&s[0], &s[1]]);
        cmd
    };
    let merged = d.join("merged");
    let o = run_paused(merge_cmd(&merged), "merge:verified", || {
        precompute(&s[1], &["--shard", "1/2", "--top-k", "3"]);
    });
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_files(&whole, &merged, &["similar.bin", "different.bin", "vectors.bin"]);
    assert_eq!(export(&whole), export(&merged));
    ok(&["verify", "--cache", merged.to_str().unwrap(), "--sample", "5"]);

    precompute(&s[1], &["--shard", "1/2", "--top-k", "7"]);
    let again = d.join("again");
    let o = run_paused(merge_cmd(&again), "merge:verified", || {
        use std::io::{Seek, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(cache_file(&s[1], "similar.bin"))
            .unwrap();
        f.seek(std::io::SeekFrom::Start(3)).unwrap();
        f.write_all(&[0xff]).unwrap();
    });
    refused(&o, &["changed after it was checked", "s1of2"]);
    assert!(
        !again.join("manifest.json").exists(),
        "a merge of changed bytes was sealed"
    );
}
