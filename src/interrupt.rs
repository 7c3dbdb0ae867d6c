//! Ctrl-C: the first press asks long work to stop at its next checkpoint
//! (so nothing computed is lost); a second press stops at once, which is
//! safe too, since every output is written atomically.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static REQUESTED: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// Installs the handler (once per process; later calls do nothing).
pub fn install() {
    INSTALL.call_once(|| {
        let result = ctrlc::set_handler(|| {
            if REQUESTED.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: stopping now; run the same command to resume");
                std::process::exit(130);
            }
            eprintln!("\ninterrupted: finishing the current step, then saving (Ctrl-C again to stop now)");
        });
        if let Err(e) = result {
            log::debug!("no Ctrl-C handler: {e}");
        }
    });
}

/// Whether Ctrl-C was pressed.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}
