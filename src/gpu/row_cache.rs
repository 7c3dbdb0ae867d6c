//! Rows on the fly on the GPU, for when the n × n matrix does not fit.
//!
//! The matrix tiles then hold a bounded cache of rows, and the walks of a
//! batch go one step per dispatch. Between steps the host reads each walk's
//! last choice, looks its row up in an LRU map (row → cache slot), has the
//! row-block shader (`rows.wgsl`) compute the rows the cache lacks into free
//! or evicted slots, and hands each walk its slot through the `last` buffer
//! (`walk.wgsl` with `CACHED`). The rows are the same exact integers as
//! the matrix's, so the orderings are byte-identical to the matrix path.
//!
//! Each step of a batch waits for the one before (the host needs its
//! choices). Two batches go in lanes, step by step, so that while the host
//! places one lane's rows the GPU runs the other's step. Their walks
//! together are at most the cache's rows, so placing one lane's rows never
//! evicts a row the other lane's step in flight reads: the least recently
//! used row is then one neither touched. Queue writes are ordered after
//! the work already submitted, so the shared list and parameters are never
//! rewritten under a running dispatch. Timestamps would measure the host's
//! round trips too, so this path reports wall time only.

use std::num::NonZeroUsize;
use std::ops::Range;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::pipelines::{self, RowsBindings, SimilarityParams, MAX_TILES, PARAM_SLOT, ROWS_WG, ROW_BLOCK};
use super::readback::{read_batch, Destination};
use super::tiles::pack;
use super::tiles::MatrixTiles;
use super::walk::{dispatch_grid, BatchBuffers};
use super::GpuBackend;
use super::GpuError;
use crate::cpu::on_the_fly::RowStats;
use crate::quantize::Quantized;

/// Which slot holds which row: the cache's bookkeeping on the host.
pub(super) struct Slots {
    /// Rows held, least recently used first out: row → slot. Slots are
    /// handed out in order until the cache is full, so while it is not,
    /// the next free slot is its length.
    map: lru::LruCache<u32, u32>,
    pub stats: RowStats,
}

/// The row cache: its bookkeeping and the row-block shader's buffers.
pub(super) struct RowCache {
    pub slots: Slots,
    rows_per_tile: u32,
    /// Pairs (vector, tile row) of the rows to compute, grouped by tile.
    list: wgpu::Buffer,
    /// One parameter slot per tile.
    params: wgpu::Buffer,
    /// One per tile: vectors, that tile, the parameters, the list, columns.
    bind_groups: Vec<wgpu::BindGroup>,
    pipeline: wgpu::ComputePipeline,
    dim_words: u32,
    n: u32,
    stride_words: u32,
}

/// The rows one step needs: each walk's slot, and the rows to compute.
pub(super) struct Placed {
    pub slots: Vec<u32>,
    /// (vector, slot) for each row the cache lacked.
    pub misses: Vec<(u32, u32)>,
}

impl Slots {
    /// An empty cache of `capacity` rows.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Slots {
            map: lru::LruCache::new(NonZeroUsize::new(capacity).expect("at least one row")),
            stats: RowStats {
                capacity,
                ..Default::default()
            },
        }
    }

    /// Rows the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.map.cap().get()
    }

    /// A slot for every row of `rows` (one per walk, at most the capacity
    /// distinct): hits are promoted, misses take a free slot or the least
    /// recently used one. A row touched in this step is never evicted in it:
    /// while fewer rows than the capacity are touched, an untouched one is
    /// the least recently used.
    pub fn place(&mut self, rows: &[u32], seeds: bool) -> Placed {
        // Checked always: a wrong slot would give wrong bytes, silently.
        assert!(rows.len() <= self.capacity(), "more walks than cache rows");
        let mut placed = Placed {
            slots: Vec::with_capacity(rows.len()),
            misses: Vec::new(),
        };
        for &r in rows {
            let slot = match self.map.get(&r) {
                Some(&s) => s,
                None => {
                    let s = if self.map.len() < self.capacity() {
                        self.map.len() as u32
                    } else {
                        self.map.pop_lru().expect("a full cache").1
                    };
                    self.map.put(r, s);
                    placed.misses.push((r, s));
                    s
                }
            };
            placed.slots.push(slot);
        }
        if seeds {
            self.stats.seeds += rows.len() as u64;
        } else {
            self.stats.requests += rows.len() as u64;
            self.stats.computed += placed.misses.len() as u64;
        }
        placed
    }
}

