//! Shared preamble of the kernel tests.

use std::sync::{Mutex, MutexGuard};

/// Kernel tests share hooks and program lists: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Start of every kernel test: `None` (skip, with a message) without root
/// outside CI, a failure without root in CI; otherwise the guard that keeps
/// kernel tests one at a time within a test binary (cargo runs test
/// binaries one after another).
pub fn kernel_test(test: &str) -> Option<MutexGuard<'static, ()>> {
    if !crate::netns::is_root() {
        assert!(std::env::var("CI").is_err(), "{test}: kernel tests must run as root in CI");
        eprintln!("SKIPPED {test}: needs root (run scripts/test as root)");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}
