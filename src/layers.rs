//! The import graph, checked: data flows one way, so no module imports from
//! a later stage, and no two files in one folder import each other.
//!
//! The stages in order, earliest first. A module may import only from
//! modules on earlier lines (helpers come first, so every stage may use
//! them). Test modules are left out: a test may check one stage against
//! another.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules by stage, earliest first.
const STAGES: &[&[&str]] = &[
    &["plural", "timings", "progress", "interrupt", "dates", "formats"],
    &["fs"],
    &["bundled"],
    &["corpus"],
    &["embed"],
    &["quantize"],
    &["reference", "matrix"],
    &["cpu"],
    &["memory", "gpu"],
    &["themes"],
    &["palette"],
    &["engine"],
    &["cache"],
    &["extras", "shard", "export"],
    &["precompute", "render"],
    &["cli"],
];

fn stage_of(module: &str) -> Option<usize> {
    STAGES.iter().position(|s| s.contains(&module))
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// A file's source without comments and without its `#[cfg(test)] mod
/// tests` block (by convention the last item of a file).
fn product_source(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap();
    let end = s
        .find("#[cfg(test)]\nmod tests")
        .or(s.find("#[cfg(test)]\npub(crate) mod tests"));
    // Comments are left out too: a doc link is not an import.
    s[..end.unwrap_or(s.len())]
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Identifiers following `prefix` (`crate::`, `super::`) in `src`.
fn named_after(src: &str, prefix: &str) -> BTreeSet<String> {
    src.match_indices(prefix)
        .filter(|(i, _)| !src[..*i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':'))
        .map(|(i, _)| {
            let rest = &src[i + prefix.len()..];
            rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
        })
        .filter(|m: &String| !m.is_empty())
        .collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_imports_from_a_later_stage() {
    let mut all = Vec::new();
    files(&src_dir(), &mut all);
    let mut wrong = Vec::new();
    for f in &all {
        let rel = f.strip_prefix(src_dir()).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy();
        let top = top.trim_end_matches(".rs");
        if matches!(top, "lib" | "main" | "layers" | "bin") {
            continue;
        }
        let here = stage_of(top).unwrap_or_else(|| panic!("{top} (in {}) is in no stage of STAGES", rel.display()));
        for used in named_after(&product_source(f), "crate::") {
            match stage_of(&used) {
                Some(s) if used != top && s >= here => wrong.push(format!("{} imports {used}", rel.display())),
                _ => {}
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports from the same or a later stage:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_in_one_folder_import_each_other() {
    let mut all = Vec::new();
    files(&src_dir(), &mut all);
    // Sibling graph per folder: file stem -> siblings it names through `super::`.
    let mut graphs: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for f in &all {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        if stem == "mod" {
            continue;
        }
        let dir = f.parent().unwrap().to_owned();
        let siblings: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .collect();
        let uses = named_after(&product_source(f), "super::")
            .into_iter()
            .filter(|m| siblings.contains(m) && *m != stem)
            .collect();
        graphs.entry(dir).or_default().insert(stem, uses);
    }
    for (dir, g) in &graphs {
        for (a, uses) in g {
            for b in uses {
                let back = g.contains_key(b) && reaches(g, b, a, &mut BTreeSet::new());
                assert!(!back, "{}: {a} and {b} import each other", dir.display());
            }
        }
    }
}

/// Whether `from` reaches `to` through the sibling graph.
fn reaches(g: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str, seen: &mut BTreeSet<String>) -> bool {
    if from == to {
        return true;
    }
    if !seen.insert(from.to_owned()) {
        return false;
    }
    g.get(from).is_some_and(|u| u.iter().any(|n| reaches(g, n, to, seen)))
}
