//! Outputs never alias inputs: before any work, every command compares each
//! output path with each input path, after following symbolic links
//! (canonical paths, and device and inode where the file exists), and
//! refuses a pair that would make it write over, or into, what it reads.
//!
//! - An output that is an input (the same file or folder, by any name).
//! - An output inside a folder read whole (a cache), or a folder read whole
//!   inside an output folder: writing one changes the other.
//! - An input file inside an output folder, except the files that folder's
//!   writer keeps for its readers (`<cache>/embeddings.json`, which `build`
//!   writes and precompute reads).
//! - Two outputs of one command that are the same folder or nested.
//!
//! A poems folder is read file by file, so an output folder inside it (a
//! build run in the poems folder) is fine: its reader skips this tool's
//! caches and sites.

use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One path a command reads or writes, with the flag that named it.
#[derive(Debug, Clone)]
pub struct Role<'a> {
    flag: &'a str,
    path: &'a Path,
    /// A folder whose every file belongs to it (a cache, a site), not a
    /// file or a poems folder.
    tree: bool,
    /// Input files allowed inside this output folder.
    keeps: &'static [&'static str],
}

/// Files an output folder may hold that the command also reads: the
/// embeddings `build` writes into the cache.
const CACHE_KEEPS: &[&str] = &["embeddings.json", "themes-embeddings.json", "palette-embeddings.json"];

impl<'a> Role<'a> {
    /// A file, or a poems folder (read file by file).
    pub fn file(flag: &'a str, path: &'a Path) -> Self {
        Role {
            flag,
            path,
            tree: false,
            keeps: &[],
        }
    }

    /// A folder that is one whole: a cache or a site.
    pub fn folder(flag: &'a str, path: &'a Path) -> Self {
        Role {
            flag,
            path,
            tree: true,
            keeps: &[],
        }
    }

    /// A cache folder written by this command: it may hold the embeddings
    /// files that `build` writes there.
    pub fn cache_out(flag: &'a str, path: &'a Path) -> Self {
        Role {
            keeps: CACHE_KEEPS,
            ..Role::folder(flag, path)
        }
    }
}

/// Where a path really is.
struct Place {
    /// Canonical where it exists; else its nearest existing ancestor's
    /// canonical path with the rest appended.
    real: PathBuf,
    /// Device and inode, where it exists.
    id: Option<(u64, u64)>,
    /// An existing device, pipe or socket (`/dev/stdout`): no alias.
    special: bool,
}

fn place(path: &Path) -> Result<Place> {
    let target = super::resolve_links(path)?;
    let meta = std::fs::metadata(&target).ok();
    let special = meta.as_ref().is_some_and(|m| !m.is_file() && !m.is_dir());
    let id = meta.as_ref().and_then(inode);
    let absolute = std::path::absolute(&target).with_context(|| format!("cannot resolve {}", path.display()))?;
    let mut rest = Vec::new();
    let mut base = absolute.as_path();
    let real = loop {
        match base.canonicalize() {
            Ok(r) => break r,
            Err(_) => match (base.parent(), base.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    base = parent;
                }
                _ => break absolute.clone(),
            },
        }
    };
    let mut real = real;
    for part in rest.iter().rev() {
        real.push(part);
    }
    Ok(Place {
        real: normalize(&real),
        id,
        special,
    })
}

/// Removes `.` and `..` components without touching the file system (only
/// the part of a path that does not exist yet has them left).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

fn same(a: &Place, b: &Place) -> bool {
    match (a.id, b.id) {
        (Some(x), Some(y)) => x == y,
        _ => a.real == b.real,
    }
}

/// Whether `inner` lies strictly below `outer`.
fn inside(inner: &Place, outer: &Place) -> bool {
    inner.real != outer.real && inner.real.starts_with(&outer.real)
}

fn describe(r: &Role) -> String {
    format!("{} {}", r.flag, r.path.display())
}

