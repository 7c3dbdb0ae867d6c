//! Device time of compute passes, from timestamp queries where the adapter
//! has them.

use anyhow::{anyhow, Result};

use super::context::GpuContext;

/// Timestamp pairs: pair `k` brackets the passes of one batch (or tile).
pub(super) struct Timer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    pairs: u32,
}

impl Timer {
    /// `None` where the adapter has no timestamps or `pairs` exceeds a query set.
    pub(super) fn new(ctx: &GpuContext, pairs: usize) -> Option<Self> {
        let queries = 2 * pairs as u32;
        if !ctx.summary.timestamps || pairs == 0 || queries > wgpu::QUERY_SET_MAX_QUERIES {
            return None;
        }
        let bytes = queries as u64 * 8;
        let buffer = |label, usage| ctx.buffer(label, bytes, usage);
        Some(Timer {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            }),
            resolve: buffer(
                "timestamps",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            read: buffer(
                "timestamps readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            pairs: pairs as u32,
        })
    }

    /// Timestamp writes for a pass that begins and/or ends pair `k`.
    pub(super) fn writes(&self, k: usize, begin: bool, end: bool) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        (begin || end).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: begin.then_some(2 * k as u32),
            end_of_pass_write_index: end.then_some(2 * k as u32 + 1),
        })
    }

    /// Resolves every pair and returns their summed duration in seconds.
    pub(super) fn seconds(&self, ctx: &GpuContext) -> Result<f64> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        encoder.resolve_query_set(&self.set, 0..2 * self.pairs, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, None);
        let submission = ctx.queue.submit([encoder.finish()]);
        let slice = self.read.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        ctx.wait(Some(submission))?;
        let ticks: u64 = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| anyhow!("timestamp readback failed: {e:?}"))?;
            let stamps: &[u64] = bytemuck::cast_slice(&view);
            stamps.chunks_exact(2).map(|p| p[1].saturating_sub(p[0])).sum()
        };
        self.read.unmap();
        Ok(ticks as f64 * ctx.queue.get_timestamp_period() as f64 * 1e-9)
    }
}
