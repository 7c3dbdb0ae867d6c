//! The cache format: what `precompute` writes and `render`, `export` and
//! `verify` read.
//!
//! A cache is a directory:
//! - `manifest.json`: versions, parameters, keys, fingerprint, report,
//!   backend and timings. It is written last, atomically: a directory
//!   without it is never taken for a finished cache.
//! - `vectors.bin`: the quantised unit vectors (i16 LE, `included × dim`).
//! - `similar.bin`, `different.bin`: one row per start of `width` indices
//!   into `keys`, little-endian, `index_bytes` (2 or 4) each.
//! - while a run is under way, `run.json` (the pending manifest) and
//!   `progress.log` (finished chunks, one per line, each written only after
//!   its rows reached the disk). A re-run with the same inputs resumes there.
//!
//! A shard cache (`precompute --shard I/N`) has the same files, but its
//! orderings hold only the rows of its contiguous range of starts, which its
//! manifest records; readers refuse it until `merge` has combined the shards.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::corpus::Report;
use crate::fs::write_atomic;
use crate::quantize::Quantized;
use crate::timings::Timings;

/// Bumped when the layout of the files changes.
pub const FORMAT_VERSION: u32 = 1;
/// Bumped when the algorithm's output for the same input changes.
pub const ALGORITHM_VERSION: u32 = 1;

pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const RUN: &str = "run.json";
pub(crate) const PROGRESS: &str = "progress.log";
pub(crate) const VECTORS: &str = "vectors.bin";
/// The file names of the two orderings.
pub const SIMILAR: &str = "similar.bin";
pub const DIFFERENT: &str = "different.bin";

/// The parameters that shape the orderings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub top_k: Option<usize>,
    pub center: bool,
    /// Entries per row: `min(top_k, included − 1)`.
    pub width: usize,
    /// 2 when every index fits u16, else 4.
    pub index_bytes: usize,
    /// Starts per checkpoint.
    pub chunk: usize,
}

/// Where the cache's inputs came from (for the rebuild command).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Inputs {
    pub poems: PathBuf,
    pub embeddings: Option<PathBuf>,
    pub exclude: Option<PathBuf>,
}

/// The manifest: everything needed to trust and read a cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub algorithm_version: u32,
    pub tool_version: String,
    pub params: Params,
    pub embedding_model: String,
    pub dimension: usize,
    /// Poems in the corpus file, included or not.
    pub poems: usize,
    /// Poems that have orderings.
    pub included: usize,
    /// blake3 of the included keys, in order.
    pub keys_hash: String,
    /// blake3 of the quantised vectors, keys, parameters and versions.
    pub fingerprint: String,
    pub inputs: Inputs,
    pub backend: String,
    pub report: Report,
    /// Seconds per phase.
    pub timings: Timings,
    /// Included keys; row `i` belongs to `keys[i]`, and indices point here.
    pub keys: Vec<String>,
    /// Every poem key of the corpus, in input order.
    pub all_keys: Vec<String>,
    /// Set in a shard cache: which shard, and the starts its rows cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
}

/// Shard `index` of `count`: the rows of starts `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
    pub start: usize,
    pub end: usize,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {}/{} (starts {}..{})",
            self.index, self.count, self.start, self.end
        )
    }
}

impl Manifest {
    /// The command that rebuilds this cache.
    pub fn rebuild_command(&self, dir: &Path) -> String {
        let mut cmd = format!("diversity-gpu precompute --poems {}", self.inputs.poems.display());
        if let Some(e) = &self.inputs.embeddings {
            cmd += &format!(" --embeddings {}", e.display());
        }
        if let Some(x) = &self.inputs.exclude {
            cmd += &format!(" --exclude {}", x.display());
        }
        if let Some(k) = self.params.top_k {
            cmd += &format!(" --top-k {k}");
        }
        if self.params.center {
            cmd += " --center";
        }
        if let Some(s) = &self.shard {
            cmd += &format!(" --shard {}/{}", s.index, s.count);
        }
        cmd + &format!(" --out {}", dir.display())
    }

