//! The manifest's schema (parameters, inputs, integrity, shard) and what a
//! manifest says about itself: its sizes and chunks, how it differs from
//! another, the command that rebuilds it, and its seal, checked when it is
//! read and filled in when it is written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::integrity::{self, ChunkHash, FileHash};
use super::{generation_dir, hash_keys, key_changes, MANIFEST};
use crate::corpus::Report;
use crate::fs::write_atomic;
use crate::timings::Timings;

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
    /// Theme names; their orderings are in [`themes_file`](super::themes_file), in this order.
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
    /// blake3 of the themes and the palette ([`extras_fingerprint`](super::extras_fingerprint)).
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
        let abs = crate::fs::absolute;
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

/// Checks that every colour names a palette entry and that there is one
/// per poem.
pub(crate) fn check_colors(dir: &Path, m: &Manifest) -> Result<()> {
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
