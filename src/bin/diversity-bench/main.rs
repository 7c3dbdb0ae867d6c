//! `diversity-bench`: throughput figures of diversity-gpu, measured side by
//! side in one run. A second binary, so that the benchmarks are neither in
//! the library nor in the product's `--help`: `engine`, `render`, `scale`
//! (with its sharded row), `corpus` (the synthetic corpus `scale` uses) and
//! `all`. Each part runs in its own process when called through `all`, so
//! that the peak memory it reports is its own; where a benchmark needs the
//! product, it runs the `diversity-gpu` beside this binary.

mod args;
mod engine;
mod render;
mod scale;
mod shards;
mod synthetic;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Parser;

use args::{Cli, Command};

fn main() -> ExitCode {
    // Before any thread starts: it may set an environment variable.
    diversity_gpu::gpu::quiet_headless_vulkan();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::All { gpu } => all(gpu)?,
        Command::Engine(a) => {
            let mut keep = None;
            let (poems, embeddings) = a.corpus.paths(&mut keep)?;
            engine::engine(&engine::EngineOptions {
                poems,
                embeddings,
                threads: a.threads,
                starts_per_thread: a.starts_per_thread,
                gpu: a.gpu,
                gpu_starts: a.gpu_starts,
                gpu_steps: a.gpu_steps,
                gpu_opts: a.gpu_options(),
            })?;
        }
        Command::Render {
            corpus,
            threads,
            per_page,
            pages,
            dir,
        } => {
            let mut keep = None;
            let (poems, embeddings) = corpus.paths(&mut keep)?;
            render::render(&render::RenderOptions {
                poems,
                embeddings,
                threads,
                per_page,
                pages,
                dir,
            })?;
        }
        Command::Scale(a) => match (a.one, a.mode) {
            (Some(n), Some(mode)) => scale::one(&a.options(), n, mode)?,
            _ => scale::scale(&a.options())?,
        },
        Command::Corpus { out, poems, shape } => {
            synthetic::write_jsonl(&out, shape.shape(poems))?;
            eprintln!(
                "wrote {poems} synthetic poems of {} dims to {}",
                shape.dim,
                out.display()
            );
        }
    }
    Ok(())
}

/// Every benchmark with its defaults, each in its own process.
fn all(gpu: bool) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut parts: Vec<Vec<&str>> = vec![vec!["engine"], vec!["render"], vec!["scale"]];
    if gpu {
        parts[0].push("--gpu");
    }
    for args in parts {
        let status = std::process::Command::new(&exe).args(&args).status()?;
        if !status.success() {
            bail!("`diversity-bench {}` failed", args.join(" "));
        }
    }
    Ok(())
}

/// The product, `diversity-gpu`, beside this binary (cargo builds both
/// into the same folder).
pub fn product() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let p = exe.with_file_name(format!("diversity-gpu{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        p.exists(),
        "{} not found beside {}: build both binaries (cargo build --release)",
        p.display(),
        exe.display()
    );
    Ok(p)
}

/// The corpus benchmarks use: the shared fortunes corpus when found under
/// the current folder or the two above it (`shared/corpora/fortunes`), otherwise
/// the bundled one, extracted to a temp folder that `keep` holds.
pub fn default_corpus(keep: &mut Option<diversity_gpu::bundled::Bundled>) -> Result<(PathBuf, PathBuf)> {
    for root in [Path::new("."), Path::new(".."), Path::new("../..")] {
        let shared = root.join("shared/corpora/fortunes");
        if shared.join("poems.json").exists() {
            return Ok((shared.join("poems.json"), shared.join("embeddings.json")));
        }
    }
    let b = keep.insert(diversity_gpu::bundled::Bundled::extract()?);
    Ok((b.poems(), b.embeddings()))
}

/// A scratch directory for a benchmark's files, removed when dropped:
/// inside `dir`, else the system temp dir.
pub fn scratch(dir: Option<&Path>) -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("diversity-bench-")
        .tempdir_in(dir.map_or_else(std::env::temp_dir, Path::to_path_buf))
        .context("cannot create a scratch directory")
}

/// Peak resident memory of this process, from /proc (Linux), in bytes.
pub fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
