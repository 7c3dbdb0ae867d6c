//! End-to-end tests of precompute, export, verify and their errors.

use crate::common::*;
use std::collections::HashSet;
use std::path::Path;

#[test]
fn precompute_export_and_verify_agree() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let o = precompute(&cache, &[]);
    let err = stderr(&o);
    assert!(
        err.contains("translate-me/0001") && err.contains("no embedding"),
        "{err}"
    );
    for phase in ["load", "normalise", "similarity", "walks", "write"] {
        assert!(err.contains(phase), "timing breakdown lacks {phase}: {err}");
    }
    let out = dir.path().join("export.jsonl");
    ok(&[
        "export",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 440);
    let keys: HashSet<&str> = lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    assert!(!keys.contains("translate-me/0001"));
    for l in &lines {
        for kind in ["similar", "different"] {
            let list: Vec<&str> = l[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let set: HashSet<&str> = list.iter().copied().collect();
            assert_eq!(list.len(), 439);
            assert_eq!(set.len(), 439, "{kind} of {} repeats a poem", l["key"]);
            assert!(!set.contains(l["key"].as_str().unwrap()));
        }
    }
    let v = ok(&["verify", "--cache", cache.to_str().unwrap(), "--sample", "6"]);
    assert!(stderr(&v).contains("6 sampled starts match"), "{}", stderr(&v));
    // A second run finds the cache up to date.
    assert!(stderr(&precompute(&cache, &[])).contains("up to date"));
}

#[test]
fn thread_counts_and_top_k_give_consistent_caches() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, k) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("k"));
    precompute(&a, &["--threads", "1"]);
    precompute(&b, &["--threads", "2", "--chunk", "7"]);
    precompute(&k, &["--top-k", "25"]);
    for f in ["similar.bin", "different.bin"] {
        let full = std::fs::read(cache_file(&a, f)).unwrap();
        assert_eq!(
            full,
            std::fs::read(cache_file(&b, f)).unwrap(),
            "{f} differs between thread counts"
        );
        // Top-k rows are prefixes of the full rows.
        let top = std::fs::read(cache_file(&k, f)).unwrap();
        assert_eq!(top.len(), 440 * 25 * 2);
        for r in 0..440 {
            assert_eq!(top[r * 50..(r + 1) * 50], full[r * 878..r * 878 + 50], "{f} row {r}");
        }
    }
}

fn manifest_without_timings(dir: &std::path::Path) -> serde_json::Value {
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    // The seal covers the timings, so it differs too.
    m.as_object_mut().unwrap().remove("timings");
    m.as_object_mut().unwrap().remove("manifest_hash");
    m
}

#[test]
fn an_interrupted_run_resumes_to_an_identical_cache() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole");
    precompute(&whole, &["--chunk", "50"]);
    let part = dir.path().join("part");
    let o = try_precompute_stopped(&part, &["--chunk", "50"], Some(3));
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        !part.join("manifest.json").exists(),
        "an unfinished cache must not look complete"
    );
    let refused = run(&["export", "--cache", part.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("unfinished precompute"),
        "{}",
        stderr(&refused)
    );
    let o = precompute(&part, &["--chunk", "50"]);
    assert!(
        stderr(&o).contains("resuming: 3 of 9 chunks already done"),
        "{}",
        stderr(&o)
    );
    assert_same_files(&whole, &part, &["similar.bin", "different.bin", "vectors.bin"]);
    let (mut a, mut b) = (manifest_without_timings(&whole), manifest_without_timings(&part));
    a.as_object_mut().unwrap().remove("inputs");
    b.as_object_mut().unwrap().remove("inputs");
    assert_eq!(a, b);
}

#[test]
fn a_killed_run_resumes_to_an_identical_cache() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    synthetic(&corpus, 2000, 32, 3);
    let args = |out: &Path| slow_precompute_args(&corpus, out);
    let killed = dir.path().join("killed");
    let mut child = bin().args(args(&killed)).spawn().unwrap();
    wait_for_chunks(&killed, 3, &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!killed.join("manifest.json").exists());
    let done_before = std::fs::read_to_string(cache_file(&killed, "progress.log"))
        .unwrap()
        .lines()
        .count();
    let o = bin().args(args(&killed)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    assert!(done_before < 250, "the kill came too late to test anything");
    let whole = dir.path().join("whole");
    let o = bin().args(args(&whole)).output().unwrap();
    assert!(o.status.success());
    assert_same_files(&whole, &killed, &["similar.bin", "different.bin"]);
}

