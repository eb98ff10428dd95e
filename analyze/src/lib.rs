//! Offline analysis of netlat capture files (docs/schema.md): one-way latency of packets
//! between observation points.
//!
//! `netlat-analyze FILES_OR_DIRS...` reads `*.events.parquet` files, matches observations
//! of the same packet by `pkt_id`, and reports per ordered pair of observation points the
//! count, min, p50, p90, p99 and max of the latency between consecutive observations.
//! Timestamps of different hosts are first mapped into one time base with the clock maps
//! estimated from the captures' `*.sync.parquet` tables, and every cross-host figure
//! carries the alignment's error bound; `netlat-analyze sync` prints the clock table.
//!
//! * [`input`]: finding files and rejecting unusable ones (with a reason, never fatal).
//! * [`matching`]: the polars query: matching, ambiguity, percentiles (nearest rank).
//! * [`clocks`]: clock alignment from the captures' sync tables and, through [`traffic`],
//!   the data packets themselves;
//! * [`drops`]: report loss (events the captures could not record) from the run metadata;
//! * [`report`]: table, CSV and JSON output; [`sync_report`]: the clock table.
//! * [`charts`]: SVG/PNG charts and the self-contained HTML report page (plain data in).
//!
//! # Exit codes of `netlat-analyze`
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (some files may have been skipped, with warnings on stderr) |
//! | 1 | no usable input file, or a runtime error |
//! | 2 | usage error (bad arguments) |

pub mod charts;
pub mod clocks;
pub mod drops;
pub mod export;
pub mod flows;
pub mod html_report;
pub mod input;
pub mod kernel_events;
pub mod latencies;
pub mod matching;
pub mod out;
pub mod pcap;
pub mod progress;
pub mod report;
pub mod routes;
pub mod spill;
pub mod stats;
pub mod summary;
pub mod sync_report;
pub mod tcpbytes;
pub mod traffic;
pub mod walk;

use std::collections::BTreeSet;

use clocks::Alignment;
use input::{Inputs, Skipped};
use matching::Analysis;

/// How clocks are aligned.
#[derive(Debug, Clone, Default)]
pub struct ClockOptions {
    /// The user declares that all captures share one clock.
    pub same_clock: bool,
    /// Reference host (default: the first by name with sync data).
    pub reference: Option<String>,
    /// Estimator settings.
    pub estimator: sync::pair::Config,
    /// Hosts whose offset the user stated (pcap `--offset`).
    pub stated: Vec<String>,
}

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

/// Host names of events files, from their footers (`netlat.host`), or from the `host`
/// column of files without that key.
pub fn event_hosts(files: &[std::path::PathBuf]) -> BTreeSet<String> {
    let mut hosts = BTreeSet::new();
    for f in files {
        // Files are validated before, so a panic here is not expected; if
        // polars panics anyway, that file contributes no host name.
        let _ = input::guard(|| event_host(f, &mut hosts));
    }
    hosts
}

fn event_host(f: &std::path::Path, hosts: &mut BTreeSet<String>) {
    use polars::prelude::*;
    {
        let from_footer = std::fs::File::open(f).ok().and_then(|file| {
            let md = ParquetReader::new(file).get_metadata().ok()?.clone();
            let kv = md.key_value_metadata.as_ref()?.iter().find(|kv| kv.key == "netlat.host")?.value.clone()?;
            Some(kv)
        });
        match from_footer {
            Some(h) => {
                hosts.insert(h);
            }
            None => {
                let distinct = matching::scan_file(f)
                    .and_then(|lf| lf.select([col("host")]).unique(None, UniqueKeepStrategy::Any).collect());
                if let Ok(df) = distinct {
                    if let Ok(c) = df.column("host").and_then(|c| c.str().cloned()) {
                        hosts.extend(c.iter().flatten().map(str::to_owned));
                    }
                }
            }
        }
    }
}

/// The clock alignment alone (`netlat-analyze sync`): hosts come from the events files'
/// footers and from the sync tables.
pub fn clocks(inputs: &mut Inputs, clock: &ClockOptions) -> Alignment {
    let hosts = event_hosts(&inputs.used);
    clocks::align(&hosts, &mut inputs.sync, &inputs.meta, &mut inputs.skipped, clock, &inputs.used)
}

/// Analyzes `inputs.used`, aligning clocks with `inputs.sync`.
///
/// Validation only reads footers, so a file with intact footer but corrupt data is found
/// only when the query reads it. Then every file is read on its own, the ones that fail
/// are moved to `inputs.skipped`, and the query is run again on the rest; the caller can
/// tell new skips by the length of `inputs.skipped` before the call.
pub fn analyze(
    inputs: &mut Inputs,
    clock: &ClockOptions,
    opts: &matching::Options,
) -> Result<(Analysis, Alignment), AnalyzeError> {
    loop {
        if inputs.used.is_empty() {
            return Err(AnalyzeError::NoUsableInput { skipped: inputs.skipped.len() });
        }
        let (sync, meta, skipped, used) = (&mut inputs.sync, &inputs.meta, &mut inputs.skipped, &inputs.used);
        let align = |points: &[matching::Point]| {
            let hosts: BTreeSet<String> = points.iter().map(|p| p.host.clone()).collect();
            clocks::align(&hosts, sync, meta, skipped, clock, used)
        };
        let result =
            input::guard(|| matching::scan_files(&inputs.used).and_then(|lf| matching::analyze(lf, opts, align)))
                .unwrap_or_else(|m| {
                    Err(polars::error::PolarsError::ComputeError(format!("reader panicked: {m}").into()))
                });
        let err = match result {
            Ok((mut analysis, alignment)) => {
                // Few rows (drops and retransmissions); a file that fails here was read
                // whole by the matching just before, so an error is reported, not skipped.
                analysis.kernel =
                    input::guard(|| kernel_events::read(&inputs.used, &opts.selection)).unwrap_or_else(|m| {
                        Err(polars::error::PolarsError::ComputeError(format!("reader panicked: {m}").into()))
                    })?;
                return Ok((analysis, alignment));
            }
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
