//! The clap argument definitions and their conversion into each stage's
//! options.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::engine::BackendChoice;
use crate::gpu::GpuOptions;

/// Exact similar/different orderings of a poem corpus on the GPU or CPU, and
/// the static site that shows them.
#[derive(Debug, Parser)]
#[command(version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Hide progress bars.
    #[arg(long, global = true, help_heading = OUTPUT)]
    pub quiet: bool,
}

/// Help headings: every command's flags are grouped under these.
const INPUT: &str = "Input";
const OUTPUT: &str = "Output";
const SITE: &str = "Site";
const EMBEDDING: &str = "Embedding";
const SERVER: &str = "Embedding server";
const PERFORMANCE: &str = "Performance";
const GPU: &str = "GPU";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole job in one command: embed the poems if they need it, compute
    /// the orderings (on the GPU if there is one), then write the site.
    Build(Box<BuildArgs>),
    /// Embed the poems in process (a sentence-transformers model), or
    /// through an Ollama or OpenAI-compatible server with --url.
    Embed(EmbedArgs),
    /// Compute every poem's similar and different orderings into a cache.
    Precompute(PrecomputeArgs),
    /// Write the static site from a cache (no GPU needed).
    Render(RenderArgs),
    /// Combine the shard caches of `precompute --shard` into one whole cache.
    Merge {
        /// The folder to write the whole cache into.
        #[arg(long, help_heading = OUTPUT)]
        out: PathBuf,
        /// Every shard's cache folder (a shell glob such as `shards/*` will do).
        #[arg(required = true, help_heading = INPUT)]
        shards: Vec<PathBuf>,
    },
    /// Write a cache's orderings as JSON Lines, by key.
    Export {
        /// The cache folder to read (made by `precompute` or `build`).
        #[arg(long, help_heading = INPUT)]
        cache: PathBuf,
        /// The file to write (default: standard output).
        #[arg(long, help_heading = OUTPUT)]
        out: Option<PathBuf>,
    },
    /// Recompute random starts with the CPU reference and compare with a cache.
    Verify {
        /// The cache folder to check (made by `precompute` or `build`).
        #[arg(long, help_heading = INPUT)]
        cache: PathBuf,
        /// How many poems' orderings to recompute and compare (at least 1;
        /// every ordering is checked for validity whatever the sample).
        #[arg(long, default_value_t = 20, help_heading = "Check", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        sample: usize,
        /// Which poems are sampled: the same number picks the same poems
        /// again, another number picks others.
        #[arg(long, default_value_t = 1, help_heading = "Check")]
        seed: u64,
        /// Memory the check may use (default: what the machine has
        /// available); above it, no matrix is built.
        #[arg(long, help_heading = PERFORMANCE)]
        max_memory: Option<bytesize::ByteSize>,
    },
    /// List GPU adapters with the limits that matter here.
    Adapters,
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

/// Which model embeds the poems: in process (the default), or a server's.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = EMBEDDING)]
pub struct ModelArgs {
    /// Model: a Hugging Face hub name run in process [default: sentence-transformers/all-MiniLM-L6-v2], or the server's model name with --url (e.g. all-minilm).
    #[arg(long, requires = "poems")]
    pub model: Option<String>,
    /// The model's files in the sentence-transformers layout (config.json, tokenizer.json, model.safetensors, 1_Pooling/config.json): no network at all.
    #[arg(long, conflicts_with = "url", requires = "poems")]
    pub model_dir: Option<PathBuf>,
    /// In process: embed texts longer than the model's window in pieces and average them, instead of truncating them as sentence-transformers does.
    #[arg(long, conflicts_with = "url", requires = "poems")]
    pub split_long: bool,
    /// Embed through a server instead: e.g. http://localhost:11434 (Ollama) or http://localhost:8080/v1 (OpenAI-compatible); see `embed --help`.
    #[arg(long, requires = "model", help_heading = SERVER)]
    pub url: Option<String>,
    /// The server's protocol (with --url).
    #[arg(long, value_enum, default_value_t = crate::embed::Api::Ollama, help_heading = SERVER)]
    pub api: crate::embed::Api,
    /// The server's password (a bearer token); for OpenAI-compatible servers, OPENAI_API_KEY is read too.
    #[arg(long, env = "DIVERSITY_EMBED_TOKEN", hide_env_values = true, help_heading = SERVER)]
    pub token: Option<String>,
}

