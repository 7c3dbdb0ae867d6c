//! A test whose tool is missing (a GPU adapter, the model files, Chromium,
//! prlimit) is skipped out loud, never a silent `ok`: under `CI` it fails;
//! elsewhere it writes `SKIPPED <test>: …` straight to the terminal, where
//! `cargo test` shows it beside the test's `ok` without `--nocapture`.

use std::io::Write;

/// Whether this is a CI run, where a missing tool is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// Fails under CI; otherwise says, uncaptured, that the current test did
/// not check what it is for because `missing` is missing.
pub fn skip(missing: &str) {
    assert!(!in_ci(), "CI requires {missing}");
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    // libtest captures print!/eprint!, not writes to the stderr handle.
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {missing} is missing");
}
