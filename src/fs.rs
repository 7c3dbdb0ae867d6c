//! Files the tool writes: atomically (a temp file beside the target, then a
//! rename), so readers never see a partial file and an interrupted run
//! leaves the previous version in place. A path that is a symbolic link is
//! written through: the link stays and its target gets the new bytes.
//! Devices and pipes (`/dev/stdout`, a FIFO) are written directly.
//!
//! Temp files: one naming rule for every command, [`TEMP_PREFIX`] and a
//! random tail. Each is locked (an advisory `flock`) from the moment it
//! exists until it is renamed or removed, so [`sweep_temp_files`], which
//! every command runs on the folders it writes before it starts, removes
//! only the leftovers of runs that ended (a kill, a second Ctrl-C, a power
//! cut) and never a temp file a concurrent run is still writing.
//!
//! - `aliasing`: no output may be one of the command's inputs.
//! - [`FolderLock`]: one writer per folder.

mod aliasing;

pub use aliasing::{refuse_aliasing, Role};

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tempfile::NamedTempFile;

/// Prefix of every temp file the tool makes ([`write_atomic`], [`Output`],
/// [`temp_file_beside`]), in caches, sites and beside output files. Page
/// names hold only ASCII letters, digits and `-._~`, and no cache or input
/// file starts with it, so no file the tool did not make can take it.
pub const TEMP_PREFIX: &str = ".dg+tmp.";

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
/// directory, synced, renamed over the target, then the directory synced
/// (on Unix; elsewhere the rename is not flushed). A device or pipe is
/// written directly, neither atomically nor synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, true)
}

/// Writes `bytes` to `path` atomically but without waiting for the disk:
/// readers never see a partial file, and a crash can at worst lose the
/// newest version (for site pages, which a re-render rewrites).
pub fn write_atomic_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, bytes, false)
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

/// A temp file in `path`'s directory named [`TEMP_PREFIX`]`…`, locked
/// while it lives, to be persisted over `path`. Temp files are private by
/// default; outputs are ordinary files that a web server or another user may
/// need to read, so this one is 0644.
pub fn temp_file_beside(path: &Path) -> Result<NamedTempFile> {
    let dir = parent_of(path);
    let mut builder = tempfile::Builder::new();
    builder.prefix(TEMP_PREFIX);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    for _ in 0..64 {
        let tmp = builder
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temp file in {}", dir.display()))?;
        // A sweeper may have opened the new file before it was locked: it
        // then holds the lock, or has already unlinked the name. Either
        // way this one is given up and another made.
        match fs4::FileExt::try_lock(tmp.as_file()) {
            Ok(()) if still_named(tmp.as_file(), tmp.path()) => {
                pause_for_test(path);
                return Ok(tmp);
            }
            Ok(()) | Err(fs4::TryLockError::WouldBlock) => continue,
            // No locks on this file system: sweepers cannot lock it either,
            // and skip it.
            Err(fs4::TryLockError::Error(_)) => {
                pause_for_test(path);
                return Ok(tmp);
            }
        }
    }
    bail!("cannot create a temp file in {}: each was taken away", dir.display())
}

/// Whether `path` still names the open `file` (same device and inode).
fn still_named(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => same_inode(&a, &b),
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_inode(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// Removes the temp files ([`TEMP_PREFIX`]`…`) that earlier runs left in
/// `dir` (not below it): those no process holds locked. Anything else,
/// including names that merely look alike (`.tmpnotes`), stays. Returns how
/// many went; what could not be removed is added to `failures`.
pub fn sweep_temp_files(dir: &Path, failures: &mut Vec<String>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let ours = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        // The entry's own type: a link is never followed.
        if !ours || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = File::open(&path) else { continue };
        // Locked: a live run is writing it.
        if fs4::FileExt::try_lock(&file).is_err() || !still_named(&file, &path) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => failures.push(format!("{}: cannot remove: {e}", path.display())),
        }
    }
    removed
}

/// [`sweep_temp_files`] for a command's output folder: what cannot be
/// removed is only warned about (it is in no one's way).
pub fn sweep_leftovers(dir: &Path) -> usize {
    let mut failures = Vec::new();
    let n = sweep_temp_files(dir, &mut failures);
    for f in failures {
        log::warn!("{f}");
    }
    if n > 0 {
        log::info!(
            "removed {} an interrupted run left in {}",
            crate::plural::count(n, "temp file", "temp files"),
            dir.display()
        );
    }
    n
}

