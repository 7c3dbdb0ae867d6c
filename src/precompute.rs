//! The precompute pipeline: corpus → normalised integer embeddings →
//! orderings → cache, with checkpoints, progress and a timing breakdown.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::cache::{self, CacheWriter, Inputs, Manifest, Opened, Params};
use crate::corpus::{self, LoadOptions};
use crate::cpu;
use crate::engine::{BackendChoice, Engine};
use crate::extras::{self, Extras};
use crate::gpu::GpuOptions;
use crate::memory::{Limit, Needs, Plan};
use crate::progress::progress_bar;
use crate::quantize::{self, Quantized, MAX_ROW};
use crate::themes;
use crate::timings::Timings;

/// Everything `precompute` needs.
#[derive(Debug, Clone)]
pub struct Options {
    pub poems: PathBuf,
    pub embeddings: Option<PathBuf>,
    pub out: PathBuf,
    pub backend: BackendChoice,
    pub top_k: Option<usize>,
    pub threads: Option<usize>,
    pub strict: bool,
    pub exclude: Option<PathBuf>,
    pub center: bool,
    /// Where the themes and the palette come from.
    pub extras: extras::Sources,
    /// Starts per checkpoint.
    pub chunk: usize,
    pub gpu: GpuOptions,
    /// Draw a progress bar (stderr, only on a terminal).
    pub progress: bool,
    /// Stop after this many chunks (to test interruption).
    pub stop_after: Option<usize>,
    /// Compute only this shard's starts (`--shard I/N`).
    pub shard: Option<crate::shard::ShardSpec>,
    /// Memory limit for the CPU backend (default: the memory available).
    pub max_memory: Option<u64>,
}

/// Row width and index size for `n` included poems.
pub fn params_for(n: usize, top_k: Option<usize>, center: bool, chunk: usize) -> Result<Params> {
    let width = top_k.unwrap_or(usize::MAX).min(n.saturating_sub(1));
    if width > MAX_ROW {
        bail!(
            "{n} poems: full-length orderings of {width} entries exceed the exact i32 running sums (at most {MAX_ROW} entries); pass --top-k {MAX_ROW} or less"
        );
    }
    Ok(Params {
        top_k,
        center,
        width,
        index_bytes: if n <= 1 << 16 { 2 } else { 4 },
        chunk: chunk.max(1),
    })
}

/// What a precompute run did.
#[derive(Debug)]
pub struct Precomputed {
    /// The finished cache's manifest (`None` when interrupted).
    pub manifest: Option<Manifest>,
    /// The cache was already complete and up to date.
    pub up_to_date: bool,
    /// Only the themes and colours were recomputed: the orderings were up to date.
    pub extras_only: bool,
    /// Chunks computed in this run (fewer than all when resuming).
    pub chunks_computed: usize,
    /// The run stopped early (`stop_after`); the cache is not complete.
    pub interrupted: bool,
}

/// The inputs of a precompute, loaded and checked: what a site can be
/// planned from before any ordering is computed.
pub struct Loaded {
    pub corpus: corpus::Corpus,
    pub prepared: quantize::Prepared,
    /// The corpus's report with the poems that normalising left out.
    pub report: corpus::Report,
    pub extras: Extras,
    timings: Timings,
}

/// Loads the corpus, normalises its vectors and loads the themes and palette.
pub fn load(opts: &Options) -> Result<Loaded> {
    // Another program's folder is refused before any work.
    cache::refuse_foreign(&opts.out)?;
    let mut timings = Timings::default();
    let t = Instant::now();
    let corpus = load_corpus(opts)?;
    timings.phase_since("load", t);

    let t = Instant::now();
    let prepared = quantize::prepare(&corpus, opts.center);
    // Refused here, before any backend: an empty set has nothing to order
    // (the GPU backend divides by its size).
    if opts.center && prepared.vectors.n == 0 {
        let which = match prepared.dropped.len() {
            1 => "the only usable vector is its own mean".to_owned(),
            n => format!(
                "all {} usable vectors are identical, so each equals their mean",
                crate::plural::thousands(n)
            ),
        };
        bail!(
            "no usable vector is left after --center: {which}, and --center subtracts the mean from every vector, \
             leaving no direction to compare; run without --center"
        );
    }
    let mut report = corpus.report.clone();
    for p in &prepared.dropped {
        if opts.strict {
            bail!("poem {:?} cannot be used ({}) and --strict is set", p.key, p.reason);
        }
        log::warn!("poem {:?} left out: {}", p.key, p.reason);
        report.unusable.push(p.clone());
    }
    timings.phase_since("normalise", t);

    let t = Instant::now();
    let extras = extras::load(&opts.extras, &corpus, &prepared.vectors, opts.center)?;
    timings.phase_since("colors", t);
    Ok(Loaded {
        corpus,
        prepared,
        report,
        extras,
        timings,
    })
}

