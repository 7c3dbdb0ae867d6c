//! The size projection and the page cap: how big the site will be, and how
//! many pages per ordering fit `--max-pages` and `--budget`.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::site::{Page, Site};
use crate::cache::Kind;

/// How many pages the render writes, and their projected size.
#[derive(Debug, Clone, Copy)]
pub(super) struct PagePlan {
    /// Pages per ordering.
    pub cap: usize,
    /// Bytes of the HTML pages.
    pub projected_bytes: u64,
    /// HTML pages: orderings, reading order and the listings.
    pub html_pages: usize,
    /// Every file: the HTML pages and their text twins.
    pub files: usize,
}

/// Bytes of a page other than its blocks (head, divider, foot), measured on
/// the first ordering page.
fn page_overhead(site: &Site) -> u64 {
    if site.poem_of_row.is_empty() {
        return 0;
    }
    let (mut page, mut text, mut idx) = (String::new(), String::new(), Vec::new());
    site.ordering_page(Kind::Similar, 0, 0, &mut idx, &mut page, &mut text);
    site.row(Kind::Similar, 0, &mut idx);
    let body = site.blocks_len(&idx[..site.per_page.min(idx.len())]);
    page.len() as u64 - body - site.blocks[site.poem_of_row[0]].len() as u64
}

/// Bytes of page `p` of every ordering, for each `p` below the full count:
/// exactly as the pages will be built except for the measured overhead.
fn bytes_per_page_number(site: &Site, overhead: u64, pool: &rayon::ThreadPool) -> Vec<u64> {
    let full_pages = site.full_pages;
    pool.install(|| {
        (0..site.poem_of_row.len())
            .into_par_iter()
            .map_init(Vec::new, |idx, r| {
                let mut acc = vec![0u64; full_pages];
                for kind in [Kind::Similar, Kind::Different] {
                    site.row(kind, r, idx);
                    let anchor = site.blocks[site.poem_of_row[r]].len() as u64;
                    for (pg, a) in acc.iter_mut().enumerate() {
                        *a += overhead + anchor + site.blocks_len(&idx[site.page_range(pg, idx.len())]);
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
    })
}

/// Bytes of the theme pages, added to the same page numbers (a theme's
/// pages beyond the poems' count go with the last, written only uncapped).
fn add_theme_pages(site: &Site, overhead: u64, per_page_number: &mut [u64]) {
    let Some(last) = per_page_number.len().checked_sub(1) else {
        return;
    };
    let mut idx = Vec::new();
    for t in 0..site.cache.manifest.themes.len() {
        for kind in [Kind::Similar, Kind::Different] {
            site.theme_row(kind, t, &mut idx);
            for pg in 0..site.theme_full_pages {
                per_page_number[pg.min(last)] += overhead + site.blocks_len(&idx[site.page_range(pg, idx.len())]);
            }
        }
    }
}

/// The most pages per ordering within `budget` bytes, given the bytes the
/// site needs whatever the cap (`fixed`).
fn pages_within(budget: u64, fixed: u64, per_page_number: &[u64]) -> Result<usize> {
    let mut total = fixed;
    let mut fit = 0;
    for b in per_page_number {
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
            bytesize::ByteSize(fixed + per_page_number.first().copied().unwrap_or(0))
        );
    }
    Ok(fit)
}

/// Projects the site's size and picks the page cap; `listings` are the
/// pages rendered whole in memory (index, words, poem list, golden), whose
/// size does not depend on the cap.
pub(super) fn plan(
    site: &Site,
    listings: &[Page],
    max_pages: Option<usize>,
    budget: Option<u64>,
    pool: &rayon::ThreadPool,
) -> Result<PagePlan> {
    let overhead = page_overhead(site);
    let mut per_page_number = bytes_per_page_number(site, overhead, pool);
    add_theme_pages(site, overhead, &mut per_page_number);
    let chrono_pages = site.chrono_pages();
    let html = |p: &&Page| p.path.ends_with(".html");
    let fixed: u64 = site.chrono.iter().map(|&p| site.blocks[p].len() as u64).sum::<u64>()
        + overhead * chrono_pages as u64
        + listings.iter().filter(html).map(|p| p.body.len() as u64).sum::<u64>();
    let full_pages = site.full_pages;
    let mut cap = max_pages.unwrap_or(full_pages).min(full_pages).max(1);
    if let Some(budget) = budget {
        cap = cap.min(pages_within(budget, fixed, &per_page_number)?);
    }
    let orderings = site.poem_of_row.len() * 2 * cap + site.cache.manifest.themes.len() * 2 * site.theme_pages_for(cap);
    let html_pages = orderings + chrono_pages + listings.iter().filter(html).count();
    let twins = if site.txt { orderings + chrono_pages } else { 0 };
    Ok(PagePlan {
        cap,
        projected_bytes: fixed + per_page_number.iter().take(cap).sum::<u64>(),
        html_pages,
        files: html_pages + twins + listings.iter().filter(|p| !html(p)).count(),
    })
}

/// Sites larger than this are written only with an explicit cap
/// (`--max-pages`, `--budget`) or `--all`.
pub const CONFIRM_ABOVE: u64 = 5_000_000_000;

/// What the size guard needs to know about a render.
pub(super) struct SpaceCheck {
    /// Bytes the site will take.
    pub projected: u64,
    /// Bytes the earlier render's pages take now (they are replaced).
    pub reclaimed: u64,
    /// Bytes free for this user on the site's file system.
    pub available: u64,
    /// Whether the user capped the site or asked for all of it.
    pub explicit: bool,
    pub confirm_above: u64,
}

/// Refuses a site that cannot fit on its disk, or one above
/// `confirm_above` that nobody asked for.
pub(super) fn check_space(c: &SpaceCheck, out: &std::path::Path) -> Result<()> {
    let need = c.projected.saturating_sub(c.reclaimed);
    if need > c.available {
        bail!(
            "the site would take {} but {} has only {} free; cap it with --budget or --max-pages",
            bytesize::ByteSize(c.projected),
            out.display(),
            bytesize::ByteSize(c.available)
        );
    }
    if c.projected > c.confirm_above && !c.explicit {
        bail!(
            "the site would take {} in {}; cap it with --budget or --max-pages, or pass --all to write all of it",
            bytesize::ByteSize(c.projected),
            out.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(projected: u64, reclaimed: u64, available: u64, explicit: bool) -> Result<()> {
        let c = SpaceCheck {
            projected,
            reclaimed,
            available,
            explicit,
            confirm_above: CONFIRM_ABOVE,
        };
        check_space(&c, std::path::Path::new("site"))
    }

    #[test]
    fn the_size_guard_refuses_what_does_not_fit() {
        let e = check(2_000, 0, 1_000, true).unwrap_err().to_string();
        assert!(
            e.contains("--budget") && e.contains("--max-pages") && e.contains("site"),
            "{e}"
        );
        // Pages being replaced free their space.
        check(2_000, 1_500, 1_000, false).unwrap();
        let e = check(54_000_000_000, 0, u64::MAX, false).unwrap_err().to_string();
        assert!(e.contains("--all") && e.contains("50.3 GiB"), "{e}");
        check(54_000_000_000, 0, u64::MAX, true).unwrap();
        check(1_000, 0, 1_000, false).unwrap();
    }
}
