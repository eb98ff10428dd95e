//! `netlat-lab bench-capture`: what capturing costs the traffic, side by side in one run
//! (issue 7): a UDP flood through veth with no capture, with netlat on every packet at XDP
//! and TC, with 1-in-N sampling, and with tcpdump writing a pcap of the same traffic; the
//! sockperf ping-pong latency with and without capture; the per-packet cost of each hook
//! (kernel BPF run-time statistics); bytes per event on disk and the capturing processes'
//! CPU.
//!
//! Configurations are interleaved round by round and every figure is reported as a ratio to
//! the no-capture baseline of the same round, so a machine busy with something else shifts
//! both sides alike; the median over rounds is printed.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{
    benchparts::{hook_test_table, writer_rate},
    capture::Capture,
    netns::run_in,
    Lab,
};

/// Settings of one benchmark run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Seconds of flood per measurement.
    pub seconds: f64,
    /// Rounds (each runs every configuration once).
    pub rounds: usize,
    /// N of the sampled configuration.
    pub sample: u64,
    /// UDP payload bytes of the flood.
    pub size: usize,
    /// Seconds of sockperf per measurement (0: skip sockperf).
    pub sockperf_seconds: u64,
    /// netlat-capture's kernel ring buffer, KiB (`--ringbuf-kb`).
    pub ringbuf_kb: u32,
    /// The flood's configurations to run (the baseline always runs).
    pub modes: Vec<Mode>,
    /// Only the flood table: no hook costs, writer rate or sockperf.
    pub flood_only: bool,
    /// Only the sockperf table.
    pub sockperf_only: bool,
    /// More arguments for every netlat-capture started.
    pub capture_args: Vec<String>,
    /// Work folder (captures are written here and removed after each run).
    pub dir: PathBuf,
}

/// What is capturing during a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the baseline.
    None,
    /// netlat-capture at XDP, TC ingress and TC egress on both hosts, every packet.
    Netlat,
    /// As `Netlat`, keeping 1 packet in N.
    Sampled,
    /// netlat at TC ingress and egress only: no XDP (which puts a veth into its NAPI mode).
    TcOnly,
    /// An empty XDP program on both hosts: what XDP mode alone costs the veth.
    XdpPass,
    /// netlat with `--layers stack`: XDP, TC and the IP, qdisc and driver tracepoints, every
    /// packet (several events per packet: the highest event rate this flood makes).
    Stack,
    /// As `Netlat`, the capture's threads at `--nice 19` (sockperf only).
    Nice,
    /// As `Netlat`, the writer thread at the capture's priority, as before the
    /// default of 10 nice levels below it (sockperf only).
    SameNice,
    /// tcpdump writing a pcap on both hosts' interface.
    Tcpdump,
}

impl Mode {
    /// Every mode, baseline first.
    pub const ALL: [Mode; 7] =
        [Mode::None, Mode::Netlat, Mode::Sampled, Mode::TcOnly, Mode::XdpPass, Mode::Stack, Mode::Tcpdump];

    /// The mode called `key` (`none`, `netlat`, `sampled`, `tc-only`, `tcpdump`).
    pub fn from_key(key: &str) -> Option<Mode> {
        Some(match key {
            "none" => Mode::None,
            "netlat" => Mode::Netlat,
            "sampled" => Mode::Sampled,
            "tc-only" => Mode::TcOnly,
            "xdp-pass" => Mode::XdpPass,
            "stack" => Mode::Stack,
            "tcpdump" => Mode::Tcpdump,
            "nice" => Mode::Nice,
            "same-nice" => Mode::SameNice,
            _ => return None,
        })
    }

    fn name(self, sample: u64) -> String {
        match self {
            Mode::None => "no capture".into(),
            Mode::Netlat => "netlat, XDP+TC, every packet".into(),
            Mode::Sampled => format!("netlat, XDP+TC, 1 in {sample}"),
            Mode::TcOnly => "netlat, TC only, every packet".into(),
            Mode::XdpPass => "empty XDP program (no capture)".into(),
            Mode::Stack => "netlat, --layers stack, every packet".into(),
            Mode::Nice => "netlat, XDP+TC, every packet, --nice 19".into(),
            Mode::SameNice => "netlat, XDP+TC, every packet, --writer-nice 0".into(),
            Mode::Tcpdump => "tcpdump -w (both hosts)".into(),
        }
    }
}

