//! The cache format: what `precompute` writes and `render`, `export` and
//! `verify` read.
//!
//! A cache is a directory:
//! - `manifest.json`: the pointer. Versions, parameters, keys, fingerprint,
//!   report, backend, timings, the generation folder that holds the data
//!   and the blake3 of every file and checkpoint chunk, sealed by a hash of
//!   its own bytes (`manifest_hash`). It is written last, atomically, and
//!   the folder synced: a directory without it is never taken for a
//!   finished cache, and writing it is the switch from one generation to
//!   the next.
//! - `gen-<n>/`: a generation, the folder of data files below. A rebuild
//!   writes a new generation beside the one the manifest names, switches
//!   the manifest to it when it is complete, and only then removes the old
//!   one: a rebuild that fails or is killed leaves the last good cache
//!   readable and untouched, and the next run resumes.
//! - `vectors.bin`: the quantised unit vectors (i16 LE, `included × dim`).
//! - `similar.bin`, `different.bin`: one row per start of `width` indices
//!   into `keys`, little-endian, `index_bytes` (2 or 4) each.
//! - `themes-<id>.bin` (when the run had themes): every theme's similar row,
//!   then every theme's different row, `theme_width` indices each, same
//!   encoding; `extra-vectors-<id>.bin`: the themes' and the palette's
//!   quantised vectors. `<id>` begins the extras fingerprint.
//! - `lock`: the writer's lock file (see [`lock`]).
//! - while a run is under way, in its generation folder, `run.json` (the
//!   pending manifest),
//!   `similar.bin.partial` and `different.bin.partial` (the rows being
//!   built) and `progress.log` (finished chunks with the blake3 of their
//!   rows, each line written only after the rows reached the disk). A re-run
//!   with the same inputs resumes there, re-verifying every chunk it keeps.
//!
//! Every reader opens each file once, checks the hash of the bytes it
//! mapped and uses only those bytes (a snapshot), so a damaged cache is
//! refused, never read, and a writer switching generations meanwhile
//! cannot mix two caches (the reader retries on the new manifest).
//!
//! A shard cache (`precompute --shard I/N`) has the same files, but its
//! orderings hold only the rows of its contiguous range of starts, which its
//! manifest records; readers refuse it until `merge` has combined the shards.

pub mod integrity;
pub mod lock;
mod writer;

pub use integrity::{ChunkHash, FileHash};
pub use writer::{CacheWriter, Opened};

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::corpus::Report;
use crate::fs::write_atomic;
use crate::quantize::Quantized;
use crate::timings::Timings;

/// Bumped when the layout of the files changes (3: the data files live in
/// generation folders).
pub const FORMAT_VERSION: u32 = 3;
/// Bumped when the algorithm's output for the same input changes.
pub const ALGORITHM_VERSION: u32 = 1;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Generation folders are named `gen-<n>`.
pub const GENERATION_PREFIX: &str = "gen-";
pub(crate) const RUN: &str = "run.json";
pub(crate) const PROGRESS: &str = "progress.log";
/// The quantised vectors' file name.
pub const VECTORS: &str = "vectors.bin";
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub themes: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theme_embeddings: Option<PathBuf>,
    /// `None` with colours: the default palette.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette_embeddings: Option<PathBuf>,
    /// No palette was asked for (`--no-palette`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_palette: bool,
}

/// The manifest: everything needed to trust and read a cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// blake3 of this file's bytes with this field zeroed (see
    /// [`integrity::seal`]); first, so it is found without parsing.
    #[serde(default)]
    pub manifest_hash: String,
    pub format_version: u32,
    /// The generation folder (`gen-<n>`) that holds this cache's files.
    #[serde(default)]
    pub generation: u64,
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
    /// blake3 of `all_keys`, in order.
    #[serde(default)]
    pub all_keys_hash: String,
    /// blake3 of the quantised vectors, keys, parameters and versions.
    pub fingerprint: String,
    pub inputs: Inputs,
    pub backend: String,
    pub report: Report,
    /// The hashes of the files and checkpoint chunks.
    #[serde(default)]
    pub integrity: Integrity,
    /// Seconds per phase.
    pub timings: Timings,
    /// Included keys; row `i` belongs to `keys[i]`, and indices point here.
    pub keys: Vec<String>,
    /// Every poem key of the corpus, in input order.
    pub all_keys: Vec<String>,
    /// Set in a shard cache: which shard, and the starts its rows cover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Theme names; their orderings are in [`themes_file`], in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub themes: Vec<String>,
    /// What each theme's vector was embedded from (shown on its pages).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub theme_texts: Vec<String>,
    /// Indices per theme ordering: every included poem, cut by `--top-k`.
    #[serde(default)]
    pub theme_width: usize,
    /// The palette the colours index.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub palette: Vec<crate::palette::Color>,
    /// Each included poem's colour, an index into `palette` (empty without one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub colors: Vec<u16>,
    /// blake3 of the themes and the palette ([`extras_fingerprint`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub extras_fingerprint: String,
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

