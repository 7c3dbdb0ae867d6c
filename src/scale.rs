//! `bench scale`: what the whole job (every start's similar and different
//! orderings) costs as n grows, with the n × n matrix beside rows on the
//! fly, on the same synthetic clustered corpus, side by side in one run.
//! Each size and mode runs in its own process, so the peak RSS reported is
//! that run's own; the exponent of n is fitted by least squares on log–log.

use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cpu::{similar_rows, CpuBackend};
use crate::rows::{Limit, LimitSource, Needs, OnTheFly, Plan};
use crate::synthetic::{self, Shape};

/// Where the walks' rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Mode {
    /// The whole n × n matrix, computed first.
    Matrix,
    /// Rows computed on the fly behind a bounded cache.
    Rows,
}

/// Options of the scale benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    pub sizes: Vec<usize>,
    pub top_k: usize,
    pub threads: Option<usize>,
    /// Memory limit of the on-the-fly runs.
    pub rows_memory: u64,
    /// Size to project the time of, and machines to shard it over.
    pub project: usize,
    pub machines: usize,
    /// The corpus shape (its `n` is replaced by each size).
    pub shape: Shape,
}

/// Figures of one size in one mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub n: usize,
    pub mode: Mode,
    /// The whole job: matrix (if any), walks and similar orderings.
    pub secs: f64,
    pub peak_rss: u64,
    /// blake3 of every similar and different ordering, in order.
    pub hash: String,
    /// On the fly: rows asked for, rows computed, cache capacity.
    pub requests: u64,
    pub computed: u64,
    pub cache_rows: usize,
}

/// Starts per chunk, as `precompute` checkpoints them.
const CHUNK: usize = 1024;

/// Runs one size in one mode and prints its [`Run`] as one JSON line.
pub fn one(o: &Options, n: usize, mode: Mode) -> Result<()> {
    ensure!(n >= 2, "a corpus needs at least 2 poems");
    let q = synthetic::quantized(Shape { n, ..o.shape });
    let pool = crate::progress::pool(o.threads)?;
    let threads = pool.current_num_threads();
    let w = o.top_k.min(n - 1);
    let (mut sim, mut diff) = (vec![0u32; CHUNK * w], vec![0u32; CHUNK * w]);
    let mut hash = blake3::Hasher::new();
    let mut run = Run {
        n,
        mode,
        secs: 0.0,
        peak_rss: 0,
        hash: String::new(),
        requests: 0,
        computed: 0,
        cache_rows: 0,
    };
    let t = Instant::now();
    match mode {
        Mode::Matrix => {
            let sim_pool = crate::progress::pool(o.threads)?;
            let backend = CpuBackend::new(&q, pool);
            for s0 in (0..n).step_by(CHUNK) {
                let c = CHUNK.min(n - s0);
                backend.different(s0..s0 + c, w, &mut diff[..c * w]);
                similar_rows(&q, s0..s0 + c, w, &mut sim[..c * w], &sim_pool);
                hash.update(bytemuck::cast_slice(&sim[..c * w]));
                hash.update(bytemuck::cast_slice(&diff[..c * w]));
            }
        }
        Mode::Rows => {
            let needs = Needs::new(n, q.dim, w, CHUNK, threads);
            let limit = Limit {
                bytes: o.rows_memory.min(needs.with_matrix() - 1),
                from: LimitSource::Flag,
            };
            let Plan::OnTheFly { batch, cache_rows } = needs.plan(Some(limit))? else {
                bail!("the limit is below the matrix's need, so rows are on the fly")
            };
            let rows = OnTheFly::new(q, batch, cache_rows, pool);
            for s0 in (0..n).step_by(CHUNK) {
                let c = CHUNK.min(n - s0);
                rows.orderings(s0..s0 + c, w, Some(&mut sim[..c * w]), &mut diff[..c * w]);
                hash.update(bytemuck::cast_slice(&sim[..c * w]));
                hash.update(bytemuck::cast_slice(&diff[..c * w]));
            }
            let stats = rows.stats();
            (run.requests, run.computed, run.cache_rows) = (stats.requests, stats.computed, stats.capacity);
        }
    }
    run.secs = t.elapsed().as_secs_f64();
    run.peak_rss = crate::bench::peak_rss().unwrap_or(0);
    run.hash = hash.finalize().to_hex().to_string();
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// Runs `one` in a child process and reads its figures.
fn child(o: &Options, n: usize, mode: Mode) -> Result<Run> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["bench", "scale", "--one", &n.to_string(), "--mode"])
        .arg(match mode {
            Mode::Matrix => "matrix",
            Mode::Rows => "rows",
        })
        .args(["--top-k", &o.top_k.to_string()])
        .args(["--rows-memory", &o.rows_memory.to_string()])
        .args(["--dim", &o.shape.dim.to_string()])
        .args(["--clusters", &o.shape.clusters.to_string()])
        .args(["--seed", &o.shape.seed.to_string()]);
    if let Some(t) = o.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let out = cmd.output().context("cannot run the benchmark's child process")?;
    ensure!(
        out.status.success(),
        "bench scale --one {n} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().context("no figures from the child process")?;
    Ok(serde_json::from_str(line)?)
}

