//! Selecting a similar ordering's first `w` poems without sorting all n.
//!
//! Every candidate has a coarse i16 value that never decreases as its dot
//! increases (its rounded similarity from the matrix row, or the dot's top
//! 16 bits). Two 256-bin histograms over those values find the largest
//! threshold that at least `w` candidates reach; the first `w` of the
//! ordering are among them (each has a dot at least the `w`-th largest, so
//! a coarse value at least the threshold), and only they are keyed and
//! sorted: about `w` keys, instead of n.

/// Sort key for similar orderings: ascending key = descending dot, then
/// ascending index.
#[inline]
pub fn similar_key(d: i32, j: usize) -> u64 {
    let flipped = !((d as u32) ^ 0x8000_0000);
    ((flipped as u64) << 32) | j as u64
}

/// `c` as a u16 in the same order (the sign bit flipped).
#[inline(always)]
fn biased(c: i16) -> u16 {
    (c as u16) ^ 0x8000
}

/// The bin holding the `k`-th largest value, counting down from the top
/// bin, and how many values lie in the bins above it.
fn kth_bin(hist: &[u32; 256], k: usize) -> (usize, usize) {
    let mut above = 0;
    for b in (0..256).rev() {
        let h = hist[b] as usize;
        if above + h >= k {
            return (b, above);
        }
        above += h;
    }
    unreachable!("fewer than k values")
}

/// The largest `t` such that at least `k` of `coarse(j)` for `j < n`,
/// `j != skip`, are ≥ `t`. Needs `1 ≤ k ≤` that many candidates.
pub fn threshold(n: usize, skip: usize, k: usize, coarse: impl Fn(usize) -> i16) -> i16 {
    // Four histograms: consecutive equal values would otherwise wait on
    // each other's increment.
    let mut hist = [[0u32; 256]; 4];
    let mut j = 0;
    while j + 4 <= n {
        for (l, h) in hist.iter_mut().enumerate() {
            h[(biased(coarse(j + l)) >> 8) as usize] += 1;
        }
        j += 4;
    }
    for j in j..n {
        hist[0][(biased(coarse(j)) >> 8) as usize] += 1;
    }
    if skip < n {
        hist[0][(biased(coarse(skip)) >> 8) as usize] -= 1;
    }
    let total: [u32; 256] = std::array::from_fn(|b| hist.iter().map(|h| h[b]).sum());
    let (high, above) = kth_bin(&total, k);
    let mut low = [0u32; 256];
    for j in (0..n).filter(|&j| j != skip) {
        let b = biased(coarse(j));
        if (b >> 8) as usize == high {
            low[(b & 0xff) as usize] += 1;
        }
    }
    let (lb, _) = kth_bin(&low, k - above);
    (((high << 8) | lb) as u16 ^ 0x8000) as i16
}

/// The first `out.len()` poems of the similar ordering of `s` (`s` left
/// out) among `n`, when only a few are wanted: candidates whose `coarse`
/// value reaches the [`threshold`] are keyed by their exact `dot`, then
/// sorted. `keys` is scratch. `coarse` must never decrease as `dot`
/// increases.
pub fn first_similar(
    n: usize,
    s: usize,
    out: &mut [u32],
    keys: &mut Vec<u64>,
    coarse: impl Fn(usize) -> i16,
    dot: impl Fn(usize) -> i32,
) {
    let w = out.len();
    keys.clear();
    if w == 0 {
        return;
    }
    let t = threshold(n, s, w, &coarse);
    keys.extend(
        (0..n)
            .filter(|&j| j != s && coarse(j) >= t)
            .map(|j| similar_key(dot(j), j)),
    );
    if keys.len() > w {
        keys.select_nth_unstable(w);
        keys.truncate(w);
    }
    keys.sort_unstable();
    for (o, k) in out.iter_mut().zip(keys.iter()) {
        *o = *k as u32;
    }
}

/// The whole similar ordering's first `out.len()` poems from every dot, by
/// sorting all keys (for long prefixes). `keys` is scratch.
pub fn sort_similar(s: usize, dots: &[i32], out: &mut [u32], keys: &mut Vec<u64>) {
    keys.clear();
    keys.extend(
        dots.iter()
            .enumerate()
            .filter(|&(j, _)| j != s)
            .map(|(j, &d)| similar_key(d, j)),
    );
    // Keys are distinct integers: a radix sort beats comparisons here.
    radsort::sort(keys);
    for (o, k) in out.iter_mut().zip(keys.iter()) {
        *o = *k as u32;
    }
}

/// Whether `w` of `n` is short enough for [`first_similar`].
pub fn is_short(w: usize, n: usize) -> bool {
    w < n / 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn expect(s: usize, dots: &[i32], w: usize) -> Vec<u32> {
        let mut all: Vec<(i32, usize)> = dots.iter().copied().zip(0..).filter(|&(_, j)| j != s).collect();
        all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        all.iter().take(w).map(|&(_, j)| j as u32).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn the_selection_is_the_sorted_prefix(
            dots in proptest::collection::vec(prop_oneof![-3i32..3, any::<i32>(), Just(i32::MAX), Just(i32::MIN)], 1..300),
            s in any::<usize>(), w in any::<usize>(), shift in 0u32..16,
        ) {
            let n = dots.len();
            let s = if s % 3 == 0 { usize::MAX } else { s % n };
            let count = if s < n { n - 1 } else { n };
            let w = w % (count + 1);
            let mut keys = Vec::new();
            let mut out = vec![0; w];
            // Coarse values from the dot's top bits, and from fewer of them
            // (down to one: ties in plenty).
            let coarse = |j: usize| (dots[j] >> 16) as i16;
            first_similar(n, s, &mut out, &mut keys, coarse, |j| dots[j]);
            prop_assert_eq!(&out, &expect(s, &dots, w));
            let coarser = |j: usize| (dots[j] >> (16 + shift)) as i16;
            first_similar(n, s, &mut out, &mut keys, coarser, |j| dots[j]);
            prop_assert_eq!(&out, &expect(s, &dots, w));
            let mut all = vec![0; w];
            sort_similar(s, &dots, &mut all, &mut keys);
            prop_assert_eq!(&all, &expect(s, &dots, w));
        }
    }
}