impl RowCache {
    /// A cache of the rows the tiles of `matrix` hold, computed from the
    /// vectors of `q` (poems, then themes; `embeddings` holds them on the
    /// GPU), whose first `n` are the columns.
    pub fn new(
        ctx: &GpuContext,
        matrix: &MatrixTiles,
        embeddings: wgpu::Buffer,
        q: &Quantized,
        n: usize,
    ) -> Result<Self> {
        let layout = matrix.layout;
        let dim_words = q.dim.div_ceil(2);
        let room = ctx.device.limits().max_compute_workgroup_storage_size as u64;
        if pipelines::rows_workgroup_bytes(dim_words) > room {
            return Err(GpuError::Limits(format!(
                "rows on the fly keep {ROW_BLOCK} vectors of {} dims in workgroup memory ({} bytes); {} has {room}",
                q.dim,
                pipelines::rows_workgroup_bytes(dim_words),
                ctx.summary.name
            ))
            .into());
        }
        let buffer = |label, size, usage| ctx.buffer(label, size, usage);
        use wgpu::BufferUsages as U;
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let list = buffer("row list", (layout.rows as u64 * 8).max(16), U::STORAGE | U::COPY_DST);
        let params = buffer("row params", MAX_TILES as u64 * PARAM_SLOT, U::UNIFORM | U::COPY_DST);
        let cols = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("columns"),
            contents: bytemuck::cast_slice(&word_major(q, n, layout.stride)),
            usage: U::STORAGE,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::OutOfMemory(format!(
                "the GPU ({}) has no room for the row cache's columns of {n} poems: {e}",
                ctx.summary.name
            ))
            .into());
        }
        let bind_groups = (0..layout.tiles)
            .map(|t| {
                let bindings = RowsBindings {
                    emb: &embeddings,
                    tile: matrix.binding(t),
                    p: &params,
                    list: &list,
                    cols: &cols,
                };
                pipelines::bind_group(&ctx.device, "rows", &ctx.pipelines.rows_layout, &bindings)
            })
            .collect();
        Ok(RowCache {
            slots: Slots::new(layout.rows),
            rows_per_tile: layout.rows_per_tile as u32,
            list,
            params,
            bind_groups,
            pipeline: pipelines::rows_pipeline(&ctx.device, &ctx.pipelines.rows_layout, dim_words),
            dim_words: dim_words as u32,
            n: n as u32,
            stride_words: (layout.stride / 2) as u32,
        })
    }

    /// Writes the list and parameters for `misses` and records one dispatch
    /// of the row-block shader per tile that receives rows.
    pub fn encode_fill(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, misses: &[(u32, u32)]) {
        if misses.is_empty() {
            return;
        }
        let mut by_tile: Vec<Vec<u32>> = vec![Vec::new(); self.bind_groups.len()];
        for &(row, slot) in misses {
            let t = (slot / self.rows_per_tile) as usize;
            by_tile[t].extend([row, slot % self.rows_per_tile]);
        }
        let mut first = 0u32;
        let params = pipelines::param_slots(by_tile.iter().map(|pairs| {
            let rows = (pairs.len() / 2) as u32;
            first += rows;
            SimilarityParams {
                n: self.n,
                dim_words: self.dim_words,
                stride_words: self.stride_words,
                row0: first - rows,
                rows,
                _pad: [0; 3],
            }
        }));
        ctx.queue
            .write_buffer(&self.list, 0, bytemuck::cast_slice(&by_tile.concat()));
        ctx.queue.write_buffer(&self.params, 0, &params);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("rows on the fly"),
            timestamp_writes: None,
        });
        pass.set_pipeline(&self.pipeline);
        for (t, pairs) in by_tile.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            pass.set_bind_group(0, &self.bind_groups[t], &[pipelines::param_offset(t)]);
            let rows = (pairs.len() / 2) as u32;
            pass.dispatch_workgroups(self.stride_words.div_ceil(ROWS_WG), rows.div_ceil(ROW_BLOCK), 1);
        }
    }
}

