//! Poems from a folder of text files: every `.txt`, `.md` and `.markdown`
//! file below it, one poem per file, in sorted order.
//!
//! - The key is the path below the folder without its extension, so the
//!   subfolder is the category (`2019/spring/rain.txt` → `2019/spring/rain`).
//! - YAML front matter (`---` lines around `title:` and `date:`) gives the
//!   title and date; without a `title:` the first line is the title (a
//!   Markdown heading's `#` dropped) and the rest is the text.
//! - Hidden files and folders, editor backups, files that are not UTF-8,
//!   broken links and empty poems are skipped with one warning each; other
//!   kinds of file in one warning; and this tool's own site and cache folders.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{CorpusError, Id, RawPoem};

/// Extensions read as poems (case-insensitive).
const POEM_EXTENSIONS: [&str; 3] = ["txt", "md", "markdown"];

/// Warns that `path` was skipped, once per process (a build reads the
/// folder at each stage).
fn skipped(path: &Path, why: &str) {
    static WARNED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned.iter().any(|p| p == path) {
        log::warn!("{}: skipped ({why})", path.display());
        warned.push(path.to_owned());
    }
}

/// A file's fate, when it is not read as a poem.
fn skip_reason(name: &str, is_dir: bool) -> Option<&'static str> {
    if name.starts_with('.') {
        return Some(if is_dir { "hidden folder" } else { "hidden file" });
    }
    if is_dir {
        return None;
    }
    let backup = name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
        || [".bak", ".swp", ".swo", ".orig", ".tmp"]
            .iter()
            .any(|s| name.to_ascii_lowercase().ends_with(s));
    if backup {
        return Some("editor backup");
    }
    let ext = Path::new(name).extension().and_then(|e| e.to_str()).unwrap_or("");
    if !POEM_EXTENSIONS.iter().any(|p| ext.eq_ignore_ascii_case(p)) {
        return Some(OTHER_KIND);
    }
    None
}

/// The files that mark a site (`.pages.b3`, `.pages.owned`, which stays
/// while a render rewrites the other) or a cache (`manifest.json`) this tool
/// wrote; named here, not imported, since the corpus comes before those
/// stages (a test checks that the names agree).
const OUTPUT_MARKERS: [&str; 3] = [".pages.b3", ".pages.owned", "manifest.json"];

/// Whether folder `d` is a site or a cache this tool wrote (a build run
/// inside the poems folder must not read its own output as poems).
fn is_tool_output(d: &Path) -> bool {
    OUTPUT_MARKERS.iter().any(|m| d.join(m).is_file())
}

/// Every poem file below `dir`, sorted by path; skipped entries warned of
/// (other kinds of file in one line).
fn poem_files(dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    let mut out = Vec::new();
    let mut others = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let io = |error| CorpusError::Io { path: d.clone(), error };
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .map_err(io)?
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            // Links to folders are not followed: no loops.
            let kind = e.file_type().map_err(|error| CorpusError::Io {
                path: path.clone(),
                error,
            })?;
            let is_dir = kind.is_dir();
            match skip_reason(&name, is_dir) {
                Some(OTHER_KIND) => others.push(path),
                Some(why) => skipped(&path, why),
                None if is_dir && is_tool_output(&path) => skipped(&path, "a site or cache this tool wrote"),
                None if is_dir => stack.push(path),
                None if kind.is_symlink() && path.is_dir() => skipped(&path, "a link to a folder"),
                None if kind.is_file() => out.push(path),
                // A link to a file is read where it points; anything else
                // (a broken link, a pipe) would fail or block the read.
                None => match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => out.push(path),
                    Ok(_) => skipped(&path, "not a regular file"),
                    Err(_) => skipped(&path, "a broken link"),
                },
            }
        }
    }
    if let Some(first) = others.first() {
        let n = others.len();
        let why = match n {
            1 => OTHER_KIND.to_owned(),
            _ => format!("{OTHER_KIND}; so are {} more files below {}", n - 1, dir.display()),
        };
        skipped(first, &why);
    }
    out.sort();
    Ok(out)
}

const OTHER_KIND: &str = "not a .txt or .md file";

#[derive(Deserialize, Default)]
struct FrontMatter {
    title: Option<serde_yaml_ng::Value>,
    date: Option<serde_yaml_ng::Value>,
}

/// A YAML scalar as text (`date: 2019-03-04` is a string already).
fn scalar(v: Option<serde_yaml_ng::Value>) -> Option<String> {
    use serde_yaml_ng::Value;
    match v? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
    .map(|s| s.trim().to_owned())
    .filter(|s| !s.is_empty())
}

