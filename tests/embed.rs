//! End-to-end tests of `embed` against a real HTTP server on 127.0.0.1.

mod common;
#[path = "support/server.rs"]
mod server;

use common::*;
use server::{vector, Server, DIM};
use std::path::Path;
use std::time::Duration;

fn corpus_jsonl(path: &Path, texts: &[String]) {
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": format!("p{i:03}"), "text": t}).to_string())
        .collect();
    std::fs::write(path, lines.join("\n")).unwrap();
}

/// `embed` arguments for `poems` into `out` against `url`, model "m",
/// with short timeouts and backoff, and `extra`.
fn embed_args(poems: &Path, out: &Path, url: &str, extra: &[&str]) -> Vec<String> {
    let base = [
        "embed",
        "--poems",
        poems.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--url",
        url,
    ];
    let fixed = ["--model", "m", "--timeout", "2", "--backoff", "0.01"];
    base.iter().chain(&fixed).chain(extra).map(|a| a.to_string()).collect()
}

fn embed(poems: &Path, out: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    bin()
        .args(embed_args(poems, out, url, extra))
        .output()
        .expect("the binary runs")
}

fn vectors(out: &Path) -> Vec<(String, Option<Vec<f32>>, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap();
    v["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let emb = e.get("embedding").map(|x| serde_json::from_value(x.clone()).unwrap());
            (
                e["id"].as_str().unwrap().to_owned(),
                emb,
                e.get("error").map(|x| x.as_str().unwrap().to_owned()),
            )
        })
        .collect()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("poem number {i}\nwith a second line")).collect()
}

