//! The multi-threaded CPU backend: the reference's arithmetic, made fast.
//!
//! The rounded similarity matrix is computed once (n × n i16, about 2 bytes
//! per candidate update); each walk then streams one row per step through a
//! fused "add the row and track the minimum" pass that the compiler
//! vectorises. Results are identical to [`crate::reference`] for any thread
//! count, because every value is an exact integer and ties are broken by
//! index, not by the order work happens in.

use std::ops::Range;

use rayon::prelude::*;

pub mod gemm;
pub mod kernels;
pub mod on_the_fly;
pub mod select;
pub mod walk;

use crate::matrix::{padded, sim16};
use crate::quantize::Quantized;
pub use gemm::Packed;
use walk::{seed, Kernel};

/// The rounded similarity matrix, row-major with rows padded to
/// [`padded`](crate::matrix::padded)`(n)` entries (padding is zero).
pub struct SimMatrix {
    pub n: usize,
    pub stride: usize,
    pub data: Vec<i16>,
}

impl SimMatrix {
    /// Computes every `sim16(dot(i, j))` with the blocked GEMM, in
    /// parallel over blocks of rows. The matrix is symmetric, so each block
    /// computes only its columns from its own first row on, and writes the
    /// columns past the block into the later rows as well.
    pub fn compute(q: &Quantized) -> Self {
        let n = q.n;
        let stride = padded(n);
        let mut data = vec![0i16; n * stride];
        let packed = Packed::new(q);
        let out = SharedRows(data.as_mut_ptr());
        (0..n.div_ceil(MATRIX_BLOCK)).into_par_iter().for_each_init(
            || vec![0i32; MATRIX_BLOCK * gemm::NC],
            // SAFETY: block `b` writes the entries (i, j) with i in the
            // block and j from the block's first row on, and their mirrors
            // (j, i) for j past the block: each entry of the n × stride
            // matrix is written by exactly one block (see `fill_block`).
            |dots, b| unsafe { fill_block(&packed, &out, stride, b, dots) },
        );
        SimMatrix { n, stride, data }
    }

    /// Row `i` (with padding).
    #[inline]
    pub fn row(&self, i: usize) -> &[i16] {
        &self.data[i * self.stride..(i + 1) * self.stride]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 2
    }
}

/// The matrix's data, written by many threads at disjoint entries.
struct SharedRows(*mut i16);
// SAFETY: only `fill_block` writes through it, at disjoint entries.
unsafe impl Sync for SharedRows {}

/// Fills block `b` of [`MATRIX_BLOCK`] rows: entry (i, j) for every row
/// `i` of the block and every `j ≥ first` (its first row), and (j, i) too
/// for `j` past the block. An entry (r, c) is thus written by the block of
/// `min(r, c)` when both lie in different blocks, and by the block of `r`
/// otherwise: once.
///
/// # Safety
/// `out` points at `n × stride` entries (`n = packed.n()`), and no other
/// call fills the same `b` at the same time.
unsafe fn fill_block(packed: &Packed, out: &SharedRows, stride: usize, b: usize, dots: &mut [i32]) {
    let n = packed.n();
    let first = b * MATRIX_BLOCK;
    let rows: Vec<usize> = (first..(first + MATRIX_BLOCK).min(n)).collect();
    let end = first + rows.len();
    for c in (first..n).step_by(gemm::NC) {
        let cols = c..(c + gemm::NC).min(n);
        let w = cols.len();
        packed.dots(&rows, cols.clone(), dots);
        for (r, d) in dots.chunks(w).take(rows.len()).enumerate() {
            // SAFETY: row first + r, columns c .. c + w, inside the matrix.
            let row = unsafe { std::slice::from_raw_parts_mut(out.0.add((first + r) * stride + c), w) };
            for (x, &v) in row.iter_mut().zip(d) {
                *x = sim16(v);
            }
        }
        // The mirror: column j of this tile is row j's entries first..end.
        for j in cols.start.max(end)..cols.end {
            // SAFETY: row j, columns first .. end, inside the matrix.
            let row = unsafe { std::slice::from_raw_parts_mut(out.0.add(j * stride + first), end - first) };
            for (r, x) in row.iter_mut().enumerate() {
                *x = sim16(dots[r * w + j - c]);
            }
        }
    }
}

