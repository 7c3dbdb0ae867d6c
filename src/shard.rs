//! Shards: `precompute --shard I/N` computes one contiguous range of starts,
//! and `merge` combines finished shards into the cache that one unsharded
//! run writes, byte for byte — whatever backend or machine computed each
//! shard, since every backend's rows are exact.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cache::{self, Cache, Manifest, Shard};
use crate::timings::Timings;

/// `I/N` from the command line: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for ShardSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a shard: write I/N, e.g. 0/4 for the first of four");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse::<usize>().map_err(|_| bad())?,
            n.trim().parse::<usize>().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(format!(
                "shard {s}: the index must be below the count (0/{count} to {}/{count})",
                count.max(1) - 1
            ));
        }
        Ok(ShardSpec { index, count })
    }
}

impl ShardSpec {
    /// This shard's starts among `n`: contiguous, and sizes across the `count`
    /// shards differ by at most one.
    pub fn range(self, n: usize) -> Shard {
        let at = |i: usize| (i as u128 * n as u128 / self.count as u128) as usize;
        Shard {
            index: self.index,
            count: self.count,
            start: at(self.index),
            end: at(self.index + 1),
        }
    }
}

/// A finished shard, checked and memory-mapped.
struct Part {
    dir: PathBuf,
    cache: Cache,
    shard: Shard,
}

/// Opens every shard, refusing unfinished, damaged, whole, duplicated or
/// mismatched ones, and returns them in order of their starts.
fn open_parts(dirs: &[PathBuf]) -> Result<Vec<Part>> {
    let mut parts: Vec<Part> = Vec::new();
    let mut seen: BTreeMap<PathBuf, &Path> = BTreeMap::new();
    for dir in dirs {
        let real = dir
            .canonicalize()
            .with_context(|| format!("shard {}: cannot open the directory", dir.display()))?;
        if let Some(first) = seen.insert(real, dir) {
            bail!("shard {} is named twice (also as {})", dir.display(), first.display());
        }
        let cache = Cache::open_any(dir).with_context(|| format!("shard {}", dir.display()))?;
        let Some(shard) = cache.manifest.shard else {
            bail!(
                "{} is a whole cache, not a shard: it needs no merge (render or export it directly)",
                dir.display()
            );
        };
        check_vectors(&cache, dir)?;
        if let Some(first) = parts.first() {
            let what = first.cache.manifest.differences(&cache.manifest);
            if !what.is_empty() {
                bail!(
                    "shard {} ({shard}) does not match shard {}: {}; compute every shard from the same inputs with the same tool version",
                    dir.display(),
                    first.dir.display(),
                    what.join("; ")
                );
            }
        }
        if let Some(first) = parts.first() {
            let (a, b) = (&first.cache.manifest, &cache.manifest);
            if a.extras_fingerprint != b.extras_fingerprint {
                bail!(
                    "shard {} ({shard}) does not match shard {}: {}; compute every shard with the same themes and palette",
                    dir.display(),
                    first.dir.display(),
                    a.extras_differences(b).join("; ")
                );
            }
        }
        if let Some(twin) = parts.iter().find(|p| p.shard == shard) {
            bail!(
                "shards {} and {} are both {shard}; pass one of them",
                twin.dir.display(),
                dir.display()
            );
        }
        parts.push(Part {
            dir: dir.clone(),
            cache,
            shard,
        });
    }
    parts.sort_by_key(|p| (p.shard.start, p.shard.end));
    check_coverage(&parts)?;
    Ok(parts)
}

/// The stored vectors must be the ones the fingerprint was made from (the
/// merged cache takes them from one shard).
fn check_vectors(cache: &Cache, dir: &Path) -> Result<()> {
    let q = cache.vectors().with_context(|| format!("shard {}", dir.display()))?;
    let m = &cache.manifest;
    if cache::fingerprint(&m.keys, &q, &m.params, &m.embedding_model) != m.fingerprint {
        bail!(
            "shard {}: {} does not match its manifest's fingerprint; the shard is damaged, recompute it with: {}",
            dir.display(),
            cache::VECTORS,
            m.rebuild_command(dir)
        );
    }
    Ok(())
}

