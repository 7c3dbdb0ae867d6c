//! The complete lists: every ordering the site holds, packed into small
//! script files that `complete.html` shows as the reader scrolls
//! (`templates/complete.js`). They are plain `<script src>` files, so a site
//! opened from `file://` works as well as one on a static host, and poem
//! texts are written once for the whole site (`complete/poems-C.js`); the
//! lists are packed as [`super::packing`] says.

use std::fmt::Write;

use super::packing::Packing;
use super::site::{kind_word, Page, Site};
use super::templates;
use super::text::{clean, shown, title};
use crate::cache::Kind;

/// The reader script.
pub const READER: &str = include_str!("../../templates/complete.js");

/// Poems per text file.
pub const CHUNK: usize = 64;

/// A JSON string (for names and texts inside the script files).
fn json(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// One list file, `entries` packed after the script call that hands them over.
fn list_file(call: &str, packing: &Packing, entries: &[u32], out: &mut String) {
    out.clear();
    out.push_str(call);
    packing.encode(entries, out);
    out.push_str(LIST_END);
}

/// What closes a list file after its packed entries.
const LIST_END: &str = "\");\n";

/// The start of poem `p`'s list file, up to the packed entries.
fn poem_call(site: &Site, kind: Kind, p: usize, row: usize) -> String {
    format!(
        "DG.list(\"{}\",\"{}\",{{\"row\":{row},\"len\":{},\"total\":{}}},\"",
        kind_word(kind),
        site.stems[p],
        site.shown,
        site.rows.full()
    )
}

/// The start of theme `t`'s list file.
fn theme_call(site: &Site, kind: Kind, t: usize) -> String {
    let name = &site.rows.themes[t];
    let text = site.rows.theme_texts.get(t).unwrap_or(name);
    format!(
        "DG.list(\"theme-{}\",\"{}\",{{\"row\":-1,\"len\":{},\"total\":{},\"name\":{},\"text\":{}}},\"",
        kind_word(kind),
        site.theme_stems[t],
        site.theme_shown(),
        site.rows.keys.len(),
        json(&shown(name)),
        json(&shown(text))
    )
}

/// Poem `row`'s list file of `kind` into `out`; `idx` holds the row as the site shows it.
pub(super) fn poem_list(site: &Site, kind: Kind, row: usize, idx: &[u32], out: &mut String) {
    let p = site.poem_of_row[row];
    list_file(&poem_call(site, kind, p, row), &site.packing(), idx, out);
}

/// Theme `t`'s list file of `kind` into `out`.
pub(super) fn theme_list(site: &Site, kind: Kind, t: usize, idx: &[u32], out: &mut String) {
    list_file(&theme_call(site, kind, t), &site.packing(), idx, out);
}

/// Bytes of every list file, exactly as [`poem_list`] and [`theme_list`] write them.
pub(super) fn lists_bytes(site: &Site) -> u64 {
    let packing = site.packing();
    let tail = LIST_END.len();
    let mut total = 0u64;
    for kind in [Kind::Similar, Kind::Different] {
        for (row, &p) in site.poem_of_row.iter().enumerate() {
            total += (poem_call(site, kind, p, row).len() + packing.chars(site.shown) + tail) as u64;
        }
        for t in 0..site.rows.themes.len() {
            total += (theme_call(site, kind, t).len() + packing.chars(site.theme_shown()) + tail) as u64;
        }
    }
    total
}

/// The reader page, its script, the site's packing and the poems' texts.
pub(super) fn pages(site: &Site) -> Vec<Page> {
    let packing = site.packing();
    let mut pages = vec![
        Page::new(
            "complete.html".into(),
            templates::complete_page(&site.title, site.scheme),
        ),
        Page::new("complete/reader.js".into(), READER.to_owned()),
        Page::new(
            "complete/site.js".into(),
            format!(
                "DG.site({{\"rows\":{},\"radix\":{},\"k\":{},\"m\":{},\"chunk\":{CHUNK},\"first_page\":\"{}\"}});\n",
                site.poem_of_row.len(),
                packing.rows,
                packing.k,
                packing.m,
                site.page_name(0)
            ),
        ),
    ];
    for (c, rows) in site.poem_of_row.chunks(CHUNK).enumerate() {
        let mut body = format!("DG.poems({c},[\n");
        for &p in rows {
            poem_entry(site, p, &mut body);
        }
        body.push_str("]);\n");
        pages.push(Page::new(format!("complete/poems-{c}.js"), body));
    }
    pages
}

/// Poem `p` as the reader shows it: key, title, category, date, colour, stem, text.
fn poem_entry(site: &Site, p: usize, out: &mut String) {
    let poem = &site.poems[p];
    let opt = |s: Option<&str>| json(&s.map(shown).unwrap_or_default());
    let _ = writeln!(
        out,
        "[{},{},{},{},{},\"{}\",{}],",
        json(&shown(&poem.key)),
        json(&shown(&title(poem))),
        opt(poem.category.as_deref()),
        opt(poem.date.as_deref()),
        json(site.color[p].as_deref().unwrap_or("")),
        site.stems[p],
        json(&clean(&poem.text))
    );
}
