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

/// The plan keeps one part in this many of the budget free, for the
/// tool's records beside the pages.
const SLACK: u64 = 200;

/// Entries per page tried, in order, when `--per-page` is not given.
pub const PER_PAGE: [usize; 7] = [100, 50, 20, 10, 5, 2, 1];

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

fn listing(kind: Kind) -> templates::Listing {
    match kind {
        Kind::Similar => templates::Listing::Similar,
        Kind::Different => templates::Listing::Different,
    }
}

/// Bytes of an ordering page other than its blocks (head, divider, legend,
/// foot, and the text twin's head): page `page` of poem `p`'s ordering,
/// with `pages` static pages per ordering (their jump links are part of
/// it), as [`Site::ordering_page`] builds it.
fn frame_bytes(site: &Site, kind: Kind, p: usize, page: usize, pages: usize) -> u64 {
    frame_text(site, kind, p, page, pages).len() as u64
}

/// The text [`frame_bytes`] measures.
fn frame_text(site: &Site, kind: Kind, p: usize, page: usize, pages: usize) -> String {
    let range = site.page_range(page, site.shown);
    let link = |pg: usize| format!("../{}", site.ordering_path(kind, p, pg, "html"));
    let twin = site
        .txt
        .then(|| format!("../{}", site.ordering_path(kind, p, page, "txt")));
    let rest = Some(site.complete_href(kind, p, Some(range.end + 1))).filter(|_| range.end < site.shown);
    let nav = templates::Nav::paged(page, pages, link, twin).then(rest);
    let complete = site.complete_href(kind, p, None);
    let part = templates::Part {
        first: range.start + 1.min(range.len()),
        last: range.end,
        total: site.rows.full(),
        shown: site.shown,
        complete: &complete,
    };
    let title = super::text::shown(&super::text::title(&site.poems[p])).into_owned();
    let mut frame = templates::ordering_head(listing(kind), &title, &nav, site.reverse, site.scheme);
    frame.push_str(templates::ANCHOR_OPEN);
    frame.push_str(templates::ANCHOR_CLOSE);
    frame.push_str(&templates::ordering_divider(listing(kind), &part, site.reverse));
    if site.colors {
        frame.push_str(&templates::legend());
    }
    frame.push_str(&templates::page_foot(&nav));
    if site.txt {
        let key = super::text::shown(&site.poems[p].key);
        frame.push_str(&templates::ordering_text_head(listing(kind), &key, page, pages));
    }
    frame
}

/// How each page number's frame differs from the first page's (links back,
/// nearby pages, entry numbers), for each kind (links name its folder),
/// measured on the first poem: in bytes, and in how many more links name
/// the poem's file stem; every poem's frame differs alike, by its stem's
/// length for each such link.
fn frame_deltas(site: &Site, pages: usize) -> [Vec<(i64, i64)>; 2] {
    let Some(&p) = site.poem_of_row.first() else {
        return [vec![(0, 0); site.full_pages], vec![(0, 0); site.full_pages]];
    };
    let stem = &site.stems[p];
    let links = |f: &str| f.matches(stem.as_str()).count() as i64;
    KINDS.map(|kind| {
        let first = frame_text(site, kind, p, 0, pages);
        (0..site.full_pages)
            .map(|pg| {
                let f = frame_text(site, kind, p, pg, pages);
                (f.len() as i64 - first.len() as i64, links(&f) - links(&first))
            })
            .collect()
    })
}

/// The two orderings every poem has, in [`frame_deltas`]' order.
const KINDS: [Kind; 2] = [Kind::Similar, Kind::Different];

/// Bytes of page `pg`'s frame for poem `p`, from its first page's frame and
/// the first poem's [`frame_deltas`].
fn frame_at(site: &Site, p: usize, first: u64, delta: (i64, i64)) -> u64 {
    let longer = site.stems[p].len() as i64 - site.poem_of_row.first().map_or(0, |&q| site.stems[q].len()) as i64;
    (first as i64 + delta.0 + delta.1 * longer) as u64
}

