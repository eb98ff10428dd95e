//! Experiment a, ground truth: the relay topology with delays of 0, 200 µs,
//! 1 ms and 5 ms injected by the user-space relay. netlat's hop across the
//! router (`a:eth0:tc_egress -> b:eth0:xdp`) must equal the injected delay
//! plus the stack time measured with no delay, within ±[`BOUND_US`] (medians).

use std::{fmt::Write as _, net::SocketAddrV4, path::Path, time::Duration};

use anyhow::{bail, Context as _};
use conf::lab::Topology;

use super::{analyze, capture, cell, stop, svg, Dirs, Hop};
use crate::{topology, topology::Running, traffic};

/// Injected delays, µs (0 measures the stack and forwarding time).
pub const DELAYS_US: [u64; 4] = [0, 200, 1000, 5000];
/// Accepted distance of the median hop from injected delay + median at 0, µs.
pub const BOUND_US: f64 = 25.0;
const FILTER: &str = "udp and port 5001";
const FROM: &str = "a:eth0:tc_egress";
const TO: &str = "b:eth0:xdp";

/// Measured hop at one delay.
pub struct Row {
    /// Injected delay, µs.
    pub delay_us: u64,
    /// Datagrams sent and received by the application.
    pub sent: u64,
    /// Received.
    pub received: usize,
    /// The analyzer's hop across the relay.
    pub hop: Hop,
}

/// Runs the experiment: `count` datagrams at `rate`/s per delay.
pub fn run(results: &Path, work: &Path, count: u64, rate: u64) -> anyhow::Result<()> {
    let dirs = Dirs::new(results, work, "ground-truth")?;
    let mut t = Topology::load(&topology::find("relay")?)?;
    t.router.as_mut().context("relay topology has no router")?.delay_us = 0;
    let lab = Running::up(&t)?;
    let (a, b) = (lab.host("a")?, lab.host("b")?);
    let relay = lab.relay().context("no relay")?;
    let mut rows = Vec::new();
    for d in DELAYS_US {
        relay.set_delay(Duration::from_micros(d));
        let dir = dirs.work.join(format!("d{d}"));
        let caps = vec![
            capture(&a.netns, &dir.join("a"), "a", &["eth0"], FILTER)?,
            capture(&b.netns, &dir.join("b"), "b", &["eth0"], FILTER)?,
        ];
        let dst = SocketAddrV4::new(b.addr, 5001);
        let sink = traffic::UdpSink::start(&b.netns, dst)?;
        traffic::udp_send(&a.netns, dst, count, rate, 100)?;
        std::thread::sleep(Duration::from_micros(d) * 2);
        let received = sink.finish()?.len();
        stop(caps)?;
        let hops = analyze(&[dir.join("a"), dir.join("b")], FILTER)?;
        let hop = hops.into_iter().find(|h| h.from == FROM && h.to == TO);
        let hop = hop.with_context(|| format!("delay {d} µs: no hop {FROM} -> {TO} in the analysis"))?;
        eprintln!(
            "ground-truth: delay {d:>4} µs: hop median {:.1} µs, p99 {:.1} µs, {} packets",
            hop.p50, hop.p99, hop.count
        );
        rows.push(Row { delay_us: d, sent: count, received, hop });
    }
    drop(lab);
    report(&dirs, &rows)
}

fn report(dirs: &Dirs, rows: &[Row]) -> anyhow::Result<()> {
    let base = rows[0].hop.p50;
    let mut csv = String::from(
        "delay_us,sent,received,hop_count,lost,min_us,p50_us,p90_us,p99_us,max_us,expected_us,error_us,pass\n",
    );
    let mut md = format!(
        "| injected delay µs | packets | median hop µs | p99 µs | expected µs (D + {base:.1}) | error µs | within ±{BOUND_US} µs |\n|---|---|---|---|---|---|---|\n"
    );
    let mut failures = Vec::new();
    for r in rows {
        let h = &r.hop;
        let expected = r.delay_us as f64 + base;
        let err = h.p50 - expected;
        let pass = err.abs() <= BOUND_US && h.count as f64 >= 0.99 * r.sent as f64;
        if !pass {
            failures.push(format!(
                "delay {} µs: median {:.1} µs, expected {expected:.1} ± {BOUND_US}, {} of {} packets",
                r.delay_us, h.p50, h.count, r.sent
            ));
        }
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{pass}",
            r.delay_us,
            r.sent,
            r.received,
            h.count,
            h.lost,
            cell(h.min),
            cell(h.p50),
            cell(h.p90),
            cell(h.p99),
            cell(h.max),
            expected,
            err
        );
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} | {expected:.1} | {err:+.1} | {} |",
            r.delay_us,
            h.count,
            h.p50,
            h.p99,
            if pass { "yes" } else { "**no**" }
        );
    }
    dirs.write("hops.csv", &csv)?;
    dirs.write("table.md", &md)?;
    let cats: Vec<String> = rows.iter().map(|r| format!("D = {} µs", r.delay_us)).collect();
    let residual = svg::Series {
        name: "median hop - D (µs)".into(),
        values: rows.iter().map(|r| r.hop.p50 - r.delay_us as f64).collect(),
    };
    let p90 = svg::Series {
        name: "p90 hop - D (µs)".into(),
        values: rows.iter().map(|r| r.hop.p90 - r.delay_us as f64).collect(),
    };
    let band = svg::Band {
        lo: base - BOUND_US,
        hi: base + BOUND_US,
        label: format!("accepted: median at D=0 ± {BOUND_US} µs"),
    };
    let title = format!("Ground truth: netlat hop {FROM} -> {TO} minus the injected relay delay D");
    dirs.write("residual.svg", &svg::bars(&title, "µs", &cats, &[residual, p90], false, Some(&band)))?;
    print!("{md}");
    if !failures.is_empty() {
        bail!("ground truth not met: {}", failures.join("; "));
    }
    eprintln!(
        "ground-truth: every median within ±{BOUND_US} µs of D + {base:.1} µs; results in {}",
        dirs.results.display()
    );
    Ok(())
}
