//! Themes: short texts ("grief", "the sea at night") embedded like poems.
//! Each theme gets a similar ordering of every poem and a different walk
//! seeded by its vector (see [`crate::reference::theme_different`]).
//!
//! A themes file is a small corpus in the same layouts as the poems (its
//! key is the theme's name, its text what was embedded), so the same loader
//! reads it and the same `embed` client gives it vectors.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::corpus::{self, Corpus, LoadOptions};
use crate::cpu;
use crate::quantize::{self, dot, sim16, Quantized, MAX_ROW};

/// Vectors with a name each (themes, palette colours), quantised exactly as
/// the poems they go with.
#[derive(Debug, Clone)]
pub struct Labelled {
    /// Keys from the file: the names.
    pub names: Vec<String>,
    /// The text each vector came from (empty where the file has none).
    pub texts: Vec<String>,
    pub vectors: Quantized,
}

/// Loads a small corpus of named vectors (`what`: "themes", "palette") for
/// `corpus`: same dimension, same model where both are known, normalised
/// about the corpus mean when `center`. Every entry must have a usable vector.
pub fn load_labelled(
    what: &str,
    path: &Path,
    embeddings: Option<&Path>,
    corpus: &Corpus,
    center: bool,
) -> Result<Labelled> {
    let small =
        corpus::load(path, embeddings, &LoadOptions::default()).with_context(|| format!("cannot load the {what}"))?;
    let source = embeddings.unwrap_or(path).display();
    if let Some(p) = small.report.unusable.first() {
        bail!(
            "{source}: {what} entry {:?} has no usable vector ({}); give every entry an \"embedding\", or embed the file with `diversity-gpu embed --poems {}`",
            p.key,
            p.reason,
            path.display()
        );
    }
    if small.dimension != corpus.dimension {
        bail!(
            "{source}: the {what} have {}-d vectors, the poems {}-d (model {:?}); embed the {what} with the poems' model",
            small.dimension,
            corpus.dimension,
            corpus.model
        );
    }
    if small.model != "unknown" && corpus.model != "unknown" && !corpus::same_model(&small.model, &corpus.model) {
        bail!(
            "{source}: the {what} were embedded by {:?}, the poems by {:?}; embed the {what} with the poems' model",
            small.model,
            corpus.model
        );
    }
    if small.poems.len() > u16::MAX as usize {
        bail!(
            "{}: {} {what}, at most {} are supported",
            path.display(),
            small.poems.len(),
            u16::MAX
        );
    }
    let vecs: Vec<Vec<f64>> = small.vectors.into_iter().flatten().collect();
    let mean = center.then(|| quantize::mean(&included_vectors(corpus), corpus.dimension));
    let (vectors, zero) = Quantized::normalise_about(&vecs, corpus.dimension, mean.as_deref());
    if let Some(&i) = zero.first() {
        bail!(
            "{source}: {what} entry {:?} equals the poems' mean vector, so it has no direction with --center",
            small.poems[i].key
        );
    }
    Ok(Labelled {
        names: small.poems.iter().map(|p| p.key.clone()).collect(),
        texts: small.poems.into_iter().map(|p| p.text).collect(),
        vectors,
    })
}

/// The vectors the poems' own normalisation centres on (the usable ones).
fn included_vectors(corpus: &Corpus) -> Vec<Vec<f64>> {
    corpus.vectors.iter().flatten().cloned().collect()
}

/// Where a cache's themes came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub themes: PathBuf,
    pub embeddings: Option<PathBuf>,
}

/// Entries per theme ordering: every poem (no start is implicit), cut by
/// `--top-k` and by the exact running sums' limit.
pub fn width(included: usize, top_k: Option<usize>) -> usize {
    top_k.unwrap_or(usize::MAX).min(included).min(MAX_ROW)
}

/// The walks' initial sums: `sim16(dot(theme, poem))`, one row of `q.n` per
/// theme. Computed here, once, for every backend.
pub fn seeds(q: &Quantized, themes: &Quantized) -> Vec<i16> {
    let mut out = Vec::with_capacity(themes.n * q.n);
    for t in 0..themes.n {
        out.extend((0..q.n).map(|c| sim16(dot(themes.row(t), q.row(c)))));
    }
    out
}

