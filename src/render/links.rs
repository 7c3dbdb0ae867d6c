//! Link lists: compact pages of one-line entries (a poem's first line
//! linking to it), paged, shared by the word pages and the poem list.

use std::ops::Range;

use super::site::{Page, Site};
use super::templates::{self, Nav};
use crate::cache::Kind;

/// Entries on one link-list page.
pub const LINKS_PER_PAGE: usize = 500;

/// Pages `<base><page>.html` of `entries` entries, [`LINKS_PER_PAGE`] a
/// page (always at least one): `head` starts a page, `body` renders a
/// range of entries.
pub(super) fn link_pages(
    base: &str,
    entries: usize,
    head: impl Fn(&Nav) -> String,
    body: impl Fn(Range<usize>) -> String,
) -> Vec<Page> {
    let n = entries.div_ceil(LINKS_PER_PAGE).max(1);
    let file = |pg: usize| format!("{}{pg:03}.html", base.rsplit('/').next().unwrap_or(base));
    (0..n)
        .map(|pg| {
            let nav = Nav::paged(pg, n, file, None);
            let mut html = head(&nav);
            html.push_str(&body(pg * LINKS_PER_PAGE..((pg + 1) * LINKS_PER_PAGE).min(entries)));
            html.push_str(&templates::page_foot(&nav));
            Page::new(format!("{base}{pg:03}.html"), html)
        })
        .collect()
}

/// The site-relative page that shows poem `p`: its own similar page when it
/// has orderings, else its anchor in the reading order; `None` for a poem
/// the site does not show.
pub(super) fn poem_href(site: &Site, p: usize) -> Option<String> {
    if site.row_of[p].is_some() {
        return Some(site.ordering_path(Kind::Similar, p, 0, "html"));
    }
    let page = site.chrono_page_of[p]?;
    Some(format!(
        "chronological/{}.html#p-{}",
        site.page_name(page),
        site.stems[p]
    ))
}

/// Each shown poem's link-list entry (by corpus index), from a page one
/// folder down; `None` for poems the site does not show.
pub(super) fn poem_entries(site: &Site) -> Vec<Option<String>> {
    (0..site.poems.len())
        .map(|p| {
            let href = poem_href(site, p)?;
            let poem = &site.poems[p];
            // Shown as on every page: control and bidi characters escaped.
            Some(templates::link_entry(
                &format!("../{href}"),
                &super::text::shown(&super::text::first_line(&poem.text)),
                &super::text::shown(&poem.key),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_pages_chain_and_cover_every_entry() {
        let pages = link_pages(
            "words/sea-",
            1001,
            |n| format!("<{}/{}>", n.page, n.pages),
            |r| format!("[{}..{}]", r.start, r.end),
        );
        let paths: Vec<&str> = pages.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            ["words/sea-000.html", "words/sea-001.html", "words/sea-002.html"]
        );
        assert!(pages[0].body.starts_with("<0/3>[0..500]"));
        assert!(pages[2].body.starts_with("<2/3>[1000..1001]"));
        assert!(pages[1].body.contains("href=\"sea-000.html\"") && pages[1].body.contains("href=\"sea-002.html\""));
        assert_eq!(link_pages("poems/", 0, |_| String::new(), |_| String::new()).len(), 1);
    }
}
