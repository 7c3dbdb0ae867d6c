//! The GPU context and backend (wgpu): device, buffers and pipelines are
//! created once and reused for every batch of starts.
//!
//! - The quantised embeddings are uploaded once; `similarity.wgsl` fills the
//!   rounded similarity matrix on the GPU, split into up to [`MAX_TILES`]
//!   storage bindings when it exceeds one binding.
//! - `select.wgsl` runs the diversity walk for a batch of starts, one
//!   workgroup per start, a bounded number of steps per dispatch.
//! - Results come back through two rotating staging buffers, so the GPU
//!   works on batch k+1 while the CPU copies out batch k.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use wgpu::util::DeviceExt;

use crate::cpu::padded;
use crate::quantize::Quantized;

/// Matrix tiles one selection pipeline can bind.
pub const MAX_TILES: usize = 4;
/// Invocations per selection workgroup.
const WG: u32 = 256;
/// Candidate updates per dispatch: small enough that no dispatch nears a
/// desktop watchdog (about 2 s) even on a slow GPU.
const UPDATES_PER_DISPATCH: u64 = 1 << 27;

const SIMILARITY_WGSL: &str = include_str!("../shaders/similarity.wgsl");
// The selection shader is composed of three modules (no text templating):
// a workgroup reduction, a home for the running sums, and the walk itself.
macro_rules! select_wgsl {
    ($reduce:literal, $sums:literal) => {
        concat!(
            include_str!(concat!("../shaders/", $reduce)),
            include_str!(concat!("../shaders/", $sums)),
            include_str!("../shaders/select.wgsl")
        )
    };
}
/// Indexed by [uses subgroups][sums in workgroup memory].
const SELECT_WGSL: [[&str; 2]; 2] = [
    [
        select_wgsl!("reduce_shared.wgsl", "sums_storage.wgsl"),
        select_wgsl!("reduce_shared.wgsl", "sums_workgroup.wgsl"),
    ],
    [
        select_wgsl!("reduce_subgroup.wgsl", "sums_storage.wgsl"),
        select_wgsl!("reduce_subgroup.wgsl", "sums_workgroup.wgsl"),
    ],
];

/// How to pick and drive an adapter.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name.
    pub adapter: Option<String>,
    /// Accept software adapters (lavapipe, WARP).
    pub allow_software: bool,
    /// Force the plain shared-memory reduction even where subgroups exist.
    pub no_subgroups: bool,
    /// Keep the running sums in a storage buffer even where they fit in
    /// workgroup memory.
    pub storage_sums: bool,
    /// Force matrix tiles of this many rows (to test tiling on small corpora).
    pub tile_rows: Option<usize>,
    /// Force the number of starts per batch.
    pub batch: Option<usize>,
    /// Force the number of steps per dispatch.
    pub steps_per_dispatch: Option<u32>,
}

/// One adapter, as `diversity-gpu adapters` lists it.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_binding: u64,
    pub max_buffer: u64,
    pub max_workgroup_storage: u32,
    pub subgroups: bool,
    pub subgroup_sizes: (u32, u32),
    pub timestamps: bool,
    pub software: bool,
}

fn instance() -> wgpu::Instance {
    // WGPU_BACKEND and friends are honoured here.
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

fn summarize(a: &wgpu::Adapter) -> AdapterSummary {
    let info = a.get_info();
    let limits = a.limits();
    let features = a.features();
    AdapterSummary {
        name: info.name.clone(),
        backend: format!("{:?}", info.backend),
        device_type: format!("{:?}", info.device_type),
        driver: format!("{} {}", info.driver, info.driver_info).trim().to_owned(),
        max_binding: limits.max_storage_buffer_binding_size,
        max_buffer: limits.max_buffer_size,
        max_workgroup_storage: limits.max_compute_workgroup_storage_size,
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        subgroup_sizes: (info.subgroup_min_size, info.subgroup_max_size),
        timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
        software: info.device_type == wgpu::DeviceType::Cpu,
    }
}

/// Every adapter wgpu can see (honouring `WGPU_BACKEND`).
pub fn adapters() -> Vec<AdapterSummary> {
    let inst = instance();
    pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()))
        .iter()
        .filter(|a| a.get_info().backend != wgpu::Backend::Gl)
        .map(summarize)
        .collect()
}

