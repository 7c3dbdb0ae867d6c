//! The similarity matrix layout that the CPU and GPU backends share byte for
//! byte: rows of i16 `sim16` values, padded with zeros to a multiple of
//! [`LANES`], and the [`CHOSEN`] marker in the walk's running sums.
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
}
