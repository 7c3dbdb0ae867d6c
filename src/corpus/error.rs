//! What goes wrong in an input: the hard errors that stop a load (naming the
//! file, the poem and the problem) and the report of poems left out.

use std::fmt;
use std::path::{Path, PathBuf};

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

pub(super) fn json_error(path: &Path, e: serde_json::Error) -> CorpusError {
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
pub(super) const SHOWN_KEYS: usize = 5;

/// Reasons with a line of their own; rarer ones share one more line.
pub(super) const SHOWN_REASONS: usize = 4;

/// `"a", "b", "c", "d", "e" … and 3,895 more`: the first keys, then a count.
pub(super) fn some_keys(keys: &[&str]) -> String {
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
