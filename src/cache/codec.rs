//! The bytes of the cache's data files: indices as little-endian `u16` or
//! `u32` (`index_bytes`), vectors as little-endian `i16`. Every file is
//! written by [`encode`] or [`encode_i16`] and read through [`le`], the one
//! little-endian decoder.

/// An integer stored little-endian in a cache file.
pub(crate) trait Le: Copy + 'static {
    /// Its size in bytes.
    const BYTES: usize;
    /// Decodes `b`, which holds exactly [`Le::BYTES`] bytes.
    fn from_le(b: &[u8]) -> Self;
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl Le for $t {
            const BYTES: usize = std::mem::size_of::<$t>();
            fn from_le(b: &[u8]) -> Self {
                <$t>::from_le_bytes(b.try_into().expect("a chunk of the integer's size"))
            }
        }
    )*};
}
le_int!(u16, u32, i16);

/// The little-endian `T`s of `bytes`, in order (a trailing partial value is
/// ignored; sizes are checked before anything is decoded).
pub(crate) fn le<T: Le>(bytes: &[u8]) -> impl Iterator<Item = T> + '_ {
    bytes.chunks_exact(T::BYTES).map(T::from_le)
}

/// Encodes `rows` into `buf` (cleared first), `index_bytes` (2 or 4) each.
pub(crate) fn encode(rows: &[u32], index_bytes: usize, buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(rows.len() * index_bytes);
    if index_bytes == 2 {
        buf.extend(rows.iter().flat_map(|&i| (i as u16).to_le_bytes()));
    } else {
        buf.extend(rows.iter().flat_map(|&i| i.to_le_bytes()));
    }
}

/// Decodes one row of indices, `index_bytes` (2 or 4) each, into `out`
/// (cleared first).
pub(crate) fn decode(row: &[u8], index_bytes: usize, out: &mut Vec<u32>) {
    out.clear();
    if index_bytes == 2 {
        out.extend(le::<u16>(row).map(u32::from));
    } else {
        out.extend(le::<u32>(row));
    }
}

/// The largest index in an ordering file (`None` when empty), in parallel.
pub(crate) fn max_index(bytes: &[u8], index_bytes: usize) -> Option<u32> {
    use rayon::prelude::*;
    bytes
        .par_chunks(1 << 20)
        .filter_map(|c| {
            if index_bytes == 2 {
                le::<u16>(c).max().map(u32::from)
            } else {
                le::<u32>(c).max()
            }
        })
        .max()
}

/// Quantised vectors as the little-endian bytes of their `i16`s.
pub(crate) fn encode_i16(values: &[i16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_round_trip_in_both_widths() {
        let mut buf = Vec::new();
        encode(&[1, 65535, 0], 2, &mut buf);
        assert_eq!(buf, vec![1, 0, 255, 255, 0, 0]);
        encode(&[70000], 4, &mut buf);
        assert_eq!(buf, 70000u32.to_le_bytes());
    }

    #[test]
    fn decoding_reads_back_what_was_encoded() {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for (rows, width) in [(vec![1, 65535, 0], 2), (vec![70000, 3, u32::MAX], 4)] {
            encode(&rows, width, &mut buf);
            decode(&buf, width, &mut out);
            assert_eq!(out, rows);
            assert_eq!(max_index(&buf, width), rows.iter().copied().max());
        }
        assert_eq!(max_index(&[], 2), None);
        let v = [-2i16, 0, 300, i16::MIN];
        assert_eq!(le::<i16>(&encode_i16(&v)).collect::<Vec<_>>(), v);
    }
}
