//! Writing a cache: one writer at a time ([`FolderLock`]), every rebuild in a
//! new generation folder beside the last good one, new rows built in
//! `*.partial` files, checkpoints whose rows are hashed as written, and
//! resume or repair that re-verifies every chunk it keeps. The manifest
//! switches to the new generation only when it is complete (the finishing
//! protocol in `finish`); the old one is removed after the switch.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::codec::{encode, encode_i16};
use super::finish::{commit, Replaced, Written};
use super::integrity::{self, ChunkHash};
use super::manifest::{parse_sealed, read_manifest, write_sealed};
use super::reader::verify_files;
use super::{
    generation_dir, generations, lock_dir, new_generation, remove_abandoned, remove_if_exists, Manifest, DIFFERENT,
    FORMAT_VERSION, MANIFEST, PROGRESS, RUN, SIMILAR, VECTORS,
};
use crate::fs::{write_atomic, FolderLock};
use crate::quantize::Quantized;
use crate::timings::Timings;

/// What opening a cache for writing found.
pub enum Opened {
    /// A finished, intact cache with the same fingerprint: nothing to
    /// compute (its poem list and report were brought up to date).
    Complete(Box<Manifest>, FolderLock),
    /// Ready to write; `done` marks chunks already on disk and verified.
    Writer(Box<CacheWriter>),
}

/// Writes a cache chunk by chunk into a new generation, so an interrupted
/// run can resume and the last good cache stays readable. Holds the
/// directory's lock until it is dropped.
pub struct CacheWriter {
    dir: PathBuf,
    /// The new generation's folder.
    data: PathBuf,
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
    /// A cache of an older format found in the folder: its files go after the switch.
    legacy: Option<Manifest>,
    _lock: FolderLock,
}

/// The name a file is built under until the run finishes.
fn partial(name: &str) -> String {
    format!("{name}.partial")
}

/// The manifest found in a cache folder.
enum Current {
    None,
    /// Sealed and of this format.
    Sealed(Manifest),
    /// Another format's (its files are replaced, not reused).
    OtherFormat(Manifest),
    /// Unreadable or damaged; the generation it names, when that can be read.
    Damaged(anyhow::Error, Option<u64>),
}

impl Current {
    fn read(dir: &Path) -> Result<Current> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Current::None),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let unchecked: Option<Manifest> = serde_json::from_slice(&bytes).ok();
        if let Some(m) = unchecked.clone().filter(|m| m.format_version != FORMAT_VERSION) {
            return Ok(Current::OtherFormat(m));
        }
        Ok(match parse_sealed(&path, &bytes) {
            Ok(m) => Current::Sealed(m),
            Err(e) => Current::Damaged(e, unchecked.map(|m| m.generation)),
        })
    }

    /// The generation readers may be using.
    fn generation(&self) -> Option<u64> {
        match self {
            Current::Sealed(m) => Some(m.generation),
            Current::Damaged(_, g) => *g,
            _ => None,
        }
    }
}

/// What to do with the finished cache found.
enum Decision {
    /// It is current: nothing to compute.
    Reuse(Manifest),
    /// Same inputs, damaged files: a new generation from its intact chunks.
    Repair(Manifest),
    /// Other inputs, or none usable: a new generation.
    Rebuild,
}