/// Least-squares slope and intercept of ln(secs) against ln(n).
pub fn fit(points: &[(usize, f64)]) -> (f64, f64) {
    let xy: Vec<(f64, f64)> = points.iter().map(|&(n, s)| ((n as f64).ln(), s.ln())).collect();
    let k = xy.len() as f64;
    let (mx, my) = (
        xy.iter().map(|p| p.0).sum::<f64>() / k,
        xy.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    (b, my - b * mx)
}

fn mib(b: u64) -> String {
    format!("{} MiB", b >> 20)
}

/// The benchmark: every size in both modes, the fitted exponents, and the
/// projection to `project` poems on one machine and on `machines`.
pub fn scale(o: &Options) -> Result<()> {
    let mut sizes = o.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    ensure!(sizes.len() >= 3, "give at least three sizes, to fit the exponent");
    println!(
        "scale benchmark: synthetic clustered corpus ({} dims, {} clusters, seed {}), --top-k {}, every start; on the fly within {}",
        o.shape.dim,
        o.shape.clusters,
        o.shape.seed,
        o.top_k,
        bytesize::ByteSize(o.rows_memory)
    );
    println!(
        "  {:>8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>12} {:>10}",
        "n", "matrix s", "peak RSS", "rows s", "peak RSS", "hits", "rows made", "same bytes"
    );
    let (mut on_matrix, mut on_rows) = (Vec::new(), Vec::new());
    for &n in &sizes {
        let m = child(o, n, Mode::Matrix)?;
        let r = child(o, n, Mode::Rows)?;
        ensure!(m.hash == r.hash, "n = {n}: the two modes wrote different orderings");
        let hits = 1.0 - r.computed as f64 / r.requests.max(1) as f64;
        println!(
            "  {:>8} {:>10.2} {:>10} {:>10.2} {:>10} {:>8.1}% {:>12} {:>10}",
            n,
            m.secs,
            mib(m.peak_rss),
            r.secs,
            mib(r.peak_rss),
            100.0 * hits,
            r.computed,
            "yes"
        );
        on_matrix.push((n, m.secs));
        on_rows.push((n, r.secs));
    }
    let (bm, am) = fit(&on_matrix);
    let (br, ar) = fit(&on_rows);
    println!("  fitted: matrix time ∝ n^{bm:.2}, rows on the fly time ∝ n^{br:.2}");
    let p = o.project as f64;
    let (tm, tr) = ((am + bm * p.ln()).exp(), (ar + br * p.ln()).exp());
    let matrix_bytes = 2 * o.project as u64 * o.project as u64;
    println!(
        "  projected for {} poems: matrix {:.0} s (needs a {} matrix), rows on the fly {:.0} s; sharded over {} machines about {:.0} s each (starts split evenly; each shard holds only the vectors and its own row cache)",
        o.project,
        tm,
        bytesize::ByteSize(matrix_bytes),
        tr,
        o.machines,
        tr / o.machines as f64
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fit_recovers_a_power_law() {
        let pts: Vec<(usize, f64)> = [1000, 2000, 8000]
            .iter()
            .map(|&n| (n, 3e-7 * (n as f64).powf(2.3)))
            .collect();
        let (b, a) = fit(&pts);
        assert!((b - 2.3).abs() < 1e-9 && (a - 3e-7f64.ln()).abs() < 1e-6, "{b} {a}");
    }
}
