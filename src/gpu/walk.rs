//! The diversity walk on the GPU: batches of starts, one workgroup per
//! start, a bounded number of steps per dispatch. Results come back through
//! two rotating staging buffers, so the GPU works on batch k+1 while the CPU
//! copies out batch k. (With rows on the fly, [`super::row_cache`] drives the
//! batches one step at a time instead.)

use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::pipelines::{self, WalkBindings, WalkParams, PARAM_SLOT};
use super::readback::{read_batch, Destination};
use super::timer::Timer;
use super::{GpuBackend, GpuError, Residency};

/// Candidate updates per dispatch: small enough that no dispatch nears a
/// desktop watchdog (about 2 s) even on a slow GPU.
const UPDATES_PER_DISPATCH: u64 = 1 << 27;

/// The shape of the batches of one `different` call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct BatchShape {
    pub starts_per_batch: usize,
    pub width: usize,
    pub steps_per_dispatch: u32,
}

impl BatchShape {
    fn dispatches(&self) -> usize {
        self.width.div_ceil(self.steps_per_dispatch as usize)
    }
}

/// The buffers one batch shape needs: created on first use, then reused by
/// every batch (and every precompute chunk) of the same shape.
pub(super) struct BatchBuffers {
    pub shape: BatchShape,
    pub staging: [wgpu::Buffer; 2],
    pub orderings: wgpu::Buffer,
    pub params: wgpu::Buffer,
    pub bind_group: wgpu::BindGroup,
    /// Each walk's last choice; with rows on the fly, the host writes each
    /// walk's cache slot there before every step.
    pub last: wgpu::Buffer,
    /// The choices, copied out for the host between steps (rows on the fly).
    pub last_staging: wgpu::Buffer,
    /// Bound in `bind_group`; held here so its lifetime is plain to see.
    _sums: wgpu::Buffer,
}

/// Workgroups for `batch` walks, one each, in a grid within 65535 per axis.
pub(super) fn dispatch_grid(batch: usize) -> (u32, u32) {
    let x = (batch as u32).min(65535);
    (x, (batch as u32).div_ceil(x))
}

/// A submitted batch whose rows are still to be copied out.
struct InFlight {
    slot: usize,
    submission: wgpu::SubmissionIndex,
    batch: Range<usize>,
}

impl GpuBackend {
    /// The "different" orderings (diversity walks) for `starts` into `out`
    /// (`width` per start), on the matrix or with rows on the fly.
    pub fn different(&mut self, starts: Range<usize>, width: usize, out: &mut [u32]) -> Result<()> {
        if width == 0 || starts.is_empty() {
            return Ok(());
        }
        // Taken out for the walk, so that the cache and the backend can be
        // borrowed side by side; put back whatever the walk returns.
        let mut residency = std::mem::replace(&mut self.residency, Residency::Matrix);
        let done = match &mut residency {
            Residency::Matrix => self.walk_matrix(starts, width, out),
            Residency::RowsOnTheFly(cache) => self.walk_on_the_fly(cache, starts, width, out),
        };
        self.residency = residency;
        done
    }

    /// Splits `starts` into batches and makes sure `lanes` sets of buffers
    /// of their shape exist; see [`GpuBackend::batch_shape`] for the rest.
    pub(super) fn prepare_batches(
        &mut self,
        starts: &Range<usize>,
        width: usize,
        lanes: usize,
        max_walks: usize,
        steps_per_dispatch: Option<u32>,
    ) -> Result<Vec<Range<usize>>> {
        let (shape, bytes_per_start) = self.batch_shape(starts.len(), width, max_walks, steps_per_dispatch);
        if self.batch_buffers.len() != lanes || self.batch_buffers[0].shape != shape {
            self.batch_buffers.clear(); // free the old buffers first
            for _ in 0..lanes {
                let buffers = self.make_batch_buffers(shape, bytes_per_start)?;
                self.batch_buffers.push(buffers);
            }
        }
        Ok((starts.start..starts.end)
            .step_by(shape.starts_per_batch)
            .map(|b| b..(b + shape.starts_per_batch).min(starts.end))
            .collect())
    }

