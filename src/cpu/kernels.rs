//! The CPU backend's kernels: blocked dot products (AVX2 `vpmaddwd` where
//! the CPU has it) and the fused "add a row, track the minimum" walk step.
//! Every variant gives the same exact integers; dispatch picks the widest.

use std::ops::Range;

use crate::matrix::{CHOSEN, LANES};
use crate::quantize::{dot, Quantized};

/// Rows computed together by [`dot_rows`]: each vector `j` is loaded once
/// per block instead of once per row, which keeps the pass out of the L3
/// bandwidth limit.
pub const DOT_BLOCK: usize = 8;

#[inline(always)]
fn dot_rows_with(
    q: &Quantized,
    rows: &[usize],
    cols: Range<usize>,
    out: &mut [i32],
    dot: impl Fn(&[i16], &[i16]) -> i32,
) {
    let w = cols.len();
    for (c, j) in cols.enumerate() {
        let vj = q.row(j);
        for (r, &a) in rows.iter().enumerate() {
            out[r * w + c] = dot(q.row(a), vj);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_rows_avx2(q: &Quantized, rows: &[usize], cols: Range<usize>, out: &mut [i32]) {
    dot_rows_with(q, rows, cols, out, |a, b| dot_avx2(a, b))
}

/// [`dot`] with `vpmaddwd`: pairs of i16 products summed into i32 lanes.
/// Exact: components lie in ±32767, so a pair sums to at most
/// 2·32767² < 2^31, and each lane's running sum is a partial dot product,
/// bounded by Cauchy–Schwarz like the whole.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[i16], b: &[i16]) -> i32 {
    use std::arch::x86_64::*;
    let len = a.len().min(b.len());
    let mut acc = _mm256_setzero_si256();
    let mut i = 0;
    while i + 16 <= len {
        // SAFETY: i + 16 ≤ len, so both 32-byte loads are in bounds.
        let (x, y) = unsafe {
            (
                _mm256_loadu_si256(a.as_ptr().add(i) as *const __m256i),
                _mm256_loadu_si256(b.as_ptr().add(i) as *const __m256i),
            )
        };
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, y));
        i += 16;
    }
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, acc) };
    let mut sum: i32 = lanes.iter().sum();
    for k in i..len {
        sum += a[k] as i32 * b[k] as i32;
    }
    sum
}

/// `out[r·n + j] = dot(a0 + r, j)` for `r < count` (at most [`DOT_BLOCK`]
/// is best) and every `j`, with the widest instructions this CPU has; the
/// result is the same exact integers everywhere.
pub fn dot_rows(q: &Quantized, a0: usize, count: usize, out: &mut [i32]) {
    let rows: Vec<usize> = (a0..a0 + count).collect();
    dot_rows_at(q, &rows, out);
}

/// `out[r·n + j] = dot(rows[r], j)` for any rows (at most [`DOT_BLOCK`] is
/// best), as [`dot_rows`] does for consecutive ones.
pub fn dot_rows_at(q: &Quantized, rows: &[usize], out: &mut [i32]) {
    dot_block(q, rows, 0..q.n, out)
}

/// `out[r·w + c] = dot(rows[r], cols.start + c)` with `w = cols.len()`: one
/// tile of rows × columns, so that a few rows can still be split over threads.
pub fn dot_block(q: &Quantized, rows: &[usize], cols: Range<usize>, out: &mut [i32]) {
    assert!(out.len() >= rows.len() * cols.len() && cols.end <= q.n);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just checked to support AVX2.
        return unsafe { dot_rows_avx2(q, rows, cols, out) };
    }
    dot_rows_with(q, rows, cols, out, dot)
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

/// Seeds one walk's sums: `values` for the first poems, [`CHOSEN`] for
/// `skip` (the start, when there is one) and the padding. Returns the first
/// pick, the smallest sum and its first index. Every walk on the CPU starts
/// here: from a matrix row, from a start's dots, or from a theme's seed.
pub fn seed(sums: &mut [i32], values: impl Iterator<Item = i32>, skip: Option<usize>) -> (i32, usize) {
    sums.fill(CHOSEN);
    for (x, v) in sums.iter_mut().zip(values) {
        *x = v;
    }
    if let Some(s) = skip {
        sums[s] = CHOSEN;
    }
    let min = sums.iter().copied().min().unwrap_or(CHOSEN);
    (min, first_equal(sums, min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_dot_matches_the_plain_one() {
        let vecs: Vec<Vec<f64>> = (0..11)
            .map(|i| (0..37).map(|k| ((i * 31 + k * 7) % 13) as f64 - 6.0).collect())
            .collect();
        let q = Quantized::from_vectors(&vecs, 37, false).unwrap();
        let mut out = vec![0; 3 * q.n];
        dot_rows(&q, 4, 3, &mut out);
        for r in 0..3 {
            for j in 0..q.n {
                assert_eq!(out[r * q.n + j], q.dot(4 + r, j));
            }
        }
        // Extreme unit vectors: the largest products there are.
        let mut data = vec![0i16; 3 * 17];
        data[0] = 32767;
        data[17 + 16] = -32767;
        data[34] = 23170;
        data[35] = 23170;
        let extreme = Quantized { n: 3, dim: 17, data };
        let mut out = vec![0; 9];
        dot_rows(&extreme, 0, 3, &mut out);
        let plain: Vec<i32> = (0..3)
            .flat_map(|a| (0..3).map(move |b| (a, b)))
            .map(|(a, b)| extreme.dot(a, b))
            .collect();
        assert_eq!(out, plain);
        assert_eq!(out[0], 32767 * 32767);
        assert_eq!(out[8], 2 * 23170 * 23170);
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
}
