//! The GPU backend (wgpu): device, buffers and pipelines are created once
//! and reused for every batch of starts.
//!
//! - [`context`]: adapters, the device and its limits.
//! - [`pipelines`]: the shaders, their binding contract and the pipelines.
//! - [`tiles`]: the quantised embeddings are uploaded once and
//!   `similarity.wgsl` fills the rounded similarity matrix, split into up to
//!   [`MAX_TILES`] storage bindings when it exceeds one binding.
//! - [`walk`]: `walk.wgsl` runs the diversity walk for batches of starts.
//! - [`row_cache`]: when the matrix does not fit, the tiles hold a bounded
//!   cache of rows, computed on the fly by the row-block shader.
//! - [`readback`]: finished batches come back through staging buffers.
//! - [`timer`]: device time from timestamp queries.

mod context;
mod options;
mod pipelines;
mod readback;
mod row_cache;
mod tiles;
mod timer;
mod walk;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;

pub use context::{adapters, quiet_headless_vulkan, AdapterSummary, GpuContext};
pub use options::{GpuOptions, GpuTimings, DISABLED};
pub use pipelines::MAX_TILES;
pub use tiles::TileLayout;

use crate::cpu::on_the_fly::RowStats;
use crate::matrix::row_bytes;
use crate::quantize::Quantized;
use row_cache::RowCache;
use tiles::MatrixTiles;
use walk::BatchBuffers;

/// GPU failures that callers branch on. Each holds the full message.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter matches the options (or none exists).
    #[error("{0}")]
    NoAdapter(String),
    /// The adapter lacks a limit the shaders need.
    #[error("{0}")]
    Limits(String),
    /// The device has no room for a buffer.
    #[error("{0}")]
    OutOfMemory(String),
    /// The device was lost or reported an error mid-run.
    #[error("{0}")]
    Lost(String),
}

/// Smallest row cache tried after the GPU runs out of memory.
const MIN_CACHE_ROWS: usize = 64;

/// What the matrix tiles hold, decided once when the backend is built; the
/// walk dispatches on it once per call.
enum Residency {
    /// The whole matrix.
    Matrix,
    /// A cache of rows, computed on the fly; the cache knows which tile row
    /// holds which matrix row.
    RowsOnTheFly(Box<RowCache>),
}

/// The GPU backend: the matrix (or a cache of its rows) stays on the GPU;
/// batches of starts walk it.
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    /// The whole matrix, or the cache's rows, as `residency` says.
    matrix: MatrixTiles,
    residency: Residency,
    /// Vectors: the poems, then the themes.
    vectors: usize,
    opts: GpuOptions,
    /// Per-batch buffers, one set per batch in flight, kept while batches
    /// keep their shape.
    batch_buffers: Vec<BatchBuffers>,
    pub timings: GpuTimings,
}

impl GpuBackend {
    /// Uploads the vectors and computes the matrix on `ctx`'s device.
    pub fn new(ctx: Arc<GpuContext>, q: &Quantized, opts: &GpuOptions) -> Result<Self> {
        Self::with_themes(ctx, q, None, opts)
    }

    /// [`GpuBackend::new`], with one more matrix row per theme: row `n + t`
    /// holds `sim16(dot(theme t, poem c))`, a theme walk's initial sums. The
    /// walk from start `n + t` is then theme `t`'s walk: no candidate is the
    /// start, so none is chosen beforehand ([`GpuBackend::themes`]).
    pub fn with_themes(
        ctx: Arc<GpuContext>,
        q: &Quantized,
        themes: Option<&Quantized>,
        opts: &GpuOptions,
    ) -> Result<Self> {
        let combined;
        let rows = match themes {
            Some(t) => {
                combined = Quantized {
                    n: q.n + t.n,
                    dim: q.dim,
                    data: [&q.data[..], &t.data[..]].concat(),
                };
                &combined
            }
            None => q,
        };
        let t0 = Instant::now();
        let (matrix, holding) = upload(&ctx, q.n, rows, opts)?;
        let upload = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let (residency, device_similarity) = match holding {
            Holding::Cache(cache) => (Residency::RowsOnTheFly(Box::new(cache)), None),
            Holding::Matrix(embeddings) => (Residency::Matrix, matrix.fill(&ctx, rows, &embeddings)?),
        };
        let similarity = t1.elapsed().as_secs_f64();
        Ok(GpuBackend {
            ctx,
            matrix,
            residency,
            vectors: rows.n,
            opts: opts.clone(),
            batch_buffers: Vec::new(),
            timings: GpuTimings {
                upload,
                similarity,
                device_similarity,
                ..Default::default()
            },
        })
    }

