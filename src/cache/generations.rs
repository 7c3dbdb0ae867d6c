//! Generation folders (`gen-<n>`): every rebuild writes a new one beside
//! the one the manifest names, and the others go once no manifest can name
//! them. Only a writer holding the folder's lock creates or removes one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::manifest::read_manifest;
use super::{FORMAT_VERSION, GENERATION_PREFIX, MANIFEST};

/// The folder of generation `n` in the cache `dir`.
pub fn generation_dir(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{GENERATION_PREFIX}{n}"))
}

/// `n` when `name` is `gen-<n>`.
pub(crate) fn generation_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(GENERATION_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The generation folders in `dir`, oldest first (none when `dir` is missing).
pub fn generations(dir: &Path) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        if let Some(n) = e.file_name().to_str().and_then(generation_number) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(n);
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The generation the manifest in `dir` names, read without checks (to
/// tell which generation folder is in use).
pub(crate) fn named_generation(dir: &Path) -> Option<u64> {
    read_manifest(&dir.join(MANIFEST))
        .ok()
        .filter(|m| m.format_version == FORMAT_VERSION)
        .map(|m| m.generation)
}

/// Removes the generation folders of `dir` that are neither `in_use` (the
/// one the manifest names) nor `keep`: abandoned runs, or, called with the
/// generation just switched to, every older one. The caller holds the lock.
pub(crate) fn remove_abandoned(dir: &Path, in_use: Option<u64>, keep: Option<u64>) -> Result<()> {
    // A manifest of another format (a newer version's) or one unreadable
    // may still name any of them: all stay until the next switch.
    if in_use.is_none() && dir.join(MANIFEST).exists() {
        return Ok(());
    }
    for g in generations(dir)? {
        if Some(g) != in_use && Some(g) != keep {
            let path = generation_dir(dir, g);
            std::fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// Starts a new, empty generation folder in `dir` (whose lock the caller
/// holds) beside the one in use, after removing abandoned ones; returns its
/// number.
pub(crate) fn new_generation(dir: &Path, in_use: Option<u64>) -> Result<u64> {
    remove_abandoned(dir, in_use, None)?;
    let n = generations(dir)?.into_iter().chain(in_use).max().map_or(1, |g| g + 1);
    let path = generation_dir(dir, n);
    std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_stay_while_the_manifest_names_none_this_version_reads() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        for g in [3, 4] {
            std::fs::create_dir(generation_dir(dir, g)).unwrap();
        }
        // A newer version's manifest: its generation may be either.
        std::fs::write(dir.join(MANIFEST), "{\"format_version\": 9, \"generation\": 3}").unwrap();
        assert_eq!(named_generation(dir), None);
        let n = new_generation(dir, None).unwrap();
        assert_eq!((n, generations(dir).unwrap()), (5, vec![3, 4, 5]));
        // Without a manifest, a generation no manifest names is abandoned.
        std::fs::remove_file(dir.join(MANIFEST)).unwrap();
        remove_abandoned(dir, None, Some(5)).unwrap();
        assert_eq!(generations(dir).unwrap(), vec![5]);
    }
}
