//! The filter compiler on arbitrary text: errors, never panics, and a
//! compiled filter always fits the kernel's fixed tables.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code, missing_docs)]
#[path = "../../capture/src/filter.rs"]
mod filter;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = filter::compile(text) {
            assert!(usize::from(f.n_terms) <= capture_common::abi::MAX_TERMS);
            for t in 0..usize::from(f.n_terms) {
                assert!(usize::from(f.term_len[t]) <= capture_common::abi::MAX_ATOMS);
            }
        }
    }
});