/// One flood measurement.
#[derive(Debug, Clone, Default)]
pub struct Flood {
    /// Packets per second received by b's interface.
    pub pps: f64,
    /// Events (netlat) or packets (tcpdump) written to disk per second.
    pub written_per_s: f64,
    /// Events or packets lost by the capture (ring buffer, writer queue, kernel drops).
    pub dropped: u64,
    /// Bytes on disk per event / packet written.
    pub bytes_per_event: f64,
    /// CPU time of the capturing processes, as a fraction of one core.
    pub cpu: f64,
}

/// A capture running on both hosts for one measurement.
enum Running {
    None,
    Netlat(Capture, Capture),
    XdpPass(Vec<aya::Ebpf>),
    Tcpdump(Child, Child),
}

fn cpu_ticks(pid: u32) -> u64 {
    // utime and stime: fields 14 and 15 of /proc/PID/stat, counted after the
    // parenthesised command name (field 2), which may itself contain spaces.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("").split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(14) + field(15)
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn rx_packets(netns: &str) -> anyhow::Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "exec", netns, "cat", "/sys/class/net/veth0/statistics/rx_packets"])
        .output()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().context("rx_packets")
}

pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok).filter_map(|e| e.metadata().ok()).filter(|m| m.is_file()).map(|m| m.len()).sum()
        })
        .unwrap_or(0)
}

/// Sends UDP datagrams from `netns` to `dst` as fast as one socket goes, for `secs`.
fn flood(netns: &str, dst: SocketAddrV4, size: usize, secs: f64) -> anyhow::Result<u64> {
    let n = run_in(netns, move || -> std::io::Result<u64> {
        // Pinned, so the sender and the hooks it runs inline share one known core.
        // SAFETY: a zeroed cpu_set_t is valid; CPU 0 exists.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        sock.connect(dst)?;
        let buf = vec![0x5Au8; size];
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let mut sent = 0u64;
        while Instant::now() < end {
            for _ in 0..64 {
                if sock.send(&buf).is_ok() {
                    sent += 1;
                }
            }
        }
        Ok(sent)
    })??;
    Ok(n)
}

