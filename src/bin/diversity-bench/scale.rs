//! `diversity-bench scale`: what the whole job (every start's similar and
//! different orderings) costs as n grows, with the n × n matrix beside rows
//! on the fly and beside the same job run as N shards and merged
//! ([`crate::shards`]), on the same synthetic clustered corpus, side by side
//! in one run. Each size and mode (and each shard) runs in its own process,
//! so the peak RSS reported is that run's own; the exponent of n is fitted
//! by least squares on log–log.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use diversity_gpu::cpu::on_the_fly::OnTheFly;
use diversity_gpu::cpu::{similar_rows, CpuBackend};
use diversity_gpu::memory::{Limit, LimitSource, Needs, Plan};
use diversity_gpu::shard::ShardSpec;
use diversity_gpu::timings::Timings;

use crate::shards::{one_shard, shard_count, sharded, Sharded};
use crate::synthetic::{self, Shape};

/// Where the walks' rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Mode {
    /// The whole n × n matrix, computed first.
    Matrix,
    /// Rows computed on the fly behind a bounded cache.
    Rows,
    /// One shard of the sharded row: `precompute --shard I/N` over the
    /// corpus written as JSON Lines (the parent runs every shard, then merges).
    Shards,
}

impl Mode {
    /// The value of `--mode` that selects this mode.
    fn arg(self) -> &'static str {
        match self {
            Mode::Matrix => "matrix",
            Mode::Rows => "rows",
            Mode::Shards => "shards",
        }
    }
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
    /// Shards of the sharded row; 0 or 1: no sharded row.
    pub shards: usize,
    /// Where the sharded row writes its corpus file and caches (default:
    /// the system temp dir). In one shard's own process: that size's
    /// scratch directory, which holds the corpus file.
    pub dir: Option<PathBuf>,
    /// In one shard's own process: the shard it runs.
    pub shard: Option<ShardSpec>,
}

/// Figures of one size in one mode (or of one shard), printed by its
/// process as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    pub n: usize,
    pub mode: Mode,
    /// The whole job: matrix (if any), walks and similar orderings; for a
    /// shard, its whole precompute (loading the corpus file to writing its cache).
    pub secs: f64,
    pub peak_rss: u64,
    /// blake3 of every similar and different ordering, in order (see
    /// [`orderings_hash`]); a shard's own rows are hashed after the merge.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// On the fly: rows asked for, rows computed, cache capacity.
    pub requests: u64,
    pub computed: u64,
    pub cache_rows: usize,
    /// A shard's `I/N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// A shard's precompute phases (load, similarity, walks, …), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Timings>,
}

impl Run {
    pub(crate) fn new(n: usize, mode: Mode) -> Run {
        Run {
            n,
            mode,
            secs: 0.0,
            peak_rss: 0,
            hash: String::new(),
            requests: 0,
            computed: 0,
            cache_rows: 0,
            shard: None,
            phases: None,
        }
    }
}

/// Starts per chunk, as `precompute` checkpoints them.
const CHUNK: usize = 1024;

/// The sharded row's corpus file, in each size's scratch directory.
pub(crate) const CORPUS_FILE: &str = "corpus.jsonl";

/// blake3 of every start's similar and different orderings as `u32`
/// indices, a chunk of starts at a time (similar rows, then different
/// rows), which `fill` writes for the starts it is given. Every mode hashes
/// the same way, so equal hashes mean equal orderings.
pub(crate) fn orderings_hash(n: usize, w: usize, mut fill: impl FnMut(Range<usize>, &mut [u32], &mut [u32])) -> String {
    let (mut sim, mut diff) = (vec![0u32; CHUNK * w], vec![0u32; CHUNK * w]);
    let mut hash = blake3::Hasher::new();
    for s0 in (0..n).step_by(CHUNK) {
        let c = CHUNK.min(n - s0);
        let (sim, diff) = (&mut sim[..c * w], &mut diff[..c * w]);
        fill(s0..s0 + c, sim, diff);
        hash.update(bytemuck::cast_slice(sim));
        hash.update(bytemuck::cast_slice(diff));
    }
    hash.finalize().to_hex().to_string()
}

