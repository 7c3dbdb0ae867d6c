//! The command line: [`args`] defines the flags and turns them into each
//! stage's options, this module dispatches to the library, and [`report`]
//! prints what each command did. `main.rs` only parses and calls [`run`].

mod args;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::fs::{refuse_aliasing, Role};
use crate::plural::count;
use crate::plural::thousands;

pub use args::*;
pub use report::print_timings;

/// How a command ended; each maps to one exit status.
#[derive(Debug)]
pub enum Outcome {
    /// Finished (exit status 0).
    Done,
    /// Some inputs failed and were reported; the rest is saved (status 2).
    PartlyFailed,
    /// Stopped by Ctrl-C (or the `DIVERSITY_TEST_STOP_AFTER` test hook) at
    /// a checkpoint; resumable (status 130).
    Interrupted,
    /// An error, already printed with its causes (status 1).
    Failed,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Done => ExitCode::SUCCESS,
            Outcome::PartlyFailed => ExitCode::from(2),
            Outcome::Interrupted => ExitCode::from(130),
            Outcome::Failed => ExitCode::FAILURE,
        }
    }
}

/// Runs the CLI; errors are printed with their causes. A reader that stops
/// early (`| head`) is not an error.
pub fn run(cli: Cli) -> Outcome {
    crate::embed::one_thread_per_batch();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    match dispatch(cli) {
        Ok(outcome) => outcome,
        Err(e) if is_broken_pipe(&e) => Outcome::Done,
        Err(e) => {
            eprintln!("error: {e:#}");
            Outcome::Failed
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>().and_then(|j| j.io_error_kind())
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// Progress bars only on a terminal, and not with `--quiet`.
fn progress(cli_quiet: bool) -> bool {
    !cli_quiet && std::io::IsTerminal::is_terminal(&std::io::stderr())
}

fn dispatch(cli: Cli) -> Result<Outcome> {
    let show = progress(cli.quiet);
    // Commands that stop at a checkpoint on Ctrl-C take it over; the others
    // keep the default, which ends them at once (status 130 in the shell).
    if matches!(
        cli.command,
        Command::Precompute(_) | Command::Render(_) | Command::Build(_) | Command::Embed(_)
    ) {
        crate::interrupt::install();
    }
    match cli.command {
        Command::Precompute(a) => {
            let mut opts = a.engine.options(a.poems, a.embeddings, a.out, show);
            opts.shard = a.shard;
            absolute_paths(&mut opts);
            refuse_aliasing(&[Role::cache_out("--out", &opts.out)], &precompute_inputs(&opts))?;
            let run = crate::precompute::run(&opts)?;
            match &run.manifest {
                Some(m) => report::precomputed(&opts.out, m, run.up_to_date, run.extras_only),
                None => return Ok(stopped(run.chunks_computed)),
            }
        }
        Command::Merge { out, shards } => {
            let inputs: Vec<Role> = shards.iter().map(|s| Role::folder("the shard", s)).collect();
            refuse_aliasing(&[Role::folder("--out", &out)], &inputs)?;
            report::merged(&out, shards.len(), &crate::shard::merge(&out, &shards, show)?)
        }
        Command::Export { cache, out } => {
            if let Some(o) = &out {
                refuse_aliasing(&[Role::file("--out", o)], &[Role::folder("--cache", &cache)])?;
            }
            export(&cache, out.as_deref())?
        }
        Command::Verify {
            cache,
            sample,
            seed,
            max_memory,
        } => verify(&cache, sample, seed, max_memory.map(|b| b.as_u64()))?,
        #[cfg(feature = "gpu")]
        Command::Adapters => report::adapters(&crate::gpu::adapters())?,
        #[cfg(not(feature = "gpu"))]
        Command::Adapters => anyhow::bail!(crate::gpu::DISABLED),
        Command::Render(a) => {
            let mut inputs = vec![Role::folder("--cache", &a.cache), Role::file("--poems", &a.poems)];
            inputs.extend(a.site.colors.as_deref().map(|c| Role::file("--colors", c)));
            refuse_aliasing(&[Role::folder("--out", &a.out)], &inputs)?;
            let opts = render_options(a.cache, a.poems, a.out.clone(), a.threads, &a.site, show);
            let s = crate::render::render(&opts)?;
            if opts.dry_run {
                eprintln!("dry run: nothing written");
                return Ok(Outcome::Done);
            }
            return rendered(&s, &a.out);
        }
        Command::Build(a) => return build(*a, show),
        Command::Embed(a) => {
            let out = a.out.clone();
            let journal = crate::embed::journal_path(&out);
            let mut inputs = vec![Role::file("--poems", &a.poems)];
            inputs.extend(a.model.model_dir.as_deref().map(|d| Role::folder("--model-dir", d)));
            refuse_aliasing(
                &[Role::file("--out", &out), Role::file("its journal", &journal)],
                &inputs,
            )?;
            if !crate::fs::is_special(&out) {
                crate::fs::sweep_leftovers(&output_folder(&out));
            }
            let s = crate::embed::run(&a.options(show)?)?;
            return Ok(match crate::embed::report::print(&s, &out) {
                0 => Outcome::Done,
                2 => Outcome::PartlyFailed,
                130 => Outcome::Interrupted,
                _ => Outcome::Failed,
            });
        }
    }
    Ok(Outcome::Done)
}

/// A precompute that stopped at a checkpoint: by Ctrl-C, or by the
/// `DIVERSITY_TEST_STOP_AFTER` test hook, which stands for it.
fn stopped(chunks_computed: usize) -> Outcome {
    eprintln!(
        "stopped after {}; finished chunks are saved, run the same command again to resume",
        count(chunks_computed, "chunk", "chunks")
    );
    Outcome::Interrupted
}

/// Writes the orderings as JSON Lines to `out` (atomically, through a
/// symbolic link to its target; devices and pipes directly) or stdout.
fn export(cache: &Path, out: Option<&Path>) -> Result<()> {
    let c = crate::cache::Cache::open(cache)?;
    match out {
        Some(path) => {
            // The files the cache was computed from are inputs too: an
            // export over the poems file would destroy it.
            let i = &c.manifest.inputs;
            let mut inputs = vec![
                Role::folder("--cache", cache),
                Role::file("the cache's poems", &i.poems),
            ];
            for (what, p) in [
                ("the cache's embeddings", &i.embeddings),
                ("the cache's exclusions", &i.exclude),
                ("the cache's themes", &i.themes),
                ("the cache's theme embeddings", &i.theme_embeddings),
                ("the cache's palette", &i.palette),
                ("the cache's palette embeddings", &i.palette_embeddings),
            ] {
                inputs.extend(p.as_deref().map(|p| Role::file(what, p)));
            }
            refuse_aliasing(&[Role::file("--out", path)], &inputs)?;
            if !crate::fs::is_special(path) {
                crate::fs::sweep_leftovers(&output_folder(path));
            }
            let mut w = std::io::BufWriter::new(crate::fs::Output::create(path, false)?);
            crate::export::export(&c, &mut w)
                .map_err(crate::fs::explain_any)
                .with_context(|| format!("cannot write {}", path.display()))?;
            w.into_inner()
                .map_err(|e| crate::fs::explain(e.into_error()))
                .with_context(|| format!("cannot write {}", path.display()))?
                .finish()?;
        }
        None => {
            let stdout = std::io::stdout();
            crate::export::export(&c, &mut std::io::BufWriter::new(stdout.lock()))?;
        }
    }
    Ok(())
}

/// The folder an output file's temp files go into: its link-resolved
/// target's.
fn output_folder(out: &Path) -> PathBuf {
    let target = crate::fs::resolve_links(out).unwrap_or_else(|_| out.to_path_buf());
    crate::fs::parent_of(&target).to_path_buf()
}

/// Every input path of a precompute, with its flag.
fn precompute_inputs(o: &crate::precompute::Options) -> Vec<Role<'_>> {
    let x = &o.extras;
    let mut inputs = vec![Role::file("--poems", &o.poems)];
    for (flag, p) in [
        ("--embeddings", &o.embeddings),
        ("--exclude", &o.exclude),
        ("--themes", &x.themes),
        ("--theme-embeddings", &x.theme_embeddings),
        ("--palette", &x.palette),
        ("--palette-embeddings", &x.palette_embeddings),
    ] {
        inputs.extend(p.as_deref().map(|p| Role::file(flag, p)));
    }
    inputs
}

/// Makes a precompute's paths absolute, so that the cache records where its
/// inputs are whatever folder a later command runs in (the command a stale
/// cache's message suggests works verbatim from anywhere), and messages
/// name the cache by its absolute path.
fn absolute_paths(o: &mut crate::precompute::Options) {
    let abs = |p: &mut PathBuf| *p = crate::fs::absolute(p);
    abs(&mut o.poems);
    abs(&mut o.out);
    let x = &mut o.extras;
    for p in [
        &mut o.embeddings,
        &mut o.exclude,
        &mut x.themes,
        &mut x.theme_embeddings,
        &mut x.palette,
        &mut x.palette_embeddings,
    ]
    .into_iter()
    .flatten()
    {
        abs(p);
    }
}

/// Reports a render; a render stopped by Ctrl-C is resumable (status 130).
fn rendered(s: &crate::render::Summary, out: &Path) -> Result<Outcome> {
    if s.interrupted {
        eprintln!(
            "interrupted: {} written so far; run the same command again to finish the site in {}",
            count(s.pages, "page", "pages"),
            out.display()
        );
        return Ok(Outcome::Interrupted);
    }
    report::rendered(s, out)?;
    Ok(Outcome::Done)
}

fn verify(cache: &Path, sample: usize, seed: u64, max_memory: Option<u64>) -> Result<()> {
    let v = crate::precompute::verify(cache, sample, seed, max_memory)?;
    for m in &v.invalid {
        eprintln!("invalid row: {m}");
    }
    for m in v.mismatches.iter().chain(&v.extras_mismatches) {
        eprintln!("mismatch: {m}");
    }
    if !v.invalid.is_empty() || !v.mismatches.is_empty() || !v.extras_mismatches.is_empty() {
        bail!(
            "{}; {} of {} differ from the CPU reference; {} differ (of {} and {})",
            count(
                v.invalid.len(),
                "row is not a valid ordering",
                "rows are not valid orderings"
            ),
            thousands(v.mismatches.len()),
            count(v.checked, "sampled start", "sampled starts"),
            count(
                v.extras_mismatches.len(),
                "theme ordering or colour",
                "theme orderings or colours"
            ),
            count(v.themes, "theme", "themes"),
            count(v.colors, "colour", "colours")
        );
    }
    eprintln!(
        "every row is a valid ordering; {} the CPU reference exactly ({})",
        count(v.checked, "sampled start matches", "sampled starts match"),
        if v.used_matrix {
            "over a fresh similarity matrix"
        } else {
            "similarities computed per step; no matrix built"
        }
    );
    if let Some(extras) = extras_checked(v.themes, v.colors) {
        eprintln!("and so do {extras}");
    }
    Ok(())
}

/// What else `verify` checked, in words: "the orderings of all 12 themes
/// and the colours of all 440 poems"; `None` when it checked neither.
fn extras_checked(themes: usize, colours: usize) -> Option<String> {
    let all = |n: usize, one: &str, many: &str| match n {
        1 => format!("the one {one}"),
        _ => format!("all {}", count(n, one, many)),
    };
    let parts: Vec<String> = [
        (themes > 0).then(|| format!("the orderings of {}", all(themes, "theme", "themes"))),
        (colours > 0).then(|| format!("the colours of {}", all(colours, "poem", "poems"))),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// `precompute` then `render`; the bundled corpus (with its themes) when no
/// poems are given. The site is planned first, so a site that cannot fit
/// is refused before anything is computed, and a cut site computes only
/// the entries it shows.
fn build(a: BuildArgs, show: bool) -> Result<Outcome> {
    let bundled = match a.poems {
        Some(_) => None,
        None => Some(crate::bundled::Bundled::extract()?),
    };
    let (poems, embeddings) = match (&bundled, &a.poems) {
        (Some(b), _) => (b.poems(), Some(b.embeddings())),
        (None, p) => (p.clone().expect("poems given"), a.embeddings.clone()),
    };
    let mut pre = a.engine.options(poems.clone(), embeddings, a.cache.clone(), show);
    absolute_paths(&mut pre);
    let mut inputs = precompute_inputs(&pre);
    inputs.extend(a.site.colors.as_deref().map(|c| Role::file("--colors", c)));
    inputs.extend(a.model.model_dir.as_deref().map(|d| Role::folder("--model-dir", d)));
    refuse_aliasing(
        &[Role::cache_out("--cache", &pre.out), Role::folder("--out", &a.out)],
        &inputs,
    )?;
    if let (None, Some(b), false) = (&pre.extras.themes, &bundled, a.no_themes) {
        pre.extras.themes = Some(b.themes());
    }
    let mut partly = false;
    if pre.embeddings.is_none() && !crate::corpus::carries_vectors(&poems)? {
        match embed_for_build(&a, &mut pre, show)? {
            Ok(p) => partly = p,
            Err(o) => return Ok(o),
        }
    }
    // The embeddings build wrote are recorded by absolute path too.
    absolute_paths(&mut pre);
    let opts = render_options(a.cache.clone(), poems, a.out.clone(), a.engine.threads, &a.site, show);
    let loaded = crate::precompute::load(&pre)?;
    let shape = crate::render::plan(
        &opts,
        &loaded.corpus.poems,
        planned_rows(&loaded, pre.top_k),
        &planned_colors(&loaded),
    )?;
    eprintln!("{}", shape.describe(&opts.limits()));
    if opts.dry_run {
        eprintln!("dry run: nothing computed or written");
        return Ok(Outcome::Done);
    }
    // A walk's prefix is exact, so a cut site computes only what it shows;
    // the far ends that --reverse shows need whole orderings.
    if !opts.reverse {
        pre.top_k = shape.top_k();
    }
    let run = crate::precompute::run_loaded(&pre, loaded)?;
    let Some(m) = &run.manifest else {
        // A stopped precompute: nothing to render yet.
        return Ok(stopped(run.chunks_computed));
    };
    if run.up_to_date {
        eprintln!("the cache in {} is up to date", pre.out.display());
    } else {
        eprintln!("precomputed {} with {}", count(m.included, "poem", "poems"), m.backend);
        print_timings("precompute timing:", &m.timings);
    }
    let outcome = rendered(&crate::render::render(&opts)?, &a.out)?;
    if matches!(outcome, Outcome::Done) {
        eprintln!("open {}", a.out.join("index.html").display());
    }
    // Poems whose embedding failed are missing from the site: say so.
    Ok(match outcome {
        Outcome::Done if partly => Outcome::PartlyFailed,
        o => o,
    })
}

/// Embeds poems that have no vectors into `<cache>/embeddings.json`, in
/// process unless --url; with the model in process, the palette and the
/// themes are embedded by it too, so their vectors match the poems'.
/// `Ok(true)` when some poems failed; `Err` with the outcome of a run that
/// stopped.
fn embed_for_build(a: &BuildArgs, pre: &mut crate::precompute::Options, show: bool) -> Result<Result<bool, Outcome>> {
    let local = a
        .model
        .local(show)
        .map_err(|e| no_model_help(e, &pre.poems, a.model.model_dir.is_some()))?;
    // Made a cache folder (refused if another program's) before the embeddings go in.
    crate::cache::claim_dir(&a.cache)?;
    let embed = |poems: &Path, name: &str, say: bool| embed_into(a, local.clone(), poems, name, say, show);
    let partly = match embed(&pre.poems.clone(), "embeddings.json", true)? {
        Ok((e, partly)) => {
            pre.embeddings = Some(e);
            partly
        }
        Err(o) => return Ok(Err(o)),
    };
    if local.is_none() {
        return Ok(Ok(partly));
    }
    if pre.extras.themes.is_none() && !a.no_themes {
        pre.extras.themes = Some(crate::bundled::default_themes()?);
    }
    if let (Some(t), None) = (pre.extras.themes.clone(), &pre.extras.theme_embeddings) {
        match embed(&t, "themes-embeddings.json", false)? {
            Ok((e, _)) => pre.extras.theme_embeddings = Some(e),
            Err(o) => return Ok(Err(o)),
        }
    }
    if !pre.extras.no_palette && pre.extras.palette_embeddings.is_none() {
        let palette = pre
            .extras
            .palette
            .clone()
            .map_or_else(crate::palette::default_path, Ok)?;
        match embed(&palette, "palette-embeddings.json", false)? {
            Ok((e, _)) => pre.extras.palette_embeddings = Some(e),
            Err(o) => return Ok(Err(o)),
        }
        pre.extras.palette = Some(palette);
    }
    Ok(Ok(partly))
}

/// One `embed` run of `poems` into `<cache>/<name>`: the file and whether
/// some texts failed, or the outcome of a run that stopped. The summary is
/// printed when `say`, or when anything went wrong.
fn embed_into(
    a: &BuildArgs,
    local: Option<std::sync::Arc<crate::embed::LocalModel>>,
    poems: &Path,
    name: &str,
    say: bool,
    show: bool,
) -> Result<Result<(PathBuf, bool), Outcome>> {
    let out = a.cache.join(name);
    let o = args::EmbedArgs::for_build(poems.to_owned(), out.clone(), a.model.clone())?.options_with(local, show);
    let s = crate::embed::run(&o)?;
    if !say && s.stopped.is_none() && s.failures.is_empty() {
        return Ok(Ok((out, false)));
    }
    Ok(match crate::embed::report::print(&s, &out) {
        0 => Ok((out, false)),
        2 => Ok((out, true)),
        130 => Err(Outcome::Interrupted),
        _ => Err(Outcome::Failed),
    })
}

/// The error when no model can be loaded for poems without vectors: the
/// three ways to give them vectors.
fn no_model_help(e: anyhow::Error, poems: &std::path::Path, had_dir: bool) -> anyhow::Error {
    let p = poems.display();
    let first = match had_dir {
        true => "in process (no server), with a model folder that holds the files named above",
        false => "in process (no server): let build download the model once (about 90 MB, needs the network), or give its files",
    };
    anyhow::anyhow!(
        "{e:#}\n\nthe poems in {p} have no embeddings; give them vectors in one of three ways:\n  \
         1. {first}:\n       \
         diversity-gpu build --poems {p} --model-dir DIR\n  \
         2. through a server (Ollama, or any OpenAI-compatible one):\n       \
         diversity-gpu build --poems {p} --url http://localhost:11434 --model all-minilm\n  \
         3. vectors made elsewhere:\n       \
         diversity-gpu build --poems {p} --embeddings embeddings.json"
    )
}

/// The rows the cache will have, from the loaded inputs.
fn planned_rows(loaded: &crate::precompute::Loaded, top_k: Option<usize>) -> crate::render::Rows {
    let n = loaded.prepared.keys.len();
    let themes = loaded.extras.themes.as_ref();
    crate::render::Rows {
        keys: loaded.prepared.keys.clone(),
        excluded: loaded.report.excluded.clone(),
        width: top_k.unwrap_or(usize::MAX).min(n.saturating_sub(1)),
        theme_width: themes.map_or(0, |_| crate::themes::width(n, top_k)),
        themes: themes.map(|t| t.names.clone()).unwrap_or_default(),
        theme_texts: themes.map(|t| t.texts.clone()).unwrap_or_default(),
    }
}

/// Each poem's semantic colour, from the loaded palette.
fn planned_colors(loaded: &crate::precompute::Loaded) -> std::collections::HashMap<String, String> {
    let Some(palette) = &loaded.extras.palette else {
        return Default::default();
    };
    loaded
        .prepared
        .keys
        .iter()
        .zip(&loaded.extras.colors)
        .map(|(k, &c)| (k.clone(), palette.colors[c as usize].hex.clone()))
        .collect()
}
