//! diversity-gpu: exact "similar" and "different" orderings of a poem corpus,
//! computed on the GPU (wgpu compute shaders) or the CPU, bit-identical on
//! both, and the static site that shows them.
//!
//! Data flows one way:
//! [`corpus`] → [`quantize`] → orderings ([`engine`] over [`cpu`] or [`gpu`],
//! which share the [`matrix`] layout; [`reference`] is the specification) →
//! [`cache`] (by [`precompute`]) → pages ([`render`]). [`themes`] and
//! [`palette`] are small corpora read beside the poems, whose orderings and
//! colours the same engine computes into the same cache ([`extras`]).
//! [`embed`] produces the
//! embeddings that [`corpus`] reads. [`fs`], [`progress`], [`bundled`], [`plural`] and [`timings`]
//! are helpers every stage may use; [`cli`] drives the stages.

pub mod bundled;
pub mod cache;
pub mod cli;
pub mod corpus;
pub mod cpu;
pub mod dates;
pub mod embed;
pub mod engine;
pub mod export;
pub mod extras;
pub mod formats;
pub mod fs;
#[cfg(feature = "gpu")]
pub mod gpu;
/// Without the `gpu` feature: the backend's names, and a clear error.
#[cfg(not(feature = "gpu"))]
#[path = "gpu/off.rs"]
pub mod gpu;
pub mod interrupt;
pub mod matrix;
pub mod memory;
pub mod palette;
pub mod plural;
pub mod precompute;
pub mod progress;
pub mod quantize;
pub mod reference;
pub mod render;
pub mod shard;
pub mod themes;
pub mod timings;

#[cfg(test)]
mod layers;
