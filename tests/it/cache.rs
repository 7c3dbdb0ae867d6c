//! The cache's promises under attack: damaged files, kills at random
//! moments, two writers, and the repair commands the errors suggest.

use crate::common::*;
use diversity_gpu::cache::{integrity, Manifest};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const FILES: [&str; 4] = ["manifest.json", "vectors.bin", "similar.bin", "different.bin"];

fn export(cache: &Path) -> std::process::Output {
    run(&["export", "--cache", cache.to_str().unwrap()])
}

/// Runs the command an error message suggests after "repair it with:".
fn run_suggested(err: &str) -> std::process::Output {
    let line = err
        .split("repair it with:")
        .nth(1)
        .and_then(|rest| rest.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or_else(|| panic!("no repair command in: {err}"));
    let mut words = line.split_whitespace();
    assert_eq!(words.next(), Some("diversity-gpu"), "{line}");
    let args: Vec<&str> = words.chain(["--backend", "cpu"]).collect();
    run(&args)
}

/// Kills `child` (SIGKILL) and reaps it; whether the kill landed, `false`
/// when the child had exited already.
#[cfg(unix)]
fn kill(child: &mut std::process::Child) -> bool {
    use std::os::unix::process::ExitStatusExt;
    child.kill().unwrap();
    child.wait().unwrap().signal() == Some(9)
}

#[test]
fn a_flipped_byte_in_any_cache_file_is_refused_naming_it_and_the_suggested_command_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "5", "--chunk", "64"]);
    let good = export(&cache);
    assert!(good.status.success());
    let (poems, site) = (corpus("poems.json"), dir.path().join("site"));
    let (poems, site) = (poems.to_str().unwrap(), site.to_str().unwrap());
    let mut rng = test_rng();
    for name in FILES {
        let path = cache_file(&cache, name);
        let original = std::fs::read(&path).unwrap();
        let len = original.len();
        for at in [0, 1, len / 3, len / 2, len - 2, len - 1, rng.usize(..len)] {
            let mut bad = original.clone();
            bad[at] ^= 0x01;
            std::fs::write(&path, &bad).unwrap();
            for cmd in [
                vec!["export", "--cache", cache.to_str().unwrap()],
                vec!["verify", "--cache", cache.to_str().unwrap()],
                vec![
                    "render",
                    "--cache",
                    cache.to_str().unwrap(),
                    "--poems",
                    poems,
                    "--out",
                    site,
                ],
            ] {
                let o = run(&cmd);
                let err = stderr(&o);
                assert!(!o.status.success(), "{cmd:?} accepted {name} flipped at {at}");
                assert!(
                    err.contains(name) && err.contains("damaged"),
                    "{cmd:?}, {name} flipped at {at}: {err}"
                );
            }
        }
        // The command the error suggests repairs the cache.
        let mut bad = original.clone();
        bad[len / 2] ^= 0x01;
        std::fs::write(&path, &bad).unwrap();
        let err = stderr(&export(&cache));
        let o = if err.contains("repair it with:") {
            run_suggested(&err)
        } else {
            // A manifest too damaged to parse cannot name its inputs.
            assert!(err.contains("run the precompute command that wrote it again"), "{err}");
            try_precompute(&cache, &["--top-k", "5", "--chunk", "64"])
        };
        assert!(o.status.success(), "repair of {name}: {}", stderr(&o));
        assert!(!stderr(&o).contains("nothing to do"), "{}", stderr(&o));
        let again = export(&cache);
        assert!(again.status.success(), "{}", stderr(&again));
        assert_eq!(again.stdout, good.stdout, "repair of {name} changed the export");
    }
    assert!(!dir.path().join("site").exists(), "render wrote from a damaged cache");
}