/// Bytes of page `p` of every ordering (poems' and themes'), for each `p`
/// below the full count, with `pages` static pages per ordering: exact from
/// the cache, else estimated (the site is planned before its orderings exist).
fn bytes_per_page_number(site: &Site, pages: usize, pool: &rayon::ThreadPool) -> Vec<u64> {
    let deltas = frame_deltas(site, pages);
    let mut acc = if site.cache.is_none() {
        estimated_per_page_number(site, pages, &deltas)
    } else {
        exact_per_page_number(site, pages, &deltas, pool)
    };
    add_theme_pages(site, pages, &mut acc);
    acc
}

/// [`bytes_per_page_number`]'s poem pages, measured: each poem's own frame
/// and anchor, and its ordering's entries.
fn exact_per_page_number(
    site: &Site,
    pages: usize,
    deltas: &[Vec<(i64, i64)>; 2],
    pool: &rayon::ThreadPool,
) -> Vec<u64> {
    let full_pages = site.full_pages;
    pool.install(|| {
        (0..site.poem_of_row.len())
            .into_par_iter()
            .map_init(Vec::new, |idx, r| {
                let mut acc = vec![0u64; full_pages];
                let p = site.poem_of_row[r];
                for (kind, deltas) in KINDS.into_iter().zip(deltas) {
                    site.row(kind, r, idx);
                    let first = frame_bytes(site, kind, p, 0, pages);
                    for (pg, a) in acc.iter_mut().enumerate() {
                        let entries = site.entries_len(&idx[site.page_range(pg, idx.len())]);
                        *a += frame_at(site, p, first, deltas[pg]) + site.entry_len(p) + entries;
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
/// pages beyond the poems' count go with the last, written only uncapped):
/// rendered whole from the cache, else their frames and the mean entry.
fn add_theme_pages(site: &Site, pages: usize, per_page_number: &mut [u64]) {
    let Some(last) = per_page_number.len().checked_sub(1) else {
        return;
    };
    let (mut idx, mut page, mut text) = (Vec::new(), String::new(), String::new());
    let mean = mean_entry(site);
    let mut with = |pg: usize, bytes: u64| per_page_number[pg.min(last)] += bytes;
    for t in 0..site.rows.themes.len() {
        for kind in [Kind::Similar, Kind::Different] {
            for pg in 0..site.theme_full_pages {
                if site.cache.is_some() {
                    site.theme_page_as(kind, t, pg, pages, &mut idx, &mut page, &mut text);
                    with(pg, (page.len() + if site.txt { text.len() } else { 0 }) as u64);
                } else {
                    site.theme_page_as(kind, t, pg, pages, &mut Vec::new(), &mut page, &mut text);
                    let entries = site.page_range(pg, site.theme_shown()).len() as f64;
                    with(pg, (page.len() + text.len()) as u64 + (entries * mean).ceil() as u64);
                }
            }
        }
    }
}

/// The mean bytes an entry adds to a page (block and text twin), with
/// [`ESTIMATE_MARGIN`].
fn mean_entry(site: &Site) -> f64 {
    let rows = site.poem_of_row.len();
    let total: u64 = site.poem_of_row.iter().map(|&p| site.entry_len(p)).sum();
    total as f64 / rows.max(1) as f64 * ESTIMATE_MARGIN
}

/// Margin on the estimated entries: a poem's neighbours can be longer
/// than the mean poem, and what `build` computes must fit when measured.
const ESTIMATE_MARGIN: f64 = 1.05;

/// [`bytes_per_page_number`]'s poem pages before the orderings exist: each
/// page's frame and anchor as they will be, every entry as the mean entry.
fn estimated_per_page_number(site: &Site, pages: usize, deltas: &[Vec<(i64, i64)>; 2]) -> Vec<u64> {
    let rows = site.poem_of_row.len() as f64;
    let mean = mean_entry(site);
    let firsts: Vec<(usize, usize, u64)> = site
        .poem_of_row
        .iter()
        .flat_map(|&p| [0, 1].map(|k| (k, p, frame_bytes(site, KINDS[k], p, 0, pages) + site.entry_len(p))))
        .collect();
    (0..site.full_pages)
        .map(|pg| {
            let entries = site.page_range(pg, site.shown).len() as f64;
            let frames: u64 = firsts
                .iter()
                .map(|&(k, p, first)| frame_at(site, p, first, deltas[k][pg]))
                .sum();
            frames + (2.0 * rows * entries * mean).ceil() as u64
        })
        .collect()
}

/// Bytes the site needs whatever its static page count: the reading
/// order (rendered to measure it, text twins included), the listings and
/// the complete lists.
fn fixed_bytes(site: &Site, listings: &[Page]) -> u64 {
    let (mut page, mut text) = (String::new(), String::new());
    let chrono: u64 = (0..site.chrono_pages())
        .map(|pg| {
            site.chrono_page(pg, &mut page, &mut text);
            (page.len() + if site.txt { text.len() } else { 0 }) as u64
        })
        .sum();
    chrono + listings.iter().map(|p| p.body.len() as u64).sum::<u64>() + super::complete::lists_bytes(site)
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
    let budget = limits.budget.unwrap_or(u64::MAX);
    // The pages are measured to the byte; the slack leaves room for the
    // tool's own records (`.pages.b3`, `.pages.owned`), which a host counts.
    let room = (budget - budget / SLACK).checked_sub(fixed)?;
    // `cap` pages fit when their bytes, with the jump links of `cap` pages,
    // do; fewer pages have fewer links, so the caps that fit are 1..=best.
    let sizes = |cap: usize| bytes_per_page_number(site, cap, pool);
    let fits = |cap: usize| pages_within(room, &sizes(cap)[..cap]) == cap;
    let (mut lo, mut hi) = if fits(most) { (most, most) } else { (0, most - 1) };
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    (lo > 0).then(|| plan_with(site, listings, fixed, &sizes(lo), lo))
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
            "a site of {} poems cannot fit in --budget {}: a static page and a complete list of {least} per ordering already take {}; --budget {} fits",
            site.poem_of_row.len(),
            exact(budget),
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

/// The smallest budget for a site of this per-page count with lists of
/// `shown` entries: one static page per ordering.
fn smallest_site(site: &mut Site, listings: &[Page], shown: usize, pool: &rayon::ThreadPool) -> u64 {
    site.reshape(site.per_page, shown);
    let fixed = fixed_bytes(site, listings);
    let bytes = fixed + bytes_per_page_number(site, 1, pool).first().copied().unwrap_or(0);
    // The budget that holds it, slack included.
    (u128::from(bytes) * u128::from(SLACK)).div_ceil(u128::from(SLACK - 1)) as u64
}

/// A size rounded up to two significant digits, as a flag value (`1.3GB`).
pub fn round_up(bytes: u64) -> String {
    let (unit, name) = [(1_000_000_000u128, "GB"), (1_000_000, "MB"), (1_000, "kB")]
        .into_iter()
        .find(|&(u, _)| u128::from(bytes) >= u)
        .unwrap_or((1, "B"));
    let tenths = (u128::from(bytes) * 10).div_ceil(unit);
    if tenths >= 100 || unit == 1 || tenths.is_multiple_of(10) {
        format!("{}{name}", tenths.div_ceil(10))
    } else {
        format!("{}.{}{name}", tenths / 10, tenths % 10)
    }
}

/// A size exactly, as a flag value: `1GB`, `58106870B`.
pub fn exact(bytes: u64) -> String {
    [(1_000_000_000, "GB"), (1_000_000, "MB"), (1_000, "kB")]
        .into_iter()
        .find(|&(u, _)| bytes >= u && bytes.is_multiple_of(u))
        .map_or(format!("{bytes}B"), |(u, name)| format!("{}{name}", bytes / u))
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
        assert_eq!(round_up(u64::MAX), "18446744074GB");
        assert_eq!(exact(1_000_000_000), "1GB");
        assert_eq!(exact(58_106_870), "58106870B");
        assert_eq!(exact(0), "0B");
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