    /// The starts whose rows the ordering files hold (all, or a shard's).
    pub fn starts(&self) -> std::ops::Range<usize> {
        self.shard.map_or(0..self.included, |s| s.start..s.end)
    }

    /// Bytes of one ordering file.
    pub fn ordering_bytes(&self) -> u64 {
        (self.starts().len() * self.params.width * self.params.index_bytes) as u64
    }

    /// What differs from `newer`, in words (empty when the orderings agree).
    pub fn differences(&self, newer: &Manifest) -> Vec<String> {
        let mut out = key_changes(&self.all_keys, &newer.all_keys);
        if self.embedding_model != newer.embedding_model {
            out.push(format!(
                "model {:?} → {:?}",
                self.embedding_model, newer.embedding_model
            ));
        }
        if self.params.top_k != newer.params.top_k || self.params.center != newer.params.center {
            out.push(format!(
                "parameters top-k {:?}, center {} → top-k {:?}, center {}",
                self.params.top_k, self.params.center, newer.params.top_k, newer.params.center
            ));
        }
        if self.format_version != newer.format_version || self.algorithm_version != newer.algorithm_version {
            out.push("cache format or algorithm version".into());
        }
        if out.is_empty() && self.fingerprint != newer.fingerprint {
            out.push("embeddings or exclusions".into());
        }
        out
    }
}

/// "3 poems added (a, b, c), 1 removed (d)" between two key lists.
pub fn key_changes(old: &[String], new: &[String]) -> Vec<String> {
    let o: HashSet<&String> = old.iter().collect();
    let n: HashSet<&String> = new.iter().collect();
    let list = |v: Vec<&String>| {
        let shown: Vec<&str> = v.iter().take(5).map(|s| s.as_str()).collect();
        format!("{}{}", shown.join(", "), if v.len() > 5 { ", …" } else { "" })
    };
    let added: Vec<&String> = new.iter().filter(|k| !o.contains(k)).collect();
    let removed: Vec<&String> = old.iter().filter(|k| !n.contains(k)).collect();
    let mut out = Vec::new();
    if !added.is_empty() {
        out.push(format!("{} poems added ({})", added.len(), list(added)));
    }
    if !removed.is_empty() {
        out.push(format!("{} poems removed ({})", removed.len(), list(removed)));
    }
    out
}

