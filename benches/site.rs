//! The site at a poet's scale, in one run: `build` with default flags (or
//! the flags given), the site's size and files, the complete lists' bytes
//! per ordering, and the time Chromium takes from opening a complete list
//! to showing its first entry, for a few orderings.
//!
//! `cargo bench --bench site -- POEMS [EMBEDDINGS] [-- BUILD FLAGS…]`
//! (default: the bundled corpus). The figures in the README's Figures
//! section come from this.

#[path = "../tests/it/support/browser.rs"]
mod browser;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Waits for the first entry and returns its `performance.now()`: the
/// milliseconds since the page's navigation began.
const FIRST_ENTRY: &str = r#"(async () => {
  while (!document.querySelector('#list .key')) await new Promise(r => setTimeout(r, 1));
  return performance.now();
})()"#;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if !p.file_name().unwrap().to_string_lossy().starts_with(".pages") {
            out.push(p);
        }
    }
    out
}

fn size(paths: &[PathBuf]) -> u64 {
    paths.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let (inputs, flags) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (&args[..], &[][..]),
    };
    let dir = tempfile::tempdir().unwrap();
    let (cache, site) = (dir.path().join("cache"), dir.path().join("site"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_diversity-gpu"));
    cmd.args(["build", "--quiet", "--cache"])
        .arg(&cache)
        .arg("--out")
        .arg(&site);
    if let Some(p) = inputs.first() {
        cmd.arg("--poems").arg(p);
    }
    if let Some(e) = inputs.get(1) {
        cmd.arg("--embeddings").arg(e);
    }
    cmd.args(flags).env("RUST_LOG", "warn");
    let t = Instant::now();
    let out = cmd.output().unwrap();
    let build = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build failed:\n{err}");
    for line in err
        .lines()
        .filter(|l| l.starts_with("site plan") || l.starts_with("  "))
    {
        println!("{line}");
    }
    let render = err
        .lines()
        .skip_while(|l| !l.starts_with("render timing"))
        .find(|l| l.trim_start().starts_with("total"))
        .unwrap_or("");
    let all = files(&site);
    let lists: Vec<PathBuf> = all
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("similar") || p.parent().unwrap().ends_with("different"))
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .cloned()
        .collect();
    println!(
        "build {build:.1} s (render {}); site {} bytes in {} files; complete lists {} bytes, {} per ordering",
        render.split_whitespace().nth(1).unwrap_or("?"),
        size(&all),
        all.len(),
        size(&lists),
        size(&lists) / lists.len().max(1) as u64
    );
    first_entries(&site, &lists);
}

/// Opens three complete lists in Chromium and prints each one's time to
/// its first entry, cold (a fresh profile) and warm (the texts cached).
fn first_entries(site: &Path, lists: &[PathBuf]) {
    let profile = tempfile::tempdir().unwrap();
    let reader = format!("file://{}", site.join("complete.html").display());
    let Some(mut browser) = browser::Browser::open(profile.path(), "about:blank") else {
        println!("SKIPPED: no chromium, no time to first entry");
        return;
    };
    let wait = Duration::from_secs(120);
    for list in lists.iter().step_by(lists.len().div_ceil(3).max(1)) {
        let kind = list
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let stem = list.file_stem().unwrap().to_string_lossy().into_owned();
        let mut ms = Vec::new();
        for _ in 0..2 {
            browser.goto("about:blank", wait);
            browser.goto(&format!("{reader}#{kind}/{stem}"), wait);
            ms.push(browser.eval(FIRST_ENTRY, wait).as_f64().unwrap());
        }
        let entries = browser.eval("document.getElementById('pos').max", wait);
        println!(
            "first entry of {kind}/{stem} ({entries} entries, {} bytes): {:.0} ms, then {:.0} ms",
            std::fs::metadata(list).unwrap().len(),
            ms[0],
            ms[1]
        );
    }
}
