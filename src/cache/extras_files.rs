//! The themes' and palette's files: named by the extras fingerprint,
//! written into a generation folder before its manifest, and pruned when a
//! manifest no longer names them. New themes or a new palette for a cache
//! whose orderings are current go into the generation in use, beside the
//! old files, and the manifest switches to them.

use std::path::Path;

use anyhow::{Context, Result};

use super::codec::{encode, encode_i16};
use super::finish::{commit, Replaced, Written};
use super::{is_extras_name, remove_if_exists, Manifest};
use crate::fs::write_atomic;
use crate::quantize::Quantized;
use crate::timings::Timings;

/// The extras' files are named by the extras fingerprint: new ones are
/// written beside the old, the manifest switches to them atomically, and
/// only then do the old ones go.
fn extras_id(m: &Manifest) -> &str {
    &m.extras_fingerprint[..16.min(m.extras_fingerprint.len())]
}

/// The file of the themes' orderings: every theme's similar row, then every
/// theme's different row, `theme_width` indices each.
pub fn themes_file(m: &Manifest) -> String {
    format!("themes-{}.bin", extras_id(m))
}

/// The file of the themes' and then the palette's quantised vectors.
pub fn extra_vectors_file(m: &Manifest) -> String {
    format!("extra-vectors-{}.bin", extras_id(m))
}

/// Writes the themes' orderings and the themes' and palette's vectors of
/// the cache that `m` will describe into its generation folder `data`,
/// atomically, before its manifest.
pub fn write_extras(
    data: &Path,
    m: &Manifest,
    similar: &[u32],
    different: &[u32],
    themes: Option<&Quantized>,
    palette: Option<&Quantized>,
) -> Result<()> {
    if !m.themes.is_empty() {
        let mut bytes = Vec::new();
        let mut buf = Vec::new();
        for rows in [similar, different] {
            encode(rows, m.params.index_bytes, &mut buf);
            bytes.extend_from_slice(&buf);
        }
        write_atomic(&data.join(themes_file(m)), &bytes)?;
    }
    let vectors: Vec<i16> = themes
        .iter()
        .chain(palette.iter())
        .flat_map(|q| q.data.iter().copied())
        .collect();
    if !vectors.is_empty() {
        write_atomic(&data.join(extra_vectors_file(m)), &encode_i16(&vectors))?;
    }
    Ok(())
}

/// Removes the extras' files that the finished manifest `m` does not name
/// from its generation folder.
pub fn prune_extras(dir: &Path, m: &Manifest) -> Result<()> {
    let data = m.data_dir(dir);
    let keep = [themes_file(m), extra_vectors_file(m)];
    let entries = std::fs::read_dir(&data).with_context(|| format!("cannot read {}", data.display()))?;
    for name in entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()) {
        if is_extras_name(&name) && !keep.contains(&name) {
            remove_if_exists(&data.join(&name))?;
        }
    }
    Ok(())
}

/// Gives a finished cache (`old`) the themes, palette and colours of
/// `new`, whose files [`write_extras`] wrote into `old`'s generation folder
/// beside the old ones; its orderings stay. The manifest is replaced by
/// the one finishing protocol (`finish::commit`), then the old extras' files go.
/// The caller holds the directory's lock.
pub fn update_extras(dir: &Path, mut old: Manifest, new: &Manifest, timings: Timings) -> Result<Manifest> {
    old.themes = new.themes.clone();
    old.theme_texts = new.theme_texts.clone();
    old.theme_width = new.theme_width;
    old.palette = new.palette.clone();
    old.colors = new.colors.clone();
    old.inputs = new.inputs.clone();
    old.extras_fingerprint = new.extras_fingerprint.clone();
    old.timings = timings;
    commit(dir, &mut old, &Written::Extras, Replaced::Extras)?;
    Ok(old)
}

/// The extras' files `m` names, with their sizes.
pub(crate) fn extras_files(m: &Manifest) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    if !m.themes.is_empty() {
        out.push((themes_file(m), m.theme_bytes()));
    }
    let vectors = (m.themes.len() + m.palette.len()) * m.dimension * 2;
    if vectors > 0 {
        out.push((extra_vectors_file(m), vectors as u64));
    }
    out
}
