//! The walk's fused step: `sums += row`, the lowest new sum and its lowest
//! index, in one pass over the sums (one or two walks side by side).
//!
//! Two ways to keep chosen poems out of the minimum:
//! - **masked**: a chosen sum holds [`CHOSEN`] and each entry's update is
//!   masked by a compare (exact for any length);
//! - **unmasked**: a chosen sum is set to a sentinel that no real sum can
//!   reach and rows are added to it like to any other, which saves the
//!   compare and the blend. `Kernel::new` picks it only where the proof
//!   in `UNMASKED_MAX_STEPS` holds.
//!
//! The first index of the minimum comes from the same pass: the sums go by
//! in blocks of `BLOCK` entries, each block's minimum is folded into the
//! running one only when strictly lower, so the first block that holds the
//! minimum is known and only that block is searched afterwards.

use crate::matrix::CHOSEN;

/// One walk step: `sums += row` (for the unchosen), returning the lowest
/// new sum and its lowest index.
pub(crate) type Step = fn(&mut [i32], &[i16]) -> (i32, usize);
/// The same step for two walks at once (their rows stream side by side).
pub(crate) type Step2 = fn(&mut [i32], &[i16], &mut [i32], &[i16]) -> [(i32, usize); 2];
/// The same step for four walks at once: more rows in flight, each walk's
/// sums still in L2 (4 × 60 KB on 15,000 poems).
pub(crate) type Step4 = fn([&mut [i32]; 4], [&[i16]; 4]) -> [(i32, usize); 4];

/// Entries per block of the fused search: small enough that the search
/// afterwards is cheap, large enough that folding a block's minimum (a few
/// shuffles) costs nothing beside it.
pub(crate) const BLOCK: usize = 128;

/// The largest magnitude of a row entry or a seed value: `sim16` and the
/// themes' seeds are i16.
const M: i64 = 32_768;

/// The longest walk, in steps (rows added after the seed), for which the
/// unmasked step is exact.
///
/// Proof. After `t ≤ A` steps a real (unchosen) sum is a seed value plus
/// `t` row entries, so `|sum| ≤ (A + 1)·M`. A chosen sum is set to
/// `S = i32::MAX − A·M` ([`Kernel::chosen`]) and then receives at most `A`
/// entries, so it stays in `[S − A·M, S + A·M]`: it never passes
/// `i32::MAX` (no overflow), and it stays above every real sum when
/// `S − A·M > (A + 1)·M`, i.e. `(3A + 1)·M < 2^31`. Then it is never the
/// minimum and never ties with it (some poem is unchosen whenever a step is
/// taken), so the picks are those of the masked step. With `M = 32,768`
/// that holds up to `A = 21,844` (checked in the tests below); longer walks
/// (more than 21,845 poems with full orderings) use the masked step.
pub(crate) const UNMASKED_MAX_STEPS: usize = 21_844;

/// Instruction sets a kernel can be built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain Rust, vectorised by the compiler for the baseline target.
    Portable,
    /// AVX2 intrinsics.
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Isa {
    /// The widest set this CPU has.
    pub(crate) fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
        Isa::Portable
    }

    /// Every set this CPU can run (for the tests).
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Portable];
        if Isa::detect() != Isa::Portable {
            v.push(Isa::detect());
        }
        v
    }
}

/// A walk's step functions and the value its chosen sums are set to.
#[derive(Clone, Copy)]
pub(crate) struct Kernel {
    /// The one-walk step.
    pub step: Step,
    /// The two-walk step.
    pub step2: Step2,
    /// The four-walk step.
    pub step4: Step4,
    /// What a chosen poem's sum (and the padding's) is set to.
    pub chosen: i32,
}

impl Kernel {
    /// The fastest exact kernel on this CPU for walks of up to `steps` steps.
    pub(crate) fn new(steps: usize) -> Kernel {
        Kernel::with(Isa::detect(), steps > UNMASKED_MAX_STEPS, steps)
    }

