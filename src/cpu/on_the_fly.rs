//! Where the CPU walks get their rows: the whole n × n matrix when it fits
//! the memory limit, otherwise rows computed on the fly from the quantised
//! vectors, in blocks, behind a bounded cache of recently used rows.
//!
//! Walks from many starts keep choosing the same outlying poems, so the rows
//! they ask for repeat; the cache turns those repeats into hits. Every row is
//! the same exact integers either way, so the orderings are byte-identical
//! to the matrix path (tests hold them to it and to [`crate::reference`]).

use std::fmt;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::kernels::{dot_rows_at, DOT_BLOCK};
use super::walk::{seed, Kernel};
use crate::matrix::{padded, CHOSEN};
use crate::quantize::{sim16, Quantized};

/// How often the walks found their row in the cache, and where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RowStats {
    /// Rows the walks asked for (one per walk per step after the first).
    pub requests: u64,
    /// Rows computed because the cache did not hold them.
    pub computed: u64,
    /// Start rows computed to seed the walks (never cached: each is used once).
    pub seeds: u64,
    /// Cache capacity, in rows.
    pub capacity: usize,
    /// Seconds computing the starts' dots and sorting their similar
    /// orderings (thread-seconds divided by the threads).
    pub secs_similar: f64,
    /// Seconds computing rows the cache lacked (likewise).
    pub secs_rows: f64,
}

impl RowStats {
    /// Fraction of requests served without computing a row.
    pub fn hit_rate(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        1.0 - self.computed as f64 / self.requests as f64
    }
}

impl fmt::Display for RowStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows asked for, {} computed ({:.1} % hits; cache of {} rows), {} start rows",
            self.requests,
            self.computed,
            100.0 * self.hit_rate(),
            self.capacity,
            self.seeds
        )
    }
}

/// `dot(rows[r], j)` for every row and every `j`, row-major (`rows.len()`
/// × n), in blocks of [`DOT_BLOCK`] rows on the calling thread.
pub fn compute_dots(q: &Quantized, rows: &[usize]) -> Vec<i32> {
    let mut out = vec![0i32; rows.len() * q.n];
    for (block, o) in rows.chunks(DOT_BLOCK).zip(out.chunks_mut(DOT_BLOCK * q.n.max(1))) {
        dot_rows_at(q, block, o);
    }
    out
}

/// Rounded similarity rows computed from the vectors, padded to
/// [`padded`]`(n)` (padding is zero): the matrix's rows, without the matrix.
pub fn compute_rows(q: &Quantized, rows: &[usize]) -> Vec<Vec<i16>> {
    let stride = padded(q.n);
    compute_dots(q, rows)
        .chunks(q.n.max(1))
        .take(rows.len())
        .map(|d| {
            let mut row = vec![0i16; stride];
            for (r, &x) in row.iter_mut().zip(d) {
                *r = sim16(x);
            }
            row
        })
        .collect()
}

/// Recently used rows by poem, least recently used evicted first.
type RowCache = lru::LruCache<usize, Arc<[i16]>>;

/// The CPU walks over rows computed on the fly, with a bounded LRU cache.
pub struct OnTheFly {
    q: Quantized,
    batch: usize,
    cache: Mutex<(RowCache, RowStats)>,
    pool: rayon::ThreadPool,
}

impl OnTheFly {
    /// `batch` walks in flight (split evenly over the threads of `pool`),
    /// caching `cache_rows` rows.
    pub fn new(q: Quantized, batch: usize, cache_rows: usize, pool: rayon::ThreadPool) -> Self {
        let cap = NonZeroUsize::new(cache_rows.max(1)).expect("at least one row");
        let stats = RowStats {
            capacity: cap.get(),
            ..Default::default()
        };
        OnTheFly {
            q,
            batch: batch.max(1),
            cache: Mutex::new((lru::LruCache::new(cap), stats)),
            pool,
        }
    }

    /// Threads used.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Cache use so far.
    pub fn stats(&self) -> RowStats {
        self.cache.lock().expect("row cache lock").1
    }

    /// different orderings for a range of starts into `out`.
    pub fn different(&self, starts: Range<usize>, width: usize, out: &mut [u32]) {
        self.orderings(starts, width, None, out);
    }

    /// different orderings for a range of starts into `different`, and their
    /// similar orderings into `similar` when given: both come from the same
    /// dots of each start, computed once. Each thread walks its own batch;
    /// threads meet only at the row cache.
    pub fn orderings(&self, starts: Range<usize>, width: usize, similar: Option<&mut [u32]>, different: &mut [u32]) {
        if width == 0 {
            return;
        }
        let per = (self.batch / self.threads()).max(1);
        let first = |b: usize, len: usize| {
            let s0 = starts.start + b * per;
            s0..s0 + len / width
        };
        self.pool.install(|| match similar {
            Some(sim) => different
                .par_chunks_mut(per * width)
                .zip(sim.par_chunks_mut(per * width))
                .enumerate()
                .for_each(|(b, (d, s))| self.walk_batch(first(b, d.len()), width, Some(s), d)),
            None => different
                .par_chunks_mut(per * width)
                .enumerate()
                .for_each(|(b, d)| self.walk_batch(first(b, d.len()), width, None, d)),
        });
    }

