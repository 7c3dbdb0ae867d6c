//! Matching embeddings to poems by key (by `poem_index` only for entries
//! without an id), and the dates poems carry.

use std::collections::HashMap;
use std::path::Path;

use serde_json::value::RawValue;

use super::*;

/// The poems of a poems file, indexed by key and `poem_index`: the one
/// indexing path of [`load`] and [`load_poems`].
pub(super) struct Indexed {
    pub(super) poems: Vec<Poem>,
    pub(super) index_of: HashMap<String, usize>,
    pub(super) by_poem_index: HashMap<u64, usize>,
    /// JSONL only: each poem's inline `embedding` and `error`.
    pub(super) inline: Vec<(Option<Box<RawValue>>, Option<serde_json::Value>)>,
}

/// Reads and indexes a poems file: every poem needs an id and a unique key.
pub(super) fn index_poems(path: &Path) -> Result<Indexed, CorpusError> {
    let (raw, inline) = read_poems(path)?;
    let mut out = Indexed {
        poems: Vec::with_capacity(raw.len()),
        index_of: HashMap::with_capacity(raw.len()),
        by_poem_index: HashMap::new(),
        inline: Vec::new(),
    };
    for (i, p) in raw.into_iter().enumerate() {
        let id = poem_id(path, i, p.id)?;
        let key = make_key(p.category.as_deref(), &id);
        if let Some(first) = out.index_of.insert(key.clone(), i) {
            return Err(CorpusError::DuplicateKey {
                path: path.to_owned(),
                key,
                first: first + 1,
                second: i + 1,
            });
        }
        if let Some(pi) = p.poem_index {
            // One value for two poems would give one poem's vector to the other.
            if let Some(first) = out.by_poem_index.insert(pi, i) {
                return Err(CorpusError::DuplicatePoemIndex {
                    path: path.to_owned(),
                    value: pi,
                    first_key: out.poems[first].key.clone(),
                    second_key: key,
                    first: first + 1,
                    second: i + 1,
                });
            }
        }
        if inline {
            out.inline.push((p.embedding, p.error));
        }
        let date = p.creation_date.or(p.date);
        out.poems.push(Poem {
            parsed_date: date.as_deref().and_then(|d| read_date(path, &key, d)),
            key,
            id,
            category: p.category,
            date,
            title: p.title.filter(|t| !t.trim().is_empty()),
            text: p.content.or(p.text).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// Parses a poem's date, warning (with the file and poem) when it is
/// ambiguous or unparseable.
pub(super) fn read_date(path: &Path, key: &str, text: &str) -> Option<ParsedDate> {
    let reading = dates::parse(text);
    match &reading {
        DateReading::Clear(_) => {}
        DateReading::Ambiguous(d) => log::warn!(
            "{}: poem {key:?}: date {text:?} is ambiguous; read as month/day ({d})",
            path.display()
        ),
        DateReading::Unparseable => log::warn!(
            "{}: poem {key:?}: date {text:?} is not in a known form; the poem has no date to sort by",
            path.display()
        ),
    }
    reading.date()
}

/// A poem's vector from its entry, or why it has none.
pub(super) fn entry_vector(
    embedding: Option<Box<RawValue>>,
    error: Option<serde_json::Value>,
) -> Result<Vec<f64>, Reason> {
    match (error, embedding) {
        (Some(e), _) => Err(Reason::Error {
            message: error_message(&e),
        }),
        (None, None) => Err(Reason::Missing),
        (None, Some(raw)) => match parse_vector(&raw) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(Reason::Missing),
            Err(r) => Err(r),
        },
    }
}

/// Vectors read from an embeddings file, placed by key (or `poem_index`).
pub(super) struct Matched {
    pub(super) vectors: Vec<Result<Vec<f64>, Reason>>,
    pub(super) dimension: Option<usize>,
    pub(super) model: String,
    /// Entries that matched a poem.
    pub(super) matched: usize,
}

/// Matches an embeddings file's entries to the poems; entries that match
/// no poem go to `report.orphans`.
pub(super) fn match_embeddings(path: &Path, idx: &Indexed, report: &mut Report) -> Result<Matched, CorpusError> {
    let mut m = Matched {
        vectors: vec![Err(Reason::Missing); idx.poems.len()],
        dimension: None,
        model: String::from("unknown"),
        matched: 0,
    };
    let entries = read_embeddings(path, &mut m.dimension, &mut m.model)?;
    let mut seen: HashMap<usize, usize> = HashMap::new();
    for (i, e) in entries.into_iter().enumerate() {
        let (slot, label) = match (e.id, e.poem_index) {
            (Some(id), _) => {
                let id = id.into_string(path, || format!("embedding entry #{}", i + 1))?;
                let key = make_key(e.category.as_deref(), &id);
                (idx.index_of.get(&key).copied(), key)
            }
            (None, Some(pi)) => (idx.by_poem_index.get(&pi).copied(), format!("#{pi}")),
            (None, None) => (None, format!("entry {}", i + 1)),
        };
        let Some(slot) = slot else {
            report.orphans.push(label);
            continue;
        };
        if let Some(first) = seen.insert(slot, i) {
            return Err(CorpusError::DuplicateKey {
                path: path.to_owned(),
                key: idx.poems[slot].key.clone(),
                first: first + 1,
                second: i + 1,
            });
        }
        m.vectors[slot] = entry_vector(e.embedding, e.error);
        m.matched += 1;
    }
    Ok(m)
}

/// The most common vector length (the shorter one on a tie).
pub(super) fn common_length(vectors: &[Result<Vec<f64>, Reason>]) -> usize {
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for v in vectors.iter().flatten() {
        *counts.entry(v.len()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(len, c)| (c, std::cmp::Reverse(len)))
        .map_or(0, |(len, _)| len)
}
