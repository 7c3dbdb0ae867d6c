//! Exact i32 dot products of many pairs of vectors as a blocked integer
//! GEMM: the vectors are packed once as i16 pairs, columns in panels of
//! [`NR`], and a register-blocked micro-kernel computes [`MR`] × [`NR`]
//! dots at a time with `vpmaddwd` (one broadcast pair of row `i` against a
//! pair of each of 8 columns), with no horizontal sums.
//!
//! Exact everywhere: `vpmaddwd` multiplies i16 pairs and sums each pair
//! into an i32 lane exactly (components lie in ±32767, so a pair is at
//! most 2·32767² < 2^31), and the lanes then add with wrap-around, the same
//! arithmetic modulo 2^32 as the plain loop in [`crate::quantize::dot`].
//! `vpdpwssd` (AVX-512 VNNI, where the CPU has it) fuses the multiply, the
//! pair sum and the add with the same wrap-around, and the portable kernel
//! does the same sums with `wrapping_add`: every kernel gives the same i32
//! for every input, and the tests run each one the CPU has.

use std::ops::Range;

use rayon::prelude::*;

use crate::quantize::Quantized;

/// Rows of one micro-kernel tile.
pub const MR: usize = 6;
/// Columns of one packed panel and of one micro-kernel tile: two vectors
/// of 8 i32 lanes.
pub const NR: usize = 16;
/// Columns per cache block: their panels (`NC · dim · 2` bytes, 384 KB at
/// 384 dimensions) stay in L2 while a block of rows passes over them.
pub const NC: usize = 512;

/// One tile of dots: `MR` rows × `NR` columns.
type Tile = [[i32; NR]; MR];

/// A micro-kernel: the packed words of `MR` rows (one slice per row, so
/// that any rows can make a tile) against one panel, writing the whole tile.
type Kernel = fn(a: [&[u32]; MR], panel: &[u32], tile: &mut Tile);

/// The vectors of a corpus packed for the micro-kernel: each vector as
/// `kp` words of two i16 (a zero appended to odd dimensions), and the same
/// words again in panels of [`NR`] columns, `[pair][column]` within a panel
/// (columns past `n` are zero).
pub struct Packed {
    n: usize,
    kp: usize,
    rows: Vec<u32>,
    panels: Vec<u32>,
}

/// Two i16 in one word, `a` in the low half: the order `vpmaddwd` pairs,
/// and the GPU's packing too.
use crate::matrix::pack_pair as pair;

impl Packed {
    /// Packs every vector of `q` (a copy the size of `q`, twice), in
    /// parallel in the current rayon pool.
    pub fn new(q: &Quantized) -> Self {
        let kp = q.dim.div_ceil(2);
        let word = |i: usize, p: usize| {
            let v = q.row(i);
            pair(v[2 * p], if 2 * p + 1 < v.len() { v[2 * p + 1] } else { 0 })
        };
        let mut rows = vec![0u32; q.n * kp];
        rows.par_chunks_mut(kp.max(1)).enumerate().for_each(|(i, r)| {
            for (p, w) in r.iter_mut().enumerate() {
                *w = word(i, p);
            }
        });
        let mut panels = vec![0u32; q.n.div_ceil(NR) * kp * NR];
        panels
            .par_chunks_mut((kp * NR).max(1))
            .enumerate()
            .for_each(|(c, panel)| {
                for i in c * NR..((c + 1) * NR).min(q.n) {
                    for p in 0..kp {
                        panel[p * NR + i % NR] = word(i, p);
                    }
                }
            });
        Packed {
            n: q.n,
            kp,
            rows,
            panels,
        }
    }

    /// Vectors packed.
    pub fn n(&self) -> usize {
        self.n
    }

    fn row(&self, i: usize) -> &[u32] {
        &self.rows[i * self.kp..(i + 1) * self.kp]
    }

    fn panel(&self, p: usize) -> &[u32] {
        &self.panels[p * self.kp * NR..(p + 1) * self.kp * NR]
    }

    /// `out[r·w + c] = dot(rows[r], cols.start + c)` with `w = cols.len()`,
    /// with the widest kernel this CPU has.
    pub fn dots(&self, rows: &[usize], cols: Range<usize>, out: &mut [i32]) {
        self.dots_with(rows, cols, out, kernel())
    }

