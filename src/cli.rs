//! The command line: argument definitions and dispatch to the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::gpu::GpuOptions;
use crate::precompute::BackendChoice;

/// Exact similar/different orderings of a poem corpus on the GPU or CPU, and
/// the static site that shows them.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Hide progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute every poem's similar and different orderings into a cache.
    Precompute(PrecomputeArgs),
    /// Write a cache's orderings as JSON Lines, by key.
    Export {
        #[arg(long)]
        cache: PathBuf,
        /// Output file (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Recompute random starts with the CPU reference and compare with a cache.
    Verify {
        #[arg(long)]
        cache: PathBuf,
        /// How many starts to check.
        #[arg(long, default_value_t = 20)]
        sample: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// List GPU adapters with the limits that matter here.
    Adapters,
    /// Write the static site from a cache (no GPU needed).
    Render(RenderArgs),
    /// Precompute (auto backend), then render: the whole job in one command.
    Build(BuildArgs),
    /// Embed the poems through an Ollama or OpenAI-compatible server.
    Embed(EmbedArgs),
    /// Measure throughput, side by side in one run.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

/// URL forms for `embed --url` (the endpoint path is appended unless the
/// URL already ends in it; a query stays at the end).
const EMBED_URLS: &str = "URL forms (--url is a base URL; /embeddings or /api/embed is appended unless already there):
  OpenAI             --api openai --url https://api.openai.com/v1
  Ollama             --api ollama --url http://localhost:11434     (POST /api/embed)
  Ollama, OpenAI API --api openai --url http://localhost:11434/v1  (POST /v1/embeddings)
  infinity           --api openai --url http://localhost:7997      (or .../v1 with --url-prefix /v1)
  llama.cpp server   --api openai --url http://localhost:8080/v1
  vLLM               --api openai --url http://localhost:8000/v1
  TEI                --api openai --url http://localhost:8080/v1
  any endpoint as is --api openai --url http://host/some/path/embeddings";

#[derive(Debug, Clone, Args)]
#[command(after_help = EMBED_URLS)]
pub struct EmbedArgs {
    /// poems.json (original layout) or .jsonl.
    #[arg(long)]
    pub poems: PathBuf,
    /// Output embeddings.json (original layout); its journal is <out>.journal.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Base URL: e.g. http://localhost:11434 (Ollama) or http://localhost:8080/v1 (OpenAI-compatible); see below.
    #[arg(long)]
    pub url: String,
    #[arg(long, value_enum, default_value_t = crate::embed::Api::Ollama)]
    pub api: crate::embed::Api,
    /// Model name, e.g. all-minilm or nomic-embed-text.
    #[arg(long)]
    pub model: String,
    /// Texts per request.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub batch_size: u16,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, env = "DIVERSITY_EMBED_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Prepended to every text (some models want e.g. "search_document: ").
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Longer texts are split and their pieces' vectors averaged [default: from the model's window where the server tells it, else 750].
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=10_000_000))]
    pub max_chars: Option<u32>,
    /// Seconds per request.
    #[arg(long, default_value = "60", value_parser = crate::embed::flags::timeout)]
    pub timeout: std::time::Duration,
    /// Retries per request for 429, 5xx, timeouts and connection errors.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=30))]
    pub retries: u32,
    /// Longest single wait between retries, in seconds (caps Retry-After too).
    #[arg(long, default_value = "30", value_parser = crate::embed::flags::max_wait)]
    pub max_wait: std::time::Duration,
    /// Give up when no request has succeeded for this many seconds.
    #[arg(long, default_value = "45", value_parser = crate::embed::flags::give_up_after)]
    pub give_up_after: std::time::Duration,
    /// Stop at the first text that cannot be embedded.
    #[arg(long)]
    pub fail_fast: bool,
    /// Bearer token (for OpenAI-compatible servers, OPENAI_API_KEY is read too).
    #[arg(long, env = "DIVERSITY_EMBED_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Seconds between checkpoints of the output file.
    #[arg(long, default_value = "5", value_parser = crate::embed::flags::flush_every)]
    pub flush_every: std::time::Duration,
    /// Base of the retry backoff, in seconds.
    #[arg(long, default_value = "0.5", hide = true, value_parser = crate::embed::flags::backoff)]
    pub backoff: std::time::Duration,
}

