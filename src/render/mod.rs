//! `render`: the static site from a cache, written by CPU threads.
//!
//! Each poem's block is rendered once; a page is the concatenation of
//! pre-rendered blocks between a head and a foot. Pages are written in
//! parallel, only when their bytes changed (a hash manifest remembers what is
//! on disk), each atomically. Memory stays at the blocks plus one page per
//! thread, whatever the number of pages.
//!
//! - [`site`]: the site model (rows, reading order, page names, blocks).
//! - [`budget`]: the size projection and the page cap.
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
//! width across the site and keys mapped by [`file_stems`]; the listings are
//! `golden/<page>.html`, `poems/<page>.html`, `words/<page>.html` (every
//! word) and `words/<word>-<page>.html`, numbered with at least 3 digits.

#[path = "../../templates/pages.rs"]
mod templates;

mod budget;
mod catalogue;
mod chronology;
pub mod golden;
mod links;
mod prune;
mod site;
mod text;
mod words;
mod writer;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::cache::{Cache, Kind};
use crate::corpus;
use crate::timings::Timings;
pub use budget::CONFIRM_ABOVE;
pub use prune::{OWNED, TEMP_PREFIX};
use site::{Page, Site};
pub use text::{file_stems, safe_key, shown, wrap, COLUMNS, MAX_STEM};
use writer::PageWriter;

/// The folders pages go into, under the site folder.
/// The last three hold the listings (pages rendered whole in memory).
const PAGE_DIRS: [&str; 7] = [
    "similar",
    "different",
    "chronological",
    "themes",
    "golden",
    "poems",
    "words",
];

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
    pub per_page: usize,
    pub max_pages: Option<usize>,
    /// Largest site size; picks the page cap that fits.
    pub budget: Option<u64>,
    pub txt: bool,
    pub colors: Option<PathBuf>,
    /// Show each ordering from its far end.
    pub reverse: bool,
    pub scheme: Scheme,
    pub threads: Option<usize>,
    pub progress: bool,
    /// Only print the projection.
    pub dry_run: bool,
    /// Write the whole site even above `confirm_above` bytes.
    pub all: bool,
    /// Sites larger than this need a cap or `all` (see [`budget::CONFIRM_ABOVE`]).
    pub confirm_above: u64,
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
    pub projected_bytes: u64,
    /// Files the render will write (HTML pages and text twins).
    pub projected_pages: usize,
    /// Pages per ordering after `--max-pages` / `--budget`.
    pub page_cap: Option<usize>,
    pub failures: Vec<String>,
    /// Stopped by Ctrl-C before every page was written.
    pub interrupted: bool,
    pub timings: Timings,
}

/// Reads `{"poem_colors": {key: {"color": …}}}`, where a colour is `#hex`
/// or, as in the original system's file, a colour name from `palette`.
/// Malformed colours and unknown names are warned about (with the names the
/// palette knows) and dropped: they go into a style attribute.
pub fn read_colors(path: &Path, palette: &[crate::palette::Color]) -> Result<HashMap<String, String>> {
    #[derive(serde::Deserialize)]
    struct File {
        poem_colors: HashMap<String, Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        color: String,
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let f: File = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{}: line {}, column {}: {e}", path.display(), e.line(), e.column()))?;
    let by_name: HashMap<String, &str> = palette
        .iter()
        .map(|c| (c.name.to_lowercase(), c.hex.as_str()))
        .collect();
    let mut out = HashMap::new();
    let mut unknown: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, e) in f.poem_colors {
        let c = e.color.trim();
        let hex = c.strip_prefix('#').unwrap_or("");
        if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.insert(k, c.to_owned());
        } else if let Some(h) = by_name.get(&c.to_lowercase()) {
            out.insert(k, h.to_string());
        } else if c.starts_with('#') || c.contains([';', ':', '(', '"', '<']) {
            log::warn!(
                "{}: poem {k:?} has an invalid colour {:?}; ignored",
                path.display(),
                e.color
            );
        } else {
            unknown.entry(c.to_owned()).or_default().push(k);
        }
    }
    for (name, mut keys) in unknown {
        keys.sort();
        let known: Vec<&str> = palette.iter().map(|c| c.name.as_str()).collect();
        log::warn!(
            "{}: colour name {name:?} (poems {}) is not in the palette, so those poems keep their computed colour; known names: {}",
            path.display(),
            keys.join(", "),
            known.join(", ")
        );
    }
    Ok(out)
}

/// Each poem's colour: the cache's semantic colour, where `--colors` names
/// none (its names mapped through the cache's palette, else the default one).
fn colors(cache: &Cache, file: Option<&Path>) -> Result<HashMap<String, String>> {
    let m = &cache.manifest;
    let mut out: HashMap<String, String> = (0..m.included)
        .filter_map(|i| cache.color(i).map(|c| (m.keys[i].clone(), c.hex.clone())))
        .collect();
    if let Some(path) = file {
        let palette = if m.palette.is_empty() {
            crate::palette::default_colors()?
        } else {
            m.palette.clone()
        };
        out.extend(read_colors(path, &palette)?);
    }
    Ok(out)
}

