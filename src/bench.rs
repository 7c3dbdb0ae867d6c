//! `bench`: throughput figures measured side by side in one run.
//!
//! Each part runs in its own process when called through `bench all`, so
//! that the peak memory it reports is its own.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::cpu::{similar_rows, CpuBackend, SimMatrix};
use crate::gpu::GpuOptions;
#[cfg(feature = "gpu")]
use crate::gpu::{GpuBackend, GpuContext};
use crate::quantize::Quantized;

/// The corpus benchmarks use: the shared fortunes corpus when found under
/// the current folder or the two above it (`shared/corpora/fortunes`), otherwise
/// the bundled one, extracted to a temp folder that `keep` holds.
pub fn default_corpus(keep: &mut Option<crate::bundled::Bundled>) -> Result<(PathBuf, PathBuf)> {
    for root in [Path::new("."), Path::new(".."), Path::new("../..")] {
        let shared = root.join("shared/corpora/fortunes");
        if shared.join("poems.json").exists() {
            return Ok((shared.join("poems.json"), shared.join("embeddings.json")));
        }
    }
    let b = keep.insert(crate::bundled::Bundled::extract()?);
    Ok((b.poems(), b.embeddings()))
}

/// A scratch directory for a benchmark's files, removed when dropped:
/// inside `dir`, else the system temp dir.
pub fn scratch(dir: Option<&Path>) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("diversity-bench-")
        .tempdir_in(dir.map_or_else(std::env::temp_dir, Path::to_path_buf))
        .context("cannot create a scratch directory")
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn rate(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else {
        format!("{:.2} k", x / 1e3)
    }
}

/// Multi-threaded copy bandwidth (bytes read + written per second, as
/// STREAM counts it), best of 5.
pub fn copy_bandwidth(bytes: usize, pool: &rayon::ThreadPool) -> f64 {
    let src = vec![1u8; bytes];
    let mut dst = vec![0u8; bytes];
    let piece = bytes.div_ceil(pool.current_num_threads() * 8).max(4096);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        pool.install(|| {
            dst.par_chunks_mut(piece)
                .zip(src.par_chunks(piece))
                .for_each(|(d, s)| d.copy_from_slice(s));
        });
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    2.0 * bytes as f64 / best
}

/// Options of the engine benchmark.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub poems: PathBuf,
    pub embeddings: PathBuf,
    pub threads: Option<usize>,
    /// Full-length walks per thread for the fused CPU backend.
    pub starts_per_thread: usize,
    /// Also run the GPU backend (on whatever adapter is found).
    pub gpu: bool,
    /// Starts and steps for the GPU run; a software adapter is slow.
    pub gpu_starts: usize,
    pub gpu_steps: Option<usize>,
    pub gpu_opts: GpuOptions,
}

/// Candidate updates per second of each implementation, side by side.
pub fn engine(o: &EngineOptions) -> Result<()> {
    let t = Instant::now();
    let corpus = crate::corpus::load(&o.poems, Some(&o.embeddings), &Default::default())?;
    let prepared = crate::quantize::prepare(&corpus, false);
    let q = prepared.vectors;
    let vecs: Vec<Vec<f64>> = corpus.vectors.iter().flatten().cloned().collect();
    drop(corpus);
    let n = q.n;
    println!(
        "engine benchmark: {} ({} poems × {} dims), loaded in {:.2} s",
        o.poems.display(),
        n,
        q.dim,
        t.elapsed().as_secs_f64()
    );
    let pool = crate::progress::pool(o.threads)?;
    let threads = pool.current_num_threads();

    let t = Instant::now();
    let backend = CpuBackend::new(&q, pool);
    let m = backend.matrix();
    let t_matrix = t.elapsed().as_secs_f64();
    println!(
        "  similarity matrix (i16, {threads} threads) {:>8.3} s   {} dot products/s, {} MiB",
        t_matrix,
        rate((n * n) as f64 / t_matrix),
        m.bytes() >> 20
    );
    let bw_pool = crate::progress::pool(o.threads)?;
    let bw = copy_bandwidth(m.bytes().max(256 << 20), &bw_pool);
    let bound = bw / 2.0;
    println!(
        "  copy bandwidth ({threads} threads)     {:>10}B/s → bound {}updates/s at 2 bytes of row each",
        rate(bw),
        rate(bound)
    );
    println!(
        "  {:<34} {:>14} {:>10} {:>9}",
        "implementation", "updates/s", "of bound", "work"
    );

    let report = Reporter { bound };
    baselines(&report, &q, &vecs, m);
    let cpu_rate = fused_cpu(&report, o, &backend, threads)?;
    let w = n - 1;

    let sim_pool = crate::progress::pool(o.threads)?;
    let sim_starts = (64 * threads).min(n);
    let mut sim = vec![0u32; sim_starts * w];
    let t = Instant::now();
    similar_rows(&q, 0..sim_starts, w, &mut sim, &sim_pool);
    let s = t.elapsed().as_secs_f64();
    println!(
        "  similar orderings (cpu, {threads} threads)   {} rows/s (all {n}: about {:.1} s)",
        rate(sim_starts as f64 / s),
        n as f64 * s / sim_starts as f64
    );

    if o.gpu {
        gpu_engine(o, &q, m, bound, cpu_rate)?;
    }
    if let Some(p) = peak_rss() {
        println!(
            "  peak RSS {} MiB (the matrix is {} MiB; no n×n float matrix is held)",
            p >> 20,
            m.bytes() >> 20
        );
    }
    Ok(())
}