/// Runs precompute end to end.
pub fn run(opts: &Options) -> Result<Precomputed> {
    run_loaded(opts, load(opts)?)
}

/// Runs precompute on inputs already loaded by [`load`] with the same options.
pub fn run_loaded(opts: &Options, loaded: Loaded) -> Result<Precomputed> {
    let Loaded {
        corpus,
        prepared,
        report,
        extras,
        mut timings,
    } = loaded;
    let pending = pending_manifest(opts, &corpus, &prepared, report, &extras)?;
    let q = prepared.vectors;
    // Decided before anything large is allocated: a job that cannot fit is
    // refused here, with the sizes.
    let threads = opts.threads.unwrap_or_else(rayon::current_num_threads);
    let needs = Needs::new(q.n, q.dim, pending.params.width, pending.params.chunk, threads).resident_now();
    let plan = needs.plan(Limit::detect(opts.max_memory))?;
    log::info!(
        "memory: {} resident, matrix path {}, plan {plan:?}",
        bytesize::ByteSize(needs.resident),
        bytesize::ByteSize(needs.with_matrix())
    );
    let mut writer = match CacheWriter::open(&opts.out, pending.clone(), &q)? {
        Opened::Complete(m, _) if m.extras_fingerprint == pending.extras_fingerprint => {
            return Ok(Precomputed {
                manifest: Some(*m),
                up_to_date: true,
                extras_only: false,
                chunks_computed: 0,
                interrupted: false,
            })
        }
        Opened::Complete(m, lock) => {
            let engine =
                |themes: &Quantized| Engine::new(opts.backend, &q, Some(themes), opts.threads, &opts.gpu, &plan);
            let stale = extras::Stale {
                dir: &opts.out,
                lock,
                old: *m,
                pending: &pending,
            };
            let manifest = extras::recompute(stale, engine, &q, &extras, timings)?;
            return Ok(Precomputed {
                manifest: Some(manifest),
                up_to_date: false,
                extras_only: true,
                chunks_computed: 0,
                interrupted: false,
            });
        }
        Opened::Writer(w) => w,
    };
    let t = Instant::now();
    let theme_vectors = extras.themes.as_ref().map(|t| &t.vectors);
    let mut engine = Engine::new(opts.backend, &q, theme_vectors, opts.threads, &opts.gpu, &plan)?;
    let backend = engine.describe();
    log::info!("backend: {backend}");
    timings.phase_since("similarity", t);

    let (computed, t_write) = compute_chunks(opts, &q, &mut engine, &mut writer)?;
    if computed.interrupted {
        return Ok(computed);
    }
    let t = Instant::now();
    extras::write(Some(&mut engine), &q, &extras, writer.pending(), writer.data_dir())?;
    timings.phase_since("themes", t);
    timings.phase("walks", engine.times.walks);
    timings.phase("similar", engine.times.similar);
    timings.phase("write", t_write);
    engine.record_details(&mut timings);
    Ok(Precomputed {
        manifest: Some(writer.finish(timings, backend)?),
        ..computed
    })
}

/// Reads the corpus and logs what was left out.
fn load_corpus(opts: &Options) -> Result<corpus::Corpus> {
    let exclude = match &opts.exclude {
        Some(p) => corpus::read_exclude(p)?,
        None => Vec::new(),
    };
    let corpus = corpus::load(
        &opts.poems,
        opts.embeddings.as_deref(),
        &LoadOptions {
            strict: opts.strict,
            exclude,
        },
    )?;
    let source = opts.embeddings.as_ref().unwrap_or(&opts.poems);
    for line in corpus.report.summary(source, &opts.poems) {
        log::warn!("{line}");
    }
    Ok(corpus)
}

