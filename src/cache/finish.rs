//! The one protocol that finishes every write of a cache: a precompute's
//! new generation, a merge's, and new themes or palette added to the
//! generation in use. With the files in the generation folder, it reads
//! back every file's and chunk's blake3 and compares them with what was
//! written, syncs the folder, writes the sealed manifest (the switch:
//! readers see the new cache from here on) and only then removes what the
//! new manifest no longer names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::integrity::{self, ChunkHash};
use super::manifest::write_sealed;
use super::{
    extras_files, is_data_name, prune_extras, remove_abandoned, remove_if_exists, test_pause, Manifest, DATA_FILES,
    DIFFERENT, MANIFEST, PROGRESS, RUN, SIMILAR, VECTORS,
};

/// What the writer knows it wrote, to compare with what the disk holds.
pub(crate) enum Written {
    /// The blake3 of each chunk's rows as computed (precompute).
    Chunks(Vec<ChunkHash>),
    /// The blake3 of each file as copied in, by name (merge).
    Files(BTreeMap<String, String>),
    /// The themes' and palette's files, each written atomically just
    /// before: nothing to compare beyond what is read from disk.
    Extras,
}

/// What the switch replaces, removed after it.
pub(crate) enum Replaced<'a> {
    /// Every other generation, the run's records and the data files of a
    /// cache of an older format (`legacy`): the switch was to a new
    /// generation. A failure only warns: the cache is complete.
    Generations { legacy: Option<&'a Manifest> },
    /// The extras' files the manifest no longer names, in the generation
    /// in use.
    Extras,
}

/// Finishes the cache `m` describes in `dir`, whose files are in place in
/// its generation folder (the caller holds the lock): records every file's
/// and chunk's blake3 read from disk in `m`, refuses to switch when they
/// differ from `written`, syncs the generation folder, writes `m` as the
/// sealed manifest (atomically, the folder synced after the rename), then
/// removes what it `replaced`.
pub(crate) fn commit(dir: &Path, m: &mut Manifest, written: &Written, replaced: Replaced) -> Result<()> {
    measure(dir, m)?;
    // Nothing is switched on a mismatch: readers still see the previous cache.
    match written {
        Written::Chunks(chunks) => {
            if let Some(c) = (0..chunks.len()).find(|&c| m.integrity.chunks[c] != chunks[c]) {
                bail!(
                    "chunk {c} (starts {:?}) changed on disk after it was written; run the same command again",
                    m.chunk_starts(c)
                );
            }
        }
        Written::Files(files) => {
            for (name, want) in files {
                if m.integrity.files.get(name).map(|f| &f.blake3) != Some(want) {
                    bail!(
                        "{} does not hold the bytes copied into it; nothing was switched, merge again",
                        m.data_dir(dir).join(name).display()
                    );
                }
            }
        }
        Written::Extras => {}
    }
    crate::fs::sync_dir(&m.data_dir(dir))?;
    test_pause("cache:before-commit");
    write_sealed(&dir.join(MANIFEST), m)?;
    match replaced {
        Replaced::Generations { legacy } => remove_replaced(dir, m, legacy),
        Replaced::Extras => prune_extras(dir, m)?,
    }
    Ok(())
}

/// Records in `m` the blake3 of every file in its generation folder and of
/// every chunk of its orderings, read from disk.
fn measure(dir: &Path, m: &mut Manifest) -> Result<()> {
    let data = m.data_dir(dir);
    m.integrity.chunks = (0..m.chunk_count())
        .map(|c| {
            let (offset, len) = m.chunk_bytes(c);
            let hash = |name: &str| {
                integrity::hash_range(&data.join(name), offset, len)
                    .with_context(|| format!("{} is shorter than its manifest says", data.join(name).display()))
            };
            Ok(ChunkHash {
                similar: hash(SIMILAR)?,
                different: hash(DIFFERENT)?,
            })
        })
        .collect::<Result<_>>()?;
    m.integrity.files.clear();
    let names = [VECTORS, SIMILAR, DIFFERENT]
        .map(String::from)
        .into_iter()
        .chain(extras_files(m).into_iter().map(|(name, _)| name));
    for name in names.collect::<Vec<_>>() {
        let hash = integrity::hash_file(&data.join(&name))?;
        m.integrity.files.insert(name, hash);
    }
    Ok(())
}

/// After the switch to `m`'s new generation: removes the other
/// generations, the finished run's records and the files of an older
/// format's cache. Failures only warn: the cache is complete.
fn remove_replaced(dir: &Path, m: &Manifest, legacy: Option<&Manifest>) {
    let data = m.data_dir(dir);
    let mut names: Vec<PathBuf> = vec![data.join(RUN), data.join(PROGRESS)];
    // Format 2 kept every file beside the manifest; only its data goes.
    if let Some(l) = legacy {
        let listed = l.integrity.files.keys().map(String::as_str);
        for name in listed
            .chain(DATA_FILES)
            .filter(|n| is_data_name(n) && !n.starts_with(crate::fs::TEMP_PREFIX))
        {
            names.push(dir.join(name));
        }
    }
    let result = remove_abandoned(dir, Some(m.generation), None)
        .and_then(|_| names.iter().try_for_each(|p| remove_if_exists(p)))
        .and_then(|_| prune_extras(dir, m));
    if let Err(e) = result {
        log::warn!("{e:#} (the cache is complete; the next run removes it)");
    }
}
