//! The cache format: what `precompute` writes and `render`, `export` and
//! `verify` read.
//!
//! A cache is a directory:
//! - `manifest.json`: versions, parameters, keys, fingerprint, report,
//!   backend, timings and the blake3 of every file and checkpoint chunk,
//!   sealed by a hash of its own bytes (`manifest_hash`). It is written
//!   last, atomically: a directory without it is never taken for a
//!   finished cache.
//! - `vectors.bin`: the quantised unit vectors (i16 LE, `included × dim`).
//! - `similar.bin`, `different.bin`: one row per start of `width` indices
//!   into `keys`, little-endian, `index_bytes` (2 or 4) each.
//! - `themes-<id>.bin` (when the run had themes): every theme's similar row,
//!   then every theme's different row, `theme_width` indices each, same
//!   encoding; `extra-vectors-<id>.bin`: the themes' and the palette's
//!   quantised vectors. `<id>` begins the extras fingerprint.
//! - `lock`: the writer's lock file (see [`lock`]).
//! - while a run is under way, `run.json` (the pending manifest),
//!   `similar.bin.partial` and `different.bin.partial` (the rows being
//!   built) and `progress.log` (finished chunks with the blake3 of their
//!   rows, each line written only after the rows reached the disk). A re-run
//!   with the same inputs resumes there, re-verifying every chunk it keeps.
//!
//! Every reader checks every hash at open, so a damaged cache is refused,
//! never read.
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

/// Bumped when the layout of the files changes.
pub const FORMAT_VERSION: u32 = 2;
/// Bumped when the algorithm's output for the same input changes.
pub const ALGORITHM_VERSION: u32 = 1;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
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
fn extra_vectors_file(m: &Manifest) -> String {
    format!("extra-vectors-{}.bin", extras_id(m))
}

/// Writes the themes' orderings and the themes' and palette's vectors of
/// the cache that `m` will describe, atomically, before its manifest.
pub fn write_extras(
    dir: &Path,
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
        write_atomic(&dir.join(themes_file(m)), &bytes)?;
    }
    let data: Vec<i16> = themes
        .iter()
        .chain(palette.iter())
        .flat_map(|q| q.data.iter().copied())
        .collect();
    if !data.is_empty() {
        write_atomic(&dir.join(extra_vectors_file(m)), bytemuck::cast_slice(&data))?;
    }
    Ok(())
}

/// Copies the extras' files that `m` names from the cache `from` into `to`
/// (a merge takes them from one shard: every shard computed the same).
pub fn copy_extras(from: &Path, to: &Path, m: &Manifest) -> Result<()> {
    for name in [themes_file(m), extra_vectors_file(m)] {
        let src = from.join(&name);
        if src.exists() {
            let bytes = std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
            write_atomic(&to.join(&name), &bytes)?;
        }
    }
    Ok(())
}

/// Removes the extras' files that the finished manifest `m` does not name.
pub fn prune_extras(dir: &Path, m: &Manifest) -> Result<()> {
    let keep = [themes_file(m), extra_vectors_file(m)];
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for name in entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()) {
        let ours = (name.starts_with("themes-") || name.starts_with("extra-vectors-")) && name.ends_with(".bin");
        if ours && !keep.contains(&name) {
            remove_if_exists(&dir.join(&name))?;
        }
    }
    Ok(())
}

/// Gives a finished cache (`old`) the themes, palette and colours of
/// `new`, whose files [`write_extras`] wrote; its orderings stay. The
/// manifest is replaced atomically (sealed, with every file's hash), then
/// the old extras' files go. The caller holds the directory's lock.
pub fn update_extras(dir: &Path, mut old: Manifest, new: &Manifest, timings: Timings) -> Result<Manifest> {
    old.themes = new.themes.clone();
    old.theme_texts = new.theme_texts.clone();
    old.theme_width = new.theme_width;
    old.palette = new.palette.clone();
    old.colors = new.colors.clone();
    old.inputs = new.inputs.clone();
    old.extras_fingerprint = new.extras_fingerprint.clone();
    old.timings = timings;
    old.integrity
        .files
        .retain(|name, _| [VECTORS, SIMILAR, DIFFERENT].contains(&name.as_str()));
    seal_finished(dir, &mut old)?;
    prune_extras(dir, &old)?;
    Ok(old)
}

