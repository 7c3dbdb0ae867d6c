//! The embedding client: batched, concurrent, cached, checkpointed requests
//! to an Ollama or OpenAI-compatible server.
//!
//! - Texts go out in batches, at most `concurrency` requests in flight.
//! - 429, 5xx, timeouts and connection errors are retried with exponential
//!   backoff and jitter, honouring `Retry-After`. A batch that still fails,
//!   or answers with the wrong count or dimension, is split in halves until
//!   the bad items are isolated; each failure is recorded with its reason.
//! - Every vector is appended to a cache (`<out>.cache.jsonl`) as it arrives,
//!   keyed by a hash of model, prefix and text: a crash loses at most the
//!   requests in flight, and an unchanged corpus sends nothing.
//! - Texts longer than `max_chars` are split at paragraph or line
//!   boundaries; their chunks are combined by a length-weighted mean and
//!   renormalised.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::json;

use crate::corpus::{self, Poem};

/// Which protocol the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// `POST /api/embed` with `{"model", "input"}` → `{"embeddings"}`.
    Ollama,
    /// `POST /v1/embeddings` with `{"model", "input"}` → `{"data": [{"index", "embedding"}]}`.
    Openai,
}

/// Options of `embed`.
#[derive(Debug, Clone)]
pub struct Options {
    pub poems: PathBuf,
    pub out: PathBuf,
    /// Server base URL, e.g. `http://localhost:11434`.
    pub url: String,
    pub api: Api,
    pub model: String,
    pub batch_size: usize,
    pub concurrency: usize,
    /// Prepended to every text (e.g. `search_document: `).
    pub prefix: String,
    pub max_chars: usize,
    pub timeout: Duration,
    pub retries: u32,
    pub fail_fast: bool,
    pub token: Option<String>,
    pub progress: bool,
    /// How often the output file is rewritten during a run.
    pub flush_every: Duration,
    /// Base of the exponential backoff.
    pub backoff: Duration,
}

/// What an `embed` run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub poems: usize,
    /// Poems embedded by this run's requests.
    pub embedded: usize,
    /// Poems whose every chunk came from the cache.
    pub cached: usize,
    /// Failed poems, with reasons.
    pub failures: Vec<(String, String)>,
    pub requests: usize,
    pub retries: usize,
    pub texts_sent: usize,
    pub seconds: f64,
    pub dimension: usize,
}

impl Summary {
    /// Failures counted by reason.
    pub fn failures_by_reason(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (_, r) in &self.failures {
            let kind = r.split(':').next().unwrap_or(r).to_owned();
            *m.entry(kind).or_default() += 1;
        }
        m
    }
}

/// Splits text into chunks of at most `max` characters, at paragraph
/// boundaries, else line boundaries, else spaces, else anywhere.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    if text.chars().count() <= max {
        return vec![text.to_owned()];
    }
    let mut pieces: Vec<String> = Vec::new();
    for para in text.split("\n\n") {
        if para.chars().count() <= max {
            pieces.push(para.to_owned());
            continue;
        }
        for line in para.split('\n') {
            if line.chars().count() <= max {
                pieces.push(line.to_owned());
                continue;
            }
            let mut cur = String::new();
            for word in line.split(' ') {
                for part in hard_split(word, max) {
                    if !cur.is_empty() && cur.chars().count() + 1 + part.chars().count() > max {
                        pieces.push(std::mem::take(&mut cur));
                    }
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    cur.push_str(&part);
                }
            }
            if !cur.is_empty() {
                pieces.push(cur);
            }
        }
    }
    // Pack the pieces greedily back up to `max`.
    let mut chunks: Vec<String> = Vec::new();
    for p in pieces.into_iter().filter(|p| !p.trim().is_empty()) {
        match chunks.last_mut() {
            Some(last) if last.chars().count() + 2 + p.chars().count() <= max => {
                last.push_str("\n\n");
                last.push_str(&p);
            }
            _ => chunks.push(p),
        }
    }
    if chunks.is_empty() {
        chunks.push(String::new());
    }
    chunks
}

fn hard_split(word: &str, max: usize) -> Vec<String> {
    let chars: Vec<char> = word.chars().collect();
    chars.chunks(max).map(|c| c.iter().collect()).collect()
}

