//! Pruning: removing the pages of an earlier render that this one no longer
//! has. Only files the renderer names are touched; anything else in the
//! site folders is the user's and stays.

use std::collections::HashSet;
use std::path::Path;

/// Which file names a render produces, to find the stale ones of an
/// earlier render (pages of poems now gone, pages beyond a smaller cap,
/// text twins no longer asked for, temp files of an interrupted run).
pub(super) struct Expected {
    pub keys: HashSet<String>,
    /// `similar-<name>` and `different-<name>` of every theme.
    pub themes: HashSet<String>,
    pub digits: usize,
    pub cap: usize,
    /// Pages per theme ordering.
    pub theme_cap: usize,
    pub chrono_pages: usize,
    pub txt: bool,
}

impl Expected {
    fn stale(&self, dir: &str, name: &str) -> bool {
        if name.starts_with(".tmp") {
            return true;
        }
        let Some((stem, ext)) = name.rsplit_once('.') else {
            return false;
        };
        if ext != "html" && ext != "txt" {
            return false; // not ours
        }
        let (key, page) = match dir {
            "chronological" => (None, stem),
            _ => match stem.rsplit_once('-') {
                Some((k, p)) => (Some(k), p),
                None => return false,
            },
        };
        if page.is_empty() || !page.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let n: usize = page.parse().unwrap_or(usize::MAX);
        let keep = page.len() == self.digits
            && (ext == "html" || self.txt)
            && match key {
                None => n < self.chrono_pages,
                Some(k) if dir == "themes" => n < self.theme_cap && self.themes.contains(k),
                Some(k) => n < self.cap && self.keys.contains(k),
            };
        !keep
    }
}

/// Removes the stale pages under `out`'s page folders; returns how many
/// went, and records what could not be read or removed in `failures`.
pub(super) fn remove_stale(out: &Path, expected: &Expected, failures: &mut Vec<String>) -> usize {
    let mut removed = 0;
    for d in super::PAGE_DIRS {
        let dir = out.join(d);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                failures.push(format!("{}: {e}", dir.display()));
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if expected.stale(d, &name) {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => failures.push(format!("{}: cannot remove: {e}", entry.path().display())),
                }
            }
        }
    }
    removed
}