fn start(mode: Mode, lab: &Lab, cfg: &Config, dir: &Path) -> anyhow::Result<Running> {
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    Ok(match mode {
        Mode::None => Running::None,
        Mode::Netlat | Mode::Sampled | Mode::TcOnly | Mode::Stack | Mode::Nice | Mode::SameNice => {
            let n = cfg.sample.to_string();
            let kb = cfg.ringbuf_kb.to_string();
            let mut extra = vec!["-q", "--sync-port", "0", "--ringbuf-kb", &kb];
            if mode == Mode::Sampled {
                extra.extend(["--sample", &n]);
            }
            if mode == Mode::TcOnly {
                extra.extend(["--hooks", "tc_ingress,tc_egress"]);
            }
            if mode == Mode::Stack {
                extra.extend(["--layers", "stack"]);
            }
            if mode == Mode::Nice {
                extra.extend(["--nice", "19"]);
            }
            if mode == Mode::SameNice {
                extra.extend(["--writer-nice", "0"]);
            }
            extra.extend(cfg.capture_args.iter().map(String::as_str));
            let args = |h: &'static str| [vec!["-i", "veth0", "--host-name", h], extra.clone()].concat();
            let ca = Capture::start(Some(&a.netns), &dir.join("a"), &args("a"))?;
            let cb = Capture::start(Some(&b.netns), &dir.join("b"), &args("b"))?;
            Running::Netlat(ca, cb)
        }
        Mode::XdpPass => {
            let mut v = Vec::new();
            for h in [a, b] {
                v.push(capture::testrun::attach_xdp_pass(&capture::netns::Netns::open(&h.netns)?, "veth0")?);
            }
            Running::XdpPass(v)
        }
        Mode::Tcpdump => {
            let td = |ns: &str, file: PathBuf| -> anyhow::Result<Child> {
                std::fs::create_dir_all(dir)?;
                let c = Command::new("ip")
                    .args(["netns", "exec", ns, "tcpdump", "-i", "veth0", "-n", "-B", "65536", "-w"])
                    .arg(&file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("tcpdump (Debian package tcpdump)")?;
                // tcpdump writes its file header only when its buffer first flushes: give
                // it time to open the capture, then check it is still running.
                std::thread::sleep(Duration::from_millis(1500));
                let mut c = c;
                if let Ok(Some(st)) = c.try_wait() {
                    bail!("tcpdump exited at start: {st}");
                }
                Ok(c)
            };
            Running::Tcpdump(td(&a.netns, dir.join("a.pcap"))?, td(&b.netns, dir.join("b.pcap"))?)
        }
    })
}

fn pids(r: &Running) -> Vec<u32> {
    match r {
        Running::None | Running::XdpPass(_) => vec![],
        Running::Netlat(a, b) => vec![a.pid(), b.pid()],
        Running::Tcpdump(a, b) => vec![a.id(), b.id()],
    }
}

/// Stops the captures; returns (written, dropped, bytes on disk).
fn stop(r: Running, dir: &Path) -> anyhow::Result<(u64, u64, u64)> {
    match r {
        Running::None => Ok((0, 0, 0)),
        Running::XdpPass(v) => {
            // Dropping the programs detaches them.
            drop(v);
            Ok((0, 0, 0))
        }
        Running::Netlat(a, b) => {
            let (fa, fb) = (a.stop()?, b.stop()?);
            if fa.code != Some(0) || fb.code != Some(0) {
                bail!("netlat-capture failed:\n{}\n{}", fa.stderr, fb.stderr);
            }
            let (mut written, mut dropped, mut bytes) = (0, 0, 0);
            for h in ["a", "b"] {
                for l in crate::accounting::read(&dir.join(h))? {
                    written += l.written;
                    dropped += l.ringbuf_full + l.userspace_dropped;
                }
                bytes += dir_bytes(&dir.join(h));
            }
            Ok((written, dropped, bytes))
        }
        Running::Tcpdump(a, b) => {
            let (mut written, mut dropped) = (0, 0);
            for c in [a, b] {
                // SAFETY: plain kill(2) on our own child.
                unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
                let out = c.wait_with_output()?;
                let err = String::from_utf8_lossy(&out.stderr);
                // "N packets captured", "N packets dropped by kernel"
                for line in err.lines() {
                    let n: u64 = line.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
                    if line.ends_with("packets captured") {
                        written += n;
                    } else if line.ends_with("packets dropped by kernel") {
                        dropped += n;
                    }
                }
            }
            Ok((written, dropped, dir_bytes(dir)))
        }
    }
}

/// One flood under `mode`.
pub fn measure(mode: Mode, lab: &Lab, cfg: &Config) -> anyhow::Result<Flood> {
    let dir = cfg.dir.join("run");
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let dst = SocketAddrV4::new(b.addr, 9);
    // A receiver that never reads: datagrams are dropped at its full socket buffer, no
    // ICMP port-unreachable traffic back.
    let sink = run_in(&b.netns, move || UdpSocket::bind(dst))??;
    let running = start(mode, lab, cfg, &dir)?;
    let pids = pids(&running);
    let (rx0, cpu0) = (rx_packets(&b.netns)?, pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>());
    let t = Instant::now();
    flood(&a.netns, dst, cfg.size, cfg.seconds)?;
    let secs = t.elapsed().as_secs_f64();
    let (rx1, cpu1) = (rx_packets(&b.netns)?, pids.iter().map(|p| cpu_ticks(*p)).sum::<u64>());
    // Let the captures write what they hold before stopping them.
    std::thread::sleep(Duration::from_millis(300));
    let (written, dropped, bytes) = stop(running, &dir)?;
    drop(sink);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Flood {
        pps: (rx1 - rx0) as f64 / secs,
        written_per_s: written as f64 / secs,
        dropped,
        bytes_per_event: if written > 0 { bytes as f64 / written as f64 } else { 0.0 },
        cpu: (cpu1 - cpu0) as f64 / ticks_per_s() / secs,
    })
}