impl ModelArgs {
    /// The model to run in process, loaded (`None` with --url).
    pub fn local(&self, progress: bool) -> anyhow::Result<Option<std::sync::Arc<crate::embed::LocalModel>>> {
        if self.url.is_some() {
            return Ok(None);
        }
        crate::embed::load_model(self.model.as_deref(), self.model_dir.as_deref(), progress)
            .map(|m| Some(std::sync::Arc::new(m)))
    }

    /// The server's token; falls back to `OPENAI_API_KEY` for the OpenAI API.
    fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            (self.api == crate::embed::Api::Openai)
                .then(|| std::env::var("OPENAI_API_KEY").ok())
                .flatten()
        })
    }
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EMBED_URLS)]
pub struct EmbedArgs {
    /// The poems: a folder of .txt/.md files, poems.json or a .jsonl file.
    #[arg(long, help_heading = INPUT)]
    pub poems: PathBuf,
    /// The embeddings file to write (embeddings.json layout); its journal, for resuming, is <out>.journal.jsonl.
    #[arg(long, help_heading = OUTPUT)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Texts per request.
    #[arg(long, help_heading = SERVER, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub batch_size: u16,
    /// Requests in flight at once.
    #[arg(long, help_heading = SERVER, default_value_t = 4, env = "DIVERSITY_EMBED_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Text put before every poem (some models want e.g. "search_document: ").
    #[arg(long, default_value = "", help_heading = EMBEDDING)]
    pub prefix: String,
    /// Longer texts are split and their pieces' vectors averaged [default: from the model's window where the server tells it, else 750].
    #[arg(long, help_heading = EMBEDDING, value_parser = clap::value_parser!(u32).range(10..=10_000_000))]
    pub max_chars: Option<u32>,
    /// Seconds to wait for each request.
    #[arg(long, help_heading = SERVER, default_value = "60", value_parser = crate::embed::flags::timeout)]
    pub timeout: std::time::Duration,
    /// Retries per request when the server is busy or down (HTTP 429, 5xx, timeouts, connection errors).
    #[arg(long, help_heading = SERVER, default_value_t = 6, value_parser = clap::value_parser!(u32).range(0..=30))]
    pub retries: u32,
    /// Longest single wait between retries, in seconds (also when the server asks for longer).
    #[arg(long, help_heading = SERVER, default_value = "30", value_parser = crate::embed::flags::max_wait)]
    pub max_wait: std::time::Duration,
    /// Give up when no request has succeeded for this many seconds.
    #[arg(long, help_heading = SERVER, default_value = "45", value_parser = crate::embed::flags::give_up_after)]
    pub give_up_after: std::time::Duration,
    /// Stop at the first text that cannot be embedded.
    #[arg(long, help_heading = EMBEDDING)]
    pub fail_fast: bool,
    /// Seconds between saves of the output file (what is saved survives Ctrl-C).
    #[arg(long, help_heading = OUTPUT, default_value = "5", value_parser = crate::embed::flags::flush_every)]
    pub flush_every: std::time::Duration,
    /// Base of the retry backoff, in seconds: the first retry waits about this long, each later one twice the one before (at most --max-wait).
    #[arg(long, help_heading = SERVER, default_value = "0.5", value_parser = crate::embed::flags::backoff)]
    pub backoff: std::time::Duration,
}

impl EmbedArgs {
    /// `embed`'s options, with the model run in process unless --url.
    pub fn options(self, progress: bool) -> anyhow::Result<crate::embed::Options> {
        let local = self.model.local(progress)?;
        Ok(self.options_with(local, progress))
    }

