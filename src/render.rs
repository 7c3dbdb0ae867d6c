//! `render`: the static site from a cache, written by CPU threads.
//!
//! Each poem's block is rendered once; a page is the concatenation of
//! pre-rendered blocks between a head and a foot. Pages are written in
//! parallel, only when their bytes changed (a hash manifest remembers what is
//! on disk), each atomically. Memory stays at the blocks plus one page per
//! thread, whatever the number of pages.
//!
//! File names: `similar/<key>-<page>.html`, `different/<key>-<page>.html`,
//! `chronological/<page>.html`, with page numbers zero-padded to the same
//! width across the site and keys mapped by [`safe_key`].

#[path = "../templates/pages.rs"]
mod templates;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rayon::prelude::*;

use crate::cache::{Cache, Kind};
use crate::corpus::{self, Poem};
use crate::timings::Timings;

/// Text width of poem blocks and text pages.
pub const COLUMNS: usize = 80;
/// The page manifest: `<blake3 hex>  <path>` per line, as `b3sum` writes
/// and checks it (`b3sum --check .pages.b3`), streamed as pages are made.
pub const PAGE_MANIFEST: &str = ".pages.b3";

/// Maps a key to a file-name-safe string: ASCII letters, digits, `-` and `.`
/// stay; every other byte becomes `_XX` (upper-case hex). The mapping is
/// injective, so distinct keys never share a file (`songs-poems/0001` →
/// `songs-poems_2F0001`).
pub fn safe_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// Wraps text at [`COLUMNS`], keeping each line's indentation (tabs expand
/// to 8 columns) on its continuation lines.
pub fn wrap(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        let expanded = expand_tabs(line);
        let body = expanded.trim_start();
        let indent = &expanded[..expanded.len() - body.len()];
        if body.is_empty() {
            out.push('\n');
            continue;
        }
        let opts = textwrap::Options::new(COLUMNS.max(indent.len() + 20))
            .initial_indent(indent)
            .subsequent_indent(indent)
            .break_words(true);
        for l in textwrap::wrap(body.trim_end(), opts) {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out
}

/// Expands tabs and drops control characters, which are not allowed in
/// HTML. Old fortune files underline and embolden by overstriking
/// (`_\bX`, `X\bX`): a backspace removes the character before it.
fn expand_tabs(line: &str) -> String {
    let mut s = String::with_capacity(line.len());
    let mut cols: Vec<usize> = Vec::new();
    let mut col = 0;
    for c in line.chars() {
        if c == '\t' {
            let n = 8 - col % 8;
            s.extend(std::iter::repeat_n(' ', n));
            cols.extend(std::iter::repeat_n(1, n));
            col += n;
        } else if c == '\u{8}' {
            if let Some(w) = cols.pop() {
                for _ in 0..w {
                    s.pop();
                }
                col -= w;
            }
        } else if !c.is_control() {
            s.push(c);
            cols.push(1);
            col += 1;
        }
    }
    s
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
    pub threads: Option<usize>,
    pub progress: bool,
    /// Only print the projection.
    pub dry_run: bool,
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
    /// Pages per ordering after `--max-pages` / `--budget`.
    pub page_cap: Option<usize>,
    pub failures: Vec<String>,
    pub timings: Timings,
}

/// Reads `{"poem_colors": {key: {"color": "#hex"}}}`; malformed colours are
/// warned about and dropped (they go into a style attribute).
pub fn read_colors(path: &Path) -> Result<HashMap<String, String>> {
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
    let mut out = HashMap::new();
    for (k, e) in f.poem_colors {
        let c = e.color.trim();
        let hex = c.strip_prefix('#').unwrap_or("");
        if matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.insert(k, c.to_owned());
        } else {
            log::warn!(
                "{}: poem {k:?} has an invalid colour {:?}; ignored",
                path.display(),
                e.color
            );
        }
    }
    Ok(out)
}

struct Site<'a> {
    cache: &'a Cache,
    per_page: usize,
    digits: usize,
    /// Pages per ordering (same for every poem).
    pages: usize,
    /// Pre-rendered block per poem (by corpus index).
    blocks: Vec<String>,
    texts: Vec<String>,
    /// Cache row of each poem, if it has orderings.
    row_of: Vec<Option<usize>>,
    /// Corpus index of each cache row.
    poem_of_row: Vec<usize>,
    poems: &'a [Poem],
    chrono: Vec<usize>,
    txt: bool,
}

