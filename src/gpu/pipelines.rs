//! The shaders, their binding contract and the compute pipelines.
//!
//! Every binding of every shader is declared once, in [`SIMILARITY_BINDINGS`],
//! [`ROWS_BINDINGS`] and [`SELECT_BINDINGS`]: the bind-group layouts, the bind groups and the
//! storage-buffer limit check are built from these tables, and a test parses
//! every composed shader with naga and checks its `@binding`s and workgroup
//! sizes against them.

use anyhow::{bail, Result};

use crate::matrix::LANES;

/// Matrix tiles one selection pipeline can bind.
pub const MAX_TILES: usize = 4;
/// Invocations per selection workgroup (the select shader's `WG`).
pub(super) const SELECT_WG: u32 = 256;
/// Workgroup size of the similarity shader (`WG_X` × `WG_Y`): each
/// invocation fills one u32 word (two columns) of one row.
pub(super) const SIMILARITY_WG: [u32; 2] = [16, 16];
/// Uniform slots are spaced by the dynamic-offset alignment.
pub(super) const PARAM_SLOT: u64 = 256;

/// Uniform parameters, one per [`PARAM_SLOT`], as [`param_offset`] reads them.
pub(super) fn param_slots<T: bytemuck::Pod>(params: impl IntoIterator<Item = T>) -> Vec<u8> {
    params
        .into_iter()
        .flat_map(|p| {
            let mut slot = bytemuck::bytes_of(&p).to_vec();
            slot.resize(PARAM_SLOT as usize, 0);
            slot
        })
        .collect()
}

/// The dynamic offset of parameter slot `k`.
pub(super) fn param_offset(k: usize) -> u32 {
    (k as u64 * PARAM_SLOT) as u32
}

/// What a binding holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum BindingKind {
    /// A storage buffer of u32/i32 words.
    Storage { read_only: bool },
    /// One parameter slot of a uniform buffer, at a dynamic offset.
    Params { size: u64 },
}

/// One `@binding` of a shader.
#[derive(Debug, Clone, Copy)]
pub(super) struct Binding {
    pub slot: u32,
    /// The variable's name in WGSL, checked by the contract test.
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub kind: BindingKind,
}

const fn storage(slot: u32, name: &'static str, read_only: bool) -> Binding {
    Binding {
        slot,
        name,
        kind: BindingKind::Storage { read_only },
    }
}

const fn params(slot: u32, size: usize) -> Binding {
    Binding {
        slot,
        name: "p",
        kind: BindingKind::Params { size: size as u64 },
    }
}

/// similarity.wgsl: embeddings in, one matrix tile out.
pub(super) const SIMILARITY_BINDINGS: [Binding; 3] = [
    storage(0, "emb", true),
    storage(1, "tile", false),
    params(2, std::mem::size_of::<SimilarityParams>()),
];

/// rows.wgsl: the vectors row-major and word-major, the list of rows to
/// compute, and the tile they go to.
pub(super) const ROWS_BINDINGS: [Binding; 5] = [
    storage(0, "emb", true),
    storage(1, "tile", false),
    params(2, std::mem::size_of::<SimilarityParams>()),
    storage(3, "list", true),
    storage(4, "cols", true),
];
/// Rows per workgroup of the row-block shader (its `BLOCK`).
pub(super) const ROW_BLOCK: u32 = 8;
/// Invocations per workgroup of the row-block shader (its `WG`).
pub(super) const ROWS_WG: u32 = 256;

/// select.wgsl: the matrix tiles, the running sums, the orderings, each
/// start's last choice, and the parameters.
pub(super) const SELECT_BINDINGS: [Binding; 8] = [
    storage(0, "mat0", true),
    storage(1, "mat1", true),
    storage(2, "mat2", true),
    storage(3, "mat3", true),
    storage(4, "sums", false),
    storage(5, "out", false),
    storage(6, "last", false),
    params(7, std::mem::size_of::<SelectParams>()),
];

/// Storage buffers the selection shader binds: the limit an adapter must meet.
pub(super) fn storage_buffers_needed() -> u32 {
    SELECT_BINDINGS
        .iter()
        .filter(|b| matches!(b.kind, BindingKind::Storage { .. }))
        .count() as u32
}

