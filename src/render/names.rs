//! The names of a site's own files and folders: what a render writes,
//! checks and prunes, and what marks a folder as a site this tool made.

/// The page manifest: `<blake3 hex>  <path>` per line, as `b3sum` writes
/// and checks it (`b3sum --check .pages.b3`). It lists exactly the pages on
/// disk: it is removed when a render starts writing and put back, built as
/// pages are written, only when the render finishes.
pub const PAGE_MANIFEST: &str = ".pages.b3";

/// Every page a render has started writing, one site-relative path a line;
/// written before the first page, so a killed render's pages are known.
pub const OWNED: &str = ".pages.owned";

/// The lock that keeps one render at a time in a site folder.
pub const LOCK: &str = ".pages.lock";

/// The folders pages go into, under the site folder.
pub const PAGE_DIRS: [&str; 11] = [
    "similar",
    "different",
    "chronological",
    "themes",
    "golden",
    "poems",
    "words",
    "complete",
    "complete/similar",
    "complete/different",
    "complete/themes",
];
