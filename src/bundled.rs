//! The bundled sample corpus, embedded in the binary so that `build` with
//! no inputs works from an installed binary in any folder.

use std::path::PathBuf;

use anyhow::{Context, Result};

const POEMS: &[u8] = include_bytes!("../assets/corpus/poems.json");
const EMBEDDINGS: &[u8] = include_bytes!("../assets/corpus/embeddings.json");
const THEMES: &[u8] = include_bytes!("../assets/themes.jsonl");
const PALETTE: &[u8] = include_bytes!("../assets/palette.jsonl");

/// The default palette, built into the binary, as a file the loaders can
/// read (see [`placed`]).
pub fn default_palette() -> Result<PathBuf> {
    placed("palette", PALETTE)
}

/// The bundled themes as a file (see [`placed`]): the themes a poems folder
/// gets when its model runs in process and can embed them.
pub fn default_themes() -> Result<PathBuf> {
    placed("themes", THEMES)
}

/// `bytes` as a file written once into the user's cache folder
/// (`$XDG_CACHE_HOME` or `~/.cache`, not a shared temp folder that others
/// could plant links in), named by its content hash, so every run finds the
/// same bytes.
fn placed(name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .with_context(|| format!("neither XDG_CACHE_HOME nor HOME is set: cannot place the default {name}"))?;
    let dir = base.join("diversity-gpu");
    let hash = blake3::hash(bytes).to_hex();
    let path = dir.join(format!("{name}-{}.jsonl", &hash[..16]));
    if std::fs::read(&path).ok().as_deref() != Some(bytes) {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        crate::fs::write_atomic(&path, bytes)
            .with_context(|| format!("cannot write the default {name} to {}", path.display()))?;
    }
    Ok(path)
}

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
