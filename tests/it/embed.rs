//! End-to-end tests of `embed` against a real HTTP server on 127.0.0.1.

use crate::support::server;

use crate::common::*;
use server::{refusing_url, vector, Config, Server, DIM};
use std::path::Path;
use std::time::{Duration, Instant};

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
    let fixed = ["--model", "m", "--timeout", "2"];
    let backoff = ["--backoff", "0.01"];
    let backoff = if extra.contains(&"--backoff") {
        &[][..]
    } else {
        &backoff[..]
    };
    base.iter()
        .chain(&fixed)
        .chain(backoff)
        .chain(extra)
        .map(|a| a.to_string())
        .collect()
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

/// `n` texts, text `i` ending in the test server's fault marker `m` for
/// each `(i, m)`.
fn marked(n: usize, marks: &[(usize, &str)]) -> Vec<String> {
    let mut t = texts(n);
    for &(i, m) in marks {
        t[i] = format!("{} {m}", t[i]);
    }
    t
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
    assert_eq!(srv.requests(), 1 + 8); // the probe, then ⌈59 / 8⌉
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
    assert_eq!(srv.requests(), 9);
    let mut t2 = t.clone();
    t2[5] = "a new poem".into();
    corpus_jsonl(&poems, &t2);
    embed(&poems, &out, &srv.url, &[]);
    assert_eq!(srv.requests(), 10);
    assert_eq!(srv.texts().last().unwrap(), "a new poem");
    assert_eq!(vectors(&out)[5].1.as_ref().unwrap(), &vector("a new poem", DIM));
}

/// A text that repeats another poem's is sent once and said to be a
/// repeat, not a journal hit; each poem still gets its own text's vector.
#[test]
fn repeated_texts_are_sent_once_and_counted_as_repeats() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let mut t = texts(7);
    t.extend([t[0].clone(), t[3].clone(), t[0].clone()]);
    corpus_jsonl(&poems, &t);
    let o = embed(&poems, &out, &srv.url, &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("10 poems in 10 texts: 0 from the journal, 3 repeating another text (sent once), 7 to send"),
        "{err}"
    );
    let mut sent = srv.texts();
    sent.sort();
    sent.dedup();
    assert_eq!(sent.len(), 7);
    for ((id, v, _), text) in vectors(&out).iter().zip(&t) {
        assert_eq!(v.as_ref().unwrap(), &vector(text, DIM), "{id}");
    }
    let o = embed(&poems, &out, &srv.url, &[]);
    assert!(stderr(&o).contains("10 from the journal, 0 to send"), "{}", stderr(&o));
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
    assert_eq!(srv.stats.auth.lock().unwrap().len(), 1 + 3); // the probe, then ⌈9 / 4⌉
}

#[test]
fn faults_are_retried_or_isolated_and_nothing_is_mismatched() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = marked(
        40,
        &[
            (3, "@429"),
            (9, "@flaky"),
            (14, "@drop"),
            (20, "@zero"),
            (25, "@malformed"),
            (30, "@short"),
            (35, "@wide"),
        ],
    );
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
    assert!(failed[0].1.starts_with("all-zero vector"), "{failed:?}");
    assert!(failed[1].1.starts_with("malformed answer"), "{failed:?}");
    assert!(failed[2].1.starts_with("wrong count"), "{failed:?}");
    assert!(failed[3].1.starts_with("wrong dimension"), "{failed:?}");
    assert!(
        err.contains("failed (all-zero vector): 1") && err.contains("p020"),
        "{err}"
    );
    // Bounded: 5 batches, each bad item isolated by halving (≤ 7 requests
    // per batch of 8), transient failures tried at most 4 times.
    assert!(srv.requests() <= 1 + 5 * 7 + 3 * 3, "{} requests", srv.requests());
}

