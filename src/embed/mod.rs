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

mod client;
mod failure;
pub mod flags;
pub mod format;
mod journal;
mod output;
mod pieces;
pub mod report;
mod retry;
mod run;

pub use client::{endpoint, redact_url, Api};
pub use failure::{Failure, ItemProblem};
pub use journal::{journal_path, text_hash};
pub use pieces::{combine, split_text};
pub use retry::Policy;
pub use run::{run, Options, Stop, Summary, CHARS_PER_TOKEN, DEFAULT_MAX_CHARS};