impl EmbedArgs {
    fn options(self, progress: bool) -> crate::embed::Options {
        let token = self.token.or_else(|| {
            (self.api == crate::embed::Api::Openai)
                .then(|| std::env::var("OPENAI_API_KEY").ok())
                .flatten()
        });
        crate::embed::Options {
            poems: self.poems,
            out: self.out,
            url: self.url,
            api: self.api,
            model: self.model,
            batch_size: self.batch_size.into(),
            concurrency: self.concurrency.into(),
            prefix: self.prefix,
            max_chars: self.max_chars.map(|m| m as usize),
            timeout: self.timeout,
            policy: crate::embed::Policy {
                retries: self.retries,
                backoff: self.backoff,
                max_wait: self.max_wait,
                give_up_after: self.give_up_after,
            },
            fail_fast: self.fail_fast,
            token,
            progress,
            flush_every: self.flush_every,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Every benchmark, each in its own process.
    All {
        /// Include the GPU backend (whatever adapter is found).
        #[arg(long)]
        gpu: bool,
    },
    /// The ordering engine: naive, reference, fused CPU (1 and N threads), GPU.
    Engine {
        #[command(flatten)]
        corpus: BenchCorpus,
        #[arg(long)]
        threads: Option<usize>,
        /// Full-length walks per thread for the fused CPU backend.
        #[arg(long, default_value_t = 4)]
        starts_per_thread: usize,
        /// Also run the GPU backend.
        #[arg(long)]
        gpu: bool,
        /// Starts for the GPU run.
        #[arg(long, default_value_t = 256)]
        gpu_starts: usize,
        /// Steps per start for the GPU run (default: full length; 64 on a software adapter).
        #[arg(long)]
        gpu_steps: Option<usize>,
        #[command(flatten)]
        gpu_args: GpuArgs,
    },
    /// render: pages/s and MB/s beside the disk's bound.
    Render {
        #[command(flatten)]
        corpus: BenchCorpus,
        #[arg(long)]
        threads: Option<usize>,
        #[arg(long, default_value_t = 100)]
        per_page: usize,
        /// Pages per ordering (top-k = per-page × pages).
        #[arg(long, default_value_t = 1)]
        pages: usize,
        /// Scratch directory (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// The corpus a benchmark reads (default: ../shared/corpora/fortunes when
/// present, else the bundled corpus).
#[derive(Debug, Clone, Args)]
pub struct BenchCorpus {
    #[arg(long)]
    pub poems: Option<PathBuf>,
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
}

impl BenchCorpus {
    fn paths(&self) -> (PathBuf, PathBuf) {
        let (p, e) = crate::bench::default_corpus();
        (self.poems.clone().unwrap_or(p), self.embeddings.clone().unwrap_or(e))
    }
}

fn bundled(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/corpus")
        .join(name)
}

/// Options shared by `render` and `build`.
#[derive(Debug, Clone, Args)]
pub struct SiteArgs {
    /// Poems per page.
    #[arg(long, default_value_t = 100)]
    pub per_page: usize,
    /// At most this many pages per ordering.
    #[arg(long)]
    pub max_pages: Option<usize>,
    /// Largest site size (e.g. 2GB, 500MiB); picks the page cap that fits.
    #[arg(long)]
    pub budget: Option<bytesize::ByteSize>,
    /// Also write plain-text twins of every page.
    #[arg(long)]
    pub txt: bool,
    /// poem_colors.json: {"poem_colors": {key: {"color": "#hex"}}}.
    #[arg(long)]
    pub colors: Option<PathBuf>,
    /// Print the projected size and stop.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    #[arg(long)]
    pub cache: PathBuf,
    /// The poems file the cache was computed from.
    #[arg(long)]
    pub poems: PathBuf,
    /// Site directory.
    #[arg(long)]
    pub out: PathBuf,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Poems (default: the bundled corpus).
    #[arg(long, default_value_os_t = bundled("poems.json"))]
    pub poems: PathBuf,
    /// Embeddings (default: the bundled corpus's).
    #[arg(long, default_value_os_t = bundled("embeddings.json"))]
    pub embeddings: PathBuf,
    /// Cache directory.
    #[arg(long, default_value = "cache")]
    pub cache: PathBuf,
    /// Site directory.
    #[arg(long, default_value = "site")]
    pub out: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub site: SiteArgs,
}

fn render_options(
    cache: PathBuf,
    poems: PathBuf,
    out: PathBuf,
    threads: Option<usize>,
    site: &SiteArgs,
    progress: bool,
) -> crate::render::Options {
    crate::render::Options {
        cache,
        poems,
        out,
        per_page: site.per_page,
        max_pages: site.max_pages,
        budget: site.budget.map(|b| b.as_u64()),
        txt: site.txt,
        colors: site.colors.clone(),
        threads,
        progress,
        dry_run: site.dry_run,
    }
}

fn report_render(s: &crate::render::Summary, out: &std::path::Path) -> Result<()> {
    print_timings("render timing:", &s.timings);
    if s.pages > 0 {
        eprintln!(
            "{} pages ({}) in {}: {} written, {} unchanged, {} removed",
            s.pages,
            bytesize::ByteSize(s.bytes),
            out.display(),
            s.written,
            s.unchanged,
            s.removed
        );
    }
    if !s.failures.is_empty() {
        for f in s.failures.iter().take(20) {
            eprintln!("failed: {f}");
        }
        bail!(
            "{} pages could not be written (first: {})",
            s.failures.len(),
            s.failures[0]
        );
    }
    Ok(())
}

/// Options shared by commands that run a GPU.
#[derive(Debug, Clone, Args)]
pub struct GpuArgs {
    /// Select an adapter by (case-insensitive) substring of its name.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Use the shared-memory reduction even where subgroups are available.
    #[arg(long)]
    pub no_subgroups: bool,
    /// Keep the walk's running sums in a storage buffer even where they fit in workgroup memory.
    #[arg(long)]
    pub storage_sums: bool,
    /// Split the similarity matrix into tiles of this many rows.
    #[arg(long, hide = true)]
    pub tile_rows: Option<usize>,
    /// Starts per GPU batch.
    #[arg(long, hide = true)]
    pub gpu_batch: Option<usize>,
    /// Walk steps per GPU dispatch.
    #[arg(long, hide = true)]
    pub steps_per_dispatch: Option<u32>,
}

impl GpuArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            adapter: self.adapter.clone(),
            allow_software: false,
            no_subgroups: self.no_subgroups,
            storage_sums: self.storage_sums,
            tile_rows: self.tile_rows,
            batch: self.gpu_batch,
            steps_per_dispatch: self.steps_per_dispatch,
        }
    }
}

/// How the orderings are computed (shared by `precompute` and `build`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Keep only the first K entries of each ordering.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Treat any unusable embedding or stray entry as an error.
    #[arg(long)]
    pub strict: bool,
    /// File of keys to leave out everywhere, one per line.
    #[arg(long)]
    pub exclude: Option<PathBuf>,
    /// Subtract the corpus mean before normalising (fewer "hub" poems).
    #[arg(long)]
    pub center: bool,
    /// Starts per checkpoint (and per GPU batch: enough workgroups to fill a large GPU).
    #[arg(long, default_value_t = 1024)]
    pub chunk: usize,
    /// Stop after computing this many chunks (for testing resumption).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    #[command(flatten)]
    pub gpu: GpuArgs,
}