#[test]
fn persistent_server_errors_are_retried_never_split_then_given_up() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = marked(16, &[(10, "@500")]);
    corpus_jsonl(&poems, &t);
    let o = embed(
        &poems,
        &out,
        &srv.url,
        &["--batch-size", "4", "--concurrency", "1", "--retries", "1"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // The probe, 4 batches of the other 15, the failing one tried twice: no split.
    assert_eq!(srv.requests(), 1 + 4 + 1, "{}", stderr(&o));
    let failed: Vec<String> = vectors(&out)
        .into_iter()
        .filter(|v| v.2.is_some())
        .map(|v| v.0)
        .collect();
    assert_eq!(failed, ["p009", "p010", "p011", "p012"]);
    assert!(stderr(&o).contains("failed (server unavailable): 4"), "{}", stderr(&o));
    // A server that fails everything is given up on after the probe's tries.
    let all: Vec<String> = texts(20).into_iter().map(|t| format!("{t} @500")).collect();
    corpus_jsonl(&poems, &all);
    let before = srv.requests();
    let o = embed(&poems, &out, &srv.url, &["--retries", "2"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("gave up"), "{}", stderr(&o));
    assert_eq!(srv.requests() - before, 3);
}

#[test]
fn fail_fast_stops_and_keeps_what_is_done() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let mut t = texts(30);
    t[12] = "broken @zero".into();
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
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
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
    let cache = diversity_gpu::embed::journal_path(&out);
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
        stderr(&o).contains(&format!("{} from the journal", cached.len())),
        "{}",
        stderr(&o)
    );
    let got = vectors(&out);
    assert_eq!(got.len(), 24);
    for (i, (_, v, _)) in got.iter().enumerate() {
        assert_eq!(v.as_ref().unwrap(), &vector(&t[i], DIM));
    }
}

/// Runs `embed` with `args` (no defaults added) and times it.
fn timed(args: &[String], env: &[(&str, &str)]) -> (std::process::Output, Duration) {
    let start = Instant::now();
    let mut cmd = bin();
    cmd.env_remove("DIVERSITY_EMBED_TOKEN").env_remove("OPENAI_API_KEY");
    let o = cmd.args(args).envs(env.iter().copied()).output().unwrap();
    (o, start.elapsed())
}

fn error_lines(o: &std::process::Output) -> Vec<String> {
    stderr(o)
        .lines()
        .filter(|l| l.starts_with("error"))
        .map(String::from)
        .collect()
}

#[test]
fn urls_follow_the_openai_base_url_convention() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("p.jsonl");
    let t = texts(3);
    corpus_jsonl(&poems, &t);
    // The server's root (infinity's default), a /v1 base, the full endpoint, a query.
    for (i, url) in ["", "/v1", "/v1/", "/v1/embeddings", "/embeddings", "/v1?api-version=1"]
        .iter()
        .enumerate()
    {
        let out = dir.path().join(format!("e{i}.json"));
        let o = embed(&poems, &out, &format!("{}{url}", srv.url), &["--api", "openai"]);
        assert!(o.status.success(), "{url}: {}", stderr(&o));
        assert_eq!(vectors(&out)[2].1.as_ref().unwrap(), &vector(&t[2], DIM), "{url}");
    }
    let out = dir.path().join("ollama.json");
    for url in [srv.url.clone(), format!("{}/api/embed", srv.url)] {
        let o = embed(&poems, &out, &url, &["--api", "ollama"]);
        assert!(o.status.success(), "{url}: {}", stderr(&o));
    }
}

