//! The sharded row of `diversity-bench scale`: each size's job run as N
//! shards (each `precompute --shard I/N` over the corpus written as JSON
//! Lines, in its own process, one after another), merged, and checked
//! against the whole run by the hash of every ordering; also what sharding
//! costs beside the whole run and what it saves on N machines.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

use diversity_gpu::cache::{Cache, Kind};
use diversity_gpu::shard::ShardSpec;

use crate::scale::{child, orderings_hash, Mode, Options, Run, CORPUS_FILE};
use crate::synthetic::{self, Shape};

/// Shard `index`'s cache directory in a size's scratch directory.
fn shard_dir(scratch: &Path, index: usize) -> PathBuf {
    scratch.join(format!("shard{index}"))
}

/// The `precompute` the benchmarks run, as `precompute --poems … --out …`
/// would (no progress bar, no themes, the palette it picks by default); set `out`
/// and `shard` (`--shard I/N`) per run.
pub fn precompute_options(
    poems: PathBuf,
    embeddings: Option<PathBuf>,
    backend: diversity_gpu::engine::BackendChoice,
    top_k: Option<usize>,
    threads: Option<usize>,
) -> diversity_gpu::precompute::Options {
    diversity_gpu::precompute::Options {
        poems,
        embeddings,
        out: PathBuf::new(),
        backend,
        top_k,
        threads,
        strict: false,
        exclude: None,
        center: false,
        extras: Default::default(),
        chunk: 1024,
        gpu: Default::default(),
        progress: false,
        stop_after: None,
        shard: None,
        max_memory: None,
    }
}

/// Runs one precompute (whole, or a shard when `o.shard` is set) to the
/// end and returns its seconds and the finished cache's manifest.
pub fn timed_precompute(o: &diversity_gpu::precompute::Options) -> Result<(f64, diversity_gpu::cache::Manifest)> {
    let t = Instant::now();
    let done = diversity_gpu::precompute::run(o)?;
    let manifest = done.manifest.context("the precompute was interrupted")?;
    Ok((t.elapsed().as_secs_f64(), manifest))
}

/// Merges finished shard caches into `out` (as `merge --out` does) and
/// returns its seconds.
pub fn timed_merge(out: &Path, shards: &[PathBuf]) -> Result<f64> {
    let t = Instant::now();
    diversity_gpu::shard::merge(out, shards, false)?;
    Ok(t.elapsed().as_secs_f64())
}

/// One shard, through the code path of `precompute --shard I/N` (on the
/// CPU backend, like the other modes), over the corpus file the parent wrote.
pub(crate) fn one_shard(o: &Options, n: usize) -> Result<Run> {
    let (Some(spec), Some(dir)) = (o.shard, o.dir.as_deref()) else {
        bail!("--mode shards runs one shard: give --shard I/N and --dir (the size's scratch directory)")
    };
    let base = precompute_options(
        dir.join(CORPUS_FILE),
        None,
        diversity_gpu::engine::BackendChoice::Cpu,
        Some(o.top_k),
        o.threads,
    );
    let (secs, manifest) = timed_precompute(&diversity_gpu::precompute::Options {
        out: shard_dir(dir, spec.index),
        shard: Some(spec),
        ..base
    })?;
    ensure!(
        manifest.included == n,
        "the corpus file holds {} usable poems, not {n}",
        manifest.included
    );
    Ok(Run {
        secs,
        peak_rss: crate::peak_rss().unwrap_or(0),
        shard: Some(format!("{}/{}", spec.index, spec.count)),
        phases: Some(manifest.timings),
        ..Run::new(n, Mode::Shards)
    })
}

/// The sharded row's shard count: `None` for 0 or 1 (no sharded row).
/// More shards than the smallest size's poems would leave shards without
/// a start, so that is refused.
pub fn shard_count(shards: usize, smallest: usize) -> Result<Option<usize>> {
    match shards {
        0 | 1 => Ok(None),
        k if k > smallest => bail!(
            "--shards {k} is more shards than the {smallest} poems of the smallest size; give at most {smallest}, or 0 for no sharded row"
        ),
        k => Ok(Some(k)),
    }
}

