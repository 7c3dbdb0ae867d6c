//! The site model: which poems get which pages, the reading order, page
//! names, and each poem's pre-rendered block; a page is built from blocks.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::templates::{self, Listing};
use super::text::{clean, file_stems, shown, title, COLUMNS};
use super::Scheme;
use crate::cache::{Cache, Kind};
use crate::corpus::Poem;

/// What the site is made of that the orderings' cache decides, known
/// before any ordering is computed: which poems have orderings (in cache row
/// order), how long the orderings are, and the themes.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    /// Keys of the poems with orderings, in cache row order.
    pub keys: Vec<String>,
    /// Keys left out by `--exclude` (not in the reading order either).
    pub excluded: Vec<String>,
    /// Entries of each poem's ordering (a `--top-k` cut, or all the others).
    pub width: usize,
    /// Entries of each theme's ordering.
    pub theme_width: usize,
    pub themes: Vec<String>,
    /// What each theme's vector was embedded from.
    pub theme_texts: Vec<String>,
}

impl Rows {
    /// The rows of a finished cache.
    pub fn of_cache(cache: &Cache) -> Rows {
        let m = &cache.manifest;
        Rows {
            keys: m.keys.clone(),
            excluded: m.report.excluded.clone(),
            width: m.params.width,
            theme_width: m.theme_width,
            themes: m.themes.clone(),
            theme_texts: m.theme_texts.clone(),
        }
    }

    /// Entries of a full poem ordering: every other poem.
    pub fn full(&self) -> usize {
        self.keys.len().saturating_sub(1)
    }
}

/// The site: poems, their cache rows, the reading order and the blocks.
pub(super) struct Site<'a> {
    /// The orderings; `None` while the site is planned before computing.
    pub cache: Option<&'a Cache>,
    pub rows: Rows,
    pub poems: &'a [Poem],
    pub per_page: usize,
    /// Entries of each poem ordering the site holds (its complete lists):
    /// the cache's width, or fewer where the plan cut them.
    pub shown: usize,
    /// Digits of every page number (one width across the site).
    pub digits: usize,
    /// Static pages per ordering (same for every poem); the page cap once planned.
    pub pages: usize,
    /// Static pages per ordering before any cap.
    pub full_pages: usize,
    /// Static pages per theme ordering before any cap.
    pub theme_full_pages: usize,
    /// File-name stem of each poem's pages (by corpus index).
    pub stems: Vec<String>,
    /// File-name stem of each theme's pages (by theme index).
    pub theme_stems: Vec<String>,
    /// Pre-rendered block per poem (by corpus index).
    pub blocks: Vec<String>,
    /// Text twin of each block (empty unless `txt`).
    texts: Vec<String>,
    /// Cache row of each poem, if it has orderings.
    pub row_of: Vec<Option<usize>>,
    /// Corpus index of each cache row.
    pub poem_of_row: Vec<usize>,
    /// Poems shown in reading order (corpus indices).
    pub chrono: Vec<usize>,
    /// Each poem's page of the reading order, if shown there.
    pub chrono_page_of: Vec<Option<usize>>,
    /// Whether each poem is golden (see [`super::text::is_golden`]).
    pub golden: Vec<bool>,
    /// Each poem's colour bar, `#rrggbb` (by corpus index).
    pub color: Vec<Option<String>>,
    /// Whether any poem with orderings has a colour bar (the pages then
    /// carry the legend).
    pub colors: bool,
    pub txt: bool,
    /// Orderings shown from their far end.
    pub reverse: bool,
    pub scheme: Scheme,
    pub title: String,
}

/// A page rendered whole in memory (the index and the listings of words,
/// poems and golden poems), at its site-relative path.
pub(super) struct Page {
    pub path: String,
    pub body: String,
}

impl Page {
    pub fn new(path: String, body: String) -> Self {
        Page { path, body }
    }
}

fn listing(kind: Kind) -> Listing {
    match kind {
        Kind::Similar => Listing::Similar,
        Kind::Different => Listing::Different,
    }
}