#[test]
fn configuration_errors_stop_at_once_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("p.jsonl");
    corpus_jsonl(&poems, &texts(40));
    let cases: Vec<(Config, &str, &[&str], &str)> = vec![
        (
            Config {
                token: Some("t".into()),
                ..Config::default()
            },
            "",
            &[],
            "token",
        ),
        (
            Config {
                models: Some(vec!["other".into()]),
                ..Config::default()
            },
            "",
            &[],
            "--model",
        ),
        (Config::default(), "/v2", &[], "--url"),
        (
            Config {
                shape: Some(true),
                ..Config::default()
            },
            "",
            &[],
            "--api ollama",
        ),
    ];
    for (config, path, extra, hint) in cases {
        let srv = Server::with(config);
        let out = dir.path().join("e.json");
        let mut args = embed_args(&poems, &out, &format!("{}{path}", srv.url), &["--api", "openai"]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let (o, took) = timed(&args, &[]);
        assert_eq!(o.status.code(), Some(1), "{hint}: {}", stderr(&o));
        assert!(took < Duration::from_secs(10), "{hint}: {took:?}");
        let errors = error_lines(&o);
        assert_eq!(errors.len(), 1, "{hint}: {}", stderr(&o));
        assert!(errors[0].contains(hint), "{hint}: {}", errors[0]);
        assert!(srv.requests() <= 1, "{hint}: {} requests", srv.requests());
    }
}

#[test]
fn an_unreachable_server_is_given_up_on() {
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    corpus_jsonl(&poems, &texts(5));
    let url = refusing_url();
    let args = embed_args(&poems, &out, &url, &["--retries", "30", "--give-up-after", "2"]);
    let (o, took) = timed(&args, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("gave up"), "{}", stderr(&o));
    assert!(took < Duration::from_secs(10), "{took:?}");
}

/// The defaults' bound by arithmetic, not by waiting it out (about 30 s):
/// with the command line's default retries, backoff and cap, a request
/// sleeps at most 0.5 + 1 + 2 + 4 + 8 + 16 s, and the breaker opens at 45 s.
#[test]
fn the_default_bound_on_an_unreachable_server_is_under_a_minute() {
    use clap::Parser;
    let cli = diversity_gpu::cli::Cli::try_parse_from([
        "diversity-gpu",
        "embed",
        "--poems",
        "p.jsonl",
        "--out",
        "e.json",
        "--url",
        "http://127.0.0.1:9",
        "--model",
        "m",
    ])
    .unwrap();
    let diversity_gpu::cli::Command::Embed(a) = cli.command else {
        panic!("not embed")
    };
    let p = a.options(false).unwrap().policy;
    assert_eq!(p.longest_wait(), Duration::from_millis(31_500), "{p:?}");
    assert_eq!(p.give_up_after, Duration::from_secs(45), "{p:?}");
    assert!(p.longest_wait().min(p.give_up_after) < Duration::from_secs(60), "{p:?}");
}

#[test]
fn a_server_that_restarts_mid_run_loses_nothing() {
    let srv = Server::start(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = texts(80);
    corpus_jsonl(&poems, &t);
    let args = embed_args(
        &poems,
        &out,
        &srv.url,
        &["--batch-size", "2", "--concurrency", "2", "--backoff", "0.2"],
    );
    let child = bin().args(&args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let journal = diversity_gpu::embed::journal_path(&out);
    let start = Instant::now();
    while std::fs::read_to_string(&journal)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 10
    {
        assert!(start.elapsed().as_secs() < 60);
        std::thread::sleep(Duration::from_millis(5));
    }
    srv.down.store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(1500));
    srv.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("retries") && !stderr(&o).contains(" 0 retries"),
        "{}",
        stderr(&o)
    );
    for (i, (_, v, _)) in vectors(&out).iter().enumerate() {
        assert_eq!(v.as_ref().unwrap(), &vector(&t[i], DIM));
    }
}

