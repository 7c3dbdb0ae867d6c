//! The benchmark binary's flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use diversity_gpu::cli::GpuArgs;
use diversity_gpu::gpu::GpuOptions;

/// Throughput of diversity-gpu, measured side by side in one run. Not part
/// of the product: `diversity-gpu` itself has no benchmarks.
#[derive(Debug, Parser)]
#[command(name = "diversity-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every benchmark, each in its own process.
    All {
        /// Include the GPU backend (whatever adapter is found).
        #[arg(long)]
        gpu: bool,
    },
    /// The ordering engine: naive, reference, fused CPU (1 and N threads), GPU.
    Engine(EngineArgs),
    /// render: pages/s and MB/s beside the disk's bound.
    Render {
        #[command(flatten)]
        corpus: BenchCorpus,
        /// CPU threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Poems per static page.
        #[arg(long, default_value_t = 100)]
        per_page: usize,
        /// Pages per ordering (top-k = per-page × pages).
        #[arg(long, default_value_t = 1)]
        pages: usize,
        /// Scratch directory (default: the system temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Cost against n: the whole matrix beside rows on the fly and beside N
    /// shards merged (what sharding costs, and saves on N machines), same
    /// synthetic clustered corpus, exponents fitted, peak RSS of each.
    Scale(ScaleArgs),
    /// Write the synthetic clustered corpus that `scale` uses, as JSON
    /// Lines, to run `diversity-gpu precompute` on.
    Corpus {
        /// The JSON Lines file to write.
        #[arg(long)]
        out: PathBuf,
        /// How many poems.
        #[arg(long, default_value_t = 100_000)]
        poems: usize,
        #[command(flatten)]
        shape: ShapeArgs,
    },
}

/// Flags of `engine`.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[command(flatten)]
    pub corpus: BenchCorpus,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Full-length walks per thread for the fused CPU backend.
    #[arg(long, default_value_t = 4)]
    pub starts_per_thread: usize,
    /// Also run the GPU backend.
    #[arg(long)]
    pub gpu: bool,
    /// Starts for the GPU run.
    #[arg(long, default_value_t = 256)]
    pub gpu_starts: usize,
    /// Steps per start for the GPU run (default: full length; 64 on a software adapter).
    #[arg(long)]
    pub gpu_steps: Option<usize>,
    #[command(flatten)]
    pub gpu_args: GpuArgs,
    #[command(flatten)]
    pub tuning: GpuTuning,
}

/// The GPU backend's internal sizes, forced (by default it picks them):
/// knobs for measuring, not for users.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "GPU tuning")]
pub struct GpuTuning {
    /// Split the similarity matrix into tiles of this many rows.
    #[arg(long)]
    pub tile_rows: Option<usize>,
    /// Starts per GPU batch.
    #[arg(long)]
    pub gpu_batch: Option<usize>,
    /// Walk steps per GPU dispatch.
    #[arg(long)]
    pub steps_per_dispatch: Option<u32>,
    /// Compute rows on the fly on the GPU, with a cache of this many rows.
    #[arg(long)]
    pub gpu_cache_rows: Option<usize>,
    /// Batches in flight with rows on the fly on the GPU (1 or 2).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub gpu_lanes: Option<u8>,
}

impl EngineArgs {
    /// The GPU options: the product's flags, then the forced sizes.
    pub fn gpu_options(&self) -> GpuOptions {
        let t = &self.tuning;
        GpuOptions {
            tile_rows: t.tile_rows,
            batch: t.gpu_batch,
            steps_per_dispatch: t.steps_per_dispatch,
            cache_rows: t.gpu_cache_rows,
            lanes: t.gpu_lanes.map(usize::from),
            ..self.gpu_args.options()
        }
    }
}