    /// The walks over the whole matrix: batches in turn, each copied out
    /// while the next runs.
    fn walk_matrix(&mut self, starts: Range<usize>, width: usize, out: &mut [u32]) -> Result<()> {
        let batches = self.prepare_batches(&starts, width, 1, usize::MAX, None)?;
        let buffers = &self.batch_buffers[0];
        let timer = Timer::new(&self.ctx, batches.len());
        let mut in_flight: Option<InFlight> = None;
        let t_walk = Instant::now();
        let mut readback = Duration::ZERO;
        for (k, batch) in batches.iter().enumerate() {
            let submission = self.submit_batch(buffers, batch, k, timer.as_ref());
            // While this batch runs, copy out the previous one.
            if let Some(done) = in_flight.take() {
                readback += self.copy_out(buffers, done, &starts, width, out)?;
            }
            in_flight = Some(InFlight {
                slot: k % 2,
                submission,
                batch: batch.clone(),
            });
        }
        if let Some(done) = in_flight.take() {
            readback += self.copy_out(buffers, done, &starts, width, out)?;
        }
        self.timings.walk += (t_walk.elapsed() - readback).as_secs_f64();
        self.timings.readback += readback.as_secs_f64();
        if let Some(tm) = timer {
            *self.timings.device_walk.get_or_insert(0.0) += tm.seconds(&self.ctx)?;
        }
        Ok(())
    }

    /// As many starts per batch as the sums and outputs allow (≤ 256 MiB
    /// each) and at most `max_walks`, and `steps_per_dispatch`, by default
    /// within [`UPDATES_PER_DISPATCH`] (rows on the fly cap the walks at the
    /// cache's rows per lane and take one step per dispatch).
    fn batch_shape(
        &self,
        starts: usize,
        width: usize,
        max_walks: usize,
        steps_per_dispatch: Option<u32>,
    ) -> (BatchShape, u64) {
        let limits = self.ctx.device.limits();
        let max_bind = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let stride = self.matrix.layout.stride;
        let bytes_per_start = (stride * 4).max(width * 4) as u64;
        let cap = ((max_bind.min(256 << 20) / bytes_per_start).max(1) as usize).min(max_walks);
        let starts_per_batch = self.opts.batch.unwrap_or(cap).min(cap).min(starts).max(1);
        let steps_per_dispatch = steps_per_dispatch.unwrap_or_else(|| {
            self.opts
                .steps_per_dispatch
                .unwrap_or_else(|| {
                    (UPDATES_PER_DISPATCH / (starts_per_batch as u64 * stride as u64)).clamp(1, 4096) as u32
                })
                .max(1)
        });
        let shape = BatchShape {
            starts_per_batch,
            width,
            steps_per_dispatch,
        };
        (shape, bytes_per_start)
    }

