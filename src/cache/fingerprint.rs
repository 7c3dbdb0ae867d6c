//! Hashes that decide whether a cache is current: of key lists, of
//! everything that shapes the orderings, and of the themes and palette
//! (kept apart, so that new ones recompute only themselves); and the words
//! that say how two key lists differ.

use std::collections::HashSet;

use super::{Params, ALGORITHM_VERSION};
use crate::quantize::Quantized;

/// "3 poems added (a, b, c), 1 removed (d)" between two key lists.
pub fn key_changes(old: &[String], new: &[String]) -> Vec<String> {
    let o: HashSet<&String> = old.iter().collect();
    let n: HashSet<&String> = new.iter().collect();
    let list = |v: Vec<&String>| {
        let shown: Vec<&str> = v.iter().take(5).map(|s| s.as_str()).collect();
        format!("{}{}", shown.join(", "), if v.len() > 5 { ", …" } else { "" })
    };
    let added: Vec<&String> = new.iter().filter(|k| !o.contains(k)).collect();
    let removed: Vec<&String> = old.iter().filter(|k| !n.contains(k)).collect();
    let mut out = Vec::new();
    if !added.is_empty() {
        out.push(format!(
            "{} added ({})",
            crate::plural::count(added.len(), "poem", "poems"),
            list(added)
        ));
    }
    if !removed.is_empty() {
        out.push(format!(
            "{} removed ({})",
            crate::plural::count(removed.len(), "poem", "poems"),
            list(removed)
        ));
    }
    out
}

/// blake3 of a key list, in order.
pub fn hash_keys(keys: &[String]) -> String {
    let mut h = blake3::Hasher::new();
    for k in keys {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The fingerprint of everything that decides the orderings.
pub fn fingerprint(keys: &[String], q: &Quantized, params: &Params, model: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(&ALGORITHM_VERSION.to_le_bytes());
    h.update(hash_keys(keys).as_bytes());
    h.update(model.as_bytes());
    h.update(&(q.dim as u64).to_le_bytes());
    h.update(bytemuck::cast_slice(&q.data));
    h.update(&(params.width as u64).to_le_bytes());
    h.update(&[params.center as u8, params.index_bytes as u8]);
    h.finalize().to_hex().to_string()
}

/// The fingerprint of the themes and the palette (names, colours and
/// quantised vectors); empty without either. It is kept apart from the
/// orderings' fingerprint, so that new themes or a new palette recompute
/// only themselves.
pub fn extras_fingerprint(
    themes: Option<(&[String], &Quantized)>,
    palette: Option<(&[crate::palette::Color], &Quantized)>,
) -> String {
    if themes.is_none() && palette.is_none() {
        return String::new();
    }
    let mut h = blake3::Hasher::new();
    h.update(&ALGORITHM_VERSION.to_le_bytes());
    if let Some((names, q)) = themes {
        h.update(b"themes");
        h.update(hash_keys(names).as_bytes());
        h.update(bytemuck::cast_slice(&q.data));
    }
    if let Some((colors, q)) = palette {
        h.update(b"palette");
        for c in colors {
            h.update(hash_keys(&[c.name.clone(), c.hex.clone()]).as_bytes());
        }
        h.update(bytemuck::cast_slice(&q.data));
    }
    h.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_changes_are_described() {
        let old: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let new: Vec<String> = ["a", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(
            key_changes(&old, &new),
            vec!["2 poems added (d, e)", "1 poem removed (b)"]
        );
    }
}
