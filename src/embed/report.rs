//! What `embed` prints when it ends, and its exit status.

use std::path::Path;

use super::run::{Stop, Summary};
use crate::plural::count;
use crate::plural::thousands;

/// Prints the run's outcome on stderr; returns the exit status: 0 done,
/// 1 stopped (configuration, gave up, `--fail-fast`), 2 some poems
/// failed, 130 interrupted.
pub fn print(s: &Summary, out: &Path) -> u8 {
    if let Some(Stop::Config(m)) = &s.stopped {
        eprintln!("error: {m}");
        return 1;
    }
    let pending = s.poems - s.embedded - s.journaled - s.failures.len();
    let work = match s.truncated {
        Some(_) => format!(
            "{} in process",
            count(s.texts_embedded, "text embedded", "texts embedded")
        ),
        None => format!(
            "{} ({} sent, {})",
            count(s.requests, "request", "requests"),
            count(s.texts_sent, "text", "texts"),
            count(s.retries, "retry", "retries")
        ),
    };
    eprintln!(
        "{}: {} embedded, {} from the journal, {} failed, {} not done; {work} in {:.1} s, {:.1} texts/s embedded; model {}, dimension {}{}",
        count(s.poems, "poem", "poems"),
        thousands(s.embedded),
        thousands(s.journaled),
        thousands(s.failures.len()),
        thousands(pending),
        s.seconds,
        s.texts_embedded as f64 / s.seconds.max(1e-9),
        s.model,
        s.dimension,
        s.tokens.map(|t| format!(", {t} tokens")).unwrap_or_default()
    );
    print_splits(s);
    for (kind, n) in s.failures_by_kind() {
        eprintln!("  failed ({kind}): {n}");
    }
    for (k, f) in s.failures.iter().take(10) {
        eprintln!("  {k}: {f}");
    }
    eprintln!("timing:");
    for (phase, secs) in &s.timings {
        eprintln!("  {phase:<22} {secs:>9.3} s");
    }
    if s.wrote {
        eprintln!("wrote {}", out.display());
    } else {
        eprintln!("nothing was embedded: {} not written", out.display());
    }
    let resume = match s.wrote {
        true => format!(
            "finished embeddings are saved in {}; run the same command to resume",
            out.display()
        ),
        false => "nothing was saved; run the same command again once it can work".to_owned(),
    };
    match &s.stopped {
        Some(Stop::Interrupted) => {
            eprintln!("interrupted; {resume}");
            130
        }
        Some(Stop::GaveUp(m)) => {
            eprintln!("error: {m}; {resume}");
            1
        }
        Some(Stop::FailFast(m)) => {
            eprintln!("error: stopped at the first failure (--fail-fast): {m}; {resume}");
            1
        }
        Some(Stop::Config(_)) => unreachable!("returned above"),
        None if !s.failures.is_empty() => 2,
        None => 0,
    }
}

fn print_splits(s: &Summary) {
    if let Some(t) = s.truncated {
        let w = s.window.unwrap_or(0);
        if s.split_poems > 0 {
            eprintln!(
                "split {} longer than {} into {} in all (--split-long)",
                count(s.split_poems, "poem", "poems"),
                count(s.max_chars, "character", "characters"),
                count(s.pieces, "text", "texts")
            );
        }
        if t > 0 {
            eprintln!(
                "{} longer than the model's window of {} and truncated to it, as sentence-transformers does (--split-long embeds them in pieces instead)",
                count(t, "text was", "texts were"),
                count(w, "token", "tokens")
            );
        }
        return;
    }
    let window = match s.window {
        Some(w) => format!("the model's window of {w} tokens"),
        None => "the window of a small model (the server does not tell its window)".into(),
    };
    eprintln!(
        "split {} longer than {} into {} in all; {} longer than {window} surely holds and may have been truncated by the server",
        count(s.split_poems, "poem", "poems"),
        count(s.max_chars, "character", "characters"),
        count(s.pieces, "text", "texts"),
        count(s.maybe_truncated, "text is", "texts are")
    );
}