/// blake3 of a key list, in order.
pub fn hash_keys(keys: &[String]) -> String {
    let mut h = blake3::Hasher::new();
    for k in keys {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The fingerprint of everything that decides the orderings.
pub fn fingerprint(keys: &[String], q: &Quantized, params: &Params, model: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&ALGORITHM_VERSION.to_le_bytes());
    h.update(hash_keys(keys).as_bytes());
    h.update(model.as_bytes());
    h.update(&(q.dim as u64).to_le_bytes());
    h.update(bytemuck::cast_slice(&q.data));
    h.update(&(params.width as u64).to_le_bytes());
    h.update(&[params.center as u8, params.index_bytes as u8]);
    h.finalize().to_hex().to_string()
}

/// What opening a cache for writing found.
pub enum Opened {
    /// A finished cache with the same fingerprint: nothing to do.
    Complete(Box<Manifest>),
    /// Ready to write; `done` marks chunks already on disk.
    Writer(Box<CacheWriter>),
}

/// Writes a cache chunk by chunk, so an interrupted run can resume.
pub struct CacheWriter {
    dir: PathBuf,
    pending: Manifest,
    similar: File,
    different: File,
    progress: File,
    /// Chunks already on disk.
    pub done: Vec<bool>,
    /// Whether this run resumed earlier work.
    pub resumed: bool,
}

impl CacheWriter {
    /// Opens `dir` for the run described by `pending`, resuming when a
    /// previous run with the same fingerprint left finished chunks.
    pub fn open(dir: &Path, pending: Manifest, vectors: &Quantized) -> Result<Opened> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create cache directory {}", dir.display()))?;
        if let Ok(old) = read_manifest(&dir.join(MANIFEST)) {
            // The fingerprint covers everything that decides the bytes (not the
            // checkpoint size, which only matters to an unfinished run).
            if old.fingerprint == pending.fingerprint && old.shard == pending.shard {
                return Ok(Opened::Complete(Box::new(old)));
            }
            let mut what = old.differences(&pending);
            if old.shard != pending.shard {
                let describe = |s: &Option<Shard>| s.map_or("the whole cache".into(), |s| s.to_string());
                what.push(format!("{} → {}", describe(&old.shard), describe(&pending.shard)));
            }
            log::warn!("cache {} is stale ({}); rebuilding it", dir.display(), what.join("; "));
        }
        // From here on the directory is not a finished cache.
        remove_if_exists(&dir.join(MANIFEST))?;
        let chunks = pending.starts().len().div_ceil(pending.params.chunk.max(1));
        let resumable = read_manifest(&dir.join(RUN))
            .map(|run| {
                run.fingerprint == pending.fingerprint && run.params == pending.params && run.shard == pending.shard
            })
            .unwrap_or(false);
        let mut done = vec![false; chunks];
        let resumed = resumable && {
            read_progress(&dir.join(PROGRESS), &mut done)?;
            done.iter().any(|&d| d)
        };
        if !resumable {
            write_atomic(&dir.join(VECTORS), bytemuck::cast_slice(&vectors.data))?;
            write_atomic(&dir.join(RUN), &serde_json::to_vec_pretty(&pending)?)?;
            File::create(dir.join(PROGRESS))
                .with_context(|| format!("cannot create {}", dir.join(PROGRESS).display()))?;
        }
        let size = pending.ordering_bytes();
        let open = |name: &str| -> Result<File> {
            let path = dir.join(name);
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(!resumable)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            f.set_len(size)
                .with_context(|| format!("cannot size {} to {size} bytes", path.display()))?;
            Ok(f)
        };
        let similar = open(SIMILAR)?;
        let different = open(DIFFERENT)?;
        let progress = OpenOptions::new().append(true).create(true).open(dir.join(PROGRESS))?;
        Ok(Opened::Writer(Box::new(CacheWriter {
            dir: dir.to_owned(),
            pending,
            similar,
            different,
            progress,
            done,
            resumed,
        })))
    }

    /// The run's parameters.
    pub fn params(&self) -> &Params {
        &self.pending.params
    }

    /// The starts this run computes (all, or its shard's).
    pub fn starts(&self) -> std::ops::Range<usize> {
        self.pending.starts()
    }

    /// Starts covered by chunk `c`.
    pub fn chunk_starts(&self, c: usize) -> std::ops::Range<usize> {
        let (size, all) = (self.pending.params.chunk, self.starts());
        all.start + c * size..(all.start + (c + 1) * size).min(all.end)
    }

    /// Writes chunk `c`'s rows, syncs them, then records the chunk as done.
    pub fn write_chunk(&mut self, c: usize, similar: &[u32], different: &[u32]) -> Result<()> {
        let p = &self.pending.params;
        let row = self.chunk_starts(c).start - self.starts().start;
        let offset = (row * p.width * p.index_bytes) as u64;
        let mut buf = Vec::new();
        for (file, rows, name) in [
            (&self.similar, similar, SIMILAR),
            (&self.different, different, DIFFERENT),
        ] {
            encode(rows, p.index_bytes, &mut buf);
            let mut f: &File = file;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.write_all(&buf))
                .and_then(|_| f.sync_data())
                .with_context(|| format!("cannot write {}", self.dir.join(name).display()))?;
        }
        writeln!(self.progress, "{c}")
            .and_then(|_| self.progress.sync_data())
            .with_context(|| format!("cannot write {}", self.dir.join(PROGRESS).display()))?;
        self.done[c] = true;
        Ok(())
    }

    /// Marks the cache complete: the manifest goes last.
    pub fn finish(self, timings: Timings, backend: String) -> Result<Manifest> {
        if let Some(c) = self.done.iter().position(|d| !d) {
            bail!("internal error: chunk {c} was never written");
        }
        self.similar.sync_all()?;
        self.different.sync_all()?;
        let mut m = self.pending;
        m.timings = timings;
        m.backend = backend;
        write_atomic(&self.dir.join(MANIFEST), &serde_json::to_vec_pretty(&m)?)?;
        remove_if_exists(&self.dir.join(RUN))?;
        remove_if_exists(&self.dir.join(PROGRESS))?;
        Ok(m)
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// Reads finished chunk numbers; a torn last line (no newline) is ignored.
fn read_progress(path: &Path, done: &mut [bool]) -> Result<()> {
    let mut text = String::new();
    match File::open(path) {
        Ok(mut f) => f
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {}", path.display()))?,
        Err(_) => return Ok(()),
    };
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    for line in complete.lines() {
        if let Some(d) = line.trim().parse::<usize>().ok().and_then(|c| done.get_mut(c)) {
            *d = true;
        }
    }
    Ok(())
}

fn encode(rows: &[u32], index_bytes: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(rows.len() * index_bytes);
    if index_bytes == 2 {
        buf.extend(rows.iter().flat_map(|&i| (i as u16).to_le_bytes()));
    } else {
        buf.extend(rows.iter().flat_map(|&i| i.to_le_bytes()));
    }
}

/// The largest index in an ordering file (`None` when empty), in parallel.
fn max_index(bytes: &[u8], index_bytes: usize) -> Option<u32> {
    use rayon::prelude::*;
    bytes
        .par_chunks(1 << 20)
        .filter_map(|c| {
            if index_bytes == 2 {
                c.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).max()
            } else {
                c.chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .max()
            }
        })
        .max()
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a valid manifest", path.display()))
}