fn name_matches(name: &str, want: Option<&str>) -> bool {
    want.is_none_or(|w| name.to_lowercase().contains(&w.to_lowercase()))
}

/// The device, queue and pipelines: created once, reused for every batch.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    similarity: wgpu::ComputePipeline,
    /// The walk with its sums in a storage buffer, and in workgroup memory.
    select_storage: wgpu::ComputePipeline,
    select_workgroup: wgpu::ComputePipeline,
    /// Sums a workgroup can hold (the workgroup variant's array length).
    pub sums_len: usize,
    similarity_layout: wgpu::BindGroupLayout,
    select_layout: wgpu::BindGroupLayout,
    /// Errors the driver reported outside an error scope.
    errors: Arc<Mutex<Vec<String>>>,
    pub uses_subgroups: bool,
}

/// Device time of compute passes, from timestamp queries where the adapter
/// has them: pair `k` brackets the passes of one batch (or tile).
struct Timer {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    read: wgpu::Buffer,
    pairs: u32,
}

impl Timer {
    fn new(ctx: &GpuContext, pairs: usize) -> Option<Self> {
        let queries = 2 * pairs as u32;
        if !ctx.summary.timestamps || pairs == 0 || queries > wgpu::QUERY_SET_MAX_QUERIES {
            return None;
        }
        let bytes = queries as u64 * 8;
        let buf = |label, usage| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Timer {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: queries,
            }),
            resolve: buf(
                "timestamps",
                wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            ),
            read: buf(
                "timestamps readback",
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            ),
            pairs: pairs as u32,
        })
    }

    /// Timestamp writes for a pass that begins and/or ends pair `k`.
    fn writes(&self, k: usize, begin: bool, end: bool) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        (begin || end).then(|| wgpu::ComputePassTimestampWrites {
            query_set: &self.set,
            beginning_of_pass_write_index: begin.then_some(2 * k as u32),
            end_of_pass_write_index: end.then_some(2 * k as u32 + 1),
        })
    }

    /// Resolves every pair and returns their summed duration in seconds.
    fn seconds(&self, ctx: &GpuContext) -> Result<f64> {
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        enc.resolve_query_set(&self.set, 0..2 * self.pairs, &self.resolve, 0);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, None);
        let idx = ctx.queue.submit([enc.finish()]);
        let slice = self.read.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        ctx.wait(Some(idx))?;
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

fn storage(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

fn uniform(binding: u32) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: None,
        },
        count: None,
    }
}

