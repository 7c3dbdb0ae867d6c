//! The algorithm's CPU reference: the executable specification.
//!
//! Plain loops, one start at a time, no tricks. Every backend must produce
//! exactly these indices; tests hold them to it.
//!
//! Orderings list the *other* included poems by canonical index (the start is
//! implicit), truncated to `width` entries.

use crate::quantize::{sim16, Quantized};

/// similar(s): all other poems by exact similarity to `s`, descending; ties
/// go to the lower canonical index.
pub fn similar(q: &Quantized, s: usize, width: usize) -> Vec<u32> {
    let mut others: Vec<(i32, usize)> = (0..q.n).filter(|&j| j != s).map(|j| (q.dot(s, j), j)).collect();
    others.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    others.into_iter().take(width).map(|(_, j)| j as u32).collect()
}

/// different(s): the diversity walk. Starting from `[s]`, repeatedly append
/// the unchosen poem whose summed rounded similarity to the chosen ones is
/// lowest (for unit vectors: least similar to their centroid); ties go to the
/// lower canonical index.
pub fn different(q: &Quantized, s: usize, width: usize) -> Vec<u32> {
    different_by(q.n, s, width, |a, c| sim16(q.dot(a, c)))
}

/// [`different`] over any source of the rounded similarity `sim(a, c)`
/// (for example a precomputed matrix).
pub fn different_by(n: usize, s: usize, width: usize, sim: impl Fn(usize, usize) -> i16) -> Vec<u32> {
    let mut chosen = vec![false; n];
    chosen[s] = true;
    let mut order = Vec::with_capacity(width);
    let mut last = s;
    let mut sums = vec![0i32; n];
    while order.len() < width.min(n - 1) {
        for (c, sum) in sums.iter_mut().enumerate() {
            *sum += sim(last, c) as i32;
        }
        let mut best: Option<usize> = None;
        for c in 0..n {
            if !chosen[c] && best.is_none_or(|b| sums[c] < sums[b]) {
                best = Some(c);
            }
        }
        let b = best.expect("an unchosen poem remains");
        chosen[b] = true;
        order.push(b as u32);
        last = b;
    }
    order
}

