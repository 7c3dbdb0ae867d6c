//! End-to-end tests of themes and semantic colours: precompute, the cache,
//! export and their errors.

use crate::support::server;

use crate::common::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

use diversity_gpu::cache::{integrity, Manifest};
use serde_json::Value;

fn asset(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join(name)
}

fn export(cache: &Path) -> Vec<Value> {
    let o = ok(&["export", "--cache", cache.to_str().unwrap()]);
    String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The cache's themes' orderings file (named by the extras fingerprint).
fn themes_file(cache: &Path) -> PathBuf {
    let m: Value = serde_json::from_slice(&std::fs::read(cache.join("manifest.json")).unwrap()).unwrap();
    data_dir(cache).join(format!(
        "themes-{}.bin",
        &m["extras_fingerprint"].as_str().unwrap()[..16]
    ))
}

/// Edits the manifest and seals it again, so every hash is consistent.
fn reseal(cache: &Path, edit: impl FnOnce(&mut Manifest)) {
    let mpath = cache.join("manifest.json");
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    edit(&mut m);
    m.manifest_hash = integrity::UNSEALED.into();
    std::fs::write(&mpath, integrity::seal(serde_json::to_vec_pretty(&m).unwrap()).0).unwrap();
}

fn keys(v: &Value) -> Vec<&str> {
    v.as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect()
}

#[test]
fn themes_and_colours_are_computed_cached_and_exported() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let themes = asset("themes.jsonl");
    let o = precompute(&cache, &["--themes", themes.to_str().unwrap()]);
    assert!(
        stderr(&o).contains("12 themes") && stderr(&o).contains("palette of 24"),
        "{}",
        stderr(&o)
    );
    let lines = export(&cache);
    assert_eq!(lines.len(), 440 + 12);
    let poems: HashSet<&str> = lines[..440].iter().map(|l| l["key"].as_str().unwrap()).collect();
    let palette: HashSet<String> = std::fs::read_to_string(asset("palette.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    for l in &lines[..440] {
        assert!(palette.contains(l["color"].as_str().unwrap()), "{l}");
    }
    // The colours are not all one: the palette separates the poems.
    let used: HashSet<&str> = lines[..440].iter().map(|l| l["color"].as_str().unwrap()).collect();
    assert!(used.len() > 5, "{used:?}");
    assert_eq!(lines[440]["key"], "theme:grief");
    for l in &lines[440..] {
        assert!(l["key"].as_str().unwrap().starts_with("theme:"));
        for kind in ["similar", "different"] {
            // Every included poem once: no poem is the theme.
            let list: HashSet<&str> = keys(&l[kind]).into_iter().collect();
            assert_eq!(list, poems, "{kind} of {}", l["key"]);
        }
    }
    // Embedded by the corpus's model: "falling in love" finds the love poems.
    let love = lines.iter().find(|l| l["key"] == "theme:first-love").unwrap();
    assert!(
        keys(&love["similar"])[..5].iter().all(|k| k.starts_with("love/")),
        "{}",
        love["similar"]
    );
    // --top-k cuts theme orderings to prefixes of the full ones.
    let top = dir.path().join("top");
    precompute(&top, &["--themes", themes.to_str().unwrap(), "--top-k", "25"]);
    for (full, cut) in lines[440..].iter().zip(&export(&top)[440..]) {
        for kind in ["similar", "different"] {
            assert_eq!(keys(&cut[kind]), keys(&full[kind])[..25]);
        }
    }
}

/// A themes file whose one theme has poem `key`'s own embedding.
fn theme_of_poem(dir: &Path, key: &str) -> PathBuf {
    let e: Value = serde_json::from_slice(&std::fs::read(corpus("embeddings.json")).unwrap()).unwrap();
    let entry = e["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| format!("{}/{}", x["category"].as_str().unwrap(), x["id"].as_str().unwrap()) == key)
        .unwrap();
    let path = dir.join("themes.jsonl");
    let line = serde_json::json!({"id": "echo", "text": "a poem's own vector", "embedding": entry["embedding"]});
    std::fs::write(&path, format!("{line}\n")).unwrap();
    path
}

#[test]
fn a_theme_equal_to_a_poem_follows_that_poems_walk() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let key = "songs-poems/0042";
    let themes = theme_of_poem(dir.path(), key);
    precompute(&cache, &["--themes", themes.to_str().unwrap()]);
    let lines = export(&cache);
    let poem = lines.iter().find(|l| l["key"] == key).unwrap();
    let theme = lines.iter().find(|l| l["key"] == "theme:echo").unwrap();
    assert_eq!(keys(&theme["similar"])[0], key);
    assert_eq!(keys(&theme["similar"])[1..], keys(&poem["similar"])[..]);
    let walk = keys(&theme["different"]);
    let at = walk.iter().position(|k| *k == key).unwrap();
    assert!(at > 100, "the poem itself came at step {at}");
    assert_eq!(walk[..at], keys(&poem["different"])[..at]);
}

#[test]
fn changed_themes_or_palette_recompute_only_themselves() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let all = asset("themes.jsonl");
    precompute(&cache, &["--themes", all.to_str().unwrap()]);
    let orderings = |c: &Path| {
        ["similar.bin", "different.bin"].map(|f| {
            let m = std::fs::metadata(cache_file(c, f)).unwrap();
            (std::fs::read(cache_file(c, f)).unwrap(), m.modified().unwrap())
        })
    };
    let before = orderings(&cache);
    let fewer = dir.path().join("fewer.jsonl");
    let text = std::fs::read_to_string(&all).unwrap();
    std::fs::write(&fewer, text.lines().take(2).collect::<Vec<_>>().join("\n")).unwrap();
    let o = precompute(&cache, &["--themes", fewer.to_str().unwrap()]);
    let err = stderr(&o);
    assert!(
        err.contains("is stale (themes [\"grief\", \"sea-at-night\", \"first-love\"")
            && err.contains("recomputing the themes and colours only")
            && err.contains("orderings up to date; recomputed 2 themes"),
        "{err}"
    );
    // The orderings were not rewritten; the old themes' file is gone.
    assert_eq!(orderings(&cache), before);
    let files: Vec<String> = std::fs::read_dir(data_dir(&cache))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("themes-"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    // The result is the cache a fresh run makes.
    let fresh = dir.path().join("fresh");
    precompute(&fresh, &["--themes", fewer.to_str().unwrap()]);
    assert_eq!(export(&cache), export(&fresh));
    assert_eq!(
        std::fs::read(themes_file(&cache)).unwrap(),
        std::fs::read(themes_file(&fresh)).unwrap()
    );
    let o = precompute(&cache, &["--themes", fewer.to_str().unwrap(), "--no-palette"]);
    assert!(stderr(&o).contains("is stale (palette [\"red\""), "{}", stderr(&o));
    assert!(export(&cache)[0].get("color").is_none());
    let o = precompute(&cache, &["--themes", fewer.to_str().unwrap(), "--no-palette"]);
    assert!(stderr(&o).contains("up to date"), "{}", stderr(&o));
    // A theme's vector changed, its name not: still stale.
    let moved = text
        .lines()
        .take(2)
        .collect::<Vec<_>>()
        .join("\n")
        .replacen("0.0", "0.5", 1);
    std::fs::write(&fewer, moved).unwrap();
    let o = precompute(&cache, &["--themes", fewer.to_str().unwrap(), "--no-palette"]);
    assert!(
        stderr(&o).contains("is stale (the themes' or palette's vectors)"),
        "{}",
        stderr(&o)
    );
    // No themes and no palette: the extras' files go.
    precompute(&cache, &["--no-palette"]);
    assert!(export(&cache)
        .iter()
        .all(|l| !l["key"].as_str().unwrap().starts_with("theme:")));
    let left: Vec<String> = std::fs::read_dir(data_dir(&cache))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("themes-") || n.starts_with("extra-vectors-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(orderings(&cache), before);
}

#[test]
fn bad_themes_and_palettes_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let file = dir.path().join("extra.jsonl");
    let fail = |flag: &str, content: &str| {
        std::fs::write(&file, content).unwrap();
        let o = try_precompute(&cache, &[flag, file.to_str().unwrap()]);
        assert!(!o.status.success());
        stderr(&o)
    };
    let e = fail(
        "--themes",
        "{\"id\":\"sea\",\"text\":\"the sea\",\"embedding\":[1,2,3]}\n",
    );
    assert!(
        e.contains("extra.jsonl") && e.contains("3-d") && e.contains("384-d"),
        "{e}"
    );
    let vector = serde_json::to_string(&vec![0.1; 384]).unwrap();
    let e = fail(
        "--themes",
        &format!("{{\"id\":\"sea\",\"embedding\":{vector}}}\n{{\"id\":\"night\",\"text\":\"night\"}}\n"),
    );
    assert!(
        e.contains("\"night\"") && e.contains("no embedding") && e.contains("diversity-gpu embed"),
        "{e}"
    );
    let e = fail("--palette", &format!("{{\"id\":\"red\",\"embedding\":{vector}}}\n"));
    assert!(e.contains("\"red\"") && e.contains("#rrggbb"), "{e}");
    let e = fail("--themes", "{\"id\":\"sea\",\n");
    assert!(e.contains("extra.jsonl") && e.contains("line 1"), "{e}");
    assert!(!cache.join("manifest.json").exists());
}

#[test]
fn a_corpus_of_another_model_gets_no_default_palette() {
    let dir = tempfile::tempdir().unwrap();
    let poems = dir.path().join("poems.jsonl");
    std::fs::write(
        &poems,
        "{\"id\":\"a\",\"text\":\"x\",\"embedding\":[1,0,0]}\n{\"id\":\"b\",\"text\":\"y\",\"embedding\":[0,1,0]}\n",
    )
    .unwrap();
    let cache = dir.path().join("cache");
    let o = ok(&[
        "precompute",
        "--poems",
        poems.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    assert!(stderr(&o).contains("no semantic colours"), "{}", stderr(&o));
    assert!(export(&cache).iter().all(|l| l.get("color").is_none()));
    // Its own palette, embedded for its own vectors, applies.
    let palette = dir.path().join("palette.jsonl");
    std::fs::write(
        &palette,
        "{\"id\":\"sky\",\"color\":\"#87CEEB\",\"embedding\":[0,1,0.1]}\n{\"id\":\"sun\",\"color\":\"#ffd700\",\"embedding\":[1,0.1,0]}\n",
    )
    .unwrap();
    ok(&[
        "precompute",
        "--poems",
        poems.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--backend",
        "cpu",
        "--palette",
        palette.to_str().unwrap(),
    ]);
    let colors: Vec<String> = export(&cache)
        .iter()
        .map(|l| l["color"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(colors, ["sun", "sky"]);
}

#[test]
fn the_gpu_backend_writes_the_cpu_backends_themes() {
    let dir = tempfile::tempdir().unwrap();
    let (cpu, gpu) = (dir.path().join("cpu"), dir.path().join("gpu"));
    let themes = asset("themes.jsonl");
    let t = themes.to_str().unwrap();
    precompute(&cpu, &["--themes", t, "--top-k", "300", "--chunk", "200"]);
    let o = try_precompute(
        &gpu,
        &["--backend", "gpu", "--themes", t, "--top-k", "300", "--chunk", "200"],
    );
    if !o.status.success() && stderr(&o).contains("no suitable GPU adapter") {
        skip("a GPU adapter");
        return;
    }
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("backend: gpu"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(themes_file(&cpu)).unwrap(),
        std::fs::read(themes_file(&gpu)).unwrap()
    );
    assert_same_files(&cpu, &gpu, &["different.bin"]);
    let colors = |d: &Path| {
        let m: Value = serde_json::from_slice(&std::fs::read(d.join("manifest.json")).unwrap()).unwrap();
        m["colors"].clone()
    };
    assert_eq!(colors(&cpu), colors(&gpu));
    assert_eq!(colors(&cpu).as_array().unwrap().len(), 440);
}

#[test]
fn themes_with_separate_embeddings_must_share_the_poems_model() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let themes = dir.path().join("themes.json");
    std::fs::write(&themes, r#"{"poems": [{"id": "sea", "content": "the sea at night"}]}"#).unwrap();
    let embeddings = dir.path().join("themes-emb.json");
    let write = |model: &str| {
        let e = serde_json::json!({
            "metadata": {"embedding_model": model, "embedding_dimension": 384},
            "embeddings": [{"id": "sea", "embedding": vec![0.05; 384]}]
        });
        std::fs::write(&embeddings, e.to_string()).unwrap();
    };
    let args = [
        "--themes",
        themes.to_str().unwrap(),
        "--theme-embeddings",
        embeddings.to_str().unwrap(),
    ];
    write("nomic-embed-text");
    let o = try_precompute(&cache, &args);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("themes-emb.json") && err.contains("nomic-embed-text") && err.contains("all-MiniLM-L6-v2"),
        "{err}"
    );
    write("all-MiniLM-L6-v2");
    precompute(&cache, &args);
    assert_eq!(export(&cache).last().unwrap()["key"], "theme:sea");
    let m: Value = serde_json::from_slice(&std::fs::read(cache.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["inputs"]["theme_embeddings"], embeddings.to_str().unwrap());
}

#[test]
fn verify_checks_every_theme_and_colour_against_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let themes = asset("themes.jsonl");
    precompute(&cache, &["--themes", themes.to_str().unwrap(), "--top-k", "50"]);
    let v = ok(&["verify", "--cache", cache.to_str().unwrap(), "--sample", "3"]);
    assert!(
        stderr(&v).contains("the orderings of all 12 themes and the colours of all 440 poems"),
        "{}",
        stderr(&v)
    );
    // Swap two entries of the first theme's different ordering: caught.
    let path = themes_file(&cache);
    let mut bytes = std::fs::read(&path).unwrap();
    let row = 12 * 50 * 2;
    bytes.swap(row, row + 2);
    bytes.swap(row + 1, row + 3);
    std::fs::write(&path, &bytes).unwrap();
    // With every hash consistent (as a buggy backend would write it).
    reseal(&cache, |m| {
        let name = path.file_name().unwrap().to_str().unwrap();
        m.integrity
            .files
            .insert(name.into(), integrity::hash_file(&path).unwrap());
    });
    let o = run(&["verify", "--cache", cache.to_str().unwrap(), "--sample", "3"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("Different of theme \"grief\": first difference at position 0"),
        "{}",
        stderr(&o)
    );
    // A colour changed in the manifest: caught, by name.
    precompute(
        &cache,
        &["--themes", themes.to_str().unwrap(), "--top-k", "50", "--no-palette"],
    );
    precompute(&cache, &["--themes", themes.to_str().unwrap(), "--top-k", "50"]);
    reseal(&cache, |m| m.colors[0] = (m.colors[0] + 1) % 24);
    let o = run(&["verify", "--cache", cache.to_str().unwrap(), "--sample", "3"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("colour of \"literature/0001\""), "{}", stderr(&o));
}

#[test]
fn themes_are_embedded_by_the_same_client_as_the_poems() {
    let srv = server::Server::start(std::time::Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lines: &[(&str, &str)]| {
        let path = dir.path().join(name);
        let text: Vec<String> = lines
            .iter()
            .map(|(id, t)| serde_json::json!({"id": id, "text": t}).to_string())
            .collect();
        std::fs::write(&path, text.join("\n")).unwrap();
        path
    };
    let poems: Vec<(String, String)> = (0..30)
        .map(|i| {
            (
                format!("p{i:02}"),
                format!("poem {i} about the {}", ["sea", "night", "grief"][i % 3]),
            )
        })
        .collect();
    let poem_refs: Vec<(&str, &str)> = poems.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    let poems = write("poems.jsonl", &poem_refs);
    // One theme's text is poem p07's: the same client gives it the same vector.
    let themes = write(
        "themes.jsonl",
        &[("echo", "poem 7 about the night"), ("sea", "the sea at night")],
    );
    let embed = |input: &Path, out: &Path| {
        ok(&[
            "embed",
            "--poems",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--url",
            &srv.url,
            "--model",
            "m",
        ])
    };
    let (pe, te) = (dir.path().join("poems-emb.json"), dir.path().join("themes-emb.json"));
    embed(&poems, &pe);
    embed(&themes, &te);
    let cache = dir.path().join("cache");
    ok(&[
        "precompute",
        "--poems",
        poems.to_str().unwrap(),
        "--embeddings",
        pe.to_str().unwrap(),
        "--themes",
        themes.to_str().unwrap(),
        "--theme-embeddings",
        te.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
        "--backend",
        "cpu",
    ]);
    let lines = export(&cache);
    assert_eq!(lines.len(), 32);
    let echo = lines.iter().find(|l| l["key"] == "theme:echo").unwrap();
    assert_eq!(keys(&echo["similar"])[0], "p07");
    assert_eq!(keys(&echo["different"]).len(), 30);
}

#[test]
fn shards_with_themes_merge_into_the_whole_cache() {
    let dir = tempfile::tempdir().unwrap();
    let themes = asset("themes.jsonl");
    let t = themes.to_str().unwrap();
    let whole = dir.path().join("whole");
    precompute(&whole, &["--themes", t, "--top-k", "30"]);
    let parts: Vec<PathBuf> = (0..2).map(|i| dir.path().join(format!("s{i}"))).collect();
    for (i, p) in parts.iter().enumerate() {
        precompute(p, &["--themes", t, "--top-k", "30", "--shard", &format!("{i}/2")]);
    }
    let merged = dir.path().join("merged");
    let args = |parts: &[PathBuf]| {
        let mut a = vec!["merge".to_string(), "--out".into(), merged.to_str().unwrap().into()];
        a.extend(parts.iter().map(|p| p.to_str().unwrap().to_string()));
        a
    };
    let o = run(&args(&parts).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(export(&merged), export(&whole));
    assert_eq!(
        std::fs::read(themes_file(&merged)).unwrap(),
        std::fs::read(themes_file(&whole)).unwrap()
    );
    let v = ok(&["verify", "--cache", merged.to_str().unwrap(), "--sample", "3"]);
    assert!(stderr(&v).contains("all 12 themes"), "{}", stderr(&v));
    // A shard computed with other themes is refused, by name.
    let fewer = dir.path().join("fewer.jsonl");
    let text = std::fs::read_to_string(&themes).unwrap();
    std::fs::write(&fewer, text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    precompute(
        &parts[1],
        &["--themes", fewer.to_str().unwrap(), "--top-k", "30", "--shard", "1/2"],
    );
    let o = run(&args(&parts).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("does not match shard") && stderr(&o).contains("themes ["),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_damaged_themes_file_is_refused_naming_it_and_precompute_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let themes = asset("themes.jsonl");
    let args = ["--themes", themes.to_str().unwrap(), "--top-k", "40"];
    precompute(&cache, &args);
    let good = export(&cache);
    let path = themes_file(&cache);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let o = run(&["export", "--cache", cache.to_str().unwrap()]);
    assert!(!o.status.success());
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr(&o).contains(name) && stderr(&o).contains("blake3"),
        "{}",
        stderr(&o)
    );
    precompute(&cache, &args);
    assert_eq!(export(&cache), good);
}
