//! Corpus loading and validation: poems, their embeddings, and the report of
//! what could not be used.
//!
//! Two layouts are read:
//! - the original system's `poems.json` / `embeddings.json` (one JSON document
//!   each, unknown fields tolerated);
//! - JSON Lines (`.jsonl` / `.ndjson`): `{"id", "text", "embedding"?}` per line;
//! - a folder of `.txt` / `.md` files, one poem each (see [`folder`]).
//!
//! Every poem has one stable key: `category/id` when it has a category, else
//! `id`. Embeddings are matched to poems by key (falling back to `poem_index`
//! only for entries without an id), never by array position.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dates::{self, DateReading, ParsedDate};

mod folder;

/// A hard error in the input: it names the file, the poem and the problem.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    // The OS error is in the message, so it is not also a `source`: a
    // chain printed with `{:#}` would say it twice.
    #[error("cannot read {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: malformed JSON at line {line}, column {column}: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("{path}: duplicate key {key:?} (entries {first} and {second})")]
    DuplicateKey {
        path: PathBuf,
        key: String,
        first: usize,
        second: usize,
    },
    #[error(
        "{path}: duplicate poem_index {value} (poems {first_key:?} and {second_key:?}, entries {first} and {second}); \
         embeddings without an id are matched by poem_index, so each value must be unique"
    )]
    DuplicatePoemIndex {
        path: PathBuf,
        value: u64,
        first_key: String,
        second_key: String,
        first: usize,
        second: usize,
    },
    #[error("{path}: poem {key:?} has an unusable embedding ({reason}) and --strict is set")]
    Strict { path: PathBuf, key: String, reason: Reason },
    #[error(
        "{path} has no embeddings: `diversity-gpu build --poems {path}` makes them in process (or with a server: --url), \
         `diversity-gpu embed --poems {path} --out embeddings.json` makes them for --embeddings, or give --embeddings FILE"
    )]
    NoEmbeddings { path: PathBuf },
    #[error(
        "{path}: none of its {} matches a poem of {poems}: it holds the embeddings of other poems (its first key is {first_entry:?}, the poems' first is {first_poem:?})",
        crate::plural::count(*entries, "key", "keys")
    )]
    NoMatch {
        path: PathBuf,
        poems: PathBuf,
        entries: usize,
        first_entry: String,
        first_poem: String,
    },
    #[error(
        "no usable embedding is left in {path} ({} in all: {unusable} unusable, {excluded} excluded)",
        crate::plural::count(*poems, "poem", "poems")
    )]
    NothingUsable {
        path: PathBuf,
        poems: usize,
        unusable: usize,
        excluded: usize,
    },
}

fn json_error(path: &Path, e: serde_json::Error) -> CorpusError {
    CorpusError::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    }
}

/// Why a poem has no usable embedding.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Reason {
    /// No entry for this poem at all.
    Missing,
    /// The entry carries an `"error"` field.
    Error { message: String },
    /// The vector has the wrong number of components.
    Dimension { expected: usize, found: usize },
    /// A component is NaN or infinite (e.g. a JSON number out of range).
    NotFinite { component: usize },
    /// Every component is zero, so it has no direction.
    Zero,
    /// With `--center`: the vector equals the corpus mean, so nothing is
    /// left of it once the mean is subtracted.
    EqualsMean,
    /// The `embedding` field is not an array of numbers.
    NotNumbers,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing => write!(f, "no embedding"),
            Reason::Error { message } => write!(f, "embedding failed: {message}"),
            Reason::Dimension { expected, found } => {
                write!(f, "wrong dimension: {found} instead of {expected}")
            }
            Reason::NotFinite { component } => {
                write!(f, "component {component} is NaN or infinite")
            }
            Reason::Zero => write!(f, "all-zero vector"),
            Reason::EqualsMean => write!(
                f,
                "its vector equals the corpus mean (no direction left after --center)"
            ),
            Reason::NotNumbers => write!(f, "embedding is not an array of numbers"),
        }
    }
}

