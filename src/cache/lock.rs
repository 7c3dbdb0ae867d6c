//! One writer per cache directory: an exclusive advisory lock on
//! `DIR/lock`, held for the whole run and released by the OS when the
//! process ends, however it ends.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The lock file's name inside a cache directory.
pub const LOCK: &str = "lock";

/// A held lock on a cache directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir` or fails at once, naming the process that
    /// holds it. The file is never deleted: removing a lock file while
    /// another process waits on it would let two writers in.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(LOCK);
        let mut file = crate::fs::open_keeping(&path)?;
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => {}
            Err(fs4::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "another process".to_owned(),
                    pid => format!("another process (pid {pid})"),
                };
                bail!(
                    "{} is being written by {holder}; wait for it to finish (or stop it) before writing this cache",
                    dir.display()
                );
            }
            Err(fs4::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
        // The pid is only a hint for the message above; the lock is the truth.
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(DirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = DirLock::acquire(dir.path()).unwrap();
        let err = DirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("being written"),
            "{err}"
        );
        drop(held);
        DirLock::acquire(dir.path()).unwrap();
    }
}
