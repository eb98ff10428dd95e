//! Inputs the `analyze_parquet` fuzz target (fuzz/) found, kept as regression
//! tests (issue 9): each is skipped with a reason naming the file, never a
//! panic or an out-of-bounds read.

use std::path::PathBuf;

use analyze::{input, ClockOptions};

fn regression(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions").join(name)
}

/// A mutated events file whose footer names a row group reaching past the end
/// of the file: polars prefetched that range unchecked (undefined behaviour;
/// an abort under the fuzzer's UB checks, a panic in its reader otherwise).
#[test]
fn issue9_fuzz_row_group_past_the_end_is_skipped() {
    let path = regression("row-group-past-the-end.parquet");
    let mut inputs = input::discover(std::slice::from_ref(&path));
    assert!(inputs.used.is_empty(), "{inputs:?}");
    assert_eq!(inputs.skipped.len(), 1);
    let s = &inputs.skipped[0];
    assert_eq!(s.file, path.display().to_string());
    assert!(s.reason.contains("names bytes") && s.reason.contains("13662-byte file"), "{}", s.reason);
    assert!(analyze::analyze(&mut inputs, &ClockOptions::default(), &Default::default()).is_err());
}

/// Every input of the fuzz target's seed set and its regressions: a result or
/// a skip, never a panic escaping the analyzer.
#[test]
fn issue9_fuzz_seeds_and_regressions_never_panic() {
    let dirs = [PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/analyze_parquet"), regression("")];
    let mut n = 0;
    for dir in dirs {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let mut inputs = input::discover(std::slice::from_ref(&path));
            assert_eq!(inputs.used.len() + inputs.sync.len() + inputs.skipped.len(), 1, "{}", path.display());
            if !inputs.used.is_empty() {
                let _ = input::probe(&path);
                let _ = analyze::analyze(&mut inputs, &ClockOptions::default(), &Default::default());
            } else if !inputs.sync.is_empty() {
                let _ = analyze::clocks(&mut inputs, &ClockOptions::default());
            }
            n += 1;
        }
    }
    assert!(n >= 9, "{n} inputs");
}
