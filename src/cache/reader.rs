//! Reading a cache: a snapshot of one generation, each file opened once,
//! mapped, checked against its size and blake3 in the manifest, and only
//! those bytes used afterwards; then its rows, colours and vectors.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

use super::codec::{decode, le, max_index};
use super::integrity;
use super::manifest::{check_colors, parse_sealed};
use super::{
    extra_vectors_file, extras_files, generation_dir, generations, test_pause, themes_file, Manifest,
    ALGORITHM_VERSION, DIFFERENT, FORMAT_VERSION, MANIFEST, RUN, SIMILAR, VECTORS,
};
use crate::quantize::Quantized;

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
        let mut data: Vec<i16> = le(bytes).collect();
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
        let data = le(bytes).collect();
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
}
