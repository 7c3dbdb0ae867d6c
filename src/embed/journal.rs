//! The journal: every vector received, appended as it arrives to
//! `<out>.journal.jsonl`, keyed by a hash of the served model, the prefix
//! and the text. A crash loses at most the requests in flight, and an
//! unchanged corpus sends nothing. (The orderings cache is another thing.)

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The key of one text.
pub fn text_hash(model: &str, prefix: &str, text: &str) -> String {
    let mut h = blake3::Hasher::new();
    for part in [model, prefix, text] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().to_hex()[..32].to_owned()
}

/// Where the journal of an output file lives.
pub fn journal_path(out: &Path) -> PathBuf {
    beside(out, ".journal.jsonl")
}

/// The name earlier versions used; still read, never written or removed.
fn legacy_path(out: &Path) -> PathBuf {
    beside(out, ".cache.jsonl")
}

fn beside(out: &Path, suffix: &str) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[derive(Serialize, Deserialize)]
struct Line {
    h: String,
    e: Vec<f32>,
}

/// The vectors journaled so far, and the file new ones are appended to.
pub struct Journal {
    pub path: PathBuf,
    vectors: HashMap<String, Vec<f32>>,
    file: Option<std::io::BufWriter<std::fs::File>>,
    appended: usize,
    /// The file ends in a torn line, which the next append must not extend.
    torn: bool,
}

impl Journal {
    /// Reads the journal of `out` (a torn or damaged line is skipped).
    pub fn open(out: &Path) -> Journal {
        let path = journal_path(out);
        let mut vectors = HashMap::new();
        for p in [legacy_path(out), path.clone()] {
            let Ok(f) = std::fs::File::open(&p) else { continue };
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                if let Ok(l) = serde_json::from_str::<Line>(&line) {
                    vectors.insert(l.h, l.e);
                }
            }
        }
        let torn = ends_torn(&path);
        Journal {
            path,
            vectors,
            file: None,
            appended: 0,
            torn,
        }
    }

    /// The journaled vector of a key.
    pub fn get(&self, hash: &str) -> Option<&Vec<f32>> {
        self.vectors.get(hash)
    }

    /// Whether a key was journaled before this process started (what it
    /// appends is not read back).
    pub fn had(&self, hash: &str) -> bool {
        self.vectors.contains_key(hash)
    }

    /// Vectors appended by this process.
    pub fn appended(&self) -> usize {
        self.appended
    }

    /// Appends one vector and flushes it, so that a crash keeps it.
    pub fn append(&mut self, hash: &str, vector: &[f32]) -> Result<()> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("cannot open {}", self.path.display()))?;
            self.file = Some(std::io::BufWriter::new(f));
        }
        let w = self.file.as_mut().expect("opened above");
        if std::mem::take(&mut self.torn) {
            w.write_all(b"\n")?;
        }
        self.appended += 1;
        serde_json::to_writer(
            &mut *w,
            &Line {
                h: hash.to_owned(),
                e: vector.to_vec(),
            },
        )?;
        w.write_all(b"\n")?;
        w.flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Whether a file's last byte is not a newline.
fn ends_torn(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut last = [b'\n'];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_depend_on_model_prefix_and_text() {
        let h = text_hash("m", "p", "t");
        assert_ne!(h, text_hash("m2", "p", "t"));
        assert_ne!(h, text_hash("m", "", "pt"));
        assert_eq!(h, text_hash("m", "p", "t"));
    }

    #[test]
    fn appended_vectors_are_read_back_and_torn_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("e.json");
        let mut j = Journal::open(&out);
        j.append("a", &[1.0, 2.0]).unwrap();
        drop(j);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(journal_path(&out))
            .unwrap();
        f.write_all(b"{\"h\":\"b\",\"e\":[1.").unwrap();
        let mut j = Journal::open(&out);
        assert_eq!(j.get("a"), Some(&vec![1.0, 2.0]));
        assert_eq!(j.get("b"), None);
        j.append("c", &[3.0]).unwrap();
        drop(j);
        assert_eq!(Journal::open(&out).get("c"), Some(&vec![3.0]));
        // Earlier versions' file is read too.
        std::fs::write(legacy_path(&out), "{\"h\":\"old\",\"e\":[4.0]}\n").unwrap();
        assert_eq!(Journal::open(&out).get("old"), Some(&vec![4.0]));
    }
}
