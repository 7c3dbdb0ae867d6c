//! Where a sentence-transformers model's files come from: a folder the user
//! names (`--model-dir`, no network at all), or the Hugging Face hub cache by
//! name, downloaded once (honouring `HF_HOME`, `HF_ENDPOINT` and
//! `HF_HUB_OFFLINE`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The model used when none is named: the bundled corpus's model.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The files a model needs, in the sentence-transformers layout.
pub const REQUIRED: [&str; 4] = [
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "1_Pooling/config.json",
];
/// Read when present: the window sentence-transformers truncates to.
pub const OPTIONAL: [&str; 1] = ["sentence_bert_config.json"];

/// The paths of one model's files.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// `config.json`: the BERT architecture.
    pub config: PathBuf,
    /// `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// `model.safetensors`.
    pub weights: PathBuf,
    /// `1_Pooling/config.json`.
    pub pooling: PathBuf,
    /// `sentence_bert_config.json`, with the window, where there is one.
    pub sentence_bert: Option<PathBuf>,
}

impl ModelFiles {
    fn from_paths(mut found: Vec<Option<PathBuf>>) -> ModelFiles {
        let mut take = |i: usize| found[i].take();
        ModelFiles {
            config: take(0).expect("checked"),
            tokenizer: take(1).expect("checked"),
            weights: take(2).expect("checked"),
            pooling: take(3).expect("checked"),
            sentence_bert: take(4),
        }
    }
}

/// The files in `dir`; an error names every required file that is missing.
pub fn from_dir(dir: &Path) -> Result<ModelFiles> {
    if !dir.is_dir() {
        bail!(
            "--model-dir {}: not a folder (it needs {} in the sentence-transformers layout)",
            dir.display(),
            REQUIRED.join(", ")
        );
    }
    let missing: Vec<&str> = REQUIRED.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        bail!(
            "--model-dir {}: missing {} (a sentence-transformers model folder has {})",
            dir.display(),
            missing.join(", "),
            REQUIRED.join(", ")
        );
    }
    let found = REQUIRED
        .iter()
        .chain(&OPTIONAL)
        .map(|f| Some(dir.join(f)).filter(|p| p.is_file()))
        .collect();
    Ok(ModelFiles::from_paths(found))
}

/// Whether `HF_HUB_OFFLINE` asks for no network (as the Python hub reads it).
pub fn offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
}

/// The files of hub model `name` (`org/name`): from the hub cache, else
/// downloaded into it once, with a progress bar.
pub fn from_hub(name: &str, progress: bool) -> Result<ModelFiles> {
    if !name.contains('/') || name.split('/').any(str::is_empty) {
        bail!(
            "--model {name:?}: a hub model is named org/name, e.g. {DEFAULT_MODEL}; give its files with --model-dir, \
             or embed with a server that serves {name:?} (--url)"
        );
    }
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(name.to_owned());
    if offline() {
        return from_cache(name, &cache, &repo);
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(progress)
        .build()
        .context("cannot set up the Hugging Face hub client")?;
    let remote = api.model(name.to_owned());
    let mut found = Vec::new();
    for f in REQUIRED {
        let p = remote.get(f).map_err(|e| hub_error(name, f, &cache, e))?;
        found.push(Some(p));
    }
    for f in OPTIONAL {
        // Only "not there" means absent: a failed download must not change
        // the window silently.
        match remote.get(f) {
            Ok(p) => found.push(Some(p)),
            Err(e) if e.to_string().contains("404") => found.push(None),
            Err(e) => return Err(hub_error(name, f, &cache, e)),
        }
    }
    Ok(ModelFiles::from_paths(found))
}

fn from_cache(name: &str, cache: &hf_hub::Cache, repo: &hf_hub::CacheRepo) -> Result<ModelFiles> {
    let found: Vec<Option<PathBuf>> = REQUIRED.iter().chain(&OPTIONAL).map(|f| repo.get(f)).collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(f, _)| *f)
        .collect();
    if !missing.is_empty() {
        bail!(
            "model {name} is not in the hub cache at {} (missing {}) and HF_HUB_OFFLINE is set: unset it to download the model once, or give its files with --model-dir",
            cache.path().display(),
            missing.join(", ")
        );
    }
    Ok(ModelFiles::from_paths(found))
}

fn hub_error(name: &str, file: &str, cache: &hf_hub::Cache, e: hf_hub::api::sync::ApiError) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot download {file} of model {name} from the Hugging Face hub: {e}. Check the name and the network, \
         or give the model's files with --model-dir (the hub cache is {})",
        cache.path().display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_folder_names_every_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        let e = from_dir(dir.path()).unwrap_err().to_string();
        for f in ["tokenizer.json", "model.safetensors", "1_Pooling/config.json"] {
            assert!(e.contains(f), "{e}");
        }
        assert!(!e.contains("missing config.json"), "{e}");
        let e = from_dir(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
    }

    /// The hub cache layout the Python hub writes
    /// (`models--org--name/snapshots/<commit>/<file>`, `refs/main`) is
    /// found with no network when HF_HUB_OFFLINE is set.
    #[test]
    fn the_hub_cache_layout_is_read_offline() {
        let home = tempfile::tempdir().unwrap();
        let snap = home.path().join("models--org--tiny/snapshots/abc123");
        std::fs::create_dir_all(snap.join("1_Pooling")).unwrap();
        std::fs::create_dir_all(home.path().join("models--org--tiny/refs")).unwrap();
        std::fs::write(home.path().join("models--org--tiny/refs/main"), "abc123").unwrap();
        for f in REQUIRED {
            std::fs::write(snap.join(f), "x").unwrap();
        }
        let cache = hf_hub::Cache::new(home.path().to_owned());
        let repo = cache.model("org/tiny".into());
        let files = from_cache("org/tiny", &cache, &repo).unwrap();
        assert_eq!(files.weights, snap.join("model.safetensors"));
        assert!(files.sentence_bert.is_none());
        std::fs::remove_file(snap.join("tokenizer.json")).unwrap();
        let e = from_cache("org/tiny", &cache, &repo).unwrap_err().to_string();
        assert!(e.contains("missing tokenizer.json") && e.contains("--model-dir"), "{e}");
    }
}
