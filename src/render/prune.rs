//! Pruning: the site folder belongs to the user. A render removes only files
//! an earlier render made, which it knows by name from its own records (the
//! page ownership list and the page manifest), and its own temp files,
//! whose names no page can take. Anything else in the folder stays.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::names::{LOCK, OWNED, PAGE_DIRS, PAGE_MANIFEST};

/// Prefix of the renderer's temp files (every command's: see
/// [`crate::fs::TEMP_PREFIX`]). Page names hold only ASCII letters, digits
/// and `-._~`, so no page can start with it.
pub use crate::fs::TEMP_PREFIX;

/// Whether `rel` can be a page path: `index.html`, `complete.html`, or one
/// plain file name in a page folder. Anything else in a record is ignored,
/// so an edited record can never make the renderer touch other files.
fn is_page_path(rel: &str) -> bool {
    if rel == "index.html" || rel == "complete.html" {
        return true;
    }
    let Some((dir, name)) = rel.rsplit_once('/') else {
        return false;
    };
    PAGE_DIRS.contains(&dir)
        && !name.is_empty()
        && !name.contains(['/', '\\'])
        && name != "."
        && name != ".."
        && !name.starts_with(TEMP_PREFIX)
}

/// The pages earlier renders made: the ownership list and the manifest's
/// paths (a site rendered before the list existed has only the manifest).
pub(super) fn owned_pages(out: &Path) -> Result<BTreeSet<String>> {
    let mut owned = BTreeSet::new();
    for (name, field) in [(OWNED, 0), (PAGE_MANIFEST, 1)] {
        let path = out.join(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        for line in text.lines() {
            let rel = if field == 0 {
                Some(line)
            } else {
                line.split_once("  ").map(|(_, p)| p)
            };
            if let Some(rel) = rel.filter(|r| is_page_path(r)) {
                owned.insert(rel.to_owned());
            }
        }
    }
    Ok(owned)
}

/// Writes the ownership list atomically.
pub(super) fn record_owned<'a>(out: &Path, pages: impl Iterator<Item = &'a String>) -> Result<()> {
    let mut text = String::new();
    for p in pages {
        text.push_str(p);
        text.push('\n');
    }
    // A kill mid-write leaves a temp file the next render sweeps.
    crate::fs::write_atomic(&out.join(OWNED), text.as_bytes())
}

/// Removes the pages in `earlier` that this render does not write; returns
/// how many went, recording what could not be removed in `failures`.
pub(super) fn remove_stale(
    out: &Path,
    earlier: &BTreeSet<String>,
    current: &BTreeSet<String>,
    failures: &mut Vec<String>,
) -> usize {
    earlier
        .difference(current)
        .filter(|rel| remove(&out.join(rel), failures))
        .count()
}

/// Removes the temp files an interrupted render left (before this one
/// makes its own); returns how many went. Temp files a live process holds
/// are skipped (see [`crate::fs::sweep_temp_files`]).
pub(super) fn remove_temp_files(out: &Path, failures: &mut Vec<String>) -> usize {
    std::iter::once(out.to_path_buf())
        .chain(PAGE_DIRS.iter().map(|d| out.join(d)))
        .map(|dir| crate::fs::sweep_temp_files(&dir, failures))
        .sum()
}

/// The files in `out` that are not this tool's, when `out` is not a site
/// it made (one with [`PAGE_MANIFEST`] or [`OWNED`]): a render refuses a
/// folder that holds any. Empty page folders, the lock and temp files are
/// a render's own (one killed before it recorded anything).
pub(super) fn foreign_files(out: &Path) -> Result<Vec<String>> {
    if [PAGE_MANIFEST, OWNED]
        .iter()
        .any(|m| std::fs::symlink_metadata(out.join(m)).is_ok_and(|t| t.is_file()))
    {
        return Ok(Vec::new());
    }
    let mut foreign = Vec::new();
    let mut stack = vec![(out.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_dir && PAGE_DIRS.contains(&path.as_str()) {
                stack.push((entry.path(), path));
            } else if !(is_file && (name.starts_with(TEMP_PREFIX) || path == LOCK)) {
                foreign.push(if is_dir { format!("{path}/") } else { path });
            }
        }
    }
    foreign.sort();
    Ok(foreign)
}

/// Removes one file; a file already gone is not a failure.
fn remove(path: &Path, failures: &mut Vec<String>) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            failures.push(format!("{}: cannot remove: {e}", path.display()));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_page_paths_are_taken_from_records() {
        assert!(is_page_path("index.html"));
        assert!(is_page_path("similar/a-000.html"));
        assert!(is_page_path("chronological/.tmp-x-000.html"));
        assert!(is_page_path("complete.html") && is_page_path("complete/similar/a.js"));
        for bad in [
            "complete/similar/a/b.js",
            "complete/similar/../../x",
            "complete/../x",
            "../x",
            "similar/../x",
            "notes.txt",
            "similar/a/b",
            "other/a.html",
            "similar/",
            "/etc/passwd",
        ] {
            assert!(!is_page_path(bad), "{bad}");
        }
    }
}