/// Prints one implementation's rate beside the bandwidth bound.
struct Reporter {
    bound: f64,
}

impl Reporter {
    fn report(&self, name: &str, updates: f64, secs: f64, work: String) -> f64 {
        let r = updates / secs;
        println!(
            "  {name:<34} {:>14} {:>9.1}% {work:>9}",
            format!("{}", rate(r)),
            100.0 * r / self.bound
        );
        r
    }
}

/// The slow implementations, a few steps each: naive f64, the reference,
/// and the reference over the matrix.
fn baselines(report: &Reporter, q: &Quantized, vecs: &[Vec<f64>], m: &SimMatrix) {
    let n = q.n;
    let w = n - 1;
    // Naive f64 centroid: O(n·d) per step, so only a few steps.
    let steps = 8.min(w);
    let t = Instant::now();
    std::hint::black_box(crate::reference::different_naive_f64(vecs, 0, steps));
    report.report(
        "naive f64 centroid, 1 thread",
        (steps * n) as f64,
        t.elapsed().as_secs_f64(),
        format!("{steps} steps"),
    );
    let t = Instant::now();
    std::hint::black_box(crate::reference::different(q, 0, steps));
    report.report(
        "reference (dots per step), 1 thread",
        (steps * n) as f64,
        t.elapsed().as_secs_f64(),
        format!("{steps} steps"),
    );
    let t = Instant::now();
    std::hint::black_box(crate::reference::different_by(n, 0, w, |a, c| m.row(a)[c]));
    report.report(
        "reference over matrix, 1 thread",
        (w * n) as f64,
        t.elapsed().as_secs_f64(),
        "1 start".into(),
    );
}

/// The fused CPU backend on 1 and all threads, best of three runs each (the
/// machine is shared); returns the all-threads rate.
fn fused_cpu(report: &Reporter, o: &EngineOptions, backend: &CpuBackend, threads: usize) -> Result<f64> {
    let m = backend.matrix();
    let n = m.n;
    let w = n - 1;
    let best_of_3 = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let mut out = vec![0u32; w * o.starts_per_thread];
    let one = crate::progress::pool(Some(1))?;
    let secs = best_of_3(&mut || one.install(|| crate::cpu::different_rows(m, 0..o.starts_per_thread, w, &mut out)));
    let updates = (o.starts_per_thread * w * n) as f64;
    report.report(
        "fused cpu backend, 1 thread",
        updates,
        secs,
        format!("{} starts", o.starts_per_thread),
    );
    let starts = (o.starts_per_thread * threads).min(n);
    let mut out = vec![0u32; w * starts];
    let secs = best_of_3(&mut || backend.different(0..starts, w, &mut out));
    let name = format!("fused cpu backend, {threads} threads");
    let cpu_rate = report.report(&name, (starts * w * n) as f64, secs, format!("{starts} starts"));
    let est = (n * w * n) as f64 / cpu_rate;
    println!("  → all {n} full different orderings on this CPU: about {est:.0} s");
    Ok(cpu_rate)
}

