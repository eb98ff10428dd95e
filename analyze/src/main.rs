//! `netlat-analyze`: one-way latency between observation points from netlat captures.
//!
//! Exit codes: 0 success, 1 no usable input or runtime error, 2 usage error.
//! The logic lives in the `analyze` library; this file only parses arguments, prints
//! warnings and output, and maps errors to exit codes.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use analyze::flows::Selection;
use analyze::input::{self, Skipped};
use analyze::matching::Options;
use analyze::report::{Format, Report, Table};
use analyze::walk::Detail;
use analyze::{ClockOptions, EXIT_FAILURE, EXIT_OK};
use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Matching: rows with the same pkt_id are observations of one packet. An id seen twice at one
point is ambiguous and left out (counted as `ambiguous ids`); an id seen at only one point is
counted as unmatched for that point. The observations of every other id are ordered by time
and each consecutive pair a -> b gives one latency ts_b - ts_a.

Clocks: timestamps of different hosts are mapped into the time base of a reference host with
the offsets and drifts estimated from the clock-sync probes in *.sync.parquet (see
`netlat-analyze sync`). bound_us is the resulting error bound (±) of each latency: a fixed
forward/reverse asymmetry of the sync path cannot be observed, so it is bounded, not removed.
`unaligned` marks latencies between hosts that could not be aligned; the notes say why.
--same-clock declares that all captures share one clock (hosts on one machine).

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
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    latency: Latency,
}