/// The sharded row of one size: its shards, one after another, and the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct Sharded {
    /// The shards' seconds summed: the job's cost when done as shards.
    pub sum: f64,
    pub slowest: f64,
    pub merge: f64,
    /// The highest peak RSS of any shard's process.
    pub peak_rss: u64,
    /// The shards' loading of the corpus file, summed (part of `sum`).
    pub load: f64,
    /// The merged orderings' hash, as [`orderings_hash`] makes it.
    pub hash: String,
    /// Bytes of orderings the merge wrote (similar and different).
    pub merged_bytes: u64,
}

impl Sharded {
    /// The figures of `shards`' runs, the merge's seconds and the merged hash.
    pub fn new(shards: &[Run], merge: f64, hash: String) -> Sharded {
        let phase = |r: &Run, name: &str| r.phases.as_ref().and_then(|p| p.get(name)).unwrap_or(0.0);
        Sharded {
            sum: shards.iter().map(|r| r.secs).sum(),
            slowest: shards.iter().map(|r| r.secs).fold(0.0, f64::max),
            merge,
            peak_rss: shards.iter().map(|r| r.peak_rss).max().unwrap_or(0),
            load: shards.iter().map(|r| phase(r, "load")).sum(),
            hash,
            merged_bytes: 0,
        }
    }

    /// The wall time on as many machines as shards: the slowest shard, then the merge.
    pub fn wall(&self) -> f64 {
        self.slowest + self.merge
    }

    /// What sharding costs and saves beside the whole run of `whole`
    /// seconds at `n`: the shards summed against it, the merge's rate, and
    /// the wall time on `count` machines against it.
    pub fn against(&self, n: usize, count: usize, whole: f64) -> String {
        format!(
            "n = {n}: {count} shards summed {:.2}× the cost of the whole (matrix) run; merge of {} MB of orderings at {:.0} MB/s; on {count} machines {:.2}× faster than one",
            self.sum / whole,
            self.merged_bytes / 1_000_000,
            self.merged_bytes as f64 / 1e6 / self.merge,
            whole / self.wall()
        )
    }
}

/// Writes the corpus of `n` poems, runs its `count` shards (each in its own
/// process, one after another) and the merge, in a scratch directory.
pub(crate) fn sharded(o: &Options, n: usize, count: usize) -> Result<Sharded> {
    let tmp = crate::scratch(o.dir.as_deref())?;
    synthetic::write_jsonl(&tmp.path().join(CORPUS_FILE), Shape { n, ..o.shape })?;
    let runs = (0..count)
        .map(|index| child(o, n, Mode::Shards, Some((tmp.path(), ShardSpec { index, count }))))
        .collect::<Result<Vec<_>>>()?;
    let dirs: Vec<PathBuf> = (0..count).map(|i| shard_dir(tmp.path(), i)).collect();
    let merged = tmp.path().join("merged");
    let merge = timed_merge(&merged, &dirs)?;
    let hash = merged_hash(&merged, n, o.top_k.min(n - 1))?;
    let merged_bytes = 2 * Cache::open(&merged)?.manifest.ordering_bytes();
    Ok(Sharded {
        merged_bytes,
        ..Sharded::new(&runs, merge, hash)
    })
}