/// Uniform slots are spaced by the dynamic-offset alignment.
const PARAM_SLOT: u64 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SimilarityParams {
    n: u32,
    dim_words: u32,
    stride_words: u32,
    row0: u32,
    rows: u32,
    _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct SelectParams {
    n: u32,
    stride_words: u32,
    width: u32,
    start0: u32,
    batch: u32,
    step0: u32,
    steps: u32,
    rows_per_tile: u32,
}

impl GpuContext {
    /// The best adapter `opts` allows (discrete, then integrated, virtual,
    /// software), or `None`.
    pub fn pick_adapter(opts: &GpuOptions) -> Option<wgpu::Adapter> {
        let inst = instance();
        let all = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        all.into_iter()
            .filter(|a| {
                let s = summarize(a);
                a.get_info().backend != wgpu::Backend::Gl
                    && name_matches(&s.name, opts.adapter.as_deref())
                    && (opts.allow_software || !s.software)
            })
            .min_by_key(|a| match a.get_info().device_type {
                wgpu::DeviceType::DiscreteGpu => 0,
                wgpu::DeviceType::IntegratedGpu => 1,
                wgpu::DeviceType::VirtualGpu => 2,
                wgpu::DeviceType::Cpu => 3,
                wgpu::DeviceType::Other => 4,
            })
    }

    /// Picks an adapter and builds the device and pipelines.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        let Some(adapter) = Self::pick_adapter(opts) else {
            let seen: Vec<String> = adapters()
                .iter()
                .map(|a| format!("{} ({}, {})", a.name, a.backend, a.device_type))
                .collect();
            bail!(
                "no suitable GPU adapter{}{}; adapters seen: {}. On Debian, `apt-get install mesa-vulkan-drivers` provides the lavapipe software adapter",
                opts.adapter.as_ref().map(|a| format!(" matching {a:?}")).unwrap_or_default(),
                if opts.allow_software { "" } else { " (software adapters excluded)" },
                if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
            );
        };
        Self::with_adapter(adapter, opts)
    }

    /// Builds the device and pipelines on `adapter`.
    pub fn with_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Self> {
        let summary = summarize(&adapter);
        let uses_subgroups = summary.subgroups && !opts.no_subgroups;
        let mut features = wgpu::Features::empty();
        if uses_subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if summary.timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let limits = adapter.limits();
        if limits.max_storage_buffers_per_shader_stage < 7
            || limits.max_compute_invocations_per_workgroup < WG
            || limits.max_compute_workgroup_size_x < WG
        {
            bail!(
                "adapter {} lacks the limits this tool needs (7 storage buffers per stage, workgroups of {WG})",
                summary.name
            );
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("diversity-gpu"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .with_context(|| format!("cannot open a device on {}", summary.name))?;

        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.lock().unwrap().push(e.to_string())));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            lost.lock().unwrap().push(format!("device lost ({reason:?}): {msg}"))
        });

        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let similarity_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("similarity"),
            entries: &[storage(0, true), storage(1, false), uniform(2)],
        });
        let mut entries: Vec<_> = (0..MAX_TILES as u32).map(|b| storage(b, true)).collect();
        entries.extend([storage(4, false), storage(5, false), storage(6, false), uniform(7)]);
        let select_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("select"),
            entries: &entries,
        });
        let pipeline = |label: &str, src: &str, layout: &wgpu::BindGroupLayout, constants: &[(&str, f64)]| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
            let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(layout)],
                immediate_size: 0,
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        };
        let similarity = pipeline("similarity", SIMILARITY_WGSL, &similarity_layout, &[]);
        let srcs = SELECT_WGSL[uses_subgroups as usize];
        let select_storage = pipeline("select", srcs[0], &select_layout, &[("WG", WG as f64)]);
        // What workgroup storage the reduction leaves for the sums.
        let reduction_bytes = if uses_subgroups { 64 } else { 8 * WG as usize };
        let lanes = crate::cpu::LANES;
        let sums_len =
            (limits.max_compute_workgroup_storage_size as usize).saturating_sub(reduction_bytes) / 4 / lanes * lanes;
        let select_workgroup = pipeline(
            "select (workgroup sums)",
            srcs[1],
            &select_layout,
            &[("WG", WG as f64), ("SUMS_LEN", sums_len.max(lanes) as f64)],
        );
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("the GPU driver rejected the shaders on {}: {e}", summary.name);
        }
        Ok(GpuContext {
            device,
            queue,
            summary,
            similarity,
            select_storage,
            select_workgroup,
            sums_len,
            similarity_layout,
            select_layout,
            errors,
            uses_subgroups,
        })
    }

    /// Turns any error the driver reported into a Result.
    fn check(&self) -> Result<()> {
        let mut errs = self.errors.lock().unwrap();
        if errs.is_empty() {
            Ok(())
        } else {
            Err(anyhow!(
                "GPU error on {}: {}",
                self.summary.name,
                errs.drain(..).collect::<Vec<_>>().join("; ")
            ))
        }
    }

    fn wait(&self, index: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: index,
                timeout: None,
            })
            .map_err(|e| anyhow!("GPU error on {}: {e}", self.summary.name))?;
        self.check()
    }
}

