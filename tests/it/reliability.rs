//! End-to-end tests of what every command promises about the files around
//! it: one render per site folder, outputs that never alias inputs, site
//! folders that are the user's, temp files after Ctrl-C, a full file
//! system, and stale-cache messages that work run verbatim.
//!
//! Races are made deterministic with the test hook
//! `DIVERSITY_TEST_PAUSE=NAME:GATE` (see `crate::fs`): a command stops right
//! after creating the temp file of a file named NAME and waits there while
//! GATE exists.

use crate::support::model;

use crate::common::*;
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A copy of the bundled corpus in `dir` (so that tests may point outputs
/// at it), with a cache of the first 40 entries of each ordering.
fn cached_corpus(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let poems = dir.join("poems.json");
    let embeddings = dir.join("embeddings.json");
    std::fs::copy(corpus("poems.json"), &poems).unwrap();
    std::fs::copy(corpus("embeddings.json"), &embeddings).unwrap();
    let cache = dir.join("cache");
    let o = run(&[
        "precompute",
        "--poems",
        s(&poems),
        "--embeddings",
        s(&embeddings),
        "--out",
        s(&cache),
        "--backend",
        "cpu",
        "--top-k",
        "40",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    (poems, embeddings, cache)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn render_args<'a>(cache: &'a Path, poems: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec!["render", "--cache", s(cache), "--poems", s(poems), "--out", s(out)]
}

/// A command held by the test hook at the temp file of `name` while `gate`
/// exists; its stderr lines arrive on the receiver.
fn spawn_paused(args: &[&str], name: &str, gate: &Path) -> (Child, Receiver<String>) {
    std::fs::write(gate, "").unwrap();
    let mut cmd = bin();
    cmd.args(args)
        .env("DIVERSITY_TEST_PAUSE", format!("{name}:{}", gate.display()))
        .stderr(Stdio::piped());
    default_ctrl_c(&mut cmd);
    let mut child = cmd.spawn().unwrap();
    let lines = lines_of(&mut child);
    (child, lines)
}

fn lines_of(child: &mut Child) -> Receiver<String> {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a stderr line containing `what`; returns everything read.
fn wait_for_line(rx: &Receiver<String>, what: &str, child: &mut Child) -> String {
    let t = Instant::now();
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(what) {
                    return seen;
                }
            }
            Err(_) if t.elapsed() > Duration::from_secs(120) => {
                let _ = child.kill();
                panic!("no line with {what:?} in 120 s:\n{seen}");
            }
            Err(_) => {
                if let Ok(Some(status)) = child.try_wait() {
                    // Drain what is left.
                    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                        seen.push_str(&line);
                        seen.push('\n');
                    }
                    if seen.contains(what) {
                        return seen;
                    }
                    panic!("ended ({status}) before {what:?}:\n{seen}");
                }
            }
        }
    }
}

/// The rest of a child's stderr once it ends, and its status.
fn finish(mut child: Child, rx: Receiver<String>) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut rest = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        rest.push_str(&line);
        rest.push('\n');
    }
    (status, rest)
}

/// Every file below `dir`, relative, with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Asserts that `.pages.b3` lists exactly the site's pages, each with the
/// hash of the file on disk.
fn assert_site_consistent(site: &Path) {
    let manifest = std::fs::read_to_string(site.join(".pages.b3")).expect("a page manifest");
    let mut listed = std::collections::BTreeSet::new();
    for line in manifest.lines() {
        let (hash, rel) = line.split_once("  ").unwrap();
        let bytes = std::fs::read(site.join(rel)).unwrap_or_else(|e| panic!("{rel} is listed but {e}"));
        assert_eq!(blake3::hash(&bytes).to_hex().as_str(), hash, "{rel}");
        listed.insert(rel.to_owned());
    }
    for rel in snapshot(site).keys() {
        let record = rel.starts_with(".pages.");
        assert!(record || listed.contains(rel), "{rel} is on disk but not listed");
    }
}

/// Temp files of this tool anywhere below `dir`.
fn our_temp_files(dir: &Path) -> Vec<String> {
    snapshot(dir)
        .into_keys()
        .filter(|k| k.rsplit('/').next().unwrap().starts_with(".dg+tmp."))
        .collect()
}

