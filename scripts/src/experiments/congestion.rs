//! Experiment d, congestion on a shared bridge port (vNetTracer's
//! virtual-switch case): the bridge topology with the port towards c3
//! (`c3p`) shaped by a token bucket, a low-rate probe flow c2 -> c3 alone
//! and then next to an iperf3 TCP flow c1 -> c3 through the same port. The
//! hop whose p99 grows most must be the shaped port's queue,
//! `host:c3p:tc_egress -> c3:eth0:xdp`, and grow at least tenfold to a
//! millisecond or more.

use std::{fmt::Write as _, net::SocketAddrV4, path::Path, process::Command, time::Duration};

use anyhow::{bail, Context as _};

use super::{analyze, capture, cell, stop, svg, Dirs, Hop};
use crate::{netns::spawn_in, teardown, topology::Running, traffic};

const FILTER: &str = "udp and port 5001";
/// The hop the shaped queue sits on.
pub const QUEUE_HOP: (&str, &str) = ("host:c3p:tc_egress", "c3:eth0:xdp");
/// The token bucket on c3p.
pub const TBF: &str = "rate 100mbit burst 32kb latency 10ms";

fn phase(lab: &Running, dir: &Path, load: bool, count: u64, rate: u64) -> anyhow::Result<Vec<Hop>> {
    let (c1, c2, c3) = (lab.host("c1")?, lab.host("c2")?, lab.host("c3")?);
    let host = lab.netns("host")?;
    let caps = vec![
        capture(&c2.netns, &dir.join("c2"), "c2", &["eth0"], FILTER)?,
        capture(host, &dir.join("host"), "host", &["c2p", "c3p"], FILTER)?,
        capture(&c3.netns, &dir.join("c3"), "c3", &["eth0"], FILTER)?,
    ];
    let mut load_procs = Vec::new();
    if load {
        let c3a = c3.addr.to_string();
        load_procs.push(spawn_in(&c3.netns, &["iperf3", "-s", "-1", "-B", &c3a])?);
        std::thread::sleep(Duration::from_millis(500));
        let secs = (count / rate.max(1) + 3).to_string();
        load_procs.push(spawn_in(&c1.netns, &["iperf3", "-c", &c3a, "-t", &secs])?);
        std::thread::sleep(Duration::from_secs(1));
    }
    let dst = SocketAddrV4::new(c3.addr, 5001);
    let sink = traffic::UdpSink::start(&c3.netns, dst)?;
    traffic::udp_send(&c2.netns, dst, count, rate, 200)?;
    let got = sink.finish()?.len();
    // iperf3 runs past the probe: one that already ended did so by failing.
    let early = load_procs.iter_mut().map(|p| p.try_wait()).collect::<Result<Vec<_>, _>>()?;
    for mut p in load_procs.into_iter().rev() {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
        let _ = p.wait();
        teardown::untrack_child(p.id());
    }
    stop(caps)?;
    if let Some(status) = early.into_iter().flatten().find(|s| !s.success()) {
        bail!("iperf3 ended early ({status}): no competing flow (is iperf3 installed?)");
    }
    eprintln!("congestion: {} phase: probe {got} of {count} datagrams arrived", if load { "loaded" } else { "idle" });
    let dirs: Vec<_> = ["c2", "host", "c3"].iter().map(|h| dir.join(h)).collect();
    analyze(&dirs, FILTER)
}

/// Runs the experiment: `count` probe datagrams at `rate`/s per phase.
pub fn run(results: &Path, work: &Path, count: u64, rate: u64) -> anyhow::Result<()> {
    let dirs = Dirs::new(results, work, "congestion")?;
    let lab = Running::up_named("bridge")?;
    let host = lab.netns("host")?.to_owned();
    let mut tc = vec!["-n", &host, "qdisc", "add", "dev", "c3p", "root", "tbf"];
    tc.extend(TBF.split_whitespace());
    let st = Command::new("tc").args(&tc).status()?;
    anyhow::ensure!(st.success(), "tc {tc:?} failed");
    let idle = phase(&lab, &dirs.work.join("idle"), false, count, rate)?;
    let loaded = phase(&lab, &dirs.work.join("loaded"), true, count, rate)?;
    drop(lab);
    report(&dirs, &idle, &loaded)
}