    fn dots_with(&self, rows: &[usize], cols: Range<usize>, out: &mut [i32], kernel: Kernel) {
        let w = cols.len();
        assert!(cols.end <= self.n && out.len() >= rows.len() * w);
        if w == 0 || rows.is_empty() {
            return;
        }
        let mut tile = [[0i32; NR]; MR];
        let first = cols.start / NR;
        let last = cols.end.div_ceil(NR);
        // Blocks of panels that stay in L2; within one, each panel stays
        // in L1 while every group of MR rows passes over it.
        for block in (first..last).step_by(NC / NR) {
            for p in block..(block + NC / NR).min(last) {
                let panel = self.panel(p);
                // Columns of this panel inside `cols`, relative to the panel.
                let lo = cols.start.max(p * NR) - p * NR;
                let hi = cols.end.min((p + 1) * NR) - p * NR;
                for (g, group) in rows.chunks(MR).enumerate() {
                    // A short last group repeats its last row (discarded).
                    let a = std::array::from_fn(|r| self.row(group[r.min(group.len() - 1)]));
                    kernel(a, panel, &mut tile);
                    for (r, t) in tile.iter().take(group.len()).enumerate() {
                        let o = (g * MR + r) * w + p * NR + lo - cols.start;
                        out[o..o + hi - lo].copy_from_slice(&t[lo..hi]);
                    }
                }
            }
        }
    }
}

/// The micro-kernel for this CPU, picked once per call of [`Packed::dots`].
fn kernel() -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl") {
        // SAFETY: the CPU was just checked to support both.
        return |a, panel, tile| unsafe { kernel_vnni(a, panel, tile) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just checked to support AVX2.
        return |a, panel, tile| unsafe { kernel_avx2(a, panel, tile) };
    }
    kernel_portable
}

/// The tile with plain integer arithmetic: the same pairs, the same
/// wrap-around sums as `vpmaddwd` and `vpaddd`.
fn kernel_portable(a: [&[u32]; MR], panel: &[u32], tile: &mut Tile) {
    *tile = [[0; NR]; MR];
    let madd = |x: u32, y: u32| {
        let lo = (x as u16 as i16 as i32) * (y as u16 as i16 as i32);
        let hi = ((x >> 16) as u16 as i16 as i32) * ((y >> 16) as u16 as i16 as i32);
        lo.wrapping_add(hi)
    };
    for (p, b) in panel.chunks_exact(NR).enumerate() {
        for (t, row) in tile.iter_mut().zip(&a) {
            let x = row[p];
            for (acc, &y) in t.iter_mut().zip(b) {
                *acc = acc.wrapping_add(madd(x, y));
            }
        }
    }
}

/// The tile with `vpmaddwd`: 12 accumulators (6 rows × 2 vectors of 8
/// columns), two panel loads and six broadcasts per pair of components.
///
/// # Safety
/// The CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(a: [&[u32]; MR], panel: &[u32], tile: &mut Tile) {
    // SAFETY: the caller vouches for AVX2.
    unsafe { tile_x86::<false>(a, panel, tile) }
}

/// [`kernel_avx2`] with `vpdpwssd` (AVX-512 VNNI on 256-bit vectors),
/// which multiplies, sums the pair and adds it to the lane in one
/// instruction, with the same wrap-around.
///
/// # Safety
/// The CPU must have AVX-512 VNNI and VL.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,avx512vnni,avx512vl")]
unsafe fn kernel_vnni(a: [&[u32]; MR], panel: &[u32], tile: &mut Tile) {
    // SAFETY: the caller vouches for VNNI and VL.
    unsafe { tile_x86::<true>(a, panel, tile) }
}