/// The uniform parameters of one similarity dispatch (one tile); for the
/// row-block shader, `row0` and `rows` are the tile's pairs in the list.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct SimilarityParams {
    pub n: u32,
    pub dim_words: u32,
    pub stride_words: u32,
    pub row0: u32,
    pub rows: u32,
    pub _pad: [u32; 3],
}

/// The uniform parameters of one selection dispatch.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct SelectParams {
    pub n: u32,
    pub stride_words: u32,
    pub width: u32,
    pub start0: u32,
    pub batch: u32,
    pub step0: u32,
    pub steps: u32,
    pub rows_per_tile: u32,
}

/// The similarity shader, after the shared layout helpers.
pub(super) const SIMILARITY_WGSL: &str = concat!(
    include_str!("../../shaders/common.wgsl"),
    include_str!("../../shaders/similarity.wgsl")
);
/// The row-block shader, after the shared layout helpers.
pub(super) const ROWS_WGSL: &str = concat!(
    include_str!("../../shaders/common.wgsl"),
    include_str!("../../shaders/rows.wgsl")
);
// The selection shader is composed of modules (no text templating): the
// shared layout helpers, a workgroup reduction, a home for the running sums,
// and the walk itself.
macro_rules! select_wgsl {
    ($reduce:literal, $sums:literal) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!(concat!("../../shaders/", $reduce)),
            include_str!(concat!("../../shaders/", $sums)),
            include_str!("../../shaders/select.wgsl")
        )
    };
}
/// Indexed by [uses subgroups][sums in workgroup memory].
pub(super) const SELECT_WGSL: [[&str; 2]; 2] = [
    [
        select_wgsl!("reduce_shared.wgsl", "sums_storage.wgsl"),
        select_wgsl!("reduce_shared.wgsl", "sums_workgroup.wgsl"),
    ],
    [
        select_wgsl!("reduce_subgroup.wgsl", "sums_storage.wgsl"),
        select_wgsl!("reduce_subgroup.wgsl", "sums_workgroup.wgsl"),
    ],
];

/// The override constants of the similarity pipeline.
pub(super) fn similarity_constants() -> [(&'static str, f64); 2] {
    [("WG_X", SIMILARITY_WG[0] as f64), ("WG_Y", SIMILARITY_WG[1] as f64)]
}

/// The override constants of the row-block pipeline for vectors of
/// `dim_words` words.
pub(super) fn rows_constants(dim_words: usize) -> [(&'static str, f64); 2] {
    [
        ("WG", ROWS_WG as f64),
        ("BLOCK_WORDS", (ROW_BLOCK as usize * dim_words) as f64),
    ]
}

/// Workgroup memory the row-block shader needs for vectors of `dim_words`.
pub(super) fn rows_workgroup_bytes(dim_words: usize) -> u64 {
    (ROW_BLOCK as usize * dim_words * 4) as u64
}

/// The row-block pipeline for vectors of `dim_words` words (built when a
/// row cache is, since its workgroup memory depends on the dimension).
pub(super) fn rows_pipeline(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    dim_words: usize,
) -> wgpu::ComputePipeline {
    pipeline(device, "rows on the fly", ROWS_WGSL, layout, &rows_constants(dim_words))
}

/// The override constants of a selection pipeline; `sums_len` only for the
/// variant with its sums in workgroup memory; `cached` for rows on the fly.
pub(super) fn select_constants(sums_len: Option<usize>, cached: bool) -> Vec<(&'static str, f64)> {
    let mut c = vec![("WG", SELECT_WG as f64), ("CACHED", cached as u8 as f64)];
    c.extend(sums_len.map(|len| ("SUMS_LEN", len as f64)));
    c
}

fn layout_entry(b: &Binding) -> wgpu::BindGroupLayoutEntry {
    let ty = match b.kind {
        BindingKind::Storage { read_only } => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            // The shaders bind runtime-sized arrays of 4-byte words.
            min_binding_size: wgpu::BufferSize::new(4),
        },
        BindingKind::Params { size } => wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Uniform,
            has_dynamic_offset: true,
            min_binding_size: wgpu::BufferSize::new(size),
        },
    };
    wgpu::BindGroupLayoutEntry {
        binding: b.slot,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty,
        count: None,
    }
}

