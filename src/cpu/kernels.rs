//! The CPU backend's kernels: blocked dot products (AVX2 `vpmaddwd` where
//! the CPU has it; the walk's step is in [`super::walk`]). Every variant
//! gives the same exact integers; dispatch picks the widest.

use std::ops::Range;

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
}