#[test]
fn a_truncated_or_deleted_file_is_refused_and_precompute_repairs_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--chunk", "100"]);
    let good = export(&cache);
    for name in ["similar.bin", "different.bin", "vectors.bin"] {
        let path = cache_file(&cache, name);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = stderr(&export(&cache));
        assert!(err.contains(name) && err.contains("damaged"), "{err}");
        let o = run_suggested(&err);
        assert!(
            o.status.success() && !stderr(&o).contains("nothing to do"),
            "{}",
            stderr(&o)
        );
        // Only the chunks in the cut-off half were recomputed.
        if name != "vectors.bin" {
            assert!(
                stderr(&o).contains("resuming: 2 of 5 chunks already done"),
                "{}",
                stderr(&o)
            );
        }
        assert_eq!(export(&cache).stdout, good.stdout);
        // The repair is a new generation.
        std::fs::remove_file(cache_file(&cache, name)).unwrap();
        let err = stderr(&export(&cache));
        assert!(err.contains(name) && err.contains("missing"), "{err}");
        assert!(run_suggested(&err).status.success());
        assert_eq!(export(&cache).stdout, good.stdout);
    }
}

/// Two entries of the manifest's key list swapped: refused whether the
/// manifest's own seal is left alone or recomputed to match.
#[test]
fn swapped_manifest_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "5"]);
    let path = cache.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let (a, b) = ("\"songs-poems/0001\"", "\"songs-poems/0002\"");
    let keys_at = text.find("\"keys\": [").unwrap();
    let i = keys_at + text[keys_at..].find(a).unwrap();
    let j = keys_at + text[keys_at..].find(b).unwrap();
    let mut swapped = text.clone().into_bytes();
    swapped[i..i + a.len()].copy_from_slice(b.as_bytes());
    swapped[j..j + b.len()].copy_from_slice(a.as_bytes());
    std::fs::write(&path, &swapped).unwrap();
    let err = stderr(&export(&cache));
    assert!(err.contains("manifest.json does not match its manifest_hash"), "{err}");
    // Re-sealed: the key hash still tells.
    let (zeroed, _) = text.split_once("\"manifest_hash\": \"").unwrap();
    let mut unsealed = swapped.clone();
    let at = zeroed.len() + "\"manifest_hash\": \"".len();
    unsealed[at..at + 64].copy_from_slice(integrity::UNSEALED.as_bytes());
    std::fs::write(&path, integrity::seal(unsealed).0).unwrap();
    let o = export(&cache);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("manifest.json: its key list does not match its key hash"),
        "{}",
        stderr(&o)
    );
}

/// A synthetic corpus (seed `seed`) slow enough to interrupt, and its
/// uninterrupted cache `whole`, the reference every interrupted run must equal.
fn corpus_and_whole_cache(dir: &Path, seed: u64) -> (PathBuf, PathBuf) {
    let corpus = dir.join("c.jsonl");
    synthetic(&corpus, 2000, 32, seed);
    let whole = dir.join("whole");
    let o = bin().args(slow_precompute_args(&corpus, &whole)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    (corpus, whole)
}

#[cfg(unix)]
#[test]
fn killing_precompute_at_random_moments_still_ends_in_the_identical_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, whole) = corpus_and_whole_cache(dir.path(), 11);
    let killed = dir.path().join("killed");
    let args = slow_precompute_args(&corpus, &killed);
    let (mut rng, mut delays, mut landed, mut longest) = (test_rng(), Vec::new(), 0, 1500);
    // Five kills that land: a kill that comes after the run finished proves
    // nothing, so a run that finished first is checked, removed, and the
    // next delay drawn from a shorter range (a fast machine runs it quicker).
    for _ in 0..20 {
        let delay = 50 + rng.u64(..longest);
        delays.push(delay);
        let mut child = bin().args(&args).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let hit = kill(&mut child);
        // Whatever the moment, the directory is never a finished cache that
        // differs from the real one.
        if killed.join("manifest.json").exists() {
            assert_same_files(&whole, &killed, &["similar.bin", "different.bin", "vectors.bin"]);
        }
        if hit {
            landed += 1;
        } else {
            std::fs::remove_dir_all(&killed).unwrap();
            longest = (longest / 2).max(50);
        }
        if landed == 5 {
            break;
        }
    }
    assert_eq!(
        landed, 5,
        "only {landed} kills landed (delays {delays:?}); the run is too short"
    );
    let o = bin().args(&args).output().unwrap();
    assert!(o.status.success(), "delays {delays:?}: {}", stderr(&o));
    assert_same_files(&whole, &killed, &["similar.bin", "different.bin", "vectors.bin"]);
    ok(&["verify", "--cache", killed.to_str().unwrap(), "--sample", "3"]);
}