/// A bind group for `bindings`, each bound to the buffer at its index
/// (parameters: one slot of the buffer, at a dynamic offset).
pub(super) fn bind_group(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    bindings: &[Binding],
    buffers: &[&wgpu::Buffer],
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = bindings
        .iter()
        .zip(buffers)
        .map(|(b, buffer)| wgpu::BindGroupEntry {
            binding: b.slot,
            resource: match b.kind {
                BindingKind::Storage { .. } => buffer.as_entire_binding(),
                BindingKind::Params { size } => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer,
                    offset: 0,
                    size: wgpu::BufferSize::new(size),
                }),
            },
        })
        .collect();
    device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// The walk's pipelines, sums in a storage buffer and in workgroup memory.
pub(super) struct SelectPipelines {
    pub storage: wgpu::ComputePipeline,
    pub workgroup: wgpu::ComputePipeline,
}

/// The compute pipelines and their bind-group layouts, built once per device.
pub(super) struct Pipelines {
    pub similarity: wgpu::ComputePipeline,
    /// The walk over the whole matrix, and over a cache of rows.
    pub select: SelectPipelines,
    pub select_cached: SelectPipelines,
    pub similarity_layout: wgpu::BindGroupLayout,
    pub rows_layout: wgpu::BindGroupLayout,
    pub select_layout: wgpu::BindGroupLayout,
    /// Sums a workgroup can hold (the workgroup variant's array length).
    pub sums_len: usize,
}

/// Sums that fit in workgroup memory beside the reduction's scratch.
pub(super) fn workgroup_sums_len(max_workgroup_storage: u32, uses_subgroups: bool) -> usize {
    let reduction_bytes = if uses_subgroups { 64 } else { 8 * SELECT_WG as usize };
    (max_workgroup_storage as usize).saturating_sub(reduction_bytes) / 4 / LANES * LANES
}

impl Pipelines {
    /// Compiles the shaders for `device`; a driver rejection is an error.
    pub fn new(device: &wgpu::Device, adapter_name: &str, uses_subgroups: bool) -> Result<Self> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = |label, bindings: &[Binding]| {
            let entries: Vec<_> = bindings.iter().map(layout_entry).collect();
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            })
        };
        let similarity_layout = layout("similarity", &SIMILARITY_BINDINGS);
        let rows_layout = layout("rows", &ROWS_BINDINGS);
        let select_layout = layout("select", &SELECT_BINDINGS);
        let sources = SELECT_WGSL[uses_subgroups as usize];
        let sums_len = workgroup_sums_len(device.limits().max_compute_workgroup_storage_size, uses_subgroups);
        let select = |cached| SelectPipelines {
            storage: pipeline(
                device,
                "select",
                sources[0],
                &select_layout,
                &select_constants(None, cached),
            ),
            workgroup: pipeline(
                device,
                "select (workgroup sums)",
                sources[1],
                &select_layout,
                &select_constants(Some(sums_len.max(LANES)), cached),
            ),
        };
        let pipelines = Pipelines {
            similarity: pipeline(
                device,
                "similarity",
                SIMILARITY_WGSL,
                &similarity_layout,
                &similarity_constants(),
            ),
            select: select(false),
            select_cached: select(true),
            similarity_layout,
            rows_layout,
            select_layout,
            sums_len,
        };
        if let Some(e) = pollster::block_on(scope.pop()) {
            bail!("the GPU driver rejected the shaders on {adapter_name}: {e}");
        }
        Ok(pipelines)
    }
}

