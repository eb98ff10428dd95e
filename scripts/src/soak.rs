//! The long-run soak (issue 9): two hosts, a steady UDP stream, captures
//! rotating often with a ring limit; capture memory (RSS) and file counts
//! are sampled over time, and every selected packet must be accounted for.

use std::{
    fmt::Write as _,
    net::SocketAddrV4,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::{accounting, capture, traffic, Lab};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Output folder (captures in OUT/a and OUT/b).
    pub out: PathBuf,
    /// Seconds of traffic.
    pub duration: f64,
    /// UDP datagrams per second.
    pub rate: u64,
    /// Rotate files at this age, seconds (`-G`).
    pub rotate: u64,
    /// Keep at most this many files per capture (`-W`).
    pub max_files: u32,
    /// Seconds between samples.
    pub every: f64,
}

/// One sample.
#[derive(Clone, Debug)]
pub struct Sample {
    /// Seconds since the traffic started.
    pub at: f64,
    /// RSS of capture a and b, KiB.
    pub rss_kib: [u64; 2],
    /// Finished events files on disk in OUT/a and OUT/b.
    pub files: [usize; 2],
}

/// The outcome.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// Samples over time.
    pub samples: Vec<Sample>,
    /// Datagrams sent and received.
    pub sent: u64,
    /// Received by the sink.
    pub received: usize,
    /// Per host and hook accounting lines.
    pub accounting: Vec<String>,
    /// Selected packets neither written nor counted as dropped.
    pub unexplained: u64,
    /// Packets dropped and counted (kernel ring full + user-space queue full).
    pub dropped: u64,
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().ends_with(".events.parquet")).count()
        })
        .unwrap_or(0)
}

/// Runs the soak.
pub fn run(cfg: &SoakConfig) -> anyhow::Result<SoakReport> {
    if cfg.out.exists() {
        std::fs::remove_dir_all(&cfg.out)?;
    }
    let lab = Lab::two_hosts()?;
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let (g, w) = (cfg.rotate.to_string(), cfg.max_files.to_string());
    let (cap_a, cap_b) = capture::start_pair(&lab, &cfg.out, &[], &["-q", "-G", &g, "-W", &w, "udp and port 5001"])?;
    let pids = [cap_a.pid(), cap_b.pid()];
    let dst = SocketAddrV4::new(b.addr, 5001);
    let sink = traffic::UdpSink::start(&b.netns, dst)?;
    let count = (cfg.duration * cfg.rate as f64) as u64;
    let (ns, rate) = (a.netns.clone(), cfg.rate);
    let sender = std::thread::spawn(move || traffic::udp_send(&ns, dst, count, rate, 64));
    let start = Instant::now();
    let mut samples = Vec::new();
    while !sender.is_finished() {
        std::thread::sleep(Duration::from_secs_f64(cfg.every).min(Duration::from_millis(500)));
        let due = samples.len() as f64 * cfg.every;
        if start.elapsed().as_secs_f64() >= due {
            samples.push(Sample {
                at: start.elapsed().as_secs_f64(),
                rss_kib: pids.map(rss_kib),
                files: [files(&cfg.out.join("a")), files(&cfg.out.join("b"))],
            });
        }
    }
    sender.join().expect("sender panicked")?;
    let received = sink.finish()?.len();
    for (name, cap) in [("a", cap_a), ("b", cap_b)] {
        let f = cap.stop()?;
        if f.code != Some(0) {
            bail!("capture on {name} failed ({:?}): {}", f.code, f.stderr);
        }
    }
    let mut report = SoakReport { samples, sent: count, received, accounting: Vec::new(), unexplained: 0, dropped: 0 };
    for host in ["a", "b"] {
        for h in accounting::read(&cfg.out.join(host))? {
            report.unexplained += h.unexplained();
            report.dropped += h.ringbuf_full + h.userspace_dropped;
            report.accounting.push(format!("{host}/{h}"));
        }
    }
    drop(lab);
    Ok(report)
}

impl SoakReport {
    /// A markdown summary.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "sent {} datagrams, received {}; dropped and counted {}; unexplained {}\n\n| t (s) | RSS a (MiB) | RSS b (MiB) | files a | files b |\n|---:|---:|---:|---:|---:|\n",
            self.sent, self.received, self.dropped, self.unexplained
        );
        for x in &self.samples {
            let _ = writeln!(
                s,
                "| {:.0} | {:.1} | {:.1} | {} | {} |",
                x.at,
                x.rss_kib[0] as f64 / 1024.0,
                x.rss_kib[1] as f64 / 1024.0,
                x.files[0],
                x.files[1]
            );
        }
        s.push('\n');
        for l in &self.accounting {
            let _ = writeln!(s, "    {l}");
        }
        s
    }
}