/// The first `n` vectors of `q`, word-major: word `k` of vector `c` at
/// `k * stride + c`, zero for the padding columns `n..stride`.
fn word_major(q: &Quantized, n: usize, stride: usize) -> Vec<u32> {
    let dim_words = q.dim.div_ceil(2);
    let packed = pack(q);
    let mut cols = vec![0u32; dim_words * stride];
    for c in 0..n {
        for k in 0..dim_words {
            cols[k * stride + c] = packed[c * dim_words + k];
        }
    }
    cols
}

impl RowCache {
    /// Batches in flight: two by default (when the cache holds at least two
    /// rows), else one.
    fn lanes(&self, asked: Option<usize>) -> usize {
        match self.slots.capacity() {
            2.. => asked.unwrap_or(2).clamp(1, 2),
            _ => 1,
        }
    }
}

impl GpuBackend {
    /// The walks for `starts` with rows on the fly from `cache`. Every walk
    /// in flight needs its row resident, so the batches in flight together
    /// hold at most the cache's rows; the host places each step's rows
    /// first, so a dispatch runs one step.
    pub(super) fn walk_on_the_fly(
        &mut self,
        cache: &mut RowCache,
        starts: Range<usize>,
        width: usize,
        out: &mut [u32],
    ) -> Result<()> {
        let lanes = cache.lanes(self.opts.lanes);
        let max_walks = cache.slots.capacity() / lanes;
        let batches = self.prepare_batches(&starts, width, lanes, max_walks, Some(1))?;
        let buffers = std::mem::take(&mut self.batch_buffers);
        let done = self.walk_lanes(cache, &buffers, &batches, &starts, width, out);
        self.batch_buffers = buffers;
        done
    }

    /// Batches in groups, one per lane, stepped together, one dispatch per
    /// step, the rows each step needs placed first.
    fn walk_lanes(
        &mut self,
        cache: &mut RowCache,
        lanes: &[BatchBuffers],
        batches: &[Range<usize>],
        starts: &Range<usize>,
        width: usize,
        out: &mut [u32],
    ) -> Result<()> {
        let t_walk = Instant::now();
        let mut readback = Duration::ZERO;
        for group in batches.chunks(lanes.len()) {
            let mut rows: Vec<Vec<u32>> = group.iter().map(|b| b.clone().map(|s| s as u32).collect()).collect();
            let mut pending: Vec<Option<wgpu::SubmissionIndex>> = vec![None; group.len()];
            for t in 0..width {
                for (i, batch) in group.iter().enumerate() {
                    // While this lane's choices come back, the other lane's step runs.
                    if let Some(submission) = pending[i].take() {
                        rows[i] = read_words(&self.ctx, &lanes[i].last_staging, batch.len(), submission)?;
                    }
                    pending[i] = Some(self.cached_step(cache, &lanes[i], batch, &rows[i], t));
                }
            }
            for ((batch, buffers), submission) in group.iter().zip(lanes).zip(pending) {
                let to = Destination {
                    batch: batch.clone(),
                    starts: starts.clone(),
                    width,
                    out: &mut *out,
                };
                let t = Instant::now();
                let submission = submission.expect("width > 0");
                let waited = read_batch(&self.ctx, &buffers.staging[0], submission, to)?;
                readback += t.elapsed() - waited;
            }
        }
        self.timings.walk += (t_walk.elapsed() - readback).as_secs_f64();
        self.timings.readback += readback.as_secs_f64();
        Ok(())
    }