/// Reads a manifest without checking its seal (for `run.json`, which only
/// decides whether to resume; every chunk it lets through is re-verified).
fn read_manifest(path: &Path) -> Result<Manifest> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not a valid manifest", path.display()))
}

/// Reads a finished cache's manifest and checks everything it says about
/// itself: its seal, its key hashes and its key count.
fn read_sealed(path: &Path) -> Result<Manifest> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    integrity::check_seal(path, &bytes)?;
    let m: Manifest =
        serde_json::from_slice(&bytes).with_context(|| format!("{} is not a valid manifest", path.display()))?;
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

/// Records in `m` the blake3 of every file in `dir` and of every chunk of
/// its orderings, read from disk, and writes it as the sealed manifest:
/// the last step of any writer of a finished cache (`merge` included).
pub fn seal_finished(dir: &Path, m: &mut Manifest) -> Result<()> {
    m.integrity.chunks = (0..m.chunk_count())
        .map(|c| {
            let (offset, len) = m.chunk_bytes(c);
            let hash = |name: &str| {
                integrity::hash_range(&dir.join(name), offset, len)
                    .with_context(|| format!("{} is shorter than its manifest says", dir.join(name).display()))
            };
            Ok(ChunkHash {
                similar: hash(SIMILAR)?,
                different: hash(DIFFERENT)?,
            })
        })
        .collect::<Result<_>>()?;
    for name in [VECTORS, SIMILAR, DIFFERENT] {
        m.integrity
            .files
            .insert(name.into(), integrity::hash_file(&dir.join(name))?);
    }
    for (name, _) in extras_files(m) {
        m.integrity
            .files
            .insert(name.clone(), integrity::hash_file(&dir.join(&name))?);
    }
    write_sealed(&dir.join(MANIFEST), m)
}

/// Writes `m` as `path`, with its key hashes and seal filled in.
fn write_sealed(path: &Path, m: &mut Manifest) -> Result<()> {
    m.keys_hash = hash_keys(&m.keys);
    m.all_keys_hash = hash_keys(&m.all_keys);
    m.manifest_hash = integrity::UNSEALED.into();
    let (bytes, hash) = integrity::seal(serde_json::to_vec_pretty(m)?);
    write_atomic(path, &bytes)?;
    m.manifest_hash = hash;
    Ok(())
}

