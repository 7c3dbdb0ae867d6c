//! A real HTTP embedding server on 127.0.0.1 for tests and the embed
//! benchmark. It speaks Ollama (`POST /api/embed`, `POST /api/show`) and
//! OpenAI (`POST /embeddings` or `/v1/embeddings`, `GET /models` or
//! `/v1/models`); any other path is a 404. It returns deterministic
//! vectors and, configured by [`Config`], checks a token, knows a list of
//! models, reports another model name or window, or answers in the other
//! protocol's shape. Texts that carry a marker get faults:
//! - `@429`: 429 with `Retry-After: 0` on the first two tries;
//! - `@nan-retry`: 429 with `Retry-After: NaN` on the first two tries;
//! - `@huge-retry`: 429 with `Retry-After: 1e300` on the first try;
//! - `@503`: always 503 with `Retry-After: 30`;
//! - `@flaky`: 500 on the first two tries;
//! - `@drop`: the connection is dropped on the first try;
//! - `@500`: always 500;
//! - `@malformed`: always malformed JSON;
//! - `@short`: always one vector too few;
//! - `@wide`: that text's vector has one component too many;
//! - `@zero`: that text's vector is all zeros;
//! - `@huge-body`: a 200 answer of 20 MB;
//! - `@echo`: 400 whose body echoes the request's Authorization header.
//!
//! OpenAI answers list `data` in reverse order, so clients must map by index.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// How the server behaves.
#[derive(Clone)]
pub struct Config {
    pub latency: Duration,
    pub dim: usize,
    /// The model name answers carry (else the requested one, echoed).
    pub served_model: Option<String>,
    /// Models it knows; others get infinity's 400 "Invalid model".
    pub models: Option<Vec<String>>,
    /// Requests without `Authorization: Bearer <token>` get 401.
    pub token: Option<String>,
    /// The window `/api/show` and `/models` report.
    pub window: Option<usize>,
    /// Answer every embedding request in Ollama's shape (true) or
    /// OpenAI's (false), whatever the path.
    pub shape: Option<bool>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            latency: Duration::from_millis(1),
            dim: DIM,
            served_model: None,
            models: None,
            token: None,
            window: None,
            shape: None,
        }
    }
}

#[derive(Default)]
pub struct Stats {
    pub in_flight: AtomicUsize,
    pub max_in_flight: AtomicUsize,
    /// Embedding requests.
    pub requests: AtomicUsize,
    /// Other requests (`/api/show`, `/models`, unknown paths).
    pub others: AtomicUsize,
    /// Every embedding request's input texts, in arrival order.
    pub inputs: Mutex<Vec<Vec<String>>>,
    /// Authorization headers seen.
    pub auth: Mutex<Vec<String>>,
    tries: Mutex<HashMap<String, usize>>,
}