/// Refuses, before any work, outputs that alias inputs or each other (see
/// the module's list), naming both flags and paths.
pub fn refuse_aliasing(outputs: &[Role], inputs: &[Role]) -> Result<()> {
    let outs: Vec<(&Role, Place)> = outputs.iter().map(|r| Ok((r, place(r.path)?))).collect::<Result<_>>()?;
    let ins: Vec<(&Role, Place)> = inputs.iter().map(|r| Ok((r, place(r.path)?))).collect::<Result<_>>()?;
    for (o, op) in outs.iter().filter(|(_, p)| !p.special) {
        for (i, ip) in &ins {
            if same(op, ip) {
                let kind = if ip.id.is_some() && ip.real.is_dir() {
                    "folder"
                } else {
                    "file"
                };
                // A flag names the input ("the same file as --poems P"); a
                // noun is one ("the shard S, the same folder").
                let what = if i.flag.starts_with("--") {
                    format!("the same {kind} as {}", describe(i))
                } else {
                    format!("{}, the same {kind}", describe(i))
                };
                bail!(
                    "{} is {what} (after following links): writing it would destroy the input; choose another {}",
                    describe(o),
                    o.flag
                );
            }
            if i.tree && inside(op, ip) {
                bail!(
                    "{} is inside {}, which this command reads: writing there would change its input; choose a {} outside it",
                    describe(o),
                    describe(i),
                    o.flag
                );
            }
            let kept = ip.real.file_name().is_some_and(|n| o.keeps.iter().any(|k| n == *k))
                && ip.real.parent() == Some(op.real.as_path());
            if o.tree && inside(ip, op) && !kept {
                bail!(
                    "{} is inside {}, which this command writes: keep inputs outside the folders it writes, or choose another {}",
                    describe(i),
                    describe(o),
                    o.flag
                );
            }
        }
    }
    for (k, (a, ap)) in outs.iter().enumerate() {
        for (b, bp) in &outs[k + 1..] {
            if same(ap, bp) || inside(ap, bp) || inside(bp, ap) {
                bail!(
                    "{} and {} overlap: each needs a folder of its own",
                    describe(a),
                    describe(b)
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn an_output_is_refused_when_it_is_an_input_by_any_name() {
        let d = tempfile::tempdir().unwrap();
        let poems = d.path().join("poems.jsonl");
        std::fs::write(&poems, "{}").unwrap();
        std::os::unix::fs::symlink(&poems, d.path().join("link.json")).unwrap();
        std::fs::hard_link(&poems, d.path().join("hard.jsonl")).unwrap();
        let sub = d.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        for out in [
            poems.clone(),
            d.path().join("link.json"),
            d.path().join("hard.jsonl"),
            sub.join("../poems.jsonl"),
        ] {
            let err = refuse_aliasing(&[Role::file("--out", &out)], &[Role::file("--poems", &poems)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("same file") && err.contains("--poems"), "{err}");
        }
        refuse_aliasing(
            &[Role::file("--out", &d.path().join("new.json"))],
            &[Role::file("--poems", &poems)],
        )
        .unwrap();
    }

    #[test]
    fn folders_read_whole_and_written_whole_do_not_nest() {
        let d = tempfile::tempdir().unwrap();
        let cache = d.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let poems = d.path().join("p.json");
        std::fs::write(&poems, "[]").unwrap();
        // An output inside a cache that is read.
        let export = cache.join("x.jsonl");
        assert!(refuse_aliasing(&[Role::file("--out", &export)], &[Role::folder("--cache", &cache)]).is_err());
        // A poems file inside an output folder, but the cache's embeddings are fine.
        assert!(refuse_aliasing(&[Role::folder("--out", d.path())], &[Role::file("--poems", &poems)]).is_err());
        let e = cache.join("embeddings.json");
        refuse_aliasing(&[Role::cache_out("--cache", &cache)], &[Role::file("--embeddings", &e)]).unwrap();
        // A site folder inside a poems folder is fine.
        refuse_aliasing(
            &[Role::folder("--out", &d.path().join("site"))],
            &[Role::file("--poems", d.path())],
        )
        .unwrap();
        // Two outputs in one folder.
        assert!(refuse_aliasing(
            &[
                Role::folder("--cache", &cache),
                Role::folder("--out", &cache.join("site"))
            ],
            &[]
        )
        .is_err());
    }
}