/// Per-hook cost, ns per packet, from the kernel's BPF run-time statistics during a flood
/// with netlat on every packet (statistics are on only for this measurement: they cost a
/// little themselves).
pub fn hook_costs(mode: Mode, lab: &Lab, cfg: &Config) -> anyhow::Result<Vec<(String, f64, u64)>> {
    let set = |v: &str| std::fs::write("/proc/sys/kernel/bpf_stats_enabled", v).context("kernel.bpf_stats_enabled");
    set("1")?;
    let dir = cfg.dir.join("stats");
    let _ = std::fs::remove_dir_all(&dir);
    let result = (|| {
        let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
        let dst = SocketAddrV4::new(b.addr, 9);
        let sink = run_in(&b.netns, move || UdpSocket::bind(dst))??;
        let running = start(mode, lab, cfg, &dir)?;
        flood(&a.netns, dst, cfg.size, cfg.seconds)?;
        let mut costs = Vec::new();
        for name in ["netlat_xdp", "netlat_tc_in", "netlat_tc_out"] {
            let (mut ns, mut runs) = (0u128, 0u64);
            for p in aya::programs::loaded_programs().filter_map(Result::ok) {
                if p.name_as_str() == Some(name) {
                    ns += p.run_time().as_nanos();
                    runs += p.run_count();
                }
            }
            costs.push((name.to_owned(), if runs > 0 { ns as f64 / runs as f64 } else { 0.0 }, runs));
        }
        stop(running, &dir)?;
        drop(sink);
        anyhow::Ok(costs)
    })();
    set("0")?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// sockperf ping-pong percentiles (p50, p99, p99.9, in µs) under `mode`.
pub fn sockperf(mode: Mode, lab: &Lab, cfg: &Config) -> anyhow::Result<[f64; 3]> {
    let dir = cfg.dir.join("sockperf");
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let addr = b.addr.to_string();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &b.netns, "sockperf", "server", "-i", &addr, "-p", "11111"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("sockperf (Debian package sockperf)")?;
    std::thread::sleep(Duration::from_millis(300));
    let running = start(mode, lab, cfg, &dir)?;
    let t = cfg.sockperf_seconds.to_string();
    let out = Command::new("ip")
        .args(["netns", "exec", &a.netns, "sockperf", "ping-pong", "-i", &addr, "-p", "11111", "-t", &t, "-m", "64"])
        .output()?;
    stop(running, &dir)?;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // "sockperf: ---> percentile 99.900 =   12.345"
    let pct = |p: &str| -> anyhow::Result<f64> {
        text.lines()
            .find(|l| l.contains(&format!("percentile {p}")))
            .and_then(|l| l.rsplit('=').next())
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no percentile {p} in sockperf output:\n{text}"))
    };
    Ok([pct("50.000")?, pct("99.000")?, pct("99.900")?])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

/// Runs everything and returns the report (markdown).
pub fn run(cfg: &Config) -> anyhow::Result<String> {
    let lab = Lab::two_hosts()?;
    std::fs::create_dir_all(&cfg.dir)?;
    let mut md = String::new();
    if !cfg.sockperf_only {
        md.push_str(&flood_table(&lab, cfg)?);
        if cfg.flood_only {
            return Ok(md);
        }
        md.push_str(&hook_test_table(cfg.size, cfg.sample)?);
        md.push_str(&hook_flood_table(&lab, cfg)?);
        let (rate, bpe) = writer_rate(&cfg.dir.join("writer"), 10_000_000)?;
        let _ = writeln!(
            md,
            "\nThe capture's writer alone (Arrow batches + rotating Parquet, one thread, 10 M synthetic flood events): {:.2} M events/s per core of CPU time, {bpe:.1} bytes/event on disk.",
            rate / 1e6
        );
    }
    if cfg.sockperf_seconds > 0 {
        md.push_str(&sockperf_table(&lab, cfg)?);
    }
    Ok(md)
}

/// The flood under every mode of `cfg.modes`, round by round.
fn flood_table(lab: &Lab, cfg: &Config) -> anyhow::Result<String> {
    // Per mode, per round: the flood and its ratio to that round's baseline.
    let mut floods: Vec<Vec<(Flood, f64)>> = vec![Vec::new(); Mode::ALL.len()];
    for round in 0..cfg.rounds {
        let mut base = 0.0;
        for (i, mode) in Mode::ALL.iter().enumerate() {
            if *mode != Mode::None && !cfg.modes.contains(mode) {
                continue;
            }
            let f = measure(*mode, lab, cfg)?;
            if *mode == Mode::None {
                base = f.pps;
            }
            eprintln!("bench-capture: round {} {}: {:.0} packets/s", round + 1, mode.name(cfg.sample), f.pps);
            let ratio = f.pps / base;
            floods[i].push((f, ratio));
        }
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "UDP flood a -> b through veth, {} B payload, one sender pinned to CPU 0, {} s x {} rounds (medians):\n",
        cfg.size, cfg.seconds, cfg.rounds
    );
    let _ = writeln!(md, "| capture | packets/s | vs none | written/s | dropped | bytes/event | capture CPU |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for (i, mode) in Mode::ALL.iter().enumerate() {
        let f = &floods[i];
        if f.is_empty() {
            continue;
        }
        let m = |g: &dyn Fn(&(Flood, f64)) -> f64| median(f.iter().map(g).collect());
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.3} | {:.0} | {} | {:.1} | {:.0}% |",
            mode.name(cfg.sample),
            m(&|x| x.0.pps),
            m(&|x| x.1),
            m(&|x| x.0.written_per_s),
            f.iter().map(|x| x.0.dropped).max().unwrap_or(0),
            m(&|x| x.0.bytes_per_event),
            100.0 * m(&|x| x.0.cpu),
        );
    }
    Ok(md)
}