/// The shards must cover every start exactly once.
fn check_coverage(parts: &[Part]) -> Result<()> {
    let n = parts.first().map_or(0, |p| p.cache.manifest.included);
    let mut next = 0;
    let mut prev: Option<&Part> = None;
    for p in parts {
        if p.shard.start > next {
            bail!("{}", missing(parts, next..p.shard.start));
        }
        if p.shard.start < next {
            let q = prev.expect("a shard before this one");
            bail!(
                "shard {} ({}) overlaps shard {} ({}); merge shards of one split (the same N), each once",
                p.dir.display(),
                p.shard,
                q.dir.display(),
                q.shard
            );
        }
        next = p.shard.end;
        prev = Some(p);
    }
    if next < n {
        bail!("{}", missing(parts, next..n));
    }
    Ok(())
}

/// "shards 1/4 and 2/4 are missing (starts a..b)", or the bare range when
/// the shards come from different splits.
fn missing(parts: &[Part], gap: std::ops::Range<usize>) -> String {
    let count = parts[0].shard.count;
    if parts.iter().all(|p| p.shard.count == count) {
        let n = parts[0].cache.manifest.included;
        let absent: Vec<String> = (0..count)
            .map(|index| ShardSpec { index, count }.range(n))
            .filter(|s| s.start < gap.end && s.end > gap.start && !parts.iter().any(|p| p.shard == *s))
            .map(|s| s.to_string())
            .collect();
        if !absent.is_empty() {
            return format!(
                "{} missing: run precompute --shard for it, then merge again",
                absent.join(", ")
            );
        }
    }
    format!(
        "no shard covers starts {}..{}: run precompute --shard for them, then merge again",
        gap.start, gap.end
    )
}

/// Combines finished shards into a whole cache in `out`, byte-identical to
/// the cache one unsharded run writes. `out` must not be one of the shards,
/// nor another program's folder. The merged cache is a new generation of
/// `out`, written from the bytes each shard's check read (never from its
/// files opened again), and switched to by the same finishing protocol as
/// precompute's, only when what it holds hashes to what the shards recorded.
pub fn merge(out: &Path, dirs: &[PathBuf], progress: bool) -> Result<Manifest> {
    if dirs.is_empty() {
        bail!("merge needs at least one shard directory");
    }
    cache::refuse_foreign(out)?;
    let mut timings = Timings::default();
    let t = Instant::now();
    let parts = open_parts(dirs)?;
    if let Ok(real) = out.canonicalize() {
        if let Some(p) = parts.iter().find(|p| p.dir.canonicalize().is_ok_and(|d| d == real)) {
            bail!(
                "--out {} is the shard {}; merge into another directory",
                out.display(),
                p.dir.display()
            );
        }
    }
    timings.phase_since("merge_check", t);
    cache::test_pause("merge:verified");

    // One writer at a time, as for precompute; the generation readers use
    // stays untouched until the switch.
    let _lock = cache::lock_dir(out)?;
    let in_use = cache::named_generation(out);
    let generation = cache::new_generation(out, in_use)?;
    let data = cache::generation_dir(out, generation);
    let first = &parts[0];
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    let t = Instant::now();
    expected.insert(
        cache::VECTORS.into(),
        copy_checked(&[first], cache::VECTORS, &data, None)?,
    );
    timings.phase_since("merge_vectors", t);
    let total: u64 = parts.iter().map(|p| 2 * p.cache.manifest.ordering_bytes()).sum();
    let bar = crate::progress::progress_bar(progress, total, "bytes");
    let all: Vec<&Part> = parts.iter().collect();
    for name in [cache::SIMILAR, cache::DIFFERENT] {
        let t = Instant::now();
        expected.insert(name.into(), copy_checked(&all, name, &data, Some(&bar))?);
        timings.phase_since(&format!("merge_{}", name.trim_end_matches(".bin")), t);
    }
    bar.finish_and_clear();
    let mut merged = merged_manifest(&parts, timings);
    merged.generation = generation;
    // Every shard computed the same themes and colours: the first one's.
    for (name, _) in cache::extras_files(&merged) {
        let hash = copy_checked(&[first], &name, &data, None)?;
        expected.insert(name, hash);
    }
    cache::commit(
        out,
        &mut merged,
        &cache::Written::Files(expected),
        cache::Replaced::Generations { legacy: None },
    )?;
    // The result must pass every reader's checks.
    Cache::open(out).with_context(|| format!("the merged cache {} does not open", out.display()))?;
    Ok(merged)
}

