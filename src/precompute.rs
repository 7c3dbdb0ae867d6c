//! The precompute pipeline: corpus → normalised integer embeddings →
//! orderings → cache, with checkpoints, progress and a timing breakdown.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::cache::{self, CacheWriter, Inputs, Manifest, Opened, Params};
use crate::corpus::{self, LoadOptions, Problem, Reason};
use crate::cpu::{self, CpuBackend};
use crate::gpu::{GpuBackend, GpuOptions};
use crate::progress::{pool, progress_bar};
use crate::quantize::{self, Quantized, MAX_ROW};
use crate::timings::Timings;

/// Which backend computes the different orderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// A hardware GPU when there is one, otherwise the CPU.
    Auto,
    /// The multi-threaded CPU backend.
    Cpu,
    /// A GPU adapter (software adapters such as lavapipe included).
    Gpu,
}

/// Everything `precompute` needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub poems: PathBuf,
    pub embeddings: Option<PathBuf>,
    pub out: PathBuf,
    pub backend: BackendChoice,
    pub top_k: Option<usize>,
    pub threads: Option<usize>,
    pub strict: bool,
    pub exclude: Option<PathBuf>,
    pub center: bool,
    /// Starts per checkpoint.
    pub chunk: usize,
    pub gpu: GpuOptions,
    /// Draw a progress bar (stderr, only on a terminal).
    pub progress: bool,
    /// Stop after this many chunks (to test interruption).
    pub stop_after: Option<usize>,
}

/// The engine that walks: CPU or GPU.
pub enum Engine {
    Cpu(CpuBackend),
    Gpu(Box<GpuBackend>),
}

impl Engine {
    /// Builds the engine, computing the similarity matrix once.
    pub fn new(choice: BackendChoice, q: &Quantized, threads: Option<usize>, gpu: &GpuOptions) -> Result<Self> {
        let opts = GpuOptions {
            allow_software: gpu.allow_software || choice == BackendChoice::Gpu,
            ..gpu.clone()
        };
        let ctx = match choice {
            BackendChoice::Cpu => None,
            BackendChoice::Gpu => Some(crate::gpu::GpuContext::new(&opts)?),
            // One enumeration decides and, when a GPU is there, opens it.
            BackendChoice::Auto => match crate::gpu::GpuContext::pick_adapter(&opts) {
                Some(adapter) => Some(crate::gpu::GpuContext::with_adapter(adapter, &opts)?),
                None => {
                    log::info!("no hardware GPU found; using the CPU backend");
                    None
                }
            },
        };
        match ctx {
            Some(ctx) => Ok(Engine::Gpu(Box::new(GpuBackend::new(
                std::sync::Arc::new(ctx),
                q,
                &opts,
            )?))),
            None => Ok(Engine::Cpu(CpuBackend::new(q, pool(threads)?))),
        }
    }

    /// The backend in words, for logs and the manifest.
    pub fn describe(&self) -> String {
        match self {
            Engine::Cpu(c) => format!("cpu ({} threads)", c.threads()),
            Engine::Gpu(g) => g.describe(),
        }
    }

    /// different orderings for `starts`.
    pub fn different(&mut self, starts: std::ops::Range<usize>, width: usize, out: &mut [u32]) -> Result<()> {
        match self {
            Engine::Cpu(c) => {
                c.different(starts, width, out);
                Ok(())
            }
            Engine::Gpu(g) => g.different(starts, width, out),
        }
    }
}

/// Row width and index size for `n` included poems.
pub fn params_for(n: usize, top_k: Option<usize>, center: bool, chunk: usize) -> Result<Params> {
    let width = top_k.unwrap_or(usize::MAX).min(n.saturating_sub(1));
    if width > MAX_ROW {
        bail!(
            "{n} poems: full-length orderings of {width} entries exceed the exact i32 running sums (at most {MAX_ROW} entries); pass --top-k {MAX_ROW} or less"
        );
    }
    Ok(Params {
        top_k,
        center,
        width,
        index_bytes: if n <= 1 << 16 { 2 } else { 4 },
        chunk: chunk.max(1),
    })
}

