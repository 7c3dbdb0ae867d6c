//! The page writer: writes each page atomically, only when its bytes differ
//! from the file on disk, and streams the page manifest as it goes. Safe to
//! share between the render threads.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;
use tempfile::NamedTempFile;

/// The page manifest: `<blake3 hex>  <path>` per line, as `b3sum` writes
/// and checks it (`b3sum --check .pages.b3`), streamed as pages are made.
pub const PAGE_MANIFEST: &str = ".pages.b3";

/// Writes pages under the site folder and counts what it did.
pub(super) struct PageWriter {
    out: PathBuf,
    manifest_path: PathBuf,
    manifest: Mutex<BufWriter<NamedTempFile>>,
    pages: AtomicUsize,
    written: AtomicUsize,
    unchanged: AtomicUsize,
    bytes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// What the writer did, once finished.
pub(super) struct Written {
    pub pages: usize,
    pub written: usize,
    pub unchanged: usize,
    pub bytes: u64,
    pub failures: Vec<String>,
}

impl PageWriter {
    /// Starts the page manifest beside its final place under `out`.
    pub fn new(out: &Path) -> Result<Self> {
        let manifest_path = out.join(PAGE_MANIFEST);
        let manifest = Mutex::new(BufWriter::new(crate::fs::temp_file_beside(&manifest_path)?));
        Ok(PageWriter {
            out: out.to_path_buf(),
            manifest_path,
            manifest,
            pages: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            unchanged: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        })
    }

    /// Writes the page at `rel` (site-relative). A page is rewritten only
    /// when its bytes differ from the file on disk; comparing with the file
    /// itself needs no per-page state in memory. Failures are collected.
    pub fn emit(&self, rel: String, data: &[u8]) {
        let path = self.out.join(&rel);
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.pages.fetch_add(1, Ordering::Relaxed);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == data.len() as u64)
            && std::fs::read(&path).is_ok_and(|old| old == data);
        if same {
            self.unchanged.fetch_add(1, Ordering::Relaxed);
        } else {
            match crate::fs::write_atomic_unsynced(&path, data) {
                Ok(()) => {
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => self.fail(format!("{}: {e:#}", path.display())),
            }
        }
        let line = format!("{}  {rel}\n", blake3::hash(data).to_hex());
        if let Err(e) = self.manifest.lock().unwrap().write_all(line.as_bytes()) {
            self.fail(format!("{}: {e}", self.manifest_path.display()));
        }
    }

    /// Records a failure to report at the end.
    pub fn fail(&self, message: String) {
        self.failures.lock().unwrap().push(message);
    }

    /// Moves the page manifest into place and returns the counts.
    pub fn finish(self) -> Written {
        let finished = self
            .manifest
            .into_inner()
            .unwrap()
            .into_inner()
            .map_err(|e| e.into_error());
        let mut failures = self.failures.into_inner().unwrap();
        if let Err(e) = finished
            .map_err(anyhow::Error::from)
            .and_then(|tmp| tmp.persist(&self.manifest_path).map(drop).map_err(anyhow::Error::from))
        {
            failures.push(format!("{}: {e:#}", self.manifest_path.display()));
        }
        Written {
            pages: self.pages.into_inner(),
            written: self.written.into_inner(),
            unchanged: self.unchanged.into_inner(),
            bytes: self.bytes.into_inner(),
            failures,
        }
    }
}