#[test]
fn hostile_answers_neither_panic_nor_leak_credentials() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = marked(
        24,
        &[
            (2, "@nan-retry"),
            (5, "@huge-retry"),
            (9, "@zero"),
            (13, "@huge-body"),
            (17, "@echo"),
        ],
    );
    corpus_jsonl(&poems, &t);
    let url = srv.url.replace("http://", "http://user:pa55word@");
    let extra = ["--api", "openai", "--max-wait", "1", "--batch-size", "8"];
    let (o, took) = timed(
        &embed_args(&poems, &out, &url, &extra),
        &[("DIVERSITY_EMBED_TOKEN", "s3cret-token"), ("RUST_LOG", "trace")],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(took < Duration::from_secs(20), "Retry-After was not capped: {took:?}");
    let failed: Vec<(String, String)> = vectors(&out).into_iter().filter_map(|v| Some((v.0, v.2?))).collect();
    let ids: Vec<&str> = failed.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(ids, ["p009", "p013", "p017"], "{failed:?}");
    assert!(failed[0].1.contains("all-zero"), "{failed:?}");
    assert!(failed[1].1.contains("answer larger than"), "{failed:?}");
    assert!(
        failed[2].1.contains("http 400") && failed[2].1.contains("[redacted]"),
        "{failed:?}"
    );
    let file = std::fs::read_to_string(&out).unwrap();
    for secret in ["s3cret-token", "pa55word", "dXNlcjpwYTU1d29yZA"] {
        assert!(!err.contains(secret), "{secret} printed:\n{err}");
        assert!(!file.contains(secret), "{secret} stored");
    }
    assert!(
        file.contains(&format!("\"endpoint\":\"{}/embeddings\"", srv.url)),
        "{file}"
    );
}

