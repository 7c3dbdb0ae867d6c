//! The GPU backend's stand-in in a build without the `gpu` feature: the same
//! names the engine and the command line use, and an error saying how to get
//! the backend wherever one would be opened. None of its values can exist.

use std::convert::Infallible;
use std::ops::Range;
use std::sync::Arc;

use anyhow::Result;

use crate::cpu::on_the_fly::RowStats;
use crate::quantize::Quantized;

#[path = "options.rs"]
mod options;

pub use options::{GpuOptions, GpuTimings, DISABLED};

/// Nothing to quiet: no Vulkan loader in this build.
pub fn quiet_headless_vulkan() -> bool {
    false
}

/// An adapter; none can be picked in this build.
pub enum Adapter {}

/// A device; none can be opened in this build.
pub struct GpuContext {
    never: Infallible,
}

impl GpuContext {
    /// No adapter, ever: `auto` falls back to the CPU.
    pub fn pick_adapter(_opts: &GpuOptions) -> Option<Adapter> {
        None
    }

    /// Fails: asking for the GPU in this build is an error.
    pub fn new(_opts: &GpuOptions) -> Result<Self> {
        anyhow::bail!(DISABLED)
    }

    /// Cannot be called: there is no adapter to pass.
    pub fn with_adapter(adapter: Adapter, _opts: &GpuOptions) -> Result<Self> {
        match adapter {}
    }
}

/// The backend; it cannot be built without a [`GpuContext`].
pub struct GpuBackend {
    never: Infallible,
    /// Kept so that callers read the timings as with the real backend.
    pub timings: GpuTimings,
}

impl GpuBackend {
    /// Cannot be called: there is no context to pass.
    pub fn with_themes(ctx: Arc<GpuContext>, _q: &Quantized, _t: Option<&Quantized>, _o: &GpuOptions) -> Result<Self> {
        match ctx.never {}
    }

    /// Unreachable, as every method: no value of this type exists.
    pub fn row_stats(&self) -> Option<RowStats> {
        match self.never {}
    }

    /// Unreachable.
    pub fn describe(&self) -> String {
        match self.never {}
    }

    /// Unreachable.
    pub fn different(&mut self, _starts: Range<usize>, _width: usize, _out: &mut [u32]) -> Result<()> {
        match self.never {}
    }

    /// Unreachable.
    pub fn themes(&mut self, _width: usize, _out: &mut [u32]) -> Result<()> {
        match self.never {}
    }
}
