//! How the complete lists are packed into strings: an ordering's entries are cache rows, below `rows`. Groups of
//! `k` entries make one number below `rows^k`, written as `m` base-93
//! digits (printable ASCII without `"` and `\`, so a list is a plain string
//! literal). Each site takes the `k` with the fewest characters per entry
//! whose numbers stay below 2^53, exact in a JavaScript number: 2 characters
//! an entry up to 8,649 poems, 2.33 up to 39,185, 2.5 up to 83,407, 2.67
//! up to 177,536.

const RADIX: u64 = 93;

/// How a site packs its lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packing {
    /// Every entry is below this.
    pub rows: u64,
    /// Entries per group.
    pub k: usize,
    /// Characters per group.
    pub m: usize,
}

/// The fewest base-93 digits that hold every number below `v`.
fn digits_for(v: u128) -> usize {
    let mut m = 1;
    let mut top = RADIX as u128;
    while top < v {
        top *= RADIX as u128;
        m += 1;
    }
    m
}

impl Packing {
    /// The densest packing of entries below `rows`.
    pub fn for_rows(rows: usize) -> Packing {
        let n = (rows as u64).max(2);
        let mut best = Packing {
            rows: n,
            k: 1,
            m: digits_for(n as u128),
        };
        for k in 2..=4u32 {
            let top = (n as u128).pow(k);
            if top > 1 << 53 {
                break;
            }
            let m = digits_for(top);
            if m * best.k < best.m * k as usize {
                best = Packing {
                    rows: n,
                    k: k as usize,
                    m,
                };
            }
        }
        best
    }

    /// Characters of a list of `len` entries.
    pub fn chars(&self, len: usize) -> usize {
        len.div_ceil(self.k) * self.m
    }

    /// Appends the packed `entries` to `out`.
    pub fn encode(&self, entries: &[u32], out: &mut String) {
        let mut digits = vec![0u8; self.m];
        for group in entries.chunks(self.k) {
            let mut v: u64 = 0;
            for i in 0..self.k {
                v = v * self.rows + group.get(i).map_or(0, |&e| u64::from(e));
            }
            for d in digits.iter_mut().rev() {
                *d = digit(v % RADIX);
                v /= RADIX;
            }
            out.extend(digits.iter().map(|&d| d as char));
        }
    }
}

/// Base-93 digit `d` as a character: from ' ', skipping '"' and '\'.
fn digit(d: u64) -> u8 {
    let mut c = b' ' + d as u8;
    if c >= b'"' {
        c += 1;
    }
    if c >= b'\\' {
        c += 1;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's decoding, in Rust: the inverse of [`Packing::encode`].
    fn decode(p: &Packing, data: &str, len: usize) -> Vec<u32> {
        let value = |c: u8| u64::from(c - 32 - u8::from(c > b'"') - u8::from(c > b'\\'));
        let mut out = Vec::new();
        for group in data.as_bytes().chunks(p.m) {
            let mut v = group.iter().fold(0u64, |v, &c| v * RADIX + value(c));
            let mut g = vec![0u32; p.k];
            for e in g.iter_mut().rev() {
                *e = (v % p.rows) as u32;
                v /= p.rows;
            }
            out.extend(g);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn packing_is_dense_and_round_trips() {
        assert_eq!(
            Packing::for_rows(8_649),
            Packing {
                rows: 8_649,
                k: 1,
                m: 2
            }
        );
        let p = Packing::for_rows(15_195);
        assert_eq!((p.k, p.m), (3, 7), "2.33 characters an entry for fortunes");
        let p = Packing::for_rows(39_186);
        assert_eq!((p.k, p.m), (2, 5), "past 39,185 poems three entries need 8 characters");
        assert_eq!(
            Packing::for_rows(100_000),
            Packing {
                rows: 100_000,
                k: 3,
                m: 8
            }
        );
        for rows in [
            1,
            2,
            93,
            94,
            8_649,
            8_650,
            15_195,
            39_185,
            39_186,
            83_407,
            83_408,
            100_000,
            1 << 20,
        ] {
            let p = Packing::for_rows(rows);
            assert!((p.rows as u128).pow(p.k as u32) <= 1 << 53);
            let entries: Vec<u32> = (0..1000u32).map(|i| (i * 7919) % rows.max(1) as u32).collect();
            for len in [0, 1, 2, 3, 999, 1000] {
                let mut s = String::new();
                p.encode(&entries[..len], &mut s);
                assert_eq!(s.len(), p.chars(len));
                assert!(s.bytes().all(|c| (b' '..=b'~').contains(&c) && c != b'"' && c != b'\\'));
                assert_eq!(decode(&p, &s, len), &entries[..len], "rows {rows}, len {len}");
            }
        }
    }
}