    /// `embed`'s options with the model already loaded (`None`: a server).
    pub fn options_with(
        self,
        local: Option<std::sync::Arc<crate::embed::LocalModel>>,
        progress: bool,
    ) -> crate::embed::Options {
        let token = self.model.token();
        crate::embed::Options {
            poems: self.poems,
            out: self.out,
            model: local
                .as_ref()
                .map_or_else(|| self.model.model.clone().unwrap_or_default(), |m| m.name.clone()),
            url: self.model.url.unwrap_or_default(),
            api: self.model.api,
            local,
            split_long: self.model.split_long,
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

    /// Options for embedding `poems` into `out` with defaults for the rest:
    /// the run `build` makes when the poems have no vectors.
    pub fn for_build(poems: PathBuf, out: PathBuf, model: ModelArgs) -> anyhow::Result<EmbedArgs> {
        let flag = |name: &str, p: PathBuf| {
            let mut f = std::ffi::OsString::from(format!("--{name}="));
            f.push(p);
            f
        };
        let argv = ["embed".into(), flag("poems", poems), flag("out", out)];
        let mut a = <EmbedArgsParser as clap::Parser>::try_parse_from(argv)?.args;
        a.model = model;
        Ok(a)
    }
}

/// Parses `embed`'s flags alone, for their defaults.
#[derive(Parser)]
struct EmbedArgsParser {
    #[command(flatten)]
    args: EmbedArgs,
}

/// Options shared by `render` and `build`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = SITE)]
pub struct SiteArgs {
    /// Poems per static page [default: 100, or 50, 20 or 10, the most that fit the budget].
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub per_page: Option<usize>,
    /// At most this many static pages per ordering (every ordering stays whole in its complete list).
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_pages: Option<usize>,
    /// Largest site (e.g. 2GB, 500MiB) [default: 1GB, what free static hosts allow]. The complete lists come first, then as many static pages as fit.
    #[arg(long, conflicts_with = "all")]
    pub budget: Option<bytesize::ByteSize>,
    /// No size limit but the disk: every static page of every ordering.
    #[arg(long)]
    pub all: bool,
    /// The site's title, on the index.
    #[arg(long)]
    pub title: Option<String>,
    /// Also write plain-text twins of every page.
    #[arg(long)]
    pub txt: bool,
    /// Each poem's colour from a file instead of the palette: poem_colors.json, {"poem_colors": {key: {"color": "#hex"}}}.
    #[arg(long)]
    pub colors: Option<PathBuf>,
    /// Show each ordering from its far end (least similar first; the
    /// walk's last poem first).
    #[arg(long)]
    pub reverse: bool,
    /// The pages' colours: dark (light text on a dark background), light,
    /// black (pure black for OLED screens) or auto (follows the reader's system).
    #[arg(long, value_enum, default_value_t = crate::render::Scheme::Dark)]
    pub scheme: crate::render::Scheme,
    /// Print the site's plan (shape and size) and stop: nothing is computed or written.
    #[arg(long)]
    pub dry_run: bool,
    /// A site folder takes one render at a time (it is locked, through
    /// `.pages.lock` in it, while pages are written): wait for another
    /// render of the same folder to finish instead of failing at once.
    #[arg(long, help_heading = OUTPUT)]
    pub wait: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    /// The cache folder to read (made by `precompute`).
    #[arg(long, help_heading = INPUT)]
    pub cache: PathBuf,
    /// The poems the cache was computed from (file or folder).
    #[arg(long, help_heading = INPUT)]
    pub poems: PathBuf,
    /// The folder to write the site into: a new or empty folder, or a site
    /// made earlier (a folder of other files is refused, naming them).
    #[arg(long, help_heading = OUTPUT)]
    pub out: PathBuf,
    /// CPU threads (default: all cores).
    #[arg(long, help_heading = PERFORMANCE)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub site: SiteArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// A folder of .txt/.md poems, poems.json or a .jsonl file (default: the bundled corpus, built into the program).
    #[arg(long, help_heading = INPUT)]
    pub poems: Option<PathBuf>,
    /// Vectors made earlier, e.g. by `diversity-gpu embed` (embeddings.json or .jsonl); leave it out and build embeds the poems itself into <cache>/embeddings.json (in process, or with --url).
    #[arg(long, requires = "poems", help_heading = INPUT)]
    pub embeddings: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// No themes: by default, poems embedded in process get the bundled themes, embedded by the same model.
    #[arg(long, conflicts_with = "themes", help_heading = INPUT)]
    pub no_themes: bool,
    /// The folder for the cache (the computed orderings, kept so a rerun is quick).
    #[arg(long, default_value = "cache", help_heading = OUTPUT)]
    pub cache: PathBuf,
    /// The folder to write the site into: a new or empty folder, or a site
    /// made earlier (a folder of other files is refused, naming them).
    #[arg(long, default_value = "site", help_heading = OUTPUT)]
    pub out: PathBuf,
    // The site's flags before the engine's: a poet needs them first.
    #[command(flatten)]
    pub site: SiteArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `render`'s options from the site flags.
pub(super) fn render_options(
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
        all: site.all,
        txt: site.txt,
        colors: site.colors.clone(),
        reverse: site.reverse,
        scheme: site.scheme,
        title: site.title.clone(),
        threads,
        progress,
        dry_run: site.dry_run,
        wait: site.wait,
    }
}

/// Options shared by commands that run a GPU.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = GPU)]
pub struct GpuArgs {
    /// Select an adapter by (case-insensitive) substring of its name.
    #[arg(long)]
    pub adapter: Option<String>,
    /// Use the slower shared-memory reduction even where the GPU has subgroups (to compare or work around a driver).
    #[arg(long)]
    pub no_subgroups: bool,
    /// GPU memory the similarity matrix may take (e.g. `8GB`; default: what
    /// the adapter can bind). Above it, the GPU computes rows on the fly
    /// behind a cache of this size. The vectors (twice), the walks' sums and
    /// the outputs come on top.
    #[arg(long)]
    pub max_gpu_memory: Option<bytesize::ByteSize>,
}

impl GpuArgs {
    pub fn options(&self) -> GpuOptions {
        GpuOptions {
            adapter: self.adapter.clone(),
            allow_software: false,
            no_subgroups: self.no_subgroups,
            max_gpu_memory: self.max_gpu_memory.map(|b| b.as_u64()),
            // The GPU's internal sizes are chosen by the backend; only
            // `diversity-bench engine` forces them.
            ..GpuOptions::default()
        }
    }
}

/// How the orderings are computed (shared by `precompute` and `build`).
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Where the orderings are computed: on the GPU, on the CPU, or auto (the GPU when there is a hardware one, else the CPU).
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, help_heading = PERFORMANCE)]
    pub backend: BackendChoice,
    /// Keep only the first K poems of each ordering: how a large corpus stays fast and its cache small (every ordering is whole without it).
    #[arg(long, help_heading = PERFORMANCE, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub top_k: Option<usize>,
    /// CPU threads (default: all cores).
    #[arg(long, help_heading = PERFORMANCE)]
    pub threads: Option<usize>,
    /// Stop with an error on any unusable embedding, or any embedding that matches no poem, instead of leaving it out.
    #[arg(long, help_heading = INPUT)]
    pub strict: bool,
    /// File of keys to leave out everywhere, one per line.
    #[arg(long, help_heading = INPUT)]
    pub exclude: Option<PathBuf>,
    /// Subtract the average of all vectors first, so that poems close to the average do not turn up near the top of every similar list.
    #[arg(long, help_heading = INPUT)]
    pub center: bool,
    /// Themes: a small corpus (JSON or JSONL, like the poems; the key is the
    /// theme's name) with vectors inline or in --theme-embeddings. `build`
    /// uses the bundled themes for the bundled corpus.
    #[arg(long, help_heading = INPUT)]
    pub themes: Option<PathBuf>,
    /// Embeddings of the themes file (as made by `embed --poems THEMES`).
    #[arg(long, requires = "themes", help_heading = INPUT)]
    pub theme_embeddings: Option<PathBuf>,
    /// Palette for semantic colours: entries with a colour name (the key),
    /// "color": "#rrggbb" and a vector (inline or in --palette-embeddings).
    /// Default: the bundled palette, for corpora embedded with all-MiniLM-L6-v2.
    #[arg(long, help_heading = INPUT)]
    pub palette: Option<PathBuf>,
    /// Embeddings of the palette file.
    #[arg(long, requires = "palette", help_heading = INPUT)]
    pub palette_embeddings: Option<PathBuf>,
    /// No semantic colours.
    #[arg(long, conflicts_with = "palette", help_heading = INPUT)]
    pub no_palette: bool,
    /// Poems per checkpoint: what Ctrl-C saves and a rerun resumes from (also poems per GPU batch).
    #[arg(long, default_value_t = 1024, help_heading = PERFORMANCE)]
    pub chunk: usize,
    /// Memory the CPU backend may use (e.g. `4GB`; default: what the machine
    /// has available). Above it, rows are computed on the fly instead of
    /// holding the n × n matrix.
    #[arg(long, help_heading = PERFORMANCE)]
    pub max_memory: Option<bytesize::ByteSize>,
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
            extras: crate::extras::Sources {
                themes: self.themes.clone(),
                theme_embeddings: self.theme_embeddings.clone(),
                palette: self.palette.clone(),
                palette_embeddings: self.palette_embeddings.clone(),
                no_palette: self.no_palette,
            },
            chunk: self.chunk,
            gpu: self.gpu.options(),
            progress,
            stop_after: test_stop_after(),
            shard: None,
            max_memory: self.max_memory.map(|b| b.as_u64()),
        }
    }
}