#[test]
fn batches_concurrency_and_cache() {
    let srv = Server::start(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = texts(60);
    corpus_jsonl(&poems, &t);
    let o = embed(&poems, &out, &srv.url, &["--batch-size", "8", "--concurrency", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(srv.requests(), 8); // ⌈60 / 8⌉
    assert!(srv.max_in_flight() <= 3, "{} in flight", srv.max_in_flight());
    assert!(srv.max_in_flight() >= 2, "requests never overlapped");
    let got = vectors(&out);
    assert_eq!(got.len(), 60);
    for (i, (id, v, _)) in got.iter().enumerate() {
        assert_eq!(id, &format!("p{i:03}"));
        assert_eq!(
            v.as_ref().unwrap(),
            &vector(&t[i], DIM),
            "{id} got another text's vector"
        );
    }
    // The output is a corpus precompute can read.
    let cache = dir.path().join("cache");
    ok(&[
        "precompute",
        "--poems",
        poems.to_str().unwrap(),
        "--embeddings",
        out.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--backend",
        "cpu",
        "--strict",
    ]);
    // Unchanged corpus: nothing is sent. One changed poem: one text is sent.
    let o = embed(&poems, &out, &srv.url, &[]);
    assert!(stderr(&o).contains("0 requests"), "{}", stderr(&o));
    assert_eq!(srv.requests(), 8);
    let mut t2 = t.clone();
    t2[5] = "a new poem".into();
    corpus_jsonl(&poems, &t2);
    embed(&poems, &out, &srv.url, &[]);
    assert_eq!(srv.requests(), 9);
    assert_eq!(srv.texts().last().unwrap(), "a new poem");
    assert_eq!(vectors(&out)[5].1.as_ref().unwrap(), &vector("a new poem", DIM));
}

#[test]
fn openai_answers_are_mapped_by_index_with_a_token() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = texts(10);
    corpus_jsonl(&poems, &t);
    let mut cmd = bin();
    cmd.args(embed_args(
        &poems,
        &out,
        &srv.url,
        &["--api", "openai", "--batch-size", "4"],
    ));
    cmd.env("DIVERSITY_EMBED_TOKEN", "s3cret");
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for (i, (_, v, _)) in vectors(&out).iter().enumerate() {
        assert_eq!(v.as_ref().unwrap(), &vector(&t[i], DIM));
    }
    assert!(srv.stats.auth.lock().unwrap().iter().all(|a| a == "Bearer s3cret"));
    assert_eq!(srv.stats.auth.lock().unwrap().len(), 3);
}

#[test]
fn faults_are_retried_or_isolated_and_nothing_is_mismatched() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let mut t = texts(40);
    for (i, m) in [
        (3, "@429"),
        (9, "@flaky"),
        (14, "@drop"),
        (20, "@500"),
        (25, "@malformed"),
        (30, "@short"),
        (35, "@wide"),
    ] {
        t[i] = format!("{} {m}", t[i]);
    }
    corpus_jsonl(&poems, &t);
    let o = embed(
        &poems,
        &out,
        &srv.url,
        &["--batch-size", "8", "--concurrency", "2", "--retries", "3"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let got = vectors(&out);
    assert_eq!(got.len(), 40);
    let mut failed = Vec::new();
    for (i, (id, v, e)) in got.iter().enumerate() {
        match (v, e) {
            (Some(v), None) => assert_eq!(v, &vector(&t[i], DIM), "{id}"),
            (None, Some(e)) => failed.push((i, e.clone())),
            _ => panic!("{id}: neither vector nor error"),
        }
    }
    let idx: Vec<usize> = failed.iter().map(|f| f.0).collect();
    assert_eq!(idx, vec![20, 25, 30, 35], "{failed:?}\n{err}");
    assert!(failed[0].1.starts_with("http 500"), "{failed:?}");
    assert!(failed[1].1.starts_with("malformed answer"), "{failed:?}");
    assert!(failed[2].1.starts_with("wrong count"), "{failed:?}");
    assert!(failed[3].1.starts_with("wrong dimension"), "{failed:?}");
    assert!(err.contains("failed (http 500): 1") && err.contains("p020"), "{err}");
    // Retries stay bounded: 5 batches, each bad item isolated by halving
    // (≤ 7 requests per batch of 8), each request tried at most 4 times.
    assert!(srv.requests() <= 5 * 7 * 4, "{} requests", srv.requests());
}

#[test]
fn fail_fast_stops_and_keeps_what_is_done() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let mut t = texts(30);
    t[12] = "broken @500".into();
    corpus_jsonl(&poems, &t);
    let o = embed(
        &poems,
        &out,
        &srv.url,
        &[
            "--batch-size",
            "4",
            "--concurrency",
            "1",
            "--retries",
            "0",
            "--fail-fast",
        ],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--fail-fast") && stderr(&o).contains("p012"),
        "{}",
        stderr(&o)
    );
    let got = vectors(&out);
    assert!(got.iter().filter(|g| g.1.is_some()).count() >= 12);
    assert!(got.len() < 30, "fail-fast went on");
}

#[test]
fn long_texts_are_chunked_and_recombined() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let long = "first paragraph here\n\nsecond one is here\n\nthird".to_string();
    corpus_jsonl(&poems, &[long.clone(), "short".into()]);
    let o = embed(&poems, &out, &srv.url, &["--max-chars", "20", "--prefix", "doc: "]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut sent = srv.texts();
    sent.sort();
    assert_eq!(
        sent,
        vec![
            "doc: first paragraph here",
            "doc: second one is here",
            "doc: short",
            "doc: third"
        ]
    );
    let parts = [("first paragraph here", 20), ("second one is here", 18), ("third", 5)];
    let vs: Vec<Vec<f32>> = parts.iter().map(|(t, _)| vector(&format!("doc: {t}"), DIM)).collect();
    let weighted: Vec<(usize, &Vec<f32>)> = parts.iter().zip(&vs).map(|((_, w), v)| (*w, v)).collect();
    let expect = diversity_gpu::embed::combine(&weighted);
    assert_eq!(vectors(&out)[0].1.as_ref().unwrap(), &expect);
}

#[test]
fn a_killed_run_resumes_without_resending() {
    let srv = Server::start(Duration::from_millis(150));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = texts(24);
    corpus_jsonl(&poems, &t);
    let args = embed_args(
        &poems,
        &out,
        &srv.url,
        &["--batch-size", "2", "--concurrency", "1", "--flush-every", "0"],
    );
    let mut child = bin().args(&args).spawn().unwrap();
    let cache = diversity_gpu::embed::cache_path(&out);
    let start = std::time::Instant::now();
    while std::fs::read_to_string(&cache).map(|s| s.lines().count()).unwrap_or(0) < 6 {
        assert!(start.elapsed().as_secs() < 60);
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let sent_before = srv.texts().len();
    assert!(sent_before < 24, "finished before the kill");
    let partial = vectors(&out);
    assert!(
        !partial.is_empty() && partial.len() < 24,
        "{} entries checkpointed",
        partial.len()
    );
    // Texts whose vectors reached the cache before the kill.
    let cached_lines = std::fs::read_to_string(&cache).unwrap();
    let cached: Vec<&String> = t
        .iter()
        .filter(|x| cached_lines.contains(&diversity_gpu::embed::text_hash("m", "", x)))
        .collect();
    assert!(cached.len() >= 6);
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let all = srv.texts();
    let resent: Vec<&String> = all[sent_before..].iter().filter(|x| cached.contains(x)).collect();
    assert!(
        resent.is_empty(),
        "texts cached before the kill were sent again: {resent:?}"
    );
    assert!(
        stderr(&o).contains(&format!("{} from the cache", cached.len())),
        "{}",
        stderr(&o)
    );
    let got = vectors(&out);
    assert_eq!(got.len(), 24);
    for (i, (_, v, _)) in got.iter().enumerate() {
        assert_eq!(v.as_ref().unwrap(), &vector(&t[i], DIM));
    }
}