impl CacheWriter {
    /// Opens `dir` for the run described by `pending`: refuses another
    /// program's folder, locks it, then reuses a finished cache with the
    /// same fingerprint, or prepares a new generation: resuming the
    /// verified chunks of an unfinished run with the same fingerprint,
    /// repairing a damaged cache from its intact chunks, or starting afresh.
    /// The generation readers use is never written.
    pub fn open(dir: &Path, mut pending: Manifest, vectors: &Quantized) -> Result<Opened> {
        let lock = lock_dir(dir)?;
        let current = Current::read(dir)?;
        let decision = decide(dir, &current, &mut pending)?;
        let repair = match decision {
            Decision::Reuse(m) => return Ok(Opened::Complete(Box::new(m), lock)),
            Decision::Repair(old) => Some(old),
            Decision::Rebuild => None,
        };
        let in_use = current.generation();
        let resume = generations(dir)?
            .into_iter()
            .rev()
            .find(|&g| Some(g) != in_use && resumable(&generation_dir(dir, g), &pending));
        let gen = match resume {
            Some(g) => {
                remove_abandoned(dir, in_use, Some(g))?;
                g
            }
            None => {
                let g = new_generation(dir, in_use)?;
                let data = generation_dir(dir, g);
                match &repair {
                    Some(old) => stage_repair(&old.data_dir(dir), &data, old, &pending)?,
                    None => start_afresh(&data, &pending)?,
                }
                g
            }
        };
        pending.generation = gen;
        let data = generation_dir(dir, gen);
        // A run killed after renaming its partial files, before the switch.
        for name in [SIMILAR, DIFFERENT] {
            if !data.join(partial(name)).exists() && data.join(name).exists() {
                std::fs::rename(data.join(name), data.join(partial(name)))
                    .with_context(|| format!("cannot rename {}", data.join(name).display()))?;
            }
        }
        let chunks = verified_chunks(&data, &pending)?;
        let size = pending.ordering_bytes();
        let similar = open_partial(&data, SIMILAR, size)?;
        let different = open_partial(&data, DIFFERENT, size)?;
        let progress = OpenOptions::new()
            .append(true)
            .create(true)
            .open(data.join(PROGRESS))
            .with_context(|| format!("cannot open {}", data.join(PROGRESS).display()))?;
        let legacy = match current {
            Current::OtherFormat(m) => Some(m),
            _ => None,
        };
        Ok(Opened::Writer(Box::new(CacheWriter {
            dir: dir.to_owned(),
            data,
            vectors: encode_i16(&vectors.data),
            pending,
            similar,
            different,
            progress,
            done: chunks.iter().map(Option::is_some).collect(),
            resumed: chunks.iter().any(Option::is_some),
            chunks,
            legacy,
            _lock: lock,
        })))
    }

    /// The manifest the finished cache will have.
    pub fn pending(&self) -> &Manifest {
        &self.pending
    }

    /// The folder of the generation being written (for the extras' files).
    pub fn data_dir(&self) -> &Path {
        &self.data
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
            encode(rows, p.index_bytes, &mut buf);
            *hash = integrity::hash_bytes(&buf);
            let mut f: &File = file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.write_all(&buf))
                .and_then(|_| f.sync_data())
                .with_context(|| format!("cannot write {}", self.data.join(partial(name)).display()))?;
        }
        let [similar, different] = hashes;
        writeln!(self.progress, "{c} {similar} {different}")
            .and_then(|_| self.progress.sync_data())
            .with_context(|| format!("cannot write {}", self.data.join(PROGRESS).display()))?;
        self.chunks[c] = Some(ChunkHash { similar, different });
        self.done[c] = true;
        Ok(())
    }

    /// Completes the generation and switches to it: the orderings synced,
    /// the vectors written, the orderings renamed in, then the finishing
    /// protocol (`finish::commit`): every file's and chunk's hash read back
    /// from disk and compared with the hashes of the rows as computed, the
    /// folder synced, and the sealed manifest written (the switch). Only
    /// then are the older generations and the run's records removed.
    pub fn finish(self, timings: Timings, backend: String) -> Result<Manifest> {
        let chunks: Vec<ChunkHash> = match self.chunks.into_iter().collect::<Option<_>>() {
            Some(c) => c,
            None => bail!("internal error: a chunk was never written"),
        };
        let (dir, data) = (self.dir, self.data);
        for (file, name) in [(self.similar, SIMILAR), (self.different, DIFFERENT)] {
            file.sync_all()
                .with_context(|| format!("cannot write {}", data.join(partial(name)).display()))?;
        }
        write_atomic(&data.join(VECTORS), &self.vectors)?;
        for name in [SIMILAR, DIFFERENT] {
            std::fs::rename(data.join(partial(name)), data.join(name))
                .with_context(|| format!("cannot rename {} into place", data.join(partial(name)).display()))?;
        }
        let mut m = self.pending;
        m.timings = timings;
        m.backend = backend;
        let replaced = Replaced::Generations {
            legacy: self.legacy.as_ref(),
        };
        commit(&dir, &mut m, &Written::Chunks(chunks), replaced)?;
        Ok(m)
    }
}

