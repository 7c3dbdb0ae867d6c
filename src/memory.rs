//! The memory plan: whether the CPU walks hold the whole similarity matrix
//! or compute rows on the fly behind a bounded cache, from what each part
//! of a job needs and the limit (`--max-memory`, or what the machine has
//! available).

use std::fmt;

use anyhow::{bail, Result};
use bytesize::ByteSize;

use crate::cpu::kernels::DOT_BLOCK;
use crate::cpu::SIMILAR_BLOCK;
use crate::matrix::padded;

/// Where a memory limit came from (it goes into messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// `--max-memory`.
    Flag,
    /// The memory this machine has available (`MemAvailable` in /proc/meminfo).
    Available,
}

/// A memory limit for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub from: LimitSource,
}

impl Limit {
    /// `--max-memory` when given, else the memory available now; `None` when
    /// neither is known (then the matrix is used, as before).
    pub fn detect(max_memory: Option<u64>) -> Option<Limit> {
        match max_memory {
            Some(bytes) => Some(Limit {
                bytes,
                from: LimitSource::Flag,
            }),
            None => available_memory().map(|bytes| Limit {
                bytes,
                from: LimitSource::Available,
            }),
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.from {
            LimitSource::Flag => write!(f, "--max-memory {}", ByteSize(self.bytes)),
            LimitSource::Available => write!(f, "{} available on this machine", ByteSize(self.bytes)),
        }
    }
}

/// `MemAvailable` from /proc/meminfo (Linux), in bytes.
pub fn available_memory() -> Option<u64> {
    parse_meminfo(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// Resident memory of this process (`VmRSS` in /proc/self/status), in bytes.
pub fn resident_memory() -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/self/status").ok()?, "VmRSS:")
}

fn parse_meminfo(s: &str) -> Option<u64> {
    kib_field(s, "MemAvailable:")
}

/// A `Name:   123 kB` line of a /proc file, in bytes.
fn kib_field(s: &str, name: &str) -> Option<u64> {
    let line = s.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Each thread walks this many starts in lockstep: the rows of one step are
/// looked up and computed together, and no step waits for another thread.
const BATCH_PER_THREAD: usize = 128;

/// How the CPU backend will get its rows, and what that costs in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The whole matrix, computed once.
    Matrix,
    /// Rows on the fly: `batch` walks in lockstep, a cache of `cache_rows` rows.
    OnTheFly { batch: usize, cache_rows: usize },
}

/// Bytes each part of a CPU job holds.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    pub n: usize,
    pub dim: usize,
    /// The quantised vectors (held by the pipeline and by the backend).
    pub vectors: u64,
    /// The i16 matrix, padded rows.
    pub matrix: u64,
    /// Orderings of one checkpoint chunk, similar and different.
    pub chunk_out: u64,
    /// Per-thread scratch of the similar orderings and of the walks.
    pub scratch: u64,
    /// One padded i16 row.
    pub row: u64,
    /// Walks in one lockstep batch on the fly.
    pub batch: usize,
    /// Running sums and rows in flight of one batch.
    pub batch_bytes: u64,
    /// Memory the process already holds (the loaded corpus, the program):
    /// set by [`Needs::resident_now`], zero otherwise.
    pub resident: u64,
}

impl Needs {
    /// The sizes of a job of `n` vectors of `dim` components, orderings of
    /// `width` entries, `chunk` starts per checkpoint, on `threads` threads.
    pub fn new(n: usize, dim: usize, width: usize, chunk: usize, threads: usize) -> Self {
        let stride = padded(n) as u64;
        let threads = threads.max(1) as u64;
        let batch = (BATCH_PER_THREAD * threads as usize).min(chunk.max(1)).min(n.max(1));
        Needs {
            n,
            dim,
            // i16 vectors twice, and packed twice for the GEMM (rows, panels).
            vectors: 4 * (n * dim * 2) as u64,
            matrix: n as u64 * stride * 2,
            chunk_out: (chunk.min(n) * width * 4 * 2) as u64,
            // Dots and sort keys of a block of similar rows; four walks' sums.
            scratch: threads * ((DOT_BLOCK.max(SIMILAR_BLOCK) * n * 4 + n * 8) as u64 + 4 * stride * 4),
            row: stride * 2,
            batch,
            // Sums (i32) and, at worst, one distinct row (i16) per walk.
            batch_bytes: batch as u64 * stride * 6,
            resident: 0,
        }
    }

