//! The shaders, their binding contract and the compute pipelines.
//!
//! Every binding of every shader is declared once, as a struct of named
//! buffers ([`SimilarityBindings`], [`RowsBindings`], [`WalkBindings`]) whose
//! table maps each name to its binding number: the bind-group layouts, the
//! bind groups and the storage-buffer limit check are built from them, and a
//! test parses every composed shader with naga and checks its `@binding`s
//! (name, number, kind), its uniform's members (name, offset), its workgroup
//! size and `CHOSEN` against the Rust side.

use anyhow::{bail, Result};

/// Matrix tiles one walk pipeline can bind.
pub const MAX_TILES: usize = 4;
/// Invocations per walk workgroup (the walk shader's `WG`).
pub(super) const WALK_WG: u32 = 256;
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
    /// The variable's name in WGSL (the field's name in the bindings
    /// struct), checked by the contract test.
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub kind: BindingKind,
}

/// A shader's buffers by name: each field is the WGSL variable it binds.
pub(super) trait Bindings {
    /// Every binding: its number, name and kind. The one place that maps
    /// names to binding numbers.
    const TABLE: &'static [Binding];
    /// The buffers, in [`Bindings::TABLE`]'s order.
    fn buffers(&self) -> Vec<&wgpu::Buffer>;
}

const fn storage(read_only: bool) -> BindingKind {
    BindingKind::Storage { read_only }
}

const fn params<T>() -> BindingKind {
    BindingKind::Params {
        size: std::mem::size_of::<T>() as u64,
    }
}

/// Declares a shader's bindings once: a struct with one buffer per
/// `@binding`, named as in WGSL, and its [`Bindings`] table; the two are
/// written from the same list, so they cannot drift apart.
macro_rules! bindings {
    ($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident: $slot:literal => $kind:expr),* $(,)? }) => {
        $(#[$doc])*
        pub(super) struct $name<'a> {
            $($(#[$fdoc])* pub $field: &'a wgpu::Buffer,)*
        }

        impl Bindings for $name<'_> {
            const TABLE: &'static [Binding] = &[$(Binding {
                slot: $slot,
                name: stringify!($field),
                kind: $kind,
            }),*];

            fn buffers(&self) -> Vec<&wgpu::Buffer> {
                vec![$(self.$field),*]
            }
        }
    };
}

bindings! {
    /// similarity.wgsl: embeddings in, one matrix tile out.
    SimilarityBindings {
        /// The vectors, packed.
        emb: 0 => storage(true),
        /// The tile filled.
        tile: 1 => storage(false),
        /// The parameters, one slot per tile.
        p: 2 => params::<SimilarityParams>(),
    }
}

bindings! {
    /// rows.wgsl: the vectors row-major and word-major, the list of rows to
    /// compute, and the tile they go to.
    RowsBindings {
        /// The vectors, packed, row-major.
        emb: 0 => storage(true),
        /// The tile the rows go to.
        tile: 1 => storage(false),
        /// The parameters, one slot per tile.
        p: 2 => params::<SimilarityParams>(),
        /// Pairs (vector, tile row) of the rows to compute.
        list: 3 => storage(true),
        /// The poems' vectors, word-major.
        cols: 4 => storage(true),
    }
}

/// Rows per workgroup of the row-block shader (its `BLOCK`).
pub(super) const ROW_BLOCK: u32 = 8;
/// Invocations per workgroup of the row-block shader (its `WG`).
pub(super) const ROWS_WG: u32 = 256;

bindings! {
    /// walk.wgsl: the matrix tiles, the running sums, the orderings, each
    /// start's last choice, and the parameters.
    WalkBindings {
        /// The [`MAX_TILES`] tiles of the matrix (or of the row cache);
        /// a small placeholder stands in for each one not used.
        mat0: 0 => storage(true),
        /// Tile 1.
        mat1: 1 => storage(true),
        /// Tile 2.
        mat2: 2 => storage(true),
        /// Tile 3.
        mat3: 3 => storage(true),
        /// The running sums, one row per start of the batch.
        sums: 4 => storage(false),
        /// The orderings, `width` per start.
        out: 5 => storage(false),
        /// Each start's last choice (with rows on the fly: its cache slot).
        last: 6 => storage(false),
        /// The parameters, one slot per dispatch.
        p: 7 => params::<WalkParams>(),
    }
}

