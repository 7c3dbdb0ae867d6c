//! Shared by every long stage (precompute, render, embed, bench): the rayon
//! thread pool they run on and the progress bar (rate, ETA) they show.

use anyhow::{Context, Result};

/// Builds the rayon pool used by the CPU stages.
pub fn pool(threads: Option<usize>) -> Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(t) = threads {
        b = b.num_threads(t);
    }
    b.build().context("cannot start the thread pool")
}

/// A progress bar with rate and ETA, or a hidden one.
pub fn progress_bar(show: bool, len: u64, unit: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}  {{elapsed_precise}}"
        ))
        .expect("valid template"),
    );
    bar
}
