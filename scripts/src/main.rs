//! `netlat-lab`: the built-in local lab.
//!
//! `netlat-lab demo` builds two hosts (network namespaces joined by veth),
//! captures on both with `netlat-capture`, sends known UDP and TCP traffic
//! between them, stops the captures, checks that every selected packet is
//! accounted for, and prints `netlat-analyze`'s latency table.
//! `netlat-lab collect-demo` runs netlat-collect against three local ssh
//! hosts; `netlat-lab send` sends numbered UDP datagrams from a namespace;
//! `netlat-lab cleanup` removes namespaces left by killed runs.
//! `netlat-lab topologies | check | up | run` handle the named topologies of
//! `conf/lab/`; `netlat-lab experiment NAME` runs issue 7's experiments
//! (scripts/experiments/) into `results/`.

use std::{
    net::SocketAddrV4,
    path::PathBuf,
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use lab::{bins, capture, syncoverlay::Shape, topo, traffic, Lab};

#[derive(Parser)]
#[command(name = "netlat-lab", version, about = "netlat's local namespace lab")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Capture known traffic between two namespaces and analyze it.
    Demo {
        /// Seconds of UDP traffic.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// UDP packets per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Output folder (captures in OUT/a and OUT/b).
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
    },
    /// Clock-sync accuracy benchmark: hosts with injected clock errors, their
    /// estimated clocks and aligned latencies against the truth.
    Syncbench {
        /// Seconds of capture.
        #[arg(long, default_value_t = 60.0)]
        duration: f64,
        /// UDP datagrams per second on each flow (host i to host i+1).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Coded probe pairs per second per peer.
        #[arg(long, default_value_t = 10.0)]
        sync_rate: f64,
        /// Estimator window, seconds.
        #[arg(long, default_value_t = 10.0)]
        window: f64,
        /// HOST=SIM_CLOCK (repeatable; default a=, b=offset=0.5s,drift=50ppm,
        /// c=offset=-0.5s,drift=-50ppm).
        #[arg(long = "clock", value_name = "HOST=SPEC")]
        clocks: Vec<String>,
        /// Output folder (captures in OUT/HOST).
        #[arg(long, default_value = "out/syncbench")]
        out: PathBuf,
        /// Only compare the captures already in OUT.
        #[arg(long)]
        compare_only: bool,
        /// A busy loop on every CPU while the captures run.
        #[arg(long)]
        load: bool,
        /// The senders pace themselves by busy-waiting (one core each at 100 %).
        #[arg(long)]
        spinning_senders: bool,
        /// Only the first host sends, to the second (data one way, probes both ways).
        #[arg(long)]
        one_flow: bool,
        /// `star`: the hosts of --clock on one switch; `overlay`: containers on two VMs
        /// over VXLAN (conf/lab/overlay.yaml), four captures, an iperf3 flow beside the UDP
        /// one; `chain`: two hosts routed through a third (conf/lab/relay.yaml), an iperf3
        /// flow on one side. For overlay and chain every cross-host hop is checked against
        /// the truth.
        #[arg(long, default_value = "star", value_parser = ["star", "overlay", "chain"])]
        topology: String,
    },
    /// Long run: steady UDP, frequent rotation with a ring limit; capture RSS
    /// and file counts over time, and the accounting at the end.
    Soak {
        /// Seconds of traffic.
        #[arg(long, default_value_t = 1800.0)]
        duration: f64,
        /// UDP datagrams per second.
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        /// Rotate files at this age, seconds.
        #[arg(long, default_value_t = 30)]
        rotate: u64,
        /// Keep at most this many files per capture.
        #[arg(long, default_value_t = 10)]
        max_files: u32,
        /// Seconds between samples.
        #[arg(long, default_value_t = 60.0)]
        every: f64,
        /// Output folder.
        #[arg(long, default_value = "out/soak")]
        out: PathBuf,
    },
    /// Run netlat-collect against three local ssh hosts (namespaces with their own sshd).
    CollectDemo {
        /// Capture duration, seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Output folder (OUT/a, OUT/b, OUT/c).
        #[arg(long, default_value = "out/collect-demo")]
        out: PathBuf,
    },
    /// Send numbered UDP datagrams from a lab namespace (traffic for netlat-collect's tests).
    Send {
        /// Network namespace to send from (a name under /run/netns).
        #[arg(long)]
        netns: String,
        /// Destination ADDR:PORT (repeatable; each gets COUNT datagrams).
        #[arg(long, required = true)]
        to: Vec<SocketAddrV4>,
        /// Datagrams per destination.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Rounds (one datagram to each destination) per second (0: as fast as possible).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Bytes per datagram (at least 8).
        #[arg(long, default_value_t = 64)]
        size: usize,
    },
    /// Remove lab namespaces whose creator is gone.
    Cleanup,
    /// List the named topologies of conf/lab.
    Topologies,
    /// Validate conf/lab and look for the tools the lab needs.
    Check,
    /// Run an experiment (ground-truth, send-buffer, cpu-contention, congestion, all):
    /// tables and SVG figures
    /// into RESULTS/NAME, non-zero exit when its expected outcome is not met.
    Experiment {
        /// ground-truth | send-buffer | cpu-contention | congestion | all
        name: String,
        /// Folder of the tables and figures.
        #[arg(long, default_value = "results")]
        results: PathBuf,
        /// Folder of the raw captures.
        #[arg(long, default_value = "out/experiments")]
        work: PathBuf,
        /// Probe datagrams per run.
        #[arg(long, default_value_t = 3000)]
        count: u64,
        /// Probe datagrams per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
    },
    /// Build a topology and keep it until Ctrl-C or SIGTERM, then tear it down.
    Up {
        /// Topology name (conf/lab/NAME.yaml) or file.
        topology: String,
        /// Relay delay, µs (relay topologies; default from the file).
        #[arg(long)]
        delay_us: Option<u64>,
    },
    /// Build a topology, run a command (NETLAT_LAB_<NAME>_NS, NETLAT_LAB_<HOST>_ADDR set), tear it down.
    Run {
        /// Topology name (conf/lab/NAME.yaml) or file.
        topology: String,
        /// Relay delay, µs (relay topologies; default from the file).
        #[arg(long)]
        delay_us: Option<u64>,
        /// The command and its arguments.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Write synthetic capture files: hosts h00.. with flows across them, known per-hop
    /// latency distributions, loss and retransmissions (the analyzer benchmark's data).
    GenEvents {
        /// Output folder (one subfolder per host).
        #[arg(long)]
        out: PathBuf,
        /// Events in total (suffixes k, M, G allowed: 10M).
        #[arg(long, value_parser = lab::benchanalyze::parse_count)]
        events: u64,
        /// Hosts.
        #[arg(long, default_value_t = 10)]
        hosts: usize,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Rows per file before rotating.
        #[arg(long, default_value_t = 250_000)]
        rows_per_file: u64,
        /// Packets per second, all flows together.
        #[arg(long, default_value_t = 200_000.0)]
        rate: f64,
        /// Number of flows.
        #[arg(long, default_value_t = 5000)]
        flows: usize,
        /// Loss probability per wire hop.
        #[arg(long, default_value_t = 0.002)]
        loss: f64,
        /// Fraction of packets retransmitted with identical content (ambiguous ids).
        #[arg(long, default_value_t = 0.0005)]
        dup: f64,
        /// Writer threads (default: the number of CPUs).
        #[arg(long)]
        threads: Option<usize>,
        /// Also write OUT/truth.json: what netlat-analyze --same-clock must report (keeps
        /// every latency in memory: small datasets only).
        #[arg(long)]
        truth: bool,
    },
    /// Analyzer speed benchmark: synthetic captures of growing size, netlat-analyze and
    /// the same query in DuckDB on each, results checked equal (see BENCHMARKS.md).
    BenchAnalyze {
        /// Dataset sizes, events (default 1M,3M,10M; with --full also 30M,100M).
        #[arg(long, value_delimiter = ',', value_parser = lab::benchanalyze::parse_count)]
        sizes: Vec<u64>,
        /// Add the 30M and 100M datasets to the default sizes.
        #[arg(long)]
        full: bool,
        /// Runs per tool for datasets up to 10M events (the median is reported); one above.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Work folder for the datasets (removed afterwards unless --keep).
        #[arg(long, default_value = "/tmp/netlat-bench-analyze")]
        dir: PathBuf,
        /// Keep the generated datasets.
        #[arg(long)]
        keep: bool,
        /// Python interpreter with duckdb.
        #[arg(long, default_value = "python3")]
        python: String,
    },
    /// Capture overhead benchmark: UDP flood packets/s with no capture, netlat on every
    /// packet, netlat sampled and tcpdump; per-hook cost; sockperf latency (BENCHMARKS.md).
    BenchCapture {
        /// Seconds of flood per measurement.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Rounds; every configuration runs once per round, medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// N of the sampled configuration (--sample N).
        #[arg(long, default_value_t = 10)]
        sample: u64,
        /// UDP payload bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Seconds of sockperf ping-pong per measurement (0 skips it).
        #[arg(long, default_value_t = 5)]
        sockperf_seconds: u64,
        /// netlat-capture's kernel ring buffer, KiB (its --ringbuf-kb).
        #[arg(long, default_value_t = 8192)]
        ringbuf_kb: u32,
        /// Configurations to run, of none, netlat, sampled, tc-only, xdp-pass (an empty
        /// XDP program), stack (netlat --layers stack), tcpdump (the flood's), and netlat,
        /// same-nice (--writer-nice 0), nice (--nice 19), tcpdump (sockperf's);
        /// the baseline always runs.
        #[arg(long, value_delimiter = ',', default_value = "netlat,sampled,tc-only,xdp-pass,tcpdump,same-nice,nice")]
        modes: Vec<String>,
        /// Only the flood table (no hook costs, writer rate or sockperf).
        #[arg(long)]
        flood_only: bool,
        /// Only the sockperf table.
        #[arg(long)]
        sockperf_only: bool,
        /// One more argument for every netlat-capture the benchmark starts (repeatable),
        /// e.g. --capture-arg=--writer-nice --capture-arg=19.
        #[arg(long = "capture-arg", value_name = "ARG", allow_hyphen_values = true)]
        capture_args: Vec<String>,
        /// Work folder for the captures (removed after each measurement).
        #[arg(long, default_value = "/tmp/netlat-bench-capture")]
        dir: PathBuf,
        /// Also write the report (markdown) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only the writer-rate measurement (no lab, no root needed).
        #[arg(long)]
        writer_only: bool,
        /// Only the per-hook test runs (BPF_PROG_TEST_RUN; no lab, no traffic).
        #[arg(long)]
        hooks_only: bool,
    },
}

#[allow(clippy::too_many_arguments)]
/// How `syncbench` runs: only the comparison, or the lab with what loads it.
struct Load {
    compare_only: bool,
    busy_cores: bool,
    spinning_senders: bool,
    one_flow: bool,
}

fn syncbench(
    duration: f64,
    rate: u64,
    sync_rate: f64,
    window: f64,
    clocks: Vec<String>,
    out: PathBuf,
    load: Load,
) -> anyhow::Result<()> {
    let clocks = if clocks.is_empty() {
        vec!["a=".into(), "b=offset=0.5s,drift=50ppm".into(), "c=offset=-0.5s,drift=-50ppm".into()]
    } else {
        clocks
    };
    let hosts = clocks
        .iter()
        .map(|c| c.split_once('=').map(|(h, s)| (h.to_owned(), s.to_owned())))
        .collect::<Option<Vec<_>>>()
        .context("--clock takes HOST=SPEC")?;
    let cfg = lab::syncbench::BenchConfig {
        out,
        duration,
        hosts,
        rate,
        sync_rate,
        window,
        step_guard: std::time::Duration::from_millis(300),
        load: load.busy_cores,
        spinning_senders: load.spinning_senders,
        one_flow: load.one_flow,
    };
    let report = if load.compare_only {
        lab::syncbench::compare(&cfg)?
    } else {
        if !lab::netns::is_root() {
            bail!("the lab needs root (network namespaces, eBPF)");
        }
        topo::cleanup_stale()?;
        lab::syncbench::run(&cfg)?
    };
    println!("{}", report.sync_table);
    println!("{}", report.markdown());
    Ok(())
}

fn syncbench_hops(shape: Shape, duration: f64, rate: u64, out: PathBuf, load: bool) -> anyhow::Result<()> {
    if !lab::netns::is_root() {
        bail!("the lab needs root (network namespaces, eBPF)");
    }
    topo::cleanup_stale()?;
    let cfg = lab::syncoverlay::OverlayConfig { shape, out, duration, rate, load, ..Default::default() };
    let t = lab::syncoverlay::run(&cfg)?;
    println!("{}", t.markdown());
    println!("| path | stations | out of order across hosts |\n|---|---|---:|");
    for (name, stations, crossed) in &t.paths {
        println!("| {name} | {} | {crossed} |", stations.join(" → "));
    }
    Ok(())
}

fn demo(duration: f64, rate: u64, out: PathBuf) -> anyhow::Result<()> {
    if !lab::netns::is_root() {
        bail!("the lab needs root (network namespaces, eBPF)");
    }
    topo::cleanup_stale()?;
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let lab = Lab::two_hosts()?;
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    eprintln!("netlat-lab: hosts a={} ({}) b={} ({}) joined by veth", a.netns, a.addr, b.netns, b.addr);
    let (cap_a, cap_b) = capture::start_pair(&lab, &out, &[], &["-q"])?;
    let dst = SocketAddrV4::new(b.addr, 5001);
    let sink = traffic::UdpSink::start(&b.netns, dst)?;
    let count = (duration * rate as f64) as u64;
    eprintln!("netlat-lab: sending {count} UDP datagrams at {rate}/s, then 200 TCP request/responses");
    let took = traffic::udp_send(&a.netns, dst, count, rate, 64)?;
    let got = sink.finish()?;
    let rtts = traffic::tcp_ping_pong(&a.netns, &b.netns, SocketAddrV4::new(b.addr, 5002), 200, 100)?;
    let fa = cap_a.stop()?;
    let fb = cap_b.stop()?;
    for (name, f) in [("a", &fa), ("b", &fb)] {
        if f.code != Some(0) {
            bail!("capture on {name} failed ({:?}): {}", f.code, f.stderr);
        }
    }
    eprintln!(
        "netlat-lab: sent {count} in {:.2} s ({:.0}/s), received {}; TCP RTT median {:?}",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64(),
        got.len(),
        {
            let mut r = rtts.clone();
            r.sort();
            r[r.len() / 2]
        }
    );
    let mut unexplained = 0u64;
    for host in ["a", "b"] {
        for h in lab::accounting::read(&out.join(host))? {
            unexplained += h.unexplained();
            eprintln!("netlat-lab: {host}/{h}");
        }
    }
    if unexplained != 0 {
        bail!("{unexplained} selected packets unaccounted for");
    }
    let status = Command::new(bins::path("netlat-analyze")).arg(out.join("a")).arg(out.join("b")).status()?;
    if !status.success() {
        bail!("netlat-analyze failed: {status}");
    }
    drop(lab);
    Ok(())
}

/// The ssh lab of netlat-collect's tests, with netlat-collect run in its
/// hub namespace on a terminal (progress bars) and known UDP traffic.
fn collect_demo(duration: f64, out: PathBuf) -> anyhow::Result<()> {
    if !lab::netns::is_root() {
        bail!("the lab needs root (network namespaces, sshd, eBPF)");
    }
    topo::cleanup_stale()?;
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("clearing {}", out.display()))?;
    }
    let out = std::path::absolute(&out)?;
    let lab = lab::sshlab::SshLab::start(&["a", "b", "c"])?;
    let hosts = lab.dir.join("hosts.yaml");
    std::fs::write(&hosts, lab.hosts_yaml())?;
    eprintln!("netlat-lab: hosts a, b, c at 198.18.1.1-3, each with its own sshd; {}:", hosts.display());
    eprint!("{}", lab.hosts_yaml());
    let collect = bins::path("netlat-collect");
    let static_bin = collect.parent().expect("folder").join("../x86_64-unknown-linux-musl/release/netlat-capture");
    let capture_bin = if static_bin.exists() { static_bin } else { bins::path("netlat-capture") };
    let (a, b, c) = (&lab.hosts[0], &lab.hosts[1], &lab.hosts[2]);
    let count = ((duration - 2.0).max(1.0) * 1000.0) as u64;
    let traffic = format!(
        "{} send --netns {} --to {}:5001 --to {}:5001 --count {count} --rate 1000",
        bins::path("netlat-lab").display(),
        a.netns,
        b.addr,
        c.addr
    );
    let status = lab
        .in_hub(&collect)
        .arg("--hosts")
        .arg(&hosts)
        .arg("--out")
        .arg(&out)
        .arg("-F")
        .arg(lab.ssh_config())
        .arg("--capture-bin")
        .arg(&capture_bin)
        .arg("--analyze")
        .arg(bins::path("netlat-analyze"))
        .args(["--duration", &duration.to_string(), "--filter", "udp and port 5001", "--traffic", &traffic])
        .status()?;
    drop(lab);
    if !status.success() {
        bail!("netlat-collect: {status}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Demo { duration, rate, out } => demo(duration, rate, out),
        Cmd::Soak { duration, rate, rotate, max_files, every, out } => (|| {
            if !lab::netns::is_root() {
                bail!("the lab needs root (network namespaces, eBPF)");
            }
            topo::cleanup_stale()?;
            let cfg = lab::soak::SoakConfig { out, duration, rate, rotate, max_files, every };
            let r = lab::soak::run(&cfg)?;
            println!("{}", r.markdown());
            if r.unexplained != 0 {
                bail!("{} selected packets unaccounted for", r.unexplained);
            }
            Ok(())
        })(),
        Cmd::Syncbench {
            duration,
            rate,
            sync_rate,
            window,
            clocks,
            out,
            compare_only,
            load,
            spinning_senders,
            one_flow,
            topology,
        } => {
            if topology != "star" {
                let shape = if topology == "chain" { Shape::Chain } else { Shape::Overlay };
                syncbench_hops(shape, duration, rate, out, load)
            } else {
                let load = Load { compare_only, busy_cores: load, spinning_senders, one_flow };
                syncbench(duration, rate, sync_rate, window, clocks, out, load)
            }
        }
        Cmd::CollectDemo { duration, out } => collect_demo(duration, out),
        Cmd::Send { netns, to, count, rate, size } => {
            traffic::udp_send_all(&netns, &to, count, rate, size).map_err(Into::into).map(|took| {
                eprintln!("netlat-lab: sent {count} datagrams to each of {to:?} in {:.2} s", took.as_secs_f64());
            })
        }
        Cmd::GenEvents { out, events, hosts, seed, rows_per_file, rate, flows, loss, dup, threads, truth } => (|| {
            let mut cfg = lab::genevents::GenConfig::new(out, events);
            cfg.hosts = hosts;
            cfg.seed = seed;
            cfg.rows_per_file = rows_per_file;
            cfg.rate = rate;
            cfg.flows = flows;
            cfg.loss = loss;
            cfg.dup = dup;
            cfg.threads = threads.unwrap_or(cfg.threads);
            cfg.truth = truth;
            let s = lab::genevents::generate(&cfg)?;
            eprintln!(
                "netlat-lab: {} events ({} packets) in {} files, {:.1} MiB ({:.1} B/event), {:.1} s ({:.2} M events/s)",
                s.events,
                s.packets,
                s.files.len(),
                s.bytes as f64 / 1048576.0,
                s.bytes as f64 / s.events as f64,
                s.elapsed.as_secs_f64(),
                s.events as f64 / s.elapsed.as_secs_f64() / 1e6
            );
            if let Some(t) = &s.truth {
                let p = lab::genevents::write_truth(&cfg.out, t)?;
                eprintln!("netlat-lab: expected analysis in {}", p.display());
            }
            Ok(())
        })(
        ),
        Cmd::BenchAnalyze { sizes, full, runs, dir, keep, python } => {
            let mut sizes = if sizes.is_empty() { vec![1_000_000, 3_000_000, 10_000_000] } else { sizes };
            if full {
                sizes.extend([30_000_000, 100_000_000]);
            }
            let cfg = lab::benchanalyze::BenchConfig { sizes, runs, dir, keep, python };
            lab::benchanalyze::run(&cfg).map(|report| println!("{report}"))
        }
        Cmd::BenchCapture { writer_only: true, dir, .. } => {
            lab::benchparts::writer_rate(&dir.join("writer"), 10_000_000)
                .map(|(rate, bpe)| println!("writer: {:.2} M events/s per core, {bpe:.1} bytes/event", rate / 1e6))
        }
        Cmd::BenchCapture { hooks_only: true, sample, size, .. } => {
            lab::benchparts::hook_test_table(size, sample).map(|t| println!("{t}"))
        }
        Cmd::BenchCapture {
            seconds,
            rounds,
            sample,
            size,
            sockperf_seconds,
            ringbuf_kb,
            modes,
            flood_only,
            sockperf_only,
            capture_args,
            dir,
            out,
            ..
        } => {
            let modes = match modes
                .iter()
                .map(|m| lab::benchcapture::Mode::from_key(m).with_context(|| format!("--modes: unknown mode {m:?}")))
                .collect::<anyhow::Result<Vec<_>>>()
            {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("netlat-lab: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let cfg = lab::benchcapture::Config {
                seconds,
                rounds: rounds.max(1),
                sample,
                size,
                sockperf_seconds,
                ringbuf_kb,
                modes,
                flood_only,
                sockperf_only,
                capture_args,
                dir,
            };
            lab::benchcapture::run(&cfg).and_then(|report| {
                println!("{report}");
                match out {
                    Some(p) => std::fs::write(&p, report).with_context(|| p.display().to_string()),
                    None => Ok(()),
                }
            })
        }
        Cmd::Experiment { name, results, work, count, rate } => {
            lab::experiments::run(&name, &results, &work, count, rate)
        }
        Cmd::Topologies => lab::labcli::topologies(),
        Cmd::Check => lab::labcli::check(),
        Cmd::Up { topology, delay_us } => lab::labcli::up(&topology, delay_us),
        Cmd::Run { topology, delay_us, cmd } => match lab::labcli::run(&topology, delay_us, &cmd) {
            Ok(code) => return ExitCode::from(code.clamp(0, 255) as u8),
            Err(e) => Err(e),
        },
        Cmd::Cleanup => topo::cleanup_stale().map(|v| {
            for n in v {
                eprintln!("netlat-lab: removed stale namespace {n}");
            }
        }),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(status) = lab::teardown::interrupted_status() {
                eprintln!("netlat-lab: interrupted ({e:#})");
                return ExitCode::from(status);
            }
            eprintln!("netlat-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