/// Writes every part's verified bytes of `name`, in order, into the new
/// file `data/name`, synced. Each part's bytes are copied through a buffer
/// that is hashed as written: a shard whose file changed after its check
/// (in place, under the mapping) no longer hashes to what its manifest
/// records, and is refused. Returns the blake3 of all the bytes written.
fn copy_checked(parts: &[&Part], name: &str, data: &Path, bar: Option<&indicatif::ProgressBar>) -> Result<String> {
    let target = data.join(name);
    let tmp = crate::fs::temp_file_beside(&target)?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp);
    let mut all = blake3::Hasher::new();
    let mut buf = Vec::with_capacity(1 << 20);
    for p in parts {
        let bytes = p
            .cache
            .file_bytes(name)
            .with_context(|| format!("shard {} has no {name}", p.dir.display()))?;
        let mut part = blake3::Hasher::new();
        for piece in bytes.chunks(1 << 20) {
            buf.clear();
            buf.extend_from_slice(piece);
            part.update(&buf);
            all.update(&buf);
            w.write_all(&buf)
                .with_context(|| format!("cannot write {}", target.display()))?;
            if let Some(bar) = bar {
                bar.inc(buf.len() as u64);
            }
        }
        let recorded = p.cache.manifest.integrity.files.get(name).map(|f| f.blake3.as_str());
        if recorded != Some(part.finalize().to_hex().as_str()) {
            bail!(
                "shard {}: {} changed after it was checked (another program is writing it); nothing was switched, merge again once it is finished",
                p.dir.display(),
                p.cache.manifest.data_dir(&p.dir).join(name).display()
            );
        }
    }
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("cannot write {}", target.display()))?;
    tmp.persist(&target)
        .with_context(|| format!("cannot rename into {}", target.display()))?;
    Ok(all.finalize().to_hex().to_string())
}

/// The first shard's manifest as a whole cache's: no shard, every shard's
/// backend, timings summed over the shards plus the merge's own.
fn merged_manifest(parts: &[Part], merge: Timings) -> Manifest {
    let mut m = parts[0].cache.manifest.clone();
    m.shard = None;
    m.backend = format!(
        "{} shards: {}",
        parts.len(),
        parts
            .iter()
            .map(|p| format!("{}/{} {}", p.shard.index, p.shard.count, p.cache.manifest.backend))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // Summed by name, in the order the names first appear.
    let mut sums: Vec<(&str, f64)> = Vec::new();
    for (name, secs) in parts.iter().flat_map(|p| p.cache.manifest.timings.iter()) {
        match sums.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += secs,
            None => sums.push((name, secs)),
        }
    }
    m.timings = Timings::default();
    for (name, secs) in sums.into_iter().chain(merge.iter()) {
        m.timings.phase(name, secs);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_contiguous_balanced_and_cover_every_start() {
        for n in [0, 1, 7, 440, 15_217] {
            for count in [1, 2, 3, 4, 16, 500] {
                let mut next = 0;
                for index in 0..count {
                    let s = ShardSpec { index, count }.range(n);
                    assert_eq!(s.start, next, "n {n}, shard {index}/{count}");
                    let len = s.end - s.start;
                    assert!(len == n / count || len == n / count + 1, "n {n}, {s}");
                    next = s.end;
                }
                assert_eq!(next, n);
            }
        }
    }

    #[test]
    fn shard_specs_parse_and_bad_ones_are_refused() {
        assert_eq!("2/4".parse::<ShardSpec>(), Ok(ShardSpec { index: 2, count: 4 }));
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            let err = bad.parse::<ShardSpec>().unwrap_err();
            assert!(err.contains(bad) || err.contains("below the count"), "{bad}: {err}");
        }
    }
}
