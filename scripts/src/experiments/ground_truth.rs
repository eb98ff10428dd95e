//! Experiment a, ground truth: the relay topology with delays of 0, 200 µs,
//! 1 ms and 5 ms injected by the user-space relay. netlat's hop across the
//! router (`a:eth0:tc_egress -> b:eth0:xdp`) must equal the injected delay
//! plus the stack time measured with no delay, within ±[`BOUND_US`] (medians).
//! Each delayed run is bracketed by runs without delay, and its stack time
//! is the mean of those two medians: the machine's background load drifts
//! (2 cores shared with builds and tests), a single baseline would not.

use std::{fmt::Write as _, net::SocketAddrV4, path::Path, time::Duration};

use anyhow::{bail, Context as _};
use conf::lab::Topology;

use super::{analyze, capture, cell, stop, svg, Dirs, Hop};
use crate::{topology, topology::Running, traffic};

/// Injected delays in run order, µs (0 measures the stack and forwarding
/// time before and after each delay).
pub const DELAYS_US: [u64; 7] = [0, 200, 0, 1000, 0, 5000, 0];
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
    for (i, d) in DELAYS_US.into_iter().enumerate() {
        relay.set_delay(Duration::from_micros(d));
        let dir = dirs.work.join(format!("{i}-d{d}"));
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

/// Stack time of run `i`: the mean median of the undelayed runs next to it.
fn baseline(rows: &[Row], i: usize) -> f64 {
    let near: Vec<f64> = [i.checked_sub(1), Some(i + 1)]
        .into_iter()
        .flatten()
        .filter_map(|j| rows.get(j))
        .filter(|r| r.delay_us == 0)
        .map(|r| r.hop.p50)
        .collect();
    near.iter().sum::<f64>() / near.len() as f64
}

fn report(dirs: &Dirs, rows: &[Row]) -> anyhow::Result<()> {
    let mut csv = String::from(
        "run,delay_us,sent,received,hop_count,lost,min_us,p50_us,p90_us,p99_us,max_us,stack_us,expected_us,error_us,pass\n",
    );
    let mut md = format!(
        "| run | injected delay D µs | packets | median hop µs | p99 µs | stack time µs (D = 0 before/after) | expected µs | error µs | within ±{BOUND_US} µs |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let h = &r.hop;
        let all_matched = h.count as f64 >= 0.99 * r.sent as f64;
        if r.delay_us == 0 {
            let _ = writeln!(
                csv,
                "{i},0,{},{},{},{},{},{},{},{},{},-,-,-,{all_matched}",
                r.sent,
                r.received,
                h.count,
                h.lost,
                cell(h.min),
                cell(h.p50),
                cell(h.p90),
                cell(h.p99),
                cell(h.max)
            );
            let _ = writeln!(md, "| {i} | 0 | {} | {:.1} | {:.1} | (baseline) | | | |", h.count, h.p50, h.p99);
            if !all_matched {
                failures.push(format!("run {i} (no delay): {} of {} packets matched", h.count, r.sent));
            }
            continue;
        }
        let stack = baseline(rows, i);
        let expected = r.delay_us as f64 + stack;
        let err = h.p50 - expected;
        let pass = err.abs() <= BOUND_US && all_matched;
        checked.push((r, stack));
        if !pass {
            failures.push(format!(
                "delay {} µs: median {:.1} µs, expected {expected:.1} ± {BOUND_US}, {} of {} packets",
                r.delay_us, h.p50, h.count, r.sent
            ));
        }
        let _ = writeln!(
            csv,
            "{i},{},{},{},{},{},{},{},{},{},{},{stack:.3},{expected:.3},{err:.3},{pass}",
            r.delay_us,
            r.sent,
            r.received,
            h.count,
            h.lost,
            cell(h.min),
            cell(h.p50),
            cell(h.p90),
            cell(h.p99),
            cell(h.max)
        );
        let _ = writeln!(
            md,
            "| {i} | {} | {} | **{:.1}** | {:.1} | {stack:.1} | {expected:.1} | {err:+.1} | {} |",
            r.delay_us,
            h.count,
            h.p50,
            h.p99,
            if pass { "yes" } else { "**no**" }
        );
    }
    dirs.write("hops.csv", &csv)?;
    dirs.write("table.md", &md)?;
    let cats: Vec<String> = checked.iter().map(|(r, _)| format!("D = {} µs", r.delay_us)).collect();
    let series = [
        svg::Series {
            name: "netlat median hop - D".into(),
            values: checked.iter().map(|(r, _)| r.hop.p50 - r.delay_us as f64).collect(),
        },
        svg::Series { name: "stack time (median at D = 0)".into(), values: checked.iter().map(|(_, s)| *s).collect() },
    ];
    let title = format!("Ground truth: hop {FROM} -> {TO} minus injected D (bound ±{BOUND_US} µs)");
    dirs.write("residual.svg", &svg::bars(&title, "µs", &cats, &series, false, None))?;
    print!("{md}");
    if !failures.is_empty() {
        bail!("ground truth not met: {}", failures.join("; "));
    }
    eprintln!(
        "ground-truth: every median within ±{BOUND_US} µs of D + stack time; results in {}",
        dirs.results.display()
    );
    Ok(())
}
