//! Page templates (maud) and all page wording (titles, intros, notes). A
//! designer changes the site's look and words here; the renderer only fills
//! them in.
//!
//! Every link is relative. Pages live one folder down (`similar/`,
//! `different/`, `chronological/`), so a block's links start with `../`.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use super::Scheme;
use crate::plural::thousands;

/// The site's only styling: a few lines, no scripts. Colours come from the
/// scheme's variables ([`scheme_css`]).
const STYLE: &str =
    "body{max-width:46em;margin:1em auto;padding:0 1em;font:16px/1.45 Georgia,serif;color:var(--fg);background:var(--bg)}\
a{color:var(--link)}pre{font:inherit;white-space:pre-wrap;overflow-wrap:anywhere;margin:.4em 0}\
.poem{border-top:1px solid var(--rule);padding:.6em 0}.anchor{background:var(--panel);padding:.6em;border:1px solid var(--edge)}\
.golden{border:2px solid var(--gold);padding:.6em;margin:.4em 0}.golden .tag{color:var(--gold)}\
.t{font-weight:bold;margin:.2em 0 0}.key{font-size:12px;color:var(--muted)}\
.meta{font-size:13px;color:var(--muted)}.meta a{margin-left:.6em}.bar{height:5px;margin:.2em 0}\
nav{margin:.8em 0;font-size:15px;line-height:1.9}nav a{margin-right:.6em}nav .cur{margin-right:.6em;font-weight:bold}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.2em}\
ul.links{list-style:none;padding:0;font:14px/1.5 ui-monospace,Menlo,Consolas,monospace}ul.links li{margin:.15em 0}\
.cloud{line-height:2}.cloud a{margin-right:.5em;text-decoration:none}\
.w1{font-size:13px}.w2{font-size:16px}.w3{font-size:20px}.w4{font-size:25px}.w5{font-size:31px}\
.legend i{display:inline-block;width:2.2em;height:5px;vertical-align:middle;margin-right:.4em;\
background:linear-gradient(90deg,#c33,#c93,#3a3,#39c,#93c)}";

/// Colour variables of a dark page (the default, as the original site).
const DARK: &str = "color-scheme:dark;--bg:#121212;--fg:#ddd;--muted:#9a9a9a;--rule:#333;--link:#8ab4f8;--panel:#1d1d1d;--edge:#444;--gold:#d4af37";
/// Colour variables of a light page.
const LIGHT: &str = "color-scheme:light;--bg:#fdfcf8;--fg:#222;--muted:#555;--rule:#ddd;--link:#1a0dab;--panel:#f3efe3;--edge:#d8cfb6;--gold:#b8860b";
/// Pure black, for OLED screens: black pixels are off.
const BLACK: &str = "color-scheme:dark;--bg:#000;--fg:#ccc;--muted:#888;--rule:#262626;--link:#7aa7f0;--panel:#000;--edge:#333;--gold:#c9a227";

/// The colour rules of a scheme; `auto` follows the reader's system setting.
pub fn scheme_css(scheme: Scheme) -> String {
    match scheme {
        Scheme::Dark => format!(":root{{{DARK}}}"),
        Scheme::Light => format!(":root{{{LIGHT}}}"),
        Scheme::Black => format!(":root{{{BLACK}}}"),
        Scheme::Auto => format!(":root{{{LIGHT}}}@media (prefers-color-scheme:dark){{:root{{{DARK}}}}}"),
    }
}

/// Wraps the anchor poem (the one a listing is about) in a highlight.
pub const ANCHOR_OPEN: &str = "<div class=\"anchor\">";
pub const ANCHOR_CLOSE: &str = "</div>";

/// What a poem block shows.
pub struct BlockData<'a> {
    /// The heading: the input's title, else the first line.
    pub title: &'a str,
    pub key: &'a str,
    /// The `id` attribute, unique per page.
    pub anchor_id: &'a str,
    pub category: Option<&'a str>,
    pub date: Option<&'a str>,
    pub color: Option<&'a str>,
    /// Exactly 1,024 characters: framed and labelled.
    pub golden: bool,
    /// The poet's own lines (wrapped softly by the page's CSS); escaped by the template.
    pub text: &'a str,
    /// Links to the poem's own first similar and different pages.
    pub similar_href: Option<&'a str>,
    pub different_href: Option<&'a str>,
    pub chronological_href: &'a str,
    /// Shown when the poem has no orderings.
    pub note: Option<&'a str>,
}