/// Runs the diversity walk from `s`, writing `out.len()` indices.
/// `sums` is scratch of length `m.stride`.
pub fn walk(m: &SimMatrix, s: usize, out: &mut [u32], sums: &mut [i32]) {
    walk_with(m, s, out, sums, Kernel::new(out.len().saturating_sub(1)));
}

/// Seeds the sums with the start's row (start and padding chosen) and
/// returns the first pick.
fn seed_start(m: &SimMatrix, s: usize, sums: &mut [i32], k: &Kernel) -> (i32, usize) {
    let best = seed(sums, m.row(s)[..m.n].iter().map(|&r| r as i32), Some(s));
    k.pin(sums, m.n, Some(s), best)
}

#[inline]
fn walk_with(m: &SimMatrix, s: usize, out: &mut [u32], sums: &mut [i32], k: Kernel) {
    if out.is_empty() {
        return;
    }
    let best = seed_start(m, s, sums, &k);
    walk_from(m, best, out, sums, k);
}

/// A walk whose sums start as `values` (one per poem) with no poem
/// chosen: a theme's walk. `sums` is scratch of length `m.stride`.
pub fn walk_seeded(m: &SimMatrix, values: &[i16], out: &mut [u32], sums: &mut [i32]) {
    walk_seeded_with(m, values, out, sums, Kernel::new(out.len().saturating_sub(1)));
}

fn walk_seeded_with(m: &SimMatrix, values: &[i16], out: &mut [u32], sums: &mut [i32], k: Kernel) {
    if out.is_empty() {
        return;
    }
    let best = seed(sums, values.iter().map(|&r| r as i32), None);
    let best = k.pin(sums, m.n, None, best);
    walk_from(m, best, out, sums, k);
}

#[inline]
fn walk_from(m: &SimMatrix, mut best: (i32, usize), out: &mut [u32], sums: &mut [i32], k: Kernel) {
    for t in 0..out.len() {
        let p = best.1;
        out[t] = p as u32;
        k.choose(sums, p);
        if t + 1 < out.len() {
            best = (k.step)(sums, m.row(p));
        }
    }
}

/// `K` walks of equal length in lockstep, `step` taking one step of all:
/// their rows stream side by side, which hides more of each row's latency.
fn walk_group<const K: usize>(
    m: &SimMatrix,
    starts: &[usize],
    mut out: [&mut [u32]; K],
    mut sums: [&mut [i32]; K],
    k: &Kernel,
    step: impl Fn([&mut [i32]; K], [&[i16]; K]) -> [(i32, usize); K],
) {
    let w = out[0].len();
    if w == 0 {
        return;
    }
    let mut best: [(i32, usize); K] = std::array::from_fn(|j| seed_start(m, starts[j], sums[j], k));
    for t in 0..w {
        for (o, (s, b)) in out.iter_mut().zip(sums.iter_mut().zip(&best)) {
            o[t] = b.1 as u32;
            k.choose(s, b.1);
        }
        if t + 1 < w {
            best = step(sums.each_mut().map(|s| &mut **s), best.map(|b| m.row(b.1)));
        }
    }
}

/// similar(s) into `out` (its length is the width), from `dots[j] = dot(s, j)`.
/// `keys` is scratch.
pub fn similar_row(s: usize, dots: &[i32], out: &mut [u32], keys: &mut Vec<u64>) {
    if select::is_short(out.len(), dots.len()) {
        // The dot's top 16 bits order the candidates coarsely.
        select::first_similar(dots.len(), s, out, keys, |j| (dots[j] >> 16) as i16, |j| dots[j]);
    } else {
        select::sort_similar(s, dots, out, keys);
    }
}

/// Starts per task of [`similar_rows`] for short widths: every block of
/// the packed columns is read once per this many rows.
pub const SIMILAR_BLOCK: usize = 4 * gemm::MR;

