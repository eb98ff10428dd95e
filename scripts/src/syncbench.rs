//! The clock-sync accuracy benchmark (issue 3): hosts on one switch, each
//! capture with its own synthetic clock (`--sim-clock`), sync probes in a
//! full mesh and UDP traffic around the ring; then the estimated clocks and
//! the aligned latencies are compared against the truth the run set up.
//!
//! * Offset error: at every probe timestamp of every non-reference host,
//!   `θ_est(t) − θ_true(t)`, where the truth comes from the injected clocks
//!   (`sync::sim::true_offset`).
//! * Drift error: estimated mean drift against `1 − (1+ε_ref)/(1+ε_host)`.
//! * Latency error: for every packet seen leaving one host (TC egress) and
//!   arriving at another (XDP), the aligned latency minus the same-clock
//!   truth (both timestamps mapped back to the one real clock).
//!
//! Around an injected step (`step_guard` either side) no probe can tell
//! exactly when it happened: those times are left out of both comparisons.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::SocketAddrV4,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _};
use arrow::array::{Array, Int64Array, StringArray, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sync::{map::Piecewise, sim::SimClock};

use crate::{
    bins,
    capture::{finish_all, start_all, Start},
    traffic, Lab,
};

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Output folder (captures in OUT/HOST).
    pub out: PathBuf,
    /// Seconds of capture.
    pub duration: f64,
    /// Hosts and their `--sim-clock` specs (empty: true clock).
    pub hosts: Vec<(String, String)>,
    /// UDP datagrams per second on each flow of the ring.
    pub rate: u64,
    /// Coded probe pairs per second per peer.
    pub sync_rate: f64,
    /// Estimator window, seconds.
    pub window: f64,
    /// Leave this much time around an injected step out of the offset
    /// errors (the estimator cannot know when between two probes it was).
    pub step_guard: Duration,
    /// A busy loop on every CPU while the captures run.
    pub load: bool,
    /// The senders pace themselves by busy-waiting (one core each at 100 %).
    pub spinning_senders: bool,
    /// Only the first host sends (to the second), instead of every host to the next: data
    /// packets in one direction only, the other known from probes alone.
    pub one_flow: bool,
}

/// Offset error of one host.
#[derive(Clone, Debug)]
pub struct HostError {
    /// Host.
    pub host: String,
    /// Probe timestamps evaluated.
    pub n: usize,
    /// Median |error|, ns.
    pub median_ns: f64,
    /// 99th percentile |error|, ns.
    pub p99_ns: f64,
    /// Largest |error|, ns.
    pub max_ns: f64,
    /// Estimated drift, ppm.
    pub drift_ppm: f64,
    /// True drift, ppm.
    pub true_drift_ppm: f64,
    /// The bound the estimator reported, ns.
    pub bound_ns: f64,
}

/// Latency error of one direction between two hosts.
#[derive(Clone, Debug)]
pub struct LatencyError {
    /// Sending host.
    pub from: String,
    /// Receiving host.
    pub to: String,
    /// Packets.
    pub n: usize,
    /// Median |aligned − truth|, ns.
    pub median_ns: f64,
    /// p99 |aligned − truth|, ns.
    pub p99_ns: f64,
    /// max |aligned − truth|, ns.
    pub max_ns: f64,
    /// Same-clock truth p50 / aligned p50, ns.
    pub p50: (i64, i64),
    /// Same-clock truth p99 / aligned p99, ns.
    pub p99: (i64, i64),
    /// netlat-analyze's own p50 for this pair (must equal the aligned p50).
    pub analyze_p50: Option<i64>,
    /// netlat-analyze's own p99.
    pub analyze_p99: Option<i64>,
    /// Bound netlat-analyze printed, ns.
    pub bound_ns: Option<i64>,
}