impl<'a> Site<'a> {
    /// The site's shape: rows, reading order and page numbering; no blocks yet.
    pub fn new(rows: Rows, poems: &'a [Poem], per_page: usize, txt: bool) -> anyhow::Result<Self> {
        let row_index: HashMap<&str, usize> = rows.keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
        let row_of: Vec<Option<usize>> = poems.iter().map(|p| row_index.get(p.key.as_str()).copied()).collect();
        let mut poem_of_row = vec![0; rows.keys.len()];
        for (p, r) in row_of.iter().enumerate() {
            if let Some(r) = r {
                poem_of_row[*r] = p;
            }
        }
        let excluded: HashSet<&str> = rows.excluded.iter().map(String::as_str).collect();
        let chrono = super::chronology::reading_order(poems, &excluded);
        let keys: Vec<&str> = poems.iter().map(|p| p.key.as_str()).collect();
        let stems = file_stems("poems", &keys)?;
        let names: Vec<&str> = rows.themes.iter().map(String::as_str).collect();
        let theme_stems = file_stems("themes", &names)?;
        let mut site = Site {
            cache: None,
            shown: rows.width,
            rows,
            poems,
            per_page: 1,
            digits: 3,
            pages: 1,
            full_pages: 1,
            theme_full_pages: 1,
            blocks: Vec::new(),
            texts: Vec::new(),
            row_of,
            poem_of_row,
            chrono_page_of: vec![None; poems.len()],
            chrono,
            golden: poems.iter().map(|p| super::text::is_golden(&p.text)).collect(),
            color: vec![None; poems.len()],
            colors: false,
            txt,
            reverse: false,
            scheme: Scheme::default(),
            title: super::templates::SITE_TITLE.to_owned(),
            stems,
            theme_stems,
        };
        // Page numbers are as wide as a page of one entry would need, so
        // reshaping never renames a page nor changes a block's size.
        let most = site.rows.width.max(site.rows.theme_width).max(site.chrono.len());
        site.digits = most.saturating_sub(1).to_string().len().max(3);
        site.reshape(per_page, site.rows.width);
        Ok(site)
    }

    /// Sets the entries per page and the entries each poem ordering holds;
    /// page counts, page-number width and reading-order pages follow. Blocks
    /// link to page numbers, so they are rendered after the last reshape.
    pub fn reshape(&mut self, per_page: usize, shown: usize) {
        let per_page = per_page.max(1);
        self.per_page = per_page;
        self.shown = shown.min(self.rows.width);
        for (i, &p) in self.chrono.iter().enumerate() {
            self.chrono_page_of[p] = Some(i / per_page);
        }
        self.full_pages = self.shown.div_ceil(per_page).max(1);
        self.theme_full_pages = self.theme_shown().div_ceil(per_page).max(1);
        self.pages = self.full_pages;
    }

    /// Entries of each theme ordering the site holds: all of them, or as
    /// many as a poem ordering's when the plan cut those.
    pub fn theme_shown(&self) -> usize {
        if self.shown >= self.rows.width {
            self.rows.theme_width
        } else {
            self.rows.theme_width.min(self.shown)
        }
    }

    /// Renders every poem's block (and text twin when `txt`) once.
    pub fn render_blocks(&mut self, colors: &HashMap<String, String>, pool: &rayon::ThreadPool) {
        let site = &*self;
        let (blocks, texts): (Vec<String>, Vec<String>) = pool.install(|| {
            (0..site.poems.len())
                .into_par_iter()
                .map(|p| site.block(p, colors.get(&site.poems[p].key), site.chrono_page_of[p].unwrap_or(0)))
                .unzip()
        });
        self.blocks = blocks;
        self.texts = texts;
        self.color = self.poems.iter().map(|p| colors.get(&p.key).cloned()).collect();
        self.colors = self.poem_of_row.iter().any(|&p| self.color[p].is_some());
    }

    /// Poem `p`'s block and its text twin (empty unless `txt`).
    fn block(&self, p: usize, color: Option<&String>, chrono_page: usize) -> (String, String) {
        let poem = &self.poems[p];
        let text = clean(&poem.text);
        let safe = &self.stems[p];
        let key = shown(&poem.key);
        let has = self.row_of[p].is_some();
        let sim = format!("../{}", self.ordering_path(Kind::Similar, p, 0, "html"));
        let diff = format!("../{}", self.ordering_path(Kind::Different, p, 0, "html"));
        let chrono = format!("../chronological/{}.html#p-{safe}", self.page_name(chrono_page));
        let html = templates::block(&templates::BlockData {
            title: &shown(&title(poem)),
            key: &key,
            anchor_id: &format!("p-{safe}"),
            category: poem.category.as_deref().map(shown).as_deref(),
            date: poem.date.as_deref().map(shown).as_deref(),
            color: color.map(String::as_str),
            golden: self.golden[p],
            text: &text,
            similar_href: has.then_some(sim.as_str()),
            different_href: has.then_some(diff.as_str()),
            chronological_href: &chrono,
            note: (!has).then_some(templates::NO_EMBEDDING),
        })
        .into_string();
        // The text twin only when text pages are asked for.
        let twin = if self.txt {
            templates::text_block(&key, poem.date.as_deref().map(shown).as_deref(), &text)
        } else {
            String::new()
        };
        (html, twin)
    }