impl Site<'_> {
    fn page_name(&self, page: usize) -> String {
        format!("{page:0width$}", width = self.digits)
    }

    fn ordering_path(&self, kind: Kind, key: &str, page: usize, ext: &str) -> String {
        let dir = if kind == Kind::Similar { "similar" } else { "different" };
        format!("{dir}/{}-{}.{ext}", safe_key(key), self.page_name(page))
    }

    fn chrono_pages(&self) -> usize {
        self.chrono.len().div_ceil(self.per_page).max(1)
    }

    /// Renders one ordering page into `buf`; `txt` gets the text twin.
    fn ordering_page(
        &self,
        kind: Kind,
        row: usize,
        page: usize,
        idx: &mut Vec<u32>,
        buf: &mut String,
        txt: &mut String,
    ) {
        let p = self.poem_of_row[row];
        let key = &self.poems[p].key;
        self.cache.row(kind, row, idx);
        let slice = &idx[(page * self.per_page).min(idx.len())..((page + 1) * self.per_page).min(idx.len())];
        let (what, label) = match kind {
            Kind::Similar => ("similar", "Similar to"),
            Kind::Different => ("different", "Different from"),
        };
        let link = |pg: usize| format!("../{}", self.ordering_path(kind, key, pg, "html"));
        let prev = (page > 0).then(|| link(page - 1));
        let next = (page + 1 < self.pages).then(|| link(page + 1));
        let nav = templates::Nav {
            page,
            pages: self.pages,
            prev: prev.as_deref(),
            next: next.as_deref(),
            home: "../index.html",
        };
        let intro = match kind {
            Kind::Similar => "Every other poem, most similar first.",
            Kind::Different => "A walk away from this poem: each next poem is the one least like all those before it.",
        };
        buf.clear();
        buf.push_str(&templates::page_head(
            &format!("{label} {key} — page {} of {}", page + 1, self.pages),
            &format!("{label} {key}"),
            intro,
            &nav,
        ));
        buf.push_str(templates::ANCHOR_OPEN);
        buf.push_str(&self.blocks[p]);
        buf.push_str(templates::ANCHOR_CLOSE);
        buf.push_str(&templates::divider(&format!(
            "{} {}–{} of {}",
            what,
            page * self.per_page + 1.min(slice.len()),
            page * self.per_page + slice.len(),
            idx.len()
        )));
        for &j in slice {
            buf.push_str(&self.blocks[self.poem_of_row[j as usize]]);
        }
        buf.push_str(&templates::page_foot(&nav));
        if self.txt {
            txt.clear();
            txt.push_str(&format!("{label} {key} (page {} of {})\n\n", page + 1, self.pages));
            txt.push_str(&self.texts[p]);
            for &j in slice {
                txt.push_str(&"-".repeat(COLUMNS));
                txt.push('\n');
                txt.push_str(&self.texts[self.poem_of_row[j as usize]]);
            }
        }
    }

    fn chrono_page(&self, page: usize, buf: &mut String, txt: &mut String) {
        let pages = self.chrono_pages();
        let link = |pg: usize| format!("{}.html", self.page_name(pg));
        let prev = (page > 0).then(|| link(page - 1));
        let next = (page + 1 < pages).then(|| link(page + 1));
        let nav = templates::Nav {
            page,
            pages,
            prev: prev.as_deref(),
            next: next.as_deref(),
            home: "../index.html",
        };
        buf.clear();
        buf.push_str(&templates::page_head(
            &format!("All poems — page {} of {pages}", page + 1),
            "All poems in reading order",
            "By date where poems have one, otherwise in the order of the collection.",
            &nav,
        ));
        txt.clear();
        for &p in self.chrono.iter().skip(page * self.per_page).take(self.per_page) {
            buf.push_str(&self.blocks[p]);
            if self.txt {
                txt.push_str(&self.texts[p]);
                txt.push_str(&"-".repeat(COLUMNS));
                txt.push('\n');
            }
        }
        buf.push_str(&templates::page_foot(&nav));
    }
}

