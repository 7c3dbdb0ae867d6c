//! End-to-end tests of `render`: links, well-formed HTML, a golden page,
//! order, caps, incremental writes, failures, the index's reach, the
//! schemes, `--reverse`, and a real browser.

use crate::common::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

const VOID: [&str; 6] = ["meta", "br", "link", "img", "input", "hr"];

/// Tokenises a page: ids in order, hrefs, and well-formedness problems.
struct Parsed {
    ids: Vec<String>,
    hrefs: Vec<String>,
    problems: Vec<String>,
}

fn parse(html: &str) -> Parsed {
    use html5gum::{Token, Tokenizer};
    let mut p = Parsed {
        ids: vec![],
        hrefs: vec![],
        problems: vec![],
    };
    let mut stack: Vec<String> = Vec::new();
    for Ok(tok) in Tokenizer::new(html) {
        match tok {
            Token::StartTag(t) => {
                let name = String::from_utf8_lossy(&t.name).into_owned();
                for (k, v) in &t.attributes {
                    let (k, v) = (String::from_utf8_lossy(k), String::from_utf8_lossy(v).into_owned());
                    if k == "id" {
                        p.ids.push(v);
                    } else if k == "href" {
                        p.hrefs.push(v);
                    }
                }
                if !VOID.contains(&name.as_str()) && !t.self_closing {
                    stack.push(name);
                }
            }
            Token::EndTag(t) => {
                let name = String::from_utf8_lossy(&t.name).into_owned();
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => p.problems.push(format!("</{name}> closes {other:?}")),
                }
            }
            Token::Error(e) => p.problems.push(format!("parse error: {e:?}")),
            _ => {}
        }
    }
    if !stack.is_empty() {
        p.problems.push(format!("unclosed: {stack:?}"));
    }
    p
}

fn pages(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["", "similar", "different", "chronological", "themes"]
        .into_iter()
        .chain(LISTINGS)
    {
        let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The folders of the listings (golden poems, the poem list, the words).
const LISTINGS: [&str; 3] = ["golden", "poems", "words"];

/// HTML pages in the listing folders.
fn listing_pages(dir: &Path) -> usize {
    pages(dir, "html")
        .iter()
        .filter(|p| LISTINGS.iter().any(|l| p.parent().unwrap().ends_with(l)))
        .count()
}

fn render(cache: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let p = corpus("poems.json");
    let mut args = vec![
        "render",
        "--cache",
        cache.to_str().unwrap(),
        "--poems",
        p.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn site(extra: &[&str]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "120"]);
    let out = dir.path().join("site");
    let o = render(&cache, &out, extra);
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, cache, out)
}

#[test]
fn every_link_resolves_and_every_page_is_well_formed() {
    let (_d, _c, out) = site(&["--per-page", "50", "--txt"]);
    let files = pages(&out, "html");
    // 440 poems × 2 orderings × 3 pages, 9 chronological pages, the index,
    // and the listings: golden, poems, the word list and a page per word.
    let listings = listing_pages(&out);
    assert!(listings > 1000, "{listings} listing pages");
    // and the complete lists' reader page.
    assert_eq!(files.len(), 440 * 2 * 3 + 9 + 1 + listings + 1);
    // Text twins of the orderings, the reading order and the golden page.
    assert_eq!(pages(&out, "txt").len(), 440 * 2 * 3 + 9 + 1);
    let checked = check_pages_and_links(&files);
    assert!(checked > 10_000, "only {checked} links checked");
}

/// Every page is well-formed with unique ids, and every link is relative and
/// resolves (anchors included); returns how many links were checked.
fn check_pages_and_links(files: &[PathBuf]) -> usize {
    let mut ids: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let mut parsed = Vec::new();
    for f in files {
        let html = std::fs::read_to_string(f).unwrap();
        let reader = f.ends_with("complete.html");
        assert!(reader || !html.contains("<script"), "{}: no JavaScript", f.display());
        let p = parse(&html);
        assert!(p.problems.is_empty(), "{}: {:?}", f.display(), p.problems);
        // Every page with a text twin links to it.
        let twin = f.with_extension("txt");
        if twin.exists() {
            let name = twin.file_name().unwrap().to_str().unwrap();
            assert!(
                p.hrefs.iter().any(|h| h.ends_with(name)),
                "{}: no link to its text twin",
                f.display()
            );
        }
        let unique: HashSet<String> = p.ids.iter().cloned().collect();
        assert_eq!(unique.len(), p.ids.len(), "{} repeats an id", f.display());
        ids.insert(f.canonicalize().unwrap(), unique);
        parsed.push((f.clone(), p.hrefs));
    }
    let mut checked = 0;
    for (f, hrefs) in parsed {
        for h in hrefs {
            assert!(
                !h.contains("://") && !h.starts_with('/'),
                "{}: non-relative link {h}",
                f.display()
            );
            let (file, anchor) = h.split_once('#').map_or((h.as_str(), None), |(a, b)| (a, Some(b)));
            let target = f.parent().unwrap().join(file);
            let target = target
                .canonicalize()
                .unwrap_or_else(|_| panic!("{}: broken link {h}", f.display()));
            if let (Some(a), true) = (anchor, target.ends_with("complete.html")) {
                assert!(complete_list(&target, a).exists(), "{}: no list for #{a}", f.display());
            } else if let Some(a) = anchor {
                assert!(
                    ids[&target].contains(a),
                    "{}: no #{a} in {}",
                    f.display(),
                    target.display()
                );
            }
            checked += 1;
        }
    }
    checked
}

/// The list file that `complete.html#KIND/ID[/POS]` shows.
fn complete_list(reader: &Path, hash: &str) -> PathBuf {
    let mut parts = hash.split('/');
    let (kind, id) = (parts.next().unwrap(), parts.next().unwrap());
    let dir = reader.parent().unwrap().join("complete");
    match kind.strip_prefix("theme-") {
        Some(k) => dir.join("themes").join(format!("{k}-{id}.js")),
        None => dir.join(kind).join(format!("{id}.js")),
    }
}

#[test]
fn pages_follow_the_cache_order() {
    let (dir, cache, out) = site(&["--per-page", "50"]);
    let export = dir.path().join("e.jsonl");
    ok(&[
        "export",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ]);
    let text = std::fs::read_to_string(&export).unwrap();
    for line in text.lines().step_by(37) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap();
        for kind in ["similar", "different"] {
            let expect: Vec<String> = v[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k.as_str().unwrap().to_owned())
                .collect();
            let mut shown = Vec::new();
            for page in 0..3 {
                let f = out.join(kind).join(format!("{}-{page:03}.html", safe(key)));
                let ids = parse(&std::fs::read_to_string(&f).unwrap()).ids;
                assert_eq!(ids[0], format!("p-{}", safe(key)), "anchor first on {}", f.display());
                shown.extend(ids[1..].iter().cloned());
            }
            let expect: Vec<String> = expect.iter().map(|k| format!("p-{}", safe(k))).collect();
            assert_eq!(shown, expect, "{kind} of {key}");
        }
    }
}

