//! The page writer: writes each page atomically, only when its bytes differ
//! from the file on disk, and streams the page manifest as it goes. Safe to
//! share between the render threads.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::Result;

use crate::fs::Output;

use super::names::PAGE_MANIFEST;

/// Writes pages under the site folder and counts what it did.
pub(super) struct PageWriter {
    out: PathBuf,
    manifest_path: PathBuf,
    manifest: Mutex<BufWriter<Output>>,
    /// A manifest line could not be written: the manifest is not installed.
    manifest_broken: AtomicBool,
    pages: AtomicUsize,
    written: AtomicUsize,
    unchanged: AtomicUsize,
    bytes: AtomicU64,
    failures: Mutex<Vec<String>>,
}

/// What the writer did, once finished.
pub(super) struct Written {
    /// Pages on disk with this render's bytes (written or unchanged).
    pub pages: usize,
    pub written: usize,
    pub unchanged: usize,
    pub bytes: u64,
    pub failures: Vec<String>,
}

impl PageWriter {
    /// Removes the earlier page manifest (pages are about to change) and
    /// starts the new one beside its final place under `out`.
    pub fn new(out: &Path) -> Result<Self> {
        let manifest_path = out.join(PAGE_MANIFEST);
        match std::fs::remove_file(&manifest_path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(anyhow::Error::from(e).context(format!("cannot remove {}", manifest_path.display())))
            }
            _ => {}
        }
        // Synced, and its folder after the rename: the manifest commits the
        // site, so it must survive a power cut once a render reports success.
        let manifest = Mutex::new(BufWriter::new(Output::create(&manifest_path, true)?));
        Ok(PageWriter {
            out: out.to_path_buf(),
            manifest_path,
            manifest,
            manifest_broken: AtomicBool::new(false),
            pages: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            unchanged: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
            failures: Mutex::new(Vec::new()),
        })
    }

    /// Writes the page at `rel` (site-relative). A page is rewritten only
    /// when its bytes differ from the file on disk; comparing with the file
    /// itself needs no per-page state in memory. Failures are collected, and
    /// a page that could not be written is neither counted nor listed.
    pub fn emit(&self, rel: String, data: &[u8]) {
        let path = self.out.join(&rel);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == data.len() as u64)
            && std::fs::read(&path).is_ok_and(|old| old == data);
        if same {
            self.unchanged.fetch_add(1, Ordering::Relaxed);
        } else {
            match crate::fs::write_atomic_unsynced(&path, data) {
                Ok(()) => {
                    self.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return self.fail(format!("{}: {e:#}", path.display())),
            }
        }
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.pages.fetch_add(1, Ordering::Relaxed);
        let line = format!("{}  {rel}\n", blake3::hash(data).to_hex());
        if let Err(e) = self.manifest.lock().unwrap().write_all(line.as_bytes()) {
            if !self.manifest_broken.swap(true, Ordering::Relaxed) {
                self.fail(format!("{}: {e}; it is left out", self.manifest_path.display()));
            }
        }
    }

    /// Records a failure to report at the end.
    pub fn fail(&self, message: String) {
        self.failures.lock().unwrap().push(message);
    }

    /// Returns the counts; with `install`, and when every manifest line was
    /// written, moves the page manifest into place.
    pub fn finish(self, install: bool) -> Written {
        let mut failures = self.failures.into_inner().unwrap();
        if install && !self.manifest_broken.into_inner() {
            let installed = self
                .manifest
                .into_inner()
                .unwrap()
                .into_inner()
                .map_err(|e| anyhow::Error::from(e.into_error()))
                .and_then(Output::finish);
            if let Err(e) = installed {
                failures.push(format!("{}: {e:#}", self.manifest_path.display()));
            }
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