/// The original formulation, in f64: recompute the centroid of the chosen
/// unit vectors every step and take the candidate with the lowest cosine to
/// it. O(n·d) per step; kept for the benchmark and the agreement tests.
pub fn different_naive_f64(vectors: &[Vec<f64>], s: usize, width: usize) -> Vec<u32> {
    let n = vectors.len();
    let unit: Vec<Vec<f64>> = vectors
        .iter()
        .map(|v| {
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect();
    let dim = unit.first().map_or(0, Vec::len);
    let mut centroid = unit[s].clone();
    let mut chosen = vec![false; n];
    chosen[s] = true;
    let mut order = Vec::with_capacity(width);
    for step in 1..width.min(n - 1) + 1 {
        let c_norm = centroid
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
            .max(f64::MIN_POSITIVE);
        let mut best = (f64::INFINITY, usize::MAX);
        for (j, u) in unit.iter().enumerate() {
            if chosen[j] {
                continue;
            }
            let cos = u.iter().zip(&centroid).map(|(a, b)| a * b).sum::<f64>() / c_norm;
            if cos < best.0 {
                best = (cos, j);
            }
        }
        chosen[best.1] = true;
        order.push(best.1 as u32);
        for (c, x) in centroid.iter_mut().zip(&unit[best.1]) {
            *c = (*c * step as f64 + x) / (step + 1) as f64;
        }
        debug_assert_eq!(centroid.len(), dim);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantize::Quantized;
    use proptest::prelude::*;

    fn unit(v: &[f64]) -> Vec<f64> {
        let n = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    fn cos(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn tiny_corpus_by_hand() {
        // Three directions: 0 and 1 close, 2 opposite to 0.
        let q = Quantized::from_vectors(&[vec![1.0, 0.0], vec![0.9, 0.1], vec![-1.0, 0.05]], 2, false).unwrap();
        assert_eq!(similar(&q, 0, 2), vec![1, 2]);
        assert_eq!(different(&q, 0, 2), vec![2, 1]);
        assert_eq!(similar(&q, 2, 1), vec![1]);
        assert_eq!(different(&q, 0, 0), Vec::<u32>::new());
        let one = Quantized::from_vectors(&[vec![1.0]], 1, false).unwrap();
        assert!(different(&one, 0, 5).is_empty() && similar(&one, 0, 5).is_empty());
    }

    #[test]
    fn ties_go_to_the_lower_index() {
        let q = Quantized::from_vectors(
            &[vec![1.0, 0.0], vec![0.0, 1.0], vec![0.0, 1.0], vec![0.0, 1.0]],
            2,
            false,
        )
        .unwrap();
        assert_eq!(similar(&q, 0, 3), vec![1, 2, 3]);
        assert_eq!(different(&q, 0, 3), vec![1, 2, 3]);
        assert_eq!(similar(&q, 2, 3), vec![1, 3, 0]);
    }

    /// Checks an integer ordering against f64 cosines: every choice must be
    /// optimal in f64 up to the quantisation error accumulated so far.
    fn check_against_f64(vectors: &[Vec<f64>], s: usize, q: &Quantized) {
        let unit: Vec<Vec<f64>> = vectors.iter().map(|v| unit(v)).collect();
        // Per-pair error: component rounding (≤ √d/32767) plus the i16 rounding.
        let per_pair = (q.dim as f64).sqrt() / 32767.0 + 2.0 / 32767.0;
        let sim = similar(q, s, q.n);
        for w in sim.windows(2) {
            let (a, b) = (w[0] as usize, w[1] as usize);
            assert!(cos(&unit[s], &unit[a]) >= cos(&unit[s], &unit[b]) - 2.0 * per_pair);
        }
        let diff = different(q, s, q.n);
        let mut chosen = vec![s];
        for &pick in &diff {
            let score = |c: usize| chosen.iter().map(|&j| cos(&unit[j], &unit[c])).sum::<f64>();
            let best = (0..q.n)
                .filter(|c| !chosen.contains(c))
                .map(score)
                .fold(f64::INFINITY, f64::min);
            let tol = 2.0 * per_pair * chosen.len() as f64;
            assert!(
                score(pick as usize) <= best + tol,
                "step {}: {} > {best}",
                chosen.len(),
                score(pick as usize)
            );
            chosen.push(pick as usize);
        }
    }

    #[test]
    fn agrees_with_f64_on_real_embeddings() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/corpus");
        let corpus = crate::corpus::load(
            &path.join("poems.json"),
            Some(&path.join("embeddings.json")),
            &Default::default(),
        )
        .unwrap();
        let vecs: Vec<Vec<f64>> = corpus.vectors.iter().flatten().take(120).cloned().collect();
        let q = Quantized::from_vectors(&vecs, corpus.dimension, false).unwrap();
        // The integer similarity tracks the f64 cosine within 1e-4.
        let mut worst = 0.0f64;
        for a in 0..q.n {
            for b in 0..q.n {
                let exact = cos(&unit(&vecs[a]), &unit(&vecs[b]));
                worst = worst.max((q.dot(a, b) as f64 / (32767.0 * 32767.0) - exact).abs());
            }
        }
        assert!(worst < 1e-4, "max |int − f64| = {worst}");
        for s in [0, 7, 119] {
            check_against_f64(&vecs, s, &q);
        }
        // With no near-ties, the naive f64 walk picks the same poems early on.
        let naive = different_naive_f64(&vecs, 0, 10);
        assert_eq!(naive[..3], different(&q, 0, 10)[..3]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn agrees_with_f64_on_random_corpora(
            n in 1usize..24, dim in 1usize..12, seed in any::<u64>()
        ) {
            let (vecs, q) = crate::quantize::random_corpus(n, dim, 2, seed);
            for s in 0..n {
                check_against_f64(&vecs, s, &q);
                let d = different(&q, s, n);
                let mut seen = d.clone();
                seen.push(s as u32);
                seen.sort_unstable();
                prop_assert_eq!(seen, (0..n as u32).collect::<Vec<_>>());
            }
        }
    }
}