/// Rows per task of [`SimMatrix::compute`].
const MATRIX_BLOCK: usize = 8 * gemm::MR;

/// similar orderings for a range of starts, in parallel, in blocks of
/// starts whose dots come from the GEMM; `out` holds
/// `starts.len() * width` indices.
pub fn similar_rows(q: &Quantized, starts: Range<usize>, width: usize, out: &mut [u32], threads: &rayon::ThreadPool) {
    if width == 0 {
        return;
    }
    let packed = threads.install(|| Packed::new(q));
    similar_rows_packed(&packed, q, starts, width, out, threads);
}

/// [`similar_rows`] with the vectors already packed (`packed` is
/// `Packed::new(q)`): callers that come back chunk after chunk pack once.
pub fn similar_rows_packed(
    packed: &Packed,
    q: &Quantized,
    starts: Range<usize>,
    width: usize,
    out: &mut [u32],
    threads: &rayon::ThreadPool,
) {
    assert_eq!(packed.n(), q.n, "packed from another corpus");
    if width == 0 {
        return;
    }
    threads.install(|| {
        // Sorting whole rows costs far more than their dots: small tasks
        // then keep the threads evenly busy.
        let block = match select::is_short(width, q.n) {
            true => SIMILAR_BLOCK,
            false => gemm::MR,
        };
        out.par_chunks_mut(width * block)
            .zip(starts.into_par_iter().step_by(block))
            .for_each_init(
                || (Vec::new(), vec![0i32; block * q.n]),
                |(keys, dots), (rows, s0)| {
                    let block: Vec<usize> = (s0..s0 + rows.len() / width).collect();
                    packed.dots(&block, 0..q.n, dots);
                    for (r, row) in rows.chunks_mut(width).enumerate() {
                        similar_row(s0 + r, &dots[r * q.n..(r + 1) * q.n], row, keys);
                    }
                },
            );
    });
}

/// [`similar_rows`] with the matrix `m` of `q` at hand: for a short width
/// each row's rounded similarities pick the few candidates (see
/// [`select`]), and only their dots are computed. Long widths, and
/// vectors whose rounding could wrap (then it would not keep the order of
/// the dots), take [`similar_rows`].
pub fn similar_rows_matrix(
    q: &Quantized,
    m: &SimMatrix,
    starts: Range<usize>,
    width: usize,
    out: &mut [u32],
    threads: &rayon::ThreadPool,
) {
    if !matrix_selects(q, width) {
        return similar_rows(q, starts, width, out, threads);
    }
    threads.install(|| {
        out.par_chunks_mut(width)
            .zip(starts.into_par_iter())
            .for_each_init(Vec::new, |keys, (row, s)| {
                let sims = &m.row(s)[..q.n];
                select::first_similar(q.n, s, row, keys, |j| sims[j], |j| q.dot(s, j));
            });
    });
}

/// Whether [`similar_rows_matrix`] picks the candidates from the matrix
/// for this width (otherwise it computes every dot).
pub fn matrix_selects(q: &Quantized, width: usize) -> bool {
    width > 0 && select::is_short(width, q.n) && rounding_keeps_order(q)
}

/// Whether `sim16` never decreases as the dot increases for every pair of
/// `q`: true unless a dot can come within 2^14 of `i32::MAX` (where
/// `dot + 2^14` wraps). By Cauchy–Schwarz no dot exceeds the largest
/// squared length; quantised unit vectors stay near 32767².
fn rounding_keeps_order(q: &Quantized) -> bool {
    let longest = (0..q.n)
        .map(|i| q.row(i).iter().map(|&x| (x as i64) * (x as i64)).sum::<i64>())
        .max()
        .unwrap_or(0);
    longest <= (i32::MAX - (1 << 14)) as i64
}

/// The CPU backend: the matrix, and the pool that walks it.
pub struct CpuBackend {
    matrix: SimMatrix,
    pool: rayon::ThreadPool,
}

impl CpuBackend {
    /// Computes the similarity matrix with `pool`, which later runs the walks.
    pub fn new(q: &Quantized, pool: rayon::ThreadPool) -> Self {
        let matrix = pool.install(|| SimMatrix::compute(q));
        CpuBackend { matrix, pool }
    }