    /// A given variant; `steps` is the walk's length (unmasked only).
    pub(crate) fn with(isa: Isa, masked: bool, steps: usize) -> Kernel {
        let chosen = if masked {
            CHOSEN
        } else {
            assert!(
                steps <= UNMASKED_MAX_STEPS,
                "the unmasked step is exact up to {UNMASKED_MAX_STEPS} steps"
            );
            (i32::MAX as i64 - steps as i64 * M) as i32
        };
        let (step, step2, step4): (Step, Step2, Step4) = match (isa, masked) {
            (Isa::Portable, true) => (
                |s, r| portable::<1, true>([s], [r])[0],
                |a, ra, b, rb| portable::<2, true>([a, b], [ra, rb]),
                portable::<4, true>,
            ),
            (Isa::Portable, false) => (
                |s, r| portable::<1, false>([s], [r])[0],
                |a, ra, b, rb| portable::<2, false>([a, b], [ra, rb]),
                portable::<4, false>,
            ),
            // SAFETY (all six): `Isa::Avx2` is only built where the CPU has AVX2.
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, true) => (
                |s, r| unsafe { avx2::steps::<1, true>([s], [r]) }[0],
                |a, ra, b, rb| unsafe { avx2::steps::<2, true>([a, b], [ra, rb]) },
                |s, r| unsafe { avx2::steps::<4, true>(s, r) },
            ),
            #[cfg(target_arch = "x86_64")]
            (Isa::Avx2, false) => (
                |s, r| unsafe { avx2::steps::<1, false>([s], [r]) }[0],
                |a, ra, b, rb| unsafe { avx2::steps::<2, false>([a, b], [ra, rb]) },
                |s, r| unsafe { avx2::steps::<4, false>(s, r) },
            ),
        };
        Kernel {
            step,
            step2,
            step4,
            chosen,
        }
    }

    /// Marks `p` chosen.
    #[inline(always)]
    pub(crate) fn choose(&self, sums: &mut [i32], p: usize) {
        sums[p] = self.chosen;
    }

    /// Re-marks what [`seed`] marked [`CHOSEN`] (`skip` and the padding
    /// after the first `n` entries) with this kernel's chosen value, and
    /// returns `best` unchanged (the chosen value is above every real sum).
    pub(crate) fn pin(&self, sums: &mut [i32], n: usize, skip: Option<usize>, best: (i32, usize)) -> (i32, usize) {
        sums[n..].fill(self.chosen);
        if let Some(s) = skip {
            sums[s] = self.chosen;
        }
        best
    }
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

/// Index of the first element equal to `v` (`usize::MAX` if none).
#[inline(always)]
pub(crate) fn first_equal(sums: &[i32], v: i32) -> usize {
    sums.iter().position(|&x| x == v).unwrap_or(usize::MAX)
}

/// Adds one row entry to a sum: masked (a [`CHOSEN`] sum stays) or plain.
/// Wrapping, because a masked kernel may add to a chosen value below
/// `i32::MAX` in tests of the unmasked one; the proof above rules it out
/// in a walk.
#[inline(always)]
fn add<const MASK: bool>(s: i32, r: i16) -> i32 {
    if MASK {
        let open = -((s != CHOSEN) as i32);
        s.wrapping_add(r as i32 & open)
    } else {
        s.wrapping_add(r as i32)
    }
}