/// The shape of a synthetic clustered corpus.
#[derive(Debug, Clone, Args)]
pub struct ShapeArgs {
    /// Numbers per vector.
    #[arg(long, default_value_t = 384)]
    pub dim: usize,
    /// Groups of similar poems.
    #[arg(long, default_value_t = 64)]
    pub clusters: usize,
    /// The same number gives the same corpus.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl ShapeArgs {
    /// The shape with `n` poems.
    pub fn shape(&self, n: usize) -> crate::synthetic::Shape {
        crate::synthetic::Shape {
            n,
            dim: self.dim,
            clusters: self.clusters,
            seed: self.seed,
        }
    }
}

/// Options of `scale`.
#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// Corpus sizes (at least three, to fit the exponent).
    #[arg(long, value_delimiter = ',', default_value = "4000,8000,16000")]
    pub sizes: Vec<usize>,
    /// Entries per ordering.
    #[arg(long, default_value_t = 100)]
    pub top_k: usize,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Memory limit of the on-the-fly runs (always below the matrix's need).
    #[arg(long, default_value = "1GiB")]
    pub rows_memory: bytesize::ByteSize,
    /// Project the time of this many poems, on one machine and sharded.
    #[arg(long, default_value_t = 100_000)]
    pub project: usize,
    /// Machines to project rows on the fly, sharded, for (the measured
    /// sharded row uses --shards).
    #[arg(long, default_value_t = 16)]
    pub machines: usize,
    /// Also run each size as N shards (each `precompute --shard I/N` in its
    /// own process, one after another) and `merge` them, checked byte for
    /// byte against the matrix run; 0 or 1: no sharded row. At most the
    /// smallest size.
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Scratch directory for the sharded row's corpus file and caches
    /// (default: the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub shape: ShapeArgs,
    /// Run one size in one mode and print its figures as JSON (the parent
    /// runs each in its own process, so peak RSS is that run's own).
    #[arg(long, hide = true, requires = "mode")]
    pub one: Option<usize>,
    #[arg(long, hide = true, value_enum)]
    pub mode: Option<crate::scale::Mode>,
    /// With `--mode shards`: the shard to run, over the corpus file in `--dir`.
    #[arg(long, hide = true, requires = "dir")]
    pub shard: Option<diversity_gpu::shard::ShardSpec>,
}

impl ScaleArgs {
    /// The benchmark's options.
    pub fn options(&self) -> crate::scale::Options {
        crate::scale::Options {
            sizes: self.sizes.clone(),
            top_k: self.top_k,
            threads: self.threads,
            rows_memory: self.rows_memory.as_u64(),
            project: self.project,
            machines: self.machines,
            shape: self.shape.shape(0),
            shards: self.shards,
            dir: self.dir.clone(),
            shard: self.shard,
        }
    }
}

/// The corpus a benchmark reads (default: ../shared/corpora/fortunes when
/// present, else the bundled corpus).
#[derive(Debug, Clone, Args)]
pub struct BenchCorpus {
    /// The poems file to measure on.
    #[arg(long, help_heading = "Input")]
    pub poems: Option<PathBuf>,
    /// Their embeddings file.
    #[arg(long, help_heading = "Input")]
    pub embeddings: Option<PathBuf>,
}

impl BenchCorpus {
    /// The corpus files; `keep` holds the bundled corpus if it is used.
    pub fn paths(&self, keep: &mut Option<diversity_gpu::bundled::Bundled>) -> anyhow::Result<(PathBuf, PathBuf)> {
        if let (Some(p), Some(e)) = (&self.poems, &self.embeddings) {
            return Ok((p.clone(), e.clone()));
        }
        let (p, e) = crate::default_corpus(keep)?;
        Ok((self.poems.clone().unwrap_or(p), self.embeddings.clone().unwrap_or(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    #[test]
    fn every_command_and_visible_flag_is_described() {
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut bare = Vec::new();
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                bare.push(sub.get_name().to_owned());
            }
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
                    bare.push(format!("{} {}", sub.get_name(), arg.get_id()));
                }
            }
        }
        assert!(bare.is_empty(), "without a description: {bare:?}");
        let names: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
        assert_eq!(names, ["all", "engine", "render", "scale", "corpus"]);
    }
}
