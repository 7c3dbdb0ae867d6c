//! `diversity-bench render`: pages/s and MB/s of `render`, beside writing
//! the same count and bytes as plain files (the disk's bound), in one run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::{peak_rss, product, scratch};

/// Options of the render benchmark.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    pub poems: PathBuf,
    pub embeddings: PathBuf,
    pub threads: Option<usize>,
    pub per_page: usize,
    pub pages: usize,
    pub dir: Option<PathBuf>,
}

/// Precomputes the benchmark's cache in a child process (the product,
/// `diversity-gpu precompute`), so the peak memory measured afterwards is
/// render's own.
fn precompute_for_render(o: &RenderOptions, cache: &Path, top_k: usize) -> Result<()> {
    let mut cmd = std::process::Command::new(product()?);
    cmd.args([
        "--quiet",
        "precompute",
        "--backend",
        "cpu",
        "--top-k",
        &top_k.to_string(),
    ])
    .arg("--poems")
    .arg(&o.poems)
    .arg("--embeddings")
    .arg(&o.embeddings)
    .arg("--out")
    .arg(cache)
    .env("RUST_LOG", "error");
    if let Some(t) = o.threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    let status = cmd.status().context("cannot run precompute")?;
    anyhow::ensure!(status.success(), "precompute for the render benchmark failed");
    Ok(())
}

/// Prints render's rate beside the disk's bound (plain writes before and after).
fn print_render(
    o: &RenderOptions,
    s: &diversity_gpu::render::Summary,
    secs: f64,
    (first, second): (f64, f64),
    threads: usize,
) {
    let poems = s.poems_with_orderings;
    println!(
        "render benchmark: {} ({poems} poems, {} pages of {} entries, {threads} threads)",
        o.poems.display(),
        s.pages,
        o.per_page
    );
    println!(
        "  render        {:>8.3} s  {:>9.0} pages/s  {:>8.1} MB/s  ({} MB)",
        secs,
        s.pages as f64 / secs,
        s.bytes as f64 / 1e6 / secs,
        s.bytes / 1_000_000
    );
    let bound = (first + second) / 2.0;
    println!(
        "  plain writes  {:>8.3} s  {:>9.0} files/s  {:>8.1} MB/s  (same count and bytes; before {first:.3} s, after {second:.3} s: the disk's bound)",
        bound,
        s.pages as f64 / bound,
        s.bytes as f64 / 1e6 / bound,
    );
    println!("  render / bound: {:.2}×", secs / bound);
    let per_thread = poems as f64 / secs / threads as f64;
    println!(
        "  {:.0} poems/s per thread (old system: 81): {:.0}×",
        per_thread,
        per_thread / 81.0
    );
}

/// Pages/s and MB/s of `render`, beside writing the same bytes as plain files.
pub fn render(o: &RenderOptions) -> Result<()> {
    let tmp = scratch(o.dir.as_deref())?;
    let cache = tmp.path().join("cache");
    let top_k = o.per_page * o.pages;
    precompute_for_render(o, &cache, top_k)?;
    let site = tmp.path().join("site");
    // Each timed phase starts with no dirty pages from the one before, and
    // the disk's bound (the same count and bytes as plain files) is taken
    // before and after the render, since this disk's speed drifts.
    let settle = || {
        let _ = std::process::Command::new("sync").status();
    };
    let pool = diversity_gpu::progress::pool(o.threads)?;
    let plain = |round: usize, pages: usize, bytes: u64| -> Result<f64> {
        let dir = tmp.path().join(format!("plain{round}"));
        settle();
        let t = Instant::now();
        diversity_gpu::render::write_plain_files(&dir, pages, (bytes / pages.max(1) as u64) as usize, &pool)?;
        let secs = t.elapsed().as_secs_f64();
        settle();
        std::fs::remove_dir_all(&dir).ok();
        Ok(secs)
    };
    let before = peak_rss().unwrap_or(0);
    let render_opts = diversity_gpu::render::Options {
        cache,
        poems: o.poems.clone(),
        out: site.clone(),
        per_page: Some(o.per_page),
        max_pages: None,
        budget: None,
        txt: false,
        colors: None,
        reverse: false,
        scheme: diversity_gpu::render::Scheme::default(),
        title: None,
        threads: o.threads,
        progress: false,
        dry_run: true,
        wait: false,
        // The benchmark's own scratch folder: no budget.
        all: true,
    };
    // A dry run gives the page count and bytes for the first bound.
    let projected = diversity_gpu::render::render(&render_opts)?;
    let first = plain(0, projected.shape.files, projected.shape.projected_bytes)?;
    settle();
    let t = Instant::now();
    let s = diversity_gpu::render::render(&diversity_gpu::render::Options {
        dry_run: false,
        ..render_opts
    })?;
    let secs = t.elapsed().as_secs_f64();
    let second = plain(1, s.pages, s.bytes)?;
    print_render(o, &s, secs, (first, second), pool.current_num_threads());
    if let Some(p) = peak_rss() {
        println!(
            "  peak RSS {} MiB (before render {} MiB); site {} MiB",
            p >> 20,
            before >> 20,
            s.bytes >> 20
        );
    }
    Ok(())
}