#[test]
fn changed_inputs_make_the_cache_stale() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &[]);
    // Drop one poem, add another: render must refuse and say what changed.
    let mut poems: serde_json::Value = serde_json::from_slice(&std::fs::read(corpus("poems.json")).unwrap()).unwrap();
    let list = poems["poems"].as_array_mut().unwrap();
    list.remove(0);
    let mut extra = list[0].clone();
    extra["id"] = "9999".into();
    // A poem_index of its own: a shared one is refused.
    extra["poem_index"] = 9999.into();
    list.push(extra);
    let changed = dir.path().join("poems.json");
    std::fs::write(&changed, serde_json::to_vec(&poems).unwrap()).unwrap();
    let o = run(&[
        "render",
        "--cache",
        cache.to_str().unwrap(),
        "--poems",
        changed.to_str().unwrap(),
        "--out",
        dir.path().join("site").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("stale") && err.contains("1 poem added (literature/9999)") && err.contains("1 poem removed"),
        "{err}"
    );
    assert!(
        err.contains("diversity-gpu precompute --poems"),
        "no rebuild command: {err}"
    );
    // Precompute with different parameters rebuilds, saying why.
    let o = precompute(&cache, &["--top-k", "10"]);
    assert!(stderr(&o).contains("is stale (parameters top-k None"), "{}", stderr(&o));
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("cache");
    let out = out.to_str().unwrap();
    // precompute of `poems` into `out`, with extra arguments.
    let pre = |poems: &Path, extra: &[&str]| {
        let poems = poems.to_str().unwrap();
        run(&[&["precompute", "--poems", poems, "--out", out][..], extra].concat())
    };
    let o = pre(&d.join("missing.json"), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.json"), "{}", stderr(&o));

    let bad = d.join("bad.json");
    std::fs::write(&bad, "{\"poems\": [\n {\"id\": \"a\",}\n]}").unwrap();
    let o = pre(&bad, &[]);
    assert!(
        stderr(&o).contains("bad.json: malformed JSON at line 2"),
        "{}",
        stderr(&o)
    );

    let dup = d.join("dup.jsonl");
    std::fs::write(
        &dup,
        "{\"id\": \"x\", \"embedding\": [1]}\n{\"id\": \"x\", \"embedding\": [2]}\n",
    )
    .unwrap();
    let o = pre(&dup, &[]);
    assert!(stderr(&o).contains("duplicate key \"x\""), "{}", stderr(&o));

    // Embeddings matched by a poem_index two poems share: refused, not guessed.
    let shared = d.join("shared.json");
    std::fs::write(
        &shared,
        r#"{"poems": [{"poem_index": 7, "id": "a", "content": "one"}, {"poem_index": 7, "id": "b", "content": "two"}]}"#,
    )
    .unwrap();
    let vectors = d.join("vectors.json");
    std::fs::write(&vectors, r#"{"embeddings": [{"poem_index": 7, "embedding": [1, 0]}]}"#).unwrap();
    let o = pre(
        &shared,
        &["--embeddings", vectors.to_str().unwrap(), "--backend", "cpu"],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("shared.json: duplicate poem_index 7 (poems \"a\" and \"b\", entries 1 and 2)"),
        "{}",
        stderr(&o)
    );

    let strict = d.join("strict.jsonl");
    std::fs::write(
        &strict,
        "{\"id\": \"x\", \"embedding\": [1, 0]}\n{\"id\": \"y\", \"embedding\": [0, 0]}\n",
    )
    .unwrap();
    let o = pre(&strict, &["--strict"]);
    assert!(
        stderr(&o).contains("poem \"y\" has an unusable embedding (all-zero vector)"),
        "{}",
        stderr(&o)
    );
    let o = pre(&strict, &["--backend", "cpu"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("1 poem left out (all-zero vector): \"y\""),
        "{}",
        stderr(&o)
    );

    let excl = d.join("exclude.txt");
    std::fs::write(&excl, "# comment\nx\n").unwrap();
    let o = pre(&strict, &["--exclude", excl.to_str().unwrap()]);
    assert!(stderr(&o).contains("no usable embedding is left"), "{}", stderr(&o));
}

#[test]
fn centering_changes_the_orderings_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, centered) = (dir.path().join("plain"), dir.path().join("centered"));
    precompute(&plain, &["--top-k", "30"]);
    precompute(&centered, &["--top-k", "30", "--center"]);
    assert_ne!(
        std::fs::read(cache_file(&plain, "similar.bin")).unwrap(),
        std::fs::read(cache_file(&centered, "similar.bin")).unwrap()
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(centered.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["params"]["center"], true);
    let v = ok(&["verify", "--cache", centered.to_str().unwrap(), "--sample", "5"]);
    assert!(stderr(&v).contains("5 sampled starts match"), "{}", stderr(&v));
}

#[test]
fn centring_that_leaves_no_vector_is_refused_on_every_backend() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("one.jsonl");
    std::fs::write(&one, "{\"id\": \"a\", \"embedding\": [1, 2]}\n").unwrap();
    let same = dir.path().join("same.jsonl");
    let line = |id: &str| format!("{{\"id\": \"{id}\", \"embedding\": [1, 2, 3]}}\n");
    std::fs::write(&same, [line("a"), line("b"), line("c")].concat()).unwrap();
    for (poems, why) in [
        (&one, "the only usable vector is its own mean"),
        (&same, "all 3 usable vectors are identical"),
    ] {
        for backend in ["cpu", "gpu"] {
            let out = dir.path().join(format!("cache-{backend}"));
            let (p, c) = (poems.to_str().unwrap(), out.to_str().unwrap());
            let o = run(&["precompute", "--poems", p, "--out", c, "--center", "--backend", backend]);
            let err = stderr(&o);
            if backend == "gpu" && err.contains("no suitable GPU adapter") {
                skip("a GPU adapter");
                continue;
            }
            assert!(!o.status.success(), "{backend}: exit 0 with no vector:\n{err}");
            assert!(
                err.contains("no usable vector is left after --center") && err.contains(why),
                "{backend}: {err}"
            );
            assert!(err.contains("run without --center"), "{err}");
            assert!(!err.contains("panicked"), "{err}");
            assert!(!out.join("manifest.json").exists(), "{backend}: a cache was written");
        }
    }
}

#[test]
fn adapters_lists_what_wgpu_sees() {
    let o = ok(&["adapters"]);
    let out = String::from_utf8_lossy(&o.stdout);
    if out.contains("no GPU adapters found") {
        skip("a GPU adapter");
        return;
    }
    assert!(
        out.contains("max storage binding") && out.contains("subgroups"),
        "{out}"
    );
}

#[test]
fn the_gpu_backend_writes_the_cpu_backends_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (dir.path().join("cpu"), dir.path().join("gpu"));
    // `--backend gpu` accepts software adapters; skip (outside CI) only when there is none.
    let software_ok = diversity_gpu::gpu::GpuOptions {
        allow_software: true,
        ..Default::default()
    };
    if diversity_gpu::gpu::GpuContext::pick_adapter(&software_ok).is_none() {
        skip("a GPU adapter");
        return;
    }
    precompute(&cpu, &["--top-k", "60", "--chunk", "100"]);
    let o = try_precompute(&gpu, &["--backend", "gpu", "--top-k", "60", "--chunk", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("backend: gpu"), "{}", stderr(&o));
    assert_same_files(&cpu, &gpu, &["similar.bin", "different.bin", "vectors.bin"]);
}

#[test]
fn a_damaged_cache_is_refused_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "5"]);
    let path = cache_file(&cache, "different.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[6] = 0xff;
    bytes[7] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let o = run(&["export", "--cache", cache.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("different.bin does not match its blake3") && stderr(&o).contains("repair it with"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
    let o = run(&["export", "--cache", cache.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("different.bin has") && stderr(&o).contains("the cache is damaged"),
        "{}",
        stderr(&o)
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_at_a_checkpoint_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("c.jsonl");
    synthetic(&corpus, 2000, 32, 5);
    let out = dir.path().join("cache");
    let args = slow_precompute_args(&corpus, &out);
    let mut child = bin().args(&args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    wait_for_chunks(&out, 2, &mut child);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("run the same command again to resume"),
        "{err}"
    );
    assert!(!out.join("manifest.json").exists());
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming"), "{}", stderr(&o));
    ok(&["verify", "--cache", out.to_str().unwrap(), "--sample", "4"]);
}

#[test]
fn a_finished_cache_is_reused_whatever_the_checkpoint_size() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--chunk", "64"]);
    let o = precompute(&cache, &["--chunk", "100"]);
    assert!(stderr(&o).contains("up to date"), "{}", stderr(&o));
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &[]);
    let mut child = bin()
        .args(["export", "--cache", cache.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line's worth, then close the pipe, as `| head -c 16` does.
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("error"), "{}", stderr(&o));
}

#[test]
fn extreme_numbers_are_kept_dates_are_parsed_and_strict_stops_every_drop() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c.jsonl");
    std::fs::write(
        &c,
        "\u{feff}{\"id\": \"big\", \"date\": \"1/5/2021\", \"embedding\": [1e200, 2e200, 0]}\n\
         {\"id\": \"tiny\", \"date\": \"soon\", \"embedding\": [1e-200, 0, 3e-200]}\n\
         {\"id\": \"mid\", \"date\": \"2020-10-01\", \"embedding\": [0.5, 0.5, 0.5]}\n\
         {\"id\": \"same\", \"embedding\": [0.5, 0.5, 0.5]}\n",
    )
    .unwrap();
    let out = dir.path().join("cache");
    let pre = |extra: &[&str]| {
        let args = [
            &[
                "precompute",
                "--poems",
                c.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ][..],
            &["--backend", "cpu"],
            extra,
        ]
        .concat();
        run(&args)
    };
    let o = pre(&[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("(0 left out)"),
        "a finite non-zero vector was dropped: {err}"
    );
    assert!(
        err.contains("c.jsonl: poem \"big\": date \"1/5/2021\" is ambiguous; read as month/day (2021-01-05"),
        "{err}"
    );
    assert!(
        err.contains("c.jsonl: poem \"tiny\": date \"soon\" is not in a known form"),
        "{err}"
    );
    // Centred, "mean" equals the mean of the three: left out, with the true reason.
    std::fs::write(
        &c,
        "{\"id\": \"a\", \"embedding\": [3, 1]}\n{\"id\": \"b\", \"embedding\": [-1, 1]}\n{\"id\": \"mean\", \"embedding\": [1, 1]}\n",
    )
    .unwrap();
    let o = pre(&["--center"]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("poem \"mean\" left out: its vector equals the corpus mean"),
        "{err}"
    );
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["report"]["unusable"][0]["kind"], "equals_mean", "{m}");
    let o = pre(&["--center", "--strict"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("poem \"mean\" cannot be used (its vector equals the corpus mean")
            && stderr(&o).contains("--strict"),
        "{}",
        stderr(&o)
    );
}

/// Writes `body` to `name` in `dir` and returns its path as a string.
fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_owned()
}

#[test]
fn an_embeddings_file_of_another_corpus_is_named_as_such_even_with_exclusions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let other = write(
        d,
        "other.jsonl",
        "{\"id\": \"s1\", \"embedding\": [1, 0]}\n{\"id\": \"s2\", \"embedding\": [0, 1]}\n{\"id\": \"s3\", \"embedding\": [1, 1]}\n",
    );
    let exclude = write(d, "exclude.txt", "literature/0001\n");
    let poems = corpus("poems.json");
    let out = d.join("cache");
    for extra in [&["--exclude", exclude.as_str()][..], &["--strict"]] {
        let mut args = vec!["precompute", "--poems", poems.to_str().unwrap(), "--embeddings", &other];
        args.extend(["--out", out.to_str().unwrap()]);
        let o = run(&[&args[..], extra].concat());
        let err = stderr(&o);
        assert!(!o.status.success(), "{err}");
        assert!(
            err.contains("none of its 3 keys matches a poem") && err.contains("its first key is \"s1\""),
            "{extra:?}: {err}"
        );
        assert!(!err.contains("no usable embedding"), "{extra:?}: {err}");
    }
}

#[test]
fn a_half_matching_embeddings_file_is_summed_up_in_one_line_per_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(corpus("embeddings.json")).unwrap()).unwrap();
    let entries = file["embeddings"].as_array_mut().unwrap();
    let mut i = 0;
    entries.retain(|_| {
        i += 1;
        i % 2 == 0
    });
    let half = dir.path().join("half.json");
    std::fs::write(&half, serde_json::to_vec(&file).unwrap()).unwrap();
    let p = corpus("poems.json");
    let out = dir.path().join("cache");
    let o = ok(&[
        "precompute",
        "--poems",
        p.to_str().unwrap(),
        "--embeddings",
        half.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--top-k",
        "5",
        "--backend",
        "cpu",
    ]);
    let err = stderr(&o);
    let left_out: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("[WARN") && l.contains("left out"))
        .collect();
    assert_eq!(left_out.len(), 1, "one line for the 222 poems without a vector:\n{err}");
    assert!(
        left_out[0].contains("222 poems left out (no embedding): \"literature/0001\"")
            && left_out[0].ends_with("… and 217 more"),
        "{err}"
    );
}

