//! The similarity matrix on the GPU: planned into tiles that each fit one
//! storage binding, and filled by `similarity.wgsl`, one dispatch per tile.

use anyhow::{bail, Result};
use wgpu::util::DeviceExt;

use super::context::GpuContext;
use super::pipelines::{self, SimilarityBindings, SimilarityParams, MAX_TILES, SIMILARITY_WG};
use super::timer::Timer;
use super::GpuError;
use crate::matrix::{pack_pair, padded, row_bytes};
use crate::quantize::Quantized;

/// How the matrix is laid out across tiles.
#[derive(Debug, Clone, Copy)]
pub struct TileLayout {
    /// Poems: the matrix's columns, and its first rows.
    pub n: usize,
    /// Matrix rows: the poems' rows, then one seed row per theme.
    pub rows: usize,
    /// Entries per padded row.
    pub stride: usize,
    pub rows_per_tile: usize,
    pub tiles: usize,
}

impl TileLayout {
    /// Plans the tiles for `n` poems and `rows` matrix rows (`n` plus the
    /// themes' seed rows) within the adapter's binding size.
    pub fn plan(n: usize, rows: usize, max_binding: u64, max_buffer: u64, force_rows: Option<usize>) -> Result<Self> {
        let stride = padded(n);
        let row_bytes = row_bytes(n);
        let fit = (max_binding.min(max_buffer) / row_bytes) as usize;
        let rows_per_tile = force_rows.unwrap_or(fit).min(fit).min(rows).max(1);
        let tiles = rows.div_ceil(rows_per_tile);
        if fit == 0 || tiles > MAX_TILES {
            let matrix = n as u64 * row_bytes;
            let max_n = ((MAX_TILES as u64 * max_binding.min(max_buffer) / 2) as f64).sqrt() as usize;
            bail!(
                "the similarity matrix for {n} poems needs {} in {tiles} tiles of at most {}; this adapter binds at most {MAX_TILES} tiles, so about {max_n} poems fit",
                bytesize::ByteSize(matrix),
                bytesize::ByteSize((rows_per_tile as u64 * row_bytes).min(max_binding.min(max_buffer)))
            );
        }
        Ok(TileLayout {
            n,
            rows,
            stride,
            rows_per_tile,
            tiles,
        })
    }

    /// Rows held by tile `t` (the last one may be short).
    fn rows(&self, t: usize) -> usize {
        (self.rows - t * self.rows_per_tile).min(self.rows_per_tile)
    }

    fn tile_bytes(&self) -> u64 {
        (self.rows_per_tile * self.stride * 2) as u64
    }
}

/// The matrix tiles, resident on the GPU for the backend's lifetime.
pub(super) struct MatrixTiles {
    pub layout: TileLayout,
    tiles: Vec<wgpu::Buffer>,
    /// Bound in place of the tiles a small matrix does not use.
    unused_tile: wgpu::Buffer,
}

/// The embeddings, two i16 components per u32 word, low half first.
pub(super) fn pack(q: &Quantized) -> Vec<u32> {
    let dim_words = q.dim.div_ceil(2);
    let mut packed = Vec::with_capacity(q.n * dim_words);
    for i in 0..q.n {
        // An odd dimension pads its last word with a zero.
        packed.extend(
            q.row(i)
                .chunks(2)
                .map(|c| pack_pair(c[0], c.get(1).copied().unwrap_or(0))),
        );
    }
    packed
}

fn storage_buffer(ctx: &GpuContext, label: &str, size: u64) -> wgpu::Buffer {
    ctx.buffer(label, size, wgpu::BufferUsages::STORAGE)
}

impl MatrixTiles {
    /// Uploads the embeddings and allocates the tiles; returns them with the
    /// embeddings buffer, which only the fill needs.
    pub fn upload(ctx: &GpuContext, q: &Quantized, layout: TileLayout) -> Result<(Self, wgpu::Buffer)> {
        let packed = pack(q);
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let embeddings = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("embeddings"),
            contents: bytemuck::cast_slice(&packed),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let tiles: Vec<wgpu::Buffer> = (0..layout.tiles)
            .map(|t| storage_buffer(ctx, &format!("matrix tile {t}"), layout.tile_bytes()))
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(GpuError::OutOfMemory(format!(
                "the GPU ({}) has no room for the {} MiB similarity matrix of {} poems: {e}. Use the CPU backend, or fewer poems",
                ctx.summary.name,
                (layout.tile_bytes() * layout.tiles as u64) >> 20,
                q.n
            ))
            .into());
        }
        let unused_tile = storage_buffer(ctx, "unused tile", 16);
        ctx.wait(None)?;
        Ok((
            MatrixTiles {
                layout,
                tiles,
                unused_tile,
            },
            embeddings,
        ))
    }

    /// The buffer bound as tile `t`.
    pub fn binding(&self, t: usize) -> &wgpu::Buffer {
        self.tiles.get(t).unwrap_or(&self.unused_tile)
    }

    /// Fills every tile with `sim16(dot(i, j))` for the rows of `q` (the
    /// poems, then any themes) and the first `layout.n` columns (the poems);
    /// returns the device time where the adapter has timestamps.
    pub fn fill(&self, ctx: &GpuContext, q: &Quantized, embeddings: &wgpu::Buffer) -> Result<Option<f64>> {
        let layout = self.layout;
        let dim_words = q.dim.div_ceil(2);
        let params = pipelines::param_slots((0..layout.tiles).map(|t| SimilarityParams {
            n: layout.n as u32,
            dim_words: dim_words as u32,
            stride_words: (layout.stride / 2) as u32,
            row0: (t * layout.rows_per_tile) as u32,
            rows: layout.rows(t) as u32,
            _pad: [0; 3],
        }));
        let params = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("similarity params"),
            contents: &params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let timer = Timer::new(ctx, self.tiles.len());
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for (t, tile) in self.tiles.iter().enumerate() {
            let bindings = SimilarityBindings {
                emb: embeddings,
                tile,
                p: &params,
            };
            let bind_group =
                pipelines::bind_group(&ctx.device, "similarity", &ctx.pipelines.similarity_layout, &bindings);
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("similarity"),
                timestamp_writes: timer.as_ref().and_then(|tm| tm.writes(t, true, true)),
            });
            pass.set_pipeline(&ctx.pipelines.similarity);
            pass.set_bind_group(0, &bind_group, &[pipelines::param_offset(t)]);
            // One invocation per u32 word (two columns) of each row.
            let [wg_x, wg_y] = SIMILARITY_WG;
            let rows = layout.rows(t) as u32;
            let (x, y) = (((layout.stride / 2) as u32).div_ceil(wg_x), rows.div_ceil(wg_y));
            if y > 65535 {
                bail!("a tile of {rows} rows exceeds one dispatch");
            }
            pass.dispatch_workgroups(x, y, 1);
        }
        let submission = ctx.queue.submit([encoder.finish()]);
        ctx.wait(Some(submission))?;
        timer.map(|tm| tm.seconds(ctx)).transpose()
    }
}
