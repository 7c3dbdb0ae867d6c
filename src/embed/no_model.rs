//! The in-process model's stand-in in a build without the `embed` feature:
//! `embed` and `build` work with a server (`--url`) or given vectors
//! (`--embeddings`); asking for the model in process is a clear error.

use std::convert::Infallible;
use std::sync::Arc;

use anyhow::Result;

use super::run::{Options, Summary};
use crate::corpus::Poem;

/// The error a build without the `embed` feature gives for a model in process.
pub const DISABLED: &str = "this build has no in-process model; rebuild with --features embed, \
                            or embed with a server (--url) or give vectors (--embeddings)";

/// Nothing to set: no candle in this build.
pub fn one_thread_per_batch() {}

/// A loaded model; none can be loaded in this build.
#[derive(Debug)]
pub struct LocalModel {
    never: Infallible,
    /// The name recorded with its vectors, as with the real model.
    pub name: String,
}

/// Fails: the model cannot run in process in this build.
pub fn load_model(_name: Option<&str>, _dir: Option<&std::path::Path>, _progress: bool) -> Result<LocalModel> {
    anyhow::bail!(DISABLED)
}

/// Unreachable: no [`LocalModel`] exists to pass.
pub(super) fn run(_o: &Options, _poems: Vec<Poem>, m: &Arc<LocalModel>) -> Result<Summary> {
    match m.never {}
}