/// One poem, as the site shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Poem {
    pub key: String,
    /// The id within its category (the key without the category).
    pub id: String,
    pub category: Option<String>,
    /// The date as written in the file (shown on the pages).
    pub date: Option<String>,
    /// The date parsed (see [`crate::dates`]); `None` without a date or
    /// when it is in no known form.
    pub parsed_date: Option<ParsedDate>,
    /// The title given in the input (`title`), if any; pages fall back to
    /// the first line.
    pub title: Option<String>,
    pub text: String,
}

impl Poem {
    /// What chronological order sorts by: seconds since 1970-01-01 UTC,
    /// `None` for a poem without a (parseable) date.
    pub fn date_sort_key(&self) -> Option<i64> {
        self.parsed_date.map(ParsedDate::sort_key)
    }
}

/// A poem's key with the reason it is left out of the orderings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub key: String,
    #[serde(flatten)]
    pub reason: Reason,
}

/// What was left out, and why. It goes into the cache manifest.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Poems whose embedding is unusable.
    pub unusable: Vec<Problem>,
    /// Poems left out by `--exclude`.
    pub excluded: Vec<String>,
    /// Embedding entries that match no poem (their key, or `#index`).
    pub orphans: Vec<String>,
    /// Keys in the exclude file that match no poem.
    pub unknown_excludes: Vec<String>,
}

/// Keys named in one line of the report; the rest are counted.
const SHOWN_KEYS: usize = 5;

/// Reasons with a line of their own; rarer ones share one more line.
const SHOWN_REASONS: usize = 4;

/// `"a", "b", "c", "d", "e" … and 3,895 more`: the first keys, then a count.
fn some_keys(keys: &[&str]) -> String {
    let shown: Vec<String> = keys.iter().take(SHOWN_KEYS).map(|k| format!("{k:?}")).collect();
    match keys.len().saturating_sub(SHOWN_KEYS) {
        0 => shown.join(", "),
        more => format!("{} … and {} more", shown.join(", "), crate::plural::thousands(more)),
    }
}

impl Report {
    /// What was left out, for the log: a line per reason and one for the
    /// entries that match no poem, each naming its first few keys, so a
    /// half-matching file gives two lines, not thousands.
    pub fn summary(&self, source: &Path, poems: &Path) -> Vec<String> {
        use crate::plural::count;
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for p in &self.unusable {
            let reason = p.reason.to_string();
            match groups.iter().position(|(r, _)| *r == reason) {
                Some(i) => groups[i].1.push(&p.key),
                None => groups.push((reason, vec![&p.key])),
            }
        }
        if groups.len() > SHOWN_REASONS + 1 {
            let rest: Vec<&str> = groups.drain(SHOWN_REASONS..).flat_map(|(_, keys)| keys).collect();
            groups.push(("other reasons".to_owned(), rest));
        }
        let mut lines: Vec<String> = groups
            .iter()
            .map(|(reason, keys)| {
                let n = count(keys.len(), "poem", "poems");
                format!("{}: {n} left out ({reason}): {}", source.display(), some_keys(keys))
            })
            .collect();
        if !self.orphans.is_empty() {
            let keys: Vec<&str> = self.orphans.iter().map(String::as_str).collect();
            lines.push(format!(
                "{}: {} no poem in {}: {}",
                source.display(),
                count(keys.len(), "embedding matches", "embeddings match"),
                poems.display(),
                some_keys(&keys)
            ));
        }
        if !self.unknown_excludes.is_empty() {
            let keys: Vec<&str> = self.unknown_excludes.iter().map(String::as_str).collect();
            lines.push(format!(
                "{} no poem: {}",
                count(keys.len(), "excluded key matches", "excluded keys match"),
                some_keys(&keys)
            ));
        }
        lines
    }
}

/// The whole input: poems in canonical (input) order, and each poem's vector
/// or the reason it has none.
#[derive(Debug)]
pub struct Corpus {
    pub poems: Vec<Poem>,
    /// Parallel to `poems`.
    pub vectors: Vec<Result<Vec<f64>, Reason>>,
    pub dimension: usize,
    pub model: String,
    pub report: Report,
}