/// Test hook: with `DIVERSITY_TEST_PAUSE=NAME:GATE` in the environment, the
/// process stops right after creating (and locking) the temp file of a file
/// named `NAME`, says so on stderr, and waits there while the file `GATE`
/// exists. Tests use it to hold a command at a known moment (to interrupt
/// it, or to start a second one beside it); read here and nowhere else.
fn pause_for_test(target: &Path) {
    static HOOK: std::sync::OnceLock<Option<(String, PathBuf)>> = std::sync::OnceLock::new();
    let hook = HOOK.get_or_init(|| {
        let v = std::env::var("DIVERSITY_TEST_PAUSE").ok()?;
        let (name, gate) = v.split_once(':')?;
        Some((name.to_owned(), PathBuf::from(gate)))
    });
    let Some((name, gate)) = hook else { return };
    if target.file_name().is_some_and(|n| n.to_string_lossy() == name.as_str()) && gate.exists() {
        eprintln!(
            "test hook: paused writing {} (pid {})",
            target.display(),
            std::process::id()
        );
        while gate.exists() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// One writer per folder: an exclusive advisory lock on a file in it, held
/// for the whole run and released by the OS when the process ends, however
/// it ends. The file is never deleted: removing a lock file while another
/// process waits on it would let two writers in.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
}

/// A folder lock another process holds.
#[derive(Debug)]
pub struct Held {
    file: File,
    path: PathBuf,
    /// Who holds it, for messages: "another process (pid N)".
    pub holder: String,
}

impl FolderLock {
    /// Takes the lock `name` in `dir` (`what` says what the folder is, for
    /// messages). Without `wait`, fails at once naming the process that
    /// holds it; with `wait`, says whom it waits for and waits.
    pub fn acquire(dir: &Path, name: &str, what: &str, wait: bool) -> Result<Self> {
        match Self::try_acquire(dir, name)? {
            Ok(lock) => Ok(lock),
            Err(held) if !wait => bail!(
                "the {what} {} is being written by {}; wait for it to finish (or stop it), or pass --wait to wait for it",
                dir.display(),
                held.holder
            ),
            Err(held) => {
                eprintln!("waiting for {} to finish writing the {what} {}", held.holder, dir.display());
                held.wait()
            }
        }
    }

    /// Takes the lock `name` in `dir` if no other process holds it; else
    /// says who does, without waiting.
    pub fn try_acquire(dir: &Path, name: &str) -> Result<std::result::Result<Self, Held>> {
        use std::io::Read;
        let path = dir.join(name);
        let mut file = open_keeping(&path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => Self::mark(file, &path).map(Ok),
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("another process (pid {pid})"),
                };
                Ok(Err(Held { file, path, holder }))
            }
            Err(fs4::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }

    /// Writes this process's id into the lock file it now holds.
    fn mark(mut file: File, path: &Path) -> Result<Self> {
        use std::io::Seek;
        // The pid is only a hint for the messages above; the lock is the truth.
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(FolderLock { _file: file })
    }
}

impl Held {
    /// Waits until the holder lets go, then takes the lock.
    pub fn wait(self) -> Result<FolderLock> {
        fs4::FileExt::lock(&self.file).with_context(|| format!("cannot lock {}", self.path.display()))?;
        FolderLock::mark(self.file, &self.path)
    }
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
    /// Opens an output for `path`; with `sync`, [`Output::finish`] waits for
    /// the disk (the file, then its folder after the rename).
    pub fn create(path: &Path, sync: bool) -> Result<Output> {
        if is_special(path) {
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
            tmp: temp_file_beside(&target)?,
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
                        .map_err(explain)
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

/// Whether `path` is written directly, not through a temp file: an
/// existing device, pipe or socket, or one of the process's descriptors.
pub fn is_special(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file()) || goes_through_proc(path)
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

fn write_via_temp(path: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let mut out = Output::create(path, sync)?;
    out.write_all(bytes)
        .map_err(explain)
        .with_context(|| format!("cannot write {}", out.target().display()))?;
    out.finish()
}

/// A write error with what it means where the bare OS message is cryptic:
/// a full disk, or a file past the process's file size limit.
pub fn explain(e: std::io::Error) -> anyhow::Error {
    let why = meaning(e.kind());
    let e = anyhow::Error::new(e);
    match why {
        Some(why) => e.context(why),
        None => e,
    }
}

/// [`explain`] for an error already wrapped: finds the OS error in its
/// chain (also inside a JSON writer's error).
pub fn explain_any(e: anyhow::Error) -> anyhow::Error {
    let why = e.chain().find_map(|c| {
        let kind = c
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| c.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind()));
        kind.and_then(meaning)
    });
    match why {
        Some(why) => e.context(why),
        None => e,
    }
}

fn meaning(kind: std::io::ErrorKind) -> Option<&'static str> {
    match kind {
        std::io::ErrorKind::FileTooLarge => Some("the file would pass this process's file size limit (`ulimit -f`)"),
        std::io::ErrorKind::StorageFull => Some("the disk is full"),
        _ => None,
    }
}

/// `p` made absolute: canonical where it exists, else against the current
/// folder; as given where both fail.
pub fn absolute(p: &Path) -> PathBuf {
    p.canonicalize()
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_removes_only_unlocked_temp_files_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // A live writer's temp file (locked) and a dead one's (not).
        let live = temp_file_beside(&d.join("page.html")).unwrap();
        std::fs::write(d.join(format!("{TEMP_PREFIX}dead01")), "left").unwrap();
        let lookalikes = [".tmpnotes", ".tmp0a1b2c", "dg+tmp.x", ".dg+tmpx", "notes.txt"];
        for l in lookalikes {
            std::fs::write(d.join(l), "mine").unwrap();
        }
        std::fs::create_dir(d.join(format!("{TEMP_PREFIX}folder"))).unwrap();
        let mut failures = Vec::new();
        assert_eq!(sweep_temp_files(d, &mut failures), 1);
        assert!(failures.is_empty(), "{failures:?}");
        assert!(live.path().exists(), "a live temp file was swept");
        assert!(!d.join(format!("{TEMP_PREFIX}dead01")).exists());
        for l in lookalikes {
            assert!(d.join(l).exists(), "{l}");
        }
        assert!(d.join(format!("{TEMP_PREFIX}folder")).is_dir());
        // Once its writer is gone, its leftover goes too.
        let path = live.path().to_path_buf();
        live.keep().unwrap();
        assert_eq!(sweep_temp_files(d, &mut failures), 1);
        assert!(!path.exists());
    }

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = FolderLock::acquire(dir.path(), "lock", "cache", false).unwrap();
        let err = FolderLock::acquire(dir.path(), "lock", "cache", false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("being written"),
            "{err}"
        );
        assert!(FolderLock::try_acquire(dir.path(), "lock").unwrap().is_err());
        drop(held);
        FolderLock::try_acquire(dir.path(), "lock").unwrap().unwrap();
    }

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
