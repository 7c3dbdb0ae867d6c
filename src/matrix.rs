//! The similarity matrix layout that the CPU and GPU backends share byte for
//! byte: rows of i16 `sim16` values, padded with zeros to a multiple of
//! [`LANES`], packed two per u32 word on the GPU ([`pack_pair`]), and the
//! [`CHOSEN`] marker in the walk's running sums.
//! `shaders/common.wgsl` is the WGSL side of this contract.

/// The similarity used in the walk's running sums (defined by the
/// specification's quantisation, re-exported here with the layout).
pub use crate::quantize::sim16;

/// Entries per row are padded to a multiple of this: the CPU's fused pass
/// works on this many lanes, and the GPU packs two entries per u32 word.
pub const LANES: usize = 16;

/// Marks a chosen candidate in the running sums. Real sums stay below it
/// (at most 65 535 · 32 767 < i32::MAX), so it needs no separate flag array.
pub const CHOSEN: i32 = i32::MAX;

/// Two i16 entries in one u32 word, `a` in the low half: how the GPU holds
/// vectors and matrix rows (`pack`, `lo` and `hi` in `shaders/common.wgsl`).
pub fn pack_pair(a: i16, b: i16) -> u32 {
    (a as u16 as u32) | ((b as u16 as u32) << 16)
}

/// Rounds `n` up to the padded row length.
pub fn padded(n: usize) -> usize {
    n.div_ceil(LANES) * LANES
}

/// Bytes of one padded matrix row of `n` poems (i16 entries).
pub fn row_bytes(n: usize) -> u64 {
    (padded(n) * std::mem::size_of::<i16>()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_pad_to_whole_lanes_and_even_words() {
        assert_eq!((padded(0), padded(1), padded(16), padded(17)), (0, 16, 16, 32));
        // Two i16 entries per u32 word on the GPU: a padded row is whole words.
        assert_eq!(padded(17) % 2, 0);
        assert_eq!(row_bytes(17), 64);
    }

    #[test]
    fn a_pair_packs_low_half_first_and_keeps_its_signs() {
        assert_eq!(pack_pair(1, 2), 0x0002_0001);
        assert_eq!(pack_pair(-1, 0), 0x0000_ffff);
        assert_eq!(pack_pair(0, -2), 0xfffe_0000);
        assert_eq!(pack_pair(i16::MIN, i16::MAX), 0x7fff_8000);
    }
}