/// The cache key of one text.
pub fn text_hash(model: &str, prefix: &str, text: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [model, prefix, text] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex()[..32].to_owned()
}

/// Where the cache of an output file lives.
pub fn cache_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".cache.jsonl");
    PathBuf::from(s)
}

#[derive(serde::Serialize, Deserialize)]
struct CacheLine {
    h: String,
    e: Vec<f32>,
}

/// Reads the cache; a torn or damaged line is skipped.
fn read_cache(path: &Path) -> HashMap<String, Vec<f32>> {
    let mut map = HashMap::new();
    let Ok(f) = std::fs::File::open(path) else { return map };
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        if let Ok(c) = serde_json::from_str::<CacheLine>(&line) {
            map.insert(c.h, c.e);
        }
    }
    map
}

/// Why a request failed.
#[derive(Debug, Clone)]
enum Failure {
    /// Worth retrying (429, 5xx, timeout, connection); maybe with a wait.
    Transient(String, Option<Duration>),
    /// Retrying the same request will not help; splitting might.
    Permanent(String),
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Failure::Transient(r, _) | Failure::Permanent(r) => r,
        }
    }
}

struct Client {
    agent: ureq::Agent,
    url: String,
    api: Api,
    model: String,
    token: Option<String>,
    /// Expected dimension, set by the first good answer (0 = unknown).
    dim: AtomicUsize,
    requests: AtomicUsize,
    retries: AtomicUsize,
    texts: AtomicUsize,
    retries_allowed: u32,
    backoff: Duration,
}

#[derive(Deserialize)]
struct OllamaAnswer {
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct OpenAiAnswer {
    data: Vec<OpenAiItem>,
}

#[derive(Deserialize)]
struct OpenAiItem {
    index: usize,
    embedding: Vec<f32>,
}

impl Client {
    fn endpoint(&self) -> String {
        let base = self.url.trim_end_matches('/');
        match self.api {
            Api::Ollama => format!("{base}/api/embed"),
            Api::Openai if base.ends_with("/v1") => format!("{base}/embeddings"),
            Api::Openai => format!("{base}/v1/embeddings"),
        }
    }