/// One poem: colour bar, title, key, category, date, text and links.
pub fn block(b: &BlockData) -> Markup {
    html! {
        div.poem.golden[b.golden] id=(b.anchor_id) {
            @if let Some(c) = b.color {
                div.bar style={ "background:" (c) } {}
            }
            p.t { (b.title) }
            div.meta {
                span.key { (b.key) }
                @if let Some(c) = b.category { " · " (c) }
                @if let Some(d) = b.date { " · " (d) }
                @if b.golden { " · " span.tag { (GOLDEN_TAG) } }
                @if let Some(h) = b.similar_href { a href=(h) { "similar" } }
                @if let Some(h) = b.different_href { a href=(h) { "different" } }
                a href=(b.chronological_href) { "in reading order" }
            }
            @if let Some(n) = b.note { div.meta { em { (n) } } }
            pre { (b.text) }
        }
    }
}

/// Navigation between the pages of one listing, in a folder below the index.
pub struct Nav {
    pub page: usize,
    pub pages: usize,
    pub prev: Option<String>,
    pub next: Option<String>,
    /// Jump links: the first and last pages and those near this one, with
    /// `None` for a gap (at most [`JUMPS`] entries).
    pub jumps: Vec<Option<(usize, String)>>,
    /// The page's text twin, when text pages are written.
    pub text: Option<String>,
}

/// Pages named around the current one in a listing's jump links.
const NEAR: usize = 2;

impl Nav {
    /// Page `page` of `pages`, where `link(pg)` is page `pg`'s address
    /// relative to this page, and `text` the twin's, if there is one.
    pub fn paged(page: usize, pages: usize, link: impl Fn(usize) -> String, text: Option<String>) -> Nav {
        Nav {
            page,
            pages,
            prev: (page > 0).then(|| link(page - 1)),
            next: (page + 1 < pages).then(|| link(page + 1)),
            jumps: jump_pages(page, pages)
                .into_iter()
                .map(|pg| pg.map(|pg| (pg, link(pg))))
                .collect(),
            text,
        }
    }

    /// Replaces the link past the last page: the complete list goes on
    /// where the static pages end.
    pub fn then(mut self, next: Option<String>) -> Nav {
        if self.next.is_none() {
            self.next = next;
        }
        self
    }
}

/// The page numbers a compact page list shows: the first two, the last two
/// and [`NEAR`] on each side of `page`, with `None` where pages are skipped.
pub fn jump_pages(page: usize, pages: usize) -> Vec<Option<usize>> {
    let keep = |pg: usize| pg < 2 || pg + 2 >= pages || pg.abs_diff(page) <= NEAR;
    let mut out = Vec::new();
    for pg in 0..pages {
        if keep(pg) {
            out.push(Some(pg));
        } else if out.last().is_some_and(Option::is_some) {
            out.push(None);
        }
    }
    out
}

fn nav(n: &Nav) -> Markup {
    html! {
        nav {
            a href="../index.html" { "index" }
            @if let Some(p) = &n.prev { a href=(p) rel="prev" { "← previous" } }
            "page " (n.page + 1) " of " (n.pages)
            @if let Some(x) = &n.next { a href=(x) rel="next" style="margin-left:.8em" { "next →" } }
            @if let Some(t) = &n.text { a href=(t) type="text/plain" style="margin-left:.8em" { "as text" } }
            @if n.pages > 1 {
                br;
                @for j in &n.jumps {
                    @match j {
                        Some((pg, _)) if *pg == n.page => { span.cur { (pg + 1) } }
                        Some((pg, href)) => { a href=(href) { (pg + 1) } }
                        None => { "… " }
                    }
                }
            }
        }
    }
}

/// The document's `<head>`.
fn head(title: &str, scheme: Scheme) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            style { (PreEscaped(scheme_css(scheme))) (PreEscaped(STYLE)) }
        }
    }
}

