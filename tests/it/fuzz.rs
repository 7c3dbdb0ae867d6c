//! Byte-mutation fuzzing, bounded so it runs in `cargo test`: no input file
//! and no cache file can panic the tool, and a damaged cache is never
//! accepted with different contents.
//!
//! `PROPTEST_CASES` raises the number of cases for a longer run.

use std::path::{Path, PathBuf};

use diversity_gpu::cache::{Cache, Kind};
use diversity_gpu::corpus::{self, LoadOptions};
use diversity_gpu::engine::BackendChoice;
use diversity_gpu::precompute;
use proptest::prelude::*;

/// One edit of a file's bytes; positions wrap around the length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(p, b)| Edit::Flip(p, b)),
        (
            any::<usize>(),
            prop::sample::select(b"{}[]\",:0-9.eE+ \n\xEF\xBB\xBFnull".to_vec())
        )
            .prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), 1..64usize).prop_map(|(p, n)| Edit::Delete(p, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Flip(p, b) if !bytes.is_empty() => bytes[p % len] ^= b,
            Edit::Set(p, b) if !bytes.is_empty() => bytes[p % len] = b,
            Edit::Insert(p, b) => bytes.insert(p % (bytes.len() + 1), b),
            Edit::Delete(p, n) if !bytes.is_empty() => {
                let at = p % len;
                bytes.drain(at..(at + n).min(bytes.len()));
            }
            Edit::Truncate(p) => bytes.truncate(p % (bytes.len() + 1)),
            _ => {}
        }
    }
}

const POEMS: &str = r#"{"metadata": {"total_poems": 3}, "poems": [
  {"poem_index": 1, "category": "a", "id": "1", "content": "one", "creation_date": "2021-01-05"},
  {"poem_index": 2, "category": "a", "id": 2, "content": "two", "creation_date": "1/5/2021"},
  {"poem_index": 3, "id": "x", "text": "three", "date": "5 January 2021"}]}"#;
const EMBEDDINGS: &str = r#"{"metadata": {"embedding_model": "m", "embedding_dimension": 3}, "embeddings": [
  {"category": "a", "id": "1", "embedding": [1, 0.5, -2e-3]},
  {"poem_index": 2, "embedding": [0, 1, 1e200]},
  {"id": "x", "error": "timeout"}]}"#;
const JSONL: &str = "{\"id\": \"a\", \"text\": \"one\", \"embedding\": [1, 2], \"date\": \"2020\"}\n\
{\"id\": 7, \"category\": \"c\", \"text\": \"two\", \"embedding\": [3, -4e-300]}\n\
{\"id\": \"z\", \"text\": \"three\"}\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_mutated_corpus_file_panics_the_loaders(
        which in 0..3usize,
        edits in prop::collection::vec(edit(), 1..6),
        strict in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut files = [
            (dir.path().join("poems.json"), POEMS.as_bytes().to_vec()),
            (dir.path().join("embeddings.json"), EMBEDDINGS.as_bytes().to_vec()),
            (dir.path().join("c.jsonl"), JSONL.as_bytes().to_vec()),
        ];
        apply(&mut files[which].1, &edits);
        for (p, b) in &files {
            std::fs::write(p, b).unwrap();
        }
        let opts = LoadOptions { strict, exclude: vec!["a/2".into()] };
        // Ok or a clear error; and an error names the file it is about.
        for (poems, emb) in [(&files[0].0, Some(files[1].0.as_path())), (&files[2].0, None)] {
            if let Err(e) = corpus::load(poems, emb, &opts) {
                let msg = e.to_string();
                prop_assert!(msg.contains(".json") || msg.contains(".jsonl"), "{}", msg);
            }
            let _ = corpus::load_poems(poems);
        }
    }
}