/// What a precompute run did.
#[derive(Debug)]
pub struct Outcome {
    /// The finished cache's manifest (`None` when interrupted).
    pub manifest: Option<Manifest>,
    /// The cache was already complete and up to date.
    pub up_to_date: bool,
    /// Chunks computed in this run (fewer than all when resuming).
    pub chunks_computed: usize,
    /// The run stopped early (`stop_after`); the cache is not complete.
    pub interrupted: bool,
}

/// Runs precompute end to end.
pub fn run(opts: &Options) -> Result<Outcome> {
    let mut timings = Timings::default();
    let t = Instant::now();
    let exclude = match &opts.exclude {
        Some(p) => corpus::read_exclude(p)?,
        None => Vec::new(),
    };
    let corpus = corpus::load(
        &opts.poems,
        opts.embeddings.as_deref(),
        &LoadOptions {
            strict: opts.strict,
            exclude,
        },
    )?;
    for p in &corpus.report.unusable {
        log::warn!(
            "{}: poem {:?} left out: {}",
            opts.embeddings.as_ref().unwrap_or(&opts.poems).display(),
            p.key,
            p.reason
        );
    }
    for o in &corpus.report.orphans {
        log::warn!("embedding {o:?} matches no poem in {}", opts.poems.display());
    }
    for k in &corpus.report.unknown_excludes {
        log::warn!("excluded key {k:?} matches no poem");
    }
    timings.phase_since("load", t);

    let t = Instant::now();
    let prepared = quantize::prepare(&corpus, opts.center);
    let mut report = corpus.report.clone();
    for k in &prepared.zero_after_centering {
        log::warn!("poem {k:?} left out: its vector equals the corpus mean");
        report.unusable.push(Problem {
            key: k.clone(),
            reason: Reason::Zero,
        });
    }
    let q = prepared.vectors;
    timings.phase_since("normalise", t);

    let params = params_for(q.n, opts.top_k, opts.center, opts.chunk)?;
    let all_keys: Vec<String> = corpus.poems.iter().map(|p| p.key.clone()).collect();
    let pending = Manifest {
        format_version: cache::FORMAT_VERSION,
        algorithm_version: cache::ALGORITHM_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        fingerprint: cache::fingerprint(&prepared.keys, &q, &params, &corpus.model),
        params,
        embedding_model: corpus.model.clone(),
        dimension: q.dim,
        poems: corpus.poems.len(),
        included: q.n,
        keys_hash: cache::hash_keys(&prepared.keys),
        inputs: Inputs {
            poems: opts.poems.clone(),
            embeddings: opts.embeddings.clone(),
            exclude: opts.exclude.clone(),
        },
        backend: String::new(),
        report,
        timings: Timings::default(),
        keys: prepared.keys,
        all_keys,
    };
    let mut writer = match CacheWriter::open(&opts.out, pending, &q)? {
        Opened::Complete(m) => {
            return Ok(Outcome {
                manifest: Some(*m),
                up_to_date: true,
                chunks_computed: 0,
                interrupted: false,
            })
        }
        Opened::Writer(w) => w,
    };
    let todo: Vec<usize> = (0..writer.done.len()).filter(|&c| !writer.done[c]).collect();
    if writer.resumed {
        log::info!(
            "resuming: {} of {} chunks already done",
            writer.done.len() - todo.len(),
            writer.done.len()
        );
    }

    let t = Instant::now();
    let mut engine = Engine::new(opts.backend, &q, opts.threads, &opts.gpu)?;
    let backend = engine.describe();
    log::info!("backend: {backend}");
    timings.phase_since("similarity", t);

    let width = writer.params().width;
    let bar = progress_bar(opts.progress, q.n as u64, "starts");
    bar.set_position((q.n - todo.iter().map(|&c| writer.chunk_starts(c).len()).sum::<usize>()) as u64);
    let sim_pool = pool(opts.threads)?;
    let (mut t_sel, mut t_sim, mut t_write) = (0.0, 0.0, 0.0);
    let mut computed = 0;
    let mut sim = Vec::new();
    let mut diff = Vec::new();
    for &c in &todo {
        if opts.stop_after.is_some_and(|s| computed >= s) || crate::interrupt::requested() {
            bar.abandon();
            return Ok(Outcome {
                manifest: None,
                up_to_date: false,
                chunks_computed: computed,
                interrupted: true,
            });
        }
        let starts = writer.chunk_starts(c);
        sim.resize(starts.len() * width, 0);
        diff.resize(starts.len() * width, 0);
        match &mut engine {
            // The GPU walks while the CPU sorts the similar rows.
            Engine::Gpu(_) => {
                let (a, b) = std::thread::scope(|s| {
                    let h = s.spawn(|| {
                        let t = Instant::now();
                        engine
                            .different(starts.clone(), width, &mut diff)
                            .map(|_| t.elapsed().as_secs_f64())
                    });
                    let t = Instant::now();
                    cpu::similar_rows(&q, starts.clone(), width, &mut sim, &sim_pool);
                    let b = t.elapsed().as_secs_f64();
                    (h.join().expect("GPU thread panicked"), b)
                });
                t_sel += a?;
                t_sim += b;
            }
            Engine::Cpu(_) => {
                let t = Instant::now();
                engine.different(starts.clone(), width, &mut diff)?;
                t_sel += t.elapsed().as_secs_f64();
                let t = Instant::now();
                cpu::similar_rows(&q, starts.clone(), width, &mut sim, &sim_pool);
                t_sim += t.elapsed().as_secs_f64();
            }
        }
        let t = Instant::now();
        writer.write_chunk(c, &sim, &diff)?;
        t_write += t.elapsed().as_secs_f64();
        computed += 1;
        bar.inc(starts.len() as u64);
    }
    bar.finish_and_clear();
    timings.phase("selection", t_sel);
    timings.phase("similar", t_sim);
    timings.phase("write", t_write);
    if let Engine::Gpu(g) = &engine {
        timings.detail("gpu_upload", g.timings.upload);
        timings.detail("gpu_similarity", g.timings.similarity);
        timings.detail("gpu_selection", g.timings.selection);
        timings.detail("gpu_readback", g.timings.readback);
        if let Some(t) = g.timings.device_similarity {
            timings.detail("gpu_device_similarity", t);
        }
        if let Some(t) = g.timings.device_selection {
            timings.detail("gpu_device_selection", t);
        }
    }
    let manifest = writer.finish(timings, backend)?;
    Ok(Outcome {
        manifest: Some(manifest),
        up_to_date: false,
        chunks_computed: computed,
        interrupted: false,
    })
}