/// Without the `gpu` feature the GPU part says why it did not run.
#[cfg(not(feature = "gpu"))]
fn gpu_engine(_o: &EngineOptions, _q: &Quantized, _m: &SimMatrix, _bound: f64, _cpu_rate: f64) -> Result<()> {
    println!("  gpu: not run ({})", crate::gpu::DISABLED);
    Ok(())
}

#[cfg(feature = "gpu")]
fn gpu_engine(o: &EngineOptions, q: &Quantized, m: &SimMatrix, bound: f64, cpu_rate: f64) -> Result<()> {
    let opts = GpuOptions {
        allow_software: true,
        ..o.gpu_opts.clone()
    };
    let ctx = match GpuContext::new(&opts) {
        Ok(c) => std::sync::Arc::new(c),
        Err(e) => {
            println!("  gpu: not run ({e:#})");
            return Ok(());
        }
    };
    let software = ctx.summary.software;
    let mut g = GpuBackend::new(ctx, q, &opts)?;
    let n = q.n;
    let w = o.gpu_steps.unwrap_or(if software { 64 } else { n - 1 }).min(n - 1);
    let starts = o.gpu_starts.min(n);
    // Warm-up (pipeline compilation, first-touch allocation), then measure.
    let mut out = vec![0u32; starts * w];
    g.different(0..starts.min(2), w, &mut out[..starts.min(2) * w])?;
    g.timings.selection = 0.0;
    g.timings.readback = 0.0;
    g.timings.device_selection = None;
    let t = Instant::now();
    g.different(0..starts, w, &mut out)?;
    let secs = t.elapsed().as_secs_f64();
    let r = (starts * w * n) as f64 / secs;
    println!(
        "  {:<34} {:>14} {:>9.1}% {:>9}",
        format!("gpu ({})", g.summary().name),
        rate(r),
        100.0 * r / bound,
        format!("{starts}×{w}")
    );
    let device = match (g.timings.device_similarity, g.timings.device_selection) {
        (Some(a), Some(b)) => format!(" (device time by timestamps: matrix {a:.3} s, selection {b:.3} s)"),
        _ => String::new(),
    };
    println!(
        "    gpu timing: upload {:.3} s, similarity matrix {:.3} s, selection {:.3} s, readback {:.3} s{device}; {:.2}× the cpu backend{}",
        g.timings.upload,
        g.timings.similarity,
        g.timings.selection,
        g.timings.readback,
        r / cpu_rate,
        if software { " (software adapter: correctness only, not speed)" } else { "" }
    );
    // The GPU's bytes must equal the CPU's.
    let mut sums = vec![0i32; m.stride];
    let mut row = vec![0u32; w];
    for s in [0, starts / 2, starts - 1] {
        crate::cpu::walk(m, s, &mut row, &mut sums);
        anyhow::ensure!(row == out[s * w..(s + 1) * w], "GPU and CPU differ for start {s}");
    }
    println!("    gpu output checked against the cpu backend: identical");
    Ok(())
}

/// Options of the render benchmark.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub poems: PathBuf,
    pub embeddings: PathBuf,
    pub threads: Option<usize>,
    pub per_page: usize,
    pub pages: usize,
    pub dir: Option<PathBuf>,
}

/// Precomputes the benchmark's cache in a child process, so the peak memory
/// measured afterwards is render's own.
fn precompute_for_render(o: &RenderOptions, cache: &Path, top_k: usize) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--quiet",
        "precompute",
        "--backend",
        "cpu",
        "--top-k",
        &top_k.to_string(),
    ])
    .arg("--poems")
    .arg(&o.poems)
    .arg("--embeddings")
    .arg(&o.embeddings)
    .arg("--out")
    .arg(cache)
    .env("RUST_LOG", "error");
    if let Some(t) = o.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let status = cmd.status().context("cannot run precompute")?;
    anyhow::ensure!(status.success(), "precompute for the render benchmark failed");
    Ok(())
}