/// The start of a listing page, up to where the pre-rendered blocks go.
pub fn page_head(title: &str, heading: &str, intro: &str, n: &Nav, scheme: Scheme) -> String {
    // maud closes the elements it opens, so the page is opened by hand.
    let mut s = html! { (DOCTYPE) }.into_string();
    s.push_str("<html lang=\"en\">");
    s.push_str(&head(title, scheme).into_string());
    s.push_str("<body>");
    s.push_str(&html! { (nav(n)) h1 { (heading) } p.meta { (intro) } }.into_string());
    s
}

/// The end of a listing page.
pub fn page_foot(n: &Nav) -> String {
    let mut s = nav(n).into_string();
    s.push_str("</body></html>\n");
    s
}

/// The site's title when `--title` is not given.
pub const SITE_TITLE: &str = "Poems: similar and different";

/// The one-line legend of the colour bars, on pages that show them.
pub fn legend() -> String {
    html! {
        p.meta.legend {
            i {}
            "The bar above a poem is its colour: the palette colour whose name is closest in meaning to the poem."
        }
    }
    .into_string()
}

/// The label on a golden poem's block.
pub const GOLDEN_TAG: &str = "golden: exactly 1,024 characters";

/// What the entry point shows and links to.
pub struct IndexData<'a> {
    pub title: &'a str,
    pub poems: usize,
    /// Poems with similar and different pages.
    pub included: usize,
    /// Entries of each ordering the site holds (its complete lists), and of
    /// a full ordering.
    pub shown: usize,
    pub full: usize,
    /// Entries with their full text on each ordering's static pages.
    pub on_pages: usize,
    pub golden: usize,
    pub words: usize,
    pub colors: bool,
    pub first_chronological: &'a str,
    pub first_catalogue: &'a str,
    pub first_golden: &'a str,
    pub first_word_list: &'a str,
    /// The cloud: word, link and size class (1–5), in alphabetical order.
    pub cloud: &'a [(String, String, u8)],
    /// Each theme's name, first similar page and first different page.
    pub themes: &'a [(String, String, String)],
}

/// What the two kinds of page hold, as the index says it.
fn index_intro(d: &IndexData) -> Markup {
    let (shown, full) = (thousands(d.shown), thousands(d.full));
    html! {
        p {
            (thousands(d.poems)) " poems. Every poem has two kinds of page: "
            strong { "similar" }
            @if d.shown >= d.full { " lists every other poem, closest in meaning first; " }
            @else { " lists the " (shown) " poems closest in meaning (of " (full) " others); " }
            strong { "different" } " starts at the poem and keeps adding the poem least like everything chosen so far, a walk away from it"
            @if d.shown < d.full { ", shown for its first " (shown) " poems" }
            "."
        }
        p.meta {
            "Each poem's pages show the first " (thousands(d.on_pages.min(d.shown))) " of each list with their full text; its "
            em { "complete list" } " shows all " (shown) " as you scroll, and can jump to any position."
        }
    }
}

/// The entry point: the ways in (reading order, every poem by category,
/// golden poems, every word) and the word cloud.
pub fn index(d: &IndexData, scheme: Scheme) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(d.title, scheme))
            body {
                h1 { (d.title) }
                (index_intro(d))
                @if d.colors { (PreEscaped(legend())) }
                ul {
                    li { a href=(d.first_chronological) { "All poems in reading order" } " (" (thousands(d.included)) " have similar and different pages)" }
                    li { a href=(d.first_catalogue) { "Every poem by category" } ", one line each" }
                    @if d.golden > 0 {
                        li { a href=(d.first_golden) { "Golden poems" } ", of exactly 1,024 characters: " (d.golden) }
                    }
                    li { a href=(d.first_word_list) { "Every word" } " with the poems that use it: " (thousands(d.words)) " words" }
                }
                @if !d.themes.is_empty() {
                    h2 { "Themes" }
                    p.meta { "Poems close to a theme, and a walk that starts from it." }
                    ul {
                        @for (name, sim, diff) in d.themes {
                            li { (name) " — " a href=(sim) { "close to it" } " · " a href=(diff) { "away from it" } }
                        }
                    }
                }
                @if !d.cloud.is_empty() {
                    h2 { "Words" }
                    p.cloud {
                        @for (word, href, size) in d.cloud {
                            a class={ "w" (size) } href=(href) { (word) } " "
                        }
                    }
                }
            }
        }
    }
    .into_string()
}

