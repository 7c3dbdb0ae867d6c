//! A real HTTP embedding server on 127.0.0.1 for tests and the embed
//! benchmark. It speaks Ollama (`/api/embed`) and OpenAI (`/v1/embeddings`),
//! returns deterministic vectors, and injects faults for texts that carry a
//! marker:
//! - `@429`: 429 with `Retry-After: 0` on the first two tries;
//! - `@flaky`: 500 on the first two tries;
//! - `@drop`: the connection is dropped on the first try;
//! - `@500`: always 500;
//! - `@malformed`: always malformed JSON;
//! - `@short`: always one vector too few;
//! - `@wide`: that text's vector has one component too many.
//!
//! OpenAI answers list `data` in reverse order, so clients must map by index.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const DIM: usize = 8;

/// The vector the server returns for `text`.
pub fn vector(text: &str, dim: usize) -> Vec<f32> {
    let h = blake3::hash(text.as_bytes());
    let mut x = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap());
    (0..dim)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

#[derive(Default)]
pub struct Stats {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    pub requests: AtomicUsize,
    /// Every request's input texts, in arrival order.
    pub inputs: Mutex<Vec<Vec<String>>>,
    /// Authorization headers seen.
    pub auth: Mutex<Vec<String>>,
    tries: Mutex<HashMap<String, usize>>,
}

pub struct Server {
    pub url: String,
    pub stats: Arc<Stats>,
    server: Arc<tiny_http::Server>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        for _ in 0..self.threads.len() {
            self.server.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Server {
    /// Starts a server with a fixed latency per request.
    pub fn start(latency: Duration) -> Server {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind 127.0.0.1"));
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let stats = Arc::new(Stats::default());
        let threads = (0..32)
            .map(|_| {
                let (server, stats) = (server.clone(), stats.clone());
                std::thread::spawn(move || {
                    while let Ok(req) = server.recv() {
                        handle(req, &stats, latency);
                    }
                })
            })
            .collect();
        Server {
            url,
            stats,
            server,
            threads,
        }
    }

    pub fn requests(&self) -> usize {
        self.stats.requests.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.stats.max_in_flight.load(Ordering::SeqCst)
    }

    /// Every text received, in order (with repeats).
    pub fn texts(&self) -> Vec<String> {
        self.stats.inputs.lock().unwrap().iter().flatten().cloned().collect()
    }
}

fn handle(mut req: tiny_http::Request, stats: &Stats, latency: Duration) {
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let mut body = String::new();
    let _ = req.as_reader().read_to_string(&mut body);
    if let Some(h) = req.headers().iter().find(|h| h.field.equiv("Authorization")) {
        stats.auth.lock().unwrap().push(h.value.to_string());
    }
    let texts: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v["input"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        })
        .unwrap_or_default();
    stats.inputs.lock().unwrap().push(texts.clone());
    std::thread::sleep(latency);
    let openai = req.url().ends_with("/v1/embeddings");
    let tries = {
        let mut t = stats.tries.lock().unwrap();
        let key = texts.join("\u{0}");
        let n = t.entry(key).or_default();
        *n += 1;
        *n
    };
    let has = |m: &str| texts.iter().any(|t| t.contains(m));
    let respond = |req: tiny_http::Request, code: u16, body: String, extra: Option<(&str, &str)>| {
        let mut r = tiny_http::Response::from_string(body).with_status_code(code);
        if let Some((k, v)) = extra {
            r = r.with_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
        }
        let _ = req.respond(r);
    };
    let done = || stats.in_flight.fetch_sub(1, Ordering::SeqCst);
    if has("@drop") && tries == 1 {
        done();
        drop(req.into_writer());
        return;
    }
    if has("@429") && tries <= 2 {
        done();
        return respond(req, 429, "slow down".into(), Some(("Retry-After", "0")));
    }
    if (has("@flaky") && tries <= 2) || has("@500") {
        done();
        return respond(req, 500, "internal error".into(), None);
    }
    if has("@malformed") {
        done();
        return respond(req, 200, "{\"embeddings\": [[0.1, ".into(), None);
    }
    let mut vectors: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| vector(t, if t.contains("@wide") { DIM + 1 } else { DIM }))
        .collect();
    if has("@short") {
        vectors.pop();
    }
    let body = if openai {
        let mut data: Vec<serde_json::Value> = vectors
            .iter()
            .enumerate()
            .map(|(i, v)| serde_json::json!({"index": i, "embedding": v}))
            .collect();
        data.reverse();
        serde_json::json!({"object": "list", "data": data, "model": "test"})
    } else {
        serde_json::json!({"embeddings": vectors, "model": "test"})
    };
    done();
    respond(req, 200, body.to_string(), Some(("Content-Type", "application/json")));
}