/// Prints render's rate beside the disk's bound (plain writes before and after).
fn print_render(o: &RenderOptions, s: &crate::render::Summary, secs: f64, (first, second): (f64, f64), threads: usize) {
    let poems = s.poems_with_orderings;
    println!(
        "render benchmark: {} ({poems} poems, {} pages of {} entries, {threads} threads)",
        o.poems.display(),
        s.pages,
        o.per_page
    );
    println!(
        "  render        {:>8.3} s  {:>9.0} pages/s  {:>8.1} MB/s  ({} MB)",
        secs,
        s.pages as f64 / secs,
        s.bytes as f64 / 1e6 / secs,
        s.bytes / 1_000_000
    );
    let bound = (first + second) / 2.0;
    println!(
        "  plain writes  {:>8.3} s  {:>9.0} files/s  {:>8.1} MB/s  (same count and bytes; before {first:.3} s, after {second:.3} s: the disk's bound)",
        bound,
        s.pages as f64 / bound,
        s.bytes as f64 / 1e6 / bound,
    );
    println!("  render / bound: {:.2}×", secs / bound);
    let per_thread = poems as f64 / secs / threads as f64;
    println!(
        "  {:.0} poems/s per thread (old system: 81): {:.0}×",
        per_thread,
        per_thread / 81.0
    );
}

/// Pages/s and MB/s of `render`, beside writing the same bytes as plain files.
pub fn render(o: &RenderOptions) -> Result<()> {
    let tmp = scratch(o.dir.as_deref())?;
    let cache = tmp.path().join("cache");
    let top_k = o.per_page * o.pages;
    precompute_for_render(o, &cache, top_k)?;
    let site = tmp.path().join("site");
    // Each timed phase starts with no dirty pages from the one before, and
    // the disk's bound (the same count and bytes as plain files) is taken
    // before and after the render, since this disk's speed drifts.
    let settle = || {
        let _ = std::process::Command::new("sync").status();
    };
    let pool = crate::progress::pool(o.threads)?;
    let plain = |round: usize, pages: usize, bytes: u64| -> Result<f64> {
        let dir = tmp.path().join(format!("plain{round}"));
        settle();
        let t = Instant::now();
        crate::render::write_plain_files(&dir, pages, (bytes / pages.max(1) as u64) as usize, &pool)?;
        let secs = t.elapsed().as_secs_f64();
        settle();
        std::fs::remove_dir_all(&dir).ok();
        Ok(secs)
    };
    let before = peak_rss().unwrap_or(0);
    let render_opts = crate::render::Options {
        cache,
        poems: o.poems.clone(),
        out: site.clone(),
        per_page: Some(o.per_page),
        max_pages: None,
        budget: None,
        txt: false,
        colors: None,
        reverse: false,
        scheme: crate::render::Scheme::default(),
        title: None,
        threads: o.threads,
        progress: false,
        dry_run: true,
        wait: false,
        // The benchmark's own scratch folder: no budget.
        all: true,
    };
    // A dry run gives the page count and bytes for the first bound.
    let projected = crate::render::render(&render_opts)?;
    let first = plain(0, projected.shape.files, projected.shape.projected_bytes)?;
    settle();
    let t = Instant::now();
    let s = crate::render::render(&crate::render::Options {
        dry_run: false,
        ..render_opts
    })?;
    let secs = t.elapsed().as_secs_f64();
    let second = plain(1, s.pages, s.bytes)?;
    print_render(o, &s, secs, (first, second), pool.current_num_threads());
    if let Some(p) = peak_rss() {
        println!(
            "  peak RSS {} MiB (before render {} MiB); site {} MiB",
            p >> 20,
            before >> 20,
            s.bytes >> 20
        );
    }
    Ok(())
}

/// The `precompute` the benchmarks run, as `precompute --poems … --out …`
/// would (no progress bar, no themes, the palette it picks by default); set `out`
/// and `shard` (`--shard I/N`) per run.
pub fn precompute_options(
    poems: PathBuf,
    embeddings: Option<PathBuf>,
    backend: crate::engine::BackendChoice,
    top_k: Option<usize>,
    threads: Option<usize>,
) -> crate::precompute::Options {
    crate::precompute::Options {
        poems,
        embeddings,
        out: PathBuf::new(),
        backend,
        top_k,
        threads,
        strict: false,
        exclude: None,
        center: false,
        extras: Default::default(),
        chunk: 1024,
        gpu: GpuOptions::default(),
        progress: false,
        stop_after: None,
        shard: None,
        max_memory: None,
    }
}