#[cfg(unix)]
#[test]
fn a_partial_file_deleted_or_truncated_after_a_kill_is_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, whole) = corpus_and_whole_cache(dir.path(), 12);
    for damage in ["delete", "truncate", "flip"] {
        let out = dir.path().join(damage);
        let args = slow_precompute_args(&corpus, &out);
        let mut child = bin().args(&args).stderr(std::process::Stdio::null()).spawn().unwrap();
        wait_for_chunks(&out, 4, &mut child);
        child.kill().unwrap();
        child.wait().unwrap();
        let path = cache_file(&out, "similar.bin.partial");
        match damage {
            "delete" => std::fs::remove_file(&path).unwrap(),
            "truncate" => std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(100)
                .unwrap(),
            _ => {
                let mut b = std::fs::read(&path).unwrap();
                b[10] ^= 0x40;
                std::fs::write(&path, b).unwrap();
            }
        }
        let o = bin().args(&args).output().unwrap();
        assert!(o.status.success(), "{damage}: {}", stderr(&o));
        assert!(stderr(&o).contains("recomputing it"), "{damage}: {}", stderr(&o));
        assert_same_files(&whole, &out, &["similar.bin", "different.bin"]);
    }
}

#[cfg(unix)]
#[test]
fn a_second_writer_is_refused_at_once_and_the_first_finishes_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let (corpus, whole) = corpus_and_whole_cache(dir.path(), 13);
    let out = dir.path().join("cache");
    let args = slow_precompute_args(&corpus, &out);
    let mut first = bin().args(&args).stderr(std::process::Stdio::null()).spawn().unwrap();
    wait_for_chunks(&out, 2, &mut first);
    let t = Instant::now();
    let second = bin()
        .args([&args[..], &["--top-k".into(), "10".into()]].concat())
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "the second writer waited");
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains(&format!("being written by another process (pid {})", first.id())),
        "{}",
        stderr(&second)
    );
    assert!(first.wait().unwrap().success());
    assert_same_files(&whole, &out, &["similar.bin", "different.bin", "vectors.bin"]);
    ok(&["verify", "--cache", out.to_str().unwrap(), "--sample", "3"]);
}

/// A poem without an embedding added to the corpus: precompute and render
/// agree that the cache is current once precompute has recorded it.
#[test]
fn a_poem_added_without_an_embedding_is_recorded_not_looped_over() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &[]);
    let before = std::fs::read(cache_file(&cache, "similar.bin")).unwrap();
    let mut poems: serde_json::Value = serde_json::from_slice(&std::fs::read(corpus("poems.json")).unwrap()).unwrap();
    let list = poems["poems"].as_array_mut().unwrap();
    let mut extra = list[0].clone();
    extra["id"] = "new-one".into();
    // A poem_index of its own: a shared one is refused.
    extra["poem_index"] = 9999.into();
    list.push(extra);
    let changed = dir.path().join("poems.json");
    std::fs::write(&changed, serde_json::to_vec(&poems).unwrap()).unwrap();
    let (p, c, site) = (
        changed.to_str().unwrap(),
        cache.to_str().unwrap(),
        dir.path().join("site"),
    );
    let render = || run(&["render", "--cache", c, "--poems", p, "--out", site.to_str().unwrap()]);
    let o = render();
    assert!(!o.status.success());
    assert!(stderr(&o).contains("is stale: 1 poem added"), "{}", stderr(&o));
    let e = corpus("embeddings.json");
    let o = ok(&[
        "precompute",
        "--poems",
        p,
        "--embeddings",
        e.to_str().unwrap(),
        "--out",
        c,
        "--backend",
        "cpu",
    ]);
    assert!(
        stderr(&o).contains("recording the poem list (1 poem added"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(cache_file(&cache, "similar.bin")).unwrap(), before);
    let o = render();
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A cache whose hashes are all consistent but whose rows are wrong (as a
/// buggy backend would write): verify names each bad start once.
#[test]
fn verify_checks_every_row_and_counts_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "6"]);
    let o = run(&["verify", "--cache", cache.to_str().unwrap(), "--sample", "0"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--sample"), "{}", stderr(&o));
    // Swap two entries in rows 3 and 7 of both orderings; duplicate one in row 9.
    for name in ["similar.bin", "different.bin"] {
        let path = cache_file(&cache, name);
        let mut b = std::fs::read(&path).unwrap();
        for row in [3usize, 7] {
            let at = row * 12;
            b.swap(at, at + 2);
            b.swap(at + 1, at + 3);
        }
        if name == "similar.bin" {
            let at = 9 * 12;
            b.copy_within(at..at + 2, at + 2);
        }
        std::fs::write(&path, b).unwrap();
    }
    let mpath = cache.join("manifest.json");
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for name in ["similar.bin", "different.bin"] {
        m.integrity
            .files
            .insert(name.into(), integrity::hash_file(&cache_file(&cache, name)).unwrap());
    }
    m.manifest_hash = integrity::UNSEALED.into();
    std::fs::write(&mpath, integrity::seal(serde_json::to_vec_pretty(&m).unwrap()).0).unwrap();
    let o = run(&["verify", "--cache", cache.to_str().unwrap(), "--sample", "440"]);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("1 row is not a valid ordering; 3 of 440 sampled starts differ"),
        "{err}"
    );
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn a_cache_of_another_format_version_is_refused_with_the_rebuild_command() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "3"]);
    let path = cache.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("\"format_version\": 3", "\"format_version\": 2")).unwrap();
    // Format 2 kept its files beside the manifest.
    let data = data_dir(&cache);
    for f in ["vectors.bin", "similar.bin", "different.bin"] {
        std::fs::rename(data.join(f), cache.join(f)).unwrap();
    }
    std::fs::remove_dir_all(&data).unwrap();
    let err = stderr(&export(&cache));
    assert!(
        err.contains("written by another version (format 2")
            && err.contains("rebuild it with: diversity-gpu precompute"),
        "{err}"
    );
    // precompute rebuilds it, into a generation, and removes the old format's files.
    let o = precompute(&cache, &["--top-k", "3"]);
    assert!(stderr(&o).contains("rebuilding the cache"), "{}", stderr(&o));
    assert!(export(&cache).status.success());
    for f in ["vectors.bin", "similar.bin", "different.bin"] {
        assert!(!cache.join(f).exists(), "{f} of the old format was left");
        assert!(cache_file(&cache, f).exists());
    }
}