fn options(poems: &Path, out: &Path, stop_after: Option<usize>) -> precompute::Options {
    precompute::Options {
        poems: poems.to_owned(),
        embeddings: None,
        out: out.to_owned(),
        backend: BackendChoice::Cpu,
        top_k: None,
        threads: Some(1),
        strict: false,
        exclude: None,
        center: false,
        extras: Default::default(),
        chunk: 4,
        gpu: Default::default(),
        progress: false,
        stop_after,
        shard: None,
        max_memory: None,
    }
}

/// A small finished cache, and the corpus it came from.
fn small_cache(dir: &Path) -> (PathBuf, PathBuf) {
    let poems = dir.join("c.jsonl");
    let mut s = String::new();
    for i in 0..23u32 {
        let v: Vec<String> = (0..5)
            .map(|k| format!("{}", ((i * 7 + k * 13) % 11) as f64 - 5.0))
            .collect();
        s += &format!("{{\"id\": \"p{i}\", \"embedding\": [{}]}}\n", v.join(","));
    }
    std::fs::write(&poems, s).unwrap();
    let cache = dir.join("cache");
    precompute::run(&options(&poems, &cache, None)).unwrap();
    (poems, cache)
}

fn rows(c: &Cache) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    for i in 0..c.manifest.included {
        for kind in [Kind::Similar, Kind::Different] {
            let mut r = Vec::new();
            c.row(kind, i, &mut r);
            out.push(r);
        }
    }
    out
}

/// The newest generation folder of a cache (the one its manifest names
/// once it is finished: older ones are removed at the switch).
fn generation(cache: &std::path::Path) -> std::path::PathBuf {
    let newest = std::fs::read_dir(cache)
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("gen-")?.parse::<u64>().ok())
        .max()
        .expect("a generation folder");
    cache.join(format!("gen-{newest}"))
}

const CACHE_FILES: [&str; 4] = ["manifest.json", "vectors.bin", "similar.bin", "different.bin"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_mutated_cache_is_refused_or_unchanged(
        which in 0..4usize,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (_, cache) = small_cache(dir.path());
        let good = Cache::open(&cache).unwrap();
        let expect = rows(&good);
        let path = match CACHE_FILES[which] {
            "manifest.json" => cache.join("manifest.json"),
            f => generation(&cache).join(f),
        };
        let original = std::fs::read(&path).unwrap();
        let mut bytes = original.clone();
        apply(&mut bytes, &edits);
        std::fs::write(&path, &bytes).unwrap();
        match Cache::open(&cache) {
            Ok(c) => {
                prop_assert_eq!(&bytes, &original, "a changed {} was accepted", CACHE_FILES[which]);
                prop_assert_eq!(rows(&c), expect);
            }
            Err(e) => {
                let msg = format!("{e:#}");
                prop_assert!(msg.contains(CACHE_FILES[which]), "{}", msg);
            }
        }
    }

    /// The files an interrupted run leaves, mutated: the resumed run still
    /// ends in the uninterrupted run's bytes (or a clear error).
    #[test]
    fn a_mutated_unfinished_run_resumes_to_the_right_cache(
        which in 0..4usize,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (poems, whole) = small_cache(dir.path());
        let part = dir.path().join("part");
        precompute::run(&options(&poems, &part, Some(3))).unwrap();
        let name = ["progress.log", "run.json", "similar.bin.partial", "different.bin.partial"][which];
        let path = generation(&part).join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        apply(&mut bytes, &edits);
        std::fs::write(&path, &bytes).unwrap();
        match precompute::run(&options(&poems, &part, None)) {
            Ok(_) => {
                for f in ["similar.bin", "different.bin", "vectors.bin"] {
                    prop_assert!(std::fs::read(generation(&part).join(f)).unwrap() == std::fs::read(generation(&whole).join(f)).unwrap(), "{} after {}", f, name);
                }
                Cache::open(&part).unwrap();
            }
            Err(e) => prop_assert!(format!("{e:#}").contains(name), "{:#}", e),
        }
    }
}