    /// One thread's batch in lockstep: every walk takes step `t` before any
    /// takes `t + 1`, so the rows of one step are looked up and computed
    /// together.
    fn walk_batch(&self, starts: Range<usize>, width: usize, similar: Option<&mut [u32]>, out: &mut [u32]) {
        let (n, stride) = (self.q.n, padded(self.q.n));
        let t0 = std::time::Instant::now();
        let seeds: Vec<usize> = starts.clone().collect();
        let dots = compute_dots(&self.q, &seeds);
        if let Some(sim) = similar {
            let mut keys = Vec::new();
            for ((row, d), s) in sim.chunks_mut(width).zip(dots.chunks(n)).zip(starts) {
                crate::cpu::similar_row(s, d, row, &mut keys);
            }
        }
        let k = Kernel::new(width.saturating_sub(1));
        let mut sums = vec![CHOSEN; seeds.len() * stride];
        let best: Vec<(i32, usize)> = sums
            .chunks_mut(stride)
            .zip(seeds.iter().zip(dots.chunks(n)))
            .map(|(s, (&start, d))| {
                let best = seed(s, d.iter().map(|&x| sim16(x) as i32), Some(start));
                k.pin(s, n, Some(start), best)
            })
            .collect();
        drop((seeds, dots));
        {
            let stats = &mut self.cache.lock().expect("row cache lock").1;
            stats.seeds += best.len() as u64;
            stats.secs_similar += t0.elapsed().as_secs_f64() / self.threads() as f64;
        }
        self.walk_lockstep(sums, best, width, out, k);
    }

    /// Walks seeded by `seeds` (a row of n initial sums per walk, no poem
    /// chosen: the themes' walks), `width` each, as [`crate::cpu::seeded_rows`]
    /// does over the matrix.
    pub fn seeded(&self, seeds: &[i16], width: usize, out: &mut [u32]) {
        let (n, stride) = (self.q.n, padded(self.q.n));
        if width == 0 || n == 0 {
            return;
        }
        let per = (self.batch / self.threads()).max(1);
        self.pool.install(|| {
            out.par_chunks_mut(per * width)
                .zip(seeds.par_chunks(per * n))
                .for_each(|(o, seed_rows)| {
                    let k = Kernel::new(width - 1);
                    let mut sums = vec![CHOSEN; seed_rows.len() / n * stride];
                    let best = sums
                        .chunks_mut(stride)
                        .zip(seed_rows.chunks(n))
                        .map(|(s, r)| {
                            let best = seed(s, r.iter().map(|&v| v as i32), None);
                            k.pin(s, n, None, best)
                        })
                        .collect();
                    self.walk_lockstep(sums, best, width, o, k);
                })
        });
    }

    /// Runs seeded walks (`sums` of `best.len()` walks, each walk's first
    /// pick in `best`) in lockstep to `width` picks each.
    fn walk_lockstep(&self, mut sums: Vec<i32>, mut best: Vec<(i32, usize)>, width: usize, out: &mut [u32], k: Kernel) {
        let stride = padded(self.q.n);
        let (step, step2) = (k.step, k.step2);
        for t in 0..width {
            let picks: Vec<usize> = best.iter().map(|b| b.1).collect();
            for (i, (&p, s)) in picks.iter().zip(sums.chunks_mut(stride)).enumerate() {
                out[i * width + t] = p as u32;
                k.choose(s, p);
            }
            if t + 1 == width {
                break;
            }
            let rows = self.rows_for(&picks);
            // Pairs of walks stream two rows at once, as on the matrix path.
            best.clear();
            for (s, r) in sums.chunks_mut(2 * stride).zip(rows.chunks(2)) {
                if r.len() == 2 {
                    let (a, b) = s.split_at_mut(stride);
                    best.extend(step2(a, &r[0], b, &r[1]));
                } else {
                    best.push(step(s, &r[0]));
                }
            }
        }
    }