/// The previous cache (top-k 5) of a synthetic corpus slow enough to
/// interrupt, its files and export, and the arguments of a rebuild with
/// other parameters (full orderings) with its reference cache.
struct Rebuild {
    cache: PathBuf,
    before: std::collections::BTreeMap<String, Vec<u8>>,
    old_export: Vec<u8>,
    args: Vec<String>,
    reference: PathBuf,
}

fn rebuild_setup(dir: &Path, seed: u64) -> Rebuild {
    let corpus = dir.join("c.jsonl");
    synthetic(&corpus, 2000, 32, seed);
    let cache = dir.join("cache");
    let old_args = [
        slow_precompute_args(&corpus, &cache),
        vec!["--top-k".into(), "5".into()],
    ]
    .concat();
    let o = bin().args(&old_args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let reference = dir.join("reference");
    let o = bin().args(slow_precompute_args(&corpus, &reference)).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    Rebuild {
        before: cache_snapshot(&cache),
        old_export: export(&cache).stdout,
        args: slow_precompute_args(&corpus, &cache),
        reference,
        cache,
    }
}

impl Rebuild {
    /// The previous cache is there, byte for byte, and every reader takes it.
    fn assert_previous_cache_intact(&self, when: &str) {
        let now = cache_snapshot(&self.cache);
        for (name, bytes) in &self.before {
            assert!(
                now.get(name) == Some(bytes),
                "{when}: {name} of the previous cache changed or went"
            );
        }
        let e = export(&self.cache);
        assert!(e.status.success(), "{when}: {}", stderr(&e));
        assert!(e.stdout == self.old_export, "{when}: the export changed");
        let c = self.cache.to_str().unwrap();
        let v = run(&["verify", "--cache", c, "--sample", "2"]);
        assert!(v.status.success(), "{when}: {}", stderr(&v));
    }

    fn switched(&self) -> bool {
        std::fs::read(self.cache.join("manifest.json")).unwrap() != self.before["manifest.json"]
    }

    /// The rebuild, run to its end, gives the reference cache; one generation is left.
    fn assert_completes(&self) {
        let o = bin().args(&self.args).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same_files(
            &self.reference,
            &self.cache,
            &["similar.bin", "different.bin", "vectors.bin"],
        );
        ok(&["verify", "--cache", self.cache.to_str().unwrap(), "--sample", "3"]);
        let gens = std::fs::read_dir(&self.cache)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("gen-"))
            .count();
        assert_eq!(gens, 1, "the old generations are removed after the switch");
    }
}