    /// Counts what this process holds now (Linux: `VmRSS`) as already used.
    pub fn resident_now(self) -> Self {
        Needs {
            resident: resident_memory().unwrap_or(0),
            ..self
        }
    }

    /// Everything but the matrix or the rows.
    fn common(&self) -> u64 {
        self.resident + self.vectors + self.chunk_out + self.scratch
    }

    /// The matrix path's total.
    pub fn with_matrix(&self) -> u64 {
        self.common() + self.matrix
    }

    /// The least the on-the-fly path can run in (a cache of one row).
    pub fn on_the_fly_min(&self) -> u64 {
        self.common() + self.batch_bytes + self.row
    }

    /// Picks the matrix when it fits `limit` (or no limit is known), else
    /// rows on the fly with a cache filling what is left; refuses a job that
    /// does not fit either way, before anything is allocated.
    pub fn plan(&self, limit: Option<Limit>) -> Result<Plan> {
        let Some(limit) = limit else { return Ok(Plan::Matrix) };
        if self.with_matrix() <= limit.bytes {
            return Ok(Plan::Matrix);
        }
        if self.on_the_fly_min() > limit.bytes {
            bail!(
                "{} poems × {} dims do not fit in {limit}: the similarity matrix alone is {}, and computing its rows on the fly still needs {} (already resident {}, vectors {}, orderings of one chunk {}, per-thread scratch {}, {} walks in flight {}); lower --chunk or --threads, pass --top-k, or use a machine with more memory",
                self.n,
                self.dim,
                ByteSize(self.matrix),
                ByteSize(self.on_the_fly_min()),
                ByteSize(self.resident),
                ByteSize(self.vectors),
                ByteSize(self.chunk_out),
                ByteSize(self.scratch),
                self.batch,
                ByteSize(self.batch_bytes),
            );
        }
        // The cache takes half of what is left, leaving the rest of the
        // machine room; an entry also costs its key and the list's links.
        let room = (limit.bytes - self.common() - self.batch_bytes) / 2;
        let cache_rows = (room / (self.row + 64)).clamp(1, self.n.max(1) as u64) as usize;
        Ok(Plan::OnTheFly {
            batch: self.batch,
            cache_rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_takes_the_matrix_when_it_fits_and_refuses_what_cannot() {
        let needs = Needs::new(70_000, 384, 100, 1024, 2);
        let flag = |bytes| {
            Some(Limit {
                bytes,
                from: LimitSource::Flag,
            })
        };
        assert_eq!(needs.plan(None).unwrap(), Plan::Matrix);
        assert_eq!(needs.plan(flag(needs.with_matrix())).unwrap(), Plan::Matrix);
        let Plan::OnTheFly { batch, cache_rows } = needs.plan(flag(needs.with_matrix() - 1)).unwrap() else {
            panic!("expected rows on the fly")
        };
        assert_eq!(batch, 256);
        assert!(cache_rows > 30_000 && cache_rows < 35_000, "{cache_rows}");
        let Plan::OnTheFly { cache_rows, .. } = needs.plan(flag(needs.on_the_fly_min())).unwrap() else {
            panic!("expected rows on the fly")
        };
        assert_eq!(cache_rows, 1);
        let e = needs.plan(flag(needs.on_the_fly_min() - 1)).unwrap_err().to_string();
        assert!(e.contains("70000 poems × 384 dims"), "{e}");
        assert!(e.contains("the similarity matrix alone is 9.1 GiB"), "{e}");
        assert!(e.contains("--max-memory"), "{e}");
    }

    #[test]
    fn meminfo_is_read_in_bytes() {
        let s = "MemTotal:       24000000 kB\nMemFree:  1 kB\nMemAvailable:   22000000 kB\n";
        assert_eq!(parse_meminfo(s), Some(22_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        let me = resident_memory().expect("Linux");
        assert!(me > 1 << 20, "{me}");
        assert!(Needs::new(10, 2, 9, 10, 1).resident_now().resident > 1 << 20);
    }
}