    /// One HTTP request for `texts`.
    fn send(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Failure> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.texts.fetch_add(texts.len(), Ordering::Relaxed);
        let mut req = self.agent.post(self.endpoint());
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let resp = req.send_json(json!({"model": self.model, "input": texts}));
        let mut resp = match resp {
            Ok(r) => r,
            Err(ureq::Error::Timeout(t)) => return Err(Failure::Transient(format!("timeout: {t}"), None)),
            Err(e) => return Err(Failure::Transient(format!("connection: {e}"), None)),
        };
        let status = resp.status().as_u16();
        if status != 200 {
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|s| Duration::from_secs_f64(s.clamp(0.0, 120.0)));
            let body = resp.body_mut().read_to_string().unwrap_or_default();
            let msg = format!("http {status}: {}", body.chars().take(200).collect::<String>());
            return Err(if status == 429 || status >= 500 {
                Failure::Transient(msg, wait)
            } else {
                Failure::Permanent(msg)
            });
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()
            .map_err(|e| Failure::Transient(format!("connection: {e}"), None))?;
        let vectors = match self.api {
            Api::Ollama => {
                serde_json::from_str::<OllamaAnswer>(&body)
                    .map_err(|e| Failure::Transient(format!("malformed answer: {e}"), None))?
                    .embeddings
            }
            Api::Openai => {
                let a: OpenAiAnswer = serde_json::from_str(&body)
                    .map_err(|e| Failure::Transient(format!("malformed answer: {e}"), None))?;
                // Map by index, never by arrival order.
                let mut out: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
                for item in a.data {
                    match out.get_mut(item.index) {
                        Some(slot @ None) => *slot = Some(item.embedding),
                        _ => {
                            return Err(Failure::Permanent(format!(
                                "wrong count: bad or repeated index {}",
                                item.index
                            )))
                        }
                    }
                }
                out.into_iter()
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| Failure::Permanent(format!("wrong count: fewer than {} items", texts.len())))?
            }
        };
        if vectors.len() != texts.len() {
            return Err(Failure::Permanent(format!(
                "wrong count: {} vectors for {} texts",
                vectors.len(),
                texts.len()
            )));
        }
        for v in &vectors {
            if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                return Err(Failure::Permanent("unusable vector: empty or not finite".into()));
            }
            let want = match self
                .dim
                .compare_exchange(0, v.len(), Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => v.len(),
                Err(d) => d,
            };
            if v.len() != want {
                return Err(Failure::Permanent(format!(
                    "wrong dimension: {} instead of {want}",
                    v.len()
                )));
            }
        }
        Ok(vectors)
    }

    /// `send` with retries for transient failures.
    fn send_retrying(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Failure> {
        let mut attempt = 0;
        loop {
            match self.send(texts) {
                Err(Failure::Transient(msg, wait)) if attempt < self.retries_allowed => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let backoff = self
                        .backoff
                        .mul_f64(2f64.powi(attempt as i32))
                        .min(Duration::from_secs(30));
                    // Full jitter in [½, 1) of the backoff, unless the server said when.
                    let sleep = wait.unwrap_or_else(|| backoff.mul_f64(0.5 + fastrand::f64() / 2.0));
                    log::debug!("retrying after {sleep:?}: {msg}");
                    std::thread::sleep(sleep);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Embeds a batch, splitting it to isolate items that fail.
    fn embed(&self, items: &[(usize, &str)], out: &mpsc::Sender<(usize, Result<Vec<f32>, String>)>, stop: &AtomicBool) {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let texts: Vec<&str> = items.iter().map(|(_, t)| *t).collect();
        match self.send_retrying(&texts) {
            Ok(vs) => {
                for ((i, _), v) in items.iter().zip(vs) {
                    let _ = out.send((*i, Ok(v)));
                }
            }
            Err(f) if items.len() == 1 => {
                let _ = out.send((items[0].0, Err(f.reason().to_owned())));
            }
            Err(f) => {
                log::debug!("batch of {} failed ({}); splitting", items.len(), f.reason());
                let (a, b) = items.split_at(items.len() / 2);
                self.embed(a, out, stop);
                self.embed(b, out, stop);
            }
        }
    }
}

/// A chunk's outcome: not yet known, its vector, or why it failed.
type Outcome = Option<Result<Vec<f32>, String>>;

struct Chunk {
    poem: usize,
    text: String,
    weight: usize,
    hash: String,
}

/// Runs `embed` end to end.
pub fn run(o: &Options) -> Result<Summary> {
    let start = Instant::now();
    let poems = corpus::load_poems(&o.poems)?;
    let mut chunks = Vec::new();
    for (i, p) in poems.iter().enumerate() {
        for c in split_text(&p.text, o.max_chars) {
            let text = format!("{}{c}", o.prefix);
            chunks.push(Chunk {
                poem: i,
                weight: c.chars().count().max(1),
                hash: text_hash(&o.model, &o.prefix, &c),
                text,
            });
        }
    }
    let cache_file = cache_path(&o.out);
    let cache = read_cache(&cache_file);
    let mut results: Vec<Outcome> = chunks.iter().map(|c| cache.get(&c.hash).cloned().map(Ok)).collect();
    let cached_poems: Vec<bool> = {
        let mut all = vec![true; poems.len()];
        for (c, r) in chunks.iter().zip(&results) {
            all[c.poem] &= r.is_some();
        }
        all
    };
    let dim = results.iter().flatten().flatten().map(Vec::len).next().unwrap_or(0);
    let todo: Vec<usize> = (0..chunks.len()).filter(|&i| results[i].is_none()).collect();
    log::info!(
        "{} poems in {} texts: {} from the cache, {} to send to {}",
        poems.len(),
        chunks.len(),
        chunks.len() - todo.len(),
        todo.len(),
        o.url
    );

    let client = Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(o.timeout))
            .max_idle_connections_per_host(o.concurrency.max(1))
            .build()
            .new_agent(),
        url: o.url.clone(),
        api: o.api,
        model: o.model.clone(),
        token: o.token.clone(),
        dim: AtomicUsize::new(dim),
        requests: AtomicUsize::new(0),
        retries: AtomicUsize::new(0),
        texts: AtomicUsize::new(0),
        retries_allowed: o.retries,
        backoff: o.backoff,
    };
    // Distinct texts only: duplicates share one request slot.
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    let mut unique = Vec::new();
    let mut twins: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &todo {
        match first_of.get(chunks[i].hash.as_str()) {
            Some(&f) => twins.entry(f).or_default().push(i),
            None => {
                first_of.insert(&chunks[i].hash, i);
                unique.push(i);
            }
        }
    }
    let batches: Mutex<VecDeque<Vec<(usize, &str)>>> = Mutex::new(
        unique
            .chunks(o.batch_size.max(1))
            .map(|b| b.iter().map(|&i| (i, chunks[i].text.as_str())).collect())
            .collect(),
    );
    let stop = AtomicBool::new(false);
    let bar = crate::progress::progress_bar(o.progress, unique.len() as u64, "texts");
    let mut cache_out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&cache_file)
            .with_context(|| format!("cannot open {}", cache_file.display()))?,
    );
    let mut last_flush = Instant::now();
    let mut fatal: Option<String> = None;
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = mpsc::channel();
        for _ in 0..o.concurrency.max(1) {
            let tx = tx.clone();
            let (client, batches, stop) = (&client, &batches, &stop);
            s.spawn(move || loop {
                let next = batches.lock().unwrap().pop_front();
                if crate::interrupt::requested() {
                    stop.store(true, Ordering::Relaxed);
                }
                match next {
                    Some(b) if !stop.load(Ordering::Relaxed) => client.embed(&b, &tx, stop),
                    _ => break,
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            if let Ok(v) = &r {
                serde_json::to_writer(
                    &mut cache_out,
                    &CacheLine {
                        h: chunks[i].hash.clone(),
                        e: v.clone(),
                    },
                )?;
                cache_out.write_all(b"\n")?;
                cache_out
                    .flush()
                    .with_context(|| format!("cannot write {}", cache_file.display()))?;
            } else if o.fail_fast && fatal.is_none() {
                fatal = Some(format!("{}: {}", poems[chunks[i].poem].key, r.as_ref().unwrap_err()));
                stop.store(true, Ordering::Relaxed);
            }
            for &t in twins.get(&i).into_iter().flatten() {
                results[t] = Some(r.clone());
            }
            results[i] = Some(r);
            bar.inc(1);
            if last_flush.elapsed() >= o.flush_every {
                write_output(o, &poems, &chunks, &results, client.dim.load(Ordering::SeqCst))?;
                last_flush = Instant::now();
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let dim = client.dim.load(Ordering::SeqCst);
    let failures = write_output(o, &poems, &chunks, &results, dim)?;
    let mut summary = Summary {
        poems: poems.len(),
        requests: client.requests.load(Ordering::Relaxed),
        retries: client.retries.load(Ordering::Relaxed),
        texts_sent: client.texts.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
        dimension: dim,
        failures,
        ..Default::default()
    };
    summary.cached = cached_poems.iter().filter(|&&c| c).count();
    summary.embedded = poems.len() - summary.cached - summary.failures.len() - missing(&poems, &chunks, &results);
    if crate::interrupt::requested() {
        anyhow::bail!(
            "interrupted; finished embeddings are saved in {}, run the same command to resume",
            o.out.display()
        );
    }
    if let Some(f) = fatal {
        anyhow::bail!(
            "stopped at the first failure (--fail-fast): {f}; finished embeddings are saved, run again to resume"
        );
    }
    Ok(summary)
}

fn missing(poems: &[Poem], chunks: &[Chunk], results: &[Outcome]) -> usize {
    let mut done = vec![true; poems.len()];
    for (c, r) in chunks.iter().zip(results) {
        done[c.poem] &= r.is_some();
    }
    done.iter().filter(|d| !**d).count()
}

/// Writes the output in the original `embeddings.json` layout, atomically;
/// returns the failed poems.
fn write_output(
    o: &Options,
    poems: &[Poem],
    chunks: &[Chunk],
    results: &[Outcome],
    dim: usize,
) -> Result<Vec<(String, String)>> {
    let mut per_poem: Vec<Vec<(&Chunk, &Outcome)>> = vec![Vec::new(); poems.len()];
    for (c, r) in chunks.iter().zip(results) {
        per_poem[c.poem].push((c, r));
    }
    let mut entries = Vec::new();
    let mut failures = Vec::new();
    for (i, (p, parts)) in poems.iter().zip(per_poem).enumerate() {
        let mut entry = json!({"poem_index": i + 1, "id": p.id, "content_length": p.text.chars().count()});
        if let Some(c) = &p.category {
            entry["category"] = c.clone().into();
        }
        if let Some(err) = parts
            .iter()
            .find_map(|(_, r)| r.as_ref().and_then(|r| r.as_ref().err()))
        {
            failures.push((p.key.clone(), err.clone()));
            entry["error"] = err.clone().into();
        } else if parts.iter().all(|(_, r)| r.is_some()) {
            let vs: Vec<(usize, &Vec<f32>)> = parts
                .iter()
                .map(|(c, r)| (c.weight, r.as_ref().unwrap().as_ref().unwrap()))
                .collect();
            entry["embedding"] = combine(&vs).into();
        } else {
            continue; // not done yet
        }
        entries.push(entry);
    }
    let done = entries.iter().filter(|e| e.get("embedding").is_some()).count();
    let doc = json!({
        "metadata": {
            "total_poems": poems.len(),
            "embedding_model": o.model,
            "embedding_dimension": dim,
            "endpoint": o.url,
            "api": format!("{:?}", o.api).to_lowercase(),
            "prefix": o.prefix,
            "generated_at": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            "completed": done,
            "missing": poems.len() - done,
            "failures": failures.iter().map(|(k, r)| json!({"key": k, "reason": r})).collect::<Vec<_>>(),
        },
        "embeddings": entries,
    });
    crate::fs::write_atomic(&o.out, &serde_json::to_vec(&doc)?)?;
    Ok(failures)
}

/// Length-weighted mean of chunk vectors, renormalised; one chunk is kept
/// as the server gave it.
pub fn combine(parts: &[(usize, &Vec<f32>)]) -> Vec<f32> {
    if let [(_, v)] = parts {
        return (*v).clone();
    }
    let dim = parts[0].1.len();
    let mut acc = vec![0f64; dim];
    for (w, v) in parts {
        for (a, x) in acc.iter_mut().zip(v.iter()) {
            *a += *w as f64 * *x as f64;
        }
    }
    let norm = acc.iter().map(|x| x * x).sum::<f64>().sqrt();
    acc.iter()
        .map(|x| if norm > 0.0 { (x / norm) as f32 } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_split_at_paragraphs_then_lines() {
        let text = "aaaa aaaa\n\nbbbb\ncccc\n\ndddd";
        assert_eq!(split_text(text, 100), vec![text.to_string()]);
        assert_eq!(split_text(text, 12), vec!["aaaa aaaa", "bbbb\ncccc", "dddd"]);
        assert_eq!(split_text(text, 5), vec!["aaaa", "aaaa", "bbbb", "cccc", "dddd"]);
        for c in split_text(&"x".repeat(23), 10) {
            assert!(c.chars().count() <= 10);
        }
    }

    #[test]
    fn chunks_combine_by_length_and_renormalise() {
        let a = vec![1.0, 0.0];
        let b = vec![0.0, 1.0];
        let v = combine(&[(3, &a), (1, &b)]);
        let n = (v[0] * v[0] + v[1] * v[1]).sqrt();
        assert!((n - 1.0).abs() < 1e-6);
        assert!((v[0] / v[1] - 3.0).abs() < 1e-5);
        assert_eq!(combine(&[(5, &vec![2.0, 0.0])]), vec![2.0, 0.0]);
    }

    #[test]
    fn hashes_depend_on_model_prefix_and_text() {
        let h = text_hash("m", "p", "t");
        assert_ne!(h, text_hash("m2", "p", "t"));
        assert_ne!(h, text_hash("m", "", "pt"));
        assert_eq!(h, text_hash("m", "p", "t"));
    }
}
