//! A folder of poems becomes a site in one command, with the model in
//! process and no server anywhere: front matter, nested categories, files
//! that are skipped with one line each, colours and themes embedded by the
//! same model; and the guidance when no model or server is at hand.

use crate::support::model;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{bin, stderr};

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// A poet's folder: plain files, front matter, nested categories, and the
/// files a folder collects (a non-UTF-8 file, an editor backup, a hidden
/// file, a picture).
fn poets_folder(dir: &Path) {
    let lines = [
        "The sea at night is black and wide",
        "My grandmother's kitchen smelled of bread",
        "A red fox crossed the frozen field",
        "We buried the dog beneath the apple tree",
        "The city hums its neon lullaby",
        "Green moss grows on the northern stones",
    ];
    for (i, l) in lines.iter().enumerate() {
        write(
            dir,
            &format!("poem-{i}.txt"),
            format!("Title {i}\n\n{l}\nand then the morning came.\n").as_bytes(),
        );
    }
    write(
        dir,
        "2019/spring/blossom.md",
        b"---\ntitle: \"Blossom: a song\"\ndate: 2019-03-04\n---\nPink and white,\nthe orchard sings.\n",
    );
    write(
        dir,
        "2019/grief.md",
        b"# Grief\n\nThe chair is empty now.\nI set two cups out anyway.\n",
    );
    write(dir, "old.txt", b"caf\xe9 au lait\n");
    write(dir, "poem-0.txt~", b"an older draft");
    write(dir, ".draft.txt", b"hidden");
    write(dir, "cover.jpg", b"\xff\xd8");
}

#[test]
fn a_folder_of_text_files_becomes_a_site_with_no_server() {
    let Some(model_dir) = model::dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let poems = d.path().join("poems");
    poets_folder(&poems);
    let (cache, site) = (d.path().join("cache"), d.path().join("site"));
    let build = || {
        bin()
            .args(["build", "--backend", "cpu", "--poems"])
            .args([
                &poems,
                Path::new("--model-dir"),
                &model_dir,
                Path::new("--cache"),
                &cache,
                Path::new("--out"),
                &site,
            ])
            // No network and an empty hub cache: the model comes from the folder only.
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", d.path().join("no-hub"))
            .output()
            .unwrap()
    };
    let o = build();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    for skipped in [
        "old.txt: skipped (not UTF-8",
        "poem-0.txt~: skipped (editor backup)",
        ".draft.txt: skipped (hidden",
        "cover.jpg: skipped",
    ] {
        assert_eq!(err.matches(skipped).count(), 1, "{skipped:?} once in:\n{err}");
    }
    assert!(err.contains("8 poems: 8 embedded"), "{err}");
    assert!(site.join("index.html").is_file());
    let export = bin().args(["export", "--cache"]).arg(&cache).output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(export.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let poems_lines: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| !l["key"].as_str().unwrap().starts_with("theme:"))
        .collect();
    let keys: Vec<&str> = poems_lines.iter().map(|l| l["key"].as_str().unwrap()).collect();
    for k in ["2019/spring/blossom", "2019/grief", "poem-0", "poem-5"] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    assert_eq!(keys.len(), 8);
    assert!(
        poems_lines.iter().all(|l| l["color"].is_string()),
        "every poem has a semantic colour"
    );
    assert!(lines.len() > 8, "the bundled themes are in the cache");
    let blossom = std::fs::read_to_string(walk_find(&site, "blossom")).unwrap();
    assert!(
        blossom.contains("Blossom: a song") && blossom.contains("2019-03-04"),
        "title and date from the front matter"
    );

    // Again: every vector from the journal, nothing recomputed.
    let o = build();
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("8 from the journal") && err.contains("up to date"),
        "{err}"
    );
}

/// The first page under `site` whose name contains `part`.
fn walk_find(site: &Path, part: &str) -> std::path::PathBuf {
    let mut stack = vec![site.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().contains(part)
                && p.extension().is_some_and(|x| x == "html")
            {
                return p;
            }
        }
    }
    panic!("no page named like {part}");
}

#[test]
fn without_a_model_or_server_build_names_the_three_ways_and_writes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let poems = d.path().join("poems");
    poets_folder(&poems);
    let cache = d.path().join("cache");
    let o = bin()
        .args(["build", "--poems"])
        .arg(&poems)
        .arg("--cache")
        .arg(&cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", d.path().join("empty-hub"))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    for way in [
        "HF_HUB_OFFLINE",
        "--model-dir",
        "--url http://localhost:11434",
        "--embeddings",
    ] {
        assert!(err.contains(way), "{way} missing from:\n{err}");
    }
    assert!(!cache.exists(), "nothing written");
    let o = bin()
        .args(["precompute", "--out"])
        .arg(&cache)
        .arg("--poems")
        .arg(&poems)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("has no embeddings") && err.contains("diversity-gpu embed --poems"),
        "{err}"
    );
}

