//! Files the tool writes: atomically (a temp file beside the target, then a
//! rename), so readers never see a partial file and an interrupted run
//! leaves the previous version in place. A path that is a symbolic link is
//! written through: the link stays and its target gets the new bytes.
//! Devices and pipes (`/dev/stdout`, a FIFO) are written directly.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tempfile::NamedTempFile;

/// Prefix of temp files of [`write_atomic`] and [`Output`].
pub const TEMP_PREFIX: &str = ".tmp";

/// Opens `path` for reading and writing, creating it if missing and keeping
/// the bytes it has (for files the tool updates in place: a lock, a partial
/// file that a resumed run completes).
pub fn open_keeping(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Writes `bytes` to `path` atomically and durably: a temp file in the same
/// directory, synced, renamed over the target, then the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, true, TEMP_PREFIX)
}

/// Like [`write_atomic`], with temp files named `prefix…` (so that the
/// directory's owner can tell them from anything else there).
pub fn write_atomic_named(path: &Path, bytes: &[u8], prefix: &str) -> Result<()> {
    write_via_temp(path, bytes, true, prefix)
}

/// Writes `bytes` to `path` atomically but without waiting for the disk,
/// with temp files named `prefix…`: readers never see a partial file, and a
/// crash can at worst lose the newest version (for site pages, which a
/// re-render rewrites).
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8], prefix: &str) -> Result<()> {
    write_via_temp(path, bytes, false, prefix)
}

/// The file a write to `path` lands on: symbolic links followed to their
/// final target, which need not exist yet.
pub fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p).with_context(|| format!("cannot read the link {}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

/// The directory holding `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Flushes a directory's entries to disk, so that a rename into it survives
/// a power cut (as SQLite and restic do after committing).
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot flush the folder {} to disk", dir.display()))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A temp file in `path`'s directory, to be persisted over `path`.
pub fn temp_file_beside(path: &Path) -> Result<NamedTempFile> {
    temp_file_named(path, TEMP_PREFIX)
}

/// A temp file in `path`'s directory named `prefix…`, to be persisted over
/// `path`. Temp files are private by default; outputs are ordinary files
/// that a web server or another user may need to read, so this one is 0644.
pub fn temp_file_named(path: &Path, prefix: &str) -> Result<NamedTempFile> {
    let dir = parent_of(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    builder
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temp file in {}", dir.display()))
}

/// An output file: a temp file renamed over the (link-resolved) target on
/// [`Output::finish`], or, for a device or pipe, the target itself.
pub enum Output {
    Atomic {
        tmp: NamedTempFile,
        target: PathBuf,
        sync: bool,
    },
    Direct {
        file: File,
        target: PathBuf,
    },
}

impl Output {
    /// Opens an output for `path`; temp files are named `prefix…`.
    pub fn create(path: &Path, prefix: &str, sync: bool) -> Result<Output> {
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file()) || goes_through_proc(path);
        if special {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            return Ok(Output::Direct {
                file,
                target: path.to_path_buf(),
            });
        }
        let target = resolve_links(path)?;
        Ok(Output::Atomic {
            tmp: temp_file_named(&target, prefix)?,
            target,
            sync,
        })
    }

    /// Moves the bytes into place.
    pub fn finish(self) -> Result<()> {
        match self {
            Output::Atomic { tmp, target, sync } => {
                if sync {
                    tmp.as_file()
                        .sync_all()
                        .with_context(|| format!("cannot write {}", target.display()))?;
                }
                tmp.persist(&target)
                    .with_context(|| format!("cannot rename into {}", target.display()))?;
                if sync {
                    sync_dir(parent_of(&target))?;
                }
            }
            Output::Direct { mut file, target } => file
                .flush()
                .with_context(|| format!("cannot write {}", target.display()))?,
        }
        Ok(())
    }

    fn target(&self) -> &Path {
        match self {
            Output::Atomic { target, .. } | Output::Direct { target, .. } => target,
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Output::Atomic { tmp, .. } => tmp.write(buf),
            Output::Direct { file, .. } => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Output::Atomic { tmp, .. } => tmp.flush(),
            Output::Direct { file, .. } => file.flush(),
        }
    }
}

/// Whether `path` is one of the process's own descriptors (`/dev/stdout`,
/// `/dev/fd/1`, `/proc/self/fd/1`): those are written in place, since a
/// rename would not reach whoever holds the descriptor.
fn goes_through_proc(path: &Path) -> bool {
    let mut p = path.to_path_buf();
    for _ in 0..8 {
        if p.starts_with("/proc") || p.starts_with("/dev/fd") {
            return true;
        }
        match std::fs::read_link(&p) {
            Ok(t) => p = p.parent().map(|d| d.join(&t)).unwrap_or(t),
            Err(_) => return false,
        }
    }
    false
}

fn write_via_temp(path: &Path, bytes: &[u8], sync: bool, prefix: &str) -> Result<()> {
    let mut out = Output::create(path, prefix, sync)?;
    out.write_all(bytes)
        .with_context(|| format!("cannot write {}", out.target().display()))?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn a_symlinked_output_is_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("real.json");
        std::fs::write(&target, "old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink("real.json", &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
        // A dangling link gets its target created.
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("made.json", &dangling).unwrap();
        write_atomic(&dangling, b"x").unwrap();
        assert_eq!(std::fs::read(dir.path().join("made.json")).unwrap(), b"x");
        assert!(std::fs::symlink_metadata(&dangling).unwrap().file_type().is_symlink());
    }
}
