//! The complete lists: every ordering the site holds, packed into small
//! script files that `complete.html` shows as the reader scrolls
//! (`templates/complete.js`). They are plain `<script src>` files, so a site
//! opened from `file://` works as well as one on a static host, and poem
//! texts are written once for the whole site (`complete/poems-C.js`).
//!
//! Packing: an ordering's entries are cache rows, below `rows`. Groups of
//! `k` entries make one number below `rows^k`, written as `m` base-93
//! digits (printable ASCII without `"` and `\`, so a list is a plain string
//! literal). Each site takes the `k` with the fewest characters per entry
//! whose numbers stay below 2^53, exact in a JavaScript number: 2 characters
//! an entry up to 8,649 poems, 2.33 up to 39,185, 2.5 up to 83,407, 2.67
//! up to 177,536.

use std::fmt::Write;

use super::site::{kind_word, Page, Site};
use super::templates;
use super::text::{clean, shown, title};
use crate::cache::Kind;

/// The reader script.
pub const READER: &str = include_str!("../../templates/complete.js");

/// Poems per text file.
pub const CHUNK: usize = 64;

const RADIX: u64 = 93;

/// How a site packs its lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Packing {
    /// Every entry is below this.
    pub rows: u64,
    /// Entries per group.
    pub k: usize,
    /// Characters per group.
    pub m: usize,
}

/// The fewest base-93 digits that hold every number below `v`.
fn digits_for(v: u128) -> usize {
    let mut m = 1;
    let mut top = RADIX as u128;
    while top < v {
        top *= RADIX as u128;
        m += 1;
    }
    m
}

impl Packing {
    /// The densest packing of entries below `rows`.
    pub fn for_rows(rows: usize) -> Packing {
        let n = (rows as u64).max(2);
        let mut best = Packing {
            rows: n,
            k: 1,
            m: digits_for(n as u128),
        };
        for k in 2..=4u32 {
            let top = (n as u128).pow(k);
            if top > 1 << 53 {
                break;
            }
            let m = digits_for(top);
            if m * best.k < best.m * k as usize {
                best = Packing {
                    rows: n,
                    k: k as usize,
                    m,
                };
            }
        }
        best
    }

    /// Characters of a list of `len` entries.
    pub fn chars(&self, len: usize) -> usize {
        len.div_ceil(self.k) * self.m
    }

    /// Appends the packed `entries` to `out`.
    pub fn encode(&self, entries: &[u32], out: &mut String) {
        let mut digits = vec![0u8; self.m];
        for group in entries.chunks(self.k) {
            let mut v: u64 = 0;
            for i in 0..self.k {
                v = v * self.rows + group.get(i).map_or(0, |&e| u64::from(e));
            }
            for d in digits.iter_mut().rev() {
                *d = digit(v % RADIX);
                v /= RADIX;
            }
            out.extend(digits.iter().map(|&d| d as char));
        }
    }
}

/// Base-93 digit `d` as a character: from ' ', skipping '"' and '\'.
fn digit(d: u64) -> u8 {
    let mut c = b' ' + d as u8;
    if c >= b'"' {
        c += 1;
    }
    if c >= b'\\' {
        c += 1;
    }
    c
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The reader's decoding, in Rust: the inverse of [`Packing::encode`].
    fn decode(p: &Packing, data: &str, len: usize) -> Vec<u32> {
        let value = |c: u8| u64::from(c - 32 - u8::from(c > b'"') - u8::from(c > b'\\'));
        let mut out = Vec::new();
        for group in data.as_bytes().chunks(p.m) {
            let mut v = group.iter().fold(0u64, |v, &c| v * RADIX + value(c));
            let mut g = vec![0u32; p.k];
            for e in g.iter_mut().rev() {
                *e = (v % p.rows) as u32;
                v /= p.rows;
            }
            out.extend(g);
        }
        out.truncate(len);
        out
    }

    #[test]
    fn packing_is_dense_and_round_trips() {
        assert_eq!(
            Packing::for_rows(8_649),
            Packing {
                rows: 8_649,
                k: 1,
                m: 2
            }
        );
        let p = Packing::for_rows(15_195);
        assert_eq!((p.k, p.m), (3, 7), "2.33 characters an entry for fortunes");
        let p = Packing::for_rows(39_186);
        assert_eq!((p.k, p.m), (2, 5), "past 39,185 poems three entries need 8 characters");
        assert_eq!(
            Packing::for_rows(100_000),
            Packing {
                rows: 100_000,
                k: 3,
                m: 8
            }
        );
        for rows in [
            1,
            2,
            93,
            94,
            8_649,
            8_650,
            15_195,
            39_185,
            39_186,
            83_407,
            83_408,
            100_000,
            1 << 20,
        ] {
            let p = Packing::for_rows(rows);
            assert!((p.rows as u128).pow(p.k as u32) <= 1 << 53);
            let entries: Vec<u32> = (0..1000u32).map(|i| (i * 7919) % rows.max(1) as u32).collect();
            for len in [0, 1, 2, 3, 999, 1000] {
                let mut s = String::new();
                p.encode(&entries[..len], &mut s);
                assert_eq!(s.len(), p.chars(len));
                assert!(s.bytes().all(|c| (b' '..=b'~').contains(&c) && c != b'"' && c != b'\\'));
                assert_eq!(decode(&p, &s, len), &entries[..len], "rows {rows}, len {len}");
            }
        }
    }
}