#[cfg(unix)]
#[test]
fn a_rebuild_killed_at_random_moments_leaves_the_previous_cache_readable_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let r = rebuild_setup(dir.path(), 21);
    let (mut rng, mut delays) = (test_rng(), Vec::new());
    for _ in 0..5 {
        let delay = 30 + rng.u64(..1500);
        delays.push(delay);
        let mut child = bin().args(&r.args).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if r.switched() {
            // Killed after the switch: the new cache is complete.
            assert_same_files(&r.reference, &r.cache, &["similar.bin", "different.bin", "vectors.bin"]);
            break;
        }
        r.assert_previous_cache_intact(&format!("killed after {delay} ms (delays {delays:?})"));
    }
    r.assert_completes();
    // The last moment before the switch, whatever the random kills hit:
    // every file of the new generation written, renamed and synced, the
    // manifest not yet replaced.
    let held = dir.path().join("held");
    std::fs::create_dir(&held).unwrap();
    let r = rebuild_setup(&held, 23);
    let mut cmd = bin();
    cmd.args(&r.args);
    let mut child = spawn_paused(cmd, "cache:before-commit");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!r.switched(), "the held rebuild switched");
    r.assert_previous_cache_intact("killed just before the switch");
    r.assert_completes();
}

/// A rebuild that fails on a full disk (a file size limit, RLIMIT_FSIZE,
/// with SIGXFSZ ignored so that writes fail with EFBIG as on a full disk).
#[cfg(unix)]
#[test]
fn a_rebuild_failing_on_a_full_disk_leaves_the_previous_cache_readable() {
    let dir = tempfile::tempdir().unwrap();
    let r = rebuild_setup(dir.path(), 22);
    // 2,000 blocks (1 or 2 MB): the previous cache's files fit, the rebuild's 8 MB orderings do not.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2000; exec \"$@\"")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_diversity-gpu"))
        .args(&r.args)
        .output()
        .unwrap();
    assert!(!o.status.success(), "the rebuild fitted under the limit");
    assert!(stderr(&o).contains("File too large"), "{}", stderr(&o));
    r.assert_previous_cache_intact("after a failed rebuild");
    r.assert_completes();
}

