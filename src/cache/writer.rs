//! Writing a cache: one writer at a time ([`DirLock`]), new rows built in
//! `*.partial` files and renamed in at the end (so a file a reader has
//! mapped is never written), checkpoints whose rows are hashed as written,
//! and resume or repair that re-verifies every chunk it keeps.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::integrity::{self, ChunkHash};
use super::lock::DirLock;
use super::{
    prune_extras, read_manifest, read_sealed, remove_if_exists, seal_finished, verify_files, write_sealed, Manifest,
    DIFFERENT, MANIFEST, PROGRESS, RUN, SIMILAR, VECTORS,
};
use crate::fs::write_atomic;
use crate::quantize::Quantized;
use crate::timings::Timings;

/// What opening a cache for writing found.
pub enum Opened {
    /// A finished, intact cache with the same fingerprint: nothing to
    /// compute (its poem list and report were brought up to date).
    Complete(Box<Manifest>),
    /// Ready to write; `done` marks chunks already on disk and verified.
    Writer(Box<CacheWriter>),
}

/// Writes a cache chunk by chunk, so an interrupted run can resume. Holds
/// the directory's lock until it is dropped.
pub struct CacheWriter {
    dir: PathBuf,
    pending: Manifest,
    vectors: Vec<u8>,
    similar: File,
    different: File,
    progress: File,
    chunks: Vec<Option<ChunkHash>>,
    /// Chunks already on disk.
    pub done: Vec<bool>,
    /// Whether this run resumed earlier work.
    pub resumed: bool,
    _lock: DirLock,
}

/// The name a file is built under until the run finishes.
fn partial(name: &str) -> String {
    format!("{name}.partial")
}

impl CacheWriter {
    /// Opens `dir` for the run described by `pending`: locks it, then
    /// reuses a finished cache with the same fingerprint (repairing its
    /// damaged chunks), resumes the verified chunks of an unfinished run
    /// with the same fingerprint, or starts afresh.
    pub fn open(dir: &Path, mut pending: Manifest, vectors: &Quantized) -> Result<Opened> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create cache directory {}", dir.display()))?;
        let lock = DirLock::acquire(dir)?;
        if let Some(m) = reuse_finished(dir, &mut pending)? {
            return Ok(Opened::Complete(Box::new(m)));
        }
        // From here on the directory is not a finished cache.
        remove_if_exists(&dir.join(MANIFEST))?;
        let resumable = read_manifest(&dir.join(RUN))
            .map(|run| {
                run.fingerprint == pending.fingerprint && run.params == pending.params && run.shard == pending.shard
            })
            .unwrap_or(false);
        if !resumable {
            start_afresh(dir, &pending)?;
        }
        let chunks = verified_chunks(dir, &pending)?;
        let size = pending.ordering_bytes();
        let similar = open_partial(dir, SIMILAR, size)?;
        let different = open_partial(dir, DIFFERENT, size)?;
        let progress = OpenOptions::new()
            .append(true)
            .create(true)
            .open(dir.join(PROGRESS))
            .with_context(|| format!("cannot open {}", dir.join(PROGRESS).display()))?;
        Ok(Opened::Writer(Box::new(CacheWriter {
            dir: dir.to_owned(),
            vectors: bytemuck::cast_slice(&vectors.data).to_vec(),
            pending,
            similar,
            different,
            progress,
            done: chunks.iter().map(Option::is_some).collect(),
            resumed: chunks.iter().any(Option::is_some),
            chunks,
            _lock: lock,
        })))
    }

    /// The manifest the finished cache will have.
    pub fn pending(&self) -> &Manifest {
        &self.pending
    }

    /// The run's parameters.
    pub fn params(&self) -> &super::Params {
        &self.pending.params
    }

    /// The starts this run computes (all, or its shard's).
    pub fn starts(&self) -> std::ops::Range<usize> {
        self.pending.starts()
    }

    /// Starts covered by chunk `c`.
    pub fn chunk_starts(&self, c: usize) -> std::ops::Range<usize> {
        self.pending.chunk_starts(c)
    }

    /// Writes chunk `c`'s rows, syncs them, then records the chunk and the
    /// blake3 of its rows as done.
    pub fn write_chunk(&mut self, c: usize, similar: &[u32], different: &[u32]) -> Result<()> {
        let p = &self.pending.params;
        let (offset, _) = self.pending.chunk_bytes(c);
        let mut buf = Vec::new();
        let mut hashes = [String::new(), String::new()];
        for ((file, rows, name), hash) in [
            (&self.similar, similar, SIMILAR),
            (&self.different, different, DIFFERENT),
        ]
        .into_iter()
        .zip(&mut hashes)
        {
            super::encode(rows, p.index_bytes, &mut buf);
            *hash = integrity::hash_bytes(&buf);
            let mut f: &File = file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.write_all(&buf))
                .and_then(|_| f.sync_data())
                .with_context(|| format!("cannot write {}", self.dir.join(partial(name)).display()))?;
        }
        let [similar, different] = hashes;
        writeln!(self.progress, "{c} {similar} {different}")
            .and_then(|_| self.progress.sync_data())
            .with_context(|| format!("cannot write {}", self.dir.join(PROGRESS).display()))?;
        self.chunks[c] = Some(ChunkHash { similar, different });
        self.done[c] = true;
        Ok(())
    }

    /// Marks the cache complete: the vectors, then the orderings renamed
    /// in, then the manifest with every file's and chunk's hash, read back
    /// from disk and compared with the hashes of the rows as computed.
    pub fn finish(self, timings: Timings, backend: String) -> Result<Manifest> {
        let chunks: Vec<ChunkHash> = match self.chunks.into_iter().collect::<Option<_>>() {
            Some(c) => c,
            None => bail!("internal error: a chunk was never written"),
        };
        let dir = self.dir;
        for (file, name) in [(self.similar, SIMILAR), (self.different, DIFFERENT)] {
            file.sync_all()
                .with_context(|| format!("cannot write {}", dir.join(partial(name)).display()))?;
        }
        write_atomic(&dir.join(VECTORS), &self.vectors)?;
        for name in [SIMILAR, DIFFERENT] {
            std::fs::rename(dir.join(partial(name)), dir.join(name))
                .with_context(|| format!("cannot rename {} into place", dir.join(partial(name)).display()))?;
        }
        let mut m = self.pending;
        m.timings = timings;
        m.backend = backend;
        seal_finished(&dir, &mut m)?;
        if let Some(c) = (0..chunks.len()).find(|&c| m.integrity.chunks[c] != chunks[c]) {
            // The manifest just written describes the bytes on disk, so a
            // reader would trust them; they are not the rows computed.
            remove_if_exists(&dir.join(MANIFEST))?;
            bail!(
                "chunk {c} (starts {:?}) changed on disk after it was written; run the same command again",
                m.chunk_starts(c)
            );
        }
        remove_if_exists(&dir.join(RUN))?;
        remove_if_exists(&dir.join(PROGRESS))?;
        prune_extras(&dir, &m)?;
        Ok(m)
    }
}

