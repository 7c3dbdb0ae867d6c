//! Normalised integer embeddings: the one representation every backend reads.
//!
//! Normalising and rounding happen once, here, on the CPU, in a fixed order of
//! f64 operations. From then on all arithmetic is exact integer arithmetic, so
//! the orderings are identical on every backend, thread count and GPU vendor.

use crate::corpus::{Corpus, Problem, Reason};

/// Scale of a unit vector's components: `q = round(x · 32767)`.
pub const SCALE: f64 = 32767.0;

/// The longest ordering whose running sums fit in i32: a sum adds at most
/// `MAX_ROW - 1 + 1` rows of magnitude ≤ 2^15, and 65 535 · 2^15 < 2^31.
pub const MAX_ROW: usize = 65_535;

/// Quantised unit vectors of the included poems, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantized {
    /// Number of vectors.
    pub n: usize,
    /// Components per vector.
    pub dim: usize,
    /// `n * dim` components.
    pub data: Vec<i16>,
}

impl Quantized {
    /// The quantised vector of included poem `i`.
    #[inline]
    pub fn row(&self, i: usize) -> &[i16] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Exact similarity: the i32 dot product. By Cauchy–Schwarz no partial
    /// sum exceeds `(32767 + √dim/2)²`, far below 2^31.
    #[inline]
    pub fn dot(&self, a: usize, b: usize) -> i32 {
        dot(self.row(a), self.row(b))
    }

    /// Quantises f64 vectors (each must be non-zero and finite).
    pub fn from_vectors(vectors: &[Vec<f64>], dim: usize, center: bool) -> Result<Self, (usize, Reason)> {
        let (q, zero) = Self::normalise(vectors, dim, center);
        match zero.first() {
            Some(&i) => Err((i, Reason::Zero)),
            None => Ok(q),
        }
    }

    /// Quantises f64 vectors, centred on the mean of all of them when asked;
    /// vectors with no direction left (zero, or equal to the mean) are left
    /// out and their indices returned. Any finite non-zero vector keeps its
    /// direction, whatever its magnitude (see [`unit_direction`]).
    pub fn normalise(vectors: &[Vec<f64>], dim: usize, center: bool) -> (Self, Vec<usize>) {
        let mean = center.then(|| mean(vectors, dim));
        Self::normalise_about(vectors, dim, mean.as_deref())
    }

    /// [`Quantized::normalise`] about a given centre (a corpus's mean, for
    /// the themes and palette that go with it), or none.
    pub fn normalise_about(vectors: &[Vec<f64>], dim: usize, mean: Option<&[f64]>) -> (Self, Vec<usize>) {
        let mut data = Vec::with_capacity(vectors.len() * dim);
        let mut zero = Vec::new();
        let mut centered = vec![0.0f64; dim];
        for (i, v) in vectors.iter().enumerate() {
            for (c, (x, m)) in centered
                .iter_mut()
                .zip(v.iter().zip(mean.into_iter().flatten().chain(std::iter::repeat(&0.0))))
            {
                *c = x - m;
            }
            if centered.iter().any(|c| !c.is_finite()) {
                // x − m overflowed (|x|, |m| near f64::MAX): halving both
                // keeps the direction and cannot overflow.
                for (c, (x, m)) in centered
                    .iter_mut()
                    .zip(v.iter().zip(mean.into_iter().flatten().chain(std::iter::repeat(&0.0))))
                {
                    *c = x * 0.5 - m * 0.5;
                }
            }
            match unit_direction(&mut centered) {
                true => data.extend(centered.iter().map(|&x| quantize(x))),
                false => zero.push(i),
            }
        }
        let n = vectors.len() - zero.len();
        (Quantized { n, dim, data }, zero)
    }
}

/// `x · 2^k`, exact whenever the result is a normal number; `k` may exceed
/// the exponent range of one `powi` factor.
fn scale_pow2(x: f64, mut k: i32) -> f64 {
    let mut x = x;
    while k > 1000 {
        x *= 2f64.powi(1000);
        k -= 1000;
    }
    while k < -1000 {
        x *= 2f64.powi(-1000);
        k += 1000;
    }
    x * 2f64.powi(k)
}

/// The power of two that brings `max` (finite, non-zero) into [0.5, 2).
fn exponent_to_unit(max: f64) -> i32 {
    -(max.log2().floor() as i32) - 1
}