/// Test hook: with `DIVERSITY_TEST_STOP_AFTER=N` in the environment,
/// `precompute` and `build` stop after computing N chunks as Ctrl-C would
/// stop them there (status 130, resumable): how the tests reach a known
/// checkpoint. Like `DIVERSITY_TEST_HOLD`, it is not a flag, so the
/// product's `--help` and exit statuses stay the user's.
fn test_stop_after() -> Option<usize> {
    std::env::var("DIVERSITY_TEST_STOP_AFTER").ok()?.parse().ok()
}

#[derive(Debug, Clone, Args)]
pub struct PrecomputeArgs {
    /// The poems: a folder of .txt/.md files, poems.json or a .jsonl file.
    #[arg(long, help_heading = INPUT)]
    pub poems: PathBuf,
    /// Their vectors, as made by `diversity-gpu embed` (embeddings.json or .jsonl); leave it out when the poems file carries them.
    #[arg(long, help_heading = INPUT)]
    pub embeddings: Option<PathBuf>,
    /// The folder for the cache.
    #[arg(long, help_heading = OUTPUT)]
    pub out: PathBuf,
    /// Compute only part I of N (for several machines), e.g. 0/4; `merge` combines the parts.
    #[arg(long, value_name = "I/N", help_heading = PERFORMANCE)]
    pub shard: Option<crate::shard::ShardSpec>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command, subcommands included, with its path ("diversity-gpu build").
    fn commands(cmd: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        for sub in cmd.get_subcommands() {
            commands(sub, format!("{path} {}", sub.get_name()), out);
        }
        out.push((path, cmd.clone()));
    }