#[cfg(unix)]
fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[cfg(unix)]
#[test]
fn a_second_render_into_one_site_fails_naming_the_first_or_waits_with_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (poems, _, cache) = cached_corpus(dir.path());
    let site = dir.path().join("site");
    let gate = dir.path().join("gate");
    let mut args = render_args(&cache, &poems, &site);
    args.extend(["--per-page", "10"]);
    let (mut first, lines) = spawn_paused(&args, "index.html", &gate);
    wait_for_line(&lines, "test hook: paused", &mut first);
    // The first holds the site: a second render fails at once, naming it.
    let t = Instant::now();
    let o = run(&args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains(&format!("pid {}", first.id())) && err.contains("--wait"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(60));
    // With --wait, a third waits for the first, then renders.
    let mut waiting_args = render_args(&cache, &poems, &site);
    waiting_args.extend(["--wait", "--per-page", "20"]);
    let mut third = bin().args(&waiting_args).stderr(Stdio::piped()).spawn().unwrap();
    let third_lines = lines_of(&mut third);
    wait_for_line(&third_lines, "waiting for", &mut third);
    std::thread::sleep(Duration::from_millis(300));
    assert!(third.try_wait().unwrap().is_none(), "--wait did not wait");
    std::fs::remove_file(&gate).unwrap();
    let (status, err) = finish(first, lines);
    assert!(status.success(), "{err}");
    let (status, err) = finish(third, third_lines);
    assert!(status.success(), "{err}");
    assert_site_consistent(&site);
    assert!(our_temp_files(&site).is_empty());
    // The site is the third render's: 20 poems a page (22 reading-order
    // pages, where the first render's 10 a page made 44).
    assert!(site.join("chronological/021.html").exists());
    assert!(!site.join("chronological/030.html").exists());
}