impl EngineArgs {
    /// Precompute options for these inputs.
    pub fn options(
        &self,
        poems: PathBuf,
        embeddings: Option<PathBuf>,
        out: PathBuf,
        progress: bool,
    ) -> crate::precompute::Options {
        crate::precompute::Options {
            poems,
            embeddings,
            out,
            backend: self.backend,
            top_k: self.top_k,
            threads: self.threads,
            strict: self.strict,
            exclude: self.exclude.clone(),
            center: self.center,
            chunk: self.chunk,
            gpu: self.gpu.options(),
            progress,
            stop_after: self.stop_after,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct PrecomputeArgs {
    /// poems.json (original layout) or a .jsonl corpus.
    #[arg(long)]
    pub poems: PathBuf,
    /// embeddings.json (original layout) or .jsonl; omit when the poems file carries vectors.
    #[arg(long)]
    pub embeddings: Option<PathBuf>,
    /// Cache directory.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs the CLI; errors are printed with their causes.
pub fn main(cli: Cli) -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn progress(cli_quiet: bool) -> bool {
    !cli_quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

/// Prints a phase → seconds table.
pub fn print_timings(title: &str, timings: &std::collections::BTreeMap<String, f64>) {
    let total: f64 = ["load", "normalise", "similarity", "selection", "similar", "write"]
        .iter()
        .filter_map(|k| timings.get(*k))
        .sum();
    eprintln!("{title}");
    for (k, v) in timings {
        eprintln!("  {k:<22} {v:>9.3} s");
    }
    eprintln!("  {:<22} {total:>9.3} s", "total");
}

fn run(cli: Cli) -> Result<ExitCode> {
    let show = progress(cli.quiet);
    crate::interrupt::install();
    match cli.command {
        Command::Precompute(args) => {
            let outcome =
                crate::precompute::run(&args.engine.options(args.poems, args.embeddings, args.out.clone(), show))?;
            match outcome.manifest {
                Some(m) if outcome.up_to_date => {
                    eprintln!(
                        "{} is up to date ({} poems, backend {}); nothing to do",
                        args.out.display(),
                        m.included,
                        m.backend
                    );
                }
                Some(m) => {
                    eprintln!(
                        "wrote {} orderings of {} entries for {} poems ({} left out) with {}",
                        2 * m.included,
                        m.params.width,
                        m.included,
                        m.report.unusable.len() + m.report.excluded.len(),
                        m.backend
                    );
                    print_timings("timing:", &m.timings);
                }
                None => {
                    eprintln!(
                        "stopped after {} chunks; finished chunks are saved, run the same command again to resume",
                        outcome.chunks_computed
                    );
                    return Ok(ExitCode::from(if crate::interrupt::requested() { 130 } else { 3 }));
                }
            }
        }
        Command::Export { cache, out } => {
            let c = crate::cache::Cache::open(&cache)?;
            match out {
                Some(path) => {
                    let tmp = crate::cache::temp_file_beside(&path)?;
                    let mut w = std::io::BufWriter::new(tmp);
                    crate::export::export(&c, &mut w)?;
                    let tmp = w.into_inner().map_err(|e| e.into_error())?;
                    tmp.persist(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = std::io::BufWriter::new(stdout.lock());
                    if let Err(e) = crate::export::export(&c, &mut w) {
                        // A reader that stops early (`| head`) is not an error.
                        let closed = e.chain().any(|c| {
                            c.downcast_ref::<std::io::Error>()
                                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                                || c.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind())
                                    == Some(std::io::ErrorKind::BrokenPipe)
                        });
                        if !closed {
                            return Err(e);
                        }
                    }
                }
            }
        }
        Command::Verify { cache, sample, seed } => {
            let v = crate::precompute::verify(&cache, sample, seed)?;
            if !v.mismatches.is_empty() {
                for m in &v.mismatches {
                    eprintln!("mismatch: {m}");
                }
                bail!(
                    "{} of {} sampled starts differ from the CPU reference",
                    v.mismatches.len(),
                    v.checked
                );
            }
            eprintln!("{} sampled starts match the CPU reference exactly", v.checked);
        }
        Command::Adapters => {
            let list = crate::gpu::adapters();
            let mut out = std::io::stdout().lock();
            if list.is_empty() {
                writeln!(
                    out,
                    "no GPU adapters found (on Debian, `apt-get install mesa-vulkan-drivers` adds lavapipe)"
                )?;
            }
            for a in list {
                writeln!(
                    out,
                    "{}\n  type {}  backend {}  driver {}\n  max storage binding {} MiB  max buffer {} MiB  workgroup storage {} KiB\n  subgroups {}  (sizes {}..{})  timestamps {}",
                    a.name,
                    a.device_type,
                    a.backend,
                    a.driver,
                    a.max_binding >> 20,
                    a.max_buffer >> 20,
                    a.max_workgroup_storage >> 10,
                    a.subgroups,
                    a.subgroup_sizes.0,
                    a.subgroup_sizes.1,
                    a.timestamps
                )?;
            }
        }
        Command::Render(a) => {
            let s = crate::render::render(&render_options(
                a.cache,
                a.poems,
                a.out.clone(),
                a.threads,
                &a.site,
                show,
            ))?;
            report_render(&s, &a.out)?;
        }
        Command::Build(a) => {
            let pre = a
                .engine
                .options(a.poems.clone(), Some(a.embeddings.clone()), a.cache.clone(), show);
            let outcome = crate::precompute::run(&pre)?;
            if let Some(m) = &outcome.manifest {
                if outcome.up_to_date {
                    eprintln!("cache {} is up to date", a.cache.display());
                } else {
                    eprintln!("precomputed {} poems with {}", m.included, m.backend);
                    print_timings("precompute timing:", &m.timings);
                }
            }
            let s = crate::render::render(&render_options(
                a.cache,
                a.poems,
                a.out.clone(),
                a.engine.threads,
                &a.site,
                show,
            ))?;
            report_render(&s, &a.out)?;
            eprintln!("open {}", a.out.join("index.html").display());
        }
        Command::Bench { what } => bench(what)?,
        Command::Embed(a) => {
            let out = a.out.clone();
            let s = crate::embed::run(&a.options(show))?;
            return Ok(ExitCode::from(crate::embed::report::print(&s, &out)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn bench(what: BenchCommand) -> Result<()> {
    match what {
        BenchCommand::All { gpu } => {
            let exe = std::env::current_exe()?;
            let mut parts: Vec<Vec<&str>> = vec![vec!["bench", "engine"], vec!["bench", "render"]];
            if gpu {
                parts[0].push("--gpu");
            }
            for args in parts {
                let status = std::process::Command::new(&exe).args(&args).status()?;
                if !status.success() {
                    bail!("`{}` failed", args.join(" "));
                }
            }
        }
        BenchCommand::Engine {
            corpus,
            threads,
            starts_per_thread,
            gpu,
            gpu_starts,
            gpu_steps,
            gpu_args,
        } => {
            let (poems, embeddings) = corpus.paths();
            crate::bench::engine(&crate::bench::EngineOptions {
                poems,
                embeddings,
                threads,
                starts_per_thread,
                gpu,
                gpu_starts,
                gpu_steps,
                gpu_opts: gpu_args.options(),
            })?;
        }
        BenchCommand::Render {
            corpus,
            threads,
            per_page,
            pages,
            dir,
        } => {
            let (poems, embeddings) = corpus.paths();
            crate::bench::render(&crate::bench::RenderOptions {
                poems,
                embeddings,
                threads,
                per_page,
                pages,
                dir,
            })?;
        }
    }
    Ok(())
}