    /// Use of the row cache, when rows are computed on the fly.
    pub fn row_stats(&self) -> Option<RowStats> {
        match &self.residency {
            Residency::Matrix => None,
            Residency::RowsOnTheFly(cache) => Some(cache.slots.stats),
        }
    }

    /// The adapter in use, in words.
    pub fn describe(&self) -> String {
        let s = &self.ctx.summary;
        format!(
            "gpu: {} ({}, {}; {} reduction, sums in a storage buffer, {})",
            s.name,
            s.backend,
            s.device_type,
            if self.ctx.uses_subgroups {
                "subgroup"
            } else {
                "shared-memory"
            },
            match &self.residency {
                Residency::RowsOnTheFly(c) => format!(
                    "rows on the fly, cache of {} rows in {} tile(s)",
                    c.slots.capacity(),
                    self.matrix.layout.tiles
                ),
                Residency::Matrix => format!("{} matrix tile(s)", self.matrix.layout.tiles),
            }
        )
    }

    /// Every theme's walk (`width` each) into `out`: the walks from the
    /// themes' seed rows ([`GpuBackend::with_themes`]).
    pub fn themes(&mut self, width: usize, out: &mut [u32]) -> Result<()> {
        self.different(self.matrix.layout.n..self.vectors, width, out)
    }

    /// The adapter's summary.
    pub fn summary(&self) -> &AdapterSummary {
        &self.ctx.summary
    }
}

/// Matrix rows the GPU holds: all of them (the whole matrix) when they fit
/// the bindings and `--max-gpu-memory`, else as many as fit, as a cache.
fn rows_held(n: usize, rows: usize, limits: &wgpu::Limits, opts: &GpuOptions) -> Result<usize> {
    if let Some(c) = opts.cache_rows {
        return Ok(c.clamp(1, rows.max(1)));
    }
    let max_bind = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    let per_row = row_bytes(n);
    let bound = (MAX_TILES as u64 * (max_bind / per_row)).min(rows as u64);
    let room = opts.max_gpu_memory.map_or(bound, |m| (m / per_row).min(bound));
    if room == 0 {
        anyhow::bail!(
            "one similarity row of {n} poems ({}) does not fit in {}",
            bytesize::ByteSize(per_row),
            match opts.max_gpu_memory {
                Some(m) => format!("--max-gpu-memory {}", bytesize::ByteSize(m)),
                None => format!("one GPU binding ({})", bytesize::ByteSize(max_bind)),
            }
        );
    }
    Ok(room as usize)
}

/// What the tiles hold: the whole matrix, still to be filled from the
/// embeddings, or a row cache.
enum Holding {
    Matrix(wgpu::Buffer),
    Cache(RowCache),
}