    #[test]
    fn every_flag_of_every_command_is_described() {
        let mut all = Vec::new();
        commands(&Cli::command(), "diversity-gpu".into(), &mut all);
        let mut bare = Vec::new();
        for (path, cmd) in &all {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                if help.trim().is_empty() {
                    bare.push(format!("{path} {}", arg.get_id()));
                }
            }
        }
        assert!(bare.is_empty(), "flags without a description: {bare:?}");
    }

    #[test]
    fn the_flags_a_poet_needs_come_under_headings() {
        let cmd = Cli::command();
        let build = cmd.find_subcommand("build").unwrap();
        let heading = |id: &str| {
            let arg = build.get_arguments().find(|a| a.get_id() == id).unwrap();
            arg.get_help_heading().map(str::to_owned)
        };
        for (id, want) in [
            ("poems", "Input"),
            ("out", "Output"),
            ("per_page", "Site"),
            ("top_k", "Performance"),
            ("no_subgroups", "GPU"),
            ("model", "Embedding"),
        ] {
            assert_eq!(heading(id).as_deref(), Some(want), "--{id}");
        }
        let jargon = ["hub poems", "stray entry", "as the original site"];
        for (path, cmd) in {
            let mut all = Vec::new();
            commands(&cmd, "diversity-gpu".into(), &mut all);
            all
        } {
            for arg in cmd.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                for j in jargon {
                    assert!(!help.contains(j), "{path} --{}: {help}", arg.get_id());
                }
            }
        }
    }
}