/// A reader opening the cache while a precompute switches generations
/// reads one whole generation: paused after reading the manifest, it finds
/// the old generation gone and reads the new one; paused after checking
/// the files, it keeps the bytes it checked.
#[test]
fn a_reader_during_a_generation_switch_never_mixes_two_caches() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    precompute(&cache, &["--top-k", "5"]);
    let old = export(&cache).stdout;
    let newer = dir.path().join("newer");
    precompute(&newer, &["--top-k", "9"]);
    let new = export(&newer).stdout;
    assert_ne!(old, new);
    let c = cache.to_str().unwrap();
    let reader = |args: &[&str]| {
        let mut cmd = bin();
        cmd.args(args);
        cmd
    };
    let o = run_paused(reader(&["export", "--cache", c]), "cache-open:manifest-read", || {
        let gen = data_dir(&cache);
        precompute(&cache, &["--top-k", "9"]);
        assert!(!gen.exists(), "the old generation is removed after the switch");
    });
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("changed while it was read"), "{}", stderr(&o));
    assert!(o.stdout == new, "the reader mixed two generations");
    // Paused after its checks: the switch back does not reach it.
    let o = run_paused(reader(&["export", "--cache", c]), "cache-open:verified", || {
        precompute(&cache, &["--top-k", "5"]);
    });
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == new, "the reader used bytes it had not checked");
    let poems = corpus("poems.json");
    let render = |from: &Path, site: &Path| {
        let args = [
            "render",
            "--cache",
            path_str(from),
            "--poems",
            path_str(&poems),
            "--out",
            path_str(site),
        ];
        args.map(str::to_owned)
    };
    // The site of each cache alone, by its page hashes (lines in any order).
    let pages = |site: &Path| {
        let text = std::fs::read_to_string(site.join(".pages.b3")).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        lines.sort();
        lines
    };
    let older = dir.path().join("older");
    precompute(&older, &["--top-k", "5"]);
    let (site5, site9) = (dir.path().join("site5"), dir.path().join("site9"));
    assert!(bin().args(render(&older, &site5)).output().unwrap().status.success());
    assert!(bin().args(render(&newer, &site9)).output().unwrap().status.success());
    assert_ne!(pages(&site5), pages(&site9));
    // The cache holds --top-k 5 here; each verify switches it to 9 and each
    // render back to 5: held after reading the manifest, render reads the
    // new generation (5); held after its checks, the one it checked (9).
    for (point, expected) in [("cache-open:manifest-read", &site5), ("cache-open:verified", &site9)] {
        let o = run_paused(reader(&["verify", "--cache", c, "--sample", "5"]), point, || {
            precompute(&cache, &["--top-k", "9"]);
        });
        assert!(o.status.success(), "verify paused at {point}: {}", stderr(&o));
        let site = dir.path().join(point.replace(':', "-"));
        let o = run_paused(
            reader(&render(&cache, &site).each_ref().map(String::as_str)),
            point,
            || {
                precompute(&cache, &["--top-k", "5"]);
            },
        );
        assert!(o.status.success(), "render paused at {point}: {}", stderr(&o));
        assert!(
            pages(&site) == pages(expected),
            "render paused at {point} mixed two caches"
        );
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A folder holding the user's own files, some with a cache's names, is
/// refused by precompute and merge before any work, naming them; nothing
/// in it is changed.
#[test]
fn precompute_and_merge_refuse_a_foreign_folder_naming_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let mine = dir.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("manifest.json"), "{\"title\": \"my book\"}").unwrap();
    std::fs::write(mine.join("progress.log"), "chapter 1 drafted\n").unwrap();
    std::fs::write(mine.join("themes-2024.bin"), [1u8, 2, 3]).unwrap();
    let before = cache_snapshot(&mine);
    let check = |o: &std::process::Output, what: &str| {
        assert!(!o.status.success(), "{what} wrote into a foreign folder");
        let err = stderr(o);
        assert!(
            err.contains("is not a cache")
                && ["manifest.json", "progress.log", "themes-2024.bin"]
                    .iter()
                    .all(|f| err.contains(f)),
            "{what}: {err}"
        );
        assert_eq!(cache_snapshot(&mine), before, "{what} changed the folder");
        assert!(!mine.join("lock").exists(), "{what} left a lock");
    };
    check(&try_precompute(&mine, &["--top-k", "4"]), "precompute");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    precompute(&a, &["--top-k", "4", "--shard", "0/2"]);
    precompute(&b, &["--top-k", "4", "--shard", "1/2"]);
    let merge = run(&[
        "merge",
        "--out",
        mine.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    check(&merge, "merge");
    // An empty folder and an existing cache are written as before.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    precompute(&empty, &["--top-k", "4"]);
    precompute(&empty, &["--top-k", "6"]);
    ok(&[
        "merge",
        "--out",
        empty.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
}

/// Shards carry the same hashes: a flipped byte in a shard is refused by
/// `merge`, naming the file, and the merged cache is sealed like any other.
#[test]
fn a_damaged_shard_is_refused_by_merge_and_the_merged_cache_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, merged) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("m"));
    precompute(&a, &["--top-k", "7", "--shard", "0/2"]);
    precompute(&b, &["--top-k", "7", "--shard", "1/2"]);
    let path = cache_file(&b, "different.bin");
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[5] ^= 0x01;
    std::fs::write(&path, &bad).unwrap();
    let (a_s, b_s, m_s) = (a.to_str().unwrap(), b.to_str().unwrap(), merged.to_str().unwrap());
    let o = run(&["merge", "--out", m_s, a_s, b_s]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("different.bin does not match its blake3"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&path, &good).unwrap();
    ok(&["merge", "--out", m_s, a_s, b_s]);
    ok(&["verify", "--cache", m_s, "--sample", "3"]);
    let path = cache_file(&merged, "similar.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let err = stderr(&export(&merged));
    assert!(err.contains("similar.bin does not match its blake3"), "{err}");
}
