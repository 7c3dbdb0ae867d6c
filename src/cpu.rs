//! The multi-threaded CPU backend: the reference's arithmetic, made fast.
//!
//! The rounded similarity matrix is computed once (n × n i16, about 2 bytes
//! per candidate update); each walk then streams one row per step through a
//! fused "add the row and track the minimum" pass that the compiler
//! vectorises. Results are identical to [`crate::reference`] for any thread
//! count, because every value is an exact integer and ties are broken by
//! index, not by the order work happens in.

use std::ops::Range;

use rayon::prelude::*;

use crate::matrix::{padded, sim16, CHOSEN, LANES};
use crate::quantize::{dot_rows, Quantized, DOT_BLOCK};

/// The rounded similarity matrix, row-major with rows padded to
/// [`padded`](crate::matrix::padded)`(n)` entries (padding is zero).
pub struct SimMatrix {
    pub n: usize,
    pub stride: usize,
    pub data: Vec<i16>,
}

impl SimMatrix {
    /// Computes every `sim16(dot(i, j))`, in parallel over blocks of rows.
    pub fn compute(q: &Quantized) -> Self {
        let n = q.n;
        let stride = padded(n);
        let mut data = vec![0i16; n * stride];
        data.par_chunks_mut((stride * DOT_BLOCK).max(1))
            .enumerate()
            .for_each_init(
                || vec![0i32; DOT_BLOCK * n],
                |dots, (b, rows)| {
                    let count = rows.len() / stride;
                    dot_rows(q, b * DOT_BLOCK, count, dots);
                    for (row, d) in rows.chunks_mut(stride).zip(dots.chunks(n)) {
                        for (r, &x) in row.iter_mut().zip(d) {
                            *r = sim16(x);
                        }
                    }
                },
            );
        SimMatrix { n, stride, data }
    }