    /// The matrix (for tests and the benchmark).
    pub fn matrix(&self) -> &SimMatrix {
        &self.matrix
    }

    /// Threads used.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Walks seeded by `seeds` (see [`seeded_rows`]) into `out`.
    pub fn seeded(&self, seeds: &[i16], width: usize, out: &mut [u32]) {
        self.pool.install(|| seeded_rows(&self.matrix, seeds, width, out));
    }

    /// different orderings for a range of starts into `out`.
    pub fn different(&self, starts: Range<usize>, width: usize, out: &mut [u32]) {
        if width == 0 {
            return;
        }
        self.pool.install(|| different_rows(&self.matrix, starts, width, out));
    }
}

/// Walks seeded by `seeds` (a row of `m.n` initial sums per walk, no poem
/// chosen: the themes' walks), `width` each, in the current rayon pool.
pub fn seeded_rows(m: &SimMatrix, seeds: &[i16], width: usize, out: &mut [u32]) {
    seeded_rows_with(m, seeds, width, out, Kernel::new(width.saturating_sub(1)));
}

fn seeded_rows_with(m: &SimMatrix, seeds: &[i16], width: usize, out: &mut [u32], k: Kernel) {
    if width == 0 || m.n == 0 {
        return;
    }
    out.par_chunks_mut(width).zip(seeds.par_chunks(m.n)).for_each_init(
        || vec![0i32; m.stride],
        |sums, (row, seed)| walk_seeded_with(m, seed, row, sums, k),
    );
}

/// different orderings for a range of starts, in the current rayon pool.
pub fn different_rows(m: &SimMatrix, starts: Range<usize>, width: usize, out: &mut [u32]) {
    different_rows_with(m, starts, width, out, Kernel::new(width.saturating_sub(1)));
}

