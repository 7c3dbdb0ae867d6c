//! Who may write a cache folder: only this tool, into an empty folder or
//! one of its own ([`refuse_foreign`]), and one writer at a time, under an
//! exclusive lock on `DIR/lock` held for the whole run and released by the
//! OS when the process ends, however it ends.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::generations::generation_number;
use super::{generation_dir, generations, is_data_name, MANIFEST};
use crate::fs::FolderLock;

/// The lock file's name inside a cache directory.
pub const LOCK: &str = "lock";

/// Refuses a non-empty folder that is not a cache, naming what it holds:
/// the tool writes only into an empty folder or one of its own (its lock
/// file, a manifest with its seal and format fields, or generation
/// folders) that holds nothing else it did not write, and so never
/// overwrites or deletes another program's files.
pub fn refuse_foreign(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!(
                "{} is a file, not a folder; choose a folder for the cache",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let manifest = is_our_manifest(&dir.join(MANIFEST));
    let (mut marked, mut foreign, mut mixed) = (false, Vec::new(), Vec::new());
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        match name.as_str() {
            LOCK if !is_dir && is_our_lock(&e.path()) => marked = true,
            MANIFEST if manifest => marked = true,
            // A generation folder is removed whole: it must hold only ours.
            n if is_dir && generation_number(n).is_some() => match is_our_generation(&e.path()) {
                true => marked = true,
                false => mixed.push(name),
            },
            // Format 2 kept its data beside its manifest.
            n if !is_dir && (is_kept_beside(n) || (manifest && is_data_name(n))) => {}
            _ => foreign.push(name),
        }
    }
    // The user's own files beside a cache are never touched (so they may
    // stay); in a folder nothing marks as a cache they could be taken for
    // ours, and a generation folder holding them would be removed whole.
    let mut foreign = match (mixed.is_empty(), marked) {
        (false, _) => mixed,
        (true, true) => return Ok(()),
        (true, false) if foreign.is_empty() => return Ok(()),
        (true, false) => foreign,
    };
    foreign.sort();
    let shown: Vec<&str> = foreign.iter().take(5).map(String::as_str).collect();
    let more = match foreign.len() - shown.len() {
        0 => String::new(),
        n => format!(" and {}", crate::plural::count(n, "other", "others")),
    };
    bail!(
        "{} is not empty and is not a cache: it holds {}{more}, which this tool did not write; \
         it never overwrites or deletes other files, so choose an empty folder or an existing cache",
        dir.display(),
        shown.join(", ")
    )
}

/// Files `build` keeps beside a cache (the embeddings it made, their
/// journals) and temp files of ours.
fn is_kept_beside(name: &str) -> bool {
    let kept = ["embeddings.json", "themes-embeddings.json", "palette-embeddings.json"];
    name.starts_with(crate::fs::TEMP_PREFIX)
        || kept
            .iter()
            .any(|k| name == *k || name.strip_prefix(k).is_some_and(|r| r == ".journal.jsonl"))
}

/// A generation folder holds only files with the names of a generation's.
fn is_our_generation(path: &Path) -> bool {
    std::fs::read_dir(path).is_ok_and(|r| {
        r.flatten()
            .all(|e| e.file_type().is_ok_and(|t| t.is_file()) && is_data_name(&e.file_name().to_string_lossy()))
    })
}

/// A lock file holds a pid or nothing.
fn is_our_lock(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| b.len() <= 32 && b.iter().all(|c| c.is_ascii_digit() || *c == b'\n'))
}

/// A manifest of this tool's caches begins with its seal and format fields.
fn is_our_manifest(path: &Path) -> bool {
    let mut head = Vec::new();
    let read = File::open(path).and_then(|f| std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut head));
    let has = |field: &[u8]| head.windows(field.len()).any(|w| w == field);
    read.is_ok() && has(b"\"manifest_hash\"") && has(b"\"format_version\"")
}

/// Creates `dir` if needed, refuses it when it holds another program's
/// files, and takes its lock (one writer at a time), failing at once when
/// another process holds it.
pub(crate) fn lock_dir(dir: &Path) -> Result<FolderLock> {
    refuse_foreign(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create cache directory {}", dir.display()))?;
    let lock = match FolderLock::try_acquire(dir, LOCK)? {
        Ok(lock) => lock,
        Err(held) => bail!(
            "{} is being written by {}; wait for it to finish (or stop it) before writing this cache",
            dir.display(),
            held.holder
        ),
    };
    // Temp files a killed writer left, swept only once the folder is known
    // to be ours and no other writer runs.
    crate::fs::sweep_leftovers(dir);
    for g in generations(dir)? {
        crate::fs::sweep_leftovers(&generation_dir(dir, g));
    }
    Ok(lock)
}

/// Makes `dir` a cache folder before anything is written into it (as
/// `build` does with its embeddings): creates it, refuses another
/// program's folder, and leaves the lock file that marks it as this tool's.
pub fn claim_dir(dir: &Path) -> Result<()> {
    lock_dir(dir).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{SIMILAR, VECTORS};

    #[test]
    fn only_an_empty_folder_or_ones_own_is_written_into() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("c");
        refuse_foreign(&dir).unwrap(); // missing
        std::fs::create_dir(&dir).unwrap();
        refuse_foreign(&dir).unwrap(); // empty
        std::fs::write(dir.join("lock"), "not a pid").unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let err = refuse_foreign(&dir).unwrap_err().to_string();
        assert!(
            err.contains("lock, notes.txt") && err.contains("is not a cache"),
            "{err}"
        );
        std::fs::create_dir(dir.join("gen-x")).unwrap();
        assert!(refuse_foreign(&dir).is_err());
        // A generation folder holding the user's drafts is not ours, even
        // beside our lock: it would be removed whole.
        std::fs::create_dir(dir.join("gen-7")).unwrap();
        std::fs::write(dir.join("gen-7").join("draft.txt"), "mine").unwrap();
        std::fs::write(dir.join("lock"), "123\n").unwrap();
        let err = refuse_foreign(&dir).unwrap_err().to_string();
        assert!(err.contains("holds gen-7,") || err.contains("holds gen-7 "), "{err}");
        std::fs::remove_file(dir.join("gen-7").join("draft.txt")).unwrap();
        // The user's files beside a marked cache stay (nothing removes
        // names it did not write).
        std::fs::write(dir.join("gen-7").join(SIMILAR), "").unwrap();
        refuse_foreign(&dir).unwrap();
        assert_eq!(generations(&dir).unwrap(), vec![7]);
        // Format 2's files count as ours only beside its manifest.
        let bare = d.path().join("bare");
        std::fs::create_dir(&bare).unwrap();
        std::fs::write(bare.join("embeddings.json"), "{}").unwrap();
        refuse_foreign(&bare).unwrap();
        std::fs::write(bare.join(VECTORS), "").unwrap();
        assert!(refuse_foreign(&bare).unwrap_err().to_string().contains(VECTORS));
        let other = d.path().join("o");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(
            other.join(MANIFEST),
            "{\"manifest_hash\": \"0\", \"format_version\": 3}",
        )
        .unwrap();
        refuse_foreign(&other).unwrap();
        std::fs::write(other.join(MANIFEST), "{\"title\": \"my book\"}").unwrap();
        assert!(refuse_foreign(&other).is_err());
        assert_eq!(generation_number("gen-12"), Some(12));
        assert_eq!(generation_number("gen-"), None);
        assert_eq!(generation_number("gen-1a"), None);
    }
}
