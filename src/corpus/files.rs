//! Reading the input files: the original layout's JSON documents and JSON
//! Lines, poem ids and keys, vectors, and the exclude list.

use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::*;

/// Whether a path is read as JSON Lines.
pub fn is_jsonl(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "ndjson"))
}

/// Reads a file whole, without the UTF-8 byte order mark some editors
/// put first.
pub(super) fn read(path: &Path) -> Result<Vec<u8>, CorpusError> {
    let mut bytes = std::fs::read(path).map_err(|error| CorpusError::Io {
        path: path.to_owned(),
        error,
    })?;
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    Ok(bytes)
}

/// The original layout's files are one JSON object; say so plainly when the
/// top level is something else (an array, a string, …), with the shapes
/// that are read.
pub(super) fn expect_object(path: &Path, bytes: &[u8], field: &str) -> Result<(), CorpusError> {
    let found = match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => return Ok(()),
        Some(b'[') => "an array".to_owned(),
        Some(b) => format!("{:?}", *b as char),
    };
    Err(CorpusError::Invalid {
        path: path.to_owned(),
        message: format!(
            "the top level is {found}, but a .json file must be one object {{\"{field}\": [{{...}}, ...]}}; \
             wrap the list as {{\"{field}\": [...]}}, or write one object per line (no enclosing [ ]) in a .jsonl file"
        ),
    })
}

/// JSON Lines hold one object per line; a line that is an array or a bare
/// value would otherwise be read field by field and fail obscurely.
pub(super) fn expect_object_line(path: &Path, lineno: usize, line: &[u8]) -> Result<(), CorpusError> {
    match line.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | None => Ok(()),
        Some(b) => Err(CorpusError::Invalid {
            path: path.to_owned(),
            message: format!(
                "line {lineno} starts with {:?}, but each line of a .jsonl file must be one object such as {{\"id\": \"rain\", \"text\": \"...\"}}",
                *b as char
            ),
        }),
    }
}

/// An id may be written as a string or a number; anything else is kept
/// to be named in the error.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Id {
    Str(String),
    Num(serde_json::Number),
    Other(serde_json::Value),
}

impl Id {
    /// The id as text, or why it is not one (`what` names the entry).
    pub(super) fn into_string(self, path: &Path, what: impl FnOnce() -> String) -> Result<String, CorpusError> {
        let other = match self {
            Id::Str(s) => return Ok(s),
            Id::Num(n) => return Ok(n.to_string()),
            Id::Other(v) => v,
        };
        let kind = match other {
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
            _ => "not a string or a number",
        };
        let mut shown = other.to_string();
        if shown.chars().count() > 60 {
            shown = shown.chars().take(60).chain(['…']).collect();
        }
        Err(CorpusError::Invalid {
            path: path.to_owned(),
            message: format!(
                "{}: its \"id\" is {shown} ({kind}); an id must be a string or a number",
                what()
            ),
        })
    }
}

/// A poem's id, or an error naming the poem when it has none or a bad one.
pub(super) fn poem_id(path: &Path, i: usize, id: Option<Id>) -> Result<String, CorpusError> {
    let what = || format!("poem #{} (0-based entry {i})", i + 1);
    match id {
        Some(id) => id.into_string(path, what),
        None => Err(CorpusError::Invalid {
            path: path.to_owned(),
            message: format!("{} has no \"id\"", what()),
        }),
    }
}

#[derive(Deserialize)]
pub(super) struct PoemsFile {
    pub(super) poems: Vec<RawPoem>,
}

#[derive(Debug, Deserialize, Default)]
pub(super) struct RawPoem {
    pub(super) id: Option<Id>,
    pub(super) category: Option<String>,
    pub(super) poem_index: Option<u64>,
    pub(super) content: Option<String>,
    pub(super) text: Option<String>,
    pub(super) title: Option<String>,
    pub(super) creation_date: Option<String>,
    pub(super) date: Option<String>,
    // JSONL lines may carry their vector inline.
    pub(super) embedding: Option<Box<RawValue>>,
    pub(super) error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
pub(super) struct RawEmbedding {
    pub(super) id: Option<Id>,
    pub(super) category: Option<String>,
    pub(super) poem_index: Option<u64>,
    pub(super) embedding: Option<Box<RawValue>>,
    pub(super) error: Option<serde_json::Value>,
}

pub(super) fn make_key(category: Option<&str>, id: &str) -> String {
    match category {
        Some(c) if !c.is_empty() => format!("{c}/{id}"),
        _ => id.to_owned(),
    }
}

pub(super) fn error_message(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a raw `[n, n, ...]` without serde's range check, so that a number
/// out of range becomes an infinity (reported per poem) instead of failing
/// the whole file.
pub(super) fn parse_vector(raw: &RawValue) -> Result<Option<Vec<f64>>, Reason> {
    let s = raw.get().trim();
    if s == "null" {
        return Ok(None);
    }
    let inner = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or(Reason::NotNumbers)?;
    if inner.trim().is_empty() {
        return Ok(Some(Vec::new()));
    }
    inner
        .split(',')
        .map(|t| t.trim().parse::<f64>().map_err(|_| Reason::NotNumbers))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Reads the poems file; the flag says whether vectors may be inline (JSONL).
pub(super) fn read_poems(path: &Path) -> Result<(Vec<RawPoem>, bool), CorpusError> {
    if path.is_dir() {
        return Ok((folder::read(path)?, false));
    }
    let bytes = read(path)?;
    if is_jsonl(path) {
        return Ok((read_lines(path, &bytes)?, true));
    }
    expect_object(path, &bytes, "poems")?;
    let file: PoemsFile = serde_json::from_slice(&bytes).map_err(|e| json_error(path, e))?;
    Ok((file.poems, false))
}

pub(super) fn read_lines<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<Vec<T>, CorpusError> {
    let mut out = Vec::new();
    for (lineno, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        expect_object_line(path, lineno + 1, line)?;
        let item = serde_json::from_slice(line).map_err(|e| CorpusError::Json {
            path: path.to_owned(),
            line: lineno + 1,
            column: e.column(),
            message: e.to_string(),
        })?;
        out.push(item);
    }
    Ok(out)
}

pub(super) fn read_embeddings(
    path: &Path,
    dim: &mut Option<usize>,
    model: &mut String,
) -> Result<Vec<RawEmbedding>, CorpusError> {
    let bytes = read(path)?;
    if is_jsonl(path) {
        return read_lines(path, &bytes);
    }
    expect_object(path, &bytes, "embeddings")?;
    let file: crate::formats::embeddings::EmbeddingsFile<RawEmbedding> =
        serde_json::from_slice(&bytes).map_err(|e| json_error(path, e))?;
    *dim = file.metadata.embedding_dimension;
    if let Some(m) = file.metadata.embedding_model {
        *model = m;
    }
    Ok(file.embeddings)
}

/// Reads an exclude file: one key per line; blank lines and `#` comments skipped.
pub fn read_exclude(path: &Path) -> Result<Vec<String>, CorpusError> {
    let text = String::from_utf8(read(path)?).map_err(|e| CorpusError::Invalid {
        path: path.to_owned(),
        message: format!("not UTF-8: {e}"),
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}