/// Checks every file the manifest lists (vectors and both orderings)
/// against its size and blake3.
fn verify_files(dir: &Path, m: &Manifest) -> Result<()> {
    let expect = |name: &str, bytes: u64| -> Result<()> {
        let path = dir.join(name);
        let Some(want) = m.integrity.files.get(name) else {
            bail!("{} does not list {name}", dir.join(MANIFEST).display());
        };
        if want.bytes != bytes {
            bail!(
                "{} should have {bytes} bytes, its manifest says {}",
                path.display(),
                want.bytes
            );
        }
        if !path.exists() {
            bail!("{} is missing", path.display());
        }
        let got = integrity::hash_file(&path)?;
        if got.bytes != want.bytes {
            bail!(
                "{} has {} bytes, the manifest says {}",
                path.display(),
                got.bytes,
                want.bytes
            );
        }
        if got.blake3 != want.blake3 {
            bail!("{} does not match its blake3 in the manifest", path.display());
        }
        Ok(())
    };
    expect(VECTORS, (m.included * m.dimension * 2) as u64)?;
    expect(SIMILAR, m.ordering_bytes())?;
    expect(DIFFERENT, m.ordering_bytes())?;
    for (name, bytes) in extras_files(m) {
        expect(&name, bytes)?;
    }
    Ok(())
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

/// Reads the themes' orderings when the manifest lists themes, checking
/// their blake3 again (read after the check at open), and that every
/// colour names a palette entry.
fn read_themes(dir: &Path, m: &Manifest) -> Result<Vec<u8>> {
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
    if m.themes.is_empty() {
        return Ok(Vec::new());
    }
    read_checked(dir, m, &themes_file(m))
}

/// A file of the cache, read whole and checked against its blake3 in `m`.
fn read_checked(dir: &Path, m: &Manifest, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    if m.integrity.files.get(name).map(|f| &f.blake3) != Some(&integrity::hash_bytes(&bytes)) {
        bail!("{} does not match its blake3 in the manifest", path.display());
    }
    Ok(bytes)
}

/// The extras' files `m` names, with their sizes.
fn extras_files(m: &Manifest) -> Vec<(String, u64)> {
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

/// A finished cache whose every hash checked, memory-mapped.
pub struct Cache {
    pub dir: PathBuf,
    pub manifest: Manifest,
    similar: memmap2::Mmap,
    different: memmap2::Mmap,
    /// The themes' orderings, read whole (a few rows).
    themes: Vec<u8>,
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
        // Parsed before any check, only to name versions and the repair command.
        let unchecked = read_manifest(&mpath).ok();
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
        Self::open_checked(dir).map_err(|e| anyhow!("{e:#}; the cache is damaged, {repair}"))
    }

    fn open_checked(dir: &Path) -> Result<Self> {
        let manifest = read_sealed(&dir.join(MANIFEST))?;
        verify_files(dir, &manifest)?;
        let map = |name: &str| -> Result<memmap2::Mmap> {
            let path = dir.join(name);
            let f = File::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
            let len = f.metadata()?.len();
            if len != manifest.ordering_bytes() {
                bail!(
                    "{} has {len} bytes, the manifest says {}",
                    path.display(),
                    manifest.ordering_bytes()
                );
            }
            if len == 0 {
                return Ok(memmap2::MmapOptions::new().len(1).map_anon()?.make_read_only()?);
            }
            // SAFETY: the mapping is sound as long as nobody changes the file
            // while it is mapped. This tool never writes a finished cache's
            // file in place: precompute builds `*.partial` files (a different
            // inode) and renames them over the old names, so a mapping keeps
            // the old inode's bytes intact. Only another program writing into
            // the cache could break this.
            unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("cannot map {}", path.display()))
        };
        let themes = read_themes(dir, &manifest)?;
        let cache = Cache {
            similar: map(SIMILAR)?,
            different: map(DIFFERENT)?,
            themes,
            dir: dir.to_owned(),
            manifest,
        };
        // The hashes were checked against the bytes just mapped; checking the
        // indices too means readers can index freely whatever the manifest says.
        for (name, bytes) in [
            (SIMILAR, &cache.similar[..]),
            (DIFFERENT, &cache.different[..]),
            (themes_file(&cache.manifest).as_str(), &cache.themes[..]),
        ] {
            if let Some(bad) =
                max_index(bytes, cache.manifest.params.index_bytes).filter(|&m| m as usize >= cache.manifest.included)
            {
                bail!(
                    "{} holds index {bad}, but the cache has {} poems",
                    dir.join(name).display(),
                    cache.manifest.included
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
        decode(&self.themes[row * w * b..(row + 1) * w * b], b, out);
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
        // Sized and hashed as the manifest says (checked again: read after open).
        let bytes = read_checked(&self.dir, m, &extra_vectors_file(m))?;
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
        let path = self.dir.join(VECTORS);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let (n, dim) = (self.manifest.included, self.manifest.dimension);
        if bytes.len() != n * dim * 2 {
            bail!("{} has {} bytes, expected {}", path.display(), bytes.len(), n * dim * 2);
        }
        // Read again after open, so checked again.
        if self.manifest.integrity.files.get(VECTORS).map(|f| &f.blake3) != Some(&integrity::hash_bytes(&bytes)) {
            bail!(
                "{} does not match its blake3 in the manifest; the cache is damaged",
                path.display()
            );
        }
        let data = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        Ok(Quantized { n, dim, data })
    }

    /// Refuses the cache when the corpus's keys are not the ones it was
    /// built from (see [`Manifest::poems_changed`]).
    pub fn check_keys(&self, all_keys: &[String]) -> Result<()> {
        let what = self.manifest.poems_changed(all_keys);
        if what.is_empty() {
            return Ok(());
        }
        bail!(
            "the cache {} is stale: {} since it was computed. Update it with:\n  {}",
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
    fn indices_round_trip_in_both_widths() {
        let mut buf = Vec::new();
        encode(&[1, 65535, 0], 2, &mut buf);
        assert_eq!(buf, vec![1, 0, 255, 255, 0, 0]);
        encode(&[70000], 4, &mut buf);
        assert_eq!(buf, 70000u32.to_le_bytes());
    }
}
