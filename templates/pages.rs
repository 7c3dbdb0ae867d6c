//! Page templates (maud) and all page wording (titles, intros, notes). A
//! designer changes the site's look and words here; the renderer only fills
//! them in.
//!
//! Every link is relative. Pages live one folder down (`similar/`,
//! `different/`, `chronological/`), so a block's links start with `../`.

use maud::{html, Markup, PreEscaped, DOCTYPE};

/// The site's only styling: a few lines, no scripts.
const STYLE: &str =
    "body{max-width:46em;margin:1em auto;padding:0 1em;font:16px/1.45 Georgia,serif;color:#222;background:#fdfcf8}\
pre{font:14px/1.4 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;margin:.4em 0}\
.poem{border-top:1px solid #ddd;padding:.6em 0}.anchor{background:#f3efe3;padding:.6em;border:1px solid #d8cfb6}\
.meta{font-size:13px;color:#555}.meta a{margin-left:.6em}.bar{height:5px;margin:.2em 0}\
nav{margin:.8em 0;font-size:15px}nav a{margin-right:.8em}h1{font-size:1.4em}";

/// Wraps the anchor poem (the one a listing is about) in a highlight.
pub const ANCHOR_OPEN: &str = "<div class=\"anchor\">";
pub const ANCHOR_CLOSE: &str = "</div>";

/// What a poem block shows.
pub struct BlockData<'a> {
    pub key: &'a str,
    /// The `id` attribute, unique per page.
    pub anchor_id: &'a str,
    pub category: Option<&'a str>,
    pub date: Option<&'a str>,
    pub color: Option<&'a str>,
    /// Already wrapped at 80 columns; escaped by the template.
    pub text: &'a str,
    /// Links to the poem's own first similar and different pages.
    pub similar_href: Option<&'a str>,
    pub different_href: Option<&'a str>,
    pub chronological_href: &'a str,
    /// Shown when the poem has no orderings.
    pub note: Option<&'a str>,
}

/// One poem: key, category, date, colour bar, text and links.
pub fn block(b: &BlockData) -> Markup {
    html! {
        div.poem id=(b.anchor_id) {
            @if let Some(c) = b.color {
                div.bar style={ "background:" (c) } {}
            }
            div.meta {
                strong { (b.key) }
                @if let Some(c) = b.category { " · " (c) }
                @if let Some(d) = b.date { " · " (d) }
                @if let Some(h) = b.similar_href { a href=(h) { "similar" } }
                @if let Some(h) = b.different_href { a href=(h) { "different" } }
                a href=(b.chronological_href) { "in reading order" }
            }
            @if let Some(n) = b.note { div.meta { em { (n) } } }
            pre { (b.text) }
        }
    }
}

/// Navigation between the pages of one listing.
pub struct Nav<'a> {
    pub page: usize,
    pub pages: usize,
    pub prev: Option<&'a str>,
    pub next: Option<&'a str>,
    pub home: &'a str,
}

fn nav(n: &Nav) -> Markup {
    html! {
        nav {
            a href=(n.home) { "index" }
            @if let Some(p) = n.prev { a href=(p) rel="prev" { "← previous" } }
            "page " (n.page + 1) " of " (n.pages)
            @if let Some(x) = n.next { a href=(x) rel="next" style="margin-left:.8em" { "next →" } }
        }
    }
}

/// The document's `<head>`.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) }
            style { (PreEscaped(STYLE)) }
        }
    }
}

/// The start of a listing page, up to where the pre-rendered blocks go.
fn page_head(title: &str, heading: &str, intro: &str, n: &Nav) -> String {
    // maud closes the elements it opens, so the page is opened by hand.
    let mut s = html! { (DOCTYPE) }.into_string();
    s.push_str("<html lang=\"en\">");
    s.push_str(&head(title).into_string());
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

/// A heading between the anchor poem and its ordering.
fn divider(text: &str) -> String {
    html! { h2 style="font-size:1.1em;margin-top:1.2em" { (text) } }.into_string()
}

/// The site's title, on the entry point.
const SITE_TITLE: &str = "Poems: similar and different";

/// The entry point. `samples` and `themes` are (name, similar page,
/// different page).
pub fn index(
    poems: usize,
    included: usize,
    first_chronological: &str,
    samples: &[(String, String, String)],
    themes: &[(String, String, String)],
) -> String {
    let title = SITE_TITLE;
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                h1 { (title) }
                p {
                    (poems) " poems. Every poem has two kinds of page: "
                    strong { "similar" } " lists every other poem, closest in meaning first; "
                    strong { "different" } " starts at the poem and keeps adding the poem least like everything chosen so far, a walk away from it."
                }
                p { a href=(first_chronological) { "Read all poems in order" } " (" (included) " have similar and different pages)." }
                @if !themes.is_empty() {
                    h2 style="font-size:1.1em" { "Themes" }
                    p.meta { "Poems close to a theme, and a walk that starts from it." }
                    ul {
                        @for (name, sim, diff) in themes {
                            li { (name) " — " a href=(sim) { "close to it" } " · " a href=(diff) { "away from it" } }
                        }
                    }
                }
                @if !samples.is_empty() {
                    h2 style="font-size:1.1em" { "Start somewhere" }
                    ul {
                        @for (key, sim, diff) in samples {
                            li { (key) " — " a href=(sim) { "similar" } " · " a href=(diff) { "different" } }
                        }
                    }
                }
            }
        }
    }
    .into_string()
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

    fn intro(self) -> &'static str {
        match self {
            Listing::Similar => "Every other poem, most similar first.",
            Listing::Different => {
                "A walk away from this poem: each next poem is the one least like all those before it."
            }
        }
    }
}

/// The start of one page of a poem's ordering.
pub fn ordering_head(listing: Listing, key: &str, n: &Nav) -> String {
    let label = listing.label();
    page_head(
        &format!("{label} {key} — page {} of {}", n.page + 1, n.pages),
        &format!("{label} {key}"),
        listing.intro(),
        n,
    )
}

/// The heading between the anchor poem and entries `first..=last` of `total`.
pub fn ordering_divider(listing: Listing, first: usize, last: usize, total: usize) -> String {
    divider(&format!("{} {first}–{last} of {total}", listing.word()))
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
pub fn theme_head(listing: Listing, name: &str, text: &str, n: &Nav) -> String {
    let label = listing.theme_label();
    let intro = match listing {
        Listing::Similar => format!("Every poem, closest to “{text}” first."),
        Listing::Different => format!(
            "A walk that starts from “{text}”: each next poem is the one least like the theme and all those before it."
        ),
    };
    page_head(
        &format!("{label} {name} — page {} of {}", n.page + 1, n.pages),
        &format!("{label} “{name}”"),
        &intro,
        n,
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
pub fn chronological_head(n: &Nav) -> String {
    page_head(
        &format!("All poems — page {} of {}", n.page + 1, n.pages),
        "All poems in reading order",
        "By date where poems have one, otherwise in the order of the collection.",
        n,
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