/// Runs `args`, which must be refused naming `what`, and checks that
/// `inputs` are byte-identical afterwards.
fn assert_refused(args: &[&str], what: &str, inputs: &[&Path]) {
    let before: Vec<Vec<u8>> = inputs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let t = Instant::now();
    let o = run(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} was not refused:\n{err}");
    assert!(err.contains(what), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for (p, b) in inputs.iter().zip(before) {
        assert!(std::fs::read(p).unwrap() == b, "{} changed", p.display());
    }
    // Refused before any work: no computing, no embedding.
    assert!(t.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", t.elapsed());
}

#[cfg(unix)]
#[test]
fn every_command_refuses_an_output_that_is_an_input_even_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (poems, embeddings, cache) = cached_corpus(d);
    let link = d.join("link.json");
    std::os::unix::fs::symlink(&poems, &link).unwrap();
    let elink = d.join("elink");
    std::os::unix::fs::symlink(&embeddings, &elink).unwrap();
    let (p, e, c) = (s(&poems), s(&embeddings), s(&cache));
    let model = d.join("no-model");
    for out in [&poems, &link] {
        let o = s(out);
        // embed: before the model is even looked for.
        assert_refused(
            &["embed", "--poems", p, "--out", o, "--model-dir", s(&model)],
            "same file as --poems",
            &[&poems],
        );
        // export: the cache's recorded poems file.
        assert_refused(&["export", "--cache", c, "--out", o], "same file", &[&poems]);
        // render and build: a file input as the site folder.
        assert_refused(
            &["render", "--cache", c, "--poems", p, "--out", o],
            "same file as --poems",
            &[&poems],
        );
        let cache2 = d.join("cache2");
        assert_refused(
            &[
                "build",
                "--poems",
                p,
                "--embeddings",
                e,
                "--cache",
                s(&cache2),
                "--out",
                o,
            ],
            "same file as --poems",
            &[&poems],
        );
        assert!(!cache2.exists(), "build computed before refusing");
    }
    // precompute, a shard, merge: --out the embeddings file, through a link.
    for shard in [&[][..], &["--shard", "0/2"][..]] {
        let mut args = vec!["precompute", "--poems", p, "--embeddings", e, "--out", s(&elink)];
        args.extend_from_slice(shard);
        assert_refused(&args, "same file as --embeddings", &[&embeddings]);
    }
    let shards = d.join("shards");
    for i in 0..2 {
        let out = shards.join(i.to_string());
        let spec = format!("{i}/2");
        let o = run(&[
            "precompute",
            "--poems",
            p,
            "--embeddings",
            e,
            "--out",
            s(&out),
            "--backend",
            "cpu",
            "--top-k",
            "10",
            "--shard",
            &spec,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let (s0, s1) = (shards.join("0"), shards.join("1"));
    let slink = d.join("slink");
    std::os::unix::fs::symlink(&s0, &slink).unwrap();
    let manifest0 = s0.join("manifest.json");
    assert_refused(
        &["merge", "--out", s(&slink), s(&s0), s(&s1)],
        "is the shard",
        &[&manifest0],
    );
    // Merging into the shards' own folder writes around them.
    assert_refused(
        &["merge", "--out", s(&shards), s(&s0), s(&s1)],
        "inside --out",
        &[&manifest0],
    );
    // export into the cache it reads.
    assert_refused(
        &["export", "--cache", c, "--out", s(&cache.join("x.jsonl"))],
        "inside --cache",
        &[&cache.join("manifest.json")],
    );
}

#[test]
fn render_refuses_a_folder_of_the_users_files_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (poems, embeddings, cache) = cached_corpus(dir.path());
    let site = dir.path().join("mine");
    std::fs::create_dir_all(site.join("photos")).unwrap();
    std::fs::write(site.join("notes.md"), "my notes").unwrap();
    std::fs::write(site.join("photos/a.jpg"), "jpeg").unwrap();
    let before = snapshot(&site);
    let o = run(&render_args(&cache, &poems, &site));
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("notes.md") && err.contains("photos/") && err.contains("not a site"),
        "{err}"
    );
    // build refuses it before computing anything.
    let cache2 = dir.path().join("cache2");
    let o = run(&[
        "build",
        "--poems",
        s(&poems),
        "--embeddings",
        s(&embeddings),
        "--cache",
        s(&cache2),
        "--out",
        s(&site),
        "--backend",
        "cpu",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("notes.md"), "{}", stderr(&o));
    assert!(newest_generation(&cache2).is_none(), "build computed before refusing");
    assert_eq!(snapshot(&site), before, "the user's folder was touched");
    // Once a site, it stays one: the user's files added later are kept.
    let site = dir.path().join("site");
    assert!(run(&render_args(&cache, &poems, &site)).status.success());
    std::fs::write(site.join("notes.md"), "mine").unwrap();
    let o = run(&render_args(&cache, &poems, &site));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(site.join("notes.md")).unwrap(), "mine");
}

/// Names beside our temp files that only look like them: never removed.
const LOOKALIKES: [&str; 4] = [".tmpnotes", ".tmp0a1b2c", "dg+tmp.x", ".dg+tmpx"];

/// Interrupts `args` (twice: the first Ctrl-C asks for a checkpoint, the
/// second stops at once) while it holds the temp file of `name`, checks that
/// the temp file is left in `dir`, reruns it, and checks that the rerun
/// removed it and nothing else.
#[cfg(unix)]
fn interrupt_then_rerun(args: &[&str], name: &str, dir: &Path, gate: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for l in LOOKALIKES {
        std::fs::write(dir.join(l), "mine").unwrap();
    }
    let (mut child, lines) = spawn_paused(args, name, gate);
    wait_for_line(&lines, "test hook: paused", &mut child);
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(200));
    if child.try_wait().unwrap().is_none() {
        signal(&child, "-INT");
    }
    let (status, err) = finish(child, lines);
    assert!(!status.success(), "{args:?} ended well after Ctrl-C: {err}");
    assert!(
        !our_temp_files(dir).is_empty(),
        "{args:?}: the interrupt left no temp file in {} to sweep",
        dir.display()
    );
    std::fs::remove_file(gate).unwrap();
    let o = run(args);
    assert!(o.status.success(), "{args:?} rerun: {}", stderr(&o));
    assert_eq!(our_temp_files(dir), Vec::<String>::new(), "{args:?}");
    for l in LOOKALIKES {
        assert_eq!(std::fs::read_to_string(dir.join(l)).unwrap(), "mine", "{l}");
    }
}

#[cfg(unix)]
#[test]
fn temp_files_left_by_ctrl_c_are_swept_by_the_next_run_of_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gate = d.join("gate");
    let (poems, embeddings, cache) = cached_corpus(d);
    let (p, e) = (s(&poems), s(&embeddings));
    // export, beside the user's file.
    let out = d.join("out");
    let export = out.join("orderings.jsonl");
    interrupt_then_rerun(
        &["export", "--cache", s(&cache), "--out", s(&export)],
        "orderings.jsonl",
        &out,
        &gate,
    );
    // precompute, into its cache: a rebuild (another --top-k) is stopped
    // as it writes the manifest.
    let c2 = d.join("c2");
    let pre = |k: &'static str| {
        let mut v = vec!["precompute", "--poems", p, "--embeddings", e, "--out", s(&c2)];
        v.extend(["--backend", "cpu", "--top-k", k]);
        v
    };
    ok(&pre("10"));
    interrupt_then_rerun(&pre("12"), "manifest.json", &c2, &gate);
    // render, into its site: stopped as it starts the page manifest.
    let site = d.join("site");
    ok(&render_args(&cache, &poems, &site));
    interrupt_then_rerun(&render_args(&cache, &poems, &site), ".pages.b3", &site, &gate);
    // merge, into its cache.
    let shards: Vec<PathBuf> = (0..2).map(|i| d.join(format!("s{i}"))).collect();
    for (i, sh) in shards.iter().enumerate() {
        let spec = format!("{i}/2");
        let o = run(&[
            "precompute",
            "--poems",
            p,
            "--embeddings",
            e,
            "--out",
            s(sh),
            "--backend",
            "cpu",
            "--top-k",
            "10",
            "--shard",
            &spec,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let merged = d.join("merged");
    let merge = ["merge", "--out", s(&merged), s(&shards[0]), s(&shards[1])];
    ok(&merge);
    interrupt_then_rerun(&merge, "similar.bin", &merged, &gate);
    // build: its cache, then its site.
    let (bc, bs) = (d.join("bc"), d.join("bs"));
    let build = |k: &'static str| {
        let mut v = vec![
            "build",
            "--poems",
            p,
            "--embeddings",
            e,
            "--cache",
            s(&bc),
            "--out",
            s(&bs),
        ];
        v.extend(["--backend", "cpu", "--top-k", k]);
        v
    };
    ok(&build("10"));
    interrupt_then_rerun(&build("12"), "manifest.json", &bc, &gate);
    interrupt_then_rerun(&build("12"), ".pages.b3", &bs, &gate);
    // embed, beside its output (needs the model files).
    if let Some(model) = model::dir() {
        let small = d.join("small.jsonl");
        std::fs::write(
            &small,
            "{\"id\": \"a\", \"text\": \"the sea at night\"}\n{\"id\": \"b\", \"text\": \"a dry field\"}\n",
        )
        .unwrap();
        let eout = d.join("emb");
        let target = eout.join("e.json");
        interrupt_then_rerun(
            &[
                "embed",
                "--poems",
                s(&small),
                "--out",
                s(&target),
                "--model-dir",
                s(&model),
            ],
            "e.json",
            &eout,
            &gate,
        );
    }
}

/// Runs `args` with writes limited to `bytes` per file (RLIMIT_FSIZE) and
/// SIGXFSZ ignored, as a full disk looks to a program: writes fail (EFBIG).
#[cfg(unix)]
fn with_file_size_limit(bytes: u64, args: &[&str]) -> std::process::Output {
    let exe = env!("CARGO_BIN_EXE_diversity-gpu");
    Command::new("sh")
        .arg("-c")
        .arg(r#"trap '' XFSZ; limit="$1"; shift; exec prlimit --fsize="$limit" "$@""#)
        .arg("sh")
        .arg(bytes.to_string())
        .arg(exe)
        .args(args)
        .output()
        .expect("sh and prlimit run")
}

#[cfg(unix)]
#[test]
fn a_full_file_system_fails_render_and_export_clearly_and_keeps_the_last_output() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        skip("prlimit (util-linux)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (poems, _, cache) = cached_corpus(dir.path());
    // export: the last good output stays, no temp file is left.
    let out = dir.path().join("orderings.jsonl");
    let c = s(&cache);
    ok(&["export", "--cache", c, "--out", s(&out)]);
    let good = std::fs::read(&out).unwrap();
    std::fs::write(&out, b"the previous export\n").unwrap();
    let o = with_file_size_limit(good.len() as u64 / 2, &["export", "--cache", c, "--out", s(&out)]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot write {}", out.display())) && err.contains("file size limit"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"the previous export\n");
    assert!(our_temp_files(dir.path()).is_empty());
    // render: a site of larger pages does not fit; the last one stays whole.
    let site = dir.path().join("site");
    let mut args = render_args(&cache, &poems, &site);
    args.extend(["--per-page", "10"]);
    ok(&args);
    let before = snapshot(&site);
    // Room for any page of 10 poems, not for an ordering page of 40.
    let largest = before
        .iter()
        .filter(|(k, _)| k.starts_with("similar/") || k.starts_with("different/"))
        .map(|(_, v)| v.len())
        .max()
        .unwrap() as u64;
    let mut args = render_args(&cache, &poems, &site);
    args.extend(["--per-page", "40"]);
    let o = with_file_size_limit(largest, &args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("file size limit"), "{err}");
    assert!(our_temp_files(&site).is_empty());
    // Every page is whole: the previous render's or this one's, as listed.
    let after = snapshot(&site);
    let listed: BTreeMap<String, String> = std::fs::read_to_string(site.join(".pages.b3"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once("  ").map(|(h, p)| (p.to_owned(), h.to_owned())))
        .collect();
    for (rel, bytes) in &after {
        if rel.starts_with(".pages.") {
            continue;
        }
        let whole_new = listed
            .get(rel)
            .is_some_and(|h| blake3::hash(bytes).to_hex().as_str() == h);
        assert!(whole_new || before.get(rel) == Some(bytes), "{rel} is neither");
    }
    // With room again, the same command completes the site.
    let o = run(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_site_consistent(&site);
}

#[test]
fn the_stale_cache_message_runs_verbatim_from_another_folder_and_rebuilds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (a, b, other) = (d.join("a"), d.join("b"), d.join("other"));
    for f in [&a, &b, &other] {
        std::fs::create_dir(f).unwrap();
    }
    std::fs::copy(corpus("poems.json"), a.join("poems.json")).unwrap();
    std::fs::copy(corpus("embeddings.json"), a.join("embeddings.json")).unwrap();
    // The first run, with relative paths, in a/.
    let o = bin()
        .current_dir(&a)
        .args([
            "precompute",
            "--poems",
            "poems.json",
            "--embeddings",
            "embeddings.json",
            "--out",
            "cache",
            "--backend",
            "cpu",
            "--top-k",
            "10",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // The poems change: one poem with an embedding goes.
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("poems.json")).unwrap()).unwrap();
    v["poems"].as_array_mut().unwrap().remove(3);
    std::fs::write(a.join("poems2.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    let render = |cwd: &Path| {
        bin()
            .current_dir(cwd)
            .args([
                "render",
                "--cache",
                "../a/cache",
                "--poems",
                "../a/poems2.json",
                "--out",
                "site",
            ])
            .output()
            .unwrap()
    };
    let o = render(&b);
    let err = stderr(&o);
    assert!(!o.status.success() && err.contains("stale"), "{err}");
    let cmd = err
        .lines()
        .skip_while(|l| !l.contains("Update it with"))
        .nth(1)
        .unwrap_or_else(|| panic!("no command in: {err}"))
        .trim()
        .to_owned();
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words[0], "diversity-gpu", "{cmd}");
    // Verbatim, from a third folder.
    let o = bin().current_dir(&other).args(&words[1..]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "{cmd}: {err}");
    assert!(!err.contains("up to date"), "{cmd} did nothing: {err}");
    let o = render(&b);
    assert!(o.status.success(), "{}", stderr(&o));
    // And "up to date" names the cache by its absolute path.
    let o = bin().current_dir(&other).args(&words[1..]).output().unwrap();
    let cache = a.join("cache").canonicalize().unwrap();
    assert!(
        stderr(&o).contains(&format!("{} is up to date", cache.display())),
        "{}",
        stderr(&o)
    );
}