/// Renders the site.
pub fn render(opts: &Options) -> Result<Summary> {
    let mut summary = Summary::default();
    let t = Instant::now();
    let cache = Cache::open(&opts.cache)?;
    let poems = corpus::load_poems(&opts.poems)?;
    let all_keys: Vec<String> = poems.iter().map(|p| p.key.clone()).collect();
    cache.check_keys(&all_keys)?;
    let colors = match &opts.colors {
        Some(p) => read_colors(p)?,
        None => HashMap::new(),
    };
    let per_page = opts.per_page.max(1);
    let width = cache.manifest.params.width;
    let excluded: std::collections::HashSet<&str> = cache.manifest.report.excluded.iter().map(String::as_str).collect();
    let row_index: HashMap<&str, usize> = cache
        .manifest
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let row_of: Vec<Option<usize>> = poems.iter().map(|p| row_index.get(p.key.as_str()).copied()).collect();
    let mut poem_of_row = vec![0; cache.manifest.keys.len()];
    for (p, r) in row_of.iter().enumerate() {
        if let Some(r) = r {
            poem_of_row[*r] = p;
        }
    }
    // Reading order: by date when every shown poem has one, else input order.
    let mut chrono: Vec<usize> = (0..poems.len())
        .filter(|&p| !excluded.contains(poems[p].key.as_str()))
        .collect();
    if chrono.iter().all(|&p| poems[p].date.is_some()) {
        chrono.sort_by(|&a, &b| poems[a].date.cmp(&poems[b].date).then(a.cmp(&b)));
    }
    let full_pages = width.div_ceil(per_page).max(1);
    let chrono_pages = chrono.len().div_ceil(per_page).max(1);
    summary.timings.phase_since("load", t);

    let t = Instant::now();
    let mut chrono_page_of = vec![0usize; poems.len()];
    for (i, &p) in chrono.iter().enumerate() {
        chrono_page_of[p] = i / per_page;
    }
    // Page numbers share one width across the site.
    let digits = full_pages.max(chrono_pages).saturating_sub(1).to_string().len().max(3);
    let mut site = Site {
        cache: &cache,
        per_page,
        digits,
        pages: full_pages,
        blocks: Vec::new(),
        texts: Vec::new(),
        row_of,
        poem_of_row,
        poems: &poems,
        chrono,
        txt: opts.txt,
    };
    let pool = crate::progress::pool(opts.threads)?;
    let (blocks, texts): (Vec<String>, Vec<String>) = pool.install(|| {
        (0..poems.len())
            .into_par_iter()
            .map(|p| {
                let poem = &poems[p];
                let text = wrap(&poem.text);
                let safe = safe_key(&poem.key);
                let has = site.row_of[p].is_some();
                let sim = format!("../{}", site.ordering_path(Kind::Similar, &poem.key, 0, "html"));
                let diff = format!("../{}", site.ordering_path(Kind::Different, &poem.key, 0, "html"));
                let chrono = format!("../chronological/{}.html#p-{safe}", site.page_name(chrono_page_of[p]));
                let html = templates::block(&templates::BlockData {
                    key: &poem.key,
                    anchor_id: &format!("p-{safe}"),
                    category: poem.category.as_deref(),
                    date: poem.date.as_deref(),
                    color: colors.get(&poem.key).map(String::as_str),
                    text: &text,
                    similar_href: has.then_some(sim.as_str()),
                    different_href: has.then_some(diff.as_str()),
                    chronological_href: &chrono,
                    note: (!has).then_some("No embedding: this poem has no similar or different pages."),
                })
                .into_string();
                // The text twin only when text pages are asked for.
                let twin = if opts.txt {
                    let date = poem.date.as_ref().map(|d| format!("  ({d})")).unwrap_or_default();
                    format!("{}{date}\n\n{text}", poem.key)
                } else {
                    String::new()
                };
                (html, twin)
            })
            .unzip()
    });
    site.blocks = blocks;
    site.texts = texts;
    summary.timings.phase_since("blocks", t);

    // Project the size: page p of every ordering, exactly as it will be built
    // except for the small head/foot, which is measured once.
    let t = Instant::now();
    let rows = cache.manifest.keys.len();
    summary.poems_with_orderings = rows;
    let overhead = {
        let mut b = String::new();
        let mut x = String::new();
        let mut idx = Vec::new();
        if rows > 0 {
            site.ordering_page(Kind::Similar, 0, 0, &mut idx, &mut b, &mut x);
            let body: usize = {
                cache.row(Kind::Similar, 0, &mut idx);
                idx.iter()
                    .take(per_page)
                    .map(|&j| site.blocks[site.poem_of_row[j as usize]].len())
                    .sum()
            };
            (b.len() - body - site.blocks[site.poem_of_row[0]].len()) as u64
        } else {
            0
        }
    };
    let per_page_bytes: Vec<u64> = pool.install(|| {
        (0..rows)
            .into_par_iter()
            .map_init(Vec::new, |idx, r| {
                let mut acc = vec![0u64; full_pages];
                for kind in [Kind::Similar, Kind::Different] {
                    cache.row(kind, r, idx);
                    let anchor = site.blocks[site.poem_of_row[r]].len() as u64;
                    for (pg, a) in acc.iter_mut().enumerate() {
                        let s = &idx[(pg * per_page).min(idx.len())..((pg + 1) * per_page).min(idx.len())];
                        *a += overhead
                            + anchor
                            + s.iter()
                                .map(|&j| site.blocks[site.poem_of_row[j as usize]].len() as u64)
                                .sum::<u64>();
                    }
                }
                acc
            })
            .reduce(
                || vec![0u64; full_pages],
                |mut a, b| {
                    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                    a
                },
            )
    });
    let fixed: u64 =
        site.chrono.iter().map(|&p| site.blocks[p].len() as u64).sum::<u64>() + overhead * chrono_pages as u64;
    let mut cap = opts.max_pages.unwrap_or(full_pages).min(full_pages).max(1);
    if let Some(budget) = opts.budget {
        let mut total = fixed;
        let mut fit = 0;
        for b in &per_page_bytes {
            if total + b > budget {
                break;
            }
            total += b;
            fit += 1;
        }
        if fit == 0 {
            bail!(
                "a budget of {} cannot hold even one page per ordering ({} needed)",
                bytesize::ByteSize(budget),
                bytesize::ByteSize(fixed + per_page_bytes.first().copied().unwrap_or(0))
            );
        }
        cap = cap.min(fit);
    }
    let projected = fixed + per_page_bytes.iter().take(cap).sum::<u64>();
    let text_factor = if opts.txt { 2 } else { 1 };
    summary.page_cap = (cap < full_pages).then_some(cap);
    summary.projected_bytes = projected;
    let total_pages = rows * 2 * cap + chrono_pages + 1;
    eprintln!(
        "projected site: {} in {} pages{} ({} per page, {} of {} pages per ordering)",
        bytesize::ByteSize(projected),
        total_pages * text_factor,
        if opts.txt { ", HTML and text" } else { "" },
        per_page,
        cap,
        full_pages
    );
    site.pages = cap;
    summary.timings.phase_since("project", t);
    if opts.dry_run {
        return Ok(summary);
    }

    // Write.
    let t = Instant::now();
    let out = &opts.out;
    for d in ["similar", "different", "chronological"] {
        let dir = out.join(d);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let manifest_path = out.join(PAGE_MANIFEST);
    let manifest = Mutex::new(std::io::BufWriter::new(crate::fs::temp_file_beside(&manifest_path)?));
    let pages = std::sync::atomic::AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let written = std::sync::atomic::AtomicUsize::new(0);
    let unchanged = std::sync::atomic::AtomicUsize::new(0);
    let bytes = std::sync::atomic::AtomicU64::new(0);
    let bar = crate::progress::progress_bar(opts.progress, total_pages as u64, "pages");
    // A page is rewritten only when its bytes differ from the file on disk;
    // comparing with the file itself needs no per-page state in memory.
    let emit = |rel: String, data: &[u8]| {
        let path = out.join(&rel);
        bytes.fetch_add(data.len() as u64, std::sync::atomic::Ordering::Relaxed);
        pages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == data.len() as u64)
            && std::fs::read(&path).is_ok_and(|old| old == data);
        if same {
            unchanged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            match crate::fs::write_atomic_unsynced(&path, data) {
                Ok(()) => {
                    written.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(e) => failures.lock().unwrap().push(format!("{}: {e:#}", path.display())),
            }
        }
        let line = format!("{}  {rel}\n", blake3::hash(data).to_hex());
        if let Err(e) = manifest.lock().unwrap().write_all(line.as_bytes()) {
            failures
                .lock()
                .unwrap()
                .push(format!("{}: {e}", manifest_path.display()));
        }
    };
    pool.install(|| {
        (0..rows).into_par_iter().for_each_init(
            || (Vec::new(), String::new(), String::new()),
            |(idx, buf, txt), r| {
                let key = &poems[site.poem_of_row[r]].key;
                for kind in [Kind::Similar, Kind::Different] {
                    for pg in 0..cap {
                        site.ordering_page(kind, r, pg, idx, buf, txt);
                        emit(site.ordering_path(kind, key, pg, "html"), buf.as_bytes());
                        if opts.txt {
                            emit(site.ordering_path(kind, key, pg, "txt"), txt.as_bytes());
                        }
                        bar.inc(1);
                    }
                }
            },
        );
        (0..chrono_pages).into_par_iter().for_each_init(
            || (String::new(), String::new()),
            |(buf, txt), pg| {
                site.chrono_page(pg, buf, txt);
                emit(format!("chronological/{}.html", site.page_name(pg)), buf.as_bytes());
                if opts.txt {
                    emit(format!("chronological/{}.txt", site.page_name(pg)), txt.as_bytes());
                }
                bar.inc(1);
            },
        );
    });
    let samples: Vec<(String, String, String)> = site
        .chrono
        .iter()
        .filter(|&&p| site.row_of[p].is_some())
        .take(12)
        .map(|&p| {
            let k = &poems[p].key;
            (
                k.clone(),
                site.ordering_path(Kind::Similar, k, 0, "html"),
                site.ordering_path(Kind::Different, k, 0, "html"),
            )
        })
        .collect();
    let index = templates::index(
        "Poems: similar and different",
        poems.len(),
        rows,
        &format!("chronological/{}.html", site.page_name(0)),
        &samples,
    );
    emit("index.html".into(), index.as_bytes());
    bar.finish_and_clear();

    // Remove pages of an earlier render that this one no longer has.
    let expected = Expected {
        keys: (0..rows).map(|r| safe_key(&poems[site.poem_of_row[r]].key)).collect(),
        digits,
        cap,
        chrono_pages,
        txt: opts.txt,
    };
    for d in ["similar", "different", "chronological"] {
        let dir = out.join(d);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                failures.lock().unwrap().push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if expected.stale(d, &name) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => summary.removed += 1,
                    Err(e) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{}: cannot remove: {e}", entry.path().display())),
                }
            }
        }
    }
    let finished = manifest.into_inner().unwrap().into_inner().map_err(|e| e.into_error());
    if let Err(e) = finished
        .map_err(anyhow::Error::from)
        .and_then(|tmp| tmp.persist(&manifest_path).map(drop).map_err(anyhow::Error::from))
    {
        failures
            .lock()
            .unwrap()
            .push(format!("{}: {e:#}", manifest_path.display()));
    }
    summary.pages = pages.into_inner();
    summary.written = written.into_inner();
    summary.unchanged = unchanged.into_inner();
    summary.bytes = bytes.into_inner();
    summary.failures = failures.into_inner().unwrap();
    summary.timings.phase_since("write", t);
    Ok(summary)
}

