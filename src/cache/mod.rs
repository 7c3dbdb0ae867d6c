//! The cache format: what `precompute` writes and `render`, `export` and
//! `verify` read.
//!
//! A cache is a directory:
//! - `manifest.json`: the pointer. Versions, parameters, keys, fingerprint,
//!   report, backend, timings, the generation folder that holds the data
//!   and the blake3 of every file and checkpoint chunk, sealed by a hash of
//!   its own bytes (`manifest_hash`). It is written last, atomically, and
//!   the folder synced: a directory without it is never taken for a
//!   finished cache, and writing it is the switch from one generation to
//!   the next.
//! - `gen-<n>/`: a generation, the folder of data files below. A rebuild
//!   writes a new generation beside the one the manifest names, switches
//!   the manifest to it when it is complete, and only then removes the old
//!   one: a rebuild that fails or is killed leaves the last good cache
//!   readable and untouched, and the next run resumes.
//! - `vectors.bin`: the quantised unit vectors (i16 LE, `included × dim`).
//! - `similar.bin`, `different.bin`: one row per start of `width` indices
//!   into `keys`, little-endian, `index_bytes` (2 or 4) each.
//! - `themes-<id>.bin` (when the run had themes): every theme's similar row,
//!   then every theme's different row, `theme_width` indices each, same
//!   encoding; `extra-vectors-<id>.bin`: the themes' and the palette's
//!   quantised vectors. `<id>` begins the extras fingerprint.
//! - `lock`: the writer's lock file (see [`lock`]).
//! - while a run is under way, in its generation folder, `run.json` (the
//!   pending manifest),
//!   `similar.bin.partial` and `different.bin.partial` (the rows being
//!   built) and `progress.log` (finished chunks with the blake3 of their
//!   rows, each line written only after the rows reached the disk). A re-run
//!   with the same inputs resumes there, re-verifying every chunk it keeps.
//!
//! Every reader opens each file once, checks the hash of the bytes it
//! mapped and uses only those bytes (a snapshot), so a damaged cache is
//! refused, never read, and a writer switching generations meanwhile
//! cannot mix two caches (the reader retries on the new manifest).
//!
//! A shard cache (`precompute --shard I/N`) has the same files, but its
//! orderings hold only the rows of its contiguous range of starts, which its
//! manifest records; readers refuse it until `merge` has combined the shards.
//!
//! The modules, one concern each: `manifest` (the schema and its seal),
//! `fingerprint` (what decides whether a cache is current), `codec` (the
//! files' little-endian bytes), `generations`, [`lock`] (whose folder it
//! is, one writer at a time), `extras_files` (themes and palette),
//! `reader` ([`Cache`], a verified snapshot), `writer` ([`CacheWriter`]),
//! `finish` (the one protocol that switches to a finished cache) and
//! [`integrity`] (the hashes).

mod codec;
mod extras_files;
mod fingerprint;
mod finish;
mod generations;
pub mod integrity;
pub mod lock;
mod manifest;
mod reader;
mod writer;

pub use extras_files::{extra_vectors_file, prune_extras, themes_file, update_extras, write_extras};
pub use fingerprint::{extras_fingerprint, fingerprint, hash_keys, key_changes};
pub use generations::{generation_dir, generations};
pub use integrity::{ChunkHash, FileHash};
pub use lock::{claim_dir, refuse_foreign};
pub use manifest::{Inputs, Integrity, Manifest, Params, Shard};
pub use reader::{Cache, Kind};
pub use writer::{CacheWriter, Opened};

pub(crate) use extras_files::extras_files;
pub(crate) use finish::{commit, Replaced, Written};
pub(crate) use generations::{named_generation, new_generation, remove_abandoned};
pub(crate) use lock::lock_dir;

use std::path::Path;

use anyhow::{Context, Result};

/// Bumped when the layout of the files changes (3: the data files live in
/// generation folders).
pub const FORMAT_VERSION: u32 = 3;
/// Bumped when the algorithm's output for the same input changes.
pub const ALGORITHM_VERSION: u32 = 1;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// Generation folders are named `gen-<n>`.
pub const GENERATION_PREFIX: &str = "gen-";
pub(crate) const RUN: &str = "run.json";
pub(crate) const PROGRESS: &str = "progress.log";
/// The quantised vectors' file name.
pub const VECTORS: &str = "vectors.bin";
/// The file names of the two orderings.
pub const SIMILAR: &str = "similar.bin";
pub const DIFFERENT: &str = "different.bin";

/// Every fixed name of a generation's files (format 2 kept them beside
/// its manifest).
pub(crate) const DATA_FILES: [&str; 7] = [
    VECTORS,
    SIMILAR,
    DIFFERENT,
    RUN,
    PROGRESS,
    "similar.bin.partial",
    "different.bin.partial",
];

/// The names of a generation's files (and of format 2's, beside the
/// manifest).
pub(crate) fn is_data_name(name: &str) -> bool {
    DATA_FILES.contains(&name) || name.starts_with(crate::fs::TEMP_PREFIX) || is_extras_name(name)
}

/// Whether `name` has the form of an extras' file, of any fingerprint.
pub(crate) fn is_extras_name(name: &str) -> bool {
    (name.starts_with("themes-") || name.starts_with("extra-vectors-")) && name.ends_with(".bin")
}

/// Removes `path`; a file already missing is no error.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// A pause at a named point, for tests that make a race deterministic:
/// when `DIVERSITY_TEST_HOLD` names `point`, the process says so on stderr
/// and waits for a line on stdin (once per process).
pub fn test_pause(point: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var("DIVERSITY_TEST_HOLD").is_ok_and(|p| p == point)
        && !DONE.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        eprintln!("test pause: {point}");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
}
