//! `render`: the static site from a cache, written by CPU threads.
//!
//! Each poem's block is rendered once; a page is the concatenation of
//! pre-rendered blocks between a head and a foot. Pages are written in
//! parallel, only when their bytes changed (a hash manifest remembers what is
//! on disk), each atomically. Memory stays at the blocks plus one page per
//! thread, whatever the number of pages.
//!
//! - [`site`]: the site model (rows, reading order, page names, blocks).
//! - [`budget`]: the plan: the site's shape and size within `--budget`,
//!   made before anything is written (for `build`, before computing).
//! - [`complete`]: every ordering whole, packed for `complete.html`.
//! - [`writer`]: atomic, change-only page writes and the page manifest.
//! - [`prune`]: removing pages an earlier render made and this one does not.
//! - [`chronology`]: the reading order, by date.
//! - [`golden`], [`words`], [`catalogue`] (over [`links`]): the pages
//!   rendered whole in memory: golden poems, the word index, the poem list.
//! - `templates/pages.rs`: the markup and every word on the pages.
//!
//! File names: `similar/<key>-<page>.html`, `different/<key>-<page>.html`,
//! `chronological/<page>.html`, `themes/similar-<name>-<page>.html` and
//! `themes/different-<name>-<page>.html`, with page numbers zero-padded to the same
//! width across the site and keys, theme names and words mapped by
//! [`file_stems`]; the listings are
//! `golden/<page>.html`, `poems/<page>.html`, `words/<page>.html` (every
//! word) and `words/<word>-<page>.html`, numbered with at least 3 digits;
//! the complete lists are `complete.html` and `complete/` (see [`complete`]).

#[path = "../../templates/pages.rs"]
mod templates;

mod budget;
mod catalogue;
mod checks;
mod chronology;
mod colors;
mod complete;
mod golden;
mod links;
mod names;
mod packing;
mod prune;
mod site;
mod text;
mod words;
mod writer;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::cache::{Cache, Kind};
use crate::corpus::{self, Poem};
use crate::plural::thousands;
use crate::timings::Timings;
pub use budget::{Limits, DEFAULT_BUDGET, PER_PAGE};
use checks::{check_fresh, check_out, check_space};
use colors::colors;
pub use colors::read_colors;
use names::PAGE_DIRS;
pub use names::{LOCK, OWNED, PAGE_MANIFEST};
pub use packing::Packing;
pub use prune::TEMP_PREFIX;
pub use site::Rows;
use site::{Page, Site};
pub use templates::jump_pages;
pub use text::{clean, file_stems, safe_key, shown, COLUMNS, MAX_STEM};
use writer::PageWriter;

/// The pages' colours (`--scheme`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Scheme {
    /// Light text on a dark grey page, as the original site.
    #[default]
    Dark,
    /// Dark text on a light page.
    Light,
    /// Pure black for OLED screens.
    Black,
    /// Light or dark as the reader's system prefers (`prefers-color-scheme`).
    Auto,
}

/// Options of `render`.
#[derive(Debug, Clone)]
pub struct Options {
    pub cache: PathBuf,
    pub poems: PathBuf,
    pub out: PathBuf,
    /// Entries per static page; `None` picks from [`PER_PAGE`] what fits.
    pub per_page: Option<usize>,
    pub max_pages: Option<usize>,
    /// Largest site size (default [`DEFAULT_BUDGET`]).
    pub budget: Option<u64>,
    /// No size limit but the disk: every page of every ordering.
    pub all: bool,
    pub txt: bool,
    pub colors: Option<PathBuf>,
    /// Show each ordering from its far end.
    pub reverse: bool,
    pub scheme: Scheme,
    /// The site's title (default [`templates::SITE_TITLE`]).
    pub title: Option<String>,
    pub threads: Option<usize>,
    pub progress: bool,
    /// Only print the plan.
    pub dry_run: bool,
    /// Wait for another render of the same site folder to finish, instead
    /// of failing at once.
    pub wait: bool,
}

impl Options {
    /// The size limits these options ask for.
    pub fn limits(&self) -> Limits {
        Limits {
            per_page: self.per_page,
            max_pages: self.max_pages,
            budget: (!self.all).then(|| self.budget.unwrap_or(DEFAULT_BUDGET)),
        }
    }
}