/// Each packet program's cost during the flood, every packet and sampled.
fn hook_flood_table(lab: &Lab, cfg: &Config) -> anyhow::Result<String> {
    let mut md = String::new();
    let _ = writeln!(md, "\nPer-packet cost of each hook (kernel BPF run-time statistics during the flood):\n");
    let _ = writeln!(md, "| program | every packet, ns | 1 in {}, ns | runs |", cfg.sample);
    let _ = writeln!(md, "|---|---:|---:|---:|");
    let (full, sampled) = (hook_costs(Mode::Netlat, lab, cfg)?, hook_costs(Mode::Sampled, lab, cfg)?);
    for ((name, ns, runs), (_, ns_s, _)) in full.iter().zip(&sampled) {
        let _ = writeln!(md, "| {name} | {ns:.0} | {ns_s:.0} | {runs} |");
    }
    Ok(md)
}

/// sockperf ping-pong under the baseline and the sockperf modes of `cfg.modes`.
fn sockperf_table(lab: &Lab, cfg: &Config) -> anyhow::Result<String> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\nsockperf ping-pong, 64 B, {} s per run x {} rounds (medians, µs):\n",
        cfg.sockperf_seconds, cfg.rounds
    );
    let _ = writeln!(md, "| capture | p50 | p99 | p99.9 | p99 vs none |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    let modes: Vec<Mode> = [Mode::None, Mode::Netlat, Mode::SameNice, Mode::Nice, Mode::Tcpdump]
        .into_iter()
        .filter(|m| *m == Mode::None || cfg.modes.contains(m))
        .collect();
    let mut res: Vec<Vec<([f64; 3], f64)>> = vec![Vec::new(); modes.len()];
    for _ in 0..cfg.rounds {
        let mut base = 0.0;
        for (i, mode) in modes.iter().enumerate() {
            let p = sockperf(*mode, lab, cfg)?;
            if *mode == Mode::None {
                base = p[1];
            }
            res[i].push((p, p[1] / base));
        }
    }
    for (i, mode) in modes.iter().enumerate() {
        let m = |k: usize| median(res[i].iter().map(|x| x.0[k]).collect());
        let r = median(res[i].iter().map(|x| x.1).collect());
        let _ = writeln!(md, "| {} | {:.3} | {:.3} | {:.3} | {r:.3} |", mode.name(cfg.sample), m(0), m(1), m(2));
    }
    Ok(md)
}