#[test]
fn a_missing_file_names_the_os_error_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (p, e) = (corpus("poems.json"), corpus("embeddings.json"));
    let (p, e) = (p.to_str().unwrap(), e.to_str().unwrap());
    let missing = d.join("missing.json");
    let missing = missing.to_str().unwrap();
    let out = d.join("cache");
    let out = out.to_str().unwrap();
    for args in [
        vec!["precompute", "--poems", missing, "--out", out],
        vec!["precompute", "--poems", p, "--embeddings", missing, "--out", out],
        vec![
            "precompute",
            "--poems",
            p,
            "--embeddings",
            e,
            "--exclude",
            missing,
            "--out",
            out,
        ],
        vec![
            "precompute",
            "--poems",
            p,
            "--embeddings",
            e,
            "--themes",
            missing,
            "--out",
            out,
        ],
    ] {
        let err = stderr(&run(&args));
        assert_eq!(err.matches("(os error 2)").count(), 1, "{args:?}:\n{err}");
        assert!(err.contains("missing.json: No such file or directory"), "{err}");
    }
}

#[test]
fn a_poems_file_of_another_shape_is_told_the_shapes_that_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = d.join("cache");
    let pre = |poems: &str| stderr(&run(&["precompute", "--poems", poems, "--out", out.to_str().unwrap()]));
    let array = "[{\"id\": \"a\", \"text\": \"one\"}, {\"id\": \"b\", \"text\": \"two\"}]\n";
    let err = pre(&write(d, "array.json", array));
    assert!(
        err.contains("the top level is an array") && err.contains("wrap the list as {\"poems\": [...]}"),
        "{err}"
    );
    // The advice's other way: one object per line, not the array renamed.
    let err = pre(&write(d, "array.jsonl", array));
    assert!(
        err.contains("line 1 starts with '['") && err.contains("must be one object"),
        "{err}"
    );
    assert!(!err.contains("untagged"), "{err}");
    let err = pre(&write(
        d,
        "ids.jsonl",
        "{\"id\": \"a\"}\n{\"id\": {\"n\": 2}, \"text\": \"two\"}\n",
    ));
    assert!(
        err.contains(
            "poem #2 (0-based entry 1): its \"id\" is {\"n\":2} (an object); an id must be a string or a number"
        ),
        "{err}"
    );
    assert!(!err.contains("untagged"), "{err}");
}