/// Uploads the vectors and allocates the matrix tiles, or a row cache when
/// the matrix does not fit; halves the cache while the GPU has no room for
/// it (its tiles, or its list and word-major columns).
fn upload(ctx: &GpuContext, n: usize, rows: &Quantized, opts: &GpuOptions) -> Result<(MatrixTiles, Holding)> {
    let limits = ctx.device.limits();
    let mut held = rows_held(n, rows.n, &limits, opts)?;
    loop {
        let layout = TileLayout::plan(
            n,
            held,
            limits.max_storage_buffer_binding_size,
            limits.max_buffer_size,
            opts.tile_rows,
        )?;
        let tried = MatrixTiles::upload(ctx, rows, layout).and_then(|(tiles, embeddings)| {
            let holding = if held < rows.n || opts.cache_rows.is_some() {
                Holding::Cache(RowCache::new(ctx, &tiles, embeddings, rows, n)?)
            } else {
                Holding::Matrix(embeddings)
            };
            Ok((tiles, holding))
        });
        match tried {
            Err(e)
                if matches!(e.downcast_ref(), Some(GpuError::OutOfMemory(_)))
                    && opts.cache_rows.is_none()
                    && held / 2 >= MIN_CACHE_ROWS =>
            {
                log::warn!(
                    "{e:#}\nso computing rows on the fly instead, with a cache of {} rows",
                    held / 2
                );
                held /= 2;
            }
            done => {
                if held < rows.n {
                    log::info!(
                        "the {} similarity matrix exceeds the GPU's room: rows on the fly, cache of {held} rows",
                        bytesize::ByteSize(rows.n as u64 * row_bytes(n))
                    );
                }
                return done;
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cpu::{similar_rows, CpuBackend};
    use proptest::prelude::*;
    use std::io::Write;
    use std::sync::{Mutex, OnceLock};

    /// A shared context per reduction path. In CI (`CI` set) a missing
    /// adapter fails the test; elsewhere the test says so and skips.
    pub(crate) fn context(no_subgroups: bool) -> Option<Arc<GpuContext>> {
        /// The context, or whether the adapter was missing and why not.
        type Opened = Result<Arc<GpuContext>, (bool, String)>;
        static CTX: [OnceLock<Opened>; 2] = [OnceLock::new(), OnceLock::new()];
        let r = CTX[no_subgroups as usize].get_or_init(|| {
            let opts = GpuOptions {
                allow_software: true,
                no_subgroups,
                ..Default::default()
            };
            GpuContext::new(&opts).map(Arc::new).map_err(|e| {
                let no_adapter = matches!(e.downcast_ref(), Some(GpuError::NoAdapter(_)));
                (no_adapter, format!("{e:#}"))
            })
        });
        match r {
            Ok(c) => Some(c.clone()),
            Err((_, e)) if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
                panic!("CI requires a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers): {e}")
            }
            Err((true, e)) => {
                skipped(e);
                None
            }
            Err((false, e)) => panic!("the GPU adapter is there but cannot be opened: {e}"),
        }
    }

    /// Says once per test, uncaptured (so `cargo test` shows it beside the
    /// test's `ok`), that it ran without an adapter.
    fn skipped(why: &str) {
        static SAID: Mutex<Vec<String>> = Mutex::new(Vec::new());
        let test = std::thread::current().name().unwrap_or("a GPU test").to_owned();
        let mut said = SAID.lock().unwrap_or_else(|p| p.into_inner());
        if !said.contains(&test) {
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: no GPU adapter ({why})");
            said.push(test);
        }
    }

    fn random(n: usize, dim: usize, levels: i32, seed: u64) -> Quantized {
        crate::quantize::random_corpus(n, dim, levels, seed).1
    }

    fn cpu_different(q: &Quantized, width: usize) -> Vec<u32> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let b = CpuBackend::new(q, pool);
        let mut out = vec![0; q.n * width];
        b.different(0..q.n, width, &mut out);
        out
    }

    fn gpu_different(ctx: Arc<GpuContext>, q: &Quantized, width: usize, opts: &GpuOptions) -> Vec<u32> {
        let timestamps = ctx.summary.timestamps;
        let mut g = GpuBackend::new(ctx, q, opts).unwrap();
        let mut out = vec![0; q.n * width];
        // Two calls over split ranges, as precompute's chunks do.
        let mid = q.n / 2;
        g.different(0..mid, width, &mut out[..mid * width]).unwrap();
        g.different(mid..q.n, width, &mut out[mid * width..]).unwrap();
        // Device timings come from timestamp queries wherever the adapter
        // has them; with rows on the fly no matrix is filled, and the walk's
        // time includes the host's round trips, so it is wall time only.
        let filled = opts.cache_rows.is_none();
        assert_eq!(g.timings.device_similarity.is_some(), timestamps && filled);
        assert_eq!(g.row_stats().is_some(), !filled);
        if width > 0 && q.n > 1 {
            assert_eq!(g.timings.device_walk.is_some(), timestamps && filled);
        }
        out
    }

    /// Every variant: the subgroup and the shared-memory reduction.
    fn variants() -> [Option<Arc<GpuContext>>; 2] {
        [false, true].map(context)
    }

    /// Every variant must give the CPU's bytes.
    fn check(q: &Quantized, width: usize, opts: &GpuOptions) {
        let cpu = cpu_different(q, width);
        for ctx in variants() {
            let Some(ctx) = ctx else { return };
            assert_eq!(
                gpu_different(ctx, q, width, opts),
                cpu,
                "n={} width={width} {opts:?}",
                q.n
            );
        }
    }

    #[test]
    fn awkward_sizes_match_the_cpu_byte_for_byte() {
        for (n, dim) in [(1, 3), (2, 3), (17, 5), (255, 9), (257, 9)] {
            let q = random(n, dim, 3, n as u64);
            check(&q, n - 1, &GpuOptions::default());
        }
    }

    #[test]
    fn duplicates_and_ties_match() {
        // Every vector one of three directions: many exact ties.
        let q = random(61, 2, 1, 5);
        check(&q, 60, &GpuOptions::default());
        let same = Quantized::from_vectors(&vec![vec![1.0, 2.0]; 20], 2, false).unwrap();
        check(&same, 19, &GpuOptions::default());
        assert_eq!(cpu_different(&same, 19)[..19], (1..20).collect::<Vec<u32>>()[..]);
    }

    #[test]
    fn the_matrix_split_across_four_bindings_matches() {
        let q = random(130, 16, 4, 9);
        let opts = GpuOptions {
            tile_rows: Some(33),
            batch: Some(19),
            steps_per_dispatch: Some(7),
            ..Default::default()
        };
        check(&q, 129, &opts);
        check(&q, 10, &opts);
    }

    #[test]
    fn real_embeddings_with_top_k_match() {
        let corpus = crate::corpus::bundled_for_tests();
        let q = crate::quantize::prepare(&corpus, false).vectors;
        check(&q, 40, &GpuOptions::default());
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut sim = vec![0; q.n * 40];
        similar_rows(&q, 0..q.n, 40, &mut sim, &pool);
        assert_eq!(sim[..40], crate::reference::similar(&q, 0, 40)[..]);
    }

    /// Theme walks from the seed rows give the CPU's bytes on every variant,
    /// and the extra rows leave the poems' walks as they were.
    fn check_themes(q: &Quantized, themes: &Quantized, width: usize, opts: &GpuOptions) {
        let m = crate::cpu::SimMatrix::compute(q);
        let mut cpu = vec![0; themes.n * width];
        crate::cpu::seeded_rows(&m, &crate::themes::seeds(q, themes), width, &mut cpu);
        let poems = cpu_different(q, q.n - 1);
        for ctx in variants() {
            let Some(ctx) = ctx else { return };
            let mut g = GpuBackend::with_themes(ctx, q, Some(themes), opts).unwrap();
            let mut out = vec![0; themes.n * width];
            g.themes(width, &mut out).unwrap();
            assert_eq!(out, cpu, "n={} themes={} width={width} {opts:?}", q.n, themes.n);
            let mut own = vec![0; q.n * (q.n - 1)];
            g.different(0..q.n, q.n - 1, &mut own).unwrap();
            assert_eq!(own, poems, "poem walks beside {} themes, {opts:?}", themes.n);
        }
    }

    #[test]
    fn the_bundled_themes_walk_as_on_the_cpu() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let corpus = crate::corpus::bundled_for_tests();
        let q = crate::quantize::prepare(&corpus, false).vectors;
        let themes = crate::themes::load_labelled("themes", &dir.join("themes.jsonl"), None, &corpus, false).unwrap();
        check_themes(&q, &themes.vectors, q.n, &GpuOptions::default());
        let cached = GpuOptions {
            cache_rows: Some(100),
            ..Default::default()
        };
        check_themes(&q, &themes.vectors, 25, &cached);
    }

    /// Rows on the fly: caches from one row per walk to every row, over
    /// one to four tiles, give the matrix path's bytes.
    #[test]
    fn rows_on_the_fly_match_the_cpu_byte_for_byte() {
        let q = random(130, 16, 4, 9);
        // Two lanes by default; one to compare; a seven-row cache holds two
        // lanes of three walks, not two of five.
        for (cache_rows, tile_rows, batch, lanes) in [
            (1, None, None, None),
            (7, Some(2), Some(5), Some(1)),
            (7, Some(2), Some(5), None),
            (40, Some(10), None, None),
            (130, None, Some(64), Some(1)),
        ] {
            let opts = GpuOptions {
                cache_rows: Some(cache_rows),
                tile_rows,
                batch,
                lanes,
                ..Default::default()
            };
            check(&q, 129, &opts);
            check(&q, 10, &opts);
        }
        let corpus = crate::corpus::bundled_for_tests();
        let real = crate::quantize::prepare(&corpus, false).vectors;
        let opts = GpuOptions {
            cache_rows: Some(50),
            ..Default::default()
        };
        check(&real, 30, &opts);
    }

    /// The cache keeps rows that repeat: most of a real corpus's rows come
    /// from it, and a cache of every row computes each at most once.
    #[test]
    fn the_gpu_row_cache_hits_repeated_rows() {
        let Some(ctx) = context(false) else { return };
        let corpus = crate::corpus::bundled_for_tests();
        let q = crate::quantize::prepare(&corpus, false).vectors;
        let opts = GpuOptions {
            cache_rows: Some(q.n),
            ..Default::default()
        };
        let mut g = GpuBackend::new(ctx, &q, &opts).unwrap();
        let mut out = vec![0; q.n * 20];
        g.different(0..q.n, 20, &mut out).unwrap();
        let stats = g.row_stats().unwrap();
        assert_eq!((stats.requests, stats.seeds), (q.n as u64 * 19, q.n as u64));
        assert!(stats.computed <= q.n as u64, "{stats}");
        assert!(stats.hit_rate() > 0.9, "{stats}");
    }

    /// Without a forced `cache_rows`, the matrix is held when it fits and the
    /// rows on the fly take over above `--max-gpu-memory`.
    #[test]
    fn the_gpu_holds_the_matrix_only_when_it_fits() {
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: 1 << 20,
            max_buffer_size: 1 << 30,
            ..Default::default()
        };
        let held = |n, rows, max_gpu_memory| {
            let opts = GpuOptions {
                max_gpu_memory,
                ..Default::default()
            };
            rows_held(n, rows, &limits, &opts)
        };
        assert_eq!(held(1000, 1000, None).unwrap(), 1000);
        // 1 MiB bindings of 6,016-byte rows: four tiles hold 696 of 3000 rows.
        assert_eq!(held(3000, 3000, None).unwrap(), 4 * ((1 << 20) / 6016));
        assert_eq!(held(1000, 1012, Some(100 * 2016)).unwrap(), 100);
        let e = held(1000, 1000, Some(1000)).unwrap_err().to_string();
        assert!(e.contains("1000 poems") && e.contains("--max-gpu-memory"), "{e}");
    }

    #[test]
    fn too_many_tiles_is_a_clear_error() {
        let e = TileLayout::plan(100_000, 100_000, 128 << 20, 256 << 20, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("100000 poems") && e.contains("fit"), "{e}");
        let l = TileLayout::plan(10_000, 10_000, 128 << 20, 256 << 20, None).unwrap();
        assert_eq!((l.tiles, l.stride), (2, 10_000));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_corpora_match_the_cpu(
            n in 1usize..70, dim in 1usize..24, levels in 1i32..5, seed in any::<u64>(),
            k in 0usize..80, tiles in 1usize..=4, batch in 1usize..40, steps in 1u32..50,
            cache in proptest::option::of(1usize..80),
        ) {
            let q = random(n, dim, levels, seed);
            let held = cache.map_or(n, |c| c.min(n));
            let opts = GpuOptions {
                tile_rows: Some(held.div_ceil(tiles)),
                batch: Some(batch),
                steps_per_dispatch: Some(steps),
                cache_rows: cache,
                ..Default::default()
            };
            check(&q, k.min(n - 1), &opts);
        }

        #[test]
        fn random_theme_walks_match_the_cpu(
            n in 2usize..60, dim in 1usize..12, levels in 1i32..4, seed in any::<u64>(),
            t in 1usize..6, k in 0usize..70, tiles in 1usize..=4, batch in 1usize..8, steps in 1u32..40,
            cache in proptest::option::of(1usize..70),
        ) {
            let q = random(n, dim, levels, seed);
            let themes = random(t, dim, levels + 1, !seed);
            // Small tiles: the seed rows land in tiles of their own or share the poems' last.
            let held = cache.map_or(n + t, |c| c.min(n + t));
            let opts = GpuOptions {
                tile_rows: Some(held.div_ceil(tiles)),
                batch: Some(batch),
                steps_per_dispatch: Some(steps),
                cache_rows: cache,
                ..Default::default()
            };
            check_themes(&q, &themes, crate::themes::width(n, Some(k)), &opts);
        }
    }
}
