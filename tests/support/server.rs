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
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
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
    stop: Arc<std::sync::atomic::AtomicBool>,
    addr: std::net::SocketAddr,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// One parsed request.
struct Request {
    path: String,
    auth: Option<String>,
    body: Vec<u8>,
}

/// Reads one HTTP/1.1 request (headers parsed by httparse); `None` at EOF.
fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(buf) {
            let len = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let auth = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            let path = req.path.unwrap_or("/").to_owned();
            while buf.len() < head + len {
                let mut chunk = [0u8; 65536];
                let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head..head + len].to_vec();
            buf.drain(..head + len);
            return Some(Request { path, auth, body });
        }
        let mut chunk = [0u8; 65536];
        let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn respond(stream: &mut TcpStream, code: u16, body: &str, extra: Option<(&str, &str)>) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\n",
        body.len()
    );
    if let Some((k, v)) = extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes())
}

impl Server {
    /// Starts a server with a fixed latency per request: a thread per
    /// connection, keep-alive, TCP_NODELAY (as Ollama and vLLM set).
    pub fn start(latency: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acceptor = {
            let (stats, stop) = (stats.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = conn else { continue };
                    let _ = stream.set_nodelay(true);
                    let stats = stats.clone();
                    std::thread::spawn(move || {
                        let mut buf = Vec::new();
                        while let Some(req) = read_request(&mut stream, &mut buf) {
                            if handle(&mut stream, req, &stats, latency).is_err() {
                                break;
                            }
                        }
                    });
                }
            })
        };
        Server {
            url: format!("http://{addr}"),
            stats,
            stop,
            addr,
            acceptor: Some(acceptor),
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

/// Answers one request; an error closes the connection.
fn handle(stream: &mut TcpStream, req: Request, stats: &Stats, latency: Duration) -> std::io::Result<()> {
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    stats.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(a) = &req.auth {
        stats.auth.lock().unwrap().push(a.clone());
    }
    let texts: Vec<String> = serde_json::from_slice::<serde_json::Value>(&req.body)
        .ok()
        .and_then(|v| {
            v["input"]
                .as_array()
                .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        })
        .unwrap_or_default();
    stats.inputs.lock().unwrap().push(texts.clone());
    std::thread::sleep(latency);
    let openai = req.path.ends_with("/v1/embeddings");
    let tries = {
        let mut t = stats.tries.lock().unwrap();
        let n = t.entry(texts.join("\u{0}")).or_default();
        *n += 1;
        *n
    };
    let has = |m: &str| texts.iter().any(|t| t.contains(m));
    let _done = InFlight(stats);
    if has("@drop") && tries == 1 {
        // Close the connection without an answer.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        return Err(std::io::Error::other("dropped on purpose"));
    }
    if has("@429") && tries <= 2 {
        return respond(stream, 429, "slow down", Some(("Retry-After", "0")));
    }
    if (has("@flaky") && tries <= 2) || has("@500") {
        return respond(stream, 500, "internal error", None);
    }
    if has("@malformed") {
        return respond(stream, 200, "{\"embeddings\": [[0.1, ", None);
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
    respond(stream, 200, &body.to_string(), None)
}

/// Counts a request out of flight when its answer is written.
struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