/// Storage buffers the walk shader binds: the limit an adapter must meet.
pub(super) fn storage_buffers_needed() -> u32 {
    WalkBindings::TABLE
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

/// The uniform parameters of one walk dispatch.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct WalkParams {
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
// The walk shader is composed of modules (no text templating): the shared
// layout helpers, a workgroup reduction, and the walk itself.
macro_rules! walk_wgsl {
    ($reduce:literal) => {
        concat!(
            include_str!("../../shaders/common.wgsl"),
            include_str!(concat!("../../shaders/", $reduce)),
            include_str!("../../shaders/walk.wgsl")
        )
    };
}
/// The walk shader, indexed by [uses subgroups].
pub(super) const WALK_WGSL: [&str; 2] = [walk_wgsl!("reduce_shared.wgsl"), walk_wgsl!("reduce_subgroup.wgsl")];

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

/// The override constants of a walk pipeline; `cached` for rows on the fly.
pub(super) fn walk_constants(cached: bool) -> [(&'static str, f64); 2] {
    [("WG", WALK_WG as f64), ("CACHED", cached as u8 as f64)]
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

/// The bind-group layout of a shader's bindings.
pub(super) fn layout<B: Bindings>(device: &wgpu::Device, label: &str) -> wgpu::BindGroupLayout {
    let entries: Vec<_> = B::TABLE.iter().map(layout_entry).collect();
    device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
        label: Some(label),
        entries: &entries,
    })
}

/// A bind group binding each of `bindings`' buffers by its name's number
/// (parameters: one slot of the buffer, at a dynamic offset).
pub(super) fn bind_group<B: Bindings>(
    device: &wgpu::Device,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    bindings: &B,
) -> wgpu::BindGroup {
    let buffers = bindings.buffers();
    let entries: Vec<wgpu::BindGroupEntry> = B::TABLE
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

/// The compute pipelines and their bind-group layouts, built once per device.
pub(super) struct Pipelines {
    pub similarity: wgpu::ComputePipeline,
    /// The walk over the whole matrix.
    pub walk: wgpu::ComputePipeline,
    /// The walk over a cache of rows (rows on the fly).
    pub walk_cached: wgpu::ComputePipeline,
    pub similarity_layout: wgpu::BindGroupLayout,
    pub rows_layout: wgpu::BindGroupLayout,
    pub walk_layout: wgpu::BindGroupLayout,
}

impl Pipelines {
    /// Compiles the shaders for `device`; a driver rejection is an error.
    pub fn new(device: &wgpu::Device, adapter_name: &str, uses_subgroups: bool) -> Result<Self> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let similarity_layout = layout::<SimilarityBindings>(device, "similarity");
        let rows_layout = layout::<RowsBindings>(device, "rows");
        let walk_layout = layout::<WalkBindings>(device, "walk");
        let source = WALK_WGSL[uses_subgroups as usize];
        let walk = |label, cached| pipeline(device, label, source, &walk_layout, &walk_constants(cached));
        let pipelines = Pipelines {
            similarity: pipeline(
                device,
                "similarity",
                SIMILARITY_WGSL,
                &similarity_layout,
                &similarity_constants(),
            ),
            walk: walk("walk", false),
            walk_cached: walk("walk (rows on the fly)", true),
            similarity_layout,
            rows_layout,
            walk_layout,
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

    /// A `#[repr(C)]` parameter struct's members, by name and offset, and
    /// its size less the trailing padding (`_pad`, if any).
    macro_rules! members {
        ($t:ty { $($f:ident),* } $(pad $pad:ident)?) => {{
            let members = vec![$((stringify!($f).to_string(), std::mem::offset_of!($t, $f) as u32)),*];
            let padding = 0 $(+ std::mem::size_of_val(&<$t as bytemuck::Zeroable>::zeroed().$pad))?;
            (members, std::mem::size_of::<$t>() - padding)
        }};
    }

    fn similarity_members() -> (Vec<(String, u32)>, usize) {
        members!(SimilarityParams { n, dim_words, stride_words, row0, rows } pad _pad)
    }

    fn walk_members() -> (Vec<(String, u32)>, usize) {
        members!(WalkParams {
            n,
            stride_words,
            width,
            start0,
            batch,
            step0,
            steps,
            rows_per_tile
        })
    }

    /// The uniform's WGSL struct must have the Rust struct's members, by
    /// name and offset, each a 4-byte word, and nothing else.
    fn check_uniform(module: &naga::Module, ty: naga::Handle<naga::Type>, (rust, used): (Vec<(String, u32)>, usize)) {
        let naga::TypeInner::Struct { members, .. } = &module.types[ty].inner else {
            panic!("the uniform is not a struct");
        };
        let wgsl: Vec<(String, u32)> = members
            .iter()
            .map(|m| {
                assert_eq!(module.types[m.ty].inner.size(module.to_ctx()), 4, "{:?}", m.name);
                (m.name.clone().unwrap_or_default(), m.offset)
            })
            .collect();
        assert_eq!(wgsl, rust);
        // Every Rust field but the padding is a member the WGSL names.
        assert_eq!(rust.len() * 4, used, "{rust:?}");
    }

    /// The shader's bindings, uniform and workgroup size must be the Rust side's.
    fn check<B: Bindings>(
        source: &str,
        constants: &[(&str, f64)],
        params: (Vec<(String, u32)>, usize),
        workgroup: [u32; 3],
    ) {
        let module = compile(source, constants);
        let mut uniform = None;
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
                    AddressSpace::Uniform => {
                        assert!(uniform.replace(g.ty).is_none(), "one uniform per shader");
                        BindingKind::Params {
                            size: module.types[g.ty].inner.size(module.to_ctx()) as u64,
                        }
                    }
                    other => panic!("unexpected address space {other:?}"),
                };
                Some((binding.binding, g.name.clone().unwrap_or_default(), kind))
            })
            .collect();
        seen.sort_by_key(|s| s.0);
        let expected: Vec<(u32, String, BindingKind)> =
            B::TABLE.iter().map(|b| (b.slot, b.name.to_string(), b.kind)).collect();
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
        check_uniform(&module, uniform.expect("a uniform"), params);
        let entry = &module.entry_points[0];
        assert_eq!(entry.name, "main");
        assert_eq!(entry.workgroup_size, workgroup);
    }

    #[test]
    fn the_similarity_shader_matches_its_bindings_and_dispatch() {
        let [x, y] = SIMILARITY_WG;
        check::<SimilarityBindings>(
            SIMILARITY_WGSL,
            &similarity_constants(),
            similarity_members(),
            [x, y, 1],
        );
    }

    #[test]
    fn the_row_block_shader_matches_its_bindings_and_block() {
        check::<RowsBindings>(ROWS_WGSL, &rows_constants(192), similarity_members(), [ROWS_WG, 1, 1]);
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
    fn every_walk_variant_matches_its_bindings() {
        for source in WALK_WGSL {
            for cached in [false, true] {
                check::<WalkBindings>(source, &walk_constants(cached), walk_members(), [WALK_WG, 1, 1]);
            }
        }
        assert_eq!(storage_buffers_needed(), 7);
    }

    /// A drifted name or offset is caught, not only a drifted size.
    #[test]
    #[should_panic(expected = "(\"first\", 12)")]
    fn a_renamed_uniform_member_fails_the_check() {
        let drifted = ROWS_WGSL.replace("row0", "first");
        check::<RowsBindings>(&drifted, &rows_constants(192), similarity_members(), [ROWS_WG, 1, 1]);
    }

    #[test]
    fn the_shaders_chosen_marker_is_the_rust_one() {
        let common = include_str!("../../shaders/common.wgsl");
        let module = compile(common, &[]);
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
        // Declared once: the other modules use the name, never the number.
        for (name, source) in [
            ("similarity", include_str!("../../shaders/similarity.wgsl")),
            ("rows", include_str!("../../shaders/rows.wgsl")),
            ("walk", include_str!("../../shaders/walk.wgsl")),
            ("reduce_shared", include_str!("../../shaders/reduce_shared.wgsl")),
            ("reduce_subgroup", include_str!("../../shaders/reduce_subgroup.wgsl")),
        ] {
            assert!(
                !source.contains("2147483647") && !source.contains("const CHOSEN"),
                "{name}.wgsl"
            );
            // The packing too: `pack` in common.wgsl, not a mask and shift here.
            assert!(!source.contains("0xffffu) |"), "{name}.wgsl packs by hand");
        }
    }
}