/// Which file names a render produces, to find the stale ones of an
/// earlier render (pages of poems now gone, pages beyond a smaller cap,
/// text twins no longer asked for, temp files of an interrupted run).
struct Expected {
    keys: std::collections::HashSet<String>,
    digits: usize,
    cap: usize,
    chrono_pages: usize,
    txt: bool,
}

impl Expected {
    fn stale(&self, dir: &str, name: &str) -> bool {
        if name.starts_with(".tmp") {
            return true;
        }
        let Some((stem, ext)) = name.rsplit_once('.') else {
            return false;
        };
        if ext != "html" && ext != "txt" {
            return false; // not ours
        }
        let (key, page) = match dir {
            "chronological" => (None, stem),
            _ => match stem.rsplit_once('-') {
                Some((k, p)) => (Some(k), p),
                None => return false,
            },
        };
        if page.is_empty() || !page.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let n: usize = page.parse().unwrap_or(usize::MAX);
        let keep = page.len() == self.digits
            && (ext == "html" || self.txt)
            && match key {
                None => n < self.chrono_pages,
                Some(k) => n < self.cap && self.keys.contains(k),
            };
        !keep
    }
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
    fn safe_keys_are_injective_and_plain() {
        assert_eq!(safe_key("songs-poems/0001"), "songs-poems_2F0001");
        assert_eq!(safe_key("a_b"), "a_5Fb");
        assert_eq!(safe_key("a/b"), "a_2Fb");
        assert_eq!(safe_key("é"), "_C3_A9");
        assert_ne!(safe_key("a_2Fb"), safe_key("a/b"));
    }

    #[test]
    fn wrapping_keeps_indentation() {
        let long = format!("\t{}", "word ".repeat(30));
        let w = wrap(&long);
        let lines: Vec<&str> = w.lines().collect();
        assert!(lines.len() > 1);
        for l in &lines {
            assert!(l.starts_with("        word"), "{l:?}");
            assert!(l.chars().count() <= COLUMNS, "{l:?}");
        }
        assert_eq!(wrap("a\n\n  b"), "a\n\n  b\n");
        assert_eq!(wrap("_\u{8}a_\u{8}b c\u{7}d\r"), "ab cd\n");
        let unbroken = "x".repeat(200);
        assert!(wrap(&unbroken).lines().all(|l| l.len() <= COLUMNS));
    }

    #[test]
    fn colors_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        std::fs::write(
            &p,
            r##"{"poem_colors": {"a/1": {"color": "#a0b0c0"}, "a/2": {"color": "red;x:y"}}}"##,
        )
        .unwrap();
        let c = read_colors(&p).unwrap();
        assert_eq!(c.get("a/1").map(String::as_str), Some("#a0b0c0"));
        assert!(!c.contains_key("a/2"));
    }
}
