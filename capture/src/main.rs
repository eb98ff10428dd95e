//! `netlat-capture`: the command line over the `capture` library.
//!
//! Exit codes: 0 the capture ran and every file is closed; 1 the capture
//! failed while running (for example the disk filled up; finished files are
//! intact and the metadata says why); 2 bad usage or configuration (nothing
//! was loaded); 3 the kernel side could not be set up (permissions, missing
//! kernel features, unknown interface or namespace).

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;
use capture::{
    loader::Hooks,
    netns::IfaceSpec,
    probes,
    run::{self, Options, RunError},
};
use capture_common::{abi::CaptureConfig, hash::threshold_one_in};
use clap::Parser;
use conf::probes::{Catalog, Preset};

const AFTER_HELP: &str = "\
FILTER is a tcpdump-like expression, e.g. 'udp and port 5001', 'host 198.18.0.2 and not icmp',
'src net 198.18.0.0/15 and tcp'. Interfaces in other network namespaces are named NETNS/IFACE
(NETNS: a name under /run/netns, pid:PID, or a path to a namespace file).

Clock sync: every capture answers probes on UDP port 7310 (--sync-port); --sync-peer ADDR makes it
probe ADDR too. Probes are timestamped where packets are (TC egress, XDP) and written to
*.sync.parquet; `netlat-analyze sync` turns them into clock offsets and drifts.

Crash safety: files are written as .NAME.partial and renamed when complete. Rows are flushed
as row groups at least every --flush-seconds, each followed by a recovery footer (.NAME.footer).
`netlat-capture recover DIR...` (also run at the start of every capture into DIR) turns the
.partial of a capture that died into NAME-recovered.events.parquet with every complete row group.

Exit codes: 0 done, 1 failed while capturing (finished files stay intact), 2 bad usage or
configuration, 3 could not set up the kernel side (root, kernel features, interfaces).";

const RECOVER_HELP: &str =
    "Each .NAME.partial left by a capture that died (SIGKILL, crash, power loss, full disk) becomes
NAME-recovered.<table>.parquet holding every complete row group its recovery footer
(.NAME.footer) names; existing files are never overwritten. A .partial with nothing complete is
removed with a warning naming it and the bytes dropped. Files of a capture still running are
locked and left alone. The run's *.meta.json gets status `interrupted`, its files as on disk and
a `recovered` list. netlat-capture does the same at the start of every capture into a folder.

Exit codes: 0 done (also when nothing was found), 1 a file could not be handled, 2 bad usage.";