    /// The rows of `picks`, from the cache or computed (each distinct row
    /// once) on this thread, outside the lock.
    fn rows_for(&self, picks: &[usize]) -> Vec<Arc<[i16]>> {
        let mut unique = picks.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut found: std::collections::HashMap<usize, Arc<[i16]>> = std::collections::HashMap::new();
        let mut missing = Vec::new();
        {
            let (cache, stats) = &mut *self.cache.lock().expect("row cache lock");
            stats.requests += picks.len() as u64;
            for p in unique {
                match cache.get(&p) {
                    Some(r) => drop(found.insert(p, r.clone())),
                    None => missing.push(p),
                }
            }
            stats.computed += missing.len() as u64;
        }
        let t = std::time::Instant::now();
        let computed = compute_rows(&self.q, &missing);
        let secs = t.elapsed().as_secs_f64() / self.threads() as f64;
        let (cache, stats) = &mut *self.cache.lock().expect("row cache lock");
        stats.secs_rows += secs;
        for (p, row) in missing.iter().zip(computed) {
            let row: Arc<[i16]> = row.into();
            cache.put(*p, row.clone());
            found.insert(*p, row);
        }
        picks.iter().map(|p| found[p].clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::{different_rows, SimMatrix};
    use crate::reference;
    use proptest::prelude::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
    }

    fn on_the_fly(q: &Quantized, batch: usize, cache: usize, width: usize) -> (Vec<u32>, RowStats) {
        let o = OnTheFly::new(q.clone(), batch, cache, pool(2));
        let mut out = vec![0; q.n * width];
        o.different(0..q.n, width, &mut out);
        (out, o.stats())
    }

    fn matrix_path(q: &Quantized, width: usize) -> Vec<u32> {
        let m = SimMatrix::compute(q);
        let mut out = vec![0; q.n * width];
        pool(2).install(|| different_rows(&m, 0..q.n, width, &mut out));
        out
    }

    #[test]
    fn computed_rows_equal_the_matrix_rows() {
        let q = crate::quantize::random_corpus(4100, 7, 3, 11).1;
        let m = SimMatrix::compute(&q);
        let rows = [4099, 0, 17, 2048, 2047, 4099, 5, 6, 7, 8];
        for (r, row) in rows.iter().zip(compute_rows(&q, &rows)) {
            assert_eq!(&row[..], m.row(*r), "row {r}");
        }
    }

    #[test]
    fn similar_orderings_come_from_the_same_dots() {
        let q = crate::quantize::random_corpus(150, 9, 2, 3).1;
        let o = OnTheFly::new(q.clone(), 7, 5, pool(2));
        let w = 149;
        let (mut sim, mut diff) = (vec![0; 150 * w], vec![0; 150 * w]);
        o.orderings(0..150, w, Some(&mut sim), &mut diff);
        let mut expect = vec![0; 150 * w];
        crate::cpu::similar_rows(&q, 0..150, w, &mut expect, &pool(2));
        assert_eq!(sim, expect);
        assert_eq!(diff, matrix_path(&q, w));
    }

    #[test]
    fn seeded_walks_equal_the_matrix_paths() {
        let q = crate::quantize::random_corpus(90, 6, 2, 4).1;
        let themes = crate::quantize::random_corpus(5, 6, 2, 8).1;
        let seeds = crate::themes::seeds(&q, &themes);
        let w = 40;
        let mut expect = vec![0; 5 * w];
        pool(2).install(|| crate::cpu::seeded_rows(&SimMatrix::compute(&q), &seeds, w, &mut expect));
        let mut out = vec![0; 5 * w];
        OnTheFly::new(q, 4, 3, pool(2)).seeded(&seeds, w, &mut out);
        assert_eq!(out, expect);
    }

    #[test]
    fn rows_repeat_and_the_cache_serves_them() {
        // Few distinct directions (small integer components): walks from
        // different starts pick the same poems, so rows repeat.
        let (_, q) = crate::quantize::random_corpus(300, 16, 3, 5);
        let w = 20;
        let (out, stats) = on_the_fly(&q, 64, 300, w);
        assert_eq!(out, matrix_path(&q, w));
        assert_eq!(stats.requests, (q.n * (w - 1)) as u64);
        assert_eq!(stats.seeds, q.n as u64);
        // Nothing is evicted (the cache holds every row), so a row is computed
        // at most once per thread: two threads may miss it at the same time,
        // since rows are computed outside the lock.
        assert!(
            stats.computed <= 2 * q.n as u64,
            "no row computed more than once per thread: {stats}"
        );
        assert!(stats.hit_rate() > 0.5, "{stats}");
        // A one-row cache still gives the same orderings, computing more.
        let (tiny, small) = on_the_fly(&q, 3, 1, w);
        assert_eq!(tiny, out);
        assert!(small.computed > stats.computed);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn on_the_fly_equals_the_matrix_and_the_reference(
            n in 1usize..80, dim in 1usize..20, levels in 1i32..4, seed in any::<u64>(),
            k in 0usize..90, batch in 1usize..9, cache in 1usize..12,
        ) {
            let q = crate::quantize::random_corpus(n, dim, levels, seed).1;
            let w = k.min(n - 1);
            let (out, _) = on_the_fly(&q, batch, cache, w);
            prop_assert_eq!(&out, &matrix_path(&q, w));
            let reference: Vec<u32> = (0..n).flat_map(|s| reference::different(&q, s, w)).collect();
            prop_assert_eq!(out, reference);
        }
    }
}
