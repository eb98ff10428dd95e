//! `netlat-analyze`: one-way latency between observation points from netlat captures.
//!
//! Exit codes: 0 success, 1 no usable input or runtime error, 2 usage error.
//! The logic lives in the `analyze` library; this file only parses arguments, prints
//! warnings and output, and maps errors to exit codes.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use analyze::input::{self, Skipped};
use analyze::report::{Format, Report};
use analyze::{EXIT_FAILURE, EXIT_OK};
use anyhow::Context;
use clap::Parser;

const AFTER_HELP: &str = "\
Matching: rows with the same pkt_id are observations of one packet. An id seen twice at one
point is ambiguous and left out (counted as `ambiguous ids`); an id seen at only one point is
counted as unmatched for that point. The observations of every other id are ordered by ts_ns
and each consecutive pair a -> b gives one latency ts_b - ts_a. Captures are assumed to share
one clock.

Percentiles use the nearest-rank method: the p-th percentile of n values is the value at
rank ceil(p*n/100). Table and CSV give microseconds with 3 decimals, JSON integer nanoseconds.

Files that are unreadable, not Parquet, truncated, or lack the netlat columns or the
netlat.schema_version=1 metadata are skipped with a warning; the rest are analyzed.

Exit codes:
  0  success (possibly with skipped files)
  1  no usable input file, or a runtime error
  2  usage error";

/// One-way packet latency between observation points, from netlat capture files.
#[derive(Debug, Parser)]
#[command(name = "netlat-analyze", version, after_help = AFTER_HELP)]
struct Cli {
    /// Capture files, or directories searched recursively for *.events.parquet.
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

fn warn(s: &Skipped) {
    eprintln!("netlat-analyze: warning: skipping {}: {}", s.file, s.reason);
}

fn run(cli: &Cli) -> anyhow::Result<()> {
    let mut inputs = input::discover(&cli.paths);
    inputs.skipped.iter().for_each(warn);
    let reported = inputs.skipped.len();
    let result = analyze::analyze(&mut inputs);
    // Files found unreadable only while querying.
    inputs.skipped[reported..].iter().for_each(warn);
    let analysis = result?;

    let report = Report { analysis: &analysis, used: &inputs.used, skipped: &inputs.skipped };
    if cli.format == Format::Csv {
        eprint!("{}", report.summary());
    }
    let mut out = io::stdout().lock();
    let written = out.write_all(report.render(cli.format).as_bytes()).and_then(|()| out.flush());
    match written {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing output"),
    }
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help/--version.
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("netlat-analyze: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