/// `K` walks' steps in plain Rust; each block's minimum in a few lanes so
/// that the compiler can vectorise the pass.
#[inline(always)]
fn portable<const K: usize, const MASK: bool>(sums: [&mut [i32]; K], rows: [&[i16]; K]) -> [(i32, usize); K] {
    const W: usize = 8;
    let n = sums[0].len();
    let mut best = [i32::MAX; K];
    let mut at = [0usize; K];
    for b in (0..n).step_by(BLOCK) {
        let end = (b + BLOCK).min(n);
        for k in 0..K {
            let mut acc = [i32::MAX; W];
            let (s, r) = (&mut sums[k][b..end], &rows[k][b..end]);
            for (sc, rc) in s.chunks_mut(W).zip(r.chunks(W)) {
                for l in 0..sc.len() {
                    sc[l] = add::<MASK>(sc[l], rc[l]);
                    acc[l] = acc[l].min(sc[l]);
                }
            }
            let h = acc.iter().copied().min().unwrap_or(i32::MAX);
            if h < best[k] {
                (best[k], at[k]) = (h, b);
            }
        }
    }
    std::array::from_fn(|k| {
        let end = (at[k] + BLOCK).min(n);
        (
            best[k],
            at[k].saturating_add(first_equal(&sums[k][at[k]..end], best[k])),
        )
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{first_equal, BLOCK, CHOSEN};
    use std::arch::x86_64::*;

    /// How far ahead the rows are prefetched, in bytes: a step's row is a
    /// fresh stretch of the matrix that the hardware prefetcher has not seen.
    const PREFETCH_BYTES: usize = 1024;

    /// 8 row entries, widened to i32, added to 8 sums at `i`; returns the new sums.
    #[inline(always)]
    unsafe fn add8<const MASK: bool>(s: *mut i32, r: *const i16, i: usize) -> __m256i {
        // SAFETY (caller): 8 entries at `i` are in bounds of both.
        unsafe {
            let x = _mm256_cvtepi16_epi32(_mm_loadu_si128(r.add(i) as *const __m128i));
            let v = _mm256_loadu_si256(s.add(i) as *const __m256i);
            let x = if MASK {
                let chosen = _mm256_cmpeq_epi32(v, _mm256_set1_epi32(CHOSEN));
                _mm256_andnot_si256(chosen, x)
            } else {
                x
            };
            let v = _mm256_add_epi32(v, x);
            _mm256_storeu_si256(s.add(i) as *mut __m256i, v);
            v
        }
    }

    #[inline(always)]
    fn hmin(v: __m256i) -> i32 {
        // SAFETY: register shuffles only; callers run with AVX2 enabled.
        unsafe {
            let m = _mm_min_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
            let m = _mm_min_epi32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
            let m = _mm_min_epi32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
            _mm_cvtsi128_si32(m)
        }
    }

    /// Index of the first of `s` equal to `v`, eight at a time.
    #[inline(always)]
    fn first_equal8(s: &[i32], v: i32) -> usize {
        let mut i = 0;
        // SAFETY: each load is of 8 entries inside `s`.
        unsafe {
            let vv = _mm256_set1_epi32(v);
            while i + 8 <= s.len() {
                let e = _mm256_cmpeq_epi32(_mm256_loadu_si256(s.as_ptr().add(i) as *const __m256i), vv);
                let bits = _mm256_movemask_ps(_mm256_castsi256_ps(e));
                if bits != 0 {
                    return i + bits.trailing_zeros() as usize;
                }
                i += 8;
            }
        }
        first_equal(&s[i..], v).saturating_add(i)
    }

    /// `K` walks' steps: per 32 entries (one 64-byte line of row) four
    /// 8-lane adds per walk, two running minima each.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn steps<const K: usize, const MASK: bool>(
        mut sums: [&mut [i32]; K],
        rows: [&[i16]; K],
    ) -> [(i32, usize); K] {
        let n = sums[0].len();
        for k in 0..K {
            assert!(sums[k].len() == n && rows[k].len() >= n && n.is_multiple_of(8));
        }
        let s: [*mut i32; K] = sums.each_mut().map(|x| x.as_mut_ptr());
        let r: [*const i16; K] = std::array::from_fn(|k| rows[k].as_ptr());
        let mut best = [i32::MAX; K];
        let mut at = [0usize; K];
        // The start of each row at once, before the first loads need it.
        for rk in r {
            for j in (0..PREFETCH_BYTES.min(2 * n)).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>((rk as *const i8).wrapping_add(j));
            }
        }
        let mut b = 0;
        while b < n {
            let end = (b + BLOCK).min(n);
            let mut lo = [_mm256_set1_epi32(i32::MAX); K];
            let mut hi = lo;
            let mut i = b;
            // SAFETY: every access is at `i..i + 32` (or `i + 8`) ≤ end ≤ n,
            // inside both the sums and the rows; the pointers come from
            // distinct `&mut` slices; a prefetch never faults.
            unsafe {
                while i + 32 <= end {
                    for k in 0..K {
                        _mm_prefetch::<_MM_HINT_T0>((r[k] as *const i8).wrapping_add(2 * i + PREFETCH_BYTES));
                        let v0 = add8::<MASK>(s[k], r[k], i);
                        let v1 = add8::<MASK>(s[k], r[k], i + 8);
                        let v2 = add8::<MASK>(s[k], r[k], i + 16);
                        let v3 = add8::<MASK>(s[k], r[k], i + 24);
                        lo[k] = _mm256_min_epi32(lo[k], _mm256_min_epi32(v0, v1));
                        hi[k] = _mm256_min_epi32(hi[k], _mm256_min_epi32(v2, v3));
                    }
                    i += 32;
                }
                while i < end {
                    for k in 0..K {
                        lo[k] = _mm256_min_epi32(lo[k], add8::<MASK>(s[k], r[k], i));
                    }
                    i += 8;
                }
            }
            for k in 0..K {
                // One compare per block; the shuffles only when it is lower.
                let m = _mm256_min_epi32(lo[k], hi[k]);
                let lower = _mm256_cmpgt_epi32(_mm256_set1_epi32(best[k]), m);
                if _mm256_movemask_ps(_mm256_castsi256_ps(lower)) != 0 {
                    (best[k], at[k]) = (hmin(m), b);
                }
            }
            b = end;
        }
        std::array::from_fn(|k| {
            let end = (at[k] + BLOCK).min(n);
            (
                best[k],
                at[k].saturating_add(first_equal8(&sums[k][at[k]..end], best[k])),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every variant: instruction set × masked or not.
    fn kernels(steps: usize) -> Vec<(Isa, bool, Kernel)> {
        let mut v = Vec::new();
        for isa in Isa::available() {
            v.push((isa, true, Kernel::with(isa, true, steps)));
            v.push((isa, false, Kernel::with(isa, false, steps)));
        }
        v
    }

    /// The plain step: add where open (all when unmasked), then the lowest
    /// sum and its first index.
    fn plain(sums: &mut [i32], row: &[i16], masked: bool) -> (i32, usize) {
        for (s, &r) in sums.iter_mut().zip(row) {
            if !(masked && *s == CHOSEN) {
                *s = s.wrapping_add(r as i32);
            }
        }
        let min = sums.iter().copied().min().unwrap_or(CHOSEN);
        (min, first_equal(sums, min))
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
        for isa in Isa::available() {
            let k = Kernel::with(isa, true, 0);
            let mut s = sums.clone();
            assert_eq!((k.step)(&mut s, &row), (min, first), "{isa:?}");
            assert_eq!((k.step)(&mut expect.clone(), &[0; 48]), (min, first), "{isa:?}");
            assert_eq!(s, expect, "{isa:?}");
        }
    }

    #[test]
    fn the_unmasked_bound_is_the_proof() {
        let bound = |a: i64| (3 * a + 1) * M < 1 << 31;
        let a = UNMASKED_MAX_STEPS as i64;
        assert!(bound(a) && !bound(a + 1));
        // The sentinel's whole range, at the longest walk allowed.
        let s = Kernel::with(Isa::Portable, false, UNMASKED_MAX_STEPS).chosen as i64;
        assert!(s + a * M <= i32::MAX as i64);
        assert!(s - a * M > (a + 1) * M);
        // A chosen sum driven down by the most negative entries for the
        // whole walk stays above a real sum driven up by the largest ones.
        let (mut chosen, mut real) = (s as i32, i16::MAX as i32);
        for _ in 0..a {
            chosen = chosen.checked_add(i16::MIN as i32).unwrap();
            real = real.checked_add(i16::MAX as i32).unwrap();
        }
        assert!(chosen > real);
        // …and the largest entries for the whole walk do not overflow it.
        assert!((s as i32).checked_add((a * (M - 1)) as i32).is_some());
    }

    #[test]
    #[should_panic(expected = "unmasked step is exact")]
    fn the_unmasked_kernel_refuses_longer_walks() {
        Kernel::with(Isa::Portable, false, UNMASKED_MAX_STEPS + 1);
    }

    #[test]
    fn long_walks_get_the_masked_kernel() {
        assert_ne!(Kernel::new(UNMASKED_MAX_STEPS).chosen, CHOSEN);
        assert_eq!(Kernel::new(UNMASKED_MAX_STEPS + 1).chosen, CHOSEN);
    }

    fn entry(rng: &mut fastrand::Rng, spread: i32) -> i16 {
        match rng.u8(0..10) {
            0 => i16::MIN,
            1 => i16::MAX,
            _ => rng.i32(-spread..=spread) as i16,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Both steps of every variant against the plain step, across
        /// several blocks, ragged tails (any multiple of 8) and ties.
        #[test]
        fn every_step_matches_the_plain_one(groups in 0usize..200, spread in prop::sample::select(vec![0, 2, 40, 32767]), seed in any::<u64>()) {
            let n = groups * 8;
            let mut rng = fastrand::Rng::with_seed(seed);
            for (isa, masked, k) in kernels(100) {
                let mut sums: [Vec<i32>; 2] = std::array::from_fn(|_| {
                    (0..n).map(|_| if rng.u8(0..4) == 0 { k.chosen } else { entry(&mut rng, spread) as i32 * 3 }).collect()
                });
                // A row may be longer than the sums (the matrix's rows are padded).
                let rows: [Vec<i16>; 2] = std::array::from_fn(|_| (0..n + 16).map(|_| entry(&mut rng, spread)).collect());
                let mut expect = sums.clone();
                let want: Vec<(i32, usize)> = (0..2).map(|w| plain(&mut expect[w], &rows[w], masked)).collect();
                let [a, b] = &mut sums;
                let got = (k.step2)(a, &rows[0], b, &rows[1]);
                prop_assert_eq!(&got[..], &want[..], "{:?} masked {}", isa, masked);
                prop_assert_eq!(&sums, &expect);
                let [a, b] = &mut sums;
                let (mut c, mut d) = (a.clone(), b.clone());
                let four = (k.step4)([a, b, &mut c, &mut d], [&rows[0], &rows[1], &rows[0], &rows[1]]);
                let want4: Vec<(i32, usize)> = (0..4).map(|w| plain(&mut expect[w % 2].clone(), &rows[w % 2], masked)).collect();
                prop_assert_eq!(&four[..], &want4[..], "four walks, {:?} masked {}", isa, masked);
                for w in 0..2 {
                    plain(&mut expect[w], &rows[w], masked);
                }
                prop_assert_eq!(&sums, &expect);
                prop_assert_eq!((&c, &d), (&expect[0], &expect[1]));
                let one = (k.step)(&mut sums[0], &rows[0]);
                prop_assert_eq!(one, plain(&mut expect[0], &rows[0], masked));
                prop_assert_eq!(&sums, &expect);
            }
        }
    }
}
