//! all-MiniLM-L6-v2 for the in-process embedding tests, from
//! `scripts/fetch-test-model.sh` (the PyPI wheel's files, never the hub):
//! `DIVERSITY_TEST_MODEL_DIR`, else where that script puts it. Missing
//! files say SKIPPED, and fail under CI.
#![allow(dead_code)]

use std::path::PathBuf;

use super::skip::skip;

/// The model folder, if the files are there.
pub fn dir() -> Option<PathBuf> {
    let d = std::env::var_os("DIVERSITY_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            Some(cache.join("diversity-gpu/test-model/all-MiniLM-L6-v2"))
        });
    match d.filter(|d| d.join("model.safetensors").is_file()) {
        Some(d) => Some(d),
        None => {
            skip("the model files (scripts/fetch-test-model.sh)");
            None
        }
    }
}

/// The shared fortunes corpus, if this checkout sits beside `shared/`.
pub fn fortunes() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpora/fortunes");
    if d.join("poems.json").is_file() {
        return Some(d);
    }
    skip("the shared fortunes corpus (../shared/corpora/fortunes)");
    None
}
