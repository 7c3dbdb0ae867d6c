//! The site model: which poems get which pages, the reading order, page
//! names, and each poem's pre-rendered block; a page is built from blocks.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use super::templates::{self, Listing};
use super::text::{file_stems, safe_key, shown, wrap, COLUMNS};
use super::Scheme;
use crate::cache::{Cache, Kind};
use crate::corpus::Poem;

/// The site: poems, their cache rows, the reading order and the blocks.
pub(super) struct Site<'a> {
    pub cache: &'a Cache,
    pub poems: &'a [Poem],
    pub per_page: usize,
    /// Digits of every page number (one width across the site).
    pub digits: usize,
    /// Pages per ordering (same for every poem); the page cap once planned.
    pub pages: usize,
    /// Pages per ordering before any cap.
    pub full_pages: usize,
    /// Pages per theme ordering before any cap (theme orderings list every
    /// poem, one more than a poem's).
    pub theme_full_pages: usize,
    /// File-name stem of each poem's pages (by corpus index).
    pub stems: Vec<String>,
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
    /// Whether each poem is golden (see [`super::golden`]).
    pub golden: Vec<bool>,
    pub txt: bool,
    /// Orderings shown from their far end.
    pub reverse: bool,
    pub scheme: Scheme,
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
    pub fn new(cache: &'a Cache, poems: &'a [Poem], per_page: usize, txt: bool) -> anyhow::Result<Self> {
        let excluded: HashSet<&str> = cache.manifest.report.excluded.iter().map(String::as_str).collect();
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
        let chrono = super::chronology::reading_order(poems, &excluded);
        let mut chrono_page_of = vec![None; poems.len()];
        for (i, &p) in chrono.iter().enumerate() {
            chrono_page_of[p] = Some(i / per_page);
        }
        let full_pages = cache.manifest.params.width.div_ceil(per_page).max(1);
        let theme_full_pages = cache.manifest.theme_width.div_ceil(per_page).max(1);
        let chrono_pages = chrono.len().div_ceil(per_page).max(1);
        let keys: Vec<&str> = poems.iter().map(|p| p.key.as_str()).collect();
        Ok(Site {
            cache,
            poems,
            per_page,
            digits: full_pages
                .max(chrono_pages)
                .max(theme_full_pages)
                .saturating_sub(1)
                .to_string()
                .len()
                .max(3),
            pages: full_pages,
            full_pages,
            theme_full_pages,
            blocks: Vec::new(),
            texts: Vec::new(),
            row_of,
            poem_of_row,
            chrono,
            chrono_page_of,
            golden: poems.iter().map(|p| super::golden::is_golden(&p.text)).collect(),
            txt,
            reverse: false,
            scheme: Scheme::default(),
            stems: file_stems(&keys)?,
        })
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
    }

    /// Poem `p`'s block and its text twin (empty unless `txt`).
    fn block(&self, p: usize, color: Option<&String>, chrono_page: usize) -> (String, String) {
        let poem = &self.poems[p];
        let text = wrap(&poem.text);
        let safe = &self.stems[p];
        let key = shown(&poem.key);
        let has = self.row_of[p].is_some();
        let sim = format!("../{}", self.ordering_path(Kind::Similar, p, 0, "html"));
        let diff = format!("../{}", self.ordering_path(Kind::Different, p, 0, "html"));
        let chrono = format!("../chronological/{}.html#p-{safe}", self.page_name(chrono_page));
        let html = templates::block(&templates::BlockData {
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
            templates::text_block(&key, poem.date.as_deref(), &text)
        } else {
            String::new()
        };
        (html, twin)
    }

    /// Poem `p`'s text twin (empty unless `txt`).
    pub fn text_block(&self, p: usize) -> &str {
        &self.texts[p]
    }

    /// Row `row` of an ordering into `idx`, from its far end with `--reverse`.
    pub fn row(&self, kind: Kind, row: usize, idx: &mut Vec<u32>) {
        self.cache.row(kind, row, idx);
        if self.reverse {
            idx.reverse();
        }
    }

    /// Row `t` of a theme's ordering into `idx`, from its far end with `--reverse`.
    pub fn theme_row(&self, kind: Kind, t: usize, idx: &mut Vec<u32>) {
        self.cache.theme_row(kind, t, idx);
        if self.reverse {
            idx.reverse();
        }
    }

    /// A page number at the site's width.
    pub fn page_name(&self, page: usize) -> String {
        format!("{page:0width$}", width = self.digits)
    }

    /// The site-relative path of one page of poem `p`'s ordering.
    pub fn ordering_path(&self, kind: Kind, p: usize, page: usize, ext: &str) -> String {
        let dir = if kind == Kind::Similar { "similar" } else { "different" };
        format!("{dir}/{}-{}.{ext}", self.stems[p], self.page_name(page))
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
            }
        }
        for name in &self.cache.manifest.themes {
            for kind in [Kind::Similar, Kind::Different] {
                for pg in 0..self.theme_pages() {
                    for ext in exts {
                        paths.insert(self.theme_path(kind, name, pg, ext));
                    }
                }
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

    /// The site-relative path of one page of a theme's ordering:
    /// `themes/similar-<name>-<page>` or `themes/different-<name>-<page>`.
    pub fn theme_path(&self, kind: Kind, name: &str, page: usize, ext: &str) -> String {
        let what = if kind == Kind::Similar { "similar" } else { "different" };
        format!("themes/{what}-{}-{}.{ext}", safe_key(name), self.page_name(page))
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
        let m = &self.cache.manifest;
        let name = &m.themes[t];
        self.theme_row(kind, t, idx);
        let slice = &idx[self.page_range(page, idx.len())];
        let pages = self.theme_pages();
        let link = |pg: usize| format!("../{}", self.theme_path(kind, name, pg, "html"));
        let twin = self
            .txt
            .then(|| format!("../{}", self.theme_path(kind, name, page, "txt")));
        let nav = templates::Nav::paged(page, pages, link, twin);
        let listing = listing(kind);
        let text = m.theme_texts.get(t).map_or(name.as_str(), String::as_str);
        buf.clear();
        buf.push_str(&templates::theme_head(
            listing,
            name,
            text,
            &nav,
            self.reverse,
            self.scheme,
        ));
        self.ordering_body(listing, page, slice, idx.len(), &nav, buf);
        if self.txt {
            txt.clear();
            txt.push_str(&templates::theme_text_head(listing, name, page, pages));
            for (i, &j) in slice.iter().enumerate() {
                if i > 0 {
                    txt.push_str(&templates::text_rule(COLUMNS));
                }
                txt.push_str(&self.texts[self.poem_of_row[j as usize]]);
            }
        }
    }

    /// The divider, the blocks of `slice` (page `page` of an ordering of
    /// `total` poems) and the page's foot: the part every ordering page shares.
    fn ordering_body(
        &self,
        listing: Listing,
        page: usize,
        slice: &[u32],
        total: usize,
        nav: &templates::Nav,
        buf: &mut String,
    ) {
        let first = page * self.per_page;
        buf.push_str(&templates::ordering_divider(
            listing,
            first + 1.min(slice.len()),
            first + slice.len(),
            total,
            self.reverse,
        ));
        for &j in slice {
            buf.push_str(&self.blocks[self.poem_of_row[j as usize]]);
        }
        buf.push_str(&templates::page_foot(nav));
    }

    /// Pages of the reading-order listing.
    pub fn chrono_pages(&self) -> usize {
        self.chrono.len().div_ceil(self.per_page).max(1)
    }

    /// Bytes of the blocks of the poems at these cache rows.
    pub fn blocks_len(&self, rows: &[u32]) -> u64 {
        rows.iter()
            .map(|&j| self.blocks[self.poem_of_row[j as usize]].len() as u64)
            .sum()
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
        let slice = &idx[self.page_range(page, idx.len())];
        let link = |pg: usize| format!("../{}", self.ordering_path(kind, p, pg, "html"));
        let text = self
            .txt
            .then(|| format!("../{}", self.ordering_path(kind, p, page, "txt")));
        let nav = templates::Nav::paged(page, self.pages, link, text);
        let listing = listing(kind);
        buf.clear();
        buf.push_str(&templates::ordering_head(
            listing,
            &key,
            &nav,
            self.reverse,
            self.scheme,
        ));
        buf.push_str(templates::ANCHOR_OPEN);
        buf.push_str(&self.blocks[p]);
        buf.push_str(templates::ANCHOR_CLOSE);
        self.ordering_body(listing, page, slice, idx.len(), &nav, buf);
        if self.txt {
            txt.clear();
            txt.push_str(&templates::ordering_text_head(listing, &key, page, self.pages));
            txt.push_str(&self.texts[p]);
            for &j in slice {
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
