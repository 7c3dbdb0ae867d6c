//! What the commands print when they finish: summaries and timing tables.

use std::path::Path;

use anyhow::{bail, Result};

use crate::cache::Manifest;
use crate::plural::count;
use crate::plural::thousands;
use crate::timings::Timings;

/// Prints a phase → seconds table in execution order, then the total of the phases.
pub fn print_timings(title: &str, timings: &Timings) {
    eprintln!("{title}");
    for (k, v) in timings.iter() {
        eprintln!("  {k:<22} {v:>9.3} s");
    }
    eprintln!("  {:<22} {:>9.3} s", "total", timings.total());
}

/// What `precompute` wrote (or found up to date).
pub(super) fn precomputed(out: &Path, m: &Manifest, up_to_date: bool, extras_only: bool) {
    if extras_only {
        eprintln!(
            "{}: orderings up to date; recomputed {} and the colours of a palette of {}",
            out.display(),
            count(m.themes.len(), "theme", "themes"),
            count(m.palette.len(), "colour", "colours")
        );
        print_timings("timing:", &m.timings);
        return;
    }
    if up_to_date {
        eprintln!(
            "the cache in {} is up to date ({}, backend {}); nothing to do",
            out.display(),
            count(m.included, "poem", "poems"),
            m.backend
        );
        return;
    }
    let of = m.shard.map(|s| format!("{s} of ")).unwrap_or_default();
    eprintln!(
        "wrote {} of {} for {of}{} ({} left out) with {}",
        count(2 * m.starts().len(), "ordering", "orderings"),
        count(m.params.width, "entry", "entries"),
        count(m.included, "poem", "poems"),
        thousands(m.report.unusable.len() + m.report.excluded.len()),
        m.backend
    );
    if !m.themes.is_empty() {
        eprintln!(
            "and {} of {} ({})",
            count(2 * m.themes.len(), "theme ordering", "theme orderings"),
            count(m.theme_width, "entry", "entries"),
            count(m.themes.len(), "theme", "themes")
        );
    }
    if !m.palette.is_empty() {
        eprintln!(
            "colours from a palette of {}",
            count(m.palette.len(), "colour", "colours")
        );
    }
    print_timings("timing:", &m.timings);
}

/// What `merge` wrote.
pub(super) fn merged(out: &Path, shards: usize, m: &Manifest) {
    eprintln!(
        "merged {} into {}: {}, orderings of {}",
        count(shards, "shard", "shards"),
        out.display(),
        count(m.included, "poem", "poems"),
        count(m.params.width, "entry", "entries")
    );
    print_timings("timing (shards summed, then the merge):", &m.timings);
}

/// The pages a render wrote; failed pages make it an error.
pub(super) fn rendered(s: &crate::render::Summary, out: &Path) -> Result<()> {
    print_timings("render timing:", &s.timings);
    if s.pages > 0 {
        eprintln!(
            "{} ({}) in {}: {} written, {} unchanged, {} removed",
            count(s.pages, "page", "pages"),
            bytesize::ByteSize(s.bytes),
            out.display(),
            s.written,
            s.unchanged,
            s.removed
        );
    }
    if !s.failures.is_empty() {
        for f in s.failures.iter().take(20) {
            eprintln!("failed: {f}");
        }
        bail!(
            "{} could not be written (first: {})",
            count(s.failures.len(), "page", "pages"),
            s.failures[0]
        );
    }
    Ok(())
}

/// The adapters wgpu sees, on stdout.
#[cfg(feature = "gpu")]
pub(super) fn adapters(list: &[crate::gpu::AdapterSummary]) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if list.is_empty() {
        writeln!(
            out,
            "no GPU adapters found (on Debian, `apt-get install mesa-vulkan-drivers` adds lavapipe)"
        )?;
    }
    for a in list {
        writeln!(
            out,
            "{}\n  type {}  backend {}  driver {}\n  max storage binding {} MiB  max buffer {} MiB  workgroup storage {} KiB\n  subgroups {}  (sizes {}..{})  timestamps {}",
            a.name,
            a.device_type,
            a.backend,
            a.driver,
            a.max_binding >> 20,
            a.max_buffer >> 20,
            a.max_workgroup_storage >> 10,
            a.subgroups,
            a.subgroup_sizes.0,
            a.subgroup_sizes.1,
            a.timestamps
        )?;
    }
    Ok(())
}
