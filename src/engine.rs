//! The engine that computes orderings for a range of starts: the different
//! orderings on the chosen backend (CPU or GPU) and the similar orderings on
//! the CPU, overlapped when the walk runs on the GPU.

use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

use crate::cpu::on_the_fly::OnTheFly;
use crate::cpu::{self, CpuBackend};
use crate::gpu::{GpuBackend, GpuContext, GpuOptions, GpuTimings};
use crate::memory::Plan;
use crate::progress::pool;
use crate::quantize::Quantized;
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

/// The backend that walks: the CPU over the matrix, the CPU over rows
/// computed on the fly (when the matrix does not fit), or the GPU.
enum Walker {
    Cpu(CpuBackend),
    Rows(OnTheFly),
    Gpu(Box<GpuBackend>),
}

/// Seconds spent per kind of work, summed over the starts computed.
#[derive(Debug, Clone, Copy, Default)]
pub struct EngineTimes {
    /// The different orderings (the walk).
    pub walks: f64,
    /// The similar orderings (sorting on the CPU).
    pub similar: f64,
}

/// Both orderings for any range of starts, on one backend.
pub struct Engine {
    walker: Walker,
    /// Threads for the similar orderings.
    similar_pool: rayon::ThreadPool,
    /// The vectors packed for the similar orderings' GEMM, once.
    packed: std::sync::OnceLock<cpu::Packed>,
    pub times: EngineTimes,
}

impl Engine {
    /// Builds the engine, computing the similarity matrix once (on the GPU,
    /// with the `themes`' seed rows) when `plan` (which only the CPU backend
    /// follows) says it fits.
    pub fn new(
        choice: BackendChoice,
        q: &Quantized,
        themes: Option<&Quantized>,
        threads: Option<usize>,
        gpu: &GpuOptions,
        plan: &Plan,
    ) -> Result<Self> {
        let opts = GpuOptions {
            allow_software: gpu.allow_software || choice == BackendChoice::Gpu,
            ..gpu.clone()
        };
        let ctx = match choice {
            BackendChoice::Cpu => None,
            BackendChoice::Gpu => Some(GpuContext::new(&opts)?),
            // One enumeration decides and, when a GPU is there, opens it.
            BackendChoice::Auto => match GpuContext::pick_adapter(&opts) {
                Some(adapter) => Some(GpuContext::with_adapter(adapter, &opts)?),
                None => {
                    log::info!("no hardware GPU found; using the CPU backend");
                    None
                }
            },
        };
        if ctx.is_none() && opts.max_gpu_memory.is_some() {
            log::warn!("--max-gpu-memory applies to the GPU backend; the CPU backend follows --max-memory");
        }
        let walker = match ctx {
            Some(ctx) => Walker::Gpu(Box::new(GpuBackend::with_themes(Arc::new(ctx), q, themes, &opts)?)),
            None => match *plan {
                Plan::Matrix => Walker::Cpu(CpuBackend::new(q, pool(threads)?)),
                Plan::OnTheFly { batch, cache_rows } => {
                    Walker::Rows(OnTheFly::new(q.clone(), batch, cache_rows, pool(threads)?))
                }
            },
        };
        Ok(Engine {
            walker,
            similar_pool: pool(threads)?,
            packed: std::sync::OnceLock::new(),
            times: EngineTimes::default(),
        })
    }

    /// The backend in words, for logs and the manifest.
    pub fn describe(&self) -> String {
        match &self.walker {
            Walker::Cpu(c) => format!("cpu ({} threads)", c.threads()),
            Walker::Rows(r) => format!(
                "cpu ({} threads, rows on the fly, cache of {} rows)",
                r.threads(),
                r.stats().capacity
            ),
            Walker::Gpu(g) => g.describe(),
        }
    }