pub struct Server {
    pub url: String,
    pub stats: Arc<Stats>,
    /// While set, connections are closed unanswered (a server restarting).
    pub down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
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

/// A URL on 127.0.0.1 where nothing listens.
pub fn refusing_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// One parsed request.
struct Request {
    method: String,
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
            let header = |name: &str| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let len = header("content-length")
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            let auth = header("authorization");
            let path = req.path.unwrap_or("/").to_owned();
            let method = req.method.unwrap_or("GET").to_owned();
            while buf.len() < head + len {
                let mut chunk = [0u8; 65536];
                let n = stream.read(&mut chunk).ok().filter(|&n| n > 0)?;
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[head..head + len].to_vec();
            buf.drain(..head + len);
            return Some(Request {
                method,
                path,
                auth,
                body,
            });
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

/// A 200 answer of about `mb` megabytes, written in pieces.
fn respond_huge(stream: &mut TcpStream, mb: usize) -> std::io::Result<()> {
    let piece = "0.5,".repeat(256 * 1024);
    let body_len = 16 + piece.len() * mb + 6;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n{{\"embeddings\":[["
    )?;
    for _ in 0..mb {
        stream.write_all(piece.as_bytes())?;
    }
    stream.write_all(b"0.5]]}")
}

impl Server {
    /// Starts a server with a fixed latency per request: a thread per
    /// connection, keep-alive, TCP_NODELAY (as Ollama and vLLM set).
    pub fn start(latency: Duration) -> Server {
        Server::with(Config {
            latency,
            ..Config::default()
        })
    }

    /// Starts a server that behaves as `config` says.
    pub fn with(config: Config) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (stats, stop, down) = (stats.clone(), stop.clone(), down.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = conn else { continue };
                    if down.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees a closed connection
                    }
                    let _ = stream.set_nodelay(true);
                    let (stats, config, down) = (stats.clone(), config.clone(), down.clone());
                    std::thread::spawn(move || {
                        let mut buf = Vec::new();
                        while let Some(req) = read_request(&mut stream, &mut buf) {
                            if down.load(Ordering::SeqCst) || handle(&mut stream, req, &stats, &config).is_err() {
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
            down,
            stop,
            addr,
            acceptor: Some(acceptor),
        }
    }

    /// Embedding requests so far.
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
fn handle(stream: &mut TcpStream, req: Request, stats: &Stats, config: &Config) -> std::io::Result<()> {
    let path = req.path.split('?').next().unwrap_or("");
    let ollama = match (req.method.as_str(), path) {
        ("POST", "/api/embed") => true,
        ("POST", "/embeddings" | "/v1/embeddings") => false,
        ("POST", "/api/show") | ("GET", "/models" | "/v1/models") => {
            stats.others.fetch_add(1, Ordering::SeqCst);
            return respond(stream, 200, &window_answer(path, config), None);
        }
        _ => {
            stats.others.fetch_add(1, Ordering::SeqCst);
            return respond(stream, 404, r#"{"detail":"Not Found"}"#, None);
        }
    };
    let now = stats.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    stats.max_in_flight.fetch_max(now, Ordering::SeqCst);
    stats.requests.fetch_add(1, Ordering::SeqCst);
    let _done = InFlight(stats);
    if let Some(a) = &req.auth {
        stats.auth.lock().unwrap().push(a.clone());
    }
    let request: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
    let texts: Vec<String> = request["input"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str().map(String::from)).collect())
        .unwrap_or_default();
    stats.inputs.lock().unwrap().push(texts.clone());
    std::thread::sleep(config.latency);
    if let Some(t) = &config.token {
        if req.auth.as_deref() != Some(&format!("Bearer {t}")) {
            return respond(stream, 401, r#"{"detail":"Unauthorized"}"#, None);
        }
    }
    let model = request["model"].as_str().unwrap_or("").to_owned();
    if config.models.as_ref().is_some_and(|m| !m.contains(&model)) {
        let msg = format!(
            "Invalid model: Engine for model name `{model}` not found. Available model names are {:?}",
            config.models
        );
        return respond(
            stream,
            400,
            &serde_json::json!({"error": {"message": msg, "code": 400}}).to_string(),
            None,
        );
    }
    let tries = {
        let mut t = stats.tries.lock().unwrap();
        let n = t.entry(texts.join("\u{0}")).or_default();
        *n += 1;
        *n
    };
    if let Some(r) = fault(stream, &texts, tries, req.auth.as_deref()) {
        return r;
    }
    let served = config.served_model.clone().unwrap_or(model);
    respond(
        stream,
        200,
        &answer(&texts, config, config.shape.unwrap_or(ollama), &served),
        None,
    )
}

/// Answers a text's marker asks for, if any.
fn fault(stream: &mut TcpStream, texts: &[String], tries: usize, auth: Option<&str>) -> Option<std::io::Result<()>> {
    let has = |m: &str| texts.iter().any(|t| t.contains(m));
    Some(if has("@drop") && tries == 1 {
        // Close the connection without an answer.
        let _ = stream.shutdown(std::net::Shutdown::Both);
        Err(std::io::Error::other("dropped on purpose"))
    } else if has("@429") && tries <= 2 {
        respond(stream, 429, "slow down", Some(("Retry-After", "0")))
    } else if has("@nan-retry") && tries <= 2 {
        respond(stream, 429, "slow down", Some(("Retry-After", "NaN")))
    } else if has("@huge-retry") && tries == 1 {
        respond(stream, 429, "slow down", Some(("Retry-After", "1e300")))
    } else if has("@503") {
        respond(stream, 503, "overloaded", Some(("Retry-After", "30")))
    } else if (has("@flaky") && tries <= 2) || has("@500") {
        respond(stream, 500, "internal error", None)
    } else if has("@malformed") {
        respond(stream, 200, "{\"embeddings\": [[0.1, ", None)
    } else if has("@huge-body") {
        respond_huge(stream, 20)
    } else if has("@echo") {
        let body = serde_json::json!({"error": "cannot read input", "request_headers": {"authorization": auth}});
        respond(stream, 400, &body.to_string(), None)
    } else {
        return None;
    })
}

/// A good answer in Ollama's shape or OpenAI's.
fn answer(texts: &[String], config: &Config, ollama: bool, served: &str) -> String {
    let mut vectors: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| match t {
            t if t.contains("@wide") => vector(t, config.dim + 1),
            t if t.contains("@zero") => vec![0.0; config.dim],
            t => vector(t, config.dim),
        })
        .collect();
    if texts.iter().any(|t| t.contains("@short")) {
        vectors.pop();
    }
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    if ollama {
        return serde_json::json!({"embeddings": vectors, "model": served, "prompt_eval_count": tokens}).to_string();
    }
    let mut data: Vec<serde_json::Value> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| serde_json::json!({"index": i, "embedding": v}))
        .collect();
    data.reverse();
    serde_json::json!({"object": "list", "data": data, "model": served, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
        .to_string()
}

/// `/api/show` (Ollama) or `/models` (OpenAI, vLLM's field) for the window.
fn window_answer(path: &str, config: &Config) -> String {
    let model = config.served_model.clone().unwrap_or_else(|| "m".into());
    match (path, config.window) {
        ("/api/show", Some(w)) => serde_json::json!({"model_info": {"bert.context_length": w}}).to_string(),
        ("/api/show", None) => serde_json::json!({"model_info": {}}).to_string(),
        (_, Some(w)) => serde_json::json!({"data": [{"id": model, "max_model_len": w}]}).to_string(),
        (_, None) => serde_json::json!({"data": [{"id": model}]}).to_string(),
    }
}

/// Counts a request out of flight when its answer is written.
struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