#[test]
fn bad_flag_values_are_refused_at_parse_time() {
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    corpus_jsonl(&poems, &texts(2));
    let bad: [&[&str]; 11] = [
        &["--timeout", "nan"],
        &["--timeout", "1e300"],
        &["--timeout=-1"],
        &["--timeout", "0"],
        &["--backoff", "inf"],
        &["--max-wait", "NaN"],
        &["--give-up-after=-3"],
        &["--max-chars", "0"],
        &["--batch-size", "0"],
        &["--concurrency", "0"],
        &["--retries", "1000000"],
    ];
    for bad in bad {
        let mut args = vec![
            "embed",
            "--poems",
            poems.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(["--url", "http://127.0.0.1:9", "--model", "m"]);
        args.extend_from_slice(bad);
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("invalid value") && !stderr(&o).contains("panicked"),
            "{bad:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn ctrl_c_stops_within_two_seconds_even_in_a_retry_wait_and_saves() {
    let srv = Server::start(Duration::from_millis(10));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let t = marked(60, &[(30, "@503")]); // 503 with Retry-After: 30
    corpus_jsonl(&poems, &t);
    let args = embed_args(
        &poems,
        &out,
        &srv.url,
        &["--batch-size", "1", "--concurrency", "1", "--flush-every", "0"],
    );
    let mut child = bin().args(&args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while srv.texts().iter().filter(|x| x.contains("@503")).count() < 1 {
        assert!(start.elapsed().as_secs() < 60);
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(300)); // now in the 30 s wait
    let sent = Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(10), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(sent.elapsed() < Duration::from_secs(2), "took {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(130));
    let got = vectors(&out);
    assert_eq!(
        got.iter().filter(|g| g.1.is_some()).count(),
        30,
        "finished poems were not saved"
    );
}

#[test]
fn the_served_model_is_recorded_and_keys_the_journal() {
    let liar = Server::with(Config {
        served_model: Some("real-model".into()),
        ..Config::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    corpus_jsonl(&poems, &texts(10));
    let o = embed(&poems, &out, &liar.url, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("server says it served \"real-model\""),
        "{}",
        stderr(&o)
    );
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(meta["metadata"]["embedding_model"], "real-model");
    assert_eq!(meta["metadata"]["requested_model"], "m");
    assert!(meta["metadata"]["tokens"].as_u64().unwrap() > 0);
    // The same server again: the probe alone, then everything from the journal.
    let before = liar.requests();
    let o = embed(&poems, &out, &liar.url, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(liar.requests() - before, 1);
    assert!(stderr(&o).contains("0 embedded, 10 from the journal"), "{}", stderr(&o));
    // A server that really serves "m": nothing of "real-model" is reused.
    let honest = Server::start(Duration::from_millis(1));
    let o = embed(&poems, &out, &honest.url, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(honest.texts().len(), 10);
}

#[test]
fn a_dimension_change_names_the_journal_to_delete() {
    let srv = Server::start(Duration::from_millis(1));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let mut t = texts(6);
    corpus_jsonl(&poems, &t);
    assert!(embed(&poems, &out, &srv.url, &[]).status.success());
    let narrow = Server::with(Config {
        dim: 4,
        ..Config::default()
    });
    t[0] = "a changed poem".into();
    corpus_jsonl(&poems, &t);
    let o = embed(&poems, &out, &narrow.url, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let errors = error_lines(&o);
    let journal = diversity_gpu::embed::journal_path(&out);
    assert!(
        errors.len() == 1 && errors[0].contains(&format!("Delete {}", journal.display())),
        "{}",
        stderr(&o)
    );
    assert!(
        errors[0].contains("8-dimensional") && errors[0].contains("4-dimensional"),
        "{}",
        errors[0]
    );
}

#[test]
fn the_window_sets_the_split_and_long_texts_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    let long = (0..10)
        .map(|i| format!("line {i} of a long poem"))
        .collect::<Vec<_>>()
        .join("\n");
    corpus_jsonl(&poems, &[long, "short".into()]);
    for api in ["openai", "ollama"] {
        let srv = Server::with(Config {
            window: Some(20),
            ..Config::default()
        });
        let o = embed(&poems, &out, &srv.url, &["--api", api]);
        assert!(o.status.success(), "{}", stderr(&o));
        // (20 − 2) tokens × 3 characters.
        assert!(
            stderr(&o).contains("split 1 poem longer than 54 characters into"),
            "{api}: {}",
            stderr(&o)
        );
        assert!(srv.texts().iter().all(|t| t.chars().count() <= 54), "{:?}", srv.texts());
        assert!(
            stderr(&o).contains("0 texts are longer than the model's window of 20 tokens"),
            "{}",
            stderr(&o)
        );
        std::fs::remove_file(diversity_gpu::embed::journal_path(&out)).unwrap();
        let o = embed(&poems, &out, &srv.url, &["--api", api, "--max-chars", "1000"]);
        assert!(
            stderr(&o).contains("1 text is longer than the model's window"),
            "{}",
            stderr(&o)
        );
    }
    // A server that does not tell: the default fits a 256-token window.
    let srv = Server::start(Duration::from_millis(1));
    let o = embed(&poems, &out, &srv.url, &[]);
    assert!(
        stderr(&o).contains(&format!(
            "longer than {} characters",
            diversity_gpu::embed::DEFAULT_MAX_CHARS
        )),
        "{}",
        stderr(&o)
    );
}

#[test]
fn help_shows_the_url_forms() {
    let o = ok(&["embed", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for form in [
        "--api openai --url https://api.openai.com/v1",
        "--api ollama --url http://localhost:11434",
        "--api openai --url http://localhost:11434/v1",
        "infinity",
        "llama.cpp",
        "vLLM",
        "TEI",
    ] {
        assert!(help.contains(form), "{form} missing from:\n{help}");
    }
}

#[test]
fn ctrl_c_stops_within_two_seconds_during_a_slow_probe() {
    let srv = Server::start(Duration::from_secs(20));
    let dir = tempfile::tempdir().unwrap();
    let (poems, out) = (dir.path().join("p.jsonl"), dir.path().join("e.json"));
    corpus_jsonl(&poems, &texts(3));
    let mut args = embed_args(&poems, &out, &srv.url, &[]);
    let at = args.iter().position(|a| a == "--timeout").unwrap();
    args[at + 1] = "60".into(); // the probe's answer takes 20 s
    let mut child = bin().args(&args).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while srv.requests() == 0 {
        assert!(start.elapsed().as_secs() < 60);
        std::thread::sleep(Duration::from_millis(5));
    }
    let sent = Instant::now();
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(sent.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(sent.elapsed() < Duration::from_secs(2), "took {:?}", sent.elapsed());
    assert_eq!(status.code(), Some(130));
}
