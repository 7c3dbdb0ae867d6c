//! The GPU backend's options and timings: plain data that the command line
//! and the engine carry whether or not this build has the backend (feature
//! `gpu`), so that only the backend itself is left out of a CPU-only build.

/// The error a build without the `gpu` feature gives when asked for the GPU.
pub const DISABLED: &str = "this build has no GPU backend; rebuild with --features gpu (or use --backend cpu)";

/// How to pick and drive an adapter.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name.
    pub adapter: Option<String>,
    /// Accept software adapters (lavapipe, WARP).
    pub allow_software: bool,
    /// Force the plain shared-memory reduction even where subgroups exist.
    pub no_subgroups: bool,
    /// Force matrix tiles of this many rows (to test tiling on small corpora).
    pub tile_rows: Option<usize>,
    /// Force the number of starts per batch.
    pub batch: Option<usize>,
    /// Force the number of steps per dispatch.
    pub steps_per_dispatch: Option<u32>,
    /// GPU memory the matrix may take; above it, rows are computed on the
    /// fly behind a cache of this size.
    pub max_gpu_memory: Option<u64>,
    /// Force rows on the fly with a cache of this many rows.
    pub cache_rows: Option<usize>,
    /// Batches in flight with rows on the fly: 2 (the default) hide the
    /// host's round trip between steps behind the other batch's work.
    pub lanes: Option<usize>,
}

/// Wall-clock time per GPU phase, seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuTimings {
    pub upload: f64,
    pub similarity: f64,
    /// The walks (the "different" orderings).
    pub walk: f64,
    pub readback: f64,
    /// Device time of the similarity and walk passes (timestamp queries;
    /// `None` where the adapter has none).
    pub device_similarity: Option<f64>,
    pub device_walk: Option<f64>,
}