/// The one body of both x86 kernels, inlined into each so that its
/// intrinsics compile with that kernel's instruction set.
///
/// # Safety
/// The CPU must have AVX2, and AVX-512 VNNI and VL when `VNNI`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile_x86<const VNNI: bool>(a: [&[u32]; MR], panel: &[u32], tile: &mut Tile) {
    use std::arch::x86_64::*;
    let kp = panel.len() / NR;
    assert!(a.iter().all(|r| r.len() >= kp));
    let mut acc = [[_mm256_setzero_si256(); 2]; MR];
    let b = panel.as_ptr();
    for p in 0..kp {
        // SAFETY: p < kp, so the panel's words p·NR .. p·NR + 16 and each
        // row's word p are in bounds (checked above); the caller vouches
        // for the instructions.
        unsafe {
            let b0 = _mm256_loadu_si256(b.add(p * NR) as *const __m256i);
            let b1 = _mm256_loadu_si256(b.add(p * NR + 8) as *const __m256i);
            for r in 0..MR {
                let x = _mm256_set1_epi32(*a[r].get_unchecked(p) as i32);
                for (v, y) in acc[r].iter_mut().zip([b0, b1]) {
                    *v = if VNNI {
                        _mm256_dpwssd_epi32(*v, x, y)
                    } else {
                        _mm256_add_epi32(*v, _mm256_madd_epi16(x, y))
                    };
                }
            }
        }
    }
    for (t, v) in tile.iter_mut().zip(&acc) {
        // SAFETY: each row of the tile is 16 i32, two 32-byte stores.
        unsafe {
            _mm256_storeu_si256(t.as_mut_ptr() as *mut __m256i, v[0]);
            _mm256_storeu_si256(t.as_mut_ptr().add(8) as *mut __m256i, v[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn plain(q: &Quantized, rows: &[usize], cols: Range<usize>) -> Vec<i32> {
        let dot = |a: usize, b: usize| {
            let (x, y) = (q.row(a), q.row(b));
            x.iter()
                .zip(y)
                .fold(0i32, |s, (&u, &v)| s.wrapping_add(u as i32 * v as i32))
        };
        rows.iter()
            .flat_map(|&r| cols.clone().map(move |c| dot(r, c)))
            .collect()
    }

    fn check(q: &Quantized, rows: &[usize], cols: Range<usize>) -> Result<(), TestCaseError> {
        let p = Packed::new(q);
        let expect = plain(q, rows, cols.clone());
        for (name, k) in kernels() {
            let mut out = vec![7; rows.len() * cols.len()];
            p.dots_with(rows, cols.clone(), &mut out, k);
            prop_assert_eq!(&out, &expect, "kernel {}", name);
        }
        Ok(())
    }

    /// Every kernel this CPU can run, the portable one included.
    fn kernels() -> Vec<(&'static str, Kernel)> {
        let mut all: Vec<(&'static str, Kernel)> = vec![("portable", kernel_portable)];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            all.push(("avx2", |a, p, t| unsafe { kernel_avx2(a, p, t) }));
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512vnni") && std::arch::is_x86_feature_detected!("avx512vl") {
            all.push(("vnni", |a, p, t| unsafe { kernel_vnni(a, p, t) }));
        }
        all
    }

    fn corpus(n: usize, dim: usize, extreme: bool, seed: u64) -> Quantized {
        let mut rng = fastrand::Rng::with_seed(seed);
        let data = (0..n * dim)
            .map(|_| match extreme {
                true => [32767, -32767, 0, 1][rng.usize(0..4)],
                false => rng.i16(-32767..=32767),
            })
            .collect();
        Quantized { n, dim, data }
    }

    #[test]
    fn extreme_values_and_a_wrapping_sum_match_the_plain_loop() {
        // dim 17 of ±32767: the sums wrap, in both kernels as in the loop.
        let mut q = corpus(23, 17, true, 3);
        q.data[..17].fill(32767);
        q.data[17..34].fill(-32767);
        check(&q, &(0..23).collect::<Vec<_>>(), 0..23).unwrap();
        let p = Packed::new(&q);
        let mut out = [0; 2];
        p.dots(&[0, 1], 0..1, &mut out);
        assert_eq!(out[1], (-17i64 * 32767 * 32767) as i32);
    }

    #[test]
    fn more_columns_than_a_cache_block() {
        let q = corpus(NC + NR + 5, 9, false, 5);
        check(&q, &[0, 3, 7, NC + 1, NC + NR + 4], 0..q.n).unwrap();
        check(&q, &[2, 1], 13..NC + 19).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn any_rows_and_columns_match_the_plain_loop(
            n in 1usize..60, dim in 1usize..40, extreme in any::<bool>(), seed in any::<u64>(),
            picks in proptest::collection::vec(any::<usize>(), 0..15), a in any::<usize>(), b in any::<usize>(),
        ) {
            let q = corpus(n, dim, extreme, seed);
            let rows: Vec<usize> = picks.iter().map(|r| r % n).collect();
            let (a, b) = (a % (n + 1), b % (n + 1));
            check(&q, &rows, a.min(b)..a.max(b))?;
        }
    }
}