/// Whether the unfinished run in the generation folder `data` computes
/// what `pending` describes.
fn resumable(data: &Path, pending: &Manifest) -> bool {
    read_manifest(&data.join(RUN))
        .map(|run| run.fingerprint == pending.fingerprint && run.params == pending.params && run.shard == pending.shard)
        .unwrap_or(false)
}

/// Reuse, repair or rebuild the finished cache found. A current, intact one
/// is reused with its poem list and report brought up to date; a damaged
/// one is repaired (its chunks become an unfinished run's, each
/// re-verified); a stale or unreadable one is rebuilt.
fn decide(dir: &Path, current: &Current, pending: &mut Manifest) -> Result<Decision> {
    let old = match current {
        Current::None => return Ok(Decision::Rebuild),
        Current::Damaged(e, _) => {
            log::warn!("{e:#}; rebuilding the cache");
            return Ok(Decision::Rebuild);
        }
        Current::OtherFormat(m) => {
            log::warn!(
                "cache {} has format {} (this tool writes {FORMAT_VERSION}); rebuilding the cache",
                dir.display(),
                m.format_version
            );
            return Ok(Decision::Rebuild);
        }
        Current::Sealed(m) => m,
    };
    if old.fingerprint != pending.fingerprint || old.shard != pending.shard {
        let mut what = old.differences(pending);
        if old.shard != pending.shard {
            let describe = |s: &Option<super::Shard>| s.map_or("the whole cache".into(), |s| s.to_string());
            what.push(format!("{} → {}", describe(&old.shard), describe(&pending.shard)));
        }
        log::warn!("cache {} is stale ({}); rebuilding it", dir.display(), what.join("; "));
        return Ok(Decision::Rebuild);
    }
    if let Err(e) = verify_files(dir, old) {
        log::warn!("{e:#}; repairing the cache");
        // The old chunk hashes describe chunks of the old size.
        pending.params.chunk = old.params.chunk;
        return Ok(Decision::Repair(old.clone()));
    }
    update_poems(dir, old.clone(), pending).map(Decision::Reuse)
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

/// Starts the repair of a finished but damaged cache (generation folder
/// `from`) in the new generation `to`: copies of its orderings as the
/// partial files and its chunk hashes as the progress log. Every chunk is
/// then re-verified and only the damaged ones recomputed.
fn stage_repair(from: &Path, to: &Path, old: &Manifest, pending: &Manifest) -> Result<()> {
    for name in [SIMILAR, DIFFERENT] {
        // A missing file just leaves every chunk to be recomputed.
        let _ = std::fs::copy(from.join(name), to.join(partial(name)));
    }
    let mut log = String::new();
    for (c, h) in old.integrity.chunks.iter().enumerate() {
        log += &format!("{c} {} {}\n", h.similar, h.different);
    }
    write_atomic(&to.join(PROGRESS), log.as_bytes())?;
    write_atomic(&to.join(RUN), &serde_json::to_vec_pretty(pending)?)
}

fn start_afresh(data: &Path, pending: &Manifest) -> Result<()> {
    for name in [SIMILAR, DIFFERENT] {
        remove_if_exists(&data.join(partial(name)))?;
    }
    write_atomic(&data.join(PROGRESS), b"")?;
    write_atomic(&data.join(RUN), &serde_json::to_vec_pretty(pending)?)
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