/// The finished cache in `dir` when it has `pending`'s fingerprint and is
/// intact, with its poem list and report brought up to date. A damaged one
/// is staged for repair (its chunks become an unfinished run's chunks, each
/// re-verified); a stale or unreadable one is left to be rebuilt.
fn reuse_finished(dir: &Path, pending: &mut Manifest) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    if !path.exists() {
        return Ok(None);
    }
    let old = match read_sealed(&path) {
        Ok(m) => m,
        Err(e) => {
            log::warn!("{e:#}; rebuilding the cache");
            return Ok(None);
        }
    };
    if old.fingerprint != pending.fingerprint || old.shard != pending.shard {
        let mut what = old.differences(pending);
        if old.shard != pending.shard {
            let describe = |s: &Option<super::Shard>| s.map_or("the whole cache".into(), |s| s.to_string());
            what.push(format!("{} → {}", describe(&old.shard), describe(&pending.shard)));
        }
        log::warn!("cache {} is stale ({}); rebuilding it", dir.display(), what.join("; "));
        return Ok(None);
    }
    if let Err(e) = verify_files(dir, &old) {
        log::warn!("{e:#}; repairing the cache");
        // The old chunk hashes describe chunks of the old size.
        pending.params.chunk = old.params.chunk;
        stage_repair(dir, &old, pending)?;
        return Ok(None);
    }
    update_poems(dir, old, pending).map(Some)
}

