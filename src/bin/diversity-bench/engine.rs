//! `diversity-bench engine`: candidate updates per second of every
//! implementation of the walks (naive, reference, fused CPU on 1 and N
//! threads, GPU), beside the machine's copy bandwidth from DRAM and within
//! the cache (a walk's working set), in one run.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;

use diversity_gpu::cpu::{similar_rows, CpuBackend, SimMatrix};
use diversity_gpu::gpu::GpuOptions;
#[cfg(feature = "gpu")]
use diversity_gpu::gpu::{GpuBackend, GpuContext};
use diversity_gpu::quantize::Quantized;

use crate::peak_rss;

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

/// Multi-threaded copy bandwidth of buffers that stay in cache: every thread
/// copies its own `per_thread / 2` bytes to its other half, over and over
/// (bytes read + written per second, as STREAM counts it, summed over the
/// threads), best of 5 per thread.
pub fn cache_copy_bandwidth(per_thread: usize, pool: &rayon::ThreadPool) -> f64 {
    let half = (per_thread / 2).max(4096);
    // About 512 MiB copied per thread per try: long enough to time.
    let reps = ((512usize << 20) / half).max(1);
    let per: Vec<f64> = pool.broadcast(|_| {
        let src = vec![1u8; half];
        let mut dst = vec![0u8; half];
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                dst.copy_from_slice(&src);
                std::hint::black_box(&mut dst);
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        2.0 * (reps * half) as f64 / best
    });
    per.iter().sum()
}

/// Options of the engine benchmark.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "gpu"), allow(dead_code))]
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
    let corpus = diversity_gpu::corpus::load(&o.poems, Some(&o.embeddings), &Default::default())?;
    let prepared = diversity_gpu::quantize::prepare(&corpus, false);
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
    let pool = diversity_gpu::progress::pool(o.threads)?;
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
    let bw_pool = diversity_gpu::progress::pool(o.threads)?;
    let bw = copy_bandwidth(m.bytes().max(256 << 20), &bw_pool);
    let bound = bw / 2.0;
    println!(
        "  copy bandwidth ({threads} threads)     {:>10}B/s → bound {}updates/s at 2 bytes of row each",
        rate(bw),
        rate(bound)
    );
    let cache_bound = cache_bounds(m, &bw_pool);
    println!(
        "  {:<34} {:>14} {:>10} {:>9} {:>9}",
        "implementation", "updates/s", "of bound", "work", "of cache"
    );

    let report = Reporter { bound, cache_bound };
    baselines(&report, &q, &vecs, m);
    let cpu_rate = fused_cpu(&report, o, &backend, threads)?;
    let w = n - 1;

    let sim_pool = diversity_gpu::progress::pool(o.threads)?;
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

/// The in-cache copy bounds, measured now, printed; returns the bound of
/// the rows the walks read when those sit in the shared cache, the one the
/// `of cache` column reports against.
fn cache_bounds(m: &SimMatrix, pool: &rayon::ThreadPool) -> f64 {
    let threads = pool.current_num_threads();
    // A walk's own bytes, i32 sums and the i16 row it adds: L1/L2-sized,
    // the ceiling if rows came from as close as the sums.
    let walk_set = m.stride * 6;
    let bw = cache_copy_bandwidth(walk_set, pool);
    println!(
        "  in-cache copy, {} KiB per thread (a walk's sums + row) {:>10}B/s → bound {}updates/s",
        walk_set >> 10,
        rate(bw),
        rate(bw / 2.0)
    );
    // The rows most walks read, shared by the threads: the whole matrix
    // when it fits in 16 MiB (inside this machine's 32 MiB L3), else 16
    // MiB of it. Rows that stay in cache are read at most this fast.
    let hot = m.bytes().min(16 << 20);
    let hot_bw = cache_copy_bandwidth(hot / threads, pool);
    println!(
        "  in-cache copy, {} KiB in all (hot rows, shared cache) {:>10}B/s → bound {}updates/s (\"of cache\")",
        hot >> 10,
        rate(hot_bw),
        rate(hot_bw / 2.0)
    );
    hot_bw / 2.0
}

/// Prints one implementation's rate beside the DRAM bound (`of bound`) and
/// the in-cache bound of the hot rows (`of cache`).
struct Reporter {
    bound: f64,
    cache_bound: f64,
}

impl Reporter {
    fn report(&self, name: &str, updates: f64, secs: f64, work: String) -> f64 {
        let r = updates / secs;
        println!(
            "  {name:<34} {:>14} {:>9.1}% {work:>9} {:>8.1}%",
            format!("{}", rate(r)),
            100.0 * r / self.bound,
            100.0 * r / self.cache_bound
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
    std::hint::black_box(diversity_gpu::reference::different_naive_f64(vecs, 0, steps));
    report.report(
        "naive f64 centroid, 1 thread",
        (steps * n) as f64,
        t.elapsed().as_secs_f64(),
        format!("{steps} steps"),
    );
    let t = Instant::now();
    std::hint::black_box(diversity_gpu::reference::different(q, 0, steps));
    report.report(
        "reference (dots per step), 1 thread",
        (steps * n) as f64,
        t.elapsed().as_secs_f64(),
        format!("{steps} steps"),
    );
    let t = Instant::now();
    std::hint::black_box(diversity_gpu::reference::different_by(n, 0, w, |a, c| m.row(a)[c]));
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
    let one = diversity_gpu::progress::pool(Some(1))?;
    let secs =
        best_of_3(&mut || one.install(|| diversity_gpu::cpu::different_rows(m, 0..o.starts_per_thread, w, &mut out)));
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
    println!("  gpu: not run ({})", diversity_gpu::gpu::DISABLED);
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
    g.timings.walk = 0.0;
    g.timings.readback = 0.0;
    g.timings.device_walk = None;
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
    let device = match (g.timings.device_similarity, g.timings.device_walk) {
        (Some(a), Some(b)) => format!(" (device time by timestamps: matrix {a:.3} s, walk {b:.3} s)"),
        _ => String::new(),
    };
    println!(
        "    gpu timing: upload {:.3} s, similarity matrix {:.3} s, walk {:.3} s, readback {:.3} s{device}; {:.2}× the cpu backend{}",
        g.timings.upload,
        g.timings.similarity,
        g.timings.walk,
        g.timings.readback,
        r / cpu_rate,
        if software { " (software adapter: correctness only, not speed)" } else { "" }
    );
    // The GPU's bytes must equal the CPU's.
    let mut sums = vec![0i32; m.stride];
    let mut row = vec![0u32; w];
    for s in [0, starts / 2, starts - 1] {
        diversity_gpu::cpu::walk(m, s, &mut row, &mut sums);
        anyhow::ensure!(row == out[s * w..(s + 1) * w], "GPU and CPU differ for start {s}");
    }
    println!("    gpu output checked against the cpu backend: identical");
    Ok(())
}
