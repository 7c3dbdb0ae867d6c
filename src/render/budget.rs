//! The site's shape and size, decided before anything is written (and, for
//! `build`, before anything is computed): entries per page, static pages
//! per ordering, and how many entries of each ordering the complete lists
//! hold, within `--budget` (1 GB unless told otherwise).
//!
//! Order of priority: the reading order, the listings and the complete
//! lists (every ordering whole) first; then as many static pages of full
//! texts as fit, with fewer entries a page when not even one page of 100
//! fits; only when the complete lists themselves do not fit are they cut,
//! and `build` then computes only what the site shows.

use anyhow::{bail, Result};
use rayon::prelude::*;

use super::site::{Page, Site};
use super::templates;
use crate::cache::Kind;

/// The largest site written unless `--budget` or `--all` says otherwise:
/// what free static hosts allow.
pub const DEFAULT_BUDGET: u64 = 1_000_000_000;

/// Entries per page tried, in order, when `--per-page` is not given.
pub const PER_PAGE: [usize; 4] = [100, 50, 20, 10];

/// What the user asked of the site's size.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--per-page`; else [`PER_PAGE`] is tried in order.
    pub per_page: Option<usize>,
    pub max_pages: Option<usize>,
    /// Largest site; `None` with `--all`.
    pub budget: Option<u64>,
}

/// How many pages the render writes, and their projected size.
#[derive(Debug, Clone, Copy)]
pub(super) struct PagePlan {
    /// Static pages per ordering.
    pub cap: usize,
    /// Bytes of everything but the text twins.
    pub projected_bytes: u64,
    /// Bytes of the complete lists' packed entries.
    pub lists_bytes: u64,
    /// HTML pages: orderings, reading order and the listings.
    pub html_pages: usize,
    /// Every file: the pages, their text twins and the complete lists.
    pub files: usize,
    /// Where the complete lists were cut to fit: the smallest budget that
    /// holds them whole.
    pub whole: Option<u64>,
}

/// Bytes of an ordering page other than its blocks (head, divider, legend,
/// foot): page `page` of poem `p`'s ordering with `pages` static pages per
/// ordering (their jump links are part of it).
fn frame_bytes(site: &Site, kind: Kind, p: usize, page: usize, pages: usize) -> u64 {
    let link = |pg: usize| format!("../{}", site.ordering_path(kind, p, pg, "html"));
    let rest = site.complete_href(kind, p, Some(site.per_page + 1));
    let nav = templates::Nav::paged(page, pages, link, None).then(Some(rest));
    let complete = site.complete_href(kind, p, None);
    let part = templates::Part {
        first: 1,
        last: site.per_page.min(site.shown),
        total: site.rows.full(),
        shown: site.shown,
        complete: &complete,
    };
    let listing = match kind {
        Kind::Similar => templates::Listing::Similar,
        Kind::Different => templates::Listing::Different,
    };
    let title = super::text::shown(&super::text::title(&site.poems[p])).into_owned();
    let mut frame = templates::ordering_head(listing, &title, &nav, site.reverse, site.scheme);
    frame.push_str(templates::ANCHOR_OPEN);
    frame.push_str(templates::ANCHOR_CLOSE);
    frame.push_str(&templates::ordering_divider(listing, &part, site.reverse));
    if site.colors {
        frame.push_str(&templates::legend());
    }
    frame.push_str(&templates::page_foot(&nav));
    frame.len() as u64
}

/// [`frame_bytes`] of the first poem's first page: the estimate for every page.
fn page_overhead(site: &Site, pages: usize) -> u64 {
    site.poem_of_row
        .first()
        .map_or(0, |&p| frame_bytes(site, Kind::Similar, p, 0, pages))
}

