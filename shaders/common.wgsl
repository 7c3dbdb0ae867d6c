// The matrix layout both backends share (src/matrix.rs is the Rust side):
// two i16 entries per u32 word, low half first, and the CHOSEN marker.
// Prepended to every shader.

// Marks a chosen candidate in the running sums (matrix::CHOSEN).
const CHOSEN: i32 = 2147483647;

// The low and high i16 halves of a packed word, sign-extended.
fn lo(w: u32) -> i32 { return bitcast<i32>(w << 16u) >> 16u; }
fn hi(w: u32) -> i32 { return bitcast<i32>(w) >> 16u; }

// (dot + 2^14) >> 15, clamped to i16: the specification's sim16.
fn sim16(d: i32) -> i32 { return clamp((d + 16384) >> 15u, -32768, 32767); }