/// Runs one precompute (whole, or a shard when `o.shard` is set) to the
/// end and returns its seconds and the finished cache's manifest.
pub fn timed_precompute(o: &crate::precompute::Options) -> Result<(f64, crate::cache::Manifest)> {
    let t = Instant::now();
    let done = crate::precompute::run(o)?;
    let manifest = done.manifest.context("the precompute was interrupted")?;
    Ok((t.elapsed().as_secs_f64(), manifest))
}

/// Merges finished shard caches into `out` (as `merge --out` does) and
/// returns its seconds.
pub fn timed_merge(out: &Path, shards: &[PathBuf]) -> Result<f64> {
    let t = Instant::now();
    crate::shard::merge(out, shards, false)?;
    Ok(t.elapsed().as_secs_f64())
}

/// Options of the shard benchmark.
#[derive(Debug, Clone)]
pub struct ShardsOptions {
    pub poems: PathBuf,
    pub embeddings: PathBuf,
    pub shards: usize,
    pub top_k: Option<usize>,
    pub threads: Option<usize>,
    pub backend: crate::engine::BackendChoice,
    /// Scratch directory (default: the system temp dir).
    pub dir: Option<PathBuf>,
}

/// One unsharded precompute beside the same job as `shards` shards run one
/// after another and merged, in one run: the shards' summed cost (the
/// overhead of sharding) and the slowest shard plus the merge (the wall
/// time on `shards` machines). Checks that the merge is byte-identical.
pub fn shards(o: &ShardsOptions) -> Result<()> {
    let tmp = scratch(o.dir.as_deref())?;
    let base = precompute_options(
        o.poems.clone(),
        Some(o.embeddings.clone()),
        o.backend,
        o.top_k,
        o.threads,
    );
    let run = |out: PathBuf, shard: Option<crate::shard::ShardSpec>| {
        timed_precompute(&crate::precompute::Options {
            out,
            shard,
            ..base.clone()
        })
        .map(|(secs, _)| secs)
    };
    let whole = tmp.path().join("whole");
    let t_whole = run(whole.clone(), None)?;
    let mut dirs = Vec::new();
    let mut each = Vec::new();
    for index in 0..o.shards {
        let dir = tmp.path().join(format!("shard{index}"));
        each.push(run(
            dir.clone(),
            Some(crate::shard::ShardSpec { index, count: o.shards }),
        )?);
        dirs.push(dir);
    }
    let merged = tmp.path().join("merged");
    let t_merge = timed_merge(&merged, &dirs)?;
    let (whole_cache, merged_cache) = (crate::cache::Cache::open(&whole)?, crate::cache::Cache::open(&merged)?);
    for f in [crate::cache::SIMILAR, crate::cache::DIFFERENT, crate::cache::VECTORS] {
        let same = whole_cache.file_bytes(f) == merged_cache.file_bytes(f);
        anyhow::ensure!(same, "{f} of the merged shards differs from the unsharded run's");
    }
    let sum: f64 = each.iter().sum();
    let slowest = each.iter().cloned().fold(0.0, f64::max);
    let bytes = 2 * merged_cache.manifest.ordering_bytes();
    println!(
        "shard benchmark: {}, top-k {:?}, {} shards, backend {:?}; merged orderings byte-identical to the unsharded run's",
        o.poems.display(),
        o.top_k,
        o.shards,
        o.backend
    );
    println!("| run | seconds | vs whole |");
    println!("| --- | --- | --- |");
    println!("| whole (one precompute) | {t_whole:.2} | 1.00× |");
    println!(
        "| {} shards one after another (summed) | {sum:.2} | {:.2}× the cost |",
        o.shards,
        sum / t_whole
    );
    println!(
        "| merge ({} MB of orderings) | {t_merge:.2} | {:.0} MB/s |",
        bytes / 1_000_000,
        bytes as f64 / 1e6 / t_merge
    );
    println!(
        "| on {} machines: slowest shard {slowest:.2} + merge | {:.2} | {:.2}× faster |",
        o.shards,
        slowest + t_merge,
        t_whole / (slowest + t_merge)
    );
    Ok(())
}
