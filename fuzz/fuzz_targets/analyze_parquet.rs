//! The analyzer on an arbitrary file given as a capture file: footer validation
//! (`input::discover`), then the full analysis (`analyze::analyze`) or the clock
//! alignment for a sync table (`analyze::clocks`). Every outcome is a result or a
//! skip with a reason; a panic that escapes the analyzer, an abort or unbounded
//! memory is a bug.
//!
//! Panics inside polars are caught by the analyzer at its file-reading boundary
//! and turned into a skip. libfuzzer-sys installs a panic hook that aborts at
//! the panic site, before any `catch_unwind` is reached; this target replaces it
//! with a quiet one, so only panics that escape the analyzer abort (libfuzzer-sys
//! aborts on those after unwinding). `NETLAT_FUZZ_STRICT=1` keeps the aborting
//! hook, to find the polars panics themselves.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("netlat-fuzz-analyze-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    })
}

fuzz_target!(
    init: {
        // One polars thread: faster per input, and the fuzzer runs one input at a time.
        std::env::set_var("POLARS_MAX_THREADS", "1");
        if std::env::var_os("NETLAT_FUZZ_STRICT").is_none() {
            std::panic::set_hook(Box::new(|_| {}));
        }
    },
    |data: &[u8]| {
        let path = dir().join("fuzz.events.parquet");
        std::fs::write(&path, data).expect("write input");
        let mut inputs = analyze::input::discover(std::slice::from_ref(&path));
        assert_eq!(inputs.used.len() + inputs.sync.len() + inputs.skipped.len(), 1, "{inputs:?}");
        let clock = analyze::ClockOptions::default();
        if !inputs.sync.is_empty() {
            let _ = analyze::clocks(&mut inputs, &clock);
        } else if !inputs.used.is_empty() {
            let _ = analyze::input::probe(&path);
            let _ = analyze::analyze(&mut inputs, &clock, &analyze::matching::Options::default());
        }
    }
);