fn safe(key: &str) -> String {
    diversity_gpu::render::safe_key(key)
}

#[test]
fn caps_budgets_and_incremental_writes() {
    let (dir, cache, out) = site(&["--per-page", "50"]);
    // The manifest lists every page with its blake3, as `b3sum --check` reads it.
    let manifest = std::fs::read_to_string(out.join(".pages.b3")).unwrap();
    // Pages, listings, and the complete lists: 880 lists, the reader page
    // and script, the packing and 7 files of texts.
    let all = 2650 + listing_pages(&out) + 880 + 10;
    assert_eq!(manifest.lines().count(), all);
    for line in manifest.lines() {
        let (hash, rel) = line.split_once("  ").unwrap();
        assert_eq!(
            blake3::hash(&std::fs::read(out.join(rel)).unwrap()).to_hex().as_str(),
            hash,
            "{rel}"
        );
    }
    // Nothing changed: nothing written; a leftover temp file is cleaned up.
    std::fs::write(out.join("similar/.dg+tmp.AbC123"), "partial").unwrap();
    let o = render(&cache, &out, &["--per-page", "50"]);
    assert!(
        stderr(&o).contains(&format!("0 written, {all} unchanged, 1 removed")),
        "{}",
        stderr(&o)
    );
    // A smaller cap removes the pages beyond it.
    let o = render(&cache, &out, &["--per-page", "50", "--max-pages", "2"]);
    let err = stderr(&o);
    // The pages left say "page N of 2", and the last links on to the
    // complete list: they and the index change.
    assert!(err.contains("1761 written") && err.contains("880 removed"), "{err}");
    assert!(out
        .join("similar")
        .join(format!("{}-001.html", safe("literature/0001")))
        .exists());
    assert!(!out
        .join("similar")
        .join(format!("{}-002.html", safe("literature/0001")))
        .exists());
    // A colour changes the pages that show that poem, and only those.
    let colors = dir.path().join("colors.json");
    std::fs::write(&colors, r##"{"poem_colors": {"love/0001": {"color": "#c04000"}}}"##).unwrap();
    let o = render(
        &cache,
        &out,
        &[
            "--per-page",
            "50",
            "--max-pages",
            "2",
            "--colors",
            colors.to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    let written = crate::common::number_before(&err, " written");
    assert!(written > 0 && written < 1760, "{err}");
    // A budget picks the largest cap that fits, and the site fits it.
    let budget_site = dir.path().join("budget");
    let o = render(&cache, &budget_site, &["--per-page", "50", "--budget", "76MB"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let size = site_bytes(&budget_site);
    assert!(size <= 76_000_000, "site is {size} bytes");
    // One page per ordering is about 37 MB with the listings and the
    // complete lists, each further page about 30 MB: the budget allowed a second.
    assert!(size > 60_000_000, "the budget was not used: {size} bytes");
    assert!(
        stderr(&o).contains("static pages: 2 per ordering of 50"),
        "{}",
        stderr(&o)
    );
    // A budget too small for anything is refused, naming one that fits,
    // and leaves nothing behind; the budget it names does fit.
    let tiny = dir.path().join("tiny");
    let o = render(&cache, &tiny, &["--budget", "10kB"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("cannot fit in --budget 10kB"), "{err}");
    assert!(!tiny.exists(), "a refused render leaves no folder behind");
    let fits = named_budget(&err);
    let o = render(&cache, &tiny, &["--budget", fits]);
    assert!(o.status.success(), "--budget {fits}: {}", stderr(&o));
    assert_within(&tiny, fits);
}

/// The `--budget` a refusal names as one that fits.
fn named_budget(err: &str) -> &str {
    err.rsplit("--budget ")
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
}

/// Asserts that a site's files take no more than `budget`.
fn assert_within(site: &Path, budget: &str) {
    let size = site_bytes(site);
    let most = budget.parse::<bytesize::ByteSize>().unwrap().as_u64();
    assert!(size <= most, "{size} bytes over --budget {budget}");
}

/// Bytes of a site's files, without the tool's own records (`.pages.*`).
fn site_bytes(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with(".pages"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// Every file below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_page_that_cannot_be_written_is_reported_and_the_rest_continue() {
    let (_d, cache, out) = site(&["--per-page", "50"]);
    // A directory where a page should go: that page fails, with its path.
    let blocked = out.join("different").join(format!("{}-001.html", safe("love/0002")));
    std::fs::remove_file(&blocked).unwrap();
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("x"), "").unwrap();
    std::fs::remove_file(out.join("index.html")).unwrap();
    let o = render(&cache, &out, &["--per-page", "50"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("1 page could not be written") && err.contains("love_2F0002-001.html"),
        "{err}"
    );
    assert!(out.join("index.html").exists(), "other pages must still be written");
    // An output path below a file fails as a whole, naming it.
    let file = out.join("index.html");
    let o = render(&cache, &file.join("sub"), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("cannot create"), "{}", stderr(&o));
}

#[test]
fn a_small_page_matches_its_golden_copy() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("tiny.jsonl");
    // 1,024 characters once the trailing blank lines go: a golden poem,
    // dated in the original system's M/D/YYYY form. "void" has no date.
    let golden = format!("{}xx\n\n", "gold and wind ".repeat(73));
    let golden = serde_json::json!({"id": "gold", "date": "6/1/2001", "text": golden, "embedding": [0, 1, 0]});
    std::fs::write(
        &poems,
        format!(
            concat!(
                "{{\"id\": \"void\", \"text\": \"No vector here\"}}\n",
                "{{\"id\": \"dawn\", \"date\": \"2001-05-01\", \"text\": \"First light\\n\\tover the <hills> & fields\", \"embedding\": [1, 0, 0]}}\n",
                "{{\"id\": \"dusk\", \"date\": \"2001-04-01\", \"text\": \"Last light\", \"embedding\": [0.9, 0.1, 0]}}\n",
                "{{\"id\": \"sea\", \"date\": \"2002-01-01\", \"text\": \"Salt and wind\", \"embedding\": [0, 0, 1]}}\n",
                "{golden}\n",
            ),
            golden = golden
        ),
    )
    .unwrap();
    let colors = dir.path().join("colors.json");
    std::fs::write(&colors, r##"{"poem_colors": {"dawn": {"color": "#ffaa00"}}}"##).unwrap();
    let themes = dir.path().join("themes.jsonl");
    std::fs::write(
        &themes,
        "{\"id\": \"morning\", \"text\": \"first <light>\", \"embedding\": [1, 0.2, 0]}\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    ok(&[
        "precompute",
        "--poems",
        poems.to_str().unwrap(),
        "--themes",
        themes.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let out = dir.path().join("site");
    ok(&[
        "render",
        "--cache",
        cache.to_str().unwrap(),
        "--poems",
        poems.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--colors",
        colors.to_str().unwrap(),
        "--txt",
    ]);
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (page, name) in [
        ("different/dawn-000.html", "different-dawn-000.html"),
        ("different/dawn-000.txt", "different-dawn-000.txt"),
        ("chronological/000.html", "chronological-000.html"),
        ("themes/different-morning-000.html", "themes-different-morning-000.html"),
        ("themes/similar-morning-000.txt", "themes-similar-morning-000.txt"),
        ("index.html", "index.html"),
        ("golden/000.html", "golden-000.html"),
        ("golden/000.txt", "golden-000.txt"),
        ("poems/000.html", "poems-000.html"),
        ("words/000.html", "words-000.html"),
        ("words/light-000.html", "words-light-000.html"),
    ] {
        let got = std::fs::read_to_string(out.join(page)).unwrap();
        let want_path = golden.join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&golden).unwrap();
            std::fs::write(&want_path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&want_path)
            .unwrap_or_else(|_| panic!("missing {}; run with UPDATE_GOLDEN=1 once", want_path.display()));
        assert_eq!(got, want, "{page} differs from {}", want_path.display());
    }
}

/// Screenshots `page` with `chromium` into `shot`, failing on a hang.
fn screenshot(chromium: &str, profile: &Path, page: &str, shot: &Path) -> Vec<u8> {
    let log_path = shot.with_extension("log");
    let mut o = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=900,1200",
            // Time for the complete list's script to show its entries.
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(page)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // A browser that hangs must fail the test, not stall CI.
    let start = std::time::Instant::now();
    while o.try_wait().unwrap().is_none() {
        if start.elapsed().as_secs() > 120 {
            let _ = o.kill();
            panic!("chromium did not finish within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let png = std::fs::read(shot).unwrap_or_else(|_| panic!("no screenshot: {log}"));
    assert_eq!(&png[1..4], b"PNG");
    png
}

/// Renders a poem's different page, the index and a theme page in
/// Chromium; with `UPDATE_SCREENSHOTS=1` the shots become
/// `docs/screenshot.png`, `docs/index.png`, `docs/theme.png` and
/// `docs/complete.png` (a complete list, shown by its script).
#[test]
#[ignore = "needs Chromium; `.ci/run` runs it: cargo test --release -- --ignored real_browser"]
fn a_real_browser_renders_a_page() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(chromium) = chromium else {
        skip("Chromium (apt-get install chromium)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let themes = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/themes.jsonl");
    precompute(&cache, &["--themes", themes.to_str().unwrap()]);
    let out = dir.path().join("site");
    let o = render(&cache, &out, &["--per-page", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let profile = dir.path().join("profile");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    let different = out
        .join("different")
        .join(format!("{}-000.html", safe("songs-poems/0001")));
    let url = |p: &Path| format!("file://{}", p.display());
    let complete = format!(
        "{}#different/{}",
        url(&out.join("complete.html")),
        safe("songs-poems/0001")
    );
    for (page, name, least) in [
        (url(&different), "screenshot.png", 30_000),
        (url(&out.join("index.html")), "index.png", 30_000),
        (url(&out.join("themes/different-grief-000.html")), "theme.png", 30_000),
        (complete, "complete.png", 30_000),
    ] {
        let png = screenshot(chromium, &profile, &page, &dir.path().join(name));
        // A page of text and blocks compresses far worse than a blank one.
        assert!(png.len() > least, "{name} looks blank ({} bytes)", png.len());
        if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
            std::fs::write(docs.join(name), &png).unwrap();
        }
    }
}

#[test]
fn theme_pages_and_colours_are_rendered_linked_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let themes = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/themes.jsonl");
    precompute(&cache, &["--top-k", "120", "--themes", themes.to_str().unwrap()]);
    let out = dir.path().join("site");
    let o = render(&cache, &out, &["--per-page", "50", "--txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // 12 themes × 2 orderings × 3 pages, beside the poems' pages.
    let files = pages(&out, "html");
    let listings = listing_pages(&out);
    assert_eq!(files.len(), 440 * 2 * 3 + 12 * 2 * 3 + 9 + 1 + listings + 1);
    // Text twins of the orderings, the reading order and the golden page.
    assert_eq!(pages(&out, "txt").len(), 440 * 2 * 3 + 12 * 2 * 3 + 9 + 1);
    // Each page and its twin, the listings, and the complete lists: one per
    // ordering, the reader page and script, the packing and 7 text files.
    let all = (440 * 2 * 3 + 12 * 2 * 3 + 10) * 2 + listings + (440 + 12) * 2 + 10;
    let all = diversity_gpu::plural::thousands(all);
    assert!(stderr(&o).contains(&format!("in {all} files")), "{}", stderr(&o));
    assert!(check_pages_and_links(&files) > 10_000);
    // The index links every theme's first pages; the theme pages follow the cache.
    let index = parse(&std::fs::read_to_string(out.join("index.html")).unwrap()).hrefs;
    let export = String::from_utf8(ok(&["export", "--cache", cache.to_str().unwrap()]).stdout).unwrap();
    let mut colors = HashMap::new();
    for line in export.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap();
        let Some(name) = key.strip_prefix("theme:") else {
            colors.insert(key.to_owned(), v["color"].as_str().unwrap().to_owned());
            continue;
        };
        for kind in ["similar", "different"] {
            assert!(index.contains(&format!("themes/{kind}-{}-000.html", safe(name))));
            let mut shown = Vec::new();
            for page in 0..3 {
                let f = out.join("themes").join(format!("{kind}-{}-{page:03}.html", safe(name)));
                shown.extend(parse(&std::fs::read_to_string(&f).unwrap()).ids);
            }
            let expect: Vec<String> = v[kind]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| format!("p-{}", safe(k.as_str().unwrap())))
                .collect();
            assert_eq!(shown, expect, "{kind} of theme {name}");
        }
    }
    // Every poem's block shows its computed colour.
    let palette: HashMap<String, String> =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/palette.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["color"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
    let page = std::fs::read_to_string(out.join("chronological/000.html")).unwrap();
    for key in ["literature/0001", "literature/0002", "literature/0003"] {
        let block = &page[page.find(&format!("id=\"p-{}\"", safe(key))).unwrap()..];
        let bar = format!("style=\"background:{}\"", palette[&colors[key]]);
        assert!(block[..200].contains(&bar), "{key}: no {bar} in {}", &block[..200]);
    }
    // A smaller cap removes theme pages beyond it, and nothing of the user's.
    std::fs::write(out.join("themes/notes.html"), "mine").unwrap();
    let o = render(&cache, &out, &["--per-page", "50", "--max-pages", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out
        .join("themes")
        .join(format!("similar-{}-000.html", safe("grief")))
        .exists());
    assert!(!out
        .join("themes")
        .join(format!("similar-{}-001.html", safe("grief")))
        .exists());
    assert!(!out
        .join("themes")
        .join(format!("similar-{}-000.txt", safe("grief")))
        .exists());
    assert!(out.join("themes/notes.html").exists());
    // Without themes in the cache, the theme pages go.
    precompute(&cache, &["--top-k", "120"]);
    render(&cache, &out, &["--per-page", "50"]);
    let left: Vec<_> = std::fs::read_dir(out.join("themes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.html"]);
}

#[test]
fn colour_names_of_the_original_system_map_through_the_palette() {
    let (dir, cache, out) = site(&["--per-page", "50", "--max-pages", "1"]);
    let colors = dir.path().join("poem_colors.json");
    std::fs::write(
        &colors,
        r##"{"poem_colors": {"love/0001": {"color": "crimson"}, "love/0002": {"color": "Navy"}, "love/0003": {"color": "chartreuse"}}}"##,
    )
    .unwrap();
    let o = render(
        &cache,
        &out,
        &[
            "--per-page",
            "50",
            "--max-pages",
            "1",
            "--colors",
            colors.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("poem_colors.json")
            && err.contains("\"chartreuse\"")
            && err.contains("love/0003")
            && err.contains("known names: red, orange"),
        "{err}"
    );
    let page = std::fs::read_to_string(out.join("similar").join(format!("{}-000.html", safe("love/0001")))).unwrap();
    assert!(
        page.contains("style=\"background:#dc143c\""),
        "crimson is not on the page"
    );
    let page = std::fs::read_to_string(out.join("similar").join(format!("{}-000.html", safe("love/0002")))).unwrap();
    assert!(page.contains("style=\"background:#1a237e\""), "navy is not on the page");
}

#[test]
fn build_on_the_bundled_corpus_makes_theme_pages_and_coloured_poems() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("site"));
    let o = ok(&[
        "build",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "cpu",
        "--top-k",
        "20",
    ]);
    assert!(stderr(&o).contains("open "), "{}", stderr(&o));
    let index = parse(&std::fs::read_to_string(out.join("index.html")).unwrap()).hrefs;
    let names: Vec<String> = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/themes.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names.len(), 12);
    for name in &names {
        for kind in ["similar", "different"] {
            let page = format!("themes/{kind}-{}-000.html", safe(name));
            assert!(index.contains(&page), "the index does not link {page}");
            assert!(out.join(&page).exists());
        }
    }
    // Every poem with an embedding carries a colour bar from the default palette.
    let page = std::fs::read_to_string(out.join("chronological/000.html")).unwrap();
    let bars = page.matches("class=\"bar\" style=\"background:#").count();
    let blocks = page.matches("class=\"poem\"").count();
    assert_eq!(bars, blocks, "{bars} bars for {blocks} poems");
    assert!(check_pages_and_links(&pages(&out, "html")) > 1000);
}

/// The keys with an embedding: the rows of the cache, as `export` lists them.
fn keys_with_embeddings(dir: &Path, cache: &Path) -> Vec<String> {
    let export = dir.join("keys.jsonl");
    ok(&[
        "export",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ]);
    std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_link_walk_from_the_index_reaches_every_poem_with_an_embedding() {
    let (dir, cache, out) = site(&["--per-page", "50"]);
    // Walk the entry point and the listings only: the orderings and the
    // reading order would reach every poem by themselves.
    let index = out.join("index.html").canonicalize().unwrap();
    let listing_dirs: Vec<PathBuf> = LISTINGS.iter().map(|l| out.join(l).canonicalize().unwrap()).collect();
    let mut seen: HashSet<PathBuf> = HashSet::from([index.clone()]);
    let mut queue = vec![index];
    while let Some(f) = queue.pop() {
        let walk = f.ends_with("index.html") || listing_dirs.iter().any(|d| f.starts_with(d));
        if !walk {
            continue;
        }
        for h in parse(&std::fs::read_to_string(&f).unwrap()).hrefs {
            let file = h.split('#').next().unwrap();
            let target = f.parent().unwrap().join(file).canonicalize().unwrap();
            if seen.insert(target.clone()) {
                queue.push(target);
            }
        }
    }
    let keys = keys_with_embeddings(dir.path(), &cache);
    assert_eq!(keys.len(), 440);
    for k in &keys {
        let page = out.join("similar").join(format!("{}-000.html", safe(k)));
        assert!(
            seen.contains(&page.canonicalize().unwrap()),
            "{k} is not reached from the index"
        );
    }
    // A word page lists exactly the poems that use the word.
    let poems: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(corpus("poems.json")).unwrap()).unwrap();
    let uses = |text: &str, word: &str| {
        text.to_lowercase()
            .split(|c: char| !(c.is_alphabetic() || c == '\''))
            .any(|w| w.trim_matches('\'') == word)
    };
    let listed = parse(&std::fs::read_to_string(out.join("words/night-000.html")).unwrap()).hrefs;
    let mut want = Vec::new();
    for p in poems["poems"].as_array().unwrap() {
        let key = format!("{}/{}", p["category"].as_str().unwrap(), p["id"].as_str().unwrap());
        if keys.contains(&key) && uses(p["content"].as_str().unwrap(), "night") {
            want.push(format!("../similar/{}-000.html", safe(&key)));
        }
    }
    let got: Vec<&String> = listed.iter().filter(|h| h.starts_with("../similar/")).collect();
    assert!(want.len() >= 5, "{want:?}");
    assert_eq!(got, want.iter().collect::<Vec<_>>());
}

#[test]
fn schemes_colour_the_pages_and_reverse_shows_the_far_end_first() {
    // --reverse needs whole orderings: the far end of a --top-k prefix is not
    // the ordering's, so a cut cache is refused.
    let (dir, top, _) = site(&["--per-page", "50"]);
    let o = render(&top, &dir.path().join("r"), &["--reverse"]);
    assert!(!o.status.success() && stderr(&o).contains("--reverse shows each ordering from its far end"));
    let cache = dir.path().join("whole");
    precompute(&cache, &[]);
    let out = dir.path().join("forward");
    let o = render(&cache, &out, &["--per-page", "100"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let page = |site: &Path, kind: &str, n: usize| {
        std::fs::read_to_string(site.join(kind).join(format!("{}-{n:03}.html", safe("love/0001")))).unwrap()
    };
    // Dark by default, as the original site.
    assert!(page(&out, "similar", 0).contains("--bg:#121212"));
    for (scheme, mark) in [
        ("light", "--bg:#fdfcf8"),
        ("black", "--bg:#000;"),
        ("auto", "@media (prefers-color-scheme:dark)"),
    ] {
        let site = dir.path().join(scheme);
        let o = render(&cache, &site, &["--per-page", "100", "--scheme", scheme, "--reverse"]);
        assert!(o.status.success(), "{}", stderr(&o));
        for f in ["index.html", "words/000.html", "poems/000.html", "golden/000.html"] {
            let html = std::fs::read_to_string(site.join(f)).unwrap();
            assert!(html.contains(mark), "{scheme}: {f}");
        }
        assert!(page(&site, "different", 1).contains(mark));
        // --reverse: the same poems, from the far end.
        for kind in ["similar", "different"] {
            let ids = |site: &Path| -> Vec<String> {
                (0..5)
                    .flat_map(|n| parse(&page(site, kind, n)).ids[1..].to_vec())
                    .collect()
            };
            let mut forward = ids(&out);
            forward.reverse();
            assert_eq!(ids(&site), forward, "{scheme} {kind}");
        }
    }
}

#[test]
fn stale_listing_pages_go_and_the_users_files_stay() {
    let (_d, cache, out) = site(&["--per-page", "50", "--txt"]);
    assert!(out.join("golden/000.txt").exists());
    // Files the renderer never made, even with a listing's name, are the user's.
    let mine = [
        "words/zzzzqx-000.html",
        "poems/007.html",
        "words/notes.html",
        "golden/README",
        "poems/draft-1.html",
    ];
    for f in mine {
        std::fs::write(out.join(f), "x").unwrap();
    }
    // Without --txt the listings' text twin it made goes.
    let o = render(&cache, &out, &["--per-page", "50"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("golden/000.txt").exists());
    for f in mine {
        assert!(out.join(f).exists(), "{f} is the user's");
    }
    assert!(out.join("words/night-000.html").exists());
}

use crate::support::browser;

/// Scrolls a complete list to its end, as a reader would, and returns every
/// entry's key in order, the first entry's position and whether the page
/// says the list has ended.
const SCROLL_TO_THE_END: &str = r#"(async () => {
  const frame = () => new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
  const ended = () => /^End of the list/.test(document.getElementById('more').textContent);
  for (let i = 0; i < 5000 && !ended(); i++) {
    await frame();
    window.scrollTo(0, document.body.scrollHeight);
    await frame();
  }
  const n = document.querySelector('#list .n');
  return {
    ended: ended(),
    first: n ? n.textContent : null,
    keys: [...document.querySelectorAll('#list .key')].map(e => e.textContent),
  };
})()"#;

/// Each key's similar and different lists (and each theme's, as `theme:NAME`), from `export`.
fn exported(cache: &Path) -> HashMap<String, serde_json::Value> {
    let out = ok(&["export", "--cache", cache.to_str().unwrap()]).stdout;
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["key"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// The complete lists, in Chromium: scrolled to the end, each shows every
/// entry of its ordering in `export`'s order; an address with a position,
/// and the position box, start there.
#[test]
#[ignore = "needs Chromium; `.ci/run` runs it: cargo test --release -- --ignored real_browser"]
fn complete_lists_show_every_ordering_whole_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let themes = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/themes.jsonl");
    precompute(&cache, &["--themes", themes.to_str().unwrap()]);
    let out = dir.path().join("site");
    let o = render(&cache, &out, &["--per-page", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let export = exported(&cache);
    let profile = dir.path().join("profile");
    let reader = format!("file://{}", out.join("complete.html").display());
    let Some(mut browser) = browser::Browser::open(&profile, &format!("{reader}#similar/{}", safe("love/0001"))) else {
        skip("Chromium (apt-get install chromium)");
        return;
    };
    let wait = std::time::Duration::from_secs(120);
    let mut checked = 0;
    for (kind, key) in [
        ("similar", "love/0001"),
        ("different", "love/0001"),
        ("different", "songs-poems/0260"),
        ("similar", "literature/0045"),
        ("theme-different", "theme:grief"),
    ] {
        let (id, list) = match key.strip_prefix("theme:") {
            Some(name) => (safe(name), kind.strip_prefix("theme-").unwrap()),
            None => (safe(key), kind),
        };
        // A fresh page for each list (a new fragment alone keeps the old list
        // on screen until the new one has loaded).
        browser.goto("about:blank", wait);
        browser.goto(&format!("{reader}#{kind}/{id}"), wait);
        let got = browser.eval(SCROLL_TO_THE_END, wait);
        let want = keys(&export[key][list]);
        assert!(got["ended"].as_bool().unwrap(), "{kind} of {key}: the list did not end");
        assert_eq!(keys(&got["keys"]), want, "{kind} of {key}");
        checked += want.len();
    }
    assert!(checked >= 4 * 439 + 440, "{checked} entries checked");
    // A position in the address starts the list there.
    let want = keys(&export["love/0001"]["different"]);
    browser.goto("about:blank", wait);
    browser.goto(&format!("{reader}#different/{}/300", safe("love/0001")), wait);
    let got = browser.eval(SCROLL_TO_THE_END, wait);
    assert_eq!(got["first"], "300. ");
    assert_eq!(keys(&got["keys"]), want[299..]);
    // So does the position box.
    let jump = r#"(async () => {
      document.getElementById('pos').value = '123';
      document.querySelector('#jump button').click();
      for (let i = 0; i < 200 && !/#different\/[^/]+\/123$/.test(location.hash); i++) await new Promise(r => setTimeout(r, 10));
      for (let i = 0; i < 200 && (document.querySelector('#list .n') || {}).textContent !== '123. '; i++) await new Promise(r => setTimeout(r, 10));
      return [document.querySelector('#list .n').textContent, document.querySelector('#list .key').textContent];
    })()"#;
    let got = browser.eval(jump, wait);
    assert_eq!(got, serde_json::json!(["123. ", want[122]]));
}

/// Runs `build` on the CPU backend into `cache` and `out`, of `poems` (the
/// bundled corpus without).
fn build_site(poems: Option<&Path>, cache: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "build",
        "--cache",
        cache.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some(p) = poems {
        args.extend(["--poems", p.to_str().unwrap()]);
    }
    args.extend(["--backend", "cpu"]);
    args.extend_from_slice(extra);
    run(&args)
}

/// `build` plans the site before computing: `--dry-run` computes and writes
/// nothing; a site that cannot fit is refused before any computing, naming
/// a budget that fits, and that budget does fit.
#[test]
fn build_plans_the_site_before_computing() {
    let dir = tempfile::tempdir().unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("site"));
    let build = |extra: &[&str]| build_site(None, &cache, &out, extra);
    let o = build(&["--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("site plan: 440 poems") && err.contains("estimated before computing"),
        "{err}"
    );
    assert!(err.contains("every ordering whole, 439 entries"), "{err}");
    assert!(!err.contains("precomputed") && !err.contains("open "), "{err}");
    assert!(!cache.exists() && !out.exists(), "a dry run writes nothing");
    let o = build(&["--budget", "100kB"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("cannot fit in --budget 100kB") && !err.contains("precomputed"),
        "{err}"
    );
    assert!(
        !cache.exists() && !out.exists(),
        "a refused build leaves nothing behind"
    );
    let fits = named_budget(&err);
    let o = build(&["--budget", fits]);
    assert!(o.status.success(), "--budget {fits}: {}", stderr(&o));
    assert_within(&out, fits);
}

/// A site whose complete lists are cut to fit its budget computes only the
/// entries it shows: the walks are as long as the lists (the cache's
/// width), and every page says the site holds no more.
#[test]
fn a_cut_site_computes_only_what_it_shows() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("c.jsonl");
    let o = bench(&["corpus", "--poems", "1500", "--out", poems.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (cache, out) = (dir.path().join("cache"), dir.path().join("site"));
    let build = |extra: &[&str]| {
        let mut args = vec!["--per-page", "1"];
        args.extend_from_slice(extra);
        build_site(Some(&poems), &cache, &out, &args)
    };
    // The smallest site, then a budget a little above it: the lists are cut.
    let err = stderr(&build(&["--dry-run", "--budget", "1kB"]));
    let least: bytesize::ByteSize = named_budget(&err).parse().unwrap();
    let budget = format!("{}B", least.as_u64() + least.as_u64() / 20);
    let o = build(&["--budget", &budget]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    let shown: usize = err
        .split("complete lists: the first ")
        .nth(1)
        .unwrap_or_else(|| panic!("no cut in {err}"))
        .split(' ')
        .next()
        .unwrap()
        .replace(',', "")
        .parse()
        .unwrap();
    assert!(shown > 1 && shown < 1499, "{err}");
    assert!(err.contains("holds them whole"), "{err}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(cache.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["params"]["width"], shown, "the walks are as long as the lists");
    let export = exported(&cache);
    assert!(export.values().all(|v| keys(&v["different"]).len() == shown));
    let page = std::fs::read_to_string(out.join("different").join(format!("{}-0000.html", safe("s0000007")))).unwrap();
    let said = format!(
        "the first {} in one list (this site holds no more)",
        diversity_gpu::plural::thousands(shown)
    );
    assert!(page.contains(&said), "{said}");
    assert_within(&out, &budget);
}

/// Titles from the input head their poems (the first line otherwise), the
/// poet's lines are kept unbroken, and paged listings have jump links.
#[test]
fn titles_lines_and_jump_links() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("p.jsonl");
    let long = "a line far longer than eighty columns, which the tool used to break in two and now keeps whole";
    let lines = [
        serde_json::json!({"id": "a", "title": "The Sea at Night", "text": format!("Salt\n{long}"), "embedding": [1, 0, 0]}),
        serde_json::json!({"id": "b", "text": "First line here\nsecond", "embedding": [0, 1, 0]}),
        serde_json::json!({"id": "c", "text": "c", "embedding": [0, 0, 1]}),
    ];
    let text: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    std::fs::write(&poems, text.join("\n")).unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("site"));
    let o = build_site(
        Some(&poems),
        &cache,
        &out,
        &["--title", "Night Verses", "--per-page", "1"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let page = std::fs::read_to_string(out.join("similar/a-000.html")).unwrap();
    assert!(page.contains("<h1>Similar to The Sea at Night</h1>"), "{page}");
    assert!(page.contains("<p class=\"t\">The Sea at Night</p><div class=\"meta\"><span class=\"key\">a</span>"));
    assert!(page.contains(long), "the long line is kept whole");
    let page = std::fs::read_to_string(out.join("similar/b-000.html")).unwrap();
    assert!(
        page.contains("<p class=\"t\">First line here</p>"),
        "the first line is the title"
    );
    assert!(std::fs::read_to_string(out.join("index.html"))
        .unwrap()
        .contains("<h1>Night Verses</h1>"));
    // Reading order: 3 pages of one poem, each linking the first and the last.
    let chrono = parse(&std::fs::read_to_string(out.join("chronological/001.html")).unwrap()).hrefs;
    assert!(chrono.contains(&"000.html".to_owned()) && chrono.contains(&"002.html".to_owned()));
    // A long listing's jump links skip the middle.
    let nav = diversity_gpu::render::jump_pages(40, 78);
    let shown: Vec<Option<usize>> = vec![
        Some(0),
        Some(1),
        None,
        Some(38),
        Some(39),
        Some(40),
        Some(41),
        Some(42),
        None,
        Some(76),
        Some(77),
    ];
    assert_eq!(nav, shown);
}

/// Renders (with text twins) a corpus of 24 poems with 4-d vectors, of
/// which poems 0 and 1 get `shared` as their first line and poem 2 the
/// category `category`, with one theme of each name; returns the site.
fn site_with_names(dir: &Path, shared: &str, category: &str, themes: &[&str]) -> PathBuf {
    let vector = |i: usize| [1.0 + i as f64, (i % 3) as f64, (i % 5) as f64, (i % 7) as f64];
    let poems: Vec<String> = (0..24)
        .map(|i| {
            let text = if i < 2 {
                format!("{shared}\npoem {i}")
            } else {
                format!("poem {i}")
            };
            let category = if i == 2 { category } else { "plain" };
            serde_json::json!({"id": i.to_string(), "category": category, "text": text, "embedding": vector(i)})
                .to_string()
        })
        .collect();
    let themes: Vec<String> = themes
        .iter()
        .enumerate()
        .map(|(t, n)| {
            serde_json::json!({"id": n, "text": format!("{n} text"), "embedding": vector(t + 30)}).to_string()
        })
        .collect();
    let (p, t) = (dir.join("poems.jsonl"), dir.join("themes.jsonl"));
    std::fs::write(&p, poems.join("\n")).unwrap();
    std::fs::write(&t, themes.join("\n")).unwrap();
    let (cache, out) = (dir.join("cache"), dir.join("site"));
    let (p, t, c, o) = (
        p.to_str().unwrap(),
        t.to_str().unwrap(),
        cache.to_str().unwrap(),
        out.to_str().unwrap(),
    );
    ok(&[
        "precompute",
        "--poems",
        p,
        "--themes",
        t,
        "--out",
        c,
        "--backend",
        "cpu",
    ]);
    let r = run(&["render", "--cache", c, "--poems", p, "--out", o, "--txt"]);
    assert!(r.status.success(), "{}", stderr(&r));
    out
}

/// The first similar page of each theme, as the index links them.
fn theme_links(out: &Path) -> Vec<String> {
    let index = parse(&std::fs::read_to_string(out.join("index.html")).unwrap()).hrefs;
    index.into_iter().filter(|h| h.starts_with("themes/similar-")).collect()
}

#[test]
fn a_long_cjk_line_in_two_poems_gets_a_word_page_that_links_reach() {
    let dir = tempfile::tempdir().unwrap();
    // One unpunctuated "word" of 200 characters, 600 bytes.
    let line: String = (0..200).map(|i| char::from_u32(0x4E00 + i).unwrap()).collect();
    let out = site_with_names(dir.path(), &line, "plain", &["sea"]);
    let cjk = std::fs::read_dir(out.join("words"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.starts_with("_E4_B8_80_E4_B8_81"));
    assert!(cjk.is_some(), "the shared line has no word page");
    assert!(check_pages_and_links(&pages(&out, "html")) > 100);
}

#[test]
fn a_60_character_cjk_theme_name_gets_pages_that_links_reach() {
    let dir = tempfile::tempdir().unwrap();
    let out = site_with_names(dir.path(), "shared line", "plain", &["長".repeat(60).as_str(), "sea"]);
    assert_eq!(theme_links(&out).len(), 2);
    assert!(check_pages_and_links(&pages(&out, "html")) > 100);
}

#[test]
fn themes_that_differ_only_in_case_get_names_that_differ_ignoring_case() {
    let dir = tempfile::tempdir().unwrap();
    let out = site_with_names(dir.path(), "shared line", "plain", &["Grief", "grief"]);
    let folded: HashSet<String> = theme_links(&out).iter().map(|h| h.to_lowercase()).collect();
    assert_eq!(folded.len(), 2, "{:?}", theme_links(&out));
    assert!(check_pages_and_links(&pages(&out, "html")) > 100);
}

#[test]
fn nul_and_bidi_overrides_in_names_never_reach_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let out = site_with_names(
        dir.path(),
        "shared line",
        "odd\u{0}\u{202E}cat",
        &["evil\u{0}\u{202E}name"],
    );
    // Not in a page, a text twin, a list file or a file name.
    for f in walk(&out) {
        let body = std::fs::read_to_string(&f).unwrap();
        assert!(
            !body.contains(['\u{0}', '\u{202E}']),
            "{}: a raw NUL or U+202E",
            f.display()
        );
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(!name.contains(['\u{0}', '\u{202E}']), "{name}");
    }
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        index.contains("evil&lt;U+0000&gt;&lt;U+202E&gt;name"),
        "the name is shown escaped"
    );
    let list = std::fs::read_to_string(out.join("poems/000.html")).unwrap();
    assert!(
        list.contains("odd&lt;U+0000&gt;&lt;U+202E&gt;cat"),
        "the category is shown escaped"
    );
}