fn report(dirs: &Dirs, idle: &[Hop], loaded: &[Hop]) -> anyhow::Result<()> {
    let mut csv = String::from("phase,from,to,count,lost,min_us,p50_us,p90_us,p99_us,max_us\n");
    for (phase, hops) in [("idle", idle), ("loaded", loaded)] {
        for h in hops {
            let _ = writeln!(
                csv,
                "{phase},{},{},{},{},{},{},{},{},{}",
                h.from,
                h.to,
                h.count,
                h.lost,
                cell(h.min),
                cell(h.p50),
                cell(h.p90),
                cell(h.p99),
                cell(h.max)
            );
        }
    }
    dirs.write("hops.csv", &csv)?;
    // Hops of the probe's path, in path order (from the hop nothing leads into).
    let mut order: Vec<&Hop> = Vec::new();
    let mut next = loaded.iter().find(|h| !loaded.iter().any(|o| o.to == h.from));
    while let Some(h) = next.filter(|h| order.len() < loaded.len() && !order.iter().any(|o| o.name() == h.name())) {
        order.push(h);
        next = loaded.iter().find(|o| o.from == h.to);
    }
    order.extend(loaded.iter().filter(|h| !order.iter().any(|o| o.name() == h.name())).collect::<Vec<_>>());
    let pairs: Vec<(&Hop, Option<&Hop>)> =
        order.into_iter().map(|l| (l, idle.iter().find(|i| i.from == l.from && i.to == l.to))).collect();
    let mut md = String::from("| hop | idle p50 µs | idle p99 µs | loaded p50 µs | loaded p99 µs | loaded lost |\n|---|---|---|---|---|---|\n");
    for (l, i) in &pairs {
        let (ip50, ip99) = i.map_or((f64::NAN, f64::NAN), |i| (i.p50, i.p99));
        let _ = writeln!(md, "| `{}` | {ip50:.1} | {ip99:.1} | {:.1} | {:.1} | {} |", l.name(), l.p50, l.p99, l.lost);
    }
    let growth = |(l, i): &(&Hop, Option<&Hop>)| l.p99 - i.map_or(0.0, |i| i.p99);
    let worst = pairs.iter().filter(|p| growth(p).is_finite()).max_by(|a, b| growth(a).total_cmp(&growth(b)));
    let (l, i) = worst.context("no hop in both phases")?;
    let idle_p99 = i.map_or(f64::NAN, |i| i.p99);
    let _ = writeln!(
        md,
        "\nQueueing hop (largest p99 growth): `{}`, p99 {idle_p99:.1} µs idle -> {:.1} µs loaded.",
        l.name(),
        l.p99
    );
    dirs.write("table.md", &md)?;
    let cats: Vec<String> = pairs.iter().map(|(l, _)| l.name()).collect();
    let series = [
        svg::Series {
            name: "idle p99".into(),
            values: pairs.iter().map(|(_, i)| i.map_or(f64::NAN, |i| i.p99)).collect(),
        },
        svg::Series { name: "with iperf3 p99".into(), values: pairs.iter().map(|(l, _)| l.p99).collect() },
    ];
    let title = format!("Congestion: probe c2 -> c3 per-hop p99, c3p shaped ({TBF})");
    dirs.write("p99.svg", &svg::bars(&title, "µs (log)", &cats, &series, true, None))?;
    print!("{md}");
    let named = (l.from.as_str(), l.to.as_str()) == QUEUE_HOP;
    let tenfold = idle_p99.is_finite() && l.p99 >= 10.0 * idle_p99;
    if !named || l.p99 < 1000.0 || !tenfold {
        bail!(
            "congestion not located: largest p99 growth on `{}` ({idle_p99:.1} -> {:.1} µs), expected `{} -> {}` growing tenfold to >= 1 ms",
            l.name(),
            l.p99,
            QUEUE_HOP.0,
            QUEUE_HOP.1
        );
    }
    eprintln!("congestion: queueing hop named: {}; results in {}", l.name(), dirs.results.display());
    Ok(())
}