    /// Row `i` (with padding).
    #[inline]
    pub fn row(&self, i: usize) -> &[i16] {
        &self.data[i * self.stride..(i + 1) * self.stride]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// Adds one group of LANES row entries to the unchosen sums and folds them into `best`.
#[inline(always)]
fn update_lanes(s: &mut [i32; LANES], r: &[i16; LANES], best: &mut [i32; LANES]) {
    // Branch-free masks, so the compiler emits vector compares and blends.
    for l in 0..LANES {
        let v = s[l];
        let open = -((v != CHOSEN) as i32);
        let nv = v + (r[l] as i32 & open);
        s[l] = nv;
        best[l] = best[l].min(nv);
    }
}

/// One walk step: `sums += row` for unchosen candidates, returning the lowest
/// new sum and its lowest index. Two vectorisable passes: the fused update
/// with a running minimum, then a scan for the first position holding it
/// (cheap: `sums` is still in cache, and the scan stops early).
#[inline(always)]
fn add_row_argmin_generic(sums: &mut [i32], row: &[i16]) -> (i32, usize) {
    let mut best = [CHOSEN; LANES];
    let (sc, _) = sums.as_chunks_mut::<LANES>();
    let (rc, _) = row.as_chunks::<LANES>();
    for (ci, (s, r)) in sc.iter_mut().zip(rc).enumerate() {
        prefetch(row, (ci + PREFETCH_GROUPS) * LANES);
        update_lanes(s, r, &mut best);
    }
    let min = best.iter().copied().min().unwrap_or(CHOSEN);
    (min, first_equal(sums, min))
}

/// The same step for two independent walks at once: two rows stream from
/// memory side by side, which hides more of each row's latency.
#[inline(always)]
fn add_rows2_generic(a: &mut [i32], ra: &[i16], b: &mut [i32], rb: &[i16]) -> [(i32, usize); 2] {
    let mut best_a = [CHOSEN; LANES];
    let mut best_b = [CHOSEN; LANES];
    let (ac, _) = a.as_chunks_mut::<LANES>();
    let (bc, _) = b.as_chunks_mut::<LANES>();
    let (rac, _) = ra.as_chunks::<LANES>();
    let (rbc, _) = rb.as_chunks::<LANES>();
    for (ci, ((sa, xa), (sb, xb))) in ac.iter_mut().zip(rac).zip(bc.iter_mut().zip(rbc)).enumerate() {
        prefetch(ra, (ci + PREFETCH_GROUPS) * LANES);
        prefetch(rb, (ci + PREFETCH_GROUPS) * LANES);
        update_lanes(sa, xa, &mut best_a);
        update_lanes(sb, xb, &mut best_b);
    }
    let min_a = best_a.iter().copied().min().unwrap_or(CHOSEN);
    let min_b = best_b.iter().copied().min().unwrap_or(CHOSEN);
    [(min_a, first_equal(a, min_a)), (min_b, first_equal(b, min_b))]
}

/// How far ahead (in groups of LANES) the row is prefetched: each step's row is a
/// fresh, unpredictable 2n-byte stretch of the matrix, and the hardware
/// prefetcher only catches up a page at a time.
const PREFETCH_GROUPS: usize = 64;

#[inline(always)]
fn prefetch(row: &[i16], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if at < row.len() {
        // SAFETY: a prefetch of an in-bounds address has no effect on memory.
        unsafe { std::arch::x86_64::_mm_prefetch(row.as_ptr().add(at) as *const i8, std::arch::x86_64::_MM_HINT_T0) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (row, at);
}

/// Index of the first element equal to `v` (`usize::MAX` if none).
#[inline(always)]
pub(crate) fn first_equal(sums: &[i32], v: i32) -> usize {
    let (sc, _) = sums.as_chunks::<LANES>();
    for (ci, s) in sc.iter().enumerate() {
        // A bit per lane: compiles to a vector compare and a movemask.
        let mut hits = 0u32;
        for (l, x) in s.iter().enumerate() {
            hits |= ((*x == v) as u32) << l;
        }
        if hits != 0 {
            return ci * LANES + hits.trailing_zeros() as usize;
        }
    }
    usize::MAX
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_row_argmin_avx2(sums: &mut [i32], row: &[i16]) -> (i32, usize) {
    add_row_argmin_generic(sums, row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn add_rows2_avx2(a: &mut [i32], ra: &[i16], b: &mut [i32], rb: &[i16]) -> [(i32, usize); 2] {
    add_rows2_generic(a, ra, b, rb)
}

pub(crate) type Step = fn(&mut [i32], &[i16]) -> (i32, usize);
pub(crate) type Step2 = fn(&mut [i32], &[i16], &mut [i32], &[i16]) -> [(i32, usize); 2];

/// The two-walk step for this CPU.
pub(crate) fn add_rows2_fn() -> Step2 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just checked to support AVX2.
        return |a, ra, b, rb| unsafe { add_rows2_avx2(a, ra, b, rb) };
    }
    add_rows2_generic
}

/// Picks the widest instruction set this CPU has, once.
pub(crate) fn add_row_argmin_fn() -> Step {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just checked to support AVX2.
        return |s, r| unsafe { add_row_argmin_avx2(s, r) };
    }
    add_row_argmin_generic
}

/// Runs the diversity walk from `s`, writing `out.len()` indices.
/// `sums` is scratch of length `m.stride`.
pub fn walk(m: &SimMatrix, s: usize, out: &mut [u32], sums: &mut [i32]) {
    walk_with(m, s, out, sums, add_row_argmin_fn());
}

/// Seeds the sums with the start's row (start and padding chosen) and
/// returns the first pick.
fn seed(m: &SimMatrix, s: usize, sums: &mut [i32]) -> (i32, usize) {
    seed_with(m.n, m.row(s), Some(s), sums)
}

/// Seeds the sums with `row`'s first `n` values, `skip` (when there is one)
/// and the padding chosen, and returns the first pick.
fn seed_with(n: usize, row: &[i16], skip: Option<usize>, sums: &mut [i32]) -> (i32, usize) {
    sums.fill(CHOSEN);
    for (x, &r) in sums[..n].iter_mut().zip(row) {
        *x = r as i32;
    }
    if let Some(s) = skip {
        sums[s] = CHOSEN;
    }
    let min = sums.iter().copied().min().unwrap_or(CHOSEN);
    (min, first_equal(sums, min))
}

#[inline]
fn walk_with(m: &SimMatrix, s: usize, out: &mut [u32], sums: &mut [i32], step: Step) {
    if out.is_empty() {
        return;
    }
    let best = seed(m, s, sums);
    walk_from(m, best, out, sums, step);
}

/// A walk whose sums start as `seed` (one value per poem) with no poem
/// chosen: a theme's walk. `sums` is scratch of length `m.stride`.
pub fn walk_seeded(m: &SimMatrix, seed: &[i16], out: &mut [u32], sums: &mut [i32]) {
    if out.is_empty() {
        return;
    }
    let best = seed_with(m.n, seed, None, sums);
    walk_from(m, best, out, sums, add_row_argmin_fn());
}

#[inline]
fn walk_from(m: &SimMatrix, mut best: (i32, usize), out: &mut [u32], sums: &mut [i32], step: Step) {
    for t in 0..out.len() {
        let p = best.1;
        out[t] = p as u32;
        sums[p] = CHOSEN;
        if t + 1 < out.len() {
            best = step(sums, m.row(p));
        }
    }
}

/// Two walks of equal length in lockstep (see [`add_rows2_generic`]).
fn walk_pair(m: &SimMatrix, starts: [usize; 2], out: [&mut [u32]; 2], sums: [&mut [i32]; 2], step: Step2) {
    let [oa, ob] = out;
    let [sa, sb] = sums;
    if oa.is_empty() {
        return;
    }
    let mut best = [seed(m, starts[0], sa), seed(m, starts[1], sb)];
    for t in 0..oa.len() {
        let (pa, pb) = (best[0].1, best[1].1);
        oa[t] = pa as u32;
        ob[t] = pb as u32;
        sa[pa] = CHOSEN;
        sb[pb] = CHOSEN;
        if t + 1 < oa.len() {
            best = step(sa, m.row(pa), sb, m.row(pb));
        }
    }
}

/// Sort key for similar orderings: ascending key = descending dot, then
/// ascending index.
#[inline]
fn similar_key(d: i32, j: usize) -> u64 {
    let flipped = !((d as u32) ^ 0x8000_0000);
    ((flipped as u64) << 32) | j as u64
}

/// similar(s) into `out` (its length is the width), from `dots[j] = dot(s, j)`.
/// `keys` is scratch.
pub fn similar_row(s: usize, dots: &[i32], out: &mut [u32], keys: &mut Vec<u64>) {
    keys.clear();
    keys.extend(
        dots.iter()
            .enumerate()
            .filter(|&(j, _)| j != s)
            .map(|(j, &d)| similar_key(d, j)),
    );
    let w = out.len();
    if w < keys.len() / 8 {
        // A short prefix: select it, then sort only that.
        keys.select_nth_unstable(w);
        keys.truncate(w);
        keys.sort_unstable();
    } else {
        // Keys are distinct integers: a radix sort beats comparisons here.
        radsort::sort(keys);
    }
    for (o, k) in out.iter_mut().zip(keys.iter()) {
        *o = *k as u32;
    }
}

/// similar orderings for a range of starts, in parallel, in blocks of
/// [`DOT_BLOCK`] starts; `out` holds `starts.len() * width` indices.
pub fn similar_rows(q: &Quantized, starts: Range<usize>, width: usize, out: &mut [u32], threads: &rayon::ThreadPool) {
    if width == 0 {
        return;
    }
    threads.install(|| {
        out.par_chunks_mut(width * DOT_BLOCK)
            .zip(starts.into_par_iter().step_by(DOT_BLOCK))
            .for_each_init(
                || (Vec::new(), vec![0i32; DOT_BLOCK * q.n]),
                |(keys, dots), (rows, s0)| {
                    let count = rows.len() / width;
                    dot_rows(q, s0, count, dots);
                    for (r, row) in rows.chunks_mut(width).enumerate() {
                        similar_row(s0 + r, &dots[r * q.n..(r + 1) * q.n], row, keys);
                    }
                },
            );
    });
}

/// The CPU backend: the matrix, and the pool that walks it.
pub struct CpuBackend {
    matrix: SimMatrix,
    pool: rayon::ThreadPool,
}

impl CpuBackend {
    /// Computes the similarity matrix with `pool`, which later runs the walks.
    pub fn new(q: &Quantized, pool: rayon::ThreadPool) -> Self {
        let matrix = pool.install(|| SimMatrix::compute(q));
        CpuBackend { matrix, pool }
    }

    /// The matrix (for tests and the benchmark).
    pub fn matrix(&self) -> &SimMatrix {
        &self.matrix
    }

    /// Threads used.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Walks seeded by `seeds` (see [`seeded_rows`]) into `out`.
    pub fn seeded(&self, seeds: &[i16], width: usize, out: &mut [u32]) {
        self.pool.install(|| seeded_rows(&self.matrix, seeds, width, out));
    }

    /// different orderings for a range of starts into `out`.
    pub fn different(&self, starts: Range<usize>, width: usize, out: &mut [u32]) {
        if width == 0 {
            return;
        }
        self.pool.install(|| different_rows(&self.matrix, starts, width, out));
    }
}

/// Walks seeded by `seeds` (a row of `m.n` initial sums per walk, no poem
/// chosen: the themes' walks), `width` each, in the current rayon pool.
pub fn seeded_rows(m: &SimMatrix, seeds: &[i16], width: usize, out: &mut [u32]) {
    if width == 0 || m.n == 0 {
        return;
    }
    out.par_chunks_mut(width).zip(seeds.par_chunks(m.n)).for_each_init(
        || vec![0i32; m.stride],
        |sums, (row, seed)| walk_seeded(m, seed, row, sums),
    );
}

/// different orderings for a range of starts, in the current rayon pool.
pub fn different_rows(m: &SimMatrix, starts: Range<usize>, width: usize, out: &mut [u32]) {
    if width == 0 {
        return;
    }
    let (step, step2) = (add_row_argmin_fn(), add_rows2_fn());
    // Pairs of starts per task; a lone last start walks by itself.
    out.par_chunks_mut(2 * width)
        .zip(starts.into_par_iter().step_by(2))
        .for_each_init(
            || (vec![0i32; m.stride], vec![0i32; m.stride]),
            |(a, b), (rows, s)| {
                if rows.len() == 2 * width {
                    let (ra, rb) = rows.split_at_mut(width);
                    walk_pair(m, [s, s + 1], [ra, rb], [a, b], step2);
                } else {
                    walk_with(m, s, rows, a, step);
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use proptest::prelude::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
    }

    fn random(n: usize, dim: usize, levels: i32, seed: u64) -> Quantized {
        crate::quantize::random_corpus(n, dim, levels, seed).1
    }

    fn all(q: &Quantized, threads: usize, width: usize) -> (Vec<u32>, Vec<u32>) {
        let b = CpuBackend::new(q, pool(threads));
        let mut d = vec![0; q.n * width];
        b.different(0..q.n, width, &mut d);
        let mut s = vec![0; q.n * width];
        similar_rows(q, 0..q.n, width, &mut s, &b.pool);
        (s, d)
    }

    fn reference_all(q: &Quantized, width: usize) -> (Vec<u32>, Vec<u32>) {
        let s = (0..q.n).flat_map(|s| reference::similar(q, s, width)).collect();
        let d = (0..q.n).flat_map(|s| reference::different(q, s, width)).collect();
        (s, d)
    }

    #[test]
    fn the_fused_step_matches_a_plain_scan() {
        let mut sums: Vec<i32> = (0..48).map(|i| (i * 37 % 11) - 5).collect();
        sums[3] = CHOSEN;
        let row: Vec<i16> = (0..48).map(|i| ((i * 13 % 7) - 3) as i16).collect();
        let mut expect = sums.clone();
        for (e, r) in expect.iter_mut().zip(&row) {
            if *e != CHOSEN {
                *e += *r as i32;
            }
        }
        let min = *expect.iter().min().unwrap();
        let first = expect.iter().position(|&v| v == min).unwrap();
        assert_eq!(add_row_argmin_fn()(&mut sums, &row), (min, first));
        assert_eq!(add_row_argmin_generic(&mut expect.clone(), &[0; 48]), (min, first));
        assert_eq!(sums, expect);
    }

    #[test]
    fn thread_counts_give_identical_output() {
        let q = random(203, 24, 3, 7);
        let w = q.n - 1;
        let one = all(&q, 1, w);
        assert_eq!(one, all(&q, 2, w));
        assert_eq!(one, all(&q, 5, w));
        assert_eq!(one, reference_all(&q, w));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_the_reference(n in 1usize..70, dim in 1usize..20, levels in 1i32..4, seed in any::<u64>(), k in 0usize..80) {
            let q = random(n, dim, levels, seed);
            let w = k.min(n - 1);
            prop_assert_eq!(all(&q, 2, w), reference_all(&q, w));
        }
    }
}