    /// Places `rows` (the starts at step 0, else the last choices), computes
    /// the missing ones, and submits step `t`, followed by a copy of the
    /// choices (or, at the last step, of the orderings) for the host.
    fn cached_step(
        &self,
        cache: &mut RowCache,
        buffers: &BatchBuffers,
        batch: &Range<usize>,
        rows: &[u32],
        t: usize,
    ) -> wgpu::SubmissionIndex {
        let ctx = &self.ctx;
        if t == 0 {
            let params = self.walk_params(buffers.shape, batch);
            ctx.queue.write_buffer(&buffers.params, 0, &params);
        }
        let placed = cache.slots.place(rows, t == 0);
        ctx.queue
            .write_buffer(&buffers.last, 0, bytemuck::cast_slice(&placed.slots));
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        cache.encode_fill(ctx, &mut encoder, &placed.misses);
        let last_step = t + 1 == buffers.shape.width;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("walk (rows on the fly)"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&ctx.pipelines.walk_cached);
            pass.set_bind_group(0, &buffers.bind_group, &[pipelines::param_offset(t)]);
            let (x, y) = dispatch_grid(batch.len());
            pass.dispatch_workgroups(x, y, 1);
        }
        if last_step {
            let bytes = (batch.len() * buffers.shape.width * 4) as u64;
            encoder.copy_buffer_to_buffer(&buffers.orderings, 0, &buffers.staging[0], 0, bytes);
        } else {
            encoder.copy_buffer_to_buffer(&buffers.last, 0, &buffers.last_staging, 0, (batch.len() * 4) as u64);
        }
        ctx.queue.submit([encoder.finish()])
    }
}

/// The first `len` words of `staging`, once `submission` is done.
fn read_words(
    ctx: &GpuContext,
    staging: &wgpu::Buffer,
    len: usize,
    submission: wgpu::SubmissionIndex,
) -> Result<Vec<u32>> {
    let slice = staging.slice(..(len * 4) as u64);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.wait(Some(submission))?;
    rx.recv_timeout(Duration::from_secs(60))
        .map_err(|_| anyhow!("GPU readback did not complete"))?
        .map_err(|e| anyhow!("GPU readback failed: {e}"))?;
    let words = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| anyhow!("GPU readback failed: {e:?}"))?;
        bytemuck::cast_slice(&view).to_vec()
    };
    staging.unmap();
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(slots: &mut Slots, rows: &[u32]) -> (Vec<u32>, Vec<(u32, u32)>) {
        let p = slots.place(rows, false);
        (p.slots, p.misses)
    }

    /// Hits keep their slot; misses fill free slots, then evict the least
    /// recently used row, never one the same step uses.
    #[test]
    fn placing_rows_evicts_the_least_recently_used_but_never_a_row_in_use() {
        let mut slots = Slots::new(3);
        assert_eq!(place(&mut slots, &[7, 8, 7]), (vec![0, 1, 0], vec![(7, 0), (8, 1)]));
        assert_eq!(place(&mut slots, &[9]), (vec![2], vec![(9, 2)]));
        // 8 is the least recently used: 10 takes its slot.
        assert_eq!(place(&mut slots, &[7, 10]), (vec![0, 1], vec![(10, 1)]));
        // Three distinct rows in one step, each in its own slot.
        let (got, misses) = place(&mut slots, &[11, 7, 12]);
        let mut distinct = got.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!((distinct.len(), misses.len()), (3, 2), "{got:?}");
        assert_eq!(got[1], 0, "7 stays where it was");
        assert_eq!((slots.stats.requests, slots.stats.computed), (9, 6));
        let p = slots.place(&[1, 2], true);
        assert_eq!((p.misses.len(), slots.stats.seeds, slots.stats.requests), (2, 2, 9));
    }
}