/// The manifest the finished cache will have (backend and timings to come).
fn pending_manifest(
    opts: &Options,
    corpus: &corpus::Corpus,
    prepared: &quantize::Prepared,
    report: corpus::Report,
    extras: &Extras,
) -> Result<Manifest> {
    let q = &prepared.vectors;
    let params = params_for(q.n, opts.top_k, opts.center, opts.chunk)?;
    Ok(Manifest {
        manifest_hash: String::new(),
        all_keys_hash: String::new(),
        integrity: Default::default(),
        format_version: cache::FORMAT_VERSION,
        generation: 0,
        algorithm_version: cache::ALGORITHM_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        fingerprint: cache::fingerprint(&prepared.keys, q, &params, &corpus.model),
        extras_fingerprint: cache::extras_fingerprint(
            extras.themes.as_ref().map(|t| (&t.names[..], &t.vectors)),
            extras.palette.as_ref().map(|p| (&p.colors[..], &p.vectors)),
        ),
        theme_width: extras.themes.as_ref().map_or(0, |_| themes::width(q.n, params.top_k)),
        params,
        embedding_model: corpus.model.clone(),
        dimension: q.dim,
        poems: corpus.poems.len(),
        included: q.n,
        keys_hash: cache::hash_keys(&prepared.keys),
        inputs: Inputs {
            poems: opts.poems.clone(),
            embeddings: opts.embeddings.clone(),
            exclude: opts.exclude.clone(),
            themes: opts.extras.themes.clone(),
            theme_embeddings: opts.extras.theme_embeddings.clone(),
            palette: opts.extras.palette.clone(),
            palette_embeddings: opts.extras.palette_embeddings.clone(),
            no_palette: opts.extras.no_palette,
        },
        backend: String::new(),
        report,
        timings: Timings::default(),
        keys: prepared.keys.clone(),
        all_keys: corpus.poems.iter().map(|p| p.key.clone()).collect(),
        shard: opts.shard.map(|s| s.range(q.n)),
        themes: extras.themes.as_ref().map(|t| t.names.clone()).unwrap_or_default(),
        theme_texts: extras.themes.as_ref().map(|t| t.texts.clone()).unwrap_or_default(),
        palette: extras.palette.as_ref().map(|p| p.colors.clone()).unwrap_or_default(),
        colors: extras.colors.clone(),
    })
}

/// Computes and writes every chunk not yet done, stopping early on Ctrl-C
/// (or `stop_after`); returns what was done and the seconds spent writing.
fn compute_chunks(
    opts: &Options,
    q: &Quantized,
    engine: &mut Engine,
    writer: &mut CacheWriter,
) -> Result<(Precomputed, f64)> {
    let todo: Vec<usize> = (0..writer.done.len()).filter(|&c| !writer.done[c]).collect();
    if writer.resumed {
        log::info!(
            "resuming: {} of {} chunks already done",
            writer.done.len() - todo.len(),
            writer.done.len()
        );
    }
    let width = writer.params().width;
    let rows = writer.starts().len();
    let bar = progress_bar(opts.progress, rows as u64, "starts");
    bar.set_position((rows - todo.iter().map(|&c| writer.chunk_starts(c).len()).sum::<usize>()) as u64);
    let mut t_write = 0.0;
    let mut done = Precomputed {
        manifest: None,
        up_to_date: false,
        extras_only: false,
        chunks_computed: 0,
        interrupted: false,
    };
    let (mut similar, mut different) = (Vec::new(), Vec::new());
    for &c in &todo {
        if opts.stop_after.is_some_and(|s| done.chunks_computed >= s) || crate::interrupt::requested() {
            bar.abandon();
            done.interrupted = true;
            return Ok((done, t_write));
        }
        let starts = writer.chunk_starts(c);
        similar.resize(starts.len() * width, 0);
        different.resize(starts.len() * width, 0);
        engine.orderings(q, starts.clone(), width, &mut similar, &mut different)?;
        let t = Instant::now();
        writer.write_chunk(c, &similar, &different)?;
        t_write += t.elapsed().as_secs_f64();
        done.chunks_computed += 1;
        bar.inc(starts.len() as u64);
    }
    bar.finish_and_clear();
    Ok((done, t_write))
}

/// Result of `verify`.
#[derive(Debug)]
pub struct Verified {
    /// Starts recomputed with the reference.
    pub checked: usize,
    /// One line per sampled start whose rows differ from the reference.
    /// Themes checked (all of them).
    pub themes: usize,
    /// Poems whose colour was checked (all of them, when there is a palette).
    pub colors: usize,
    /// One line per theme ordering or colour that differs from the reference.
    pub extras_mismatches: Vec<String>,
    pub mismatches: Vec<String>,
    /// One line per row (of all starts) that is not a valid ordering.
    pub invalid: Vec<String>,
    /// The reference walked a freshly computed matrix (it fitted the memory
    /// limit); otherwise it computed each step's similarities from the vectors.
    pub used_matrix: bool,
}

