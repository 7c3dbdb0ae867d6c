//! In-process embedding against sentence-transformers, side by side in one
//! run: the same texts, the same model files (all-MiniLM-L6-v2 from
//! `scripts/fetch-test-model.sh`), rounds alternating between this tool's
//! `embed` (the whole run: journal and output file included, model loading
//! not) and `benches/st_peer.py` (its `encode` with defaults).
//! Reports texts/s of each per round, the ratio's median, and the lowest
//! cosine between the two tools' vectors.
//!
//! `cargo bench --bench embed_local -- [POEMS] [N] [ROUNDS]` (default: the
//! first 2,000 fortunes, else the bundled corpus; 3 rounds). The Python side
//! runs in `$REAL_SERVER_VENV` (default
//! ~/.cache/diversity-gpu/real-server-venv, made by scripts/real-server-test.sh).

#[path = "../tests/it/support/model.rs"]
mod model;
#[path = "../tests/it/support/skip.rs"]
mod skip;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diversity_gpu::corpus;
use diversity_gpu::embed::{self, Api, Options, Policy};

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("REAL_SERVER_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/diversity-gpu/real-server-venv")
        });
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "no Python with sentence-transformers at {}: run scripts/real-server-test.sh once (it makes the venv)",
        py.display()
    );
    py
}

fn options(poems: PathBuf, out: PathBuf, local: Arc<embed::LocalModel>) -> Options {
    Options {
        poems,
        out,
        url: String::new(),
        api: Api::Openai,
        model: local.name.clone(),
        batch_size: 32,
        concurrency: 1,
        prefix: String::new(),
        max_chars: None,
        timeout: Duration::from_secs(60),
        policy: Policy {
            retries: 0,
            backoff: Duration::from_millis(100),
            max_wait: Duration::from_secs(1),
            give_up_after: Duration::from_secs(1),
        },
        fail_fast: true,
        token: None,
        progress: false,
        flush_every: Duration::from_secs(3600),
        local: Some(local),
        split_long: false,
    }
}

/// One round of ours: texts/s over the embedding phase, and the vectors.
fn ours(dir: &Path, poems: &Path, m: &Arc<embed::LocalModel>, round: usize) -> (f64, Vec<Vec<f64>>) {
    let out = dir.join(format!("ours-{round}.json"));
    let s = embed::run(&options(poems.to_owned(), out.clone(), m.clone())).unwrap();
    assert!(s.failures.is_empty() && s.stopped.is_none());
    let secs: f64 = s
        .timings
        .iter()
        .filter(|(p, _)| *p != "model, journal")
        .map(|(_, t)| t)
        .sum();
    let c = corpus::load(poems, Some(&out), &Default::default()).unwrap();
    (
        s.texts_embedded as f64 / secs,
        c.vectors.into_iter().map(Result::unwrap).collect(),
    )
}

/// One round of sentence-transformers: texts/s of `encode`, and its vectors.
fn peer(py: &Path, model: &Path, texts: &Path, dir: &Path) -> (f64, f64, Vec<Vec<f64>>) {
    let out = dir.join("peer.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/st_peer.py");
    let st = Command::new(py)
        .arg(script)
        .args([model, texts, &out])
        .env("HF_HUB_OFFLINE", "1")
        .env("TRANSFORMERS_OFFLINE", "1")
        .status()
        .unwrap();
    assert!(st.success(), "sentence-transformers failed");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let n = v["texts"].as_f64().unwrap();
    let vectors = serde_json::from_value(v["vectors"].clone()).unwrap();
    (
        n / v["encode_s"].as_f64().unwrap(),
        v["load_s"].as_f64().unwrap(),
        vectors,
    )
}

fn lowest_cosine(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let dot: f64 = x.iter().zip(y).map(|(p, q)| p * q).sum();
            let n = |v: &Vec<f64>| v.iter().map(|p| p * p).sum::<f64>().sqrt();
            dot / (n(x) * n(y))
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    // As the CLI does, before any thread starts.
    embed::one_thread_per_batch();
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fortunes = root.join("../shared/corpora/fortunes/poems.json");
    let poems = args.first().map(PathBuf::from).unwrap_or_else(|| {
        if fortunes.exists() {
            fortunes
        } else {
            root.join("assets/corpus/poems.json")
        }
    });
    let n: usize = args.get(1).map_or(2000, |s| s.parse().expect("N is a number"));
    let rounds: usize = args.get(2).map_or(3, |s| s.parse().expect("ROUNDS is a number"));
    let model_dir = model::dir().expect("the model files: scripts/fetch-test-model.sh");
    let py = venv_python();

    let dir = tempfile::tempdir().unwrap();
    let all = corpus::load_poems(&poems).unwrap();
    let texts: Vec<&str> = all.iter().take(n).map(|p| p.text.as_str()).collect();
    let lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| serde_json::json!({"id": i.to_string(), "text": t}).to_string())
        .collect();
    let jsonl = dir.path().join("poems.jsonl");
    std::fs::write(&jsonl, lines.join("\n")).unwrap();
    let texts_json = dir.path().join("texts.json");
    std::fs::write(&texts_json, serde_json::to_vec(&texts).unwrap()).unwrap();
    let chars: usize = texts.iter().map(|t| t.chars().count()).sum();

    let t = Instant::now();
    let m = Arc::new(embed::load_model(Some("all-MiniLM-L6-v2"), Some(&model_dir), false).unwrap());
    let our_load = t.elapsed().as_secs_f64();
    println!(
        "in-process embedding: {} texts from {} ({} characters on average), {} cores, model {}",
        texts.len(),
        poems.display(),
        chars / texts.len().max(1),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        model_dir.display()
    );
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let (ours_rate, ours_vectors) = ours(dir.path(), &jsonl, &m, round);
        let (peer_rate, peer_load, peer_vectors) = peer(&py, &model_dir, &texts_json, dir.path());
        ratios.push(ours_rate / peer_rate);
        println!(
            "  round {}: diversity-gpu {ours_rate:7.1} texts/s   sentence-transformers {peer_rate:7.1} texts/s   ratio {:.2}   lowest cosine {:.7}   (model load: ours {our_load:.2} s, theirs {peer_load:.2} s)",
            round + 1,
            ours_rate / peer_rate,
            lowest_cosine(&ours_vectors, &peer_vectors)
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "  median ratio (diversity-gpu / sentence-transformers): {:.2}",
        ratios[ratios.len() / 2]
    );
}