/// The site's shape, as planned: what each ordering shows and how big the
/// site will be.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// Entries per static page.
    pub per_page: usize,
    /// Static pages per ordering.
    pub pages: usize,
    /// Entries of each poem ordering the complete lists hold.
    pub shown: usize,
    /// Entries of a full poem ordering (every other poem), and of the
    /// orderings as computed (fewer with `--top-k`).
    pub full: usize,
    pub width: usize,
    /// Poems with orderings.
    pub rows: usize,
    /// Bytes of the site (without text twins), and of its packed lists.
    pub projected_bytes: u64,
    pub lists_bytes: u64,
    /// Files the render writes.
    pub files: usize,
    /// Planned before the orderings exist (sizes of static pages estimated).
    pub estimated: bool,
    /// Where the complete lists were cut: the smallest budget that holds them whole.
    pub whole: Option<u64>,
    /// How the lists are packed.
    pub packing: Packing,
}

impl Shape {
    /// The `--top-k` that computes exactly what the site shows: `None` when
    /// it shows every ordering whole.
    pub fn top_k(&self) -> Option<usize> {
        (self.shown < self.full).then_some(self.shown)
    }

    fn of(site: &Site, plan: &budget::PagePlan) -> Shape {
        Shape {
            per_page: site.per_page,
            pages: plan.cap,
            shown: site.shown,
            full: site.rows.full(),
            width: site.rows.width,
            rows: site.poem_of_row.len(),
            projected_bytes: plan.projected_bytes,
            lists_bytes: plan.lists_bytes,
            files: plan.files,
            estimated: site.cache.is_none(),
            whole: plan.whole,
            packing: site.packing(),
        }
    }

    /// The plan in words, as `build` and `render` print it.
    pub fn describe(&self, limits: &Limits) -> String {
        use crate::plural::count;

        let within = match limits.budget {
            Some(b) => format!("within --budget {}", budget::exact(b)),
            None => "no budget (--all)".to_owned(),
        };
        let estimated = if self.estimated {
            ", estimated before computing"
        } else {
            ""
        };
        let per_entry = self.packing.m as f64 / self.packing.k as f64;
        let (shown, full) = (thousands(self.shown), thousands(self.full));
        let lists = match self.whole {
            _ if self.shown >= self.full => format!("complete lists: every ordering whole, {}", count(self.full, "entry", "entries")),
            Some(w) if self.width >= self.full => format!(
                "complete lists: the first {shown} of {full} entries of each ordering, to fit; --budget {} holds them whole",
                budget::round_up(w)
            ),
            Some(_) if self.shown < self.width => format!(
                "complete lists: the first {shown} of {full} entries of each ordering, to fit (the cache holds {})",
                thousands(self.width)
            ),
            _ => format!("complete lists: the first {shown} of {full} entries of each ordering, all that the cache holds"),
        };
        format!(
            "site plan: {} with orderings, {} in {} files ({within}{estimated})\n  {lists} ({} in list files, {per_entry:.2} bytes an entry)\n  static pages: {} per ordering of {} with their full texts",
            count(self.rows, "poem", "poems"),
            bytesize::ByteSize(self.projected_bytes),
            thousands(self.files),
            bytesize::ByteSize(self.lists_bytes),
            self.pages,
            count(self.per_page.min(self.shown).max(1), "poem", "poems"),
        )
    }
}

/// What a render did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Poems with similar and different pages.
    pub poems_with_orderings: usize,
    pub pages: usize,
    pub written: usize,
    pub unchanged: usize,
    pub removed: usize,
    pub bytes: u64,
    /// The shape the render chose.
    pub shape: Shape,
    pub failures: Vec<String>,
    /// Stopped by Ctrl-C before every page was written.
    pub interrupted: bool,
    pub timings: Timings,
}

/// Plans the site before any ordering is computed, from the poems, the rows
/// the cache will have and the colours: what `build` computes follows
/// ([`Shape::top_k`]). Refuses, naming flags that fit, a site that fits
/// neither the budget nor the disk; nothing is written.
pub fn plan(opts: &Options, poems: &[Poem], rows: Rows, colors: &HashMap<String, String>) -> Result<Shape> {
    check_out(&opts.out)?;
    let pool = crate::progress::pool(opts.threads)?;
    let mut site = Site::new(rows, poems, opts.per_page.unwrap_or(PER_PAGE[0]), opts.txt)?;
    configure(&mut site, opts)?;
    let (plan, _) = shape_site(&mut site, colors, &opts.limits(), &pool)?;
    let shape = Shape::of(&site, &plan);
    check_space(opts, &shape, &prune::owned_pages(&opts.out)?)?;
    Ok(shape)
}