/// Divides `v` by its length, in place; false when `v` is all zero. It
/// first scales `v` by a power of two so that its largest component is
/// near 1: squaring can then neither overflow (1e200) nor underflow
/// (1e-200), and since scaling by a power of two is exact, the result for
/// every ordinary vector is bit for bit what `x / |x|` gives.
fn unit_direction(v: &mut [f64]) -> bool {
    let max = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return false;
    }
    let k = exponent_to_unit(max);
    for x in v.iter_mut() {
        *x = scale_pow2(*x, k);
    }
    let norm = v.iter().fold(0.0f64, |acc, x| acc + x * x).sqrt();
    for x in v.iter_mut() {
        *x /= norm;
    }
    true
}

#[inline]
fn quantize(x: f64) -> i16 {
    // |x| ≤ 1 after normalisation, so this never saturates.
    (x * SCALE).round() as i16
}

/// The mean of all vectors, summed at a power-of-two scale that keeps the
/// sum finite (exact, so ordinary corpora get the plain mean's bits).
pub fn mean(vectors: &[Vec<f64>], dim: usize) -> Vec<f64> {
    let max = vectors.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    if max == 0.0 {
        return vec![0.0; dim];
    }
    let k = exponent_to_unit(max);
    let mut sum = vec![0.0f64; dim];
    for v in vectors {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += scale_pow2(*x, k);
        }
    }
    let n = vectors.len() as f64;
    sum.iter().map(|s| scale_pow2(s / n, -k)).collect()
}

/// Exact i32 dot product of two quantised vectors.
#[inline(always)]
pub fn dot(a: &[i16], b: &[i16]) -> i32 {
    // Written as independent lanes so that it vectorises (pmaddwd on x86).
    let mut acc = [0i32; 16];
    let (ca, ra) = a.as_chunks::<16>();
    let (cb, rb) = b.as_chunks::<16>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..16 {
            acc[l] += x[l] as i32 * y[l] as i32;
        }
    }
    let mut tail = 0i32;
    for (x, y) in ra.iter().zip(rb) {
        tail += *x as i32 * *y as i32;
    }
    acc.iter().sum::<i32>() + tail
}

/// The similarity used in the diversity walk's running sums: the dot product
/// rounded to i16, `(dot + 2^14) >> 15`, clamped to the i16 range (only
/// near-identical vectors can reach the clamp).
#[inline]
pub fn sim16(dot: i32) -> i16 {
    ((dot + (1 << 14)) >> 15).clamp(i16::MIN as i32, i16::MAX as i32) as i16
}

/// The included poems of a corpus, in canonical order, with their vectors.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Keys of the included poems, in canonical (input) order.
    pub keys: Vec<String>,
    pub vectors: Quantized,
    /// Poems left out here, with the true reason (reported).
    pub dropped: Vec<Problem>,
}

/// Normalises and quantises every usable vector of the corpus.
pub fn prepare(corpus: &Corpus, center: bool) -> Prepared {
    let mut keys = Vec::new();
    let mut vecs = Vec::new();
    for (p, v) in corpus.poems.iter().zip(&corpus.vectors) {
        if let Ok(v) = v {
            keys.push(p.key.clone());
            vecs.push(v.clone());
        }
    }
    // Only --center can leave a vector with no direction (one equal to the mean).
    let (vectors, zero) = Quantized::normalise(&vecs, corpus.dimension, center);
    let reason = if center { Reason::EqualsMean } else { Reason::Zero };
    let dropped = zero
        .iter()
        .map(|&i| Problem {
            key: keys[i].clone(),
            reason: reason.clone(),
        })
        .collect();
    let zero: std::collections::HashSet<usize> = zero.into_iter().collect();
    let keys = keys
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !zero.contains(i))
        .map(|(_, k)| k)
        .collect();
    Prepared { keys, vectors, dropped }
}

