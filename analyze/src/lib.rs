//! Offline analysis of netlat capture files (docs/schema.md): one-way latency of packets
//! between observation points.
//!
//! `netlat-analyze FILES_OR_DIRS...` reads `*.events.parquet` files, matches observations
//! of the same packet by `pkt_id`, and reports per ordered pair of observation points the
//! count, min, p50, p90, p99 and max of the latency between consecutive observations.
//! All captures are assumed to share one clock.
//!
//! * [`input`]: finding files and rejecting unusable ones (with a reason, never fatal).
//! * [`matching`]: the polars query: matching, ambiguity, percentiles (nearest rank).
//! * [`report`]: table, CSV and JSON output.
//!
//! # Exit codes of `netlat-analyze`
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (some files may have been skipped, with warnings on stderr) |
//! | 1 | no usable input file, or a runtime error |
//! | 2 | usage error (bad arguments) |

pub mod input;
pub mod matching;
pub mod report;

use input::{Inputs, Skipped};
use matching::Analysis;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: no usable input, or a runtime error.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: usage error (what clap uses for bad arguments).
pub const EXIT_USAGE: u8 = 2;

/// Why an analysis could not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Every input was skipped, or there was none.
    #[error("no usable capture file ({skipped} skipped)")]
    NoUsableInput {
        /// Number of files that were skipped.
        skipped: usize,
    },
    /// The query failed for a reason not attributable to a single file.
    #[error("analysis failed: {0}")]
    Query(#[from] polars::error::PolarsError),
}

/// Analyzes `inputs.used`.
///
/// Validation only reads footers, so a file with intact footer but corrupt data is found
/// only when the query reads it. Then every file is read on its own, the ones that fail
/// are moved to `inputs.skipped`, and the query is run again on the rest; the caller can
/// tell new skips by the length of `inputs.skipped` before the call.
pub fn analyze(inputs: &mut Inputs) -> Result<Analysis, AnalyzeError> {
    loop {
        if inputs.used.is_empty() {
            return Err(AnalyzeError::NoUsableInput { skipped: inputs.skipped.len() });
        }
        let result = matching::scan_files(&inputs.used).and_then(matching::analyze);
        let err = match result {
            Ok(analysis) => return Ok(analysis),
            Err(err) => err,
        };
        let before = inputs.used.len();
        let mut kept = Vec::with_capacity(before);
        for path in std::mem::take(&mut inputs.used) {
            match input::probe(&path) {
                Ok(()) => kept.push(path),
                Err(e) => inputs.skipped.push(Skipped::new(&path, &e)),
            }
        }
        inputs.used = kept;
        if inputs.used.len() == before {
            // No single file is to blame: retrying would fail the same way.
            return Err(err.into());
        }
    }
}