/// Options that decide which poems take part.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Turn every unusable embedding into an error.
    pub strict: bool,
    /// Keys to leave out everywhere.
    pub exclude: Vec<String>,
}

/// Whether a path is read as JSON Lines.
pub fn is_jsonl(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "ndjson"))
}

/// Reads a file whole, without the UTF-8 byte order mark some editors
/// put first.
fn read(path: &Path) -> Result<Vec<u8>, CorpusError> {
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
fn expect_object(path: &Path, bytes: &[u8], field: &str) -> Result<(), CorpusError> {
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
fn expect_object_line(path: &Path, lineno: usize, line: &[u8]) -> Result<(), CorpusError> {
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
enum Id {
    Str(String),
    Num(serde_json::Number),
    Other(serde_json::Value),
}

impl Id {
    /// The id as text, or why it is not one (`what` names the entry).
    fn into_string(self, path: &Path, what: impl FnOnce() -> String) -> Result<String, CorpusError> {
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
fn poem_id(path: &Path, i: usize, id: Option<Id>) -> Result<String, CorpusError> {
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
struct PoemsFile {
    poems: Vec<RawPoem>,
}

#[derive(Debug, Deserialize, Default)]
struct RawPoem {
    id: Option<Id>,
    category: Option<String>,
    poem_index: Option<u64>,
    content: Option<String>,
    text: Option<String>,
    title: Option<String>,
    creation_date: Option<String>,
    date: Option<String>,
    // JSONL lines may carry their vector inline.
    embedding: Option<Box<RawValue>>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawEmbedding {
    id: Option<Id>,
    category: Option<String>,
    poem_index: Option<u64>,
    embedding: Option<Box<RawValue>>,
    error: Option<serde_json::Value>,
}

fn make_key(category: Option<&str>, id: &str) -> String {
    match category {
        Some(c) if !c.is_empty() => format!("{c}/{id}"),
        _ => id.to_owned(),
    }
}

fn error_message(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses a raw `[n, n, ...]` without serde's range check, so that a number
/// out of range becomes an infinity (reported per poem) instead of failing
/// the whole file.
fn parse_vector(raw: &RawValue) -> Result<Option<Vec<f64>>, Reason> {
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

/// The poems of a poems file, indexed by key and `poem_index`: the one
/// indexing path of [`load`] and [`load_poems`].
struct Indexed {
    poems: Vec<Poem>,
    index_of: HashMap<String, usize>,
    by_poem_index: HashMap<u64, usize>,
    /// JSONL only: each poem's inline `embedding` and `error`.
    inline: Vec<(Option<Box<RawValue>>, Option<serde_json::Value>)>,
}

/// Reads and indexes a poems file: every poem needs an id and a unique key.
fn index_poems(path: &Path) -> Result<Indexed, CorpusError> {
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
fn read_date(path: &Path, key: &str, text: &str) -> Option<ParsedDate> {
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
fn entry_vector(embedding: Option<Box<RawValue>>, error: Option<serde_json::Value>) -> Result<Vec<f64>, Reason> {
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
struct Matched {
    vectors: Vec<Result<Vec<f64>, Reason>>,
    dimension: Option<usize>,
    model: String,
    /// Entries that matched a poem.
    matched: usize,
}

/// Matches an embeddings file's entries to the poems; entries that match
/// no poem go to `report.orphans`.
fn match_embeddings(path: &Path, idx: &Indexed, report: &mut Report) -> Result<Matched, CorpusError> {
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
fn common_length(vectors: &[Result<Vec<f64>, Reason>]) -> usize {
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for v in vectors.iter().flatten() {
        *counts.entry(v.len()).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(len, c)| (c, std::cmp::Reverse(len)))
        .map_or(0, |(len, _)| len)
}

/// Loads poems (and, where given, embeddings) and validates them.
pub fn load(poems_path: &Path, embeddings_path: Option<&Path>, opts: &LoadOptions) -> Result<Corpus, CorpusError> {
    let mut idx = index_poems(poems_path)?;
    let mut report = Report::default();
    let matched = match embeddings_path {
        Some(e) => match_embeddings(e, &idx, &mut report)?,
        None => Matched {
            vectors: std::mem::take(&mut idx.inline)
                .into_iter()
                .map(|(e, err)| entry_vector(e, err))
                .collect(),
            dimension: None,
            model: String::from("unknown"),
            matched: 0,
        },
    };
    if let Some(path) = embeddings_path.filter(|_| matched.matched == 0 && !report.orphans.is_empty()) {
        // Another corpus's file: say so before exclusions or --strict
        // turn it into a vaguer complaint.
        return Err(CorpusError::NoMatch {
            path: path.to_owned(),
            poems: poems_path.to_owned(),
            entries: report.orphans.len(),
            first_entry: report.orphans[0].clone(),
            first_poem: idx.poems.first().map(|p| p.key.clone()).unwrap_or_default(),
        });
    }
    // The dimension is the declared one, else the most common length.
    let dimension = matched.dimension.unwrap_or_else(|| common_length(&matched.vectors));
    let vectors: Vec<Result<Vec<f64>, Reason>> = matched
        .vectors
        .into_iter()
        .map(|r| r.and_then(|v| check_vector(v, dimension)))
        .collect();
    let source = embeddings_path.unwrap_or(poems_path);
    let vectors = select(source, &idx, vectors, opts, &mut report)
        .map_err(|e| explain_nothing(e, poems_path, embeddings_path, &report))?;
    Ok(Corpus {
        poems: idx.poems,
        vectors,
        dimension,
        model: matched.model,
        report,
    })
}

/// Says why nothing is usable when the poems carry no vector at all (an
/// embeddings file that matches no poem is caught before, in [`load`]).
fn explain_nothing(e: CorpusError, poems: &Path, embeddings: Option<&Path>, report: &Report) -> CorpusError {
    let CorpusError::NothingUsable { poems: n, excluded, .. } = e else {
        return e;
    };
    let all_missing = report.unusable.iter().all(|p| matches!(p.reason, Reason::Missing));
    // Poems all excluded are not poems without vectors.
    if excluded == n || !all_missing {
        return e;
    }
    match embeddings {
        None => CorpusError::NoEmbeddings { path: poems.to_owned() },
        Some(_) => e,
    }
}

/// Whether the poems carry their own vectors (a JSON Lines corpus with
/// `embedding` fields); a folder or `poems.json` never does.
pub fn carries_vectors(poems: &Path) -> Result<bool, CorpusError> {
    if poems.is_dir() || !is_jsonl(poems) {
        return Ok(false);
    }
    #[derive(Deserialize)]
    struct Line {
        embedding: Option<Box<RawValue>>,
    }
    let lines: Vec<Line> = read_lines(poems, &read(poems)?)?;
    Ok(lines
        .iter()
        .any(|l| l.embedding.as_ref().is_some_and(|e| e.get().trim() != "null")))
}

/// Whether two model names are one model: `all-MiniLM-L6-v2` is
/// `sentence-transformers/all-MiniLM-L6-v2` (case aside).
pub fn same_model(a: &str, b: &str) -> bool {
    let short = |s: &str| {
        s.strip_prefix("sentence-transformers/")
            .unwrap_or(s)
            .to_ascii_lowercase()
    };
    short(a) == short(b)
}

/// Applies `--exclude` and `--strict`, fills the report, and refuses a
/// corpus with nothing usable. Excluded poems' vectors are dropped here.
fn select(
    source: &Path,
    idx: &Indexed,
    vectors: Vec<Result<Vec<f64>, Reason>>,
    opts: &LoadOptions,
    report: &mut Report,
) -> Result<Vec<Result<Vec<f64>, Reason>>, CorpusError> {
    let excluded: std::collections::HashSet<&str> = opts.exclude.iter().map(String::as_str).collect();
    report.unknown_excludes = opts
        .exclude
        .iter()
        .filter(|k| !idx.index_of.contains_key(*k))
        .cloned()
        .collect();
    let mut usable = 0;
    for (poem, v) in idx.poems.iter().zip(&vectors) {
        match v {
            _ if excluded.contains(poem.key.as_str()) => report.excluded.push(poem.key.clone()),
            Ok(_) => usable += 1,
            Err(reason) if opts.strict => {
                return Err(CorpusError::Strict {
                    path: source.to_owned(),
                    key: poem.key.clone(),
                    reason: reason.clone(),
                })
            }
            Err(reason) => report.unusable.push(Problem {
                key: poem.key.clone(),
                reason: reason.clone(),
            }),
        }
    }
    if let Some(orphan) = report.orphans.first().filter(|_| opts.strict) {
        return Err(CorpusError::Invalid {
            path: source.to_owned(),
            message: format!(
                "embedding {orphan:?} matches no poem ({} such entries) and --strict is set",
                report.orphans.len()
            ),
        });
    }
    if usable == 0 {
        return Err(CorpusError::NothingUsable {
            path: source.to_owned(),
            poems: idx.poems.len(),
            unusable: report.unusable.len(),
            excluded: report.excluded.len(),
        });
    }
    Ok(idx
        .poems
        .iter()
        .zip(vectors)
        .map(|(p, v)| {
            if excluded.contains(p.key.as_str()) {
                Err(Reason::Missing)
            } else {
                v
            }
        })
        .collect())
}

fn check_vector(v: Vec<f64>, dimension: usize) -> Result<Vec<f64>, Reason> {
    if v.len() != dimension {
        return Err(Reason::Dimension {
            expected: dimension,
            found: v.len(),
        });
    }
    if let Some(component) = v.iter().position(|x| !x.is_finite()) {
        return Err(Reason::NotFinite { component });
    }
    if v.iter().all(|&x| x == 0.0) {
        return Err(Reason::Zero);
    }
    Ok(v)
}

/// Reads the poems file; the flag says whether vectors may be inline (JSONL).
fn read_poems(path: &Path) -> Result<(Vec<RawPoem>, bool), CorpusError> {
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

fn read_lines<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<Vec<T>, CorpusError> {
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

fn read_embeddings(path: &Path, dim: &mut Option<usize>, model: &mut String) -> Result<Vec<RawEmbedding>, CorpusError> {
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

/// Loads only the poems (for `render`, which needs no embeddings).
pub fn load_poems(path: &Path) -> Result<Vec<Poem>, CorpusError> {
    index_poems(path).map(|idx| idx.poems)
}

/// The bundled corpus (`assets/corpus`), for unit tests that want real
/// embeddings.
#[cfg(test)]
pub(crate) fn bundled_for_tests() -> Corpus {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/corpus");
    load(
        &dir.join("poems.json"),
        Some(&dir.join("embeddings.json")),
        &Default::default(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(body.as_bytes()).unwrap();
        p
    }

    fn poems_json(keys: &[(&str, &str)]) -> String {
        let items: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(i, (c, id))| {
                format!(
                    r#"{{"poem_index": {}, "category": "{c}", "id": "{id}", "content": "text {i}", "extra": [1,2]}}"#,
                    i + 1
                )
            })
            .collect();
        format!(
            r#"{{"metadata": {{"total_poems": {}}}, "poems": [{}]}}"#,
            keys.len(),
            items.join(",")
        )
    }

    fn setup(embeddings: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "poems.json",
            &poems_json(&[("a", "1"), ("a", "2"), ("b", "1")]),
        );
        let e = write(dir.path(), "embeddings.json", embeddings);
        (dir, p, e)
    }

    #[test]
    fn matches_by_key_not_position_and_reports_problems() {
        let (_d, p, e) = setup(
            r#"{"metadata": {"embedding_model": "m", "embedding_dimension": 2}, "embeddings": [
              {"category": "b", "id": "1", "embedding": [1, 0]},
              {"category": "a", "id": "1", "embedding": [0, 1e999]},
              {"category": "a", "id": "2", "embedding": [0.5, 0.5]},
              {"category": "z", "id": "9", "embedding": [1, 1]}]}"#,
        );
        let c = load(&p, Some(&e), &LoadOptions::default()).unwrap();
        assert_eq!(c.model, "m");
        assert_eq!(c.vectors[2], Ok(vec![1.0, 0.0]));
        assert_eq!(c.vectors[1], Ok(vec![0.5, 0.5]));
        assert_eq!(c.vectors[0], Err(Reason::NotFinite { component: 1 }));
        assert_eq!(c.report.unusable[0].key, "a/1");
        assert_eq!(c.report.orphans, vec!["z/9".to_string()]);
    }

    #[test]
    fn each_unusable_kind_is_reported_with_its_key() {
        let (_d, p, e) = setup(
            r#"{"metadata": {"embedding_dimension": 2}, "embeddings": [
              {"category": "a", "id": "1", "error": "timeout"},
              {"category": "a", "id": "2", "embedding": [0, 0]},
              {"category": "b", "id": "1", "embedding": [1, 2, 3]}]}"#,
        );
        let err = load(&p, Some(&e), &LoadOptions::default()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("no usable embedding") && msg.contains("embeddings.json"),
            "{msg}"
        );

        let (_d, p, e) = setup(
            r#"{"embeddings": [
              {"category": "a", "id": "1", "error": {"code": 500}},
              {"category": "a", "id": "2", "embedding": [0, 0]},
              {"category": "b", "id": "1", "embedding": [1, 2]},
              {"poem_index": 77, "embedding": [1, 2]}]}"#,
        );
        let c = load(&p, Some(&e), &LoadOptions::default()).unwrap();
        let reasons: Vec<String> = c
            .report
            .unusable
            .iter()
            .map(|p| format!("{}: {}", p.key, p.reason))
            .collect();
        assert_eq!(
            reasons,
            vec!["a/1: embedding failed: {\"code\":500}", "a/2: all-zero vector"]
        );
        assert_eq!(c.report.orphans, vec!["#77".to_string()]);

        let err = load(
            &p,
            Some(&e),
            &LoadOptions {
                strict: true,
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("\"a/1\""), "{err}");
    }

    #[test]
    fn wrong_dimension_and_missing_are_reported() {
        let (_d, p, e) = setup(
            r#"{"embeddings": [
              {"category": "a", "id": "1", "embedding": [1, 2, 3]},
              {"category": "b", "id": "1", "embedding": [1, 2, 3]},
              {"category": "a", "id": "2", "embedding": [1, 2]}]}"#,
        );
        let c = load(&p, Some(&e), &LoadOptions::default()).unwrap();
        assert_eq!(c.dimension, 3);
        assert_eq!(c.vectors[1], Err(Reason::Dimension { expected: 3, found: 2 }));
        let (_d, p, e) = setup(r#"{"embeddings": [{"category": "a", "id": "1", "embedding": [1, 2]}]}"#);
        let c = load(&p, Some(&e), &LoadOptions::default()).unwrap();
        assert_eq!(c.report.unusable.len(), 2);
        assert!(c.report.unusable.iter().all(|p| p.reason == Reason::Missing));
    }

    #[test]
    fn malformed_json_names_file_line_and_column() {
        let (_d, p, e) = setup("{\"embeddings\": [\n  {\"id\": 1,, }]}");
        let msg = load(&p, Some(&e), &LoadOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("embeddings.json") && msg.contains("line 2"), "{msg}");
        let (_d, p, e) = setup(r#"{"vectors": []}"#);
        let msg = load(&p, Some(&e), &LoadOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("missing field `embeddings`"), "{msg}");
        let (_d, p, e) = setup("  [1, 2]");
        let msg = load(&p, Some(&e), &LoadOptions::default()).unwrap_err().to_string();
        assert!(
            msg.contains("embeddings.json: the top level is an array, but a .json file must be one object"),
            "{msg}"
        );
    }

    #[test]
    fn duplicate_keys_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "poems.json", &poems_json(&[("a", "1"), ("a", "1")]));
        let msg = load(&p, None, &LoadOptions::default()).unwrap_err().to_string();
        assert!(
            msg.contains("duplicate key \"a/1\"") && msg.contains("poems.json"),
            "{msg}"
        );
        // Two poems sharing a poem_index: an embedding matched by it would
        // go to one of them by chance.
        let body = poems_json(&[("a", "1"), ("a", "2")]).replace("\"poem_index\": 2", "\"poem_index\": 1");
        let p = write(dir.path(), "poems.json", &body);
        let e = write(
            dir.path(),
            "embeddings.json",
            r#"{"embeddings": [{"poem_index": 1, "embedding": [1, 2]}]}"#,
        );
        for msg in [
            load(&p, Some(&e), &LoadOptions::default()).unwrap_err().to_string(),
            load_poems(&p).unwrap_err().to_string(),
        ] {
            assert!(
                msg.contains("poems.json: duplicate poem_index 1 (poems \"a/1\" and \"a/2\", entries 1 and 2)"),
                "{msg}"
            );
        }
        let msg = load(&dir.path().join("nope.json"), None, &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("nope.json"), "{msg}");
    }

    #[test]
    fn jsonl_with_inline_vectors_and_exclusions() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.jsonl",
            "{\"id\": \"x\", \"text\": \"one\", \"embedding\": [1, 0]}\n\n{\"id\": 7, \"text\": \"two\", \"embedding\": [0, 1]}\n{\"id\": \"z\", \"text\": \"three\"}\n",
        );
        let opts = LoadOptions {
            exclude: vec!["7".into(), "ghost".into()],
            ..Default::default()
        };
        let c = load(&p, None, &opts).unwrap();
        assert_eq!(c.poems[1].key, "7");
        assert_eq!(c.poems[1].text, "two");
        assert!(c.vectors[1].is_err());
        assert_eq!(c.report.excluded, vec!["7".to_string()]);
        assert_eq!(c.report.unknown_excludes, vec!["ghost".to_string()]);
        assert_eq!(c.report.unusable[0].key, "z");
        let bad = write(dir.path(), "bad.jsonl", "{\"id\": \"x\"}\n{\"id\": \n");
        let msg = load(&bad, None, &LoadOptions::default()).unwrap_err().to_string();
        assert!(msg.contains("bad.jsonl") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn a_utf8_byte_order_mark_is_accepted_in_every_layout() {
        let (d, p, e) = setup(r#"{"embeddings": [{"category": "a", "id": "1", "embedding": [1, 2]}]}"#);
        for f in [&p, &e] {
            let body = std::fs::read(f).unwrap();
            std::fs::write(f, [&b"\xEF\xBB\xBF"[..], &body].concat()).unwrap();
        }
        let c = load(&p, Some(&e), &LoadOptions::default()).unwrap();
        assert_eq!(c.poems.len(), 3);
        assert_eq!(c.vectors[0], Ok(vec![1.0, 2.0]));
        let j = write(d.path(), "c.jsonl", "\u{feff}{\"id\": \"x\", \"embedding\": [1]}\n");
        assert_eq!(load(&j, None, &LoadOptions::default()).unwrap().poems[0].key, "x");
    }

    #[test]
    fn both_loaders_index_poems_alike_and_parse_dates() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "c.jsonl",
            "{\"id\": \"a\", \"date\": \"10/1/2020\", \"embedding\": [1]}\n{\"id\": \"b\", \"date\": \"1/5/2021\"}\n{\"id\": \"c\", \"date\": \"someday\"}\n",
        );
        let all = load(&p, None, &LoadOptions::default()).unwrap().poems;
        assert_eq!(all, load_poems(&p).unwrap());
        assert!(all[0].date_sort_key() < all[1].date_sort_key());
        assert_eq!(all[2].date_sort_key(), None);
        assert_eq!(all[2].date.as_deref(), Some("someday"));
        let bad = write(dir.path(), "bad.jsonl", "{\"id\": \"a\"}\n{\"text\": \"no id\"}\n");
        let (a, b) = (
            load(&bad, None, &LoadOptions::default()).unwrap_err().to_string(),
            load_poems(&bad).unwrap_err().to_string(),
        );
        assert_eq!(a, b);
        assert!(a.contains("bad.jsonl") && a.contains("poem #2"), "{a}");
    }
}
