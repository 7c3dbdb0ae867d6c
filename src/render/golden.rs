//! Golden poems: exactly 1,024 characters once trailing whitespace is
//! trimmed, counted in Unicode scalar values. Their blocks are framed on
//! every page, and `golden/` pages collect them.

use super::site::{Page, Site};
use super::templates::{self, Nav};
use super::text::COLUMNS;

/// The golden pages (`golden/<page>.html`, with text twins when asked
/// for): the golden poems shown in reading order, `per_page` a page. There
/// is always a first page, so the index's link holds even with none.
pub(super) fn pages(site: &Site) -> Vec<Page> {
    let golden: Vec<usize> = site.chrono.iter().copied().filter(|&p| site.golden[p]).collect();
    let chunks: Vec<&[usize]> = if golden.is_empty() {
        vec![&[]]
    } else {
        golden.chunks(site.per_page).collect()
    };
    let n = chunks.len();
    let name = |pg: usize, ext: &str| format!("{pg:03}.{ext}");
    let mut out = Vec::new();
    for (pg, chunk) in chunks.iter().enumerate() {
        let text = site.txt.then(|| name(pg, "txt"));
        let nav = Nav::paged(pg, n, |p| name(p, "html"), text);
        let mut html = templates::golden_head(&nav, golden.len(), site.scheme);
        let mut txt = templates::golden_text_head(pg, n);
        for &p in chunk.iter() {
            html.push_str(&site.blocks[p]);
            txt.push_str(site.text_block(p));
            txt.push_str(&templates::text_rule(COLUMNS));
        }
        html.push_str(&templates::page_foot(&nav));
        out.push(Page::new(format!("golden/{}", name(pg, "html")), html));
        if site.txt {
            out.push(Page::new(format!("golden/{}", name(pg, "txt")), txt));
        }
    }
    out
}