    /// Poem `p`'s text twin (empty unless `txt`).
    pub fn text_block(&self, p: usize) -> &str {
        &self.texts[p]
    }

    /// How this site packs its complete lists.
    pub fn packing(&self) -> super::packing::Packing {
        super::packing::Packing::for_rows(self.rows.keys.len())
    }

    fn orderings(&self) -> &Cache {
        self.cache.expect("orderings are read only once computed")
    }

    /// Row `row` of an ordering into `idx` (from its far end with
    /// `--reverse`), cut to the entries the site holds.
    pub fn row(&self, kind: Kind, row: usize, idx: &mut Vec<u32>) {
        self.orderings().row(kind, row, idx);
        if self.reverse {
            idx.reverse();
        }
        idx.truncate(self.shown);
    }

    /// Row `t` of a theme's ordering into `idx`, as [`Site::row`].
    pub fn theme_row(&self, kind: Kind, t: usize, idx: &mut Vec<u32>) {
        self.orderings().theme_row(kind, t, idx);
        if self.reverse {
            idx.reverse();
        }
        idx.truncate(self.theme_shown());
    }

    /// A page number at the site's width.
    pub fn page_name(&self, page: usize) -> String {
        format!("{page:0width$}", width = self.digits)
    }

    /// The site-relative path of one page of poem `p`'s ordering.
    pub fn ordering_path(&self, kind: Kind, p: usize, page: usize, ext: &str) -> String {
        format!("{}/{}-{}.{ext}", kind_word(kind), self.stems[p], self.page_name(page))
    }

    /// The site-relative path of every page this render writes.
    pub fn planned_paths(&self) -> std::collections::BTreeSet<String> {
        let exts: &[&str] = if self.txt { &["html", "txt"] } else { &["html"] };
        let mut paths = std::collections::BTreeSet::new();
        for &p in &self.poem_of_row {
            for kind in [Kind::Similar, Kind::Different] {
                for pg in 0..self.pages {
                    for ext in exts {
                        paths.insert(self.ordering_path(kind, p, pg, ext));
                    }
                }
                paths.insert(self.list_path(kind, p));
            }
        }
        for t in 0..self.rows.themes.len() {
            for kind in [Kind::Similar, Kind::Different] {
                for pg in 0..self.theme_pages() {
                    for ext in exts {
                        paths.insert(self.theme_path(kind, t, pg, ext));
                    }
                }
                paths.insert(self.theme_list_path(kind, t));
            }
        }
        for pg in 0..self.chrono_pages() {
            for ext in exts {
                paths.insert(format!("chronological/{}.{ext}", self.page_name(pg)));
            }
        }
        paths.insert("index.html".to_owned());
        paths
    }

    /// The site-relative path of one page of theme `t`'s ordering:
    /// `themes/similar-<stem>-<page>` or `themes/different-<stem>-<page>`.
    pub fn theme_path(&self, kind: Kind, t: usize, page: usize, ext: &str) -> String {
        format!(
            "themes/{}-{}-{}.{ext}",
            kind_word(kind),
            self.theme_stems[t],
            self.page_name(page)
        )
    }

    /// The packed complete list of poem `p`'s ordering (see [`super::complete`]).
    pub fn list_path(&self, kind: Kind, p: usize) -> String {
        format!("complete/{}/{}.js", kind_word(kind), self.stems[p])
    }

    /// The packed complete list of theme `t`'s ordering.
    pub fn theme_list_path(&self, kind: Kind, t: usize) -> String {
        format!("complete/themes/{}-{}.js", kind_word(kind), self.theme_stems[t])
    }