/// What every reader checks: the blake3 of each file and of each chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Integrity {
    /// File name → size and blake3.
    pub files: BTreeMap<String, FileHash>,
    /// Per checkpoint chunk (`params.chunk` starts), the blake3 of its rows.
    pub chunks: Vec<ChunkHash>,
}

impl Manifest {
    /// The folder of this cache's data files: its generation's.
    pub fn data_dir(&self, dir: &Path) -> PathBuf {
        generation_dir(dir, self.generation)
    }

    /// The command that rebuilds this cache, with absolute paths so that it
    /// works run verbatim from any folder (paths recorded relative, by older
    /// versions, are taken from the current folder).
    pub fn rebuild_command(&self, dir: &Path) -> String {
        let abs = |p: &Path| {
            p.canonicalize()
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let mut cmd = format!("diversity-gpu precompute --poems {}", abs(&self.inputs.poems).display());
        if let Some(e) = &self.inputs.embeddings {
            cmd += &format!(" --embeddings {}", abs(e).display());
        }
        if let Some(x) = &self.inputs.exclude {
            cmd += &format!(" --exclude {}", abs(x).display());
        }
        for (flag, path) in [
            ("--themes", &self.inputs.themes),
            ("--theme-embeddings", &self.inputs.theme_embeddings),
            ("--palette", &self.inputs.palette),
            ("--palette-embeddings", &self.inputs.palette_embeddings),
        ] {
            if let Some(p) = path {
                cmd += &format!(" {flag} {}", abs(p).display());
            }
        }
        if self.inputs.no_palette {
            cmd += " --no-palette";
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
        cmd + &format!(" --out {}", abs(dir).display())
    }

    /// The starts whose rows the ordering files hold (all, or a shard's).
    pub fn starts(&self) -> std::ops::Range<usize> {
        self.shard.map_or(0..self.included, |s| s.start..s.end)
    }

    /// Bytes of one ordering file.
    pub fn ordering_bytes(&self) -> u64 {
        (self.starts().len() * self.params.width * self.params.index_bytes) as u64
    }

    /// Bytes of the themes' orderings file.
    pub fn theme_bytes(&self) -> u64 {
        (2 * self.themes.len() * self.theme_width * self.params.index_bytes) as u64
    }

    /// Checkpoint chunks of `params.chunk` starts in [`Self::starts`].
    pub fn chunk_count(&self) -> usize {
        self.starts().len().div_ceil(self.params.chunk.max(1))
    }

    /// Starts covered by chunk `c`.
    pub fn chunk_starts(&self, c: usize) -> std::ops::Range<usize> {
        let (size, all) = (self.params.chunk, self.starts());
        all.start + c * size..(all.start + (c + 1) * size).min(all.end)
    }

    /// Byte offset and length of chunk `c`'s rows in an ordering file.
    pub fn chunk_bytes(&self, c: usize) -> (u64, usize) {
        let row = self.params.width * self.params.index_bytes;
        let r = self.chunk_starts(c);
        (((r.start - self.starts().start) * row) as u64, r.len() * row)
    }

    /// How the corpus's poem keys differ from the ones this cache was built
    /// for, in words; empty when they agree. The one definition of "stale"
    /// for a finished cache: render refuses it, precompute updates it.
    pub fn poems_changed(&self, all_keys: &[String]) -> Vec<String> {
        if hash_keys(all_keys) == hash_keys(&self.all_keys) {
            return Vec::new();
        }
        let what = key_changes(&self.all_keys, all_keys);
        if what.is_empty() {
            return vec!["the poems were reordered".into()];
        }
        what
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

    /// What differs from `newer` in the themes and the palette, in words.
    pub fn extras_differences(&self, newer: &Manifest) -> Vec<String> {
        let mut out = Vec::new();
        if self.themes != newer.themes {
            out.push(format!("themes {:?} → {:?}", self.themes, newer.themes));
        }
        if self.palette != newer.palette {
            let names = |p: &[crate::palette::Color]| p.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
            out.push(format!(
                "palette {:?} → {:?}",
                names(&self.palette),
                names(&newer.palette)
            ));
        }
        if out.is_empty() {
            out.push("the themes' or palette's vectors".into());
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
        out.push(format!(
            "{} added ({})",
            crate::plural::count(added.len(), "poem", "poems"),
            list(added)
        ));
    }
    if !removed.is_empty() {
        out.push(format!(
            "{} removed ({})",
            crate::plural::count(removed.len(), "poem", "poems"),
            list(removed)
        ));
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

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

pub(crate) fn encode(rows: &[u32], index_bytes: usize, buf: &mut Vec<u8>) {
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

/// The fingerprint of the themes and the palette (names, colours and
/// quantised vectors); empty without either. It is kept apart from the
/// orderings' fingerprint, so that new themes or a new palette recompute
/// only themselves.
pub fn extras_fingerprint(
    themes: Option<(&[String], &Quantized)>,
    palette: Option<(&[crate::palette::Color], &Quantized)>,
) -> String {
    if themes.is_none() && palette.is_none() {
        return String::new();
    }
    let mut h = blake3::Hasher::new();
    h.update(&ALGORITHM_VERSION.to_le_bytes());
    if let Some((names, q)) = themes {
        h.update(b"themes");
        h.update(hash_keys(names).as_bytes());
        h.update(bytemuck::cast_slice(&q.data));
    }
    if let Some((colors, q)) = palette {
        h.update(b"palette");
        for c in colors {
            h.update(hash_keys(&[c.name.clone(), c.hex.clone()]).as_bytes());
        }
        h.update(bytemuck::cast_slice(&q.data));
    }
    h.finalize().to_hex().to_string()
}

/// The extras' files are named by the extras fingerprint: new ones are
/// written beside the old, the manifest switches to them atomically, and
/// only then do the old ones go.
fn extras_id(m: &Manifest) -> &str {
    &m.extras_fingerprint[..16.min(m.extras_fingerprint.len())]
}

/// The file of the themes' orderings: every theme's similar row, then every
/// theme's different row, `theme_width` indices each.
pub fn themes_file(m: &Manifest) -> String {
    format!("themes-{}.bin", extras_id(m))
}

/// The file of the themes' and then the palette's quantised vectors.
pub fn extra_vectors_file(m: &Manifest) -> String {
    format!("extra-vectors-{}.bin", extras_id(m))
}

/// Writes the themes' orderings and the themes' and palette's vectors of
/// the cache that `m` will describe into its generation folder `data`,
/// atomically, before its manifest.
pub fn write_extras(
    data: &Path,
    m: &Manifest,
    similar: &[u32],
    different: &[u32],
    themes: Option<&Quantized>,
    palette: Option<&Quantized>,
) -> Result<()> {
    if !m.themes.is_empty() {
        let mut bytes = Vec::new();
        let mut buf = Vec::new();
        for rows in [similar, different] {
            encode(rows, m.params.index_bytes, &mut buf);
            bytes.extend_from_slice(&buf);
        }
        write_atomic(&data.join(themes_file(m)), &bytes)?;
    }
    let vectors: Vec<i16> = themes
        .iter()
        .chain(palette.iter())
        .flat_map(|q| q.data.iter().copied())
        .collect();
    if !vectors.is_empty() {
        write_atomic(&data.join(extra_vectors_file(m)), bytemuck::cast_slice(&vectors))?;
    }
    Ok(())
}

/// Removes the extras' files that the finished manifest `m` does not name
/// from its generation folder.
pub fn prune_extras(dir: &Path, m: &Manifest) -> Result<()> {
    let data = m.data_dir(dir);
    let keep = [themes_file(m), extra_vectors_file(m)];
    let entries = std::fs::read_dir(&data).with_context(|| format!("cannot read {}", data.display()))?;
    for name in entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()) {
        let ours = (name.starts_with("themes-") || name.starts_with("extra-vectors-")) && name.ends_with(".bin");
        if ours && !keep.contains(&name) {
            remove_if_exists(&data.join(&name))?;
        }
    }
    Ok(())
}

/// Gives a finished cache (`old`) the themes, palette and colours of
/// `new`, whose files [`write_extras`] wrote into `old`'s generation folder
/// beside the old ones; its orderings stay. The manifest is replaced
/// atomically (sealed, with every file's hash), then the old extras' files
/// go. The caller holds the directory's lock.
pub fn update_extras(dir: &Path, mut old: Manifest, new: &Manifest, timings: Timings) -> Result<Manifest> {
    old.themes = new.themes.clone();
    old.theme_texts = new.theme_texts.clone();
    old.theme_width = new.theme_width;
    old.palette = new.palette.clone();
    old.colors = new.colors.clone();
    old.inputs = new.inputs.clone();
    old.extras_fingerprint = new.extras_fingerprint.clone();
    old.timings = timings;
    seal_finished(dir, &mut old)?;
    prune_extras(dir, &old)?;
    Ok(old)
}

/// The folder of generation `n` in the cache `dir`.
pub fn generation_dir(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{GENERATION_PREFIX}{n}"))
}

/// `n` when `name` is `gen-<n>`.
fn generation_number(name: &str) -> Option<u64> {
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

/// Removes every generation folder of `dir` but `keep`. Only a writer
/// holding the lock calls it: after the switch to `keep`, or on abandoned
/// runs no manifest names.
pub fn prune_generations(dir: &Path, keep: u64) -> Result<()> {
    for g in generations(dir)? {
        if g != keep {
            let path = generation_dir(dir, g);
            std::fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

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
            lock::LOCK if !is_dir && is_our_lock(&e.path()) => marked = true,
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

/// The names of a generation's files (and of format 2's, beside the
/// manifest).
fn is_data_name(name: &str) -> bool {
    let fixed = [
        VECTORS,
        SIMILAR,
        DIFFERENT,
        RUN,
        PROGRESS,
        "similar.bin.partial",
        "different.bin.partial",
    ];
    fixed.contains(&name)
        || name.starts_with(crate::fs::TEMP_PREFIX)
        || ((name.starts_with("themes-") || name.starts_with("extra-vectors-")) && name.ends_with(".bin"))
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
/// files, and takes its lock.
pub(crate) fn lock_dir(dir: &Path) -> Result<lock::DirLock> {
    refuse_foreign(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create cache directory {}", dir.display()))?;
    let lock = lock::DirLock::acquire(dir)?;
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

/// The generation the manifest in `dir` names, read without checks (to
/// tell which generation folder is in use).
pub(crate) fn named_generation(dir: &Path) -> Option<u64> {
    read_manifest(&dir.join(MANIFEST))
        .ok()
        .filter(|m| m.format_version == FORMAT_VERSION)
        .map(|m| m.generation)
}

/// Removes the generation folders of `dir` that are neither `in_use` (the
/// one the manifest names) nor `keep`: abandoned runs. The caller holds
/// the lock.
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

/// After the switch to `m`'s generation: removes the other generations,
/// the finished run's records and the files of an older format's cache.
/// Failures only warn: the cache is complete.
pub(crate) fn after_commit(dir: &Path, m: &Manifest, legacy: Option<&Manifest>) {
    let data = m.data_dir(dir);
    let mut names: Vec<PathBuf> = vec![data.join(RUN), data.join(PROGRESS)];
    // Format 2 kept every file beside the manifest; only its data goes.
    if let Some(l) = legacy {
        let listed = l.integrity.files.keys().map(String::as_str);
        let fixed = [
            VECTORS,
            SIMILAR,
            DIFFERENT,
            RUN,
            PROGRESS,
            "similar.bin.partial",
            "different.bin.partial",
        ];
        for name in listed
            .chain(fixed)
            .filter(|n| is_data_name(n) && !n.starts_with(crate::fs::TEMP_PREFIX))
        {
            names.push(dir.join(name));
        }
    }
    let result = prune_generations(dir, m.generation)
        .and_then(|_| names.iter().try_for_each(|p| remove_if_exists(p)))
        .and_then(|_| prune_extras(dir, m));
    if let Err(e) = result {
        log::warn!("{e:#} (the cache is complete; the next run removes it)");
    }
}

/// A pause at a named point, for tests that make a race deterministic:
/// when `DIVERSITY_TEST_HOLD` names `point`, the process says so on stderr
/// and waits for a line on stdin (once per process).
pub fn test_pause(point: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("DIVERSITY_TEST_HOLD").is_ok_and(|p| p == point)
        && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        eprintln!("test pause: {point}");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
}

/// Reads a manifest without checking its seal (for `run.json`, which only
/// decides whether to resume; every chunk it lets through is re-verified).
pub(crate) fn read_manifest(path: &Path) -> Result<Manifest> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a valid manifest", path.display()))
}

/// Parses a finished cache's manifest `bytes` (read from `path`) and checks
/// everything it says about itself: its seal, its key hashes and its key count.
pub(crate) fn parse_sealed(path: &Path, bytes: &[u8]) -> Result<Manifest> {
    integrity::check_seal(path, bytes)?;
    let m: Manifest =
        serde_json::from_slice(bytes).with_context(|| format!("{} is not a valid manifest", path.display()))?;
    check_manifest(path, &m)?;
    Ok(m)
}

fn check_manifest(path: &Path, m: &Manifest) -> Result<()> {
    if hash_keys(&m.keys) != m.keys_hash || hash_keys(&m.all_keys) != m.all_keys_hash {
        bail!("{}: its key list does not match its key hash", path.display());
    }
    if m.keys.len() != m.included {
        bail!(
            "{} lists {} keys for {} poems",
            path.display(),
            m.keys.len(),
            m.included
        );
    }
    let chunks = m.chunk_count();
    if m.integrity.chunks.len() != chunks {
        bail!(
            "{} records {} chunk hashes for {chunks} chunks",
            path.display(),
            m.integrity.chunks.len()
        );
    }
    Ok(())
}

/// Records in `m` the blake3 of every file in its generation folder and of
/// every chunk of its orderings, read from disk.
pub(crate) fn measure(dir: &Path, m: &mut Manifest) -> Result<()> {
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

/// The switch: syncs `m`'s generation folder, then writes `m` as the
/// sealed manifest (atomically, the folder synced after the rename).
pub(crate) fn commit(dir: &Path, m: &mut Manifest) -> Result<()> {
    crate::fs::sync_dir(&m.data_dir(dir))?;
    test_pause("cache:before-commit");
    write_sealed(&dir.join(MANIFEST), m)
}

/// [`measure`] then [`commit`]: the last step of a writer that keeps the
/// generation (new themes or palette).
pub fn seal_finished(dir: &Path, m: &mut Manifest) -> Result<()> {
    measure(dir, m)?;
    commit(dir, m)
}

/// Writes `m` as `path`, with its key hashes and seal filled in.
pub(crate) fn write_sealed(path: &Path, m: &mut Manifest) -> Result<()> {
    m.keys_hash = hash_keys(&m.keys);
    m.all_keys_hash = hash_keys(&m.all_keys);
    m.manifest_hash = integrity::UNSEALED.into();
    let (bytes, hash) = integrity::seal(serde_json::to_vec_pretty(m)?);
    write_atomic(path, &bytes)?;
    m.manifest_hash = hash;
    Ok(())
}

/// One verified file: opened once, mapped, and its size and blake3 checked
/// on the mapped bytes, which are the only bytes used afterwards.
struct Snapshot(Option<memmap2::Mmap>);

impl Snapshot {
    fn bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

/// Maps `name` of the generation folder `data` once and checks it against
/// `m` (which says it has `size` bytes).
fn snapshot(dir: &Path, data: &Path, m: &Manifest, name: &str, size: u64) -> Result<Snapshot> {
    let path = data.join(name);
    let Some(want) = m.integrity.files.get(name) else {
        bail!("{} does not list {name}", dir.join(MANIFEST).display());
    };
    if want.bytes != size {
        bail!(
            "{} should have {size} bytes, its manifest says {}",
            path.display(),
            want.bytes
        );
    }
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!("{} is missing", path.display()),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    let len = f
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if len != want.bytes {
        bail!("{} has {len} bytes, the manifest says {}", path.display(), want.bytes);
    }
    let map = if len == 0 {
        None
    } else {
        // SAFETY: the mapping is sound as long as nobody changes the file
        // while it is mapped. This tool never writes a finished
        // generation's file in place: a rebuild writes a new generation
        // (new files) and removes the old one after the switch, which
        // leaves a mapping's inode intact. Only another program writing
        // into the cache could break this, and merge, which copies from
        // these bytes, checks what it copied against the hashes again.
        Some(unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("cannot map {}", path.display()))?)
    };
    let snap = Snapshot(map);
    if integrity::hash_bytes(snap.bytes()) != want.blake3 {
        bail!("{} does not match its blake3 in the manifest", path.display());
    }
    Ok(snap)
}

/// Checks every file the manifest lists against its size and blake3 (for
/// a writer deciding whether a finished cache needs repair).
pub(crate) fn verify_files(dir: &Path, m: &Manifest) -> Result<()> {
    Snapshots::take(dir, m).map(drop)
}

/// The verified bytes of every file of a cache.
struct Snapshots {
    vectors: Snapshot,
    similar: Snapshot,
    different: Snapshot,
    themes: Snapshot,
    extra_vectors: Snapshot,
}

impl Snapshots {
    fn take(dir: &Path, m: &Manifest) -> Result<Self> {
        let data = m.data_dir(dir);
        let take = |name: &str, size: u64| snapshot(dir, &data, m, name, size);
        let vectors = take(VECTORS, (m.included * m.dimension * 2) as u64)?;
        let similar = take(SIMILAR, m.ordering_bytes())?;
        let different = take(DIFFERENT, m.ordering_bytes())?;
        let (mut themes, mut extra_vectors) = (Snapshot(None), Snapshot(None));
        for (name, size) in extras_files(m) {
            let snap = take(&name, size)?;
            if name == themes_file(m) {
                themes = snap;
            } else {
                extra_vectors = snap;
            }
        }
        Ok(Snapshots {
            vectors,
            similar,
            different,
            themes,
            extra_vectors,
        })
    }
}

/// Why `row` (of start `s`) is not a valid ordering, if it is not; `seen`
/// has one flag per included poem and is left all false.
fn row_problem(row: &[u32], s: usize, seen: &mut [bool]) -> Option<String> {
    let mut problem = None;
    for (at, &i) in row.iter().enumerate() {
        let i = i as usize;
        problem = if i >= seen.len() {
            Some(format!("index {i} at position {at} is out of range"))
        } else if i == s {
            Some(format!("lists its own start at position {at}"))
        } else if seen[i] {
            Some(format!("lists poem {i} twice (again at position {at})"))
        } else {
            seen[i] = true;
            continue;
        };
        break;
    }
    for &i in row {
        if let Some(f) = seen.get_mut(i as usize) {
            *f = false;
        }
    }
    problem
}

fn decode(row: &[u8], index_bytes: usize, out: &mut Vec<u32>) {
    out.clear();
    if index_bytes == 2 {
        out.extend(row.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32));
    } else {
        out.extend(
            row.chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
    }
}

/// Checks that every colour names a palette entry and that there is one
/// per poem.
fn check_colors(dir: &Path, m: &Manifest) -> Result<()> {
    if let Some(bad) = m.colors.iter().find(|&&c| c as usize >= m.palette.len()) {
        bail!(
            "{} gives colour {bad} of a palette of {}",
            dir.join(MANIFEST).display(),
            m.palette.len()
        );
    }
    if !m.colors.is_empty() && m.colors.len() != m.included {
        bail!(
            "{} gives {} colours for {} poems",
            dir.join(MANIFEST).display(),
            m.colors.len(),
            m.included
        );
    }
    Ok(())
}

/// The extras' files `m` names, with their sizes.
pub(crate) fn extras_files(m: &Manifest) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if !m.themes.is_empty() {
        out.push((themes_file(m), m.theme_bytes()));
    }
    let vectors = (m.themes.len() + m.palette.len()) * m.dimension * 2;
    if vectors > 0 {
        out.push((extra_vectors_file(m), vectors as u64));
    }
    out
}

/// Which ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Similar,
    Different,
}

/// Why `dir`, which has no manifest, is not a cache.
fn not_a_cache(dir: &Path) -> anyhow::Error {
    let unfinished = dir.join(RUN).exists()
        || generations(dir)
            .unwrap_or_default()
            .iter()
            .any(|&g| generation_dir(dir, g).join(RUN).exists());
    if unfinished {
        return anyhow!(
            "{} holds an unfinished precompute; run the same precompute command again to resume it",
            dir.display()
        );
    }
    anyhow!(
        "{} is not a cache (no {MANIFEST}); create one with `diversity-gpu precompute`",
        dir.display()
    )
}

/// How many times a reader reads the manifest again when a writer switched
/// generations while it was opening the cache.
const OPEN_ATTEMPTS: usize = 5;

/// A finished cache whose every hash checked: a snapshot of one
/// generation, each file mapped once and only those bytes used.
pub struct Cache {
    pub dir: PathBuf,
    pub manifest: Manifest,
    files: Snapshots,
}

impl Cache {
    /// Opens a finished whole cache (see [`Self::open_any`]); a shard is
    /// refused with the command that merges it.
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

    /// Opens a finished cache, whole or shard, checking its versions, its
    /// manifest's seal and key hashes, and every file's size and blake3.
    /// When the manifest changed while the files were opened (a writer
    /// switched generations), it starts again on the new one.
    pub fn open_any(dir: &Path) -> Result<Self> {
        let mpath = dir.join(MANIFEST);
        let mut attempt = 1;
        loop {
            let bytes = match std::fs::read(&mpath) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_a_cache(dir)),
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", mpath.display())),
            };
            match Self::open_bytes(dir, &bytes) {
                Ok(c) => return Ok(c),
                Err(e) if attempt < OPEN_ATTEMPTS && std::fs::read(&mpath).ok().as_deref() != Some(&bytes[..]) => {
                    log::info!(
                        "{} changed while it was read ({e:#}); reading it again",
                        mpath.display()
                    );
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens the cache whose manifest is `bytes`.
    fn open_bytes(dir: &Path, bytes: &[u8]) -> Result<Self> {
        // Parsed before any check, only to name versions and the repair command.
        let unchecked: Option<Manifest> = serde_json::from_slice(bytes).ok();
        let repair = match &unchecked {
            Some(m) => format!("repair it with:\n  {}", m.rebuild_command(dir)),
            None => "run the precompute command that wrote it again to repair it".into(),
        };
        if let Some(m) = unchecked
            .as_ref()
            .filter(|m| m.format_version != FORMAT_VERSION || m.algorithm_version != ALGORITHM_VERSION)
        {
            bail!(
                "{} was written by another version (format {}, algorithm {}; this tool reads {FORMAT_VERSION}, {ALGORITHM_VERSION}); rebuild it with: {}",
                dir.display(),
                m.format_version,
                m.algorithm_version,
                m.rebuild_command(dir)
            );
        }
        Self::open_checked(dir, bytes).map_err(|e| anyhow!("{e:#}; the cache is damaged, {repair}"))
    }

    fn open_checked(dir: &Path, bytes: &[u8]) -> Result<Self> {
        let manifest = parse_sealed(&dir.join(MANIFEST), bytes)?;
        check_colors(dir, &manifest)?;
        test_pause("cache-open:manifest-read");
        let files = Snapshots::take(dir, &manifest)?;
        test_pause("cache-open:verified");
        let cache = Cache {
            files,
            dir: dir.to_owned(),
            manifest,
        };
        // The hashes were checked on these very bytes; checking the indices
        // too means readers can index freely whatever the manifest says.
        let data = cache.manifest.data_dir(dir);
        for (name, bytes) in [
            (SIMILAR.to_owned(), cache.files.similar.bytes()),
            (DIFFERENT.to_owned(), cache.files.different.bytes()),
            (themes_file(&cache.manifest), cache.files.themes.bytes()),
        ] {
            if let Some(bad) =
                max_index(bytes, cache.manifest.params.index_bytes).filter(|&m| m as usize >= cache.manifest.included)
            {
                bail!(
                    "{} holds index {bad}, but the cache has {} poems",
                    data.join(name).display(),
                    cache.manifest.included
                );
            }
        }
        Ok(cache)
    }

    /// The verified bytes of one of the cache's files (`None` when the
    /// manifest names no such file).
    pub fn file_bytes(&self, name: &str) -> Option<&[u8]> {
        let f = &self.files;
        let m = &self.manifest;
        Some(match name {
            VECTORS => f.vectors.bytes(),
            SIMILAR => f.similar.bytes(),
            DIFFERENT => f.different.bytes(),
            n if !m.themes.is_empty() && n == themes_file(m) => f.themes.bytes(),
            n if m.integrity.files.contains_key(n) && n == extra_vectors_file(m) => f.extra_vectors.bytes(),
            _ => return None,
        })
    }

    /// Row `i` of an ordering file (start `manifest.starts().start + i`) as
    /// indices into `manifest.keys`.
    pub fn row(&self, kind: Kind, i: usize, out: &mut Vec<u32>) {
        let p = &self.manifest.params;
        let bytes = match kind {
            Kind::Similar => self.files.similar.bytes(),
            Kind::Different => self.files.different.bytes(),
        };
        decode(
            &bytes[i * p.width * p.index_bytes..(i + 1) * p.width * p.index_bytes],
            p.index_bytes,
            out,
        );
    }

    /// Every row's defect, if any: each row must list distinct included
    /// poems other than its start — all of them (a permutation of the
    /// others) or, with `--top-k`, a prefix of that length. Returns
    /// `(start, kind, problem)`, sorted by start.
    pub fn invalid_rows(&self) -> Vec<(usize, Kind, String)> {
        use rayon::prelude::*;
        let (n, first) = (self.manifest.included, self.manifest.starts().start);
        let mut out: Vec<(usize, Kind, String)> = self
            .manifest
            .starts()
            .into_par_iter()
            .map_init(
                || (Vec::new(), vec![false; n]),
                |(row, seen), s| {
                    [Kind::Similar, Kind::Different]
                        .into_iter()
                        .filter_map(|kind| {
                            self.row(kind, s - first, row);
                            row_problem(row, s, seen).map(|p| (s, kind, p))
                        })
                        .collect::<Vec<_>>()
                },
            )
            .flatten()
            .collect();
        out.sort_by_key(|(s, k, _)| (*s, *k == Kind::Different));
        out
    }

    /// Theme `t`'s ordering as indices into `manifest.keys`.
    pub fn theme_row(&self, kind: Kind, t: usize, out: &mut Vec<u32>) {
        let m = &self.manifest;
        let (w, b) = (m.theme_width, m.params.index_bytes);
        let row = match kind {
            Kind::Similar => t,
            Kind::Different => m.themes.len() + t,
        };
        decode(&self.files.themes.bytes()[row * w * b..(row + 1) * w * b], b, out);
    }

    /// Included poem `i`'s colour, when the cache has a palette.
    pub fn color(&self, i: usize) -> Option<&crate::palette::Color> {
        let m = &self.manifest;
        m.colors.get(i).and_then(|&c| m.palette.get(c as usize))
    }

    /// The themes' and the palette's stored quantised vectors.
    pub fn extra_vectors(&self) -> Result<(Quantized, Quantized)> {
        let m = &self.manifest;
        let (t, p, dim) = (m.themes.len(), m.palette.len(), m.dimension);
        if t + p == 0 {
            let none = || Quantized {
                n: 0,
                dim,
                data: Vec::new(),
            };
            return Ok((none(), none()));
        }
        // The bytes checked at open.
        let bytes = self.files.extra_vectors.bytes();
        let mut data: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let palette = data.split_off(t * dim);
        Ok((
            Quantized { n: t, dim, data },
            Quantized {
                n: p,
                dim,
                data: palette,
            },
        ))
    }

    /// The stored quantised vectors.
    pub fn vectors(&self) -> Result<Quantized> {
        // The bytes checked at open, sized as the manifest says.
        let bytes = self.files.vectors.bytes();
        let (n, dim) = (self.manifest.included, self.manifest.dimension);
        let data = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok(Quantized { n, dim, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_must_be_distinct_in_range_and_without_their_start() {
        let mut seen = vec![false; 4];
        assert_eq!(row_problem(&[1, 2, 3], 0, &mut seen), None);
        assert_eq!(row_problem(&[3, 1], 0, &mut seen), None);
        assert!(row_problem(&[1, 4], 0, &mut seen).unwrap().contains("out of range"));
        assert!(row_problem(&[1, 0], 0, &mut seen).unwrap().contains("its own start"));
        assert!(row_problem(&[2, 1, 2], 0, &mut seen).unwrap().contains("twice"));
        assert_eq!(seen, vec![false; 4]);
    }

    #[test]
    fn key_changes_are_described() {
        let old: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let new: Vec<String> = ["a", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(
            key_changes(&old, &new),
            vec!["2 poems added (d, e)", "1 poem removed (b)"]
        );
    }

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

    #[test]
    fn indices_round_trip_in_both_widths() {
        let mut buf = Vec::new();
        encode(&[1, 65535, 0], 2, &mut buf);
        assert_eq!(buf, vec![1, 0, 255, 255, 0, 0]);
        encode(&[70000], 4, &mut buf);
        assert_eq!(buf, 70000u32.to_le_bytes());
    }
}
