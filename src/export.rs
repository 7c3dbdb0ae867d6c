//! `export`: the cache's orderings as JSON Lines, by key, streamed.

use std::io::Write;

use anyhow::{Context, Result};

use crate::cache::{Cache, Kind};

/// Writes one line per included poem:
/// `{"key": …, "similar": [keys…], "different": [keys…]}`.
pub fn export(cache: &Cache, out: &mut dyn Write) -> Result<()> {
    let keys = &cache.manifest.keys;
    let mut sim = Vec::new();
    let mut diff = Vec::new();
    let by_key = |row: &[u32]| row.iter().map(|&i| keys[i as usize].as_str()).collect::<Vec<_>>();
    for (i, key) in keys.iter().enumerate() {
        cache.row(Kind::Similar, i, &mut sim);
        cache.row(Kind::Different, i, &mut diff);
        let line = serde_json::json!({
            "key": key,
            "similar": by_key(&sim),
            "different": by_key(&diff),
        });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n").context("cannot write the export")?;
    }
    out.flush().context("cannot write the export")?;
    Ok(())
}