    /// The reader page's address of poem `p`'s complete list, at entry
    /// `pos` (1-based) or its start, from a page one folder down.
    pub fn complete_href(&self, kind: Kind, p: usize, pos: Option<usize>) -> String {
        let at = pos.map(|n| format!("/{n}")).unwrap_or_default();
        format!("../complete.html#{}/{}{at}", kind_word(kind), self.stems[p])
    }

    /// The reader page's address of theme `t`'s complete list, as [`Site::complete_href`].
    pub fn theme_complete_href(&self, kind: Kind, t: usize, pos: Option<usize>) -> String {
        let at = pos.map(|n| format!("/{n}")).unwrap_or_default();
        format!("../complete.html#theme-{}/{}{at}", kind_word(kind), self.theme_stems[t])
    }

    /// Pages per theme ordering: the cap, or all of them when uncapped.
    pub fn theme_pages(&self) -> usize {
        self.theme_pages_for(self.pages)
    }

    /// Pages per theme ordering under a cap of `cap` pages per ordering.
    pub fn theme_pages_for(&self, cap: usize) -> usize {
        if cap >= self.full_pages {
            self.theme_full_pages
        } else {
            cap.min(self.theme_full_pages)
        }
    }

    /// Renders one page of theme `t`'s ordering into `buf`; `txt` gets the
    /// text twin.
    pub fn theme_page(
        &self,
        kind: Kind,
        t: usize,
        page: usize,
        idx: &mut Vec<u32>,
        buf: &mut String,
        txt: &mut String,
    ) {
        self.theme_page_as(kind, t, page, self.theme_pages(), idx, buf, txt);
    }

    /// [`Site::theme_page`] with `pages` static pages per ordering; before
    /// the orderings exist, the page without its entries (to measure it).
    #[allow(clippy::too_many_arguments)]
    pub fn theme_page_as(
        &self,
        kind: Kind,
        t: usize,
        page: usize,
        pages: usize,
        idx: &mut Vec<u32>,
        buf: &mut String,
        txt: &mut String,
    ) {
        let name = &self.rows.themes[t];
        let len = match self.cache {
            Some(_) => {
                self.theme_row(kind, t, idx);
                idx.len()
            }
            None => {
                idx.clear();
                self.theme_shown()
            }
        };
        let range = self.page_range(page, len);
        let entries = idx.get(range.clone()).unwrap_or_default();
        let pages = pages.min(self.theme_full_pages);
        let link = |pg: usize| format!("../{}", self.theme_path(kind, t, pg, "html"));
        let twin = self
            .txt
            .then(|| format!("../{}", self.theme_path(kind, t, page, "txt")));
        let rest = Some(self.theme_complete_href(kind, t, Some(range.end + 1))).filter(|_| range.end < len);
        let nav = templates::Nav::paged(page, pages, link, twin).then(rest);
        let listing = listing(kind);
        let text = self.rows.theme_texts.get(t).map_or(name.as_str(), String::as_str);
        buf.clear();
        buf.push_str(&templates::theme_head(
            listing,
            &shown(name),
            &shown(text),
            &nav,
            self.reverse,
            self.scheme,
        ));
        let complete = self.theme_complete_href(kind, t, None);
        let part = self.part(range, self.rows.keys.len(), len, &complete);
        self.ordering_body(listing, entries, &part, &nav, buf);
        txt.clear();
        if self.txt {
            txt.push_str(&templates::theme_text_head(listing, &shown(name), page, pages));
            for (i, &j) in entries.iter().enumerate() {
                if i > 0 {
                    txt.push_str(&templates::text_rule(COLUMNS));
                }
                txt.push_str(&self.texts[self.poem_of_row[j as usize]]);
            }
        }
    }

