//! Each poem's colour on the pages: the cache's semantic colours, and
//! the colours a `--colors` file names (hex, or names of the palette).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cache::Cache;

/// Reads `{"poem_colors": {key: {"color": …}}}`, where a colour is `#hex`
/// or, as in the original system's file, a colour name from `palette`.
/// Malformed colours and unknown names are warned about (with the names the
/// palette knows) and dropped: they go into a style attribute.
pub fn read_colors(path: &Path, palette: &[crate::palette::Color]) -> Result<HashMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct File {
        poem_colors: HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        color: String,
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let f: File = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: line {}, column {}: {e}", path.display(), e.line(), e.column()))?;
    let by_name: HashMap<String, &str> = palette
        .iter()
        .map(|c| (c.name.to_lowercase(), c.hex.as_str()))
        .collect();
    let mut out = HashMap::new();
    let mut unknown: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, e) in f.poem_colors {
        let c = e.color.trim();
        let hex = c.strip_prefix('#').unwrap_or("");
        if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.insert(k, c.to_owned());
        } else if let Some(h) = by_name.get(&c.to_lowercase()) {
            out.insert(k, h.to_string());
        } else if c.starts_with('#') || c.contains([';', ':', '(', '"', '<']) {
            log::warn!(
                "{}: poem {k:?} has an invalid colour {:?}; ignored",
                path.display(),
                e.color
            );
        } else {
            unknown.entry(c.to_owned()).or_default().push(k);
        }
    }
    for (name, mut keys) in unknown {
        keys.sort();
        let known: Vec<&str> = palette.iter().map(|c| c.name.as_str()).collect();
        log::warn!(
            "{}: colour name {name:?} (poems {}) is not in the palette, so those poems keep their computed colour; known names: {}",
            path.display(),
            keys.join(", "),
            known.join(", ")
        );
    }
    Ok(out)
}

/// Each poem's colour: the cache's semantic colour, where `--colors` names
/// none (its names mapped through the cache's palette, else the default one).
pub(super) fn colors(cache: &Cache, file: Option<&Path>) -> Result<HashMap<String, String>> {
    let m = &cache.manifest;
    let mut out: HashMap<String, String> = (0..m.included)
        .filter_map(|i| cache.color(i).map(|c| (m.keys[i].clone(), c.hex.clone())))
        .collect();
    if let Some(path) = file {
        let palette = if m.palette.is_empty() {
            crate::palette::default_colors()?
        } else {
            m.palette.clone()
        };
        out.extend(read_colors(path, &palette)?);
    }
    Ok(out)
}