/// How the matrix is laid out across tiles.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    pub n: usize,
    pub stride: usize,
    pub rows_per_tile: usize,
    pub tiles: usize,
}

impl Layout {
    /// Plans the tiles for `n` poems within the adapter's binding size.
    pub fn plan(n: usize, max_binding: u64, max_buffer: u64, force_rows: Option<usize>) -> Result<Self> {
        let stride = padded(n);
        let row_bytes = (stride * 2) as u64;
        let fit = (max_binding.min(max_buffer) / row_bytes) as usize;
        let rows_per_tile = force_rows.unwrap_or(fit).min(fit).min(n).max(1);
        let tiles = n.div_ceil(rows_per_tile);
        if fit == 0 || tiles > MAX_TILES {
            let matrix = n as u64 * row_bytes;
            let max_n = ((MAX_TILES as u64 * max_binding.min(max_buffer) / 2) as f64).sqrt() as usize;
            bail!(
                "the similarity matrix for {n} poems needs {} in {tiles} tiles of at most {}; this adapter binds at most {MAX_TILES} tiles, so about {max_n} poems fit",
                bytesize::ByteSize(matrix),
                bytesize::ByteSize((rows_per_tile as u64 * row_bytes).min(max_binding.min(max_buffer)))
            );
        }
        Ok(Layout {
            n,
            stride,
            rows_per_tile,
            tiles,
        })
    }
}

/// Wall-clock time per GPU phase, seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct GpuTimings {
    pub upload: f64,
    pub similarity: f64,
    pub selection: f64,
    pub readback: f64,
    /// Device time of the similarity and selection passes (timestamp queries;
    /// `None` where the adapter has none).
    pub device_similarity: Option<f64>,
    pub device_selection: Option<f64>,
}

/// The GPU backend: the matrix stays on the GPU; batches of starts walk it.
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    layout: Layout,
    tiles: Vec<wgpu::Buffer>,
    _dummy: wgpu::Buffer,
    opts: GpuOptions,
    /// Per-batch buffers, kept while batches keep their shape.
    scratch: Option<Scratch>,
    pub timings: GpuTimings,
}

/// The buffers one batch shape needs: created on first use, then reused by
/// every batch (and every precompute chunk) of the same shape.
struct Scratch {
    shape: (usize, usize, u32),
    dispatches: usize,
    staging: [wgpu::Buffer; 2],
    obuf: wgpu::Buffer,
    pbuf: wgpu::Buffer,
    bg: wgpu::BindGroup,
    /// Bound in `bg`; held here so their lifetime is plain to see.
    _sums: wgpu::Buffer,
    _last: wgpu::Buffer,
}

