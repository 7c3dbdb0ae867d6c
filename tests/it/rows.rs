//! End-to-end tests of the memory limit: rows on the fly instead of the
//! n × n matrix, the refusal of a job that cannot fit, and `verify` without
//! the matrix.

use crate::common::*;
use diversity_gpu::cache::{integrity, Manifest};
use std::path::Path;

/// A corpus of `n` poems of 8 dimensions: at 3,000 its matrix is 18 MB, its
/// vectors 48 kB.
fn corpus(dir: &Path, n: usize) -> std::path::PathBuf {
    let c = dir.join("c.jsonl");
    synthetic(&c, n, 8, 9);
    c
}

fn precompute_args<'a>(corpus: &'a Path, out: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "precompute",
        "--poems",
        corpus.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--threads",
        "2",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn rows_on_the_fly_write_the_matrix_paths_cache() {
    let dir = tempfile::tempdir().unwrap();
    // 1,500 poems: the matrix is 4.5 MB; this process holds about 9.5 MB
    // besides, so 12 MB leaves a cache of a few hundred rows, and rows are
    // evicted and computed again.
    let c = corpus(dir.path(), 1500);
    for top_k in [&["--top-k", "40"][..], &[]] {
        let (whole, fly) = (dir.path().join("whole"), dir.path().join("fly"));
        let o = ok(&precompute_args(&c, &whole, &[top_k, &["--chunk", "16"]].concat()));
        assert!(!stderr(&o).contains("on the fly"), "{}", stderr(&o));
        let o = ok(&precompute_args(
            &c,
            &fly,
            &[top_k, &["--max-memory", "12MB", "--chunk", "16"]].concat(),
        ));
        let err = stderr(&o);
        assert!(err.contains("rows on the fly, cache of"), "{err}");
        assert!(err.contains("row cache:") && err.contains("% hits"), "{err}");
        assert_same_files(&whole, &fly, &["similar.bin", "different.bin", "vectors.bin"]);
        std::fs::remove_dir_all(&whole).unwrap();
        std::fs::remove_dir_all(&fly).unwrap();
    }
}

/// `--max-gpu-memory` below the matrix: the GPU computes rows on the fly
/// behind a cache of about 100 rows, and writes the CPU matrix path's bytes.
#[test]
fn gpu_rows_on_the_fly_write_the_matrix_paths_cache() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(dir.path(), 1500);
    let (whole, fly) = (dir.path().join("whole"), dir.path().join("fly"));
    ok(&precompute_args(&c, &whole, &["--top-k", "40", "--chunk", "500"]));
    let mut args = precompute_args(
        &c,
        &fly,
        &["--top-k", "40", "--chunk", "500", "--max-gpu-memory", "300kB"],
    );
    let backend = args.iter().position(|a| *a == "--backend").unwrap();
    args[backend + 1] = "gpu";
    let o = run(&args);
    if !o.status.success() && stderr(&o).contains("no suitable GPU adapter") {
        skip("a GPU adapter");
        return;
    }
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("rows on the fly, cache of 99 rows"), "{err}");
    assert!(err.contains("GPU row cache:") && err.contains("% hits"), "{err}");
    assert_same_files(&whole, &fly, &["similar.bin", "different.bin", "vectors.bin"]);
}

/// `--max-gpu-memory` does nothing on the CPU backend, and says so.
#[test]
fn the_gpu_memory_limit_on_the_cpu_backend_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(dir.path(), 50);
    let o = ok(&precompute_args(
        &c,
        &dir.path().join("out"),
        &["--max-gpu-memory", "1kB"],
    ));
    let err = stderr(&o);
    assert!(err.contains("--max-gpu-memory applies to the GPU backend"), "{err}");
}

#[test]
fn a_job_that_cannot_fit_is_refused_with_the_sizes_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(dir.path(), 3000);
    let out = dir.path().join("out");
    let o = run(&precompute_args(&c, &out, &["--max-memory", "200kB", "--chunk", "64"]));
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("3000 poems × 8 dims do not fit in --max-memory 195.3 KiB"),
        "{err}"
    );
    assert!(err.contains("the similarity matrix alone is 17.2 MiB"), "{err}");
    assert!(err.contains("still needs") && err.contains("walks in flight"), "{err}");
    assert!(!out.exists(), "nothing is written for a refused job");
}

#[test]
fn verify_checks_without_the_matrix_and_still_catches_a_wrong_row() {
    let dir = tempfile::tempdir().unwrap();
    let c = corpus(dir.path(), 3000);
    let cache = dir.path().join("cache");
    ok(&precompute_args(
        &c,
        &cache,
        &["--top-k", "30", "--max-memory", "14MB", "--chunk", "64"],
    ));
    let verify = |max: &str| {
        run(&[
            "verify",
            "--cache",
            cache.to_str().unwrap(),
            "--sample",
            "3000",
            "--max-memory",
            max,
        ])
    };
    let o = verify("12MB");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "3,000 sampled starts match the CPU reference exactly (similarities computed per step; no matrix built)"
        ),
        "{}",
        stderr(&o)
    );
    let o = verify("1GB");
    assert!(stderr(&o).contains("over a fresh similarity matrix"), "{}", stderr(&o));
    // Swap the first two entries of the first different ordering.
    let path = cache_file(&cache, "different.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    let (a, b) = ([bytes[0], bytes[1]], [bytes[2], bytes[3]]);
    bytes[..4].copy_from_slice(&[b[0], b[1], a[0], a[1]]);
    std::fs::write(&path, &bytes).unwrap();
    // Keep the hashes consistent, as a buggy backend would.
    let mpath = cache.join("manifest.json");
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    m.integrity
        .files
        .insert("different.bin".into(), integrity::hash_file(&path).unwrap());
    m.manifest_hash = integrity::UNSEALED.into();
    std::fs::write(&mpath, integrity::seal(serde_json::to_vec_pretty(&m).unwrap()).0).unwrap();
    let o = verify("12MB");
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("\"p00000\": Different first differs at position 0"),
        "{}",
        stderr(&o)
    );
}