/// Splits `---` front matter from the body; `None` without any.
fn front_matter(text: &str) -> Option<(&str, &str)> {
    let (first, rest) = text.split_once('\n')?;
    if first.trim_end() != "---" {
        return None;
    }
    let mut at = 0;
    for line in rest.split_inclusive('\n') {
        if matches!(line.trim_end(), "---" | "...") {
            return Some((&rest[..at], &rest[at + line.len()..]));
        }
        at += line.len();
    }
    None
}

/// The title and text of a body without a front-matter title: the first
/// non-blank line (a Markdown heading's `#` dropped), then the rest.
fn title_first_line(body: &str) -> (Option<String>, String) {
    let mut body = body.trim_start_matches(['\n', ' ', '\t']);
    // A leading rule (`---`, `***`) is decoration, not a title.
    while let Some((_, rest)) = body.split_once('\n').filter(|(f, _)| is_rule(f)) {
        body = rest.trim_start_matches(['\n', ' ', '\t']);
    }
    let (first, rest) = body.split_once('\n').unwrap_or((body, ""));
    let title = first.trim().trim_start_matches('#').trim();
    (Some(title.to_owned()).filter(|t| !t.is_empty()), rest.to_owned())
}

/// A Markdown rule: three or more of one of `-`, `*`, `_`.
fn is_rule(line: &str) -> bool {
    let l = line.trim();
    l.len() >= 3 && ['-', '*', '_'].iter().any(|&c| l.chars().all(|x| x == c))
}

/// Front matter: empty, or a YAML mapping (other keys ignored).
fn parse_front_matter(yaml: &str) -> Result<FrontMatter, String> {
    match serde_yaml_ng::from_str::<serde_yaml_ng::Value>(yaml).map_err(|e| e.to_string())? {
        serde_yaml_ng::Value::Null => Ok(FrontMatter::default()),
        v @ serde_yaml_ng::Value::Mapping(_) => serde_yaml_ng::from_value(v).map_err(|e| e.to_string()),
        _ => Err("not a mapping of title:, date:".into()),
    }
}

/// Reads one poem file; `Ok(None)` (with a warning) when it is skipped.
fn read_poem(dir: &Path, path: &Path) -> Result<Option<RawPoem>, CorpusError> {
    let bytes = std::fs::read(path).map_err(|error| CorpusError::Io {
        path: path.to_owned(),
        error,
    })?;
    let Ok(text) = String::from_utf8(bytes) else {
        skipped(path, "not UTF-8 text");
        return Ok(None);
    };
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let (meta, body) = match front_matter(&text).map(|(yaml, body)| (parse_front_matter(yaml), body)) {
        Some((Ok(meta), body)) => (meta, body),
        Some((Err(e), _)) => {
            // A poem may open with a rule: read it whole, as plain text.
            log::warn!(
                "{}: the lines between its --- rules are not front matter ({e}); read as plain text",
                path.display()
            );
            (FrontMatter::default(), text.as_str())
        }
        None => (FrontMatter::default(), text.as_str()),
    };
    let (title, body) = match scalar(meta.title) {
        Some(t) => (Some(t), body.to_owned()),
        None => title_first_line(body),
    };
    let body = body.trim_matches('\n').to_owned();
    if body.trim().is_empty() && title.is_none() {
        skipped(path, "no text");
        return Ok(None);
    }
    let rel = path.strip_prefix(dir).unwrap_or(path).with_extension("");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let (id, category) = parts.split_last().expect("a file has a name");
    Ok(Some(RawPoem {
        id: Some(Id::Str(id.clone())),
        category: Some(category.join("/")).filter(|c| !c.is_empty()),
        // A poem that is only a title is its own text.
        content: Some(if body.trim().is_empty() {
            title.clone().unwrap_or_default()
        } else {
            body
        }),
        title,
        date: scalar(meta.date),
        ..RawPoem::default()
    }))
}

