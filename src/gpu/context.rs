//! Adapters, the device and its limits: what the GPU can do, opened once.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use super::pipelines::{storage_buffers_needed, Pipelines, WALK_WG};
use super::{GpuError, GpuOptions};

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

/// Keeps Mesa's Vulkan device-selection layer quiet on a machine with no
/// Wayland session (a server, a container, CI), and says whether it did.
///
/// That layer (`VK_LAYER_MESA_device_select`, loaded into every Vulkan
/// program) asks Wayland for the display's GPU while adapters are listed;
/// with `XDG_RUNTIME_DIR` unset, libwayland prints "error: XDG_RUNTIME_DIR
/// is invalid or not set in the environment." straight to stderr, twice.
/// There is no display to pick a GPU for, and this tool picks its adapter
/// itself, so the layer is switched off (`NODEVICE_SELECT=1`, its own
/// switch) unless the user set that variable. It changes the environment,
/// so call it first in `main`, before any thread starts.
pub fn quiet_headless_vulkan() -> bool {
    let absolute = |var: &str| std::env::var_os(var).is_some_and(|v| v.to_string_lossy().starts_with('/'));
    // libwayland complains exactly when neither gives it an absolute path.
    let headless = !absolute("XDG_RUNTIME_DIR") && !absolute("WAYLAND_DISPLAY");
    if !headless || std::env::var_os("NODEVICE_SELECT").is_some() {
        return false;
    }
    std::env::set_var("NODEVICE_SELECT", "1");
    true
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
    pub(super) pipelines: Pipelines,
    /// Errors the driver reported outside an error scope.
    errors: Arc<Mutex<Vec<String>>>,
    pub uses_subgroups: bool,
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
            return Err(GpuError::NoAdapter(format!(
                "no suitable GPU adapter{}{}; adapters seen: {}. On Debian, `apt-get install mesa-vulkan-drivers` provides the lavapipe software adapter",
                opts.adapter.as_ref().map(|a| format!(" matching {a:?}")).unwrap_or_default(),
                if opts.allow_software { "" } else { " (software adapters excluded)" },
                if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
            ))
            .into());
        };
        Self::with_adapter(adapter, opts)
    }

    /// Builds the device and pipelines on `adapter`.
    pub fn with_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Self> {
        let summary = summarize(&adapter);
        let uses_subgroups = summary.subgroups && !opts.no_subgroups;
        let limits = adapter.limits();
        check_limits(&limits, &summary.name)?;
        let mut features = wgpu::Features::empty();
        if uses_subgroups {
            features |= wgpu::Features::SUBGROUP;
        }
        if summary.timestamps {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("diversity-gpu"),
            required_features: features,
            required_limits: limits,
            ..Default::default()
        }))
        .with_context(|| format!("cannot open a device on {}", summary.name))?;
        let errors = collect_errors(&device);
        let pipelines = Pipelines::new(&device, &summary.name, uses_subgroups)?;
        Ok(GpuContext {
            device,
            queue,
            summary,
            pipelines,
            errors,
            uses_subgroups,
        })
    }

    /// A buffer of `size` bytes (wgpu zeroes it before its first use).
    pub(super) fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Turns any error the driver reported into a Result.
    pub(super) fn check(&self) -> Result<()> {
        let mut errors = self.errors.lock().unwrap();
        if errors.is_empty() {
            return Ok(());
        }
        let message = format!(
            "GPU error on {}: {}",
            self.summary.name,
            errors.drain(..).collect::<Vec<_>>().join("; ")
        );
        Err(GpuError::Lost(message).into())
    }

    /// Waits for `submission` (or all work), then reports driver errors.
    pub(super) fn wait(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: submission,
                timeout: None,
            })
            .map_err(|e| GpuError::Lost(format!("GPU error on {}: {e}", self.summary.name)))?;
        self.check()
    }
}

/// The limits the walk shader needs, from its binding table.
fn check_limits(limits: &wgpu::Limits, adapter: &str) -> Result<(), GpuError> {
    let storage = storage_buffers_needed();
    if limits.max_storage_buffers_per_shader_stage < storage
        || limits.max_compute_invocations_per_workgroup < WALK_WG
        || limits.max_compute_workgroup_size_x < WALK_WG
    {
        return Err(GpuError::Limits(format!(
            "adapter {adapter} lacks the limits this tool needs ({storage} storage buffers per stage, workgroups of {WALK_WG})"
        )));
    }
    Ok(())
}

/// Collects errors the driver reports outside error scopes, and device loss.
fn collect_errors(device: &wgpu::Device) -> Arc<Mutex<Vec<String>>> {
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.lock().unwrap().push(e.to_string())));
    let lost = errors.clone();
    device.set_device_lost_callback(move |reason, msg| {
        lost.lock().unwrap().push(format!("device lost ({reason:?}): {msg}"))
    });
    errors
}
