//! Synthetic clustered corpora for the scale benchmark and its figures:
//! `clusters` random centres, each vector a centre plus noise, so that (as
//! with real embeddings) poems come in topics and a few lie far out.
//! Deterministic for a seed; streamed, so a 100k-poem corpus never sits in
//! memory as f64.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use diversity_gpu::quantize::Quantized;

/// The shape of a synthetic corpus.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub n: usize,
    pub dim: usize,
    pub clusters: usize,
    pub seed: u64,
}

/// Noise around a centre, relative to the centres' spread.
const NOISE: f64 = 0.6;

/// The vectors, one at a time, in order.
pub fn vectors(shape: Shape) -> impl Iterator<Item = Vec<f64>> {
    let mut rng = fastrand::Rng::with_seed(shape.seed);
    let centres: Vec<Vec<f64>> = (0..shape.clusters.max(1))
        .map(|_| (0..shape.dim).map(|_| normal(&mut rng)).collect())
        .collect();
    (0..shape.n).map(move |_| {
        let c = &centres[rng.usize(..centres.len())];
        c.iter().map(|x| x + NOISE * normal(&mut rng)).collect()
    })
}

/// An approximately normal deviate (the sum of four uniforms, centred and
/// scaled to unit variance): cheap and deterministic on every platform.
fn normal(rng: &mut fastrand::Rng) -> f64 {
    let s: f64 = (0..4).map(|_| rng.f64()).sum();
    (s - 2.0) * 3f64.sqrt()
}

/// The quantised corpus, exactly as `precompute` would make it from the
/// JSON Lines file [`write_jsonl`] writes (same rounding to 5 decimals).
pub fn quantized(shape: Shape) -> Quantized {
    let mut data = Vec::with_capacity(shape.n * shape.dim);
    for v in vectors(shape) {
        let v: Vec<f64> = v.iter().map(|x| format!("{x:.5}").parse().expect("a number")).collect();
        let q = Quantized::from_vectors(&[v], shape.dim, false).expect("a non-zero vector");
        data.extend_from_slice(&q.data);
    }
    Quantized {
        n: shape.n,
        dim: shape.dim,
        data,
    }
}

/// Writes the corpus as JSON Lines (`{"id", "text", "embedding"}`), through
/// a temporary file renamed into place.
pub fn write_jsonl(path: &Path, shape: Shape) -> Result<()> {
    let tmp = diversity_gpu::fs::temp_file_beside(path)?;
    let mut w = std::io::BufWriter::new(tmp);
    for (i, v) in vectors(shape).enumerate() {
        let nums: Vec<String> = v.iter().map(|x| format!("{x:.5}")).collect();
        writeln!(
            w,
            "{{\"id\": \"s{i:07}\", \"text\": \"synthetic poem {i}\", \"embedding\": [{}]}}",
            nums.join(",")
        )?;
    }
    let tmp = w.into_inner().map_err(|e| e.into_error())?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_and_the_quantised_corpus_agree() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let shape = Shape {
            n: 50,
            dim: 12,
            clusters: 4,
            seed: 7,
        };
        write_jsonl(&path, shape).unwrap();
        let corpus = diversity_gpu::corpus::load(&path, None, &Default::default()).unwrap();
        let prepared = diversity_gpu::quantize::prepare(&corpus, false);
        assert_eq!(prepared.vectors, quantized(shape));
        assert_eq!(prepared.keys[49], "s0000049");
    }

    #[test]
    fn poems_cluster() {
        let shape = Shape {
            n: 400,
            dim: 32,
            clusters: 4,
            seed: 1,
        };
        let q = quantized(shape);
        // Each poem's nearest neighbour is far closer than a typical pair.
        let mean_pair = (1..q.n).map(|j| q.dot(0, j) as f64).sum::<f64>() / (q.n - 1) as f64;
        let best = (1..q.n).map(|j| q.dot(0, j)).max().unwrap() as f64;
        assert!(best > mean_pair + 0.3 * 32767.0 * 32767.0, "{best} vs {mean_pair}");
    }
}
