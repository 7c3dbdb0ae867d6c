//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_diversity-gpu"));
    c.env("RUST_LOG", "info");
    c
}

pub fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/corpus").join(name)
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

/// The number written just before `marker` in `text` ("40 from the journal").
pub fn number_before(text: &str, marker: &str) -> usize {
    let before = text.split(marker).next().expect("split yields one part");
    let word = before.rsplit(' ').next().unwrap_or_default();
    // Counts of 1,000 and more are written with thousands separators.
    word.replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("no number before {marker:?} in:\n{text}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn ok(args: &[&str]) -> Output {
    let o = run(args);
    assert!(o.status.success(), "{args:?} failed:\n{}", stderr(&o));
    o
}

pub use crate::support::skip::skip;

/// Runs the benchmark binary, `diversity-bench`, whatever the outcome.
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diversity-bench"))
        .env("RUST_LOG", "info")
        .args(args)
        .output()
        .expect("the benchmark binary runs")
}

/// Runs precompute on the bundled corpus into `dir` (CPU unless `extra`
/// names a backend), whatever the outcome.
pub fn try_precompute(dir: &Path, extra: &[&str]) -> Output {
    try_precompute_stopped(dir, extra, None)
}

/// [`try_precompute`], stopped after `chunks` chunks (when given) by the
/// `DIVERSITY_TEST_STOP_AFTER` hook, as Ctrl-C would stop it there.
pub fn try_precompute_stopped(dir: &Path, extra: &[&str], chunks: Option<usize>) -> Output {
    let p = corpus("poems.json");
    let e = corpus("embeddings.json");
    let mut args = vec![
        "precompute",
        "--poems",
        p.to_str().unwrap(),
        "--embeddings",
        e.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ];
    if !extra.contains(&"--backend") {
        args.extend(["--backend", "cpu"]);
    }
    args.extend_from_slice(extra);
    let mut cmd = bin();
    if let Some(c) = chunks {
        cmd.env("DIVERSITY_TEST_STOP_AFTER", c.to_string());
    }
    cmd.args(&args).output().expect("the binary runs")
}

/// Precomputes the bundled corpus into `dir`, which must succeed.
pub fn precompute(dir: &Path, extra: &[&str]) -> Output {
    let o = try_precompute(dir, extra);
    assert!(o.status.success(), "precompute {extra:?} failed:\n{}", stderr(&o));
    o
}

/// The newest generation folder (`gen-<n>`) of a cache, if any.
pub fn newest_generation(cache: &Path) -> Option<PathBuf> {
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("gen-")?.parse::<u64>().ok()
        })
        .max()
        .map(|n| cache.join(format!("gen-{n}")))
}

/// The folder of a cache's data files: the generation its manifest names,
/// or, before there is a manifest, the newest generation folder (where an
/// unfinished run writes).
pub fn data_dir(cache: &Path) -> PathBuf {
    let named = std::fs::read(cache.join("manifest.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["generation"].as_u64());
    match named {
        Some(g) => cache.join(format!("gen-{g}")),
        None => newest_generation(cache).unwrap_or_else(|| cache.to_path_buf()),
    }
}

/// Where a cache keeps `name`: the manifest and the lock at the top, every
/// other file in the generation folder.
pub fn cache_file(cache: &Path, name: &str) -> PathBuf {
    match name {
        "manifest.json" | "lock" => cache.join(name),
        _ => data_dir(cache).join(name),
    }
}

/// Asserts that the named cache files are byte-identical in two caches.
pub fn assert_same_files(a: &Path, b: &Path, names: &[&str]) {
    for f in names {
        let (x, y) = (
            std::fs::read(cache_file(a, f)).unwrap(),
            std::fs::read(cache_file(b, f)).unwrap(),
        );
        assert!(x == y, "{f} differs between {} and {}", a.display(), b.display());
    }
}

/// Every file of a cache (relative path → bytes), the lock left out.
pub fn cache_snapshot(cache: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![cache.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() != "lock" {
                let rel = p.strip_prefix(cache).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A child started with a test pause (`DIVERSITY_TEST_HOLD`) at `point`,
/// once it has stopped there: the child, the rest of its stderr, and what
/// it wrote to stderr before the pause.
type Held = (
    std::process::Child,
    std::io::BufReader<std::process::ChildStderr>,
    String,
);

#[expect(
    clippy::zombie_processes,
    reason = "the child goes back to the caller, who waits for it"
)]
fn start_held(mut cmd: Command, point: &str, stdout: std::process::Stdio) -> Held {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = cmd
        .env("DIVERSITY_TEST_HOLD", point)
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            let status = child.wait();
            panic!("the command ended ({status:?}) before it paused at {point}:\n{seen}");
        }
        seen += &line;
        if line.contains(&format!("test pause: {point}")) {
            return (child, err, seen);
        }
    }
}

/// Starts `cmd` with a test pause at `point` and returns it once it has
/// stopped there (its stderr drained meanwhile), for the test to kill.
pub fn spawn_paused(cmd: Command, point: &str) -> std::process::Child {
    let (child, mut err, _) = start_held(cmd, point, std::process::Stdio::null());
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    child
}

/// A command started with a test pause (`DIVERSITY_TEST_HOLD`): waits
/// until it stops at `point`, runs `meanwhile`, then lets it go on and
/// returns its output.
pub fn run_paused(cmd: Command, point: &str, meanwhile: impl FnOnce()) -> Output {
    use std::io::Write;
    let (mut child, mut err, seen) = start_held(cmd, point, std::process::Stdio::piped());
    // Drained meanwhile, so the child never blocks on a full pipe.
    let rest = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).unwrap();
        s
    });
    let mut out = child.stdout.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut v).unwrap();
        v
    });
    meanwhile();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: (seen + &rest.join().unwrap()).into_bytes(),
    }
}