/// Every theme's similar ordering (`width` each) into `out`.
pub fn similar_rows(q: &Quantized, themes: &Quantized, width: usize, out: &mut [u32]) {
    let mut keys = Vec::new();
    let mut dots = vec![0i32; q.n];
    for (t, row) in out.chunks_mut(width.max(1)).take(themes.n).enumerate() {
        for (j, d) in dots.iter_mut().enumerate() {
            *d = dot(themes.row(t), q.row(j));
        }
        // No poem is the theme, so none is skipped.
        cpu::similar_row(usize::MAX, &dots, row, &mut keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::SimMatrix;
    use crate::reference;
    use proptest::prelude::*;

    fn random_themes(t: usize, dim: usize, seed: u64) -> Quantized {
        let vecs: Vec<Vec<f64>> = (0..t)
            .map(|i| {
                let mut rng = fastrand::Rng::with_seed(seed ^ (i as u64 + 1));
                (0..dim)
                    .map(|k| rng.i32(-3..=3) as f64 + (k == 0) as i32 as f64 * 0.5)
                    .collect()
            })
            .collect();
        Quantized::from_vectors(&vecs, dim, false).unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The CPU backend's theme orderings are the reference's, byte for byte.
        #[test]
        fn cpu_theme_orderings_match_the_reference(
            n in 1usize..70, dim in 1usize..12, levels in 1i32..4, seed in any::<u64>(), k in 0usize..80, t in 1usize..5,
        ) {
            let q = crate::quantize::random_corpus(n, dim, levels, seed).1;
            let themes = random_themes(t, dim, seed);
            let w = width(n, Some(k));
            let m = SimMatrix::compute(&q);
            let mut diff = vec![0; t * w];
            cpu::seeded_rows(&m, &seeds(&q, &themes), w, &mut diff);
            let mut sim = vec![0; t * w];
            similar_rows(&q, &themes, w, &mut sim);
            for i in 0..t {
                prop_assert_eq!(&diff[i * w..(i + 1) * w], &reference::theme_different(&q, themes.row(i), w)[..]);
                prop_assert_eq!(&sim[i * w..(i + 1) * w], &reference::theme_similar(&q, themes.row(i), w)[..]);
            }
        }
    }

    #[test]
    fn a_themes_file_is_loaded_like_a_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let poems = dir.path().join("poems.jsonl");
        std::fs::write(
            &poems,
            "{\"id\":\"a\",\"text\":\"x\",\"embedding\":[1,0]}\n{\"id\":\"b\",\"text\":\"y\",\"embedding\":[0,2]}\n",
        )
        .unwrap();
        let corpus = corpus::load(&poems, None, &Default::default()).unwrap();
        let themes = dir.path().join("themes.jsonl");
        std::fs::write(&themes, "{\"id\":\"grief\",\"text\":\"grief\",\"embedding\":[3,4]}\n").unwrap();
        let t = load_labelled("themes", &themes, None, &corpus, false).unwrap();
        assert_eq!(
            (t.names, t.texts),
            (vec!["grief".to_string()], vec!["grief".to_string()])
        );
        assert_eq!(t.vectors.data, vec![19660, 26214]);
        // Centred about the poems' mean (0.5, 1): (2.5, 3) normalised.
        let c = load_labelled("themes", &themes, None, &corpus, true).unwrap();
        assert_eq!(
            c.vectors.data,
            Quantized::from_vectors(&[vec![2.5, 3.0]], 2, false).unwrap().data
        );
        std::fs::write(&themes, "{\"id\":\"sea\",\"text\":\"sea\",\"embedding\":[1,2,3]}\n").unwrap();
        let e = format!(
            "{:#}",
            load_labelled("themes", &themes, None, &corpus, false).unwrap_err()
        );
        assert!(
            e.contains("themes.jsonl") && e.contains("3-d") && e.contains("2-d"),
            "{e}"
        );
        std::fs::write(
            &themes,
            "{\"id\":\"grief\",\"embedding\":[3,4]}\n{\"id\":\"sea\",\"text\":\"sea\"}\n",
        )
        .unwrap();
        let e = format!(
            "{:#}",
            load_labelled("themes", &themes, None, &corpus, false).unwrap_err()
        );
        assert!(e.contains("\"sea\"") && e.contains("no embedding"), "{e}");
    }

    #[test]
    fn theme_orderings_list_every_poem_up_to_the_sums_limit() {
        assert_eq!(width(10, None), 10);
        assert_eq!(width(10, Some(4)), 4);
        assert_eq!(width(70_000, None), MAX_ROW);
    }
}