#[test]
fn embed_with_no_server_says_so_at_once_and_writes_no_empty_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("embeddings.json");
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_diversity-gpu"))
        .env("RUST_LOG", "info")
        .args([
            "embed",
            "--give-up-after",
            "4",
            "--url",
            &format!("http://127.0.0.1:{port}"),
            "--model",
            "all-minilm",
        ])
        .arg("--poems")
        .arg(crate::common::corpus("poems.json"))
        .arg("--out")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut warned_after = None;
    let mut all = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if warned_after.is_none() && line.contains("Is the server running there?") {
            warned_after = Some(start.elapsed());
        }
        all.push_str(&line);
        all.push('\n');
    }
    let status = child.wait().unwrap();
    let warned_after = warned_after.unwrap_or_else(|| panic!("no warning in:\n{all}"));
    assert!(warned_after < Duration::from_secs(3), "warned after {warned_after:?}");
    assert!(!status.success(), "{all}");
    assert!(!out.exists(), "an empty embeddings.json was written:\n{all}");
    assert!(all.contains("not written"), "{all}");
}

#[test]
fn an_interrupted_in_process_embed_resumes_from_its_journal() {
    let Some(model_dir) = model::dir() else { return };
    let d = tempfile::tempdir().unwrap();
    // 4,420 texts: long enough that the interrupt lands mid-run on any machine.
    let poems = d.path().join("poems.jsonl");
    let texts: Vec<String> = diversity_gpu::corpus::load_poems(&crate::common::corpus("poems.json"))
        .unwrap()
        .into_iter()
        .map(|p| p.text)
        .collect();
    let lines: Vec<String> = (0..texts.len() * 10)
        .map(|i| {
            serde_json::json!({"id": i.to_string(), "text": format!("{} ({i})", texts[i % texts.len()])}).to_string()
        })
        .collect();
    std::fs::write(&poems, lines.join("\n")).unwrap();
    let out = d.path().join("embeddings.json");
    let journal = d.path().join("embeddings.json.journal.jsonl");
    let journaled = || std::fs::read_to_string(&journal).map_or(0, |s| s.lines().count());
    // Starts an embed, waits until it has journaled `more` vectors, then
    // interrupts it; its stderr.
    let interrupted = |more: usize| {
        let child = bin()
            .args(["embed", "--quiet", "--model-dir"])
            .arg(&model_dir)
            .arg("--poems")
            .arg(&poems)
            .arg("--out")
            .arg(&out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (start, before) = (Instant::now(), journaled());
        while journaled() < before + more {
            assert!(start.elapsed() < Duration::from_secs(120), "no vectors journaled");
            std::thread::sleep(Duration::from_millis(50));
        }
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
        stderr(&o)
    };
    interrupted(40);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let completed = saved["metadata"]["completed"].as_u64().unwrap();
    assert!((40..4420).contains(&completed), "{completed} saved");
    // The resumed run starts from the journal (a whole run takes minutes).
    let err = interrupted(20);
    let from_journal = crate::common::number_before(&err, " from the journal");
    assert!(
        from_journal >= completed as usize,
        "{from_journal} from the journal, {completed} saved:\n{err}"
    );
}

#[test]
fn split_long_embeds_long_poems_in_pieces_and_says_so() {
    let Some(model_dir) = model::dir() else { return };
    let d = tempfile::tempdir().unwrap();
    let poems = d.path().join("poems");
    let long: String = (0..60)
        .map(|i| format!("line {i} of a very long poem about the sea and the wind\n"))
        .collect();
    write(&poems, "long.txt", format!("A Long One\n{long}").as_bytes());
    write(&poems, "short.txt", b"Short\nthe sea at night\n");
    let run = |extra: &[&str], out: &str| {
        let o = bin()
            .args(["embed", "--model-dir"])
            .arg(&model_dir)
            .arg("--poems")
            .arg(&poems)
            .arg("--out")
            .arg(d.path().join(out))
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(d.path().join(out)).unwrap()).unwrap();
        (stderr(&o), meta["metadata"].clone())
    };
    let (err, meta) = run(&[], "truncated.json");
    assert!(
        err.contains("1 text was longer than the model's window of 256 tokens and truncated"),
        "{err}"
    );
    assert!(meta["max_chars"].is_null(), "nothing split: {meta}");
    let (err, meta) = run(&["--split-long"], "split.json");
    assert!(err.contains("split 1 poem longer than 762 characters into"), "{err}");
    assert!(!err.contains("truncated to it"), "{err}");
    assert_eq!(meta["max_chars"], 762, "{meta}");
    assert_eq!(meta["api"], "local");
}