/// Arguments of a precompute slow enough to interrupt: one CPU thread,
/// checkpoints of 8 starts, over a synthetic corpus at `corpus`.
pub fn slow_precompute_args(corpus: &Path, out: &Path) -> Vec<String> {
    let (c, o) = (corpus.to_str().unwrap(), out.to_str().unwrap());
    [
        "precompute",
        "--poems",
        c,
        "--out",
        o,
        "--backend",
        "cpu",
        "--chunk",
        "8",
        "--threads",
        "1",
    ]
    .map(String::from)
    .to_vec()
}

/// Waits until a running precompute into `out` has checkpointed `n` chunks;
/// fails if it ends first or makes no progress.
pub fn wait_for_chunks(out: &Path, n: usize, child: &mut std::process::Child) {
    let log = || newest_generation(out).map(|g| g.join("progress.log"));
    let t = std::time::Instant::now();
    while log()
        .and_then(|l| std::fs::read_to_string(l).ok())
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < n
    {
        assert!(t.elapsed().as_secs() < 120, "no progress");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be interrupted; make the corpus larger"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A synthetic JSONL corpus of `n` poems with `dim`-d vectors.
pub fn synthetic(path: &Path, n: usize, dim: usize, seed: u64) {
    let mut s = String::new();
    let mut x = seed;
    for i in 0..n {
        let v: Vec<String> = (0..dim)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                format!("{:.5}", ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5)
            })
            .collect();
        s.push_str(&format!(
            "{{\"id\": \"p{i:05}\", \"text\": \"poem {i}\", \"embedding\": [{}]}}\n",
            v.join(",")
        ));
    }
    std::fs::write(path, s).unwrap();
}

/// Gives the child Ctrl-C's default action: a test runner started in the
/// background of a script inherits SIGINT ignored, and so would the child,
/// which would then never stop (a user's `cmd &` behaves the same way).
#[cfg(unix)]
pub fn default_ctrl_c(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: `signal` is async-signal-safe, as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        })
    }
}

#[cfg(not(unix))]
pub fn default_ctrl_c(cmd: &mut Command) -> &mut Command {
    cmd
}

/// The tests' random choices: seeded from `DIVERSITY_TEST_SEED`, else a
/// fixed seed, and the seed printed (shown with a failing test's output) so
/// that any run repeats exactly.
pub fn test_rng() -> fastrand::Rng {
    let seed = match std::env::var("DIVERSITY_TEST_SEED") {
        Ok(s) => s.parse().expect("DIVERSITY_TEST_SEED is a number"),
        Err(_) => 20_201_203,
    };
    eprintln!("random choices from seed {seed} (DIVERSITY_TEST_SEED={seed} repeats them)");
    fastrand::Rng::with_seed(seed)
}