fn pipeline(
    device: &wgpu::Device,
    label: &str,
    source: &str,
    layout: &wgpu::BindGroupLayout,
    constants: &[(&str, f64)],
) -> wgpu::ComputePipeline {
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some(label),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(label),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants,
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use naga::{AddressSpace, StorageAccess};

    /// Parses `source`, applies `constants` and returns the module.
    fn compile(source: &str, constants: &[(&str, f64)]) -> naga::Module {
        let module = naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{}", e.emit_to_string(source)));
        let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(source)));
        let mut map = naga::back::PipelineConstants::default();
        for (k, v) in constants {
            map.insert(k.to_string(), *v);
        }
        let (module, _) = naga::back::pipeline_constants::process_overrides(&module, &info, None, &map).unwrap();
        module.into_owned()
    }

    /// The shader's bindings and workgroup size must be the Rust side's.
    fn check(source: &str, constants: &[(&str, f64)], bindings: &[Binding], workgroup: [u32; 3]) {
        let module = compile(source, constants);
        let mut seen: Vec<(u32, String, BindingKind)> = module
            .global_variables
            .iter()
            .filter_map(|(_, g)| {
                let binding = g.binding.as_ref()?;
                assert_eq!(binding.group, 0);
                let kind = match g.space {
                    AddressSpace::Storage { access } => BindingKind::Storage {
                        read_only: !access.contains(StorageAccess::STORE),
                    },
                    AddressSpace::Uniform => BindingKind::Params {
                        size: module.types[g.ty].inner.size(module.to_ctx()) as u64,
                    },
                    other => panic!("unexpected address space {other:?}"),
                };
                Some((binding.binding, g.name.clone().unwrap_or_default(), kind))
            })
            .collect();
        seen.sort_by_key(|s| s.0);
        let expected: Vec<(u32, String, BindingKind)> =
            bindings.iter().map(|b| (b.slot, b.name.to_string(), b.kind)).collect();
        // A uniform's WGSL struct may be shorter than its padded Rust twin.
        for (s, e) in seen.iter().zip(&expected) {
            assert_eq!((s.0, &s.1), (e.0, &e.1));
            match (s.2, e.2) {
                (BindingKind::Params { size: wgsl }, BindingKind::Params { size: rust }) => {
                    assert!(
                        wgsl <= rust && rust <= PARAM_SLOT,
                        "{} bytes in WGSL, {rust} in Rust",
                        wgsl
                    )
                }
                (a, b) => assert_eq!(a, b, "binding {}", s.0),
            }
        }
        assert_eq!(seen.len(), expected.len(), "{seen:?}");
        let entry = &module.entry_points[0];
        assert_eq!(entry.name, "main");
        assert_eq!(entry.workgroup_size, workgroup);
    }

    #[test]
    fn the_similarity_shader_matches_its_bindings_and_dispatch() {
        let [x, y] = SIMILARITY_WG;
        check(
            SIMILARITY_WGSL,
            &similarity_constants(),
            &SIMILARITY_BINDINGS,
            [x, y, 1],
        );
    }

    #[test]
    fn the_row_block_shader_matches_its_bindings_and_block() {
        check(ROWS_WGSL, &rows_constants(192), &ROWS_BINDINGS, [ROWS_WG, 1, 1]);
        let module = compile(ROWS_WGSL, &rows_constants(192));
        let (_, block) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some("BLOCK"))
            .expect("BLOCK in rows.wgsl");
        let value = &module.global_expressions[block.init];
        assert_eq!(*value, naga::Expression::Literal(naga::Literal::U32(ROW_BLOCK)));
    }

    #[test]
    fn every_select_variant_matches_its_bindings() {
        for variants in SELECT_WGSL {
            for (workgroup_sums, source) in variants.iter().enumerate() {
                for cached in [false, true] {
                    let constants = select_constants((workgroup_sums == 1).then_some(1024), cached);
                    check(source, &constants, &SELECT_BINDINGS, [SELECT_WG, 1, 1]);
                }
            }
        }
        assert_eq!(storage_buffers_needed(), 7);
    }

    #[test]
    fn the_shaders_chosen_marker_is_the_rust_one() {
        let module = compile(include_str!("../../shaders/common.wgsl"), &[]);
        let (_, chosen) = module
            .constants
            .iter()
            .find(|(_, c)| c.name.as_deref() == Some("CHOSEN"))
            .expect("CHOSEN in common.wgsl");
        let value = &module.global_expressions[chosen.init];
        assert_eq!(
            *value,
            naga::Expression::Literal(naga::Literal::I32(crate::matrix::CHOSEN))
        );
    }
}