/// What a later page's frame adds to the first's (a link back).
fn later_page_extra(site: &Site, pages: usize) -> u64 {
    match site.poem_of_row.first() {
        Some(&p) if pages > 1 => {
            let later = frame_bytes(site, Kind::Similar, p, 1, pages);
            later.saturating_sub(frame_bytes(site, Kind::Similar, p, 0, pages))
        }
        _ => 0,
    }
}

/// Bytes of page `p` of every ordering (poems' and themes'), for each `p`
/// below the full count: exact from the cache, else estimated from the
/// mean block (the site is planned before its orderings exist).
fn bytes_per_page_number(site: &Site, pages: usize, pool: &rayon::ThreadPool) -> Vec<u64> {
    let overhead = page_overhead(site, pages);
    if site.cache.is_none() {
        return estimated_per_page_number(site, pages, overhead);
    }
    let full_pages = site.full_pages;
    let extra = later_page_extra(site, pages);
    let mut acc = pool.install(|| {
        (0..site.poem_of_row.len())
            .into_par_iter()
            .map_init(Vec::new, |idx, r| {
                let mut acc = vec![0u64; full_pages];
                let p = site.poem_of_row[r];
                for kind in [Kind::Similar, Kind::Different] {
                    site.row(kind, r, idx);
                    let frame = frame_bytes(site, kind, p, 0, pages) + site.blocks[p].len() as u64;
                    for (pg, a) in acc.iter_mut().enumerate() {
                        let later = if pg > 0 { extra } else { 0 };
                        *a += frame + later + site.blocks_len(&idx[site.page_range(pg, idx.len())]);
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
    add_theme_pages(site, overhead + extra, &mut acc);
    acc
}

/// Bytes of the theme pages, added to the same page numbers (a theme's
/// pages beyond the poems' count go with the last, written only uncapped).
fn add_theme_pages(site: &Site, overhead: u64, per_page_number: &mut [u64]) {
    let Some(last) = per_page_number.len().checked_sub(1) else {
        return;
    };
    let mut idx = Vec::new();
    for t in 0..site.rows.themes.len() {
        for kind in [Kind::Similar, Kind::Different] {
            site.theme_row(kind, t, &mut idx);
            for pg in 0..site.theme_full_pages {
                per_page_number[pg.min(last)] += overhead + site.blocks_len(&idx[site.page_range(pg, idx.len())]);
            }
        }
    }
}

/// Margin on the estimated entries: a poem's neighbours can be longer
/// than the mean poem, and what `build` computes must fit when measured.
const ESTIMATE_MARGIN: f64 = 1.05;

/// [`bytes_per_page_number`] before the orderings exist: each page's frame
/// and anchor as they will be, every entry as the mean block of the poems
/// with orderings (plus [`ESTIMATE_MARGIN`]).
fn estimated_per_page_number(site: &Site, pages: usize, overhead: u64) -> Vec<u64> {
    let rows = site.poem_of_row.len() as f64;
    let blocks: f64 = site.poem_of_row.iter().map(|&p| site.blocks[p].len() as f64).sum();
    let mean = if rows > 0.0 {
        blocks / rows * ESTIMATE_MARGIN
    } else {
        0.0
    };
    let frames: u64 = site
        .poem_of_row
        .iter()
        .map(|&p| {
            let anchor = 2 * site.blocks[p].len() as u64;
            anchor
                + [Kind::Similar, Kind::Different]
                    .map(|k| frame_bytes(site, k, p, 0, pages))
                    .iter()
                    .sum::<u64>()
        })
        .sum();
    let extra = later_page_extra(site, pages);
    let themes = site.rows.themes.len() as f64;
    (0..site.full_pages)
        .map(|pg| {
            let entries = site.page_range(pg, site.shown).len() as f64;
            let later = if pg > 0 { 2.0 * rows * extra as f64 } else { 0.0 };
            let poems = frames as f64 + later + 2.0 * rows * entries * mean;
            let theme_entries = site.page_range(pg, site.theme_shown()).len() as f64;
            (poems + 2.0 * themes * (overhead as f64 + theme_entries * mean)).ceil() as u64
        })
        .collect()
}

/// Bytes the site needs whatever its static page count: the reading
/// order (rendered to measure it), the listings and the complete lists.
fn fixed_bytes(site: &Site, listings: &[Page]) -> u64 {
    let (mut page, mut text) = (String::new(), String::new());
    let chrono: u64 = (0..site.chrono_pages())
        .map(|pg| {
            site.chrono_page(pg, &mut page, &mut text);
            page.len() as u64
        })
        .sum();
    chrono
        + listings
            .iter()
            .filter(|p| !p.path.ends_with(".txt"))
            .map(|p| p.body.len() as u64)
            .sum::<u64>()
        + super::complete::lists_bytes(site)
}

/// The most static pages per ordering within `room` bytes.
fn pages_within(room: u64, per_page_number: &[u64]) -> usize {
    let mut total = 0;
    per_page_number
        .iter()
        .take_while(|&&b| {
            total += b;
            total <= room
        })
        .count()
}

/// The plan with `cap` static pages per ordering.
fn plan_with(site: &Site, listings: &[Page], fixed: u64, per_page_number: &[u64], cap: usize) -> PagePlan {
    let theme_pages = site.theme_pages_for(cap);
    let orderings = site.poem_of_row.len() * 2 * cap + site.rows.themes.len() * 2 * theme_pages;
    let chrono_pages = site.chrono_pages();
    let html = |p: &&Page| p.path.ends_with(".html");
    let html_pages = orderings + chrono_pages + listings.iter().filter(html).count();
    let twins = if site.txt { orderings + chrono_pages } else { 0 };
    let lists = 2 * (site.poem_of_row.len() + site.rows.themes.len());
    PagePlan {
        cap,
        projected_bytes: fixed + per_page_number.iter().take(cap).sum::<u64>(),
        lists_bytes: super::complete::lists_bytes(site),
        html_pages,
        files: html_pages + twins + lists + listings.iter().filter(|p| !html(p)).count(),
        whole: None,
    }
}

/// The plan for the site's current per-page count and complete lists, with
/// as many static pages as `limits` allow; `None` when not even one fits.
pub(super) fn fit(site: &Site, listings: &[Page], limits: &Limits, pool: &rayon::ThreadPool) -> Option<PagePlan> {
    let most = limits.max_pages.unwrap_or(site.full_pages).clamp(1, site.full_pages);
    let fixed = fixed_bytes(site, listings);
    let per_page_number = bytes_per_page_number(site, most, pool);
    let room = limits.budget.unwrap_or(u64::MAX).checked_sub(fixed)?;
    let cap = pages_within(room, &per_page_number[..most]);
    (cap > 0).then(|| plan_with(site, listings, fixed, &per_page_number, cap))
}

/// Cuts the complete lists to the most entries that fit with one static
/// page per ordering; refuses, naming a budget that fits, when not even a
/// page's worth does.
pub(super) fn cut(site: &mut Site, listings: &[Page], limits: &Limits, pool: &rayon::ThreadPool) -> Result<PagePlan> {
    let budget = limits.budget.unwrap_or(u64::MAX);
    let (per_page, width) = (site.per_page, site.rows.width);
    let fits = |site: &mut Site, shown: usize| {
        site.reshape(per_page, shown);
        fit(
            site,
            listings,
            &Limits {
                max_pages: Some(1),
                ..*limits
            },
            pool,
        )
    };
    let least = per_page.min(width);
    let whole = smallest_site(site, listings, width, pool);
    if fits(site, least).is_none() {
        let need = smallest_site(site, listings, least, pool);
        site.reshape(per_page, width);
        bail!(
            "a site of {} poems cannot fit in --budget {}: a static page and a complete list of {least} per ordering already take {}; these fit: --budget {}",
            site.poem_of_row.len(),
            round_up(budget),
            bytesize::ByteSize(need),
            round_up(need),
        );
    }
    // The most entries that fit: the lists grow with the entries, the pages do not.
    let (mut lo, mut hi) = (least, width);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(site, mid).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    // Lists come before pages: a cut site has one static page per ordering.
    let plan = fits(site, lo).expect("the cut was chosen to fit");
    Ok(PagePlan {
        whole: Some(whole),
        ..plan
    })
}

/// Bytes of the smallest site of this per-page count with lists of
/// `shown` entries: one static page per ordering.
fn smallest_site(site: &mut Site, listings: &[Page], shown: usize, pool: &rayon::ThreadPool) -> u64 {
    site.reshape(site.per_page, shown);
    let fixed = fixed_bytes(site, listings);
    fixed + bytes_per_page_number(site, 1, pool).first().copied().unwrap_or(0)
}

/// A size rounded up to two significant digits, as a flag value (`1.3GB`).
pub fn round_up(bytes: u64) -> String {
    let (unit, name) = [(1_000_000_000u64, "GB"), (1_000_000, "MB"), (1_000, "kB")]
        .into_iter()
        .find(|&(u, _)| bytes >= u)
        .unwrap_or((1, "B"));
    let tenths = (bytes * 10).div_ceil(unit);
    if tenths >= 100 || unit == 1 || tenths.is_multiple_of(10) {
        format!("{}{name}", tenths.div_ceil(10))
    } else {
        format!("{}.{}{name}", tenths / 10, tenths % 10)
    }
}

/// What the size guard needs to know about a render.
pub(super) struct SpaceCheck {
    /// Bytes the site will take.
    pub projected: u64,
    /// Bytes the earlier render's pages take now (they are replaced).
    pub reclaimed: u64,
    /// Bytes free for this user on the site's file system.
    pub available: u64,
}

/// Refuses a site that cannot fit on its disk, naming a budget that does.
pub(super) fn check_space(c: &SpaceCheck, out: &std::path::Path) -> Result<()> {
    let need = c.projected.saturating_sub(c.reclaimed);
    if need > c.available {
        let room = (c.available + c.reclaimed) / 10 * 9;
        bail!(
            "the site would take {} but {} has only {} free; --budget {} fits (a tenth of the free space left over), or free {} more",
            bytesize::ByteSize(c.projected),
            out.display(),
            bytesize::ByteSize(c.available),
            bytesize::ByteSize(room).to_string().replace(' ', ""),
            bytesize::ByteSize(need - c.available)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(projected: u64, reclaimed: u64, available: u64) -> Result<()> {
        let c = SpaceCheck {
            projected,
            reclaimed,
            available,
        };
        check_space(&c, std::path::Path::new("site"))
    }

    #[test]
    fn the_size_guard_refuses_what_does_not_fit() {
        let e = check(2_000, 0, 1_000).unwrap_err().to_string();
        assert!(e.contains("--budget 900B") && e.contains("site"), "{e}");
        // Pages being replaced free their space.
        check(2_000, 1_500, 1_000).unwrap();
        check(1_000, 0, 1_000).unwrap();
    }

    #[test]
    fn budgets_are_rounded_up_to_flag_values() {
        assert_eq!(round_up(1_234_567_890), "1.3GB");
        assert_eq!(round_up(12_000_000_001), "13GB");
        assert_eq!(round_up(999), "999B");
        assert_eq!(round_up(7_000_000), "7MB");
        assert_eq!(round_up(10_000), "10kB");
        assert_eq!(round_up(10_001), "11kB");
    }

    #[test]
    fn pages_fit_in_order_until_the_room_runs_out() {
        assert_eq!(pages_within(10, &[4, 4, 4]), 2);
        assert_eq!(pages_within(3, &[4, 1]), 0);
        assert_eq!(pages_within(u64::MAX, &[4, 4]), 2);
    }
}
