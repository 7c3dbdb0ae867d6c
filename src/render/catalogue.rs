//! The poem list: every poem the site shows, one line each, by category
//! (categories in order of first appearance, poems in collection order),
//! paged as link lists (`poems/<page>.html`).

use std::collections::HashMap;

use super::links::link_pages;
use super::site::{Page, Site};
use super::templates;

/// Heading of poems without a category.
const NO_CATEGORY: &str = "no category";

/// The poem list's pages, from each shown poem's entry.
pub(super) fn pages(site: &Site, entries: &[Option<String>]) -> Vec<Page> {
    let category = |p: usize| site.poems[p].category.as_deref().unwrap_or(NO_CATEGORY);
    // Each category's rank: its first appearance.
    let mut rank: HashMap<&str, usize> = HashMap::new();
    for p in 0..site.poems.len() {
        let next = rank.len();
        rank.entry(category(p)).or_insert(next);
    }
    // A stable sort by rank keeps collection order inside each category.
    let mut shown: Vec<usize> = (0..site.poems.len()).filter(|&p| entries[p].is_some()).collect();
    shown.sort_by_key(|&p| rank[category(p)]);
    let scheme = site.scheme;
    link_pages(
        "poems/",
        shown.len(),
        |n| templates::catalogue_head(n, scheme),
        |r| {
            let mut s = String::new();
            let mut open: Option<&str> = None;
            for &p in &shown[r] {
                if open != Some(category(p)) {
                    if open.is_some() {
                        s.push_str(templates::LINKS_CLOSE);
                    }
                    s.push_str(&templates::category_heading(&super::text::shown(category(p))));
                    s.push_str(templates::LINKS_OPEN);
                    open = Some(category(p));
                }
                s.push_str(entries[p].as_deref().unwrap_or_default());
            }
            if open.is_some() {
                s.push_str(templates::LINKS_CLOSE);
            }
            s
        },
    )
}