/// The [`orderings_hash`] of a merged cache of `n` poems and rows of `w`.
fn merged_hash(dir: &Path, n: usize, w: usize) -> Result<String> {
    let cache = Cache::open(dir)?;
    let m = &cache.manifest;
    ensure!(
        m.included == n && m.params.width == w,
        "the merged cache holds {} poems of {} entries, not {n} of {w}",
        m.included,
        m.params.width
    );
    let mut row = Vec::with_capacity(w);
    Ok(orderings_hash(n, w, |starts, sim, diff| {
        for (k, i) in starts.enumerate() {
            cache.row(Kind::Similar, i, &mut row);
            sim[k * w..(k + 1) * w].copy_from_slice(&row);
            cache.row(Kind::Different, i, &mut row);
            diff[k * w..(k + 1) * w].copy_from_slice(&row);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::{fit, in_memory};
    use diversity_gpu::timings::Timings;

    #[test]
    fn shards_below_two_turn_the_row_off_and_too_many_are_refused() {
        assert_eq!(shard_count(0, 4000).unwrap(), None);
        assert_eq!(shard_count(1, 4000).unwrap(), None);
        assert_eq!(shard_count(4, 4000).unwrap(), Some(4));
        assert_eq!(shard_count(200, 200).unwrap(), Some(200));
        let e = shard_count(201, 200).unwrap_err().to_string();
        assert!(e.contains("--shards 201") && e.contains("at most 200"), "{e}");
    }

    /// A shard's run as its process reports it.
    fn shard_run(secs: f64, peak_rss: u64, load: f64) -> Run {
        let mut phases = Timings::default();
        phases.phase("load", load);
        phases.phase("walks", secs - load);
        Run {
            secs,
            peak_rss,
            shard: Some("0/3".into()),
            phases: Some(phases),
            ..Run::new(1000, Mode::Shards)
        }
    }

    #[test]
    fn the_sharded_row_sums_the_shards_and_projects_slowest_plus_merge() {
        let runs = [
            shard_run(2.0, 30 << 20, 0.5),
            shard_run(3.5, 50 << 20, 0.25),
            shard_run(1.0, 40 << 20, 0.25),
        ];
        let s = Sharded::new(&runs, 0.5, "h".into());
        assert_eq!((s.sum, s.slowest, s.merge, s.load), (6.5, 3.5, 0.5, 1.0));
        assert_eq!(s.peak_rss, 50 << 20);
        assert_eq!(s.wall(), 4.0);
        // The sharded row's exponent is fitted like the others'.
        let pts: Vec<(usize, f64)> = [500, 1000, 4000]
            .iter()
            .map(|&n| (n, 2e-6 * (n as f64).powf(2.1)))
            .collect();
        assert!((fit(&pts).0 - 2.1).abs() < 1e-9);
    }

    #[test]
    fn the_json_lines_of_the_in_memory_modes_are_unchanged_and_a_shards_round_trips() {
        let matrix = Run {
            hash: "abc".into(),
            ..Run::new(10, Mode::Matrix)
        };
        let line = serde_json::to_string(&matrix).unwrap();
        assert!(
            !line.contains("shard") && !line.contains("phases") && line.contains("\"hash\""),
            "{line}"
        );
        let line = serde_json::to_string(&shard_run(2.0, 1 << 20, 0.5)).unwrap();
        assert!(
            !line.contains("\"hash\"") && line.contains("\"shard\":\"0/3\""),
            "{line}"
        );
        let back: Run = serde_json::from_str(&line).unwrap();
        assert_eq!(back.mode, Mode::Shards);
        assert_eq!(back.phases.unwrap().get("load"), Some(0.5));
    }

    #[test]
    fn merged_shards_hash_like_the_whole_matrix_run() {
        let dir = tempfile::tempdir().unwrap();
        // Past one chunk of starts, so chunks and shards do not line up.
        let shape = Shape {
            n: 1100,
            dim: 16,
            clusters: 4,
            seed: 3,
        };
        let o = Options {
            sizes: vec![shape.n],
            top_k: 7,
            threads: Some(2),
            rows_memory: 0,
            project: 0,
            machines: 1,
            shape,
            shards: 3,
            dir: Some(dir.path().to_owned()),
            shard: None,
        };
        synthetic::write_jsonl(&dir.path().join(CORPUS_FILE), shape).unwrap();
        let runs: Vec<Run> = (0..3)
            .map(|index| {
                let shard = Some(ShardSpec { index, count: 3 });
                one_shard(&Options { shard, ..o.clone() }, shape.n).unwrap()
            })
            .collect();
        let dirs: Vec<PathBuf> = (0..3).map(|i| shard_dir(dir.path(), i)).collect();
        let merged = dir.path().join("merged");
        timed_merge(&merged, &dirs).unwrap();
        let hash = merged_hash(&merged, shape.n, 7).unwrap();
        assert_eq!(hash, in_memory(&o, shape.n, Mode::Matrix).unwrap().hash);
        assert!(runs
            .iter()
            .all(|r| r.phases.as_ref().is_some_and(|p| p.get("load").is_some())));
        // A different run's orderings do not hash alike.
        let other = Options { top_k: 6, ..o.clone() };
        assert_ne!(hash, in_memory(&other, shape.n, Mode::Matrix).unwrap().hash);
    }
}
