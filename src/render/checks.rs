//! What a render checks before it writes: a site folder it may write into,
//! a cache that matches the poems, and room on the disk.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::names::PAGE_MANIFEST;
use super::{budget, prune, Options, Shape};
use crate::cache::Cache;
use crate::fs::absolute;
use crate::plural::thousands;

/// Refuses a site folder that cannot be made (a file on its path) and a
/// non-empty folder this tool did not make, naming the files in it.
pub(super) fn check_out(out: &Path) -> Result<()> {
    for a in out.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(a) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => anyhow::bail!(
                "cannot create {}: {} is a file, not a folder",
                out.display(),
                a.display()
            ),
            Err(_) => continue,
        }
    }
    let foreign = prune::foreign_files(out)?;
    if !foreign.is_empty() {
        const SHOWN: usize = 8;
        let mut names = foreign.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        if foreign.len() > SHOWN {
            names += &format!(" and {} more", thousands(foreign.len() - SHOWN));
        }
        anyhow::bail!(
            "{} is not a site this tool made and is not empty: it holds {names}. render writes only into a new or empty folder, or a site it made (one with {PAGE_MANIFEST}); choose another --out, or move those files away",
            out.display()
        );
    }
    Ok(())
}

/// Refuses a cache whose poems changed since it was computed, with the
/// command that updates it from these poems: absolute paths, so that it
/// works run verbatim from any folder.
pub(super) fn check_fresh(cache: &Cache, poems: &Path, all_keys: &[String]) -> Result<()> {
    let what = cache.manifest.poems_changed(all_keys);
    if what.is_empty() {
        return Ok(());
    }
    let mut m = cache.manifest.clone();
    m.inputs.poems = absolute(poems);
    anyhow::bail!(
        "the cache {} is stale: {} since it was computed. Update it with:\n  {}",
        absolute(&cache.dir).display(),
        what.join("; "),
        m.rebuild_command(&absolute(&cache.dir))
    )
}

/// The size guard: the projected size against the free space under `out`
/// (or its nearest existing folder).
pub(super) fn check_space(opts: &Options, shape: &Shape, earlier: &BTreeSet<String>) -> Result<()> {
    let existing = opts.out.ancestors().find(|a| a.exists()).unwrap_or(Path::new("."));
    let available = fs4::available_space(existing)
        .with_context(|| format!("cannot read the free space of {}", existing.display()))?;
    let reclaimed = earlier
        .iter()
        .filter_map(|rel| std::fs::symlink_metadata(opts.out.join(rel)).ok())
        .map(|m| m.len())
        .sum();
    budget::check_space(
        &budget::SpaceCheck {
            projected: shape.projected_bytes,
            reclaimed,
            available,
        },
        &opts.out,
    )
}
