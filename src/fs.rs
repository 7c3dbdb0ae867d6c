//! Files the tool writes: atomically (a temp file beside the target, then a
//! rename), so readers never see a partial file and an interrupted run
//! leaves the previous version in place.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` atomically and durably: a temp file in the same
/// directory, synced, then renamed over the target.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, true)
}

/// Writes `bytes` to `path` atomically but without waiting for the disk:
/// readers never see a partial file, and a crash can at worst lose the
/// newest version (for site pages, which a re-render rewrites).
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, false)
}

/// A temp file in `path`'s directory, to be persisted over `path`. Temp
/// files are private by default; outputs are ordinary files that a web
/// server or another user may need to read, so this one is 0644.
pub fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))
}

fn write_via_temp(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let mut tmp = temp_file_beside(path)?;
    tmp.write_all(bytes)
        .and_then(|_| if sync { tmp.as_file().sync_all() } else { Ok(()) })
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot rename into {}", path.display()))?;
    Ok(())
}
