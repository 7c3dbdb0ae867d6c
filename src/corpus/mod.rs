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

use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::dates::{self, DateReading, ParsedDate};

mod folder;

mod error;
mod files;
mod matching;

use error::json_error;
pub use error::{CorpusError, Problem, Reason, Report};
use files::*;
pub use files::{is_jsonl, read_exclude};
use matching::*;

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
    use std::path::PathBuf;

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