/// One line of a link list: a poem's first line, linking to the poem, and its key.
pub fn link_entry(href: &str, first_line: &str, key: &str) -> String {
    html! { li { a href=(href) { (first_line) } " " span.meta { (key) } } }.into_string()
}

/// One line of the word list: the word and how many poems use it.
pub fn word_entry(href: &str, word: &str, poems: usize) -> String {
    html! { li { a href=(href) { (word) } " " span.meta { (poems) } } }.into_string()
}

/// A category heading inside the poem list.
pub fn category_heading(category: &str) -> String {
    html! { h2 { (category) } }.into_string()
}

/// Opens and closes a link list.
pub const LINKS_OPEN: &str = "<ul class=\"links\">";
pub const LINKS_CLOSE: &str = "</ul>";

/// The start of one page of a word's poems.
pub fn word_head(word: &str, poems: usize, n: &Nav, scheme: Scheme) -> String {
    page_head(
        &format!("“{word}” — page {} of {}", n.page + 1, n.pages),
        &format!("“{word}”"),
        &format!("Poems that use the word, in the order of the collection: {poems}."),
        n,
        scheme,
    )
}

/// The start of one page of the word list.
pub fn word_list_head(n: &Nav, scheme: Scheme) -> String {
    page_head(
        &format!("Every word — page {} of {}", n.page + 1, n.pages),
        "Every word",
        WORD_RULE,
        n,
        scheme,
    )
}

/// Which words have pages (shown on the word list).
pub const WORD_RULE: &str =
    "Words of three or more letters that are in at least two poems and in at most one poem in ten; \
common English words (the, and, with…) are left out. The number is how many poems use the word.";

/// The start of one page of the poem list.
pub fn catalogue_head(n: &Nav, scheme: Scheme) -> String {
    page_head(
        &format!("Every poem — page {} of {}", n.page + 1, n.pages),
        "Every poem by category",
        "The first line of each poem, by category in the order of the collection.",
        n,
        scheme,
    )
}

/// The start of one page of the golden poems.
pub fn golden_head(n: &Nav, golden: usize, scheme: Scheme) -> String {
    let intro = if golden == 0 {
        "No poem in this collection is exactly 1,024 characters long.".to_owned()
    } else {
        format!("Poems of exactly 1,024 characters, trailing spaces and line ends not counted: {golden}.")
    };
    page_head(
        &format!("Golden poems — page {} of {}", n.page + 1, n.pages),
        "Golden poems",
        &intro,
        n,
        scheme,
    )
}

/// The first line of a golden page's text twin.
pub fn golden_text_head(page: usize, pages: usize) -> String {
    format!("Golden poems (page {} of {pages})\n\n", page + 1)
}

/// Shown in a block when the poem has no orderings.
pub const NO_EMBEDDING: &str = "No embedding: this poem has no similar or different pages.";

/// The two orderings a poem has pages for.
#[derive(Debug, Clone, Copy)]
pub enum Listing {
    Similar,
    Different,
}

impl Listing {
    fn label(self) -> &'static str {
        match self {
            Listing::Similar => "Similar to",
            Listing::Different => "Different from",
        }
    }

    fn word(self) -> &'static str {
        match self {
            Listing::Similar => "similar",
            Listing::Different => "different",
        }
    }

    fn intro(self, reverse: bool) -> &'static str {
        match (self, reverse) {
            (Listing::Similar, true) => "Every other poem, least similar first.",
            (Listing::Different, true) => {
                "A walk away from this poem, shown from its far end: the last poem the walk chose comes first."
            }
            (Listing::Similar, false) => "Every other poem, most similar first.",
            (Listing::Different, false) => {
                "A walk away from this poem: each next poem is the one least like all those before it."
            }
        }
    }
}

/// The start of one page of a poem's ordering.
pub fn ordering_head(listing: Listing, key: &str, n: &Nav, reverse: bool, scheme: Scheme) -> String {
    let label = listing.label();
    page_head(
        &format!("{label} {key} — page {} of {}", n.page + 1, n.pages),
        &format!("{label} {key}"),
        listing.intro(reverse),
        n,
        scheme,
    )
}

/// Where an ordering page stands in its ordering: entries `first..=last`
/// of `total`, of which the site holds `shown` in the complete list at
/// `complete`.
pub struct Part<'a> {
    pub first: usize,
    pub last: usize,
    pub total: usize,
    pub shown: usize,
    pub complete: &'a str,
}

