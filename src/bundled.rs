//! The bundled sample corpus, embedded in the binary so that `build` with
//! no inputs works from an installed binary in any folder.

use std::path::PathBuf;

use anyhow::{Context, Result};

const POEMS: &[u8] = include_bytes!("../assets/corpus/poems.json");
const EMBEDDINGS: &[u8] = include_bytes!("../assets/corpus/embeddings.json");
const THEMES: &[u8] = include_bytes!("../assets/themes.jsonl");

/// The bundled corpus written to a private temp folder, removed on drop.
pub struct Bundled {
    dir: tempfile::TempDir,
}

impl Bundled {
    /// Writes the files into a fresh temp folder.
    pub fn extract() -> Result<Bundled> {
        let dir = tempfile::Builder::new()
            .prefix("diversity-gpu-corpus")
            .tempdir()
            .context("cannot create a temp folder for the bundled corpus")?;
        for (name, bytes) in [
            ("poems.json", POEMS),
            ("embeddings.json", EMBEDDINGS),
            ("themes.jsonl", THEMES),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(Bundled { dir })
    }

    /// The poems file.
    pub fn poems(&self) -> PathBuf {
        self.dir.path().join("poems.json")
    }

    /// The themes file bundled for the bundled corpus.
    pub fn themes(&self) -> PathBuf {
        self.dir.path().join("themes.jsonl")
    }

    /// The embeddings file.
    pub fn embeddings(&self) -> PathBuf {
        self.dir.path().join("embeddings.json")
    }
}