/// Renders the site.
pub fn render(opts: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    let t = Instant::now();
    check_out(&opts.out)?;
    let cache = Cache::open(&opts.cache)?;
    let poems = corpus::load_poems(&opts.poems)?;
    let all_keys: Vec<String> = poems.iter().map(|p| p.key.clone()).collect();
    check_fresh(&cache, &opts.poems, &all_keys)?;
    let colors = colors(&cache, opts.colors.as_deref())?;
    let mut site = Site::new(
        Rows::of_cache(&cache),
        &poems,
        opts.per_page.unwrap_or(PER_PAGE[0]),
        opts.txt,
    )?;
    site.cache = Some(&cache);
    configure(&mut site, opts)?;
    summary.timings.phase_since("load", t);

    let t = Instant::now();
    let pool = crate::progress::pool(opts.threads)?;
    let (plan, listings) = shape_site(&mut site, &colors, &opts.limits(), &pool)?;
    report_words(&listings);
    summary.shape = Shape::of(&site, &plan);
    summary.poems_with_orderings = site.poem_of_row.len();
    summary.timings.phase_since("plan", t);
    eprintln!("{}", summary.shape.describe(&opts.limits()));
    if opts.dry_run {
        return Ok(summary);
    }

    let t = Instant::now();
    std::fs::create_dir_all(&opts.out).with_context(|| format!("cannot create {}", opts.out.display()))?;
    // One render at a time in a site folder: the second fails at once
    // naming the first (or waits with --wait), and the check for foreign
    // files is made again under the lock.
    let _lock = crate::fs::FolderLock::acquire(&opts.out, LOCK, "site folder", opts.wait)?;
    check_out(&opts.out)?;
    let earlier = prune::owned_pages(&opts.out)?;
    check_space(opts, &summary.shape, &earlier)?;
    // Recorded before anything else is made: from here on the folder is
    // known as this tool's, even if the render is killed.
    prune::record_owned(&opts.out, earlier.iter())?;
    for d in PAGE_DIRS {
        let dir = opts.out.join(d);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut planned = site.planned_paths();
    planned.extend(listings.iter().map(|p| p.path.clone()));
    // Recorded before the first write, so a killed render's pages are known.
    prune::record_owned(&opts.out, earlier.union(&planned))?;
    let mut failures = Vec::new();
    summary.removed = prune::remove_temp_files(&opts.out, &mut failures);
    let writer = PageWriter::new(&opts.out)?;
    failures.drain(..).for_each(|f| writer.fail(f));
    let bar = crate::progress::progress_bar(opts.progress, plan.html_pages as u64, "pages");
    write_pages(&site, &writer, &pool, &bar);
    pool.install(|| {
        listings.par_iter().for_each(|page| {
            writer.emit(page.path.clone(), page.body.as_bytes());
            bar.inc(u64::from(page.path.ends_with(".html")));
        })
    });
    bar.finish_and_clear();
    summary.interrupted = crate::interrupt::requested();
    if !summary.interrupted {
        summary.removed += prune::remove_stale(&opts.out, &earlier, &planned, &mut failures);
        failures.into_iter().for_each(|f| writer.fail(f));
    }
    let done = writer.finish(!summary.interrupted);
    if !summary.interrupted {
        if let Err(e) = prune::record_owned(&opts.out, planned.iter()) {
            summary.failures.push(format!("{e:#}"));
        }
    }
    summary.pages = done.pages;
    summary.written = done.written;
    summary.unchanged = done.unchanged;
    summary.bytes = done.bytes;
    summary.failures.extend(done.failures);
    summary.timings.phase_since("write", t);
    Ok(summary)
}

/// The site-wide settings of the options. `--reverse` needs whole
/// orderings: the far end of a `--top-k` prefix is not the ordering's.
fn configure(site: &mut Site, opts: &Options) -> Result<()> {
    if opts.reverse && site.rows.width < site.rows.full() {
        anyhow::bail!(
            "--reverse shows each ordering from its far end, but the orderings hold only their first {} of {} entries (--top-k); compute them whole, without --top-k",
            thousands(site.rows.width),
            thousands(site.rows.full())
        );
    }
    site.reverse = opts.reverse;
    site.scheme = opts.scheme;
    if let Some(t) = &opts.title {
        site.title = shown(t).into_owned();
    }
    Ok(())
}

/// Decides the site's shape within `limits` (see [`budget`]) and renders
/// the blocks and listings for it: the first per-page count whose pages and
/// complete lists fit, else the complete lists cut to what fits.
fn shape_site(
    site: &mut Site,
    colors: &HashMap<String, String>,
    limits: &Limits,
    pool: &rayon::ThreadPool,
) -> Result<(budget::PagePlan, Vec<Page>)> {
    let candidates = limits.per_page.map_or(PER_PAGE.to_vec(), |p| vec![p.max(1)]);
    let mut found = None;
    let mut listings = Vec::new();
    for &per_page in &candidates {
        site.reshape(per_page, site.rows.width);
        site.render_blocks(colors, pool);
        listings = pool.install(|| listings_of(site))?;
        found = budget::fit(site, &listings, limits, pool);
        if found.is_some() {
            break;
        }
    }
    let mut plan = match found {
        Some(plan) => plan,
        None => budget::cut(site, &listings, limits, pool)?,
    };
    // The index says what the site holds: render it again for the plan,
    // and plan again for its new size (a few bytes).
    for _ in 0..3 {
        site.pages = plan.cap;
        listings = pool.install(|| listings_of(site))?;
        let again = Limits {
            max_pages: Some(plan.cap),
            ..*limits
        };
        let whole = plan.whole;
        let next = match budget::fit(site, &listings, &again, pool) {
            Some(p) if p.cap == plan.cap => return Ok((budget::PagePlan { whole, ..p }, listings)),
            Some(p) => p,
            None => budget::cut(site, &listings, &again, pool)?,
        };
        plan = budget::PagePlan {
            whole: next.whole.or(whole),
            ..next
        };
    }
    site.pages = plan.cap;
    Ok((plan, listings))
}

/// Writes every ordering page (poems' and themes') and the reading-order pages.
fn write_pages(site: &Site, writer: &PageWriter, pool: &rayon::ThreadPool, bar: &indicatif::ProgressBar) {
    pool.install(|| {
        (0..site.poem_of_row.len()).into_par_iter().for_each_init(
            || (Vec::new(), String::new(), String::new()),
            |(idx, page, text), r| {
                if crate::interrupt::requested() {
                    return;
                }
                let p = site.poem_of_row[r];
                for kind in [Kind::Similar, Kind::Different] {
                    for pg in 0..site.pages {
                        site.ordering_page(kind, r, pg, idx, page, text);
                        writer.emit(site.ordering_path(kind, p, pg, "html"), page.as_bytes());
                        if site.txt {
                            writer.emit(site.ordering_path(kind, p, pg, "txt"), text.as_bytes());
                        }
                        bar.inc(1);
                    }
                    site.row(kind, r, idx);
                    complete::poem_list(site, kind, r, idx, page);
                    writer.emit(site.list_path(kind, p), page.as_bytes());
                }
            },
        );
        let themes = site.rows.themes.len();
        (0..themes).into_par_iter().for_each_init(
            || (Vec::new(), String::new(), String::new()),
            |(idx, page, text), t| {
                for kind in [Kind::Similar, Kind::Different] {
                    for pg in 0..site.theme_pages() {
                        site.theme_page(kind, t, pg, idx, page, text);
                        writer.emit(site.theme_path(kind, t, pg, "html"), page.as_bytes());
                        if site.txt {
                            writer.emit(site.theme_path(kind, t, pg, "txt"), text.as_bytes());
                        }
                        bar.inc(1);
                    }
                    site.theme_row(kind, t, idx);
                    complete::theme_list(site, kind, t, idx, page);
                    writer.emit(site.theme_list_path(kind, t), page.as_bytes());
                }
            },
        );
        (0..site.chrono_pages()).into_par_iter().for_each_init(
            || (String::new(), String::new()),
            |(page, text), pg| {
                site.chrono_page(pg, page, text);
                writer.emit(format!("chronological/{}.html", site.page_name(pg)), page.as_bytes());
                if site.txt {
                    writer.emit(format!("chronological/{}.txt", site.page_name(pg)), text.as_bytes());
                }
                bar.inc(1);
            },
        );
    });
}

/// The pages rendered whole in memory: golden poems, the poem list, the
/// word index, the complete lists' reader and texts, and the entry point
/// that links them. Run inside the pool: the word pages are rendered in
/// parallel.
fn listings_of(site: &Site) -> Result<Vec<Page>> {
    let entries = links::poem_entries(site);
    let words = words::WordIndex::new(site, &entries)?;
    let mut pages = golden::pages(site);
    pages.extend(catalogue::pages(site, &entries));
    pages.extend(words.pages(site, &entries));
    pages.extend(complete::pages(site));
    let chrono = format!("chronological/{}.html", site.page_name(0));
    let index = templates::index(
        &templates::IndexData {
            title: &site.title,
            poems: site.poems.len(),
            included: site.poem_of_row.len(),
            shown: site.shown,
            full: site.rows.full(),
            on_pages: site.pages * site.per_page,
            golden: site.chrono.iter().filter(|&&p| site.golden[p]).count(),
            words: words.words.len(),
            colors: site.colors,
            first_chronological: &chrono,
            first_catalogue: "poems/000.html",
            first_golden: "golden/000.html",
            first_word_list: "words/000.html",
            cloud: &words.cloud(),
            themes: &themes(site),
        },
        site.scheme,
    );
    pages.push(Page::new("index.html".into(), index));
    Ok(pages)
}

/// Each theme's name as shown, first similar page and first different page.
fn themes(site: &Site) -> Vec<(String, String, String)> {
    let names = &site.rows.themes;
    names
        .iter()
        .enumerate()
        .map(|(t, n)| {
            (
                shown(n).into_owned(),
                site.theme_path(Kind::Similar, t, 0, "html"),
                site.theme_path(Kind::Different, t, 0, "html"),
            )
        })
        .collect()
}

/// Prints the word pages' size, which counts toward the budget.
fn report_words(listings: &[Page]) {
    let (n, bytes) = listings
        .iter()
        .filter(|p| p.path.starts_with("words/"))
        .fold((0, 0u64), |(n, b), p| (n + 1, b + p.body.len() as u64));
    eprintln!(
        "word pages: {} in {n} pages (counted in the projection)",
        bytesize::ByteSize(bytes)
    );
}

/// Writes `n` files of `size` bytes under `dir` with the same threads as
/// `render`, each created and written in place (no temp file, no rename):
/// what the disk costs at least, for the benchmark.
pub fn write_plain_files(dir: &Path, n: usize, size: usize, pool: &rayon::ThreadPool) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let data = vec![b'x'; size];
    pool.install(|| {
        (0..n).into_par_iter().try_for_each(|i| {
            let path = dir.join(format!("{i}.html"));
            let mut f = std::fs::File::create(&path)?;
            f.write_all(&data)?;
            Ok::<_, std::io::Error>(())
        })
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colors_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(
            &p,
            r##"{"poem_colors": {"a/1": {"color": "#a0b0c0"}, "a/2": {"color": "red;x:y"}}}"##,
        )
        .unwrap();
        let c = read_colors(&p, &[]).unwrap();
        assert_eq!(c.get("a/1").map(String::as_str), Some("#a0b0c0"));
        assert!(!c.contains_key("a/2"));
    }

    #[test]
    fn colour_names_are_mapped_through_the_palette() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("poem_colors.json");
        std::fs::write(
            &p,
            r##"{"poem_colors": {"a/1": {"color": "Crimson"}, "a/2": {"color": "chartreuse"}, "a/3": {"color": "#123"}}}"##,
        )
        .unwrap();
        let palette = crate::palette::default_colors().unwrap();
        let c = read_colors(&p, &palette).unwrap();
        assert_eq!(c.get("a/1").map(String::as_str), Some("#dc143c"));
        assert_eq!(c.get("a/3").map(String::as_str), Some("#123"));
        assert!(!c.contains_key("a/2"));
    }
}