    /// Where entries `range` stand in an ordering of `total` entries of
    /// which the site holds `held`.
    fn part<'h>(
        &self,
        range: std::ops::Range<usize>,
        total: usize,
        held: usize,
        complete: &'h str,
    ) -> templates::Part<'h> {
        templates::Part {
            first: range.start + 1.min(range.len()),
            last: range.end,
            total,
            shown: held,
            complete,
        }
    }

    /// The divider, the legend, the blocks of `slice` and the page's foot:
    /// the part every ordering page shares.
    fn ordering_body(
        &self,
        listing: Listing,
        slice: &[u32],
        part: &templates::Part,
        nav: &templates::Nav,
        buf: &mut String,
    ) {
        buf.push_str(&templates::ordering_divider(listing, part, self.reverse));
        if self.colors {
            buf.push_str(&templates::legend());
        }
        for &j in slice {
            buf.push_str(&self.blocks[self.poem_of_row[j as usize]]);
        }
        buf.push_str(&templates::page_foot(nav));
    }

    /// Pages of the reading-order listing.
    pub fn chrono_pages(&self) -> usize {
        self.chrono.len().div_ceil(self.per_page).max(1)
    }

    /// Bytes poem `p` adds to an ordering page: its block, and with `--txt`
    /// its text twin and the rule before it.
    pub fn entry_len(&self, p: usize) -> u64 {
        let twin = if self.txt { self.texts[p].len() + COLUMNS + 1 } else { 0 };
        (self.blocks[p].len() + twin) as u64
    }

    /// Bytes the poems at these cache rows add to an ordering page.
    pub fn entries_len(&self, rows: &[u32]) -> u64 {
        rows.iter().map(|&j| self.entry_len(self.poem_of_row[j as usize])).sum()
    }

    /// The entries of `page` within an ordering of `len` entries.
    pub fn page_range(&self, page: usize, len: usize) -> std::ops::Range<usize> {
        (page * self.per_page).min(len)..((page + 1) * self.per_page).min(len)
    }

    /// Renders one ordering page into `buf`; `txt` gets the text twin.
    pub fn ordering_page(
        &self,
        kind: Kind,
        row: usize,
        page: usize,
        idx: &mut Vec<u32>,
        buf: &mut String,
        txt: &mut String,
    ) {
        let p = self.poem_of_row[row];
        let key = shown(&self.poems[p].key);
        self.row(kind, row, idx);
        let range = self.page_range(page, idx.len());
        let link = |pg: usize| format!("../{}", self.ordering_path(kind, p, pg, "html"));
        let text = self
            .txt
            .then(|| format!("../{}", self.ordering_path(kind, p, page, "txt")));
        let rest = Some(self.complete_href(kind, p, Some(range.end + 1))).filter(|_| range.end < idx.len());
        let nav = templates::Nav::paged(page, self.pages, link, text).then(rest);
        let listing = listing(kind);
        buf.clear();
        buf.push_str(&templates::ordering_head(
            listing,
            &shown(&title(&self.poems[p])),
            &nav,
            self.reverse,
            self.scheme,
        ));
        buf.push_str(templates::ANCHOR_OPEN);
        buf.push_str(&self.blocks[p]);
        buf.push_str(templates::ANCHOR_CLOSE);
        let complete = self.complete_href(kind, p, None);
        let part = self.part(range.clone(), self.rows.full(), idx.len(), &complete);
        self.ordering_body(listing, &idx[range.clone()], &part, &nav, buf);
        if self.txt {
            txt.clear();
            txt.push_str(&templates::ordering_text_head(listing, &key, page, self.pages));
            txt.push_str(&self.texts[p]);
            for &j in &idx[range] {
                txt.push_str(&templates::text_rule(COLUMNS));
                txt.push_str(&self.texts[self.poem_of_row[j as usize]]);
            }
        }
    }

    /// Renders one page of the reading-order listing into `buf` and `txt`.
    pub fn chrono_page(&self, page: usize, buf: &mut String, txt: &mut String) {
        let pages = self.chrono_pages();
        let link = |pg: usize| format!("{}.html", self.page_name(pg));
        let text = self.txt.then(|| format!("{}.txt", self.page_name(page)));
        let nav = templates::Nav::paged(page, pages, link, text);
        buf.clear();
        buf.push_str(&templates::chronological_head(&nav, self.scheme));
        if self.colors {
            buf.push_str(&templates::legend());
        }
        txt.clear();
        for &p in self.chrono.iter().skip(page * self.per_page).take(self.per_page) {
            buf.push_str(&self.blocks[p]);
            if self.txt {
                txt.push_str(&self.texts[p]);
                txt.push_str(&templates::text_rule(COLUMNS));
            }
        }
        buf.push_str(&templates::page_foot(&nav));
    }
}

/// The word for an ordering in file names and addresses.
pub fn kind_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Similar => "similar",
        Kind::Different => "different",
    }
}