fn different_rows_with(m: &SimMatrix, starts: Range<usize>, width: usize, out: &mut [u32], k: Kernel) {
    if width == 0 {
        return;
    }
    // Four starts per task; the last task's one to three walk by two and one.
    out.par_chunks_mut(4 * width)
        .zip(starts.into_par_iter().step_by(4))
        .for_each_init(
            || [(); 4].map(|_| vec![0i32; m.stride]),
            |[a, b, c, d], (rows, s)| {
                let mut o = rows.chunks_mut(width);
                let starts: Vec<usize> = (s..s + o.len()).collect();
                match [o.next(), o.next(), o.next(), o.next()] {
                    [Some(oa), Some(ob), Some(oc), Some(od)] => {
                        walk_group(m, &starts, [oa, ob, oc, od], [a, b, c, d], &k, k.step4)
                    }
                    [Some(oa), Some(ob), oc, _] => {
                        walk_group(m, &starts, [oa, ob], [a, b], &k, |[a, b], [ra, rb]| {
                            (k.step2)(a, ra, b, rb)
                        });
                        if let Some(oc) = oc {
                            walk_with(m, starts[2], oc, c, k);
                        }
                    }
                    [Some(oa), ..] => walk_with(m, s, oa, a, k),
                    _ => {}
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use proptest::prelude::*;

    fn pool(n: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap()
    }

    fn random(n: usize, dim: usize, levels: i32, seed: u64) -> Quantized {
        crate::quantize::random_corpus(n, dim, levels, seed).1
    }

    fn all(q: &Quantized, threads: usize, width: usize) -> (Vec<u32>, Vec<u32>) {
        let b = CpuBackend::new(q, pool(threads));
        let mut d = vec![0; q.n * width];
        b.different(0..q.n, width, &mut d);
        let mut s = vec![0; q.n * width];
        similar_rows(q, 0..q.n, width, &mut s, &b.pool);
        let mut from_matrix = vec![0; q.n * width];
        similar_rows_matrix(q, b.matrix(), 0..q.n, width, &mut from_matrix, &b.pool);
        assert_eq!(s, from_matrix, "the matrix's candidates give the same orderings");
        (s, d)
    }

    fn reference_all(q: &Quantized, width: usize) -> (Vec<u32>, Vec<u32>) {
        let s = (0..q.n).flat_map(|s| reference::similar(q, s, width)).collect();
        let d = (0..q.n).flat_map(|s| reference::different(q, s, width)).collect();
        (s, d)
    }

    #[test]
    fn thread_counts_give_identical_output() {
        let q = random(203, 24, 3, 7);
        let w = q.n - 1;
        let one = all(&q, 1, w);
        assert_eq!(one, all(&q, 2, w));
        assert_eq!(one, all(&q, 5, w));
        assert_eq!(one, reference_all(&q, w));
    }

    /// A matrix of random entries (extremes among them; a small `spread`
    /// makes many ties), padding zero as [`SimMatrix::compute`] leaves it.
    fn random_matrix(n: usize, spread: i32, rng: &mut fastrand::Rng) -> SimMatrix {
        let stride = padded(n);
        let mut data = vec![0i16; n * stride];
        for row in data.chunks_mut(stride.max(1)) {
            for x in &mut row[..n] {
                *x = match rng.u8(0..10) {
                    0 => i16::MIN,
                    1 => i16::MAX,
                    _ => rng.i32(-spread..=spread) as i16,
                };
            }
        }
        SimMatrix { n, stride, data }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Every walk kernel (portable and AVX2, masked and unmasked) over
        /// random matrices, across several blocks of the fused search, for
        /// start walks (pairs and a lone last one) and themes' seeded walks.
        #[test]
        fn every_walk_kernel_matches_the_reference(n in 1usize..1300, spread in prop::sample::select(vec![0, 1, 5, 32767]), seed in any::<u64>(), wf in 0.0f64..=1.0, s0 in 0usize..1300) {
            let mut rng = fastrand::Rng::with_seed(seed);
            let m = random_matrix(n, spread, &mut rng);
            let sim = |a: usize, c: usize| m.row(a)[c];
            let w = ((n - 1) as f64 * wf) as usize;
            // Up to seven starts: a group of four, a pair and a lone walk.
            let starts = s0 % n..(s0 % n + 1 + s0 % 7).min(n);
            let want: Vec<u32> = starts.clone().flat_map(|s| reference::different_by(n, s, w, sim)).collect();
            let tw = (n as f64 * wf) as usize;
            let seeds: Vec<i16> = (0..2 * n).map(|_| rng.i32(-spread..=spread) as i16).collect();
            let want_seeded: Vec<u32> = seeds.chunks(n).flat_map(|sd| reference::theme_different_by(sd, tw, sim)).collect();
            for isa in walk::Isa::available() {
                for masked in [false, true] {
                    let mut got = vec![0; starts.len() * w];
                    different_rows_with(&m, starts.clone(), w, &mut got, Kernel::with(isa, masked, w.saturating_sub(1)));
                    prop_assert_eq!(&got, &want, "{:?} masked {}", isa, masked);
                    let mut got = vec![0; 2 * tw];
                    seeded_rows_with(&m, &seeds, tw, &mut got, Kernel::with(isa, masked, tw.saturating_sub(1)));
                    prop_assert_eq!(&got, &want_seeded, "seeded, {:?} masked {}", isa, masked);
                }
            }
        }
    }

    #[test]
    fn the_symmetric_matrix_is_every_rounded_dot() {
        // Several blocks of rows and of columns, none of them whole, odd dim.
        let q = random(gemm::NC + MATRIX_BLOCK + 5, 7, 3, 11);
        let m = pool(2).install(|| SimMatrix::compute(&q));
        for i in 0..q.n {
            let expect: Vec<i16> = (0..m.stride)
                .map(|j| if j < q.n { sim16(q.dot(i, j)) } else { 0 })
                .collect();
            assert_eq!(m.row(i), &expect[..], "row {i}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn matches_the_reference(n in 1usize..70, dim in 1usize..20, levels in 1i32..4, seed in any::<u64>(), k in 0usize..80) {
            let q = random(n, dim, levels, seed);
            let w = k.min(n - 1);
            prop_assert_eq!(all(&q, 2, w), reference_all(&q, w));
        }
    }
}
