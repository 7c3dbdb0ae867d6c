//! End-to-end tests of what `render` and `build` promise about the site
//! folder, page file names, outputs and exit statuses.

use crate::common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn render_args(cache: &Path, poems: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["render", "--cache", "", "--poems", "", "--out", ""]
        .map(String::from)
        .to_vec();
    args[2] = cache.to_str().unwrap().into();
    args[4] = poems.to_str().unwrap().into();
    args[6] = out.to_str().unwrap().into();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn render(cache: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    bin()
        .args(render_args(cache, &corpus("poems.json"), out, extra))
        .output()
        .unwrap()
}

/// Every file under `out`, site-relative.
fn files(out: &Path) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for sub in [
        "",
        "similar",
        "different",
        "chronological",
        "themes",
        "golden",
        "poems",
        "words",
        "complete",
        "complete/similar",
        "complete/different",
        "complete/themes",
    ] {
        let Ok(entries) = std::fs::read_dir(out.join(sub)) else {
            continue;
        };
        for e in entries {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                let name = e.file_name().to_string_lossy().into_owned();
                all.insert(if sub.is_empty() { name } else { format!("{sub}/{name}") });
            }
        }
    }
    all
}

/// Checks `.pages.b3` as `b3sum --check` does (every hash matches its file)
/// and that it lists exactly the site's pages; returns the listed paths.
fn check_manifest(out: &Path, user: &[&str]) -> BTreeSet<String> {
    check_listed(out, user, files(out))
}

/// [`check_manifest`] after a kill: a render killed while writing
/// `.pages.owned` leaves its temp file for the next render to sweep, which
/// is not a page (the test checks the sweep after its last render).
fn check_manifest_after_kill(out: &Path, user: &[&str]) -> BTreeSet<String> {
    let on_disk = files(out).into_iter().filter(|f| !f.contains(".dg+tmp.")).collect();
    check_listed(out, user, on_disk)
}

fn check_listed(out: &Path, user: &[&str], mut on_disk: BTreeSet<String>) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(out.join(".pages.b3")).expect("a finished render has .pages.b3");
    let mut listed = BTreeSet::new();
    for line in manifest.lines() {
        let (hash, rel) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), hash, "{rel}");
        assert!(listed.insert(rel.to_owned()), "{rel} listed twice");
    }
    for f in [".pages.b3", ".pages.owned", ".pages.lock"].iter().chain(user) {
        assert!(on_disk.remove(*f), "{f} missing");
    }
    assert_eq!(on_disk, listed, "pages on disk and in .pages.b3 differ");
    listed
}

const USER_FILES: [&str; 5] = [
    "chronological/2024.html",
    "similar/notes.txt",
    "different/.tmp-draft.html",
    "similar/zzz-000.html",
    "notes.md",
];