/// Which ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Similar,
    Different,
}

/// A finished cache, memory-mapped.
pub struct Cache {
    pub dir: PathBuf,
    pub manifest: Manifest,
    similar: memmap2::Mmap,
    different: memmap2::Mmap,
}

impl Cache {
    /// Opens a finished whole cache, checking versions and file sizes; a
    /// shard is refused with the command that merges it.
    pub fn open(dir: &Path) -> Result<Self> {
        let cache = Self::open_any(dir)?;
        if let Some(s) = &cache.manifest.shard {
            bail!(
                "{} holds only {s} of {} poems; merge the shards first: diversity-gpu merge --out DIR SHARD_DIR…",
                dir.display(),
                cache.manifest.included
            );
        }
        Ok(cache)
    }

    /// Opens a finished cache, whole or shard, with the same checks.
    pub fn open_any(dir: &Path) -> Result<Self> {
        let mpath = dir.join(MANIFEST);
        if !mpath.exists() {
            if dir.join(RUN).exists() {
                bail!(
                    "{} holds an unfinished precompute; run the same precompute command again to resume it",
                    dir.display()
                );
            }
            bail!(
                "{} is not a cache (no {MANIFEST}); create one with `diversity-gpu precompute`",
                dir.display()
            );
        }
        let manifest = read_manifest(&mpath)?;
        if manifest.format_version != FORMAT_VERSION || manifest.algorithm_version != ALGORITHM_VERSION {
            bail!(
                "{} was written by another version (format {}, algorithm {}; this tool reads {FORMAT_VERSION}, {ALGORITHM_VERSION}); rebuild it with: {}",
                dir.display(),
                manifest.format_version,
                manifest.algorithm_version,
                manifest.rebuild_command(dir)
            );
        }
        let map = |name: &str| -> Result<memmap2::Mmap> {
            let path = dir.join(name);
            let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let len = f.metadata()?.len();
            if len != manifest.ordering_bytes() {
                bail!(
                    "{} has {len} bytes, the manifest says {}; the cache is damaged, rebuild it with: {}",
                    path.display(),
                    manifest.ordering_bytes(),
                    manifest.rebuild_command(dir)
                );
            }
            if len == 0 {
                return Ok(memmap2::MmapOptions::new().len(1).map_anon()?.make_read_only()?);
            }
            // SAFETY: the cache is only written by precompute, which never
            // rewrites a finished cache's files in place while it is read.
            unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("cannot map {}", path.display()))
        };
        if manifest.keys.len() != manifest.included {
            bail!(
                "{} lists {} keys for {} poems; the cache is damaged, rebuild it with: {}",
                mpath.display(),
                manifest.keys.len(),
                manifest.included,
                manifest.rebuild_command(dir)
            );
        }
        let cache = Cache {
            similar: map(SIMILAR)?,
            different: map(DIFFERENT)?,
            dir: dir.to_owned(),
            manifest,
        };
        // Every index must name an included poem, so readers can index freely.
        for (name, bytes) in [(SIMILAR, &cache.similar), (DIFFERENT, &cache.different)] {
            if let Some(bad) =
                max_index(bytes, cache.manifest.params.index_bytes).filter(|&m| m as usize >= cache.manifest.included)
            {
                bail!(
                    "{} holds index {bad}, but the cache has {} poems; it is damaged, rebuild it with: {}",
                    dir.join(name).display(),
                    cache.manifest.included,
                    cache.manifest.rebuild_command(dir)
                );
            }
        }
        Ok(cache)
    }

    /// Row `i` of an ordering file (start `manifest.starts().start + i`) as
    /// indices into `manifest.keys`.
    pub fn row(&self, kind: Kind, i: usize, out: &mut Vec<u32>) {
        let p = &self.manifest.params;
        let bytes = match kind {
            Kind::Similar => &self.similar,
            Kind::Different => &self.different,
        };
        let row = &bytes[i * p.width * p.index_bytes..(i + 1) * p.width * p.index_bytes];
        out.clear();
        if p.index_bytes == 2 {
            out.extend(row.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32));
        } else {
            out.extend(
                row.chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
    }

    /// The stored quantised vectors.
    pub fn vectors(&self) -> Result<Quantized> {
        let path = self.dir.join(VECTORS);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let (n, dim) = (self.manifest.included, self.manifest.dimension);
        if bytes.len() != n * dim * 2 {
            bail!("{} has {} bytes, expected {}", path.display(), bytes.len(), n * dim * 2);
        }
        let data = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok(Quantized { n, dim, data })
    }

    /// Refuses the cache when the corpus's keys are not the ones it was built from.
    pub fn check_keys(&self, all_keys: &[String]) -> Result<()> {
        if hash_keys(all_keys) == hash_keys(&self.manifest.all_keys) {
            return Ok(());
        }
        let mut what = key_changes(&self.manifest.all_keys, all_keys);
        if what.is_empty() {
            what.push("the poems were reordered".into());
        }
        bail!(
            "the cache {} is stale: {} since it was computed. Rebuild it with:\n  {}",
            self.dir.display(),
            what.join("; "),
            self.manifest.rebuild_command(&self.dir)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_progress_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("progress.log");
        std::fs::write(&p, "0\n2\n1").unwrap();
        let mut done = vec![false; 3];
        read_progress(&p, &mut done).unwrap();
        assert_eq!(done, vec![true, false, true]);
    }

    #[test]
    fn key_changes_are_described() {
        let old: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let new: Vec<String> = ["a", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(
            key_changes(&old, &new),
            vec!["2 poems added (d, e)", "1 poems removed (b)"]
        );
    }

    #[test]
    fn indices_round_trip_in_both_widths() {
        let mut buf = Vec::new();
        encode(&[1, 65535, 0], 2, &mut buf);
        assert_eq!(buf, vec![1, 0, 255, 255, 0, 0]);
        encode(&[70000], 4, &mut buf);
        assert_eq!(buf, 70000u32.to_le_bytes());
    }
}