/// What to analyze and what to print besides the hop and path tables.
#[derive(Debug, Args)]
struct Latency {
    #[command(flatten)]
    common: Common,
    /// Topology file (conf/hosts.yaml): path names, points nobody saw, hop segments.
    #[arg(long, value_name = "FILE")]
    hosts: Option<PathBuf>,
    /// Keep only packets that pass this filter, in netlat-capture's filter language
    /// (tcpdump-like: `udp and dst port 5000`, `host 198.18.0.2`, `not icmp`).
    #[arg(long, value_name = "EXPR")]
    filter: Option<String>,
    /// Keep only observation points of this host (repeatable).
    #[arg(long = "host", value_name = "HOST")]
    host: Vec<String>,
    /// Keep packets first seen at least SECS after the first event.
    #[arg(long, value_name = "SECS")]
    since: Option<f64>,
    /// Keep packets first seen at most SECS after the first event.
    #[arg(long, value_name = "SECS")]
    until: Option<f64>,
    /// Also print the hop table per flow.
    #[arg(long, value_enum, value_name = "WHAT")]
    by: Option<By>,
    /// Also print the hop table per time window of SECS (by the time of the earlier point).
    #[arg(long, value_name = "SECS")]
    window: Option<f64>,
    /// The table `--format csv` writes.
    #[arg(long, value_enum, default_value_t = Table::Hops)]
    table: Table,
    /// Folder for temporary files when the input is larger than --memory-events (default:
    /// the system's temporary folder, $TMPDIR).
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    /// Most events held in memory at once (in TCP byte mode, rows: one per tracked
    /// position): larger inputs are matched in buckets of packets spilled to --spill-dir
    /// (24 bytes per row on disk), so memory stays bounded.
    #[arg(long, value_name = "N", default_value_t = analyze::matching::BUCKET_ROWS)]
    memory_events: usize,
    /// Also write the results as Parquet tables into DIR (one row per packet and hop,
    /// and the summary tables; see docs/analysis.md).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Follow TCP per packet, or per tracked byte (sequence position) through every layer
    /// from the sender's socket to the receiver's read; auto: bytes when the captures
    /// recorded socket-layer hooks (--layers socket or all).
    #[arg(long, value_enum, value_name = "UNIT", default_value_t = TcpArg::Auto)]
    tcp: TcpArg,
    /// In byte mode, track the sequence positions divisible by N (a power of two; default
    /// 1024, or the stride the captures sampled TCP at with --sample, if larger).
    #[arg(long, value_name = "N")]
    tcp_stride: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TcpArg {
    /// Bytes with socket-layer hooks in the input, else packets.
    Auto,
    /// Per tracked byte.
    Bytes,
    /// Per packet.
    Packets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum By {
    /// Per flow (protocol, addresses, ports).
    Flow,
}

fn nanos(what: &str, secs: Option<f64>) -> anyhow::Result<Option<i64>> {
    match secs {
        Some(s) if !(s.is_finite() && s >= 0.0) => bail!("{what} must be a number of seconds, at least 0"),
        Some(s) => Ok(Some((s * 1e9).round() as i64)),
        None => Ok(None),
    }
}

impl Latency {
    fn options(&self) -> anyhow::Result<Options> {
        let filter = match &self.filter {
            Some(text) => Some(capture_common::compile::compile(text).context("--filter")?),
            None => None,
        };
        let hosts = match &self.hosts {
            Some(path) => Some(conf::hosts::HostsConf::load(path)?),
            None => None,
        };
        let window_ns = nanos("--window", self.window)?;
        if let Some(s) = self.tcp_stride.filter(|s| !s.is_power_of_two()) {
            bail!("--tcp-stride {s}: must be a power of two (1, 2, 4, ... 1024, ...)");
        }
        if window_ns == Some(0) {
            bail!("--window must be longer than 0 seconds");
        }
        if (self.table == Table::Flows && self.by.is_none()) || (self.table == Table::Windows && window_ns.is_none()) {
            bail!("--table flows needs --by flow, and --table windows needs --window");
        }
        Ok(Options {
            selection: Selection {
                filter,
                hosts: self.host.clone(),
                since_ns: nanos("--since", self.since)?,
                until_ns: nanos("--until", self.until)?,
            },
            detail: Detail { by_flow: self.by == Some(By::Flow), window_ns, hop_rows: self.out.is_some() },
            hosts,
            bucket_rows: self.memory_events.max(1),
            spill_dir: self.spill_dir.clone(),
            tcp: match self.tcp {
                TcpArg::Auto => analyze::tcpbytes::TcpUnit::Auto,
                TcpArg::Bytes => analyze::tcpbytes::TcpUnit::Bytes,
                TcpArg::Packets => analyze::tcpbytes::TcpUnit::Packets,
            },
            tcp_stride: self.tcp_stride.unwrap_or(0),
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the clock table: each host's offset, drift and error bound against the
    /// reference host, the pairs it is based on, and hosts that could not be aligned.
    Sync(Common),
    /// Write one self-contained HTML report with the tables and charts (latency over time
    /// and CDF per hop, per-hop breakdown of each path, clock-sync error bound over time),
    /// and with --png the same charts as PNG files.
    Report(Box<ReportArgs>),
    /// Write the matched packets as pcapng for Wireshark/tshark: one interface per
    /// observation point, every observation at its aligned time, each packet's hop
    /// latencies in its comment.
    Export(Box<ExportArgs>),
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    latency: Latency,
    /// The pcapng file to write.
    #[arg(long, value_name = "OUT", required = true)]
    pcapng: PathBuf,
}

#[derive(Debug, Args)]
struct ReportArgs {
    #[command(flatten)]
    latency: Latency,
    /// The HTML file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "report.html")]
    output: PathBuf,
    /// Also write each chart as a PNG file into DIR.
    #[arg(long, value_name = "DIR")]
    png: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct Common {
    /// Capture files (netlat Parquet, pcap or pcapng), or directories searched recursively
    /// for *.events.parquet, *.sync.parquet, *.pcap, *.pcapng and *.cap.
    #[arg(required = true, value_name = "FILES_OR_DIRS")]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// All captures share one clock: do not align (hosts on one machine).
    #[arg(long)]
    same_clock: bool,
    /// Reference host of the time base (default: the first host by name with sync data).
    #[arg(long, value_name = "HOST")]
    reference: Option<String>,
    /// Clock-fit window, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    sync_window: f64,
    /// Coded-pair check: largest change of the probe gap in flight, ns.
    #[arg(long, value_name = "NS", default_value_t = 2000)]
    sync_purity_ns: i64,
    /// Host name of a pcap file's points (default: the file name without extension).
    #[arg(long = "pcap-host", value_name = "FILE=HOST")]
    pcap_hosts: Vec<String>,
    /// A pcap file's clock is NS nanoseconds ahead of the reference time base (for pcaps
    /// without netlat sync probes); its timestamps are shifted by -NS and trusted as aligned.
    #[arg(long = "offset", value_name = "FILE=NS", allow_hyphen_values = true)]
    offsets: Vec<String>,
    /// UDP port of netlat's sync probes in pcap files (0: any port, by the probe header).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pcap_sync_port: u16,
    /// VXLAN UDP port for pcap files (0: no decapsulation), as netlat-capture's.
    #[arg(long, value_name = "PORT", default_value_t = 4789)]
    vxlan_port: u16,
}

impl Common {
    fn clock(&self) -> anyhow::Result<ClockOptions> {
        if !(self.sync_window >= 0.1 && self.sync_window.is_finite()) {
            bail!("--sync-window must be at least 0.1 seconds");
        }
        let estimator = sync::pair::Config {
            window_ns: (self.sync_window * 1e9) as i64,
            purity_ns: self.sync_purity_ns.max(0),
            ..Default::default()
        };
        Ok(ClockOptions {
            same_clock: self.same_clock,
            reference: self.reference.clone(),
            estimator,
            stated: Vec::new(),
        })
    }

    fn pcap(&self) -> anyhow::Result<analyze::pcap::Options> {
        let split = |flag: &str, v: &str| -> anyhow::Result<(PathBuf, String)> {
            let (f, x) = v.rsplit_once('=').with_context(|| format!("{flag} {v:?}: expected FILE=VALUE"))?;
            Ok((PathBuf::from(f), x.to_owned()))
        };
        let hosts = self.pcap_hosts.iter().map(|v| split("--pcap-host", v)).collect::<anyhow::Result<_>>()?;
        let offsets = self
            .offsets
            .iter()
            .map(|v| {
                let (f, ns) = split("--offset", v)?;
                let ns = ns
                    .trim()
                    .parse::<i64>()
                    .with_context(|| format!("--offset {v:?}: {ns:?} is not an integer number of nanoseconds"))?;
                Ok((f, ns))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(analyze::pcap::Options { hosts, offsets, sync_port: self.pcap_sync_port, vxlan_port: self.vxlan_port })
    }

    /// Finds the inputs and converts pcap files; the pcap notes go to stderr.
    fn inputs(&self, clock: &mut ClockOptions) -> anyhow::Result<(input::Inputs, analyze::pcap::Loaded)> {
        let popts = self.pcap()?;
        let mut inputs = input::discover(&self.paths);
        let loaded = analyze::pcap::load(&mut inputs, &popts)?;
        for src in &loaded.sources {
            eprintln!("netlat-analyze: {}", src.note());
            if let Some(e) = &src.error {
                eprintln!("netlat-analyze: warning: {}: {e}; the {} packets before it are used", src.file, src.packets);
            }
            if src.sync_unresolved > 0 {
                eprintln!(
                    "netlat-analyze: warning: {}: direction of {} sync-probe stamps unknown (only one pcap saw them, or the file does not say): left out of clock alignment",
                    src.file, src.sync_unresolved
                );
            }
        }
        clock.stated.clone_from(&loaded.stated);
        Ok((inputs, loaded))
    }
}

fn warn(s: &Skipped) {
    eprintln!("netlat-analyze: warning: skipping {}: {}", s.file, s.reason);
}

fn print(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing output"),
    }
}

fn latency(latency: &Latency, html: Option<&ReportArgs>, export: Option<&ExportArgs>) -> anyhow::Result<()> {
    let args = &latency.common;
    let mut clock = args.clock()?;
    let mut opts = latency.options()?;
    opts.detail.hop_rows |= html.is_some() || export.is_some();
    let (mut inputs, loaded) = args.inputs(&mut clock)?;
    inputs.skipped.iter().for_each(warn);
    // Captures that sampled TCP kept the bytes at their stride's multiples only: track no
    // finer (a finer position may be in a row that was not kept).
    let sampled = analyze::tcpbytes::capture_stride(&inputs.meta);
    let asked = analyze::tcpbytes::stride(opts.tcp_stride);
    if sampled > asked {
        if opts.tcp_stride != 0 {
            eprintln!(
                "netlat-analyze: warning: --tcp-stride {asked}: the captures sampled TCP at every {sampled}th byte (--sample); following those"
            );
        }
        opts.tcp_stride = sampled;
    }
    let reported = inputs.skipped.len();
    let result = analyze::analyze(&mut inputs, &clock, &opts);
    // Files found unreadable only while querying.
    inputs.skipped[reported..].iter().for_each(warn);
    let (analysis, mut alignment) = result?;
    alignment.notes.extend(loaded.sources.iter().map(|s| s.note()));
    let used = loaded.listing(&inputs.used);

    let drops = analyze::drops::read(&inputs.meta);
    let report = Report {
        analysis: &analysis,
        used: &used,
        skipped: &inputs.skipped,
        alignment: &alignment,
        drops: &drops,
        table: latency.table,
    };
    if let Some(dir) = &latency.out {
        let written = analyze::out::write_all(dir, &analysis, &report.render(Format::Json))?;
        eprintln!("netlat-analyze: wrote {} files into {}", written.len(), dir.display());
    }
    if let Some(export) = export {
        let w = analyze::export::write(&export.pcapng, &analysis, &inputs.used)?;
        eprintln!(
            "netlat-analyze: wrote {}: {} packets, {} observations ({} with captured bytes, the rest with rebuilt headers)",
            export.pcapng.display(),
            w.packets,
            w.blocks,
            w.with_bytes
        );
        return Ok(());
    }
    if let Some(html) = html {
        let written = analyze::html_report::write(&report, &html.output, html.png.as_deref())?;
        eprintln!(
            "netlat-analyze: wrote {}",
            written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        return Ok(());
    }
    if args.format == Format::Csv {
        eprint!("{}", report.summary());
    }
    print(&report.render(args.format))
}

fn clocks(args: &Common) -> anyhow::Result<()> {
    let mut clock = args.clock()?;
    let (mut inputs, loaded) = args.inputs(&mut clock)?;
    inputs.skipped.iter().for_each(warn);
    let reported = inputs.skipped.len();
    if inputs.used.is_empty() && inputs.sync.is_empty() && inputs.meta.is_empty() {
        bail!("no usable capture file ({} skipped)", inputs.skipped.len());
    }
    let mut alignment = analyze::clocks(&mut inputs, &clock);
    alignment.notes.extend(loaded.sources.iter().map(|s| s.note()));
    inputs.skipped[reported..].iter().for_each(warn);
    if args.format == Format::Csv {
        eprint!("{}", analyze::sync_report::notes(&alignment));
    }
    print(&analyze::sync_report::render(&alignment, args.format))
}

fn main() -> ExitCode {
    // clap exits with 2 on usage errors and 0 for --help/--version.
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Sync(args)) => clocks(args),
        Some(Command::Report(args)) => latency(&args.latency, Some(args), None),
        Some(Command::Export(args)) => latency(&args.latency, None, Some(args)),
        None => latency(&cli.latency, None, None),
    };
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(e) => {
            eprintln!("netlat-analyze: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
