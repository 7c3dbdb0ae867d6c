//! `export`: the cache's orderings as JSON Lines, by key, streamed.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cache::{Cache, Kind};

/// One exported line; keys are borrowed, nothing is built twice.
#[derive(serde::Serialize)]
struct Line<'a> {
    key: &'a str,
    similar: Vec<&'a str>,
    different: Vec<&'a str>,
    /// The poem's semantic colour name, when the cache has a palette.
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'a str>,
}

/// Writes one line per included poem:
/// `{"key": …, "similar": [keys…], "different": [keys…], "color"?: name}`,
/// then one per theme with key `theme:<name>`.
pub fn export(cache: &Cache, out: &mut dyn Write) -> Result<()> {
    let keys = &cache.manifest.keys;
    let mut sim = Vec::new();
    let mut diff = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        cache.row(Kind::Similar, i, &mut sim);
        cache.row(Kind::Different, i, &mut diff);
        let line = Line {
            key,
            similar: sim.iter().map(|&j| keys[j as usize].as_str()).collect(),
            different: diff.iter().map(|&j| keys[j as usize].as_str()).collect(),
            color: cache.color(i).map(|c| c.name.as_str()),
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n").context("cannot write the export")?;
    }
    for (t, name) in cache.manifest.themes.iter().enumerate() {
        cache.theme_row(Kind::Similar, t, &mut sim);
        cache.theme_row(Kind::Different, t, &mut diff);
        let key = format!("theme:{name}");
        let line = Line {
            key: &key,
            similar: sim.iter().map(|&j| keys[j as usize].as_str()).collect(),
            different: diff.iter().map(|&j| keys[j as usize].as_str()).collect(),
            color: None,
        };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n").context("cannot write the export")?;
    }
    out.flush().context("cannot write the export")?;
    Ok(())
}