/// Finish the files of captures that died (see below).
#[derive(Debug, Parser)]
#[command(name = "netlat-capture recover", after_help = RECOVER_HELP)]
struct RecoverCli {
    /// Capture output folders.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

fn recover(cli: RecoverCli) -> ExitCode {
    let mut failed = false;
    for dir in &cli.dirs {
        match capture::recover::recover_dir(dir) {
            Ok(reports) => {
                if reports.is_empty() {
                    eprintln!("netlat-capture: {}: nothing to recover", dir.display());
                }
                for r in &reports {
                    failed |= r.outcome.is_err();
                    eprintln!("netlat-capture: {r}");
                }
            }
            Err(e) => {
                eprintln!("netlat-capture: {}: {e}", dir.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Timestamp packets with eBPF and write them to rotating Parquet files.
#[derive(Debug, Parser)]
#[command(name = "netlat-capture", version, after_help = AFTER_HELP)]
struct Cli {
    /// Interface to capture on, IFACE or NETNS/IFACE (repeatable).
    #[arg(short = 'i', long = "interface", value_name = "[NETNS/]IFACE", required_unless_present = "list_probes")]
    interfaces: Vec<String>,
    /// Output folder (created if missing).
    #[arg(short = 'w', long = "write", value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Stop after this many seconds (default: until Ctrl-C / SIGTERM).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Configuration file (see conf/capture.yaml); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Rotate files at this size, MiB (tcpdump -C).
    #[arg(short = 'C', long = "file-size", value_name = "MB")]
    file_size_mb: Option<u64>,
    /// Rotate files at this age, seconds (tcpdump -G).
    #[arg(short = 'G', long = "rotate-seconds", value_name = "SECS")]
    rotate_seconds: Option<u64>,
    /// Keep at most this many files, deleting the oldest (tcpdump -W; 0: all).
    #[arg(short = 'W', long = "max-files", value_name = "N")]
    max_files: Option<u32>,
    /// Flush buffered rows to disk at least this often, seconds: a crash
    /// loses at most this much (plus 0.2 s), see `netlat-capture recover`.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    flush_seconds: f64,
    /// Keep 1 packet in N, the same packets on every host (consistent hash sampling).
    #[arg(long = "sample", value_name = "N")]
    sample_one_in: Option<u64>,
    /// Seed of the sampling hash; use the same on every host.
    #[arg(long, value_name = "SEED")]
    sample_seed: Option<u64>,
    /// Keep only packets to or from these ports (comma-separated, at most 16).
    #[arg(long, value_name = "PORTS", value_delimiter = ',')]
    ports: Option<Vec<u16>>,
    /// Hooks to attach: xdp, tc_ingress, tc_egress (comma-separated).
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "xdp,tc_ingress,tc_egress")]
    hooks: Vec<String>,
    /// Probe points inside the host: wire (XDP, TC), stack (+ TCP, IP, qdisc,
    /// driver tracepoints), socket (+ socket layer), all (+ scheduler, drops,
    /// fentry/kprobe). Default wire. See docs/probes.md.
    #[arg(long, value_name = "PRESET")]
    layers: Option<conf::probes::Preset>,
    /// Probe catalog (default: conf/probes.yaml, built in).
    #[arg(long = "probes", value_name = "FILE")]
    probes_file: Option<PathBuf>,
    /// List the probes of --layers (default: all) with their availability on this kernel, and exit.
    #[arg(long)]
    list_probes: bool,
    /// Keep the first N bytes of each selected packet (at most 256) in the events table's
    /// `head` column, for `netlat-analyze export --pcapng`. Off by default: payload is private.
    #[arg(short = 's', long, value_name = "N")]
    snaplen: Option<u16>,
    /// Kernel ring buffer per namespace, KiB (power of two).
    #[arg(long, value_name = "KB")]
    ringbuf_kb: Option<u32>,
    /// Host name recorded in files (default: the system host name).
    #[arg(long, value_name = "NAME")]
    host_name: Option<String>,
    /// Run the capture's user-space threads at this nice value (-20..19). 19 lets the
    /// host's own work preempt the reading and compressing: it removed sockperf's p99.9
    /// penalty in BENCHMARKS.md; the kernel programs are not affected, and if the capture
    /// then falls behind, its drops are counted as always.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    nice: Option<i32>,
    /// Probe this peer's clock (ADDR or ADDR:PORT; repeatable): coded pairs
    /// of UDP probes, timestamped by the kernel programs, for clock sync.
    #[arg(long = "sync-peer", value_name = "ADDR[:PORT]")]
    sync_peers: Vec<String>,
    /// UDP port of the clock-sync responder (default 7310; 0: sync off).
    #[arg(long, value_name = "PORT")]
    sync_port: Option<u16>,
    /// Coded probe pairs per second per peer (default 10); 8 times that in the run's first
    /// 2 s and, with --duration, its last 2 s, where the clock fit is loosest.
    #[arg(long, value_name = "PAIRS")]
    sync_rate: Option<f64>,
    /// Gap between the two probes of a pair, µs (default 20).
    #[arg(long, value_name = "US")]
    sync_gap_us: Option<u64>,
    /// Test aid: distort every recorded timestamp as if this host's clock had
    /// this offset, drift and step, e.g. offset=0.5s,drift=-50ppm,step=2ms@30s.
    #[arg(long, value_name = "SPEC", help_heading = "Test aids")]
    sim_clock: Option<String>,
    /// Write the run id into this file once every hook is attached.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Batches of 16k events the writer queue holds before dropping (counted).
    #[arg(long, value_name = "N", default_value_t = 64, hide = true)]
    queue_batches: usize,
    /// Test aid: attach TC programs through a clsact qdisc and netlink, as on
    /// kernels before 6.6, instead of TCX links.
    #[arg(long, hide = true)]
    tc_netlink: bool,
    /// Test aid: no UDP ingress program, as where no cgroup v2 hierarchy is mounted: UDP
    /// reads are then not identified (each is counted).
    #[arg(long, hide = true)]
    no_udp_ingress: bool,
    /// Test aid: the writer sleeps this long after each batch (to prove drop accounting).
    #[arg(long, value_name = "US", default_value_t = 0, hide = true)]
    writer_delay_us: u64,
    /// Nice value of the thread that compresses and writes Parquet while it keeps up
    /// (default: 10 above the capture's, at most 19). The host's work then preempts it, and
    /// the queue of up to 1 M events in front of it absorbs the delay; once that queue is a
    /// quarter full it returns to the capture's priority until it has caught up. The thread
    /// that drains the kernel ring buffer keeps the capture's priority.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = clap::value_parser!(i32).range(-20..=19))]
    writer_nice: Option<i32>,
    /// No live status line and no summary.
    #[arg(short, long)]
    quiet: bool,
    /// Filter expression (tcpdump-like); overrides the config file's.
    #[arg(value_name = "FILTER", trailing_var_arg = true)]
    filter: Vec<String>,
}

/// How far the writer thread's relaxed nice value is above the capture's by default
/// (see `capture::priority`).
const WRITER_NICE_ABOVE: i32 = 10;

fn options(cli: Cli) -> anyhow::Result<(Options, Catalog, Preset)> {
    let conf = match &cli.config {
        Some(p) => conf::capture::CaptureConf::load(p)?,
        None => conf::capture::CaptureConf::default(),
    };
    let filter_text =
        if cli.filter.is_empty() { conf.filter.clone().unwrap_or_default() } else { cli.filter.join(" ") };
    let mut kernel = CaptureConfig { filter: capture::filter::compile(&filter_text)?, ..CaptureConfig::default() };
    let one_in = cli.sample_one_in.or(conf.sampling.one_in).unwrap_or(1);
    if one_in == 0 {
        bail!("--sample must be at least 1");
    }
    kernel.sample_threshold = threshold_one_in(one_in);
    let tcp_stride = capture_common::hash::tcp_stride_one_in(one_in);
    kernel.tcp_sample_mask = tcp_stride.saturating_sub(1);
    kernel.sample_seed = cli.sample_seed.or(conf.sampling.seed).unwrap_or(0);
    let ports = cli.ports.clone().unwrap_or(conf.sampling.ports.clone());
    if ports.len() > kernel.ports.len() {
        bail!("--ports: {} ports given, at most {}", ports.len(), kernel.ports.len());
    }
    kernel.ports[..ports.len()].copy_from_slice(&ports);
    kernel.n_ports = ports.len() as u16;
    kernel.vxlan_port = conf.vxlan_port.unwrap_or(4789);
    kernel.snaplen = cli.snaplen.or(conf.snaplen).unwrap_or(0);
    if usize::from(kernel.snaplen) > capture_common::abi::MAX_SNAPLEN {
        bail!("--snaplen: {} bytes, at most {} can be kept", kernel.snaplen, capture_common::abi::MAX_SNAPLEN);
    }
    let mut hooks = Hooks { xdp: false, tc_ingress: false, tc_egress: false, tracepoints: 0 };
    for h in &cli.hooks {
        match h.as_str() {
            "xdp" => hooks.xdp = true,
            "tc_ingress" | "tc-ingress" => hooks.tc_ingress = true,
            "tc_egress" | "tc-egress" => hooks.tc_egress = true,
            other => bail!("--hooks: unknown hook {other:?} (known: xdp, tc_ingress, tc_egress)"),
        }
    }
    let nice = cli.nice.unwrap_or_else(capture::priority::own_nice);
    let writer_nice = cli.writer_nice.unwrap_or((nice + WRITER_NICE_ABOVE).min(19));
    let ringbuf_kb = cli.ringbuf_kb.or(conf.output.ringbuf_kb).unwrap_or(8192);
    if ringbuf_kb < 4 || !ringbuf_kb.is_power_of_two() {
        bail!("--ringbuf-kb: {ringbuf_kb} is not a power of two >= 4");
    }
    let ifaces = cli.interfaces.iter().map(|s| IfaceSpec::parse(s)).collect::<Result<Vec<_>, _>>()?;
    let duration = match cli.duration {
        Some(d) if !(d > 0.0 && d.is_finite()) => bail!("--duration must be a positive number of seconds"),
        d => d.map(Duration::from_secs_f64),
    };
    let file_size_mb = cli.file_size_mb.or(conf.output.file_size_mb).unwrap_or(64);
    let rotate_seconds = cli.rotate_seconds.or(conf.output.rotate_seconds).unwrap_or(60);
    if file_size_mb == 0 || rotate_seconds == 0 {
        bail!("--file-size and --rotate-seconds must be at least 1");
    }
    let max_files = cli.max_files.or(conf.output.max_files).unwrap_or(0);
    if !(cli.flush_seconds >= 0.01 && cli.flush_seconds <= 86_400.0) {
        bail!("--flush-seconds {}: must be between 0.01 and 86400", cli.flush_seconds);
    }
    let host = cli.host_name.clone().unwrap_or_else(capture::meta::hostname);
    if host.is_empty() || host.contains(['/', '\0']) {
        bail!("--host-name {host:?}: must be non-empty without '/'");
    }
    let sync_port = cli.sync_port.or(conf.sync.port).unwrap_or(conf::capture::SYNC_PORT);
    let peer_texts = if cli.sync_peers.is_empty() { conf.sync.peers.clone() } else { cli.sync_peers.clone() };
    let peers = peer_texts
        .iter()
        .map(|p| conf::capture::parse_peer(p, sync_port).map_err(|m| anyhow::anyhow!("--sync-peer: {m}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let sync_rate = cli.sync_rate.or(conf.sync.rate).unwrap_or(10.0);
    if !(sync_rate > 0.0 && sync_rate <= 10_000.0) {
        bail!("--sync-rate {sync_rate}: must be in (0, 10000] pairs per second");
    }
    let sync_gap_us = cli.sync_gap_us.or(conf.sync.gap_us).unwrap_or(20);
    if sync_gap_us > 100_000 {
        bail!("--sync-gap-us {sync_gap_us}: at most 100000");
    }
    if sync_port == 0 && !peers.is_empty() {
        bail!("--sync-peer needs a sync port (--sync-port 0 turns clock sync off)");
    }
    let sync = (sync_port != 0).then(|| capture::syncing::SyncOptions {
        port: sync_port,
        peers: peers.clone(),
        rate: sync_rate,
        gap: Duration::from_micros(sync_gap_us),
        end: None,
    });
    let sim_clock = cli.sim_clock.as_deref().map(sync::sim::SimClock::parse).transpose()?;
    let layers = cli.layers.or(conf.layers).unwrap_or(Preset::Wire);
    let catalog = catalog(cli.probes_file.as_deref())?;
    let config: BTreeMap<String, String> = [
        ("filter", filter_text.clone()),
        ("sample_one_in", one_in.to_string()),
        ("sample_seed", kernel.sample_seed.to_string()),
        ("tcp_sample_stride", tcp_stride.to_string()),
        ("ports", format!("{ports:?}")),
        ("ringbuf_kb", ringbuf_kb.to_string()),
        ("file_size_mb", file_size_mb.to_string()),
        ("rotate_seconds", rotate_seconds.to_string()),
        ("max_files", max_files.to_string()),
        ("flush_seconds", cli.flush_seconds.to_string()),
        ("tc_attach", if cli.tc_netlink { "netlink" } else { "auto" }.to_owned()),
        ("udp_ingress", (!cli.no_udp_ingress).to_string()),
        ("vxlan_port", kernel.vxlan_port.to_string()),
        ("snaplen", kernel.snaplen.to_string()),
        ("config_file", cli.config.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
        ("sync_port", sync_port.to_string()),
        ("sync_peers", peers.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
        ("sync_rate", sync_rate.to_string()),
        ("sync_gap_us", sync_gap_us.to_string()),
        ("sim_clock", cli.sim_clock.clone().unwrap_or_default()),
        ("layers", layers.to_string()),
        ("nice", cli.nice.map(|n| n.to_string()).unwrap_or_default()),
        ("writer_nice", writer_nice.to_string()),
        ("probes_file", cli.probes_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let opts = Options {
        ifaces,
        hooks,
        kernel,
        ringbuf_bytes: ringbuf_kb * 1024,
        dir: cli.dir,
        file_bytes: file_size_mb * 1024 * 1024,
        file_age: Duration::from_secs(rotate_seconds),
        max_files,
        flush_every: Duration::from_secs_f64(cli.flush_seconds),
        tc_attach: if cli.tc_netlink { capture::loader::TcAttach::Netlink } else { capture::loader::TcAttach::Auto },
        udp_ingress: !cli.no_udp_ingress,
        duration,
        host,
        queue_batches: cli.queue_batches,
        writer_delay: Duration::from_micros(cli.writer_delay_us),
        nice,
        writer_nice,
        quiet: cli.quiet,
        ready_file: cli.ready_file,
        argv: std::env::args().collect(),
        config,
        sync,
        sim_clock,
        probes: Vec::new(),
        funcs: Default::default(),
    };
    Ok((opts, catalog, layers))
}

/// The probe catalog: `file`, or the one built in.
fn catalog(file: Option<&std::path::Path>) -> anyhow::Result<Catalog> {
    Ok(match file {
        Some(p) => Catalog::load(p)?,
        None => Catalog::builtin(),
    })
}

/// `--list-probes`: the table on stdout; needs no interface.
fn list_probes(cli: &Cli) -> ExitCode {
    let catalog = match catalog(cli.probes_file.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("netlat-capture: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut rows = probes::describe(&catalog, cli.layers.unwrap_or(Preset::All), &mut probes::Running::new());
    // An available probe that would not be recorded says why.
    let plan = capture::funcs::plan(&catalog, &rows);
    for (name, why) in &plan.left_out {
        if let Some(r) = rows.iter_mut().find(|r| &r.name == name) {
            r.detail = format!("{}; not recorded: {why}", r.detail);
        }
    }
    print!("{}", probes::table(&rows));
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "recover") {
        return recover(RecoverCli::parse_from(std::env::args_os().skip(1)));
    }
    let cli = Cli::parse();
    if cli.list_probes {
        return list_probes(&cli);
    }
    let quiet = cli.quiet;
    if let Some(n) = cli.nice {
        // Before any thread starts: threads inherit the nice value of the one creating them.
        if let Err(e) = capture::priority::set_own_nice(n) {
            eprintln!("netlat-capture: --nice {n}: {e}");
            return ExitCode::from(2);
        }
    }
    let (mut opts, catalog, layers) = match options(cli) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netlat-capture: {e:#}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = capture::preflight::check(opts.hooks.xdp) {
        eprintln!("netlat-capture: {e}");
        return ExitCode::from(3);
    }
    // The preset's probes and what this kernel allows of them go into the metadata, with a
    // warning for each one that is unavailable or not recorded. The preset's tracepoints
    // that this kernel has are recorded, and the probes given as data get their slots.
    opts.probes = probes::describe(&catalog, layers, &mut probes::Running::new());
    opts.funcs = capture::funcs::plan(&catalog, &opts.probes);
    for w in probes::warnings(&opts.probes, &opts.funcs) {
        eprintln!("{w}");
    }
    opts.hooks.tracepoints = probes::tracepoint_mask(&opts.probes);
    opts.config.insert("hooks".into(), opts.hook_names().join(","));
    match run::run(opts) {
        Ok(summary) => {
            if !quiet {
                let total = |f: fn(&capture::meta::HookCounts) -> u64| summary.counts.values().map(f).sum::<u64>();
                eprintln!(
                    "netlat-capture: {} events written to {} files; {} selected, {} dropped by kernel (ring buffer full), {} dropped in user space; metadata {}",
                    total(|c| c.written),
                    summary.files.len(),
                    total(|c| c.selected),
                    total(|c| c.ringbuf_full),
                    total(|c| c.userspace_dropped),
                    summary.meta.display()
                );
                let unidentified = total(|c| c.unidentified);
                if unidentified > 0 {
                    eprintln!(
                        "netlat-capture: {unidentified} datagrams read by applications were not identified at the read and have no udp_recv row (queued before the capture began, read by another thread of the same socket at once, or with no UDP ingress program)"
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Every RunError's message already carries its causes.
            eprintln!("netlat-capture: {e}");
            ExitCode::from(match e {
                RunError::Load(_) | RunError::Sync(_) => 3,
                RunError::Folder { .. } => 2,
                RunError::Ring(_) | RunError::Poll(_) => 1,
            })
        }
    }
}