    /// Writes the batch's parameters and submits its dispatches, the last
    /// followed by a copy into staging slot `k % 2`.
    fn submit_batch(
        &self,
        buffers: &BatchBuffers,
        batch: &Range<usize>,
        k: usize,
        timer: Option<&Timer>,
    ) -> wgpu::SubmissionIndex {
        let ctx = &self.ctx;
        let shape = buffers.shape;
        let dispatches = shape.dispatches();
        // Queue writes are ordered after the previous batch's dispatches
        // (WebGPU queue timeline), so one parameter buffer serves all.
        ctx.queue
            .write_buffer(&buffers.params, 0, &self.walk_params(shape, batch));
        let pipeline = &ctx.pipelines.walk;
        let (x, y) = dispatch_grid(batch.len());
        let mut submission = None;
        for d in 0..dispatches {
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("walk"),
                    timestamp_writes: timer.and_then(|tm| tm.writes(k, d == 0, d + 1 == dispatches)),
                });
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &buffers.bind_group, &[pipelines::param_offset(d)]);
                pass.dispatch_workgroups(x, y, 1);
            }
            if d + 1 == dispatches {
                let bytes = (batch.len() * shape.width * 4) as u64;
                encoder.copy_buffer_to_buffer(&buffers.orderings, 0, &buffers.staging[k % 2], 0, bytes);
            }
            submission = Some(ctx.queue.submit([encoder.finish()]));
        }
        submission.expect("at least one dispatch")
    }

    /// Parameters for every dispatch of `batch`, one uniform slot each.
    pub(super) fn walk_params(&self, shape: BatchShape, batch: &Range<usize>) -> Vec<u8> {
        let layout = self.matrix.layout;
        let steps_per = shape.steps_per_dispatch as usize;
        pipelines::param_slots((0..shape.dispatches()).map(|d| {
            let step0 = d * steps_per;
            WalkParams {
                n: layout.n as u32,
                stride_words: (layout.stride / 2) as u32,
                width: shape.width as u32,
                start0: batch.start as u32,
                batch: batch.len() as u32,
                step0: step0 as u32,
                steps: (shape.width - step0).min(steps_per) as u32,
                rows_per_tile: layout.rows_per_tile as u32,
            }
        }))
    }

    /// Copies a finished batch out; returns the time spent copying (not
    /// waiting for the GPU).
    fn copy_out(
        &self,
        buffers: &BatchBuffers,
        done: InFlight,
        starts: &Range<usize>,
        width: usize,
        out: &mut [u32],
    ) -> Result<Duration> {
        let t = Instant::now();
        let to = Destination {
            batch: done.batch,
            starts: starts.clone(),
            width,
            out,
        };
        let waited = read_batch(&self.ctx, &buffers.staging[done.slot], done.submission, to)?;
        Ok(t.elapsed() - waited)
    }

    /// Allocates the buffers and bind group for one batch shape.
    fn make_batch_buffers(&self, shape: BatchShape, bytes_per_start: u64) -> Result<BatchBuffers> {
        let ctx = &self.ctx;
        let batch = shape.starts_per_batch;
        let buffer = |label: &str, size, usage| ctx.buffer(label, size, usage);
        use wgpu::BufferUsages as U;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let stride = self.matrix.layout.stride;
        let sums = buffer("sums", (batch * stride * 4) as u64, U::STORAGE);
        let out_bytes = (batch * shape.width * 4) as u64;
        let orderings = buffer("orderings", out_bytes, U::STORAGE | U::COPY_SRC);
        let last_bytes = (batch * 4).max(16) as u64;
        let last = buffer("last", last_bytes, U::STORAGE | U::COPY_SRC | U::COPY_DST);
        let last_staging = buffer("last staging", last_bytes, U::MAP_READ | U::COPY_DST);
        let staging = [0, 1].map(|_| buffer("staging", out_bytes, U::MAP_READ | U::COPY_DST));
        let params_bytes = shape.dispatches() as u64 * PARAM_SLOT;
        let params = buffer("walk params", params_bytes, U::UNIFORM | U::COPY_DST);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::OutOfMemory(format!(
                "the GPU ({}) has no room for a batch of {batch} starts ({} MiB): {e}",
                ctx.summary.name,
                (batch as u64 * bytes_per_start * 2) >> 20
            ))
            .into());
        }
        let tile = |t| self.matrix.binding(t);
        let bindings = WalkBindings {
            mat0: tile(0),
            mat1: tile(1),
            mat2: tile(2),
            mat3: tile(3),
            sums: &sums,
            out: &orderings,
            last: &last,
            p: &params,
        };
        let bind_group = pipelines::bind_group(&ctx.device, "walk", &ctx.pipelines.walk_layout, &bindings);
        Ok(BatchBuffers {
            shape,
            staging,
            orderings,
            params,
            bind_group,
            last,
            last_staging,
            _sums: sums,
        })
    }
}
