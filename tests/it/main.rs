//! The integration tests, as one crate so that one test binary links
//! instead of one per file. Each module is one area; `common` holds the
//! helpers that run the binary and read caches, `support` the harnesses.
//!
//! Tests that cannot run here (no GPU adapter, no model files, no browser)
//! say `SKIPPED <test>: …` on the terminal (`support::skip`); with `CI` set
//! they fail instead. The browser test is
//! `#[ignore]`d so that `cargo test` needs no Chromium; `.ci/run` runs it.

mod common;
mod support;

mod cache;
mod cli;
mod embed;
#[cfg(feature = "embed")]
mod embed_local;
mod fuzz;
mod poems_folder;
mod reliability;
mod rows;
mod shard;
mod site;
mod site_folder;
mod themes;