/// Orderings depend only on the included poems, so a corpus that gained or
/// lost poems without embeddings needs no new rows, only a manifest that
/// lists them: render then agrees that the cache is current.
fn update_poems(dir: &Path, mut old: Manifest, pending: &Manifest) -> Result<Manifest> {
    let changed = old.poems_changed(&pending.all_keys);
    if changed.is_empty() && old.report == pending.report && old.inputs == pending.inputs {
        return Ok(old);
    }
    if !changed.is_empty() {
        log::info!(
            "the orderings are up to date; recording the poem list ({})",
            changed.join("; ")
        );
    }
    old.all_keys = pending.all_keys.clone();
    old.poems = pending.poems;
    old.report = pending.report.clone();
    old.inputs = pending.inputs.clone();
    write_sealed(&dir.join(MANIFEST), &mut old)?;
    Ok(old)
}

/// Turns a finished but damaged cache into an unfinished run: copies of its
/// orderings as the partial files (copies, so a reader's mapping of the old
/// files is untouched) and its chunk hashes as the progress log. Every
/// chunk is then re-verified and only the damaged ones recomputed.
fn stage_repair(dir: &Path, old: &Manifest, pending: &Manifest) -> Result<()> {
    for name in [SIMILAR, DIFFERENT] {
        remove_if_exists(&dir.join(partial(name)))?;
        // A missing file just leaves every chunk to be recomputed.
        let _ = std::fs::copy(dir.join(name), dir.join(partial(name)));
    }
    let mut log = String::new();
    for (c, h) in old.integrity.chunks.iter().enumerate() {
        log += &format!("{c} {} {}\n", h.similar, h.different);
    }
    write_atomic(&dir.join(PROGRESS), log.as_bytes())?;
    write_atomic(&dir.join(RUN), &serde_json::to_vec_pretty(pending)?)
}

fn start_afresh(dir: &Path, pending: &Manifest) -> Result<()> {
    for name in [SIMILAR, DIFFERENT] {
        remove_if_exists(&dir.join(partial(name)))?;
    }
    write_atomic(&dir.join(PROGRESS), b"")?;
    write_atomic(&dir.join(RUN), &serde_json::to_vec_pretty(pending)?)
}

/// Opens a partial file for writing at its final size, keeping its bytes.
fn open_partial(dir: &Path, name: &str, size: u64) -> Result<File> {
    let path = dir.join(partial(name));
    let f = crate::fs::open_keeping(&path)?;
    if f.metadata()?.len() != size {
        f.set_len(size)
            .with_context(|| format!("cannot size {} to {size} bytes", path.display()))?;
    }
    Ok(f)
}

/// The chunks recorded in `progress.log` whose bytes in the partial files
/// still hash to what was recorded; any other chunk is recomputed.
fn verified_chunks(dir: &Path, pending: &Manifest) -> Result<Vec<Option<ChunkHash>>> {
    let count = pending.chunk_count();
    let recorded = read_progress(&dir.join(PROGRESS), count)?;
    let mut out = vec![None; count];
    for (c, h) in recorded {
        let r = pending.chunk_starts(c);
        let (offset, len) = pending.chunk_bytes(c);
        let intact = [(SIMILAR, &h.similar), (DIFFERENT, &h.different)]
            .iter()
            .all(|(name, want)| integrity::hash_range(&dir.join(partial(name)), offset, len).as_ref() == Some(*want));
        if intact {
            out[c] = Some(h);
        } else {
            log::warn!(
                "chunk {c} (starts {}..{}) does not match the hash {} recorded for it; recomputing it",
                r.start,
                r.end,
                PROGRESS
            );
        }
    }
    Ok(out)
}

/// Reads `chunk similar-hash different-hash` lines; the last line for a
/// chunk wins, and a torn or malformed line is ignored.
fn read_progress(path: &Path, chunks: usize) -> Result<HashMap<usize, ChunkHash>> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => f
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?,
        Err(_) => return Ok(HashMap::new()),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    let mut out = HashMap::new();
    for line in complete.lines() {
        let mut parts = line.split_ascii_whitespace();
        if let (Some(Ok(c)), Some(s), Some(d), None) = (
            parts.next().map(str::parse::<usize>),
            parts.next(),
            parts.next(),
            parts.next(),
        ) {
            if c < chunks {
                out.insert(
                    c,
                    ChunkHash {
                        similar: s.into(),
                        different: d.into(),
                    },
                );
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_and_malformed_progress_lines_are_ignored_and_the_last_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("progress.log");
        std::fs::write(&p, "0 a b\n2 c d\n1\n9 e f\n0 g h\n1 i j").unwrap();
        let got = read_progress(&p, 3).unwrap();
        let mut keys: Vec<_> = got.keys().copied().collect();
        keys.sort();
        assert_eq!(keys, vec![0, 2]);
        assert_eq!(got[&0].similar, "g");
    }
}