/// The outcome.
#[derive(Clone, Debug)]
pub struct BenchReport {
    /// Reference host.
    pub reference: String,
    /// Per non-reference host.
    pub hosts: Vec<HostError>,
    /// Per direction.
    pub latencies: Vec<LatencyError>,
    /// `netlat-analyze sync` table.
    pub sync_table: String,
    /// Each path netlat-analyze printed: name, stations, packets seen out of its order
    /// across hosts.
    pub paths: Vec<(String, Vec<String>, u64)>,
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn quantile_i64(v: &mut [i64], q: f64) -> i64 {
    v.sort_unstable();
    let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn parquet_files(dir: &Path, suffix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    Ok(v)
}

/// Reads `(ts_ns, host, hook, pkt_id)` from events files, or
/// `(ts_ns, host, hook, 0)` from sync files.
fn read_rows(files: &[PathBuf], id_column: Option<&str>) -> anyhow::Result<Vec<(i64, String, String, u64)>> {
    let mut out = Vec::new();
    for f in files {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f)?)?.build()?;
        for batch in reader {
            let batch = batch?;
            let col = |n: &str| batch.column_by_name(n).with_context(|| format!("{}: no column {n}", f.display()));
            let ts = col("ts_ns")?.as_any().downcast_ref::<Int64Array>().context("ts_ns type")?.clone();
            let host = col("host")?.as_any().downcast_ref::<StringArray>().context("host type")?.clone();
            let hook = col("hook")?.as_any().downcast_ref::<StringArray>().context("hook type")?.clone();
            let id = match id_column {
                Some(n) => Some(col(n)?.as_any().downcast_ref::<UInt64Array>().context("id type")?.clone()),
                None => None,
            };
            for i in 0..batch.num_rows() {
                let id = id.as_ref().map_or(0, |a| a.value(i));
                out.push((ts.value(i), host.value(i).to_owned(), hook.value(i).to_owned(), id));
            }
        }
    }
    Ok(out)
}

fn sim_clocks(out: &Path, hosts: &[String]) -> anyhow::Result<HashMap<String, SimClock>> {
    let mut m = HashMap::new();
    for h in hosts {
        for f in std::fs::read_dir(out.join(h))? {
            let p = f?.path();
            if p.to_string_lossy().ends_with(".meta.json") {
                let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p)?)?;
                let sim: SimClock = match v.get("sim_clock") {
                    Some(s) if !s.is_null() => serde_json::from_value(s.clone())?,
                    _ => SimClock::default(),
                };
                m.insert(h.clone(), sim);
            }
        }
    }
    Ok(m)
}