/// Random corpora for tests: small integer components, so exact ties and
/// duplicate vectors are common. Returns the vectors and their quantisation.
#[cfg(test)]
pub(crate) fn random_corpus(n: usize, dim: usize, levels: i32, seed: u64) -> (Vec<Vec<f64>>, Quantized) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let vecs: Vec<Vec<f64>> = (0..n)
        .map(|_| loop {
            let v: Vec<f64> = (0..dim).map(|_| rng.i32(-levels..=levels) as f64).collect();
            if v.iter().any(|&x| x != 0.0) {
                break v;
            }
        })
        .collect();
    let q = Quantized::from_vectors(&vecs, dim, false).expect("non-zero vectors");
    (vecs, q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantised_unit_vectors_have_the_expected_scale() {
        let q = Quantized::from_vectors(&[vec![3.0, 4.0], vec![-1.0, 0.0]], 2, false).unwrap();
        assert_eq!(q.data, vec![19660, 26214, -32767, 0]);
        assert_eq!(q.dot(1, 1), 32767 * 32767);
        // 32767² / 2^15 rounds to 32766: a unit self-similarity.
        assert_eq!(sim16(q.dot(1, 1)), 32766);
        assert_eq!(sim16(q.dot(0, 1)), sim16(-19660 * 32767));
    }

    #[test]
    fn dot_handles_lengths_not_divisible_by_lanes() {
        for len in [1, 15, 16, 17, 33, 384] {
            let a: Vec<i16> = (0..len).map(|i| (i * 97 % 200) as i16 - 100).collect();
            let b: Vec<i16> = (0..len).map(|i| (i * 31 % 150) as i16 - 75).collect();
            let naive: i32 = a.iter().zip(&b).map(|(x, y)| *x as i32 * *y as i32).sum();
            assert_eq!(dot(&a, &b), naive);
        }
    }

    #[test]
    fn sim16_rounds_half_up_and_clamps() {
        assert_eq!(sim16(16384), 1);
        assert_eq!(sim16(16383), 0);
        assert_eq!(sim16(-16384), 0);
        assert_eq!(sim16(-16385), -1);
        assert_eq!(sim16(i32::MAX - (1 << 14)), i16::MAX);
        assert_eq!(sim16(-(1 << 30) - (1 << 25)), i16::MIN);
    }

    #[test]
    fn centering_subtracts_the_mean() {
        let q = Quantized::from_vectors(&[vec![1.0, 1.0], vec![1.0, 3.0]], 2, true).unwrap();
        assert_eq!(q.data, vec![0, -32767, 0, 32767]);
        assert!(Quantized::from_vectors(&[vec![1.0, 1.0]], 2, true).is_err());
        // A vector equal to the mean has no direction: left out, reported.
        let (q, zero) = Quantized::normalise(&[vec![1.0, 1.0], vec![1.0, 3.0], vec![1.0, 2.0]], 2, true);
        assert_eq!(zero, vec![2]);
        assert_eq!((q.n, q.data), (2, vec![0, -32767, 0, 32767]));
    }

    #[test]
    fn any_finite_non_zero_vector_keeps_its_direction() {
        let plain = Quantized::from_vectors(&[vec![3.0, 4.0], vec![-1.0, 2.0]], 2, false).unwrap();
        for scale in [1e200, 1e-200, 1e300, 1e-310, 1e-320] {
            let v = [vec![3.0 * scale, 4.0 * scale], vec![-scale, 2.0 * scale]];
            let q = Quantized::from_vectors(&v, 2, false).unwrap();
            assert_eq!(q.data, plain.data, "scale {scale:e}");
        }
        // Components of wildly different sizes in one corpus, centred.
        let v = [vec![1e300, -1e300], vec![-1e300, 1e300], vec![1e-300, 2e-300]];
        let (q, zero) = Quantized::normalise(&v, 2, true);
        assert!(zero.is_empty());
        assert_eq!(q.n, 3);
        // Overflowing differences: x − m with opposite signs near f64::MAX.
        let v = [vec![f64::MAX, 1.0], vec![-f64::MAX, 1.0], vec![-f64::MAX, 1.0]];
        let (q, zero) = Quantized::normalise(&v, 2, true);
        assert!(zero.is_empty());
        assert_eq!(&q.data[..2], &[32767, 0]);
    }

    #[test]
    fn ordinary_vectors_get_exactly_the_plain_division() {
        let (vecs, q) = random_corpus(50, 17, 1000, 9);
        let mut expect = Vec::new();
        for v in &vecs {
            let norm = v.iter().fold(0.0f64, |a, x| a + x * x).sqrt();
            expect.extend(v.iter().map(|x| quantize(x / norm)));
        }
        assert_eq!(q.data, expect);
    }
}
