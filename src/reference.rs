//! The algorithm's CPU reference: the executable specification.
//!
//! Plain loops, one start at a time, no tricks. Every backend must produce
//! exactly these indices; tests hold them to it.
//!
//! Orderings list the *other* included poems by canonical index (the start is
//! implicit), truncated to `width` entries.

use crate::quantize::{dot, sim16, Quantized};

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
    let sums = (0..n).map(|c| sim(s, c) as i32).collect();
    walk_by(sums, chosen, width, sim)
}

/// similar(theme): every poem by exact similarity to the theme's quantised
/// vector `theme`, descending; ties go to the lower canonical index. No poem
/// is left out: the theme is not one of them.
pub fn theme_similar(q: &Quantized, theme: &[i16], width: usize) -> Vec<u32> {
    let mut all: Vec<(i32, usize)> = (0..q.n).map(|j| (dot(theme, q.row(j)), j)).collect();
    all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    all.into_iter().take(width).map(|(_, j)| j as u32).collect()
}

/// different(theme): the diversity walk seeded by a theme. The running sums
/// start as the rounded similarities `sim16(dot(theme, c))` and no poem is
/// chosen yet; from there every step is the poem walk's step.
pub fn theme_different(q: &Quantized, theme: &[i16], width: usize) -> Vec<u32> {
    theme_different_by(&theme_seed(q, theme), width, |a, c| sim16(q.dot(a, c)))
}

/// [`theme_different`] from the theme's seed sums, over any source of the
/// rounded similarity `sim(a, c)` (for example a precomputed matrix).
pub fn theme_different_by(seed: &[i16], width: usize, sim: impl Fn(usize, usize) -> i16) -> Vec<u32> {
    let sums = seed.iter().map(|&s| s as i32).collect();
    walk_by(sums, vec![false; seed.len()], width, sim)
}

/// The rounded similarities of every poem to a theme: a theme walk's
/// initial sums, the same on every backend.
pub fn theme_seed(q: &Quantized, theme: &[i16]) -> Vec<i16> {
    (0..q.n).map(|c| sim16(dot(theme, q.row(c)))).collect()
}

/// The palette colour nearest to poem `i`: the highest exact similarity,
/// ties to the first colour.
pub fn nearest_color(q: &Quantized, palette: &Quantized, i: usize) -> usize {
    let mut best = (i32::MIN, 0);
    for c in 0..palette.n {
        let d = dot(palette.row(c), q.row(i));
        if d > best.0 {
            best = (d, c);
        }
    }
    best.1
}

/// The walk itself: repeatedly append the unchosen candidate with the lowest
/// sum (ties to the lower index), then add its row to every sum.
fn walk_by(mut sums: Vec<i32>, mut chosen: Vec<bool>, width: usize, sim: impl Fn(usize, usize) -> i16) -> Vec<u32> {
    let open = chosen.iter().filter(|&&c| !c).count();
    let mut order = Vec::with_capacity(width.min(open));
    while order.len() < width.min(open) {
        let mut best: Option<usize> = None;
        for c in 0..sums.len() {
            if !chosen[c] && best.is_none_or(|b| sums[c] < sums[b]) {
                best = Some(c);
            }
        }
        let b = best.expect("an unchosen poem remains");
        chosen[b] = true;
        order.push(b as u32);
        for (c, sum) in sums.iter_mut().enumerate() {
            *sum += sim(b, c) as i32;
        }
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
        let corpus = crate::corpus::bundled_for_tests();
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

    /// A theme whose vector is poem `p`'s: its similar ordering starts with
    /// `p` (or an identical vector of lower index), and its walk is `p`'s own
    /// walk until the step where it chooses `p` itself.
    fn check_theme_equal_to_poem(q: &Quantized, p: usize) -> usize {
        let theme = q.row(p).to_vec();
        let sim = theme_similar(q, &theme, q.n);
        assert_eq!(q.dot(p, sim[0] as usize), q.dot(p, p));
        assert!(sim[0] as usize <= p);
        let walk = theme_different(q, &theme, q.n);
        let own = different(q, p, q.n);
        let at = walk
            .iter()
            .position(|&c| c as usize == p)
            .expect("the walk reaches every poem");
        assert_eq!(walk[..at], own[..at], "poem {p}: the walks part before step {at}");
        at
    }

    #[test]
    fn a_theme_equal_to_a_poem_follows_that_poem() {
        let corpus = crate::corpus::bundled_for_tests();
        let q = crate::quantize::prepare(&corpus, false).vectors;
        for p in [0, 17, q.n - 1] {
            // The bundled poems' vectors are distinct: the poem itself comes first.
            assert_eq!(theme_similar(&q, q.row(p), 3)[0] as usize, p);
            let at = check_theme_equal_to_poem(&q, p);
            // A poem is least like itself last: the walk reaches it late.
            assert!(at > q.n / 2, "poem {p} chosen at step {at}");
        }
    }

    #[test]
    fn a_theme_walk_by_hand() {
        // Theme along x: poem 2 (opposite) first, then the one least like {theme, 2}.
        let q = Quantized::from_vectors(&[vec![1.0, 0.0], vec![0.0, 1.0], vec![-1.0, 0.0]], 2, false).unwrap();
        let theme = q.row(0).to_vec();
        assert_eq!(theme_similar(&q, &theme, 3), vec![0, 1, 2]);
        assert_eq!(theme_seed(&q, &theme), vec![32766, 0, -32766]);
        // Sums after choosing 2: [0, 0, -] → 0 (lower index), then 1.
        assert_eq!(theme_different(&q, &theme, 3), vec![2, 0, 1]);
        assert_eq!(theme_different(&q, &theme, 1), vec![2]);
        let palette = Quantized::from_vectors(&[vec![0.0, 1.0], vec![1.0, 0.1], vec![1.0, 0.1]], 2, false).unwrap();
        assert_eq!(
            (0..3).map(|i| nearest_color(&q, &palette, i)).collect::<Vec<_>>(),
            vec![1, 0, 0]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn themes_equal_to_poems_follow_them(n in 1usize..24, dim in 1usize..8, seed in any::<u64>()) {
            let (_, q) = crate::quantize::random_corpus(n, dim, 2, seed);
            for p in 0..n {
                check_theme_equal_to_poem(&q, p);
            }
        }

        #[test]
        fn a_theme_walk_chooses_every_poem_once(n in 1usize..24, dim in 1usize..8, seed in any::<u64>(), k in 0usize..30) {
            let (_, q) = crate::quantize::random_corpus(n, dim, 2, seed);
            let mut rng = fastrand::Rng::with_seed(seed);
            let theme: Vec<i16> = (0..dim).map(|_| rng.i16(-20000..20000)).collect();
            let w = theme_different(&q, &theme, k);
            prop_assert_eq!(w.len(), k.min(n));
            let mut seen = w.clone();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), w.len());
            // The first choice is the poem least like the theme.
            if let Some(&first) = w.first() {
                let seeds = theme_seed(&q, &theme);
                prop_assert_eq!(seeds[first as usize], *seeds.iter().min().unwrap());
            }
            prop_assert_eq!(theme_similar(&q, &theme, k).len(), k.min(n));
        }
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