/// Result of `verify`.
#[derive(Debug)]
pub struct Verified {
    pub checked: usize,
    pub mismatches: Vec<String>,
}

/// Recomputes `sample` random starts with the CPU reference and compares.
pub fn verify(dir: &std::path::Path, sample: usize, seed: u64) -> Result<Verified> {
    let c = cache::Cache::open(dir)?;
    let q = c.vectors()?;
    let w = c.manifest.params.width;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut starts: Vec<usize> = (0..q.n).collect();
    rng.shuffle(&mut starts);
    starts.truncate(sample.min(q.n));
    starts.sort_unstable();
    let mut mismatches = Vec::new();
    let mut row = Vec::new();
    // The reference walk, over a freshly computed matrix (not the backend's).
    let m = cpu::SimMatrix::compute(&q);
    for &s in &starts {
        for (kind, expect) in [
            (cache::Kind::Similar, crate::reference::similar(&q, s, w)),
            (
                cache::Kind::Different,
                crate::reference::different_by(q.n, s, w, |a, c| m.row(a)[c]),
            ),
        ] {
            c.row(kind, s, &mut row);
            if row != expect {
                let at = row.iter().zip(&expect).position(|(a, b)| a != b).unwrap_or(0);
                mismatches.push(format!(
                    "{:?} of {:?}: first difference at position {at}",
                    kind, c.manifest.keys[s]
                ));
            }
        }
    }
    Ok(Verified {
        checked: starts.len(),
        mismatches,
    })
}
