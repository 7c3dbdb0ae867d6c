//! Embedding throughput against the test server at a fixed 50 ms per
//! request: batched and concurrent versus the ideal (concurrency × batch ÷
//! latency), and versus the old behaviour (one text per request, one at a
//! time), in one run. Each run starts with a one-text probe request.
//! `cargo bench --bench embed`.

#[path = "../tests/it/support/server.rs"]
mod server;

use std::time::Duration;

use diversity_gpu::embed::{self, Api, Options, Policy};

fn run(srv: &server::Server, n: usize, batch: usize, concurrency: usize, tag: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("p.jsonl");
    let lines: Vec<String> = (0..n)
        .map(|i| serde_json::json!({"id": format!("{i}"), "text": format!("{tag} text number {i}")}).to_string())
        .collect();
    std::fs::write(&poems, lines.join("\n")).unwrap();
    let s = embed::run(&Options {
        poems,
        out: dir.path().join("e.json"),
        url: srv.url.clone(),
        api: Api::Ollama,
        model: "bench".into(),
        batch_size: batch,
        concurrency,
        prefix: String::new(),
        max_chars: Some(4000),
        timeout: Duration::from_secs(10),
        policy: Policy {
            retries: 3,
            backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(5),
            give_up_after: Duration::from_secs(30),
        },
        fail_fast: true,
        token: None,
        progress: false,
        flush_every: Duration::from_secs(2),
        local: None,
        split_long: false,
    })
    .unwrap();
    assert!(s.failures.is_empty() && s.stopped.is_none());
    eprintln!(
        "    ({} requests, {} retries, {:.2} s, max in flight {})",
        s.requests,
        s.retries,
        s.seconds,
        srv.max_in_flight()
    );
    s.texts_embedded as f64 / s.seconds
}

fn main() {
    let latency = Duration::from_millis(50);
    let srv = server::Server::start(latency);
    println!(
        "embed benchmark: test server on 127.0.0.1 at a fixed {} ms per request",
        latency.as_millis()
    );
    let old = run(&srv, 60, 1, 1, "old");
    println!(
        "  one text per request, sequential (old): {old:8.1} texts/s (ideal {:.1})",
        1.0 / latency.as_secs_f64()
    );
    for (batch, conc) in [(32, 4), (50, 4), (32, 8)] {
        let ideal = (batch * conc) as f64 / latency.as_secs_f64();
        let n = batch * conc * 20;
        let r = run(&srv, n, batch, conc, &format!("b{batch}c{conc}"));
        println!(
            "  batch {batch:>2}, {conc} in flight: {r:8.1} texts/s = {:5.1}% of ideal {ideal:.0}; {:.0}× the old way",
            100.0 * r / ideal,
            r / old
        );
    }
}