/// The poems of a folder, in sorted order; an error when it holds none,
/// or two files give one key (`rain.txt` and `rain.md`).
pub(super) fn read(dir: &Path) -> Result<Vec<RawPoem>, CorpusError> {
    let mut poems = Vec::new();
    let mut keys: std::collections::HashMap<PathBuf, PathBuf> = Default::default();
    for path in poem_files(dir)? {
        if let Some(first) = keys.insert(path.with_extension(""), path.clone()) {
            return Err(CorpusError::Invalid {
                path: path.clone(),
                message: format!("gives the same poem key as {}: rename one of them", first.display()),
            });
        }
        poems.extend(read_poem(dir, &path)?);
    }
    if poems.is_empty() {
        return Err(CorpusError::Invalid {
            path: dir.to_owned(),
            message: "no poems here: a poems folder holds .txt or .md files, one poem each".into(),
        });
    }
    Ok(poems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, bytes: &[u8]) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn a_folder_reads_front_matter_titles_categories_and_skips_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        write(dir, "rain.txt", b"Rain\n\nIt falls\n  and falls.\n");
        write(
            dir,
            "2019/spring/blossom.md",
            b"---\ntitle: \"Blossom: a song\"\ndate: 2019-03-04\n---\nPink\nwhite\n",
        );
        write(dir, "2019/heading.md", b"# The Heading\r\nline one\r\nline two\r\n");
        write(dir, "latin1.txt", b"caf\xe9\n");
        write(dir, "rain.txt~", b"old");
        write(dir, ".hidden.txt", b"secret");
        write(dir, ".git/config.txt", b"x");
        write(dir, "photo.jpg", b"x");
        write(dir, "empty.txt", b"\n\n");
        let poems = read(dir).unwrap();
        let keys: Vec<String> = poems
            .iter()
            .map(|p| match &p.id {
                Some(Id::Str(id)) => super::super::make_key(p.category.as_deref(), id),
                _ => panic!("every folder poem has a string id"),
            })
            .collect();
        assert_eq!(keys, ["2019/heading", "2019/spring/blossom", "rain"]);
        let blossom = &poems[1];
        assert_eq!(blossom.title.as_deref(), Some("Blossom: a song"));
        assert_eq!(blossom.date.as_deref(), Some("2019-03-04"));
        assert_eq!(blossom.content.as_deref(), Some("Pink\nwhite"));
        assert_eq!(blossom.category.as_deref(), Some("2019/spring"));
        assert_eq!(poems[0].title.as_deref(), Some("The Heading"));
        assert_eq!(poems[0].content.as_deref(), Some("line one\nline two"));
        assert_eq!(poems[2].title.as_deref(), Some("Rain"));
        assert_eq!(poems[2].content.as_deref(), Some("It falls\n  and falls."));
    }

    #[test]
    fn skip_rules() {
        for (name, why) in [
            ("a.txt~", Some("editor backup")),
            ("#a.txt#", Some("editor backup")),
            ("a.txt.swp", Some("editor backup")),
            ("a.TXT", None),
            ("a.markdown", None),
            ("a.pdf", Some(OTHER_KIND)),
            (".a.txt", Some("hidden file")),
        ] {
            assert_eq!(skip_reason(name, false), why, "{name}");
        }
        assert_eq!(skip_reason(".git", true), Some("hidden folder"));
        assert_eq!(skip_reason("2019", true), None);
    }

    #[test]
    fn front_matter_rules_and_key_clashes() {
        let d = tempfile::tempdir().unwrap();
        let e = read(d.path()).unwrap_err().to_string();
        assert!(e.contains("no poems here"), "{e}");
        write(d.path(), "rule.md", b"---\nA stanza between rules\n---\nthen more\n");
        write(
            d.path(),
            "crlf.md",
            b"\xef\xbb\xbf--- \r\ntitle: Windows\r\n---\r\nline\r\n",
        );
        write(d.path(), "empty-front.md", b"---\n---\nFirst line\nsecond\n");
        let poems = read(d.path()).unwrap();
        assert_eq!(poems[0].title.as_deref(), Some("Windows"));
        assert_eq!(poems[0].content.as_deref(), Some("line"));
        assert_eq!(poems[1].title.as_deref(), Some("First line"));
        assert_eq!(
            poems[2].title.as_deref(),
            Some("A stanza between rules"),
            "a rule is no front matter"
        );
        assert_eq!(poems[2].content.as_deref(), Some("---\nthen more"));
        for f in ["rule.md", "crlf.md", "empty-front.md"] {
            std::fs::remove_file(d.path().join(f)).unwrap();
        }
        write(d.path(), "rain.md", b"Rain\nfalls");
        write(d.path(), "rain.txt", b"Rain\nfalls");
        let e = read(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("rain.txt") && e.contains("rain.md") && e.contains("same poem key"),
            "{e}"
        );
    }

    #[test]
    fn the_tools_own_site_and_cache_inside_the_folder_are_not_poems() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "rain.txt", b"Rain\nfalls");
        write(d.path(), "site/.pages.b3", b"");
        write(d.path(), "site/a.txt", b"A page\nnot a poem");
        write(d.path(), "cache/manifest.json", b"{}");
        write(d.path(), "cache/notes.md", b"Notes\nnot a poem");
        std::os::unix::fs::symlink(d.path().join("nowhere.txt"), d.path().join("broken.txt")).unwrap();
        std::os::unix::fs::symlink(d.path().join("rain.txt"), d.path().join("again.txt")).unwrap();
        let poems = read(d.path()).unwrap();
        assert_eq!(poems.len(), 2, "the link to a poem is read, the broken one skipped");
        assert_eq!(
            OUTPUT_MARKERS,
            [
                crate::render::PAGE_MANIFEST,
                crate::render::OWNED,
                crate::cache::MANIFEST
            ]
        );
    }
}
