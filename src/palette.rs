//! Semantic colours: every poem gets the palette colour whose *name* is
//! nearest to it in embedding space (the highest exact similarity, ties to
//! the first colour; [`crate::reference::nearest_color`]).
//!
//! A palette file is a small corpus like a themes file (key = colour name,
//! text = what was embedded) whose entries also carry `"color": "#rrggbb"`.
//! The default palette (`assets/palette.jsonl`) is embedded with the bundled
//! corpus's model and applies to corpora of that model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::corpus::{self, Corpus};
use crate::quantize::{dot, Quantized};
use crate::themes::{load_labelled, Labelled};

/// The model the default palette was embedded with.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// The default palette file, built into the binary (never a path into the
/// build machine's checkout, so an installed binary has it too).
pub fn default_path() -> Result<PathBuf> {
    crate::bundled::default_palette()
}

/// One named colour, as the cache stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Color {
    pub name: String,
    /// `#rrggbb`.
    pub hex: String,
}

/// A loaded palette: colours and their quantised vectors, in file order.
#[derive(Debug, Clone)]
pub struct Palette {
    pub colors: Vec<Color>,
    pub vectors: Quantized,
}

/// Loads a palette for `corpus` (see [`load_labelled`]); every entry needs a
/// `#rrggbb` colour.
pub fn load(path: &Path, embeddings: Option<&Path>, corpus: &Corpus, center: bool) -> Result<Palette> {
    let Labelled { names, vectors, .. } = load_labelled("palette", path, embeddings, corpus, center)?;
    let hex: HashMap<String, String> = named_colors(path)?.into_iter().map(|c| (c.name, c.hex)).collect();
    let colors = names
        .into_iter()
        .map(|name| match hex.get(&name) {
            Some(h) => Ok(Color { name, hex: h.clone() }),
            None => bail!("{}: colour {name:?} has no \"color\": \"#rrggbb\"", path.display()),
        })
        .collect::<Result<_>>()?;
    Ok(Palette { colors, vectors })
}

/// The palette to use when none is named: the default one when the corpus
/// was embedded by its model, else none (said in the log).
pub fn load_default(corpus: &Corpus, center: bool) -> Result<Option<Palette>> {
    if !corpus::same_model(&corpus.model, DEFAULT_MODEL) {
        log::warn!(
            "no semantic colours: the default palette's vectors are {DEFAULT_MODEL}'s, the poems' {:?}'s. \
             Embed the poems in process (`build` without --embeddings and --url), which embeds the palette too, \
             or pass --palette-embeddings made by that model (`diversity-gpu embed --poems PALETTE --url … --model …`, \
             where PALETTE has the palette's colour names: `--palette` takes any such file)",
            corpus.model
        );
        return Ok(None);
    }
    load(&default_path()?, None, corpus, center).map(Some)
}

/// The nearest colour of every poem, in parallel; identical to the reference.
pub fn assign(q: &Quantized, palette: &Quantized) -> Vec<u16> {
    use rayon::prelude::*;
    (0..q.n)
        .into_par_iter()
        .map(|i| {
            let mut best = (i32::MIN, 0u16);
            for c in 0..palette.n {
                let d = dot(palette.row(c), q.row(i));
                if d > best.0 {
                    best = (d, c as u16);
                }
            }
            best.1
        })
        .collect()
}

#[derive(Deserialize)]
struct HexEntry {
    id: serde_json::Value,
    category: Option<String>,
    color: Option<String>,
}

#[derive(Deserialize)]
struct HexFile {
    poems: Vec<HexEntry>,
}

/// The default palette's colours (names and `#rrggbb`, no vectors).
pub fn default_colors() -> Result<Vec<Color>> {
    named_colors(&default_path()?)
}

/// The entries of a palette file that carry a colour, in file order: the
/// name is the entry's key.
pub fn named_colors(path: &Path) -> Result<Vec<Color>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let entries: Vec<HexEntry> = if corpus::is_jsonl(path) {
        bytes
            .split(|&b| b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: malformed palette entry", path.display()))?
    } else {
        serde_json::from_slice::<HexFile>(&bytes)
            .with_context(|| format!("{}: malformed palette", path.display()))?
            .poems
    };
    let mut out = Vec::new();
    for e in entries {
        let id = match e.id {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        let key = match e.category.filter(|c| !c.is_empty()) {
            Some(c) => format!("{c}/{id}"),
            None => id,
        };
        if let Some(h) = e.color {
            if !is_hex(&h) {
                bail!("{}: colour {key:?} has {h:?}, not #rrggbb", path.display());
            }
            out.push(Color {
                name: key,
                hex: h.to_ascii_lowercase(),
            });
        }
    }
    Ok(out)
}

/// `#rrggbb`.
pub fn is_hex(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn colours_match_the_reference(n in 1usize..60, dim in 1usize..8, p in 1usize..12, seed in any::<u64>()) {
            // Few levels: many exact ties, which go to the first colour.
            let q = crate::quantize::random_corpus(n, dim, 1, seed).1;
            let palette = crate::quantize::random_corpus(p, dim, 1, !seed).1;
            let got = assign(&q, &palette);
            for (i, &c) in got.iter().enumerate() {
                prop_assert_eq!(c as usize, reference::nearest_color(&q, &palette, i));
            }
            prop_assert_eq!(got.len(), n);
        }
    }

    #[test]
    fn a_palette_needs_a_colour_per_entry() {
        let dir = tempfile::tempdir().unwrap();
        let poems = dir.path().join("poems.jsonl");
        std::fs::write(&poems, "{\"id\":\"a\",\"text\":\"x\",\"embedding\":[1,0]}\n").unwrap();
        let corpus = corpus::load(&poems, None, &Default::default()).unwrap();
        let pal = dir.path().join("palette.jsonl");
        std::fs::write(
            &pal,
            "{\"id\":\"red\",\"color\":\"#FF0000\",\"embedding\":[1,0]}\n{\"id\":\"blue\",\"color\":\"#0000ff\",\"embedding\":[0,1]}\n",
        )
        .unwrap();
        let p = load(&pal, None, &corpus, false).unwrap();
        assert_eq!(
            p.colors[0],
            Color {
                name: "red".into(),
                hex: "#ff0000".into()
            }
        );
        assert_eq!(
            assign(&crate::quantize::prepare(&corpus, false).vectors, &p.vectors),
            vec![0]
        );
        std::fs::write(&pal, "{\"id\":\"red\",\"embedding\":[1,0]}\n").unwrap();
        let e = format!("{:#}", load(&pal, None, &corpus, false).unwrap_err());
        assert!(e.contains("\"red\"") && e.contains("#rrggbb"), "{e}");
        std::fs::write(&pal, "{\"id\":\"red\",\"color\":\"red\",\"embedding\":[1,0]}\n").unwrap();
        let e = format!("{:#}", load(&pal, None, &corpus, false).unwrap_err());
        assert!(e.contains("\"red\"") && e.contains("not #rrggbb"), "{e}");
    }
}