    /// Both orderings for `starts`, `width` entries per start. On the GPU
    /// the walk runs while the CPU sorts the similar rows.
    pub fn orderings(
        &mut self,
        q: &Quantized,
        starts: Range<usize>,
        width: usize,
        similar: &mut [u32],
        different: &mut [u32],
    ) -> Result<()> {
        let (pool, packed) = (&self.similar_pool, &self.packed);
        // With the matrix at hand, its rows pick the few candidates whose
        // dots a short similar ordering needs; otherwise the GEMM computes
        // every dot, from vectors packed once for all chunks.
        let sort_similar = |similar: &mut [u32], matrix: Option<&cpu::SimMatrix>| {
            let t = Instant::now();
            match matrix.filter(|_| cpu::matrix_selects(q, width)) {
                Some(m) => cpu::similar_rows_matrix(q, m, starts.clone(), width, similar, pool),
                None => {
                    let packed = packed.get_or_init(|| pool.install(|| cpu::Packed::new(q)));
                    cpu::similar_rows_packed(packed, q, starts.clone(), width, similar, pool)
                }
            }
            t.elapsed().as_secs_f64()
        };
        let (walks, sorting) = match &mut self.walker {
            Walker::Gpu(g) => std::thread::scope(|s| {
                let walk = s.spawn(|| {
                    let t = Instant::now();
                    g.different(starts.clone(), width, different)
                        .map(|_| t.elapsed().as_secs_f64())
                });
                let sorting = sort_similar(similar, None);
                (walk.join().expect("GPU thread panicked"), sorting)
            }),
            Walker::Cpu(c) => {
                let t = Instant::now();
                c.different(starts.clone(), width, different);
                let walks = t.elapsed().as_secs_f64();
                (Ok(walks), sort_similar(similar, Some(c.matrix())))
            }
            // The walks' start rows also give the similar orderings.
            Walker::Rows(r) => {
                let before = r.stats().secs_similar;
                let t = Instant::now();
                r.orderings(starts.clone(), width, Some(similar), different);
                let sorting = r.stats().secs_similar - before;
                (Ok(t.elapsed().as_secs_f64() - sorting), sorting)
            }
        };
        self.times.walks += walks?;
        self.times.similar += sorting;
        Ok(())
    }

    /// Both orderings of every theme, `width` entries each. The walks'
    /// sums start as the theme's rounded similarities and no poem is chosen:
    /// the GPU has those seeds in its matrix (the `themes` given to
    /// [`Engine::new`]), the CPU computes them here. The similar orderings
    /// are sorted on the CPU for both.
    pub fn themes(
        &mut self,
        q: &Quantized,
        themes: &Quantized,
        width: usize,
        similar: &mut [u32],
        different: &mut [u32],
    ) -> Result<()> {
        match &mut self.walker {
            Walker::Cpu(c) => c.seeded(&crate::themes::seeds(q, themes), width, different),
            Walker::Rows(r) => r.seeded(&crate::themes::seeds(q, themes), width, different),
            Walker::Gpu(g) => g.themes(width, different)?,
        }
        crate::themes::similar_rows(q, themes, width, similar);
        Ok(())
    }

    /// Adds the GPU's own breakdown (upload, passes, readback), or the time
    /// spent computing rows on the fly, as details; logs the row cache's use.
    pub fn record_details(&self, timings: &mut Timings) {
        match &self.walker {
            Walker::Gpu(g) => {
                if let Some(stats) = g.row_stats() {
                    log::info!("GPU row cache: {stats}");
                }
                record_gpu(&g.timings, timings)
            }
            Walker::Rows(r) => {
                let stats = r.stats();
                log::info!("row cache: {stats}");
                timings.detail("rows_on_the_fly", stats.secs_rows);
            }
            Walker::Cpu(_) => {}
        }
    }
}

fn record_gpu(g: &GpuTimings, timings: &mut Timings) {
    timings.detail("gpu_upload", g.upload);
    timings.detail("gpu_similarity", g.similarity);
    timings.detail("gpu_walks", g.walk);
    timings.detail("gpu_readback", g.readback);
    if let Some(t) = g.device_similarity {
        timings.detail("gpu_device_similarity", t);
    }
    if let Some(t) = g.device_walk {
        timings.detail("gpu_device_walks", t);
    }
}