#[test]
fn render_removes_only_what_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "100"]);
    let out = dir.path().join("site");
    // A folder of the user's files is refused (tests/reliability.rs): the
    // user's files come into a site the tool made.
    let o = render(&cache, &out, &["--per-page", "25"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in USER_FILES {
        std::fs::create_dir_all(out.join(f).parent().unwrap()).unwrap();
        std::fs::write(out.join(f), "mine").unwrap();
    }
    let o = render(&cache, &out, &["--per-page", "25"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let first = check_manifest(&out, &USER_FILES);
    // A smaller cap removes this tool's pages beyond it, and nothing else.
    let o = render(&cache, &out, &["--per-page", "25", "--max-pages", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let second = check_manifest(&out, &USER_FILES);
    assert!(second.len() < first.len());
    let removed = first.len() - second.len();
    assert!(stderr(&o).contains(&format!("{removed} removed")), "{}", stderr(&o));
    for f in USER_FILES {
        assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), "mine", "{f}");
    }
    // An edited record cannot make render remove anything else.
    std::fs::write(
        out.join(".pages.owned"),
        "notes.md\n../cache/manifest.json\nsimilar/../notes.md\n/etc/hostname\nother/a.html\n",
    )
    .unwrap();
    let o = render(&cache, &out, &["--per-page", "25", "--max-pages", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    check_manifest(&out, &USER_FILES);
    assert!(cache.join("manifest.json").exists());
}

/// A corpus whose keys are hostile to file systems and browsers.
fn hostile_corpus(path: &Path) -> Vec<String> {
    let keys = vec![
        ".tmp-poem".to_owned(),
        "長".repeat(60),
        "x".repeat(300),
        "A".to_owned(),
        "a".to_owned(),
        "evil\u{202E}txt.exe\u{0}".to_owned(),
        "plain".to_owned(),
    ];
    let mut s = String::new();
    for (i, k) in keys.iter().enumerate() {
        let v: Vec<String> = (0..4)
            .map(|d| format!("{}", if d == i % 4 { 1.0 } else { 0.1 * i as f64 }))
            .collect();
        let line = serde_json::json!({"id": k, "text": format!("poem {i}"), "embedding": serde_json::from_str::<serde_json::Value>(&format!("[{}]", v.join(","))).unwrap()});
        s.push_str(&line.to_string());
        s.push('\n');
    }
    std::fs::write(path, s).unwrap();
    keys
}

#[test]
fn hostile_keys_get_short_unique_plain_page_names() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("keys.jsonl");
    let keys = hostile_corpus(&poems);
    let cache = dir.path().join("cache");
    ok(&[
        "precompute",
        "--poems",
        poems.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let out = dir.path().join("site");
    let o = bin().args(render_args(&cache, &poems, &out, &[])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = check_manifest(&out, &[]);
    // Two pages and two complete lists per key, the reading order, the
    // index, the golden page, the poem list and the word list, and the
    // complete lists' reader page, script, packing and texts.
    assert_eq!(listed.len(), keys.len() * 4 + 2 + 3 + 4, "{listed:?}");
    let mut folded = BTreeSet::new();
    for rel in &listed {
        let name = rel.rsplit('/').next().unwrap();
        assert!(name.len() <= 100, "{name} is {} bytes", name.len());
        assert!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)),
            "{name}"
        );
        assert!(folded.insert(rel.to_ascii_lowercase()), "{rel} collides ignoring case");
    }
    // `.tmp-poem`'s pages survive a second render (they are not temp files).
    let o = bin().args(render_args(&cache, &poems, &out, &[])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("0 removed"), "{}", stderr(&o));
    assert!(listed.iter().any(|p| p.starts_with("similar/.tmp-poem-")));
    check_manifest(&out, &[]);
    // Every link in every page resolves; no NUL or bidi control reaches a page.
    for rel in &listed {
        let html = std::fs::read_to_string(out.join(rel)).unwrap();
        for bad in ['\u{0}', '\u{202E}'] {
            assert!(!html.contains(bad), "{rel} carries U+{:04X}", bad as u32);
        }
        for href in html
            .split("href=\"")
            .skip(1)
            .map(|h| h.split(['"', '#']).next().unwrap())
        {
            if href.is_empty() || href.ends_with(".css") {
                continue;
            }
            let target = out.join(rel).parent().unwrap().join(href);
            assert!(target.exists(), "{rel}: broken link {href}");
        }
    }
    // The poem list (reached from the index) shows every key.
    let index = std::fs::read_to_string(out.join("poems/000.html")).unwrap();
    assert!(
        index.contains("evil&lt;U+202E&gt;txt.exe&lt;U+0000&gt;") || index.contains("evil<U+202E>"),
        "the key is shown with its hidden characters named"
    );
}

/// A site whose render takes a while: the bundled corpus, many small pages.
fn slow_site() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &[]);
    let out = dir.path().join("site");
    (dir, cache, out)
}

#[test]
fn a_render_killed_at_random_moments_ends_correct() {
    let (_dir, cache, out) = slow_site();
    let user = ["similar/notes.txt", "chronological/2024.html"];
    // The user's files come into a site the tool made.
    let o = render(&cache, &out, &["--per-page", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(out.join("similar")).unwrap();
    std::fs::create_dir_all(out.join("chronological")).unwrap();
    for f in user {
        std::fs::write(out.join(f), "mine").unwrap();
    }
    // Alternate two page sizes, so each render rewrites pages the last one made.
    let per_page = |i: usize| if i.is_multiple_of(2) { "20" } else { "30" };
    let mut rng = fastrand::Rng::with_seed(8);
    let mut killed = 0;
    for i in 0..8 {
        let args = render_args(
            &cache,
            &corpus("poems.json"),
            &out,
            &["--per-page", per_page(i), "--threads", "1"],
        );
        let mut child = bin().args(&args).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(rng.u64(50..1500)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
        // Between renders, a manifest is either absent or exactly right.
        if out.join(".pages.b3").exists() {
            check_manifest_after_kill(&out, &user);
        }
    }
    assert!(
        killed >= 4,
        "only {killed} of 8 renders were killed; the site is too small"
    );
    let o = render(&cache, &out, &["--per-page", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed = check_manifest(&out, &user);
    assert!(
        files(&out).iter().all(|f| !f.contains(".dg+tmp.")),
        "a temp file is left"
    );
    // The site is the one a fresh render makes.
    let fresh = out.with_file_name("fresh");
    let o = render(&cache, &fresh, &["--per-page", "20"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(check_manifest(&fresh, &[]), listed);
    for rel in &listed {
        assert!(
            std::fs::read(out.join(rel)).unwrap() == std::fs::read(fresh.join(rel)).unwrap(),
            "{rel}"
        );
    }
    for f in user {
        assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), "mine");
    }
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_a_render_with_status_130_and_the_next_render_finishes() {
    let (_dir, cache, out) = slow_site();
    let args = render_args(
        &cache,
        &corpus("poems.json"),
        &out,
        &["--per-page", "10", "--threads", "1"],
    );
    let mut child = bin().args(&args).stderr(Stdio::piped()).spawn().unwrap();
    let t = std::time::Instant::now();
    while !out.join(".pages.owned").exists() {
        assert!(
            t.elapsed().as_secs() < 60 && child.try_wait().unwrap().is_none(),
            "render never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("run the same command again"), "{err}");
    assert!(
        !out.join(".pages.b3").exists(),
        "an interrupted render must not claim its pages"
    );
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    check_manifest(&out, &[]);
}

#[test]
fn all_lifts_the_budget_and_an_explicit_budget_caps_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "50"]);
    let out = dir.path().join("site");
    let o = render(&cache, &out, &["--per-page", "10", "--budget", "20MB"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let capped = stderr(&o);
    assert!(capped.contains("within --budget 20MB"), "{capped}");
    assert!(!capped.contains("static pages: 5 per ordering"), "{capped}");
    let o = render(&cache, &out, &["--per-page", "10", "--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("static pages: 5 per ordering of 10") && stderr(&o).contains("no budget (--all)"));
    let o = render(&cache, &out, &["--all", "--budget", "1GB"]);
    assert_eq!(o.status.code(), Some(2), "clap refuses --all with --budget");
}

#[cfg(unix)]
#[test]
fn outputs_write_through_symlinks_and_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "10"]);
    let c = cache.to_str().unwrap();
    let plain = run(&["export", "--cache", c]).stdout;
    assert!(!plain.is_empty());
    let real = dir.path().join("real.jsonl");
    std::fs::write(&real, "old").unwrap();
    let link = dir.path().join("link.jsonl");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    ok(&["export", "--cache", c, "--out", link.to_str().unwrap()]);
    assert!(
        std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(),
        "the link was replaced"
    );
    assert_eq!(std::fs::read(&real).unwrap(), plain);
    // /dev/stdout into a pipe.
    let o = ok(&["export", "--cache", c, "--out", "/dev/stdout"]);
    assert_eq!(o.stdout, plain);
    // A site page that is a link is written through too.
    let out = dir.path().join("site");
    ok(&render_args(&cache, &corpus("poems.json"), &out, &[])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    let kept = dir.path().join("kept-index.html");
    std::fs::write(&kept, "old").unwrap();
    std::fs::remove_file(out.join("index.html")).unwrap();
    std::os::unix::fs::symlink(&kept, out.join("index.html")).unwrap();
    ok(&render_args(&cache, &corpus("poems.json"), &out, &[])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(std::fs::symlink_metadata(out.join("index.html"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(std::fs::read_to_string(&kept).unwrap().contains("<html"));
}

#[test]
fn build_takes_jsonl_and_does_not_render_after_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("c.jsonl");
    synthetic(&poems, 300, 8, 3);
    let (cache, out) = (dir.path().join("cache"), dir.path().join("site"));
    let args = |extra: &[&str]| {
        let mut a = vec![
            "build",
            "--poems",
            poems.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--backend",
            "cpu",
            "--chunk",
            "16",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let o = bin()
        .env("DIVERSITY_TEST_STOP_AFTER", "1")
        .args(args(&[]))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("run the same command again to resume"),
        "{}",
        stderr(&o)
    );
    assert!(
        !out.join("index.html").exists(),
        "build rendered after a stopped precompute"
    );
    let o = bin().args(args(&[])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    check_manifest(&out, &[]);
}

#[test]
fn build_with_no_inputs_uses_the_corpus_inside_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    // A copy of the binary away from the checkout, run in an empty folder.
    let exe = dir.path().join("diversity-gpu");
    std::fs::copy(env!("CARGO_BIN_EXE_diversity-gpu"), &exe).unwrap();
    let work = dir.path().join("empty");
    std::fs::create_dir(&work).unwrap();
    let home = dir.path().join("home");
    let run = |args: &[&str]| {
        std::process::Command::new(&exe)
            .args(args)
            .current_dir(&work)
            .env("HOME", &home)
            .env_remove("XDG_CACHE_HOME")
            .output()
            .unwrap()
    };
    let o = run(&["build", "--backend", "cpu", "--max-pages", "1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(work.join("site/index.html").exists());
    check_manifest(&work.join("site"), &[]);
    // The default palette comes from inside the binary too: every poem gets
    // a colour, and the palette file is the user's, under ~/.cache.
    let export = run(&["export", "--cache", "cache"]);
    assert!(export.status.success(), "{}", stderr(&export));
    let lines = String::from_utf8(export.stdout).unwrap();
    let poems = lines.lines().filter(|l| !l.contains("\"theme:")).count();
    assert_eq!(lines.matches("\"color\"").count(), poems, "a poem without a colour");
    let cached: Vec<_> = std::fs::read_dir(home.join(".cache/diversity-gpu")).unwrap().collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
}

#[test]
fn a_reader_that_stops_early_is_quiet_in_every_listing_command() {
    use std::io::Read;
    let mut child = bin()
        .arg("adapters")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut one = [0u8; 1];
    let _ = child.stdout.take().unwrap().read(&mut one);
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(!err.contains("Broken pipe") && !err.contains("os error 32"), "{err}");
}

#[cfg(unix)]
#[test]
fn ctrl_c_ends_a_command_without_checkpoints_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "10"]);
    // Opening a FIFO nobody reads blocks: export waits there for Ctrl-C.
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let mut child = default_ctrl_c(&mut bin())
        .args([
            "export",
            "--cache",
            cache.to_str().unwrap(),
            "--out",
            fifo.to_str().unwrap(),
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let t = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t.elapsed().as_secs() > 10 {
            child.kill().unwrap();
            panic!("export ignored Ctrl-C");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    assert!(status.signal() == Some(2) || status.code() == Some(130), "{status:?}");
}