fn analyze(args: &[&std::ffi::OsStr]) -> anyhow::Result<String> {
    let o = Command::new(bins::path("netlat-analyze")).args(args).output()?;
    if !o.status.success() {
        bail!("netlat-analyze {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8(o.stdout)?)
}

/// How long each capture outlasts the traffic, seconds.
pub const END_MARGIN_S: f64 = 1.5;

/// Runs the lab, captures, analysis and comparison.
pub fn run(cfg: &BenchConfig) -> anyhow::Result<BenchReport> {
    if cfg.out.exists() {
        std::fs::remove_dir_all(&cfg.out)?;
    }
    let names: Vec<&str> = cfg.hosts.iter().map(|(h, _)| h.as_str()).collect();
    let lab = Lab::star(&names)?;
    let load = cfg.load.then(traffic::BusyLoops::start);
    // Each capture runs for the traffic's duration and a little more and ends by itself,
    // as `netlat-capture --duration` does for users; started together, so the traffic
    // starts as soon as all are ready.
    let starts: Vec<Start> = cfg
        .hosts
        .iter()
        .enumerate()
        .map(|(i, (name, sim))| {
            let mut args: Vec<String> =
                ["-i", "veth0", "--host-name", name, "-q", "--sync-rate"].iter().map(|s| s.to_string()).collect();
            args.push(cfg.sync_rate.to_string());
            for (j, h) in lab.hosts.iter().enumerate() {
                if j != i {
                    args.extend(["--sync-peer".to_owned(), h.addr.to_string()]);
                }
            }
            if !sim.is_empty() {
                args.extend(["--sim-clock".to_owned(), sim.clone()]);
            }
            args.extend(["--duration".to_owned(), (cfg.duration + END_MARGIN_S).to_string()]);
            args.extend(["udp", "and", "port", "6001"].map(String::from));
            Start { netns: Some(lab.hosts[i].netns.clone()), dir: cfg.out.join(name), args }
        })
        .collect();
    let caps = start_all(&starts)?;
    // Traffic around the ring: host i sends to host i+1.
    let n = lab.hosts.len();
    let count = (cfg.duration * cfg.rate as f64) as u64;
    let mut sinks = Vec::new();
    let mut senders = Vec::new();
    let flows = if cfg.one_flow { n.min(1) } else { n };
    for i in 0..flows {
        let (src, dst) = (&lab.hosts[i], &lab.hosts[(i + 1) % n]);
        let addr = SocketAddrV4::new(dst.addr, 6001);
        sinks.push(traffic::UdpSink::start(&dst.netns, addr)?);
        let (ns, rate) = (src.netns.clone(), cfg.rate);
        let send = if cfg.spinning_senders { traffic::udp_send_spinning } else { traffic::udp_send };
        senders.push(std::thread::spawn(move || send(&ns, addr, count, rate, 64)));
    }
    if n < 2 || count == 0 {
        std::thread::sleep(Duration::from_secs_f64(cfg.duration));
    }
    for s in senders {
        s.join().expect("sender panicked")?;
    }
    for s in sinks {
        s.finish()?;
    }
    finish_all(caps, &names, Duration::from_secs_f64(END_MARGIN_S + 10.0))?;
    drop(load);
    drop(lab);
    compare(cfg)
}

/// Compares the analysis of `cfg.out` with the injected clocks.
pub fn compare(cfg: &BenchConfig) -> anyhow::Result<BenchReport> {
    let hosts: Vec<String> = cfg.hosts.iter().map(|(h, _)| h.clone()).collect();
    let out = cfg.out.as_os_str();
    let window = cfg.window.to_string();
    let w = [std::ffi::OsStr::new("--sync-window"), std::ffi::OsStr::new(&window)];
    let sync_json = analyze(&[std::ffi::OsStr::new("sync"), out, "--format".as_ref(), "json".as_ref(), w[0], w[1]])?;
    let sync_table = analyze(&[std::ffi::OsStr::new("sync"), out, w[0], w[1]])?;
    let lat_json = analyze(&[out, "--format".as_ref(), "json".as_ref(), w[0], w[1]])?;
    let doc: serde_json::Value = serde_json::from_str(&sync_json)?;
    let result = &doc["result"];
    let reference = result["reference"].as_str().context("no reference host: nothing aligned")?.to_owned();
    let mut maps: HashMap<String, Piecewise> = HashMap::new();
    let mut drift: HashMap<String, (f64, f64)> = HashMap::new();
    for h in result["hosts"].as_array().context("hosts")? {
        let name = h["host"].as_str().unwrap_or_default().to_owned();
        if h["map"].is_null() {
            bail!("host {name} not aligned: {}", h["problem"]);
        }
        maps.insert(name.clone(), serde_json::from_value(h["map"].clone())?);
        drift.insert(name, (h["drift_ppm"].as_f64().unwrap_or(f64::NAN), h["bound_ns"].as_f64().unwrap_or(f64::NAN)));
    }
    let sims = sim_clocks(&cfg.out, &hosts)?;
    let sim_ref = sims[&reference];

    let mut host_errors = Vec::new();
    for h in hosts.iter().filter(|h| **h != reference) {
        let sim = sims[h];
        let step_at = (sim.step_ns != 0).then(|| sim.apply(sim.ref_ns + sim.step_after_ns));
        let guard = cfg.step_guard.as_nanos() as i64;
        let rows = read_rows(&parquet_files(&cfg.out.join(h), ".sync.parquet")?, None)?;
        let mut errs: Vec<f64> = rows
            .iter()
            .map(|r| r.0)
            .filter(|t| step_at.is_none_or(|s| (t - s).abs() > guard))
            .map(|t| (maps[h].offset(t) - sync::sim::true_offset(&sim_ref, &sim, t)).abs())
            .collect();
        let true_drift = (1.0 - (1.0 + sim_ref.drift_ppm * 1e-6) / (1.0 + sim.drift_ppm * 1e-6)) * 1e6;
        host_errors.push(HostError {
            host: h.clone(),
            n: errs.len(),
            median_ns: quantile(&mut errs, 0.5),
            p99_ns: quantile(&mut errs, 0.99),
            max_ns: quantile(&mut errs, 1.0),
            drift_ppm: drift[h].0,
            true_drift_ppm: true_drift,
            bound_ns: drift[h].1,
        });
    }

    // Packets: tc_egress on one host, xdp on another.
    let mut tx: HashMap<u64, (String, i64)> = HashMap::new();
    let mut rx: HashMap<u64, (String, i64)> = HashMap::new();
    for h in &hosts {
        for (ts, host, hook, id) in read_rows(&parquet_files(&cfg.out.join(h), ".events.parquet")?, Some("pkt_id"))? {
            match hook.as_str() {
                "tc_egress" => tx.insert(id, (host, ts)),
                "xdp" => rx.insert(id, (host, ts)),
                _ => None,
            };
        }
    }
    let lat_doc: serde_json::Value = serde_json::from_str(&lat_json)?;
    let guard = cfg.step_guard.as_nanos() as i64;
    let near_step = |host: &str, t: i64| {
        let sim = sims[host];
        sim.step_ns != 0 && (t - sim.apply(sim.ref_ns + sim.step_after_ns)).abs() <= guard
    };
    /// Per direction: |errors|, true latencies, aligned latencies.
    type Samples = (Vec<f64>, Vec<i64>, Vec<i64>);
    let mut per: HashMap<(String, String), Samples> = HashMap::new();
    for (id, (from, t1)) in &tx {
        let Some((to, t2)) = rx.get(id) else { continue };
        if from == to || near_step(from, *t1) || near_step(to, *t2) {
            continue;
        }
        let truth = sims[to].invert(*t2) - sims[from].invert(*t1);
        let est = maps[to].to_reference(*t2) - maps[from].to_reference(*t1);
        let e = per.entry((from.clone(), to.clone())).or_default();
        e.0.push((est - truth).abs() as f64);
        e.1.push(truth);
        e.2.push(est);
    }
    let mut latencies = Vec::new();
    let mut keys: Vec<_> = per.keys().cloned().collect();
    keys.sort();
    for k in keys {
        let (mut errs, mut truth, mut est) = per.remove(&k).expect("key");
        let pair = lat_doc["pairs"].as_array().into_iter().flatten().find(|p| {
            p["from"].as_str() == Some(&format!("{}:veth0:tc_egress", k.0))
                && p["to"].as_str() == Some(&format!("{}:veth0:xdp", k.1))
        });
        latencies.push(LatencyError {
            from: k.0,
            to: k.1,
            n: errs.len(),
            median_ns: quantile(&mut errs, 0.5),
            p99_ns: quantile(&mut errs, 0.99),
            max_ns: quantile(&mut errs, 1.0),
            p50: (quantile_i64(&mut truth, 0.5), quantile_i64(&mut est, 0.5)),
            p99: (quantile_i64(&mut truth, 0.99), quantile_i64(&mut est, 0.99)),
            analyze_p50: pair.and_then(|p| p["p50_ns"].as_i64()),
            analyze_p99: pair.and_then(|p| p["p99_ns"].as_i64()),
            bound_ns: pair.and_then(|p| p["bound_ns"].as_i64()),
        });
    }
    let paths = crate::truth::paths(&lat_doc);
    Ok(BenchReport { reference, hosts: host_errors, latencies, sync_table, paths })
}

impl BenchReport {
    /// Markdown tables of the results.
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Reference host: {}\n\n| host | probe times | offset error median | p99 | max | drift est. | drift true | drift error | bound |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
            self.reference
        );
        for h in &self.hosts {
            let _ = writeln!(
                s,
                "| {} | {} | {:.0} ns | {:.0} ns | {:.0} ns | {:+.4} ppm | {:+.4} ppm | {:.4} ppm | ±{:.0} ns |",
                h.host,
                h.n,
                h.median_ns,
                h.p99_ns,
                h.max_ns,
                h.drift_ppm,
                h.true_drift_ppm,
                (h.drift_ppm - h.true_drift_ppm).abs(),
                h.bound_ns
            );
        }
        s.push_str("\n| from → to | packets | latency error median | p99 | max | truth p50 / aligned p50 | truth p99 / aligned p99 | analyze p50 / p99 | bound |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for l in &self.latencies {
            let _ = writeln!(
                s,
                "| {} → {} | {} | {:.0} ns | {:.0} ns | {:.0} ns | {} / {} ns | {} / {} ns | {} / {} ns | ±{} ns |",
                l.from,
                l.to,
                l.n,
                l.median_ns,
                l.p99_ns,
                l.max_ns,
                l.p50.0,
                l.p50.1,
                l.p99.0,
                l.p99.1,
                l.analyze_p50.map_or("-".into(), |v| v.to_string()),
                l.analyze_p99.map_or("-".into(), |v| v.to_string()),
                l.bound_ns.map_or("-".into(), |v| v.to_string())
            );
        }
        s.push_str("\n| path | stations | out of order across hosts |\n|---|---|---:|\n");
        for (name, stations, crossed) in &self.paths {
            let _ = writeln!(s, "| {name} | {} | {crossed} |", stations.join(" → "));
        }
        s
    }
}
