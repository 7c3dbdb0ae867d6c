//! Copying finished batches out of their staging buffers.

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::context::GpuContext;

/// Where a finished batch's rows go: `batch` within the call's `starts`.
pub(super) struct Destination<'a> {
    pub batch: Range<usize>,
    pub starts: Range<usize>,
    pub width: usize,
    pub out: &'a mut [u32],
}

/// Waits for `submission`, copies the batch's rows out of `staging` into
/// the destination, and returns the time spent waiting for the GPU.
pub(super) fn read_batch(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    submission: wgpu::SubmissionIndex,
    to: Destination<'_>,
) -> Result<Duration> {
    let width = to.width;
    let bytes = (to.batch.len() * width * 4) as u64;
    let slice = staging.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    let t = Instant::now();
    ctx.wait(Some(submission))?;
    let waited = t.elapsed();
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow!("GPU readback did not complete"))?
        .map_err(|e| anyhow!("GPU readback failed: {e}"))?;
    {
        let view = slice
            .get_mapped_range()
            .map_err(|e| anyhow!("GPU readback failed: {e:?}"))?;
        let first = (to.batch.start - to.starts.start) * width;
        let rows = &mut to.out[first..first + to.batch.len() * width];
        rows.copy_from_slice(bytemuck::cast_slice(&view));
    }
    staging.unmap();
    Ok(waited)
}