#[test]
fn counts_agree_with_their_nouns() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let o = try_precompute_stopped(&cache, &["--chunk", "100"], Some(1));
    assert!(stderr(&o).contains("stopped after 1 chunk;"), "{}", stderr(&o));
    precompute(&cache, &["--chunk", "100"]);
    let o = ok(&["verify", "--cache", cache.to_str().unwrap(), "--sample", "1"]);
    let err = stderr(&o);
    assert!(err.contains("1 sampled start matches the CPU reference"), "{err}");
    // A cache with colours and no themes: no "all 0 themes".
    assert!(err.contains("and so do the colours of all 440 poems"), "{err}");
    assert!(!err.contains("0 themes"), "{err}");
    let o = precompute(&cache, &["--chunk", "100"]);
    assert!(
        stderr(&o).contains(&format!("the cache in {} is up to date (440 poems", cache.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_headless_machine_gets_no_wayland_noise() {
    let o = bin()
        .args(["adapters"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    assert!(o.status.success());
    // Mesa's device-selection layer made libwayland print this as `error:`.
    assert!(!stderr(&o).contains("XDG_RUNTIME_DIR"), "{}", stderr(&o));
}

#[test]
fn help_lists_build_first_and_groups_flags_under_headings() {
    let top = String::from_utf8(ok(&["--help"]).stdout).unwrap();
    let first = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .nth(1)
        .unwrap_or_default();
    assert!(first.trim_start().starts_with("build "), "{top}");
    let help = String::from_utf8(ok(&["build", "--help"]).stdout).unwrap();
    let headings: Vec<&str> = help
        .lines()
        .filter(|l| l.ends_with(':') && !l.starts_with(' '))
        .collect();
    assert_eq!(
        headings,
        [
            "Options:",
            "Input:",
            "Embedding:",
            "Embedding server:",
            "Output:",
            "Site:",
            "Performance:",
            "GPU:"
        ],
        "{help}"
    );
    // The GPU's internals come after the flags a poet needs.
    let at = |s: &str| help.find(s).unwrap_or_else(|| panic!("{s} missing:\n{help}"));
    assert!(
        at("--per-page") < at("--no-subgroups") && at("GPU:") < at("--no-subgroups"),
        "{help}"
    );
    assert!(
        help.contains("diversity-gpu embed"),
        "--embeddings names the embed command:\n{help}"
    );
}