impl GpuBackend {
    /// Uploads the vectors and computes the matrix on `ctx`'s device.
    pub fn new(ctx: Arc<GpuContext>, q: &Quantized, opts: &GpuOptions) -> Result<Self> {
        let limits = ctx.device.limits();
        let layout = Layout::plan(
            q.n,
            limits.max_storage_buffer_binding_size,
            limits.max_buffer_size,
            opts.tile_rows,
        )?;
        let t0 = Instant::now();
        let dim_words = q.dim.div_ceil(2);
        let mut packed = vec![0u32; q.n * dim_words];
        for i in 0..q.n {
            for (k, c) in q.row(i).iter().enumerate() {
                packed[i * dim_words + k / 2] |= ((*c as u16) as u32) << (16 * (k % 2));
            }
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let emb = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("embeddings"),
            contents: bytemuck::cast_slice(&packed),
            usage: wgpu::BufferUsages::STORAGE,
        });
        let tile_bytes = (layout.rows_per_tile * layout.stride * 2) as u64;
        let tiles: Vec<wgpu::Buffer> = (0..layout.tiles)
            .map(|t| {
                ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("matrix tile {t}")),
                    size: tile_bytes,
                    usage: wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            })
            .collect();
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "the GPU ({}) has no room for the {} MiB similarity matrix of {} poems: {e}. Use the CPU backend, or fewer poems",
                ctx.summary.name,
                (tile_bytes * layout.tiles as u64) >> 20,
                q.n
            );
        }
        let dummy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("unused tile"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        ctx.wait(None)?;
        let upload = t0.elapsed().as_secs_f64();

        // Fill the matrix, one dispatch per tile.
        let t1 = Instant::now();
        let params: Vec<u8> = (0..layout.tiles)
            .flat_map(|t| {
                let row0 = t * layout.rows_per_tile;
                let p = SimilarityParams {
                    n: q.n as u32,
                    dim_words: dim_words as u32,
                    stride_words: (layout.stride / 2) as u32,
                    row0: row0 as u32,
                    rows: (layout.n - row0).min(layout.rows_per_tile) as u32,
                    _pad: [0; 3],
                };
                let mut slot = bytemuck::bytes_of(&p).to_vec();
                slot.resize(PARAM_SLOT as usize, 0);
                slot
            })
            .collect();
        let pbuf = ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("similarity params"),
            contents: &params,
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let timer = Timer::new(&ctx, tiles.len());
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        for (t, tile) in tiles.iter().enumerate() {
            let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("similarity"),
                layout: &ctx.similarity_layout,
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: emb.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: tile.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &pbuf,
                            offset: 0,
                            size: wgpu::BufferSize::new(std::mem::size_of::<SimilarityParams>() as u64),
                        }),
                    },
                ],
            });
            let rows = (layout.n - t * layout.rows_per_tile).min(layout.rows_per_tile) as u32;
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("similarity"),
                timestamp_writes: timer.as_ref().and_then(|tm| tm.writes(t, true, true)),
            });
            pass.set_pipeline(&ctx.similarity);
            pass.set_bind_group(0, &bg, &[(t as u64 * PARAM_SLOT) as u32]);
            // Row blocks beyond 65 535 workgroups go to further dispatches.
            let x = ((layout.stride / 2) as u32).div_ceil(16);
            let y = rows.div_ceil(16);
            pass.dispatch_workgroups(x, y.min(65535), 1);
            if y > 65535 {
                bail!("a tile of {rows} rows exceeds one dispatch; use --tile-rows");
            }
        }
        let idx = ctx.queue.submit([enc.finish()]);
        ctx.wait(Some(idx))?;
        let similarity = t1.elapsed().as_secs_f64();
        let device_similarity = timer.map(|tm| tm.seconds(&ctx)).transpose()?;
        drop(emb);
        Ok(GpuBackend {
            ctx,
            layout,
            tiles,
            _dummy: dummy,
            opts: opts.clone(),
            scratch: None,
            timings: GpuTimings {
                upload,
                similarity,
                device_similarity,
                ..Default::default()
            },
        })
    }

    /// The adapter in use, in words.
    pub fn describe(&self) -> String {
        let s = &self.ctx.summary;
        format!(
            "gpu: {} ({}, {}; {} reduction, sums in {}, {} matrix tile(s))",
            s.name,
            s.backend,
            s.device_type,
            if self.ctx.uses_subgroups {
                "subgroup"
            } else {
                "shared-memory"
            },
            if self.workgroup_sums() {
                "workgroup memory"
            } else {
                "a storage buffer"
            },
            self.layout.tiles
        )
    }

    /// Whether the walk keeps its sums in workgroup memory.
    pub fn workgroup_sums(&self) -> bool {
        !self.opts.storage_sums && self.layout.stride <= self.ctx.sums_len
    }

    /// The adapter's summary.
    pub fn summary(&self) -> &AdapterSummary {
        &self.ctx.summary
    }

    /// different orderings for `starts` into `out` (`width` per start).
    pub fn different(&mut self, starts: Range<usize>, width: usize, out: &mut [u32]) -> Result<()> {
        if width == 0 || starts.is_empty() {
            return Ok(());
        }
        let ctx = &self.ctx;
        let dev = &ctx.device;
        let l = self.layout;
        let limits = dev.limits();
        let max_bind = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        // Batch: as many starts as the sums and outputs allow (≤ 256 MiB each).
        let per_start = (l.stride * 4).max(width * 4) as u64;
        let cap = (max_bind.min(256 << 20) / per_start).max(1) as usize;
        let batch = self.opts.batch.unwrap_or(cap).min(cap).min(starts.len()).max(1);
        let steps_per = self
            .opts
            .steps_per_dispatch
            .unwrap_or_else(|| (UPDATES_PER_DISPATCH / (batch as u64 * l.stride as u64)).clamp(1, 4096) as u32)
            .max(1);
        let shape = (batch, width, steps_per);
        if self.scratch.as_ref().is_none_or(|sc| sc.shape != shape) {
            self.scratch = None; // free the old buffers first
            self.scratch = Some(self.make_scratch(shape, per_start)?);
        }
        let ctx = &self.ctx;
        let dev = &ctx.device;
        let Scratch {
            dispatches,
            staging,
            obuf,
            pbuf,
            bg,
            ..
        } = self.scratch.as_ref().expect("just made");
        let dispatches = *dispatches;
        let batches: Vec<Range<usize>> = (starts.start..starts.end)
            .step_by(batch)
            .map(|b| b..(b + batch).min(starts.end))
            .collect();
        let timer = Timer::new(ctx, batches.len());
        let pipeline = if self.workgroup_sums() {
            &ctx.select_workgroup
        } else {
            &ctx.select_storage
        };
        let mut pending: Option<(usize, wgpu::SubmissionIndex, Range<usize>)> = None;
        let t_sel = Instant::now();
        let mut readback = Duration::ZERO;
        for (k, b) in batches.iter().enumerate() {
            // Parameters for every dispatch of this batch, one uniform slot each.
            let mut params = vec![0u8; dispatches * PARAM_SLOT as usize];
            for d in 0..dispatches {
                let step0 = d * steps_per as usize;
                let p = SelectParams {
                    n: l.n as u32,
                    stride_words: (l.stride / 2) as u32,
                    width: width as u32,
                    start0: b.start as u32,
                    batch: b.len() as u32,
                    step0: step0 as u32,
                    steps: (width - step0).min(steps_per as usize) as u32,
                    rows_per_tile: l.rows_per_tile as u32,
                };
                params[d * PARAM_SLOT as usize..][..std::mem::size_of::<SelectParams>()]
                    .copy_from_slice(bytemuck::bytes_of(&p));
            }
            // Queue writes are ordered after the previous batch's dispatches
            // (WebGPU queue timeline), so one parameter buffer serves all.
            ctx.queue.write_buffer(pbuf, 0, &params);
            let x = (b.len() as u32).min(65535);
            let y = (b.len() as u32).div_ceil(x);
            let slot = k % 2;
            let mut idx = None;
            for d in 0..dispatches {
                let mut enc = dev.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("select"),
                        timestamp_writes: timer.as_ref().and_then(|tm| tm.writes(k, d == 0, d + 1 == dispatches)),
                    });
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, bg, &[(d as u64 * PARAM_SLOT) as u32]);
                    pass.dispatch_workgroups(x, y, 1);
                }
                if d + 1 == dispatches {
                    enc.copy_buffer_to_buffer(obuf, 0, &staging[slot], 0, (b.len() * width * 4) as u64);
                }
                idx = Some(ctx.queue.submit([enc.finish()]));
            }
            // While this batch runs, copy out the previous one.
            if let Some((pslot, pidx, prange)) = pending.take() {
                let t = Instant::now();
                let waited = self.read_staging(&staging[pslot], pidx, &prange, &starts, width, out)?;
                readback += t.elapsed() - waited;
            }
            pending = Some((slot, idx.expect("at least one dispatch"), b.clone()));
        }
        if let Some((pslot, pidx, prange)) = pending.take() {
            let t = Instant::now();
            let waited = self.read_staging(&staging[pslot], pidx, &prange, &starts, width, out)?;
            readback += t.elapsed() - waited;
        }
        self.timings.selection += (t_sel.elapsed() - readback).as_secs_f64();
        self.timings.readback += readback.as_secs_f64();
        if let Some(tm) = timer {
            *self.timings.device_selection.get_or_insert(0.0) += tm.seconds(&self.ctx)?;
        }
        Ok(())
    }

    /// Allocates the buffers and bind group for one batch shape.
    fn make_scratch(&self, (batch, width, steps_per): (usize, usize, u32), per_start: u64) -> Result<Scratch> {
        let ctx = &self.ctx;
        let dev = &ctx.device;
        let l = self.layout;
        let mk = |label: &str, size: u64, usage| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        let scope = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let sums = mk("sums", (batch * l.stride * 4) as u64, wgpu::BufferUsages::STORAGE);
        let out_bytes = (batch * width * 4) as u64;
        let obuf = mk(
            "orderings",
            out_bytes,
            wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        );
        let last = mk("last", (batch * 4).max(16) as u64, wgpu::BufferUsages::STORAGE);
        let staging = [0, 1].map(|_| {
            mk(
                "staging",
                out_bytes,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            )
        });
        let dispatches = width.div_ceil(steps_per as usize);
        let pbuf = mk(
            "select params",
            dispatches as u64 * PARAM_SLOT,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!(
                "the GPU ({}) has no room for a batch of {batch} starts ({} MiB): {e}",
                ctx.summary.name,
                (batch as u64 * per_start * 2) >> 20
            );
        }
        let mat = |t: usize| self.tiles.get(t).unwrap_or(&self._dummy).as_entire_binding();
        let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("select"),
            layout: &ctx.select_layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: mat(0),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: mat(1),
                },
                wgpu::BindGroupEntry {
                    binding: 2,
                    resource: mat(2),
                },
                wgpu::BindGroupEntry {
                    binding: 3,
                    resource: mat(3),
                },
                wgpu::BindGroupEntry {
                    binding: 4,
                    resource: sums.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 5,
                    resource: obuf.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 6,
                    resource: last.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 7,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &pbuf,
                        offset: 0,
                        size: wgpu::BufferSize::new(std::mem::size_of::<SelectParams>() as u64),
                    }),
                },
            ],
        });
        Ok(Scratch {
            shape: (batch, width, steps_per),
            dispatches,
            staging,
            obuf,
            pbuf,
            bg,
            _sums: sums,
            _last: last,
        })
    }

    /// Copies a finished batch out of its staging buffer; returns the time
    /// spent waiting for the GPU to finish it.
    fn read_staging(
        &self,
        buf: &wgpu::Buffer,
        idx: wgpu::SubmissionIndex,
        range: &Range<usize>,
        starts: &Range<usize>,
        width: usize,
        out: &mut [u32],
    ) -> Result<Duration> {
        let bytes = (range.len() * width * 4) as u64;
        let slice = buf.slice(..bytes);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        let t = Instant::now();
        self.ctx.wait(Some(idx))?;
        let waited = t.elapsed();
        rx.recv_timeout(Duration::from_secs(60))
            .map_err(|_| anyhow!("GPU readback did not complete"))?
            .map_err(|e| anyhow!("GPU readback failed: {e}"))?;
        {
            let view = slice
                .get_mapped_range()
                .map_err(|e| anyhow!("GPU readback failed: {e:?}"))?;
            let dst = &mut out[(range.start - starts.start) * width..(range.end - starts.start) * width];
            dst.copy_from_slice(bytemuck::cast_slice(&view));
        }
        buf.unmap();
        Ok(waited)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cpu::{similar_rows, CpuBackend};
    use proptest::prelude::*;
    use std::sync::OnceLock;

    /// A shared context per reduction path. In CI (`CI` set) a missing
    /// adapter fails the test; elsewhere the test says so and skips.
    pub(crate) fn context(no_subgroups: bool) -> Option<Arc<GpuContext>> {
        static CTX: [OnceLock<Result<Arc<GpuContext>, String>>; 2] = [OnceLock::new(), OnceLock::new()];
        let r = CTX[no_subgroups as usize].get_or_init(|| {
            let opts = GpuOptions {
                allow_software: true,
                no_subgroups,
                ..Default::default()
            };
            GpuContext::new(&opts).map(Arc::new).map_err(|e| format!("{e:#}"))
        });
        match r {
            Ok(c) => Some(c.clone()),
            Err(e) if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") => {
                panic!("CI requires a GPU adapter (lavapipe: apt-get install mesa-vulkan-drivers): {e}")
            }
            Err(e) => {
                eprintln!("SKIPPED: no GPU adapter, GPU test not run: {e}");
                None
            }
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
        // Device timings come from timestamp queries wherever the adapter has them.
        assert_eq!(g.timings.device_similarity.is_some(), timestamps);
        if width > 0 && q.n > 1 {
            assert_eq!(g.timings.device_selection.is_some(), timestamps);
        }
        out
    }

    /// Every variant (subgroup or shared-memory reduction, sums in a storage
    /// buffer or workgroup memory) must give the CPU's bytes.
    fn check(q: &Quantized, width: usize, opts: &GpuOptions) {
        let cpu = cpu_different(q, width);
        for no_subgroups in [false, true] {
            for storage_sums in [false, true] {
                let Some(ctx) = context(no_subgroups) else { return };
                let opts = GpuOptions {
                    storage_sums,
                    ..opts.clone()
                };
                assert_eq!(
                    gpu_different(ctx, q, width, &opts),
                    cpu,
                    "n={} width={width} {opts:?}",
                    q.n
                );
            }
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
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/corpus");
        let corpus = crate::corpus::load(
            &dir.join("poems.json"),
            Some(&dir.join("embeddings.json")),
            &Default::default(),
        )
        .unwrap();
        let q = crate::quantize::prepare(&corpus, false).vectors;
        check(&q, 40, &GpuOptions::default());
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut sim = vec![0; q.n * 40];
        similar_rows(&q, 0..q.n, 40, &mut sim, &pool);
        assert_eq!(sim[..40], crate::reference::similar(&q, 0, 40)[..]);
    }

    #[test]
    fn too_many_tiles_is_a_clear_error() {
        let e = Layout::plan(100_000, 128 << 20, 256 << 20, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("100000 poems") && e.contains("fit"), "{e}");
        let l = Layout::plan(10_000, 128 << 20, 256 << 20, None).unwrap();
        assert_eq!((l.tiles, l.stride), (2, 10_000));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_corpora_match_the_cpu(
            n in 1usize..70, dim in 1usize..24, levels in 1i32..5, seed in any::<u64>(),
            k in 0usize..80, tiles in 1usize..=4, batch in 1usize..40, steps in 1u32..50,
        ) {
            let q = random(n, dim, levels, seed);
            let opts = GpuOptions {
                tile_rows: Some(n.div_ceil(tiles)),
                batch: Some(batch),
                steps_per_dispatch: Some(steps),
                ..Default::default()
            };
            check(&q, k.min(n - 1), &opts);
        }
    }
}