/// The heading between the anchor poem and its entries: which part of the
/// ordering the page shows, and the way to the rest.
pub fn ordering_divider(listing: Listing, part: &Part, reverse: bool) -> String {
    let from = if reverse { ", from the far end" } else { "" };
    let rest = if part.shown >= part.total {
        format!("all {} in one list", thousands(part.total))
    } else {
        format!(
            "the first {} in one list (this site holds no more)",
            thousands(part.shown)
        )
    };
    html! {
        h2 {
            (listing.word()) " " (thousands(part.first)) "–" (thousands(part.last)) " of " (thousands(part.total)) (from)
        }
        p.meta { "The complete list: " a href=(part.complete) { (rest) } "." }
    }
    .into_string()
}

/// The reader page of the complete lists (`complete.html`): one page for
/// every ordering, filled by `complete/reader.js` from the packed lists.
pub fn complete_page(title: &str, scheme: Scheme) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&format!("Complete list — {title}"), scheme))
            body {
                nav { a href="index.html" { "index" } }
                div #head { p.meta { "Loading the list…" } }
                noscript {
                    p {
                        "The complete list needs JavaScript. Without it, the first entries of every list are on each poem's pages; "
                        code { "diversity-gpu export --cache CACHE" } " writes every ordering as JSON Lines, and "
                        code { "render --max-pages N" } " puts more of each list on static pages."
                    }
                }
                form #jump hidden {
                    label { "Go to position " input #pos type="number" min="1" step="1" style="width:7em"; }
                    " " button type="submit" { "go" }
                    span #count .meta {}
                }
                div #list {}
                p #more .meta {}
                script src="complete/reader.js" {}
                script src="complete/site.js" {}
            }
        }
    }
    .into_string()
}

impl Listing {
    fn theme_label(self) -> &'static str {
        match self {
            Listing::Similar => "Close to the theme",
            Listing::Different => "Away from the theme",
        }
    }
}

/// The start of one page of a theme's ordering; `text` is what the theme's
/// vector was embedded from.
pub fn theme_head(listing: Listing, name: &str, text: &str, n: &Nav, reverse: bool, scheme: Scheme) -> String {
    let label = listing.theme_label();
    let intro = match (listing, reverse) {
        (Listing::Similar, true) => format!("Every poem, farthest from “{text}” first."),
        (Listing::Different, true) => {
            format!(
                "A walk that starts from “{text}”, shown from its far end: the last poem the walk chose comes first."
            )
        }
        (Listing::Similar, false) => format!("Every poem, closest to “{text}” first."),
        (Listing::Different, false) => format!(
            "A walk that starts from “{text}”: each next poem is the one least like the theme and all those before it."
        ),
    };
    page_head(
        &format!("{label} {name} — page {} of {}", n.page + 1, n.pages),
        &format!("{label} “{name}”"),
        &intro,
        n,
        scheme,
    )
}

/// The first line of a theme page's text twin.
pub fn theme_text_head(listing: Listing, name: &str, page: usize, pages: usize) -> String {
    format!("{} {name} (page {} of {pages})\n\n", listing.theme_label(), page + 1)
}

/// The first line of an ordering page's text twin.
pub fn ordering_text_head(listing: Listing, key: &str, page: usize, pages: usize) -> String {
    format!("{} {key} (page {} of {pages})\n\n", listing.label(), page + 1)
}

/// The start of one page of the reading-order listing.
pub fn chronological_head(n: &Nav, scheme: Scheme) -> String {
    page_head(
        &format!("All poems — page {} of {}", n.page + 1, n.pages),
        "All poems in reading order",
        "By date, oldest first; poems without a date follow, in the order of the collection.",
        n,
        scheme,
    )
}

/// A poem's text twin: key, date, then the wrapped text.
pub fn text_block(key: &str, date: Option<&str>, text: &str) -> String {
    let date = date.map(|d| format!("  ({d})")).unwrap_or_default();
    format!("{key}{date}\n\n{text}")
}

/// The line between poems on text pages.
pub fn text_rule(columns: usize) -> String {
    let mut rule = "-".repeat(columns);
    rule.push('\n');
    rule
}