/// Checks that every row of the cache is a valid ordering, then recomputes
/// `sample` random starts with the CPU reference and compares.
///
/// The reference walks a fresh matrix only when that fits `max_memory` (or
/// the memory available); otherwise each step's similarities come from the
/// vectors, so a small sample of a huge corpus stays small.
pub fn verify(dir: &std::path::Path, sample: usize, seed: u64, max_memory: Option<u64>) -> Result<Verified> {
    let c = cache::Cache::open(dir)?;
    let invalid = c
        .invalid_rows()
        .into_iter()
        .map(|(s, kind, p)| format!("{kind:?} of {:?}: {p}", c.manifest.keys[s]))
        .collect();
    let q = c.vectors()?;
    let w = c.manifest.params.width;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut starts: Vec<usize> = (0..q.n).collect();
    rng.shuffle(&mut starts);
    starts.truncate(sample.min(q.n));
    starts.sort_unstable();
    let mut mismatches = Vec::new();
    let mut row = Vec::new();
    // The reference walk, over a freshly computed matrix (not the backend's).
    let threads = rayon::current_num_threads();
    let plan = Needs::new(q.n, q.dim, w, 1, threads)
        .resident_now()
        .plan(Limit::detect(max_memory))?;
    let m = (plan == Plan::Matrix).then(|| cpu::SimMatrix::compute(&q));
    let sim = |a: usize, c: usize| match &m {
        Some(m) => m.row(a)[c],
        None => crate::quantize::sim16(q.dot(a, c)),
    };
    for &s in &starts {
        let mut differ = Vec::new();
        for (kind, expect) in [
            (cache::Kind::Similar, crate::reference::similar(&q, s, w)),
            (cache::Kind::Different, crate::reference::different_by(q.n, s, w, sim)),
        ] {
            c.row(kind, s, &mut row);
            if row != expect {
                let at = row.iter().zip(&expect).position(|(a, b)| a != b).unwrap_or(0);
                differ.push(format!("{kind:?} first differs at position {at}"));
            }
        }
        if !differ.is_empty() {
            mismatches.push(format!("{:?}: {}", c.manifest.keys[s], differ.join(", ")));
        }
    }
    let mut extras_mismatches = Vec::new();
    let (themes, colors) = verify_extras(&c, &q, &sim, &mut extras_mismatches)?;
    Ok(Verified {
        checked: starts.len(),
        themes,
        colors,
        extras_mismatches,
        mismatches,
        invalid,
        used_matrix: m.is_some(),
    })
}

/// Recomputes every theme's orderings and every poem's colour with the CPU
/// reference and compares; returns how many themes and colours were checked.
fn verify_extras(
    c: &cache::Cache,
    q: &Quantized,
    sim: &dyn Fn(usize, usize) -> i16,
    mismatches: &mut Vec<String>,
) -> Result<(usize, usize)> {
    let (themes, palette) = c.extra_vectors()?;
    let w = c.manifest.theme_width;
    let mut row = Vec::new();
    for t in 0..themes.n {
        let seed = crate::reference::theme_seed(q, themes.row(t));
        for (kind, expect) in [
            (
                cache::Kind::Similar,
                crate::reference::theme_similar(q, themes.row(t), w),
            ),
            (
                cache::Kind::Different,
                crate::reference::theme_different_by(&seed, w, sim),
            ),
        ] {
            c.theme_row(kind, t, &mut row);
            if row != expect {
                let at = row.iter().zip(&expect).position(|(a, b)| a != b).unwrap_or(0);
                mismatches.push(format!(
                    "{:?} of theme {:?}: first difference at position {at}",
                    kind, c.manifest.themes[t]
                ));
            }
        }
    }
    if palette.n == 0 {
        return Ok((themes.n, 0));
    }
    for i in 0..q.n {
        let expect = crate::reference::nearest_color(q, &palette, i);
        if c.manifest.colors[i] as usize != expect {
            mismatches.push(format!(
                "colour of {:?}: {} in the cache, {} by the reference",
                c.manifest.keys[i],
                c.manifest.palette[c.manifest.colors[i] as usize].name,
                c.manifest.palette[expect].name
            ));
        }
    }
    Ok((themes.n, q.n))
}