/// Runs one size in one mode (or one shard) and prints its [`Run`] as one
/// JSON line.
pub fn one(o: &Options, n: usize, mode: Mode) -> Result<()> {
    ensure!(n >= 2, "a corpus needs at least 2 poems");
    let run = match mode {
        Mode::Matrix | Mode::Rows => in_memory(o, n, mode)?,
        Mode::Shards => one_shard(o, n)?,
    };
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// The whole job in this process, over the matrix or rows on the fly.
pub(crate) fn in_memory(o: &Options, n: usize, mode: Mode) -> Result<Run> {
    let q = synthetic::quantized(Shape { n, ..o.shape });
    let pool = diversity_gpu::progress::pool(o.threads)?;
    let threads = pool.current_num_threads();
    let w = o.top_k.min(n - 1);
    let mut run = Run::new(n, mode);
    let t = Instant::now();
    match mode {
        Mode::Matrix => {
            let sim_pool = diversity_gpu::progress::pool(o.threads)?;
            let backend = CpuBackend::new(&q, pool);
            run.hash = orderings_hash(n, w, |starts, sim, diff| {
                backend.different(starts.clone(), w, diff);
                similar_rows(&q, starts, w, sim, &sim_pool);
            });
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
            run.hash = orderings_hash(n, w, |starts, sim, diff| rows.orderings(starts, w, Some(sim), diff));
            let stats = rows.stats();
            (run.requests, run.computed, run.cache_rows) = (stats.requests, stats.computed, stats.capacity);
        }
        Mode::Shards => bail!("a shard runs through precompute, not in memory"),
    }
    run.secs = t.elapsed().as_secs_f64();
    run.peak_rss = crate::peak_rss().unwrap_or(0);
    Ok(run)
}

/// Runs `one` in a child process and reads its figures; `shard` names a
/// shard and its size's scratch directory.
pub(crate) fn child(o: &Options, n: usize, mode: Mode, shard: Option<(&Path, ShardSpec)>) -> Result<Run> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["scale", "--one", &n.to_string(), "--mode", mode.arg()])
        .args(["--top-k", &o.top_k.to_string()])
        .args(["--rows-memory", &o.rows_memory.to_string()])
        .args(["--dim", &o.shape.dim.to_string()])
        .args(["--clusters", &o.shape.clusters.to_string()])
        .args(["--seed", &o.shape.seed.to_string()]);
    if let Some(t) = o.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    if let Some((dir, spec)) = shard {
        cmd.args(["--shard", &format!("{}/{}", spec.index, spec.count)])
            .arg("--dir")
            .arg(dir);
    }
    let out = cmd.output().context("cannot run the benchmark's child process")?;
    ensure!(
        out.status.success(),
        "diversity-bench scale --one {n} --mode {} failed: {}",
        mode.arg(),
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

/// Figures of one size: both in-memory modes and the sharded row.
struct Size {
    n: usize,
    matrix: Run,
    rows: Run,
    sharded: Option<Sharded>,
}

/// Runs one size in every mode and checks that all wrote the same orderings.
fn size(o: &Options, n: usize, shards: Option<usize>) -> Result<Size> {
    let matrix = child(o, n, Mode::Matrix, None)?;
    let rows = child(o, n, Mode::Rows, None)?;
    ensure!(
        matrix.hash == rows.hash,
        "n = {n}: the two modes wrote different orderings"
    );
    let sharded = shards.map(|k| sharded(o, n, k)).transpose()?;
    if let Some(s) = &sharded {
        ensure!(
            s.hash == matrix.hash,
            "n = {n}: the {} merged shards' orderings differ from the whole (matrix) run's (blake3 {} against {})",
            shards.unwrap_or(0),
            s.hash,
            matrix.hash
        );
    }
    Ok(Size {
        n,
        matrix,
        rows,
        sharded,
    })
}

/// The table's header; the sharded columns only with a sharded row.
fn header(shards: Option<usize>) {
    let mut line = format!(
        "  {:>8} {:>10} {:>10} {:>10} {:>10} {:>9} {:>12}",
        "n", "matrix s", "peak RSS", "rows s", "peak RSS", "hits", "rows made"
    );
    if let Some(k) = shards {
        line += &format!(
            " {:>12} {:>9} {:>7} {:>9} {:>12}",
            format!("Σ {k} shards s"),
            "slowest s",
            "merge s",
            "shard RSS",
            format!("{k} machines s")
        );
    }
    println!("{line} {:>10}", "same bytes");
}

/// One size's line of the table.
fn print_size(s: &Size) {
    let (m, r) = (&s.matrix, &s.rows);
    let hits = 1.0 - r.computed as f64 / r.requests.max(1) as f64;
    let mut line = format!(
        "  {:>8} {:>10.2} {:>10} {:>10.2} {:>10} {:>8.1}% {:>12}",
        s.n,
        m.secs,
        mib(m.peak_rss),
        r.secs,
        mib(r.peak_rss),
        100.0 * hits,
        r.computed
    );
    if let Some(sh) = &s.sharded {
        line += &format!(
            " {:>12.2} {:>9.2} {:>7.2} {:>9} {:>12.2}",
            sh.sum,
            sh.slowest,
            sh.merge,
            mib(sh.peak_rss),
            sh.wall()
        );
    }
    println!("{line} {:>10}", "yes");
}

/// The benchmark: every size in every mode, the fitted exponents, and the
/// projection to `project` poems on one machine and on `machines`.
pub fn scale(o: &Options) -> Result<()> {
    let mut sizes = o.sizes.clone();
    sizes.sort_unstable();
    sizes.dedup();
    ensure!(sizes.len() >= 3, "give at least three sizes, to fit the exponent");
    let shards = shard_count(o.shards, sizes[0])?;
    println!(
        "scale benchmark: synthetic clustered corpus ({} dims, {} clusters, seed {}), --top-k {}, every start; on the fly within {}",
        o.shape.dim,
        o.shape.clusters,
        o.shape.seed,
        o.top_k,
        bytesize::ByteSize(o.rows_memory)
    );
    if let Some(k) = shards {
        println!(
            "  sharded: {k} shards, each `precompute --shard I/{k}` in its own process, one after another (from loading the corpus file to writing its cache), then `merge`; on {k} machines = slowest shard + merge"
        );
    }
    header(shards);
    let mut done = Vec::new();
    for &n in &sizes {
        let s = size(o, n, shards)?;
        print_size(&s);
        done.push(s);
    }
    if shards.is_some() {
        let load: Vec<String> = done
            .iter()
            .filter_map(|s| s.sharded.as_ref().map(|sh| format!("{:.2} s at n = {}", sh.load, s.n)))
            .collect();
        println!(
            "  of the shards' summed time, loading the corpus file took {}",
            load.join(", ")
        );
        for s in &done {
            if let (Some(sh), Some(k)) = (&s.sharded, shards) {
                println!("  {}", sh.against(s.n, k, s.matrix.secs));
            }
        }
    }
    project(o, &done, shards);
    Ok(())
}

/// The fitted exponents and the projection to `o.project` poems.
fn project(o: &Options, done: &[Size], shards: Option<usize>) {
    let points = |f: &dyn Fn(&Size) -> Option<f64>| -> Vec<(usize, f64)> {
        done.iter().filter_map(|s| f(s).map(|t| (s.n, t))).collect()
    };
    let (bm, am) = fit(&points(&|s| Some(s.matrix.secs)));
    let (br, ar) = fit(&points(&|s| Some(s.rows.secs)));
    let p = o.project as f64;
    let (tm, tr) = ((am + bm * p.ln()).exp(), (ar + br * p.ln()).exp());
    // The sharded row's fit is of the shards' summed time: the cost of the
    // job when sharded, which the slowest shard's wall time hides.
    let sharded = shards.map(|k| (k, fit(&points(&|s| s.sharded.as_ref().map(|sh| sh.sum)))));
    let (fitted, projected) = match sharded {
        Some((k, (bs, a))) => (
            format!(", {k} shards summed ∝ n^{bs:.2}"),
            format!(", {k} shards summed {:.0} s", (a + bs * p.ln()).exp()),
        ),
        None => (String::new(), String::new()),
    };
    println!("  fitted: matrix time ∝ n^{bm:.2}, rows on the fly time ∝ n^{br:.2}{fitted}");
    let matrix_bytes = 2 * o.project as u64 * o.project as u64;
    println!(
        "  projected for {} poems: matrix {:.0} s (needs a {} matrix), rows on the fly {:.0} s{projected}; rows on the fly sharded over {} machines about {:.0} s each (starts split evenly; each shard holds only the vectors and its own row cache)",
        o.project,
        tm,
        bytesize::ByteSize(matrix_bytes),
        tr,
        o.machines,
        tr / o.machines as f64
    );
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