/// Renders the site.
pub fn render(opts: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    let t = Instant::now();
    let cache = Cache::open(&opts.cache)?;
    let poems = corpus::load_poems(&opts.poems)?;
    let all_keys: Vec<String> = poems.iter().map(|p| p.key.clone()).collect();
    cache.check_keys(&all_keys)?;
    let colors = colors(&cache, opts.colors.as_deref())?;
    let mut site = Site::new(&cache, &poems, opts.per_page.max(1), opts.txt)?;
    site.reverse = opts.reverse;
    site.scheme = opts.scheme;
    summary.timings.phase_since("load", t);

    let t = Instant::now();
    let pool = crate::progress::pool(opts.threads)?;
    site.render_blocks(&colors, &pool);
    summary.timings.phase_since("blocks", t);

    let t = Instant::now();
    let listings = pool.install(|| listings(&site));
    report_words(&listings);
    summary.timings.phase_since("listings", t);

    let t = Instant::now();
    let plan = budget::plan(&site, &listings, opts.max_pages, opts.budget, &pool)?;
    report_projection(&site, &plan, opts.txt);
    summary.poems_with_orderings = site.poem_of_row.len();
    summary.page_cap = (plan.cap < site.full_pages).then_some(plan.cap);
    summary.projected_bytes = plan.projected_bytes;
    summary.projected_pages = plan.files;
    site.pages = plan.cap;
    summary.timings.phase_since("project", t);
    if opts.dry_run {
        return Ok(summary);
    }

    let t = Instant::now();
    for d in PAGE_DIRS {
        let dir = opts.out.join(d);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let earlier = prune::owned_pages(&opts.out)?;
    let mut planned = site.planned_paths();
    planned.extend(listings.iter().map(|p| p.path.clone()));
    check_space(opts, &plan, &earlier)?;
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

/// The size guard: the projected size against the free space under `out`
/// and the size above which a cap or `--all` is needed.
fn check_space(opts: &Options, plan: &budget::PagePlan, earlier: &BTreeSet<String>) -> Result<()> {
    let available = fs4::available_space(&opts.out)
        .with_context(|| format!("cannot read the free space of {}", opts.out.display()))?;
    let reclaimed = earlier
        .iter()
        .filter_map(|rel| std::fs::symlink_metadata(opts.out.join(rel)).ok())
        .map(|m| m.len())
        .sum();
    let projected = plan.projected_bytes * if opts.txt { 2 } else { 1 };
    budget::check_space(
        &budget::SpaceCheck {
            projected,
            reclaimed,
            available,
            explicit: opts.all || opts.max_pages.is_some() || opts.budget.is_some(),
            confirm_above: opts.confirm_above,
        },
        &opts.out,
    )
}

fn report_projection(site: &Site, plan: &budget::PagePlan, txt: bool) {
    eprintln!(
        "projected site: {} in {} pages{} ({} per page, {} of {} pages per ordering)",
        bytesize::ByteSize(plan.projected_bytes),
        plan.files,
        if txt { ", HTML and text" } else { "" },
        site.per_page,
        plan.cap,
        site.full_pages
    );
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
                }
            },
        );
        let themes = site.cache.manifest.themes.len();
        (0..themes).into_par_iter().for_each_init(
            || (Vec::new(), String::new(), String::new()),
            |(idx, page, text), t| {
                let name = &site.cache.manifest.themes[t];
                for kind in [Kind::Similar, Kind::Different] {
                    for pg in 0..site.theme_pages() {
                        site.theme_page(kind, t, pg, idx, page, text);
                        writer.emit(site.theme_path(kind, name, pg, "html"), page.as_bytes());
                        if site.txt {
                            writer.emit(site.theme_path(kind, name, pg, "txt"), text.as_bytes());
                        }
                        bar.inc(1);
                    }
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
/// word index and the entry point that links them. Run inside the pool:
/// the word pages are rendered in parallel.
fn listings(site: &Site) -> Vec<Page> {
    let entries = links::poem_entries(site);
    let words = words::WordIndex::new(site, &entries);
    let mut pages = golden::pages(site);
    pages.extend(catalogue::pages(site, &entries));
    pages.extend(words.pages(site, &entries));
    let chrono = format!("chronological/{}.html", site.page_name(0));
    let index = templates::index(
        &templates::IndexData {
            poems: site.poems.len(),
            included: site.poem_of_row.len(),
            golden: site.chrono.iter().filter(|&&p| site.golden[p]).count(),
            words: words.words.len(),
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
    pages
}

/// Each theme's name, first similar page and first different page.
fn themes(site: &Site) -> Vec<(String, String, String)> {
    let names = &site.cache.manifest.themes;
    names
        .iter()
        .map(|n| {
            (
                n.clone(),
                site.theme_path(Kind::Similar, n, 0, "html"),
                site.theme_path(Kind::Different, n, 0, "html"),
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

/// Writes `n` files of `size` bytes under `dir` with the same threads and
/// atomic writes as `render`: the disk's bound for the benchmark.
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
