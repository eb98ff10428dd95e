//! `netlat-lab experiment NAME`: experiments on the conf/lab topologies
//! that write tables (CSV, markdown) and SVG figures into `results/NAME/`
//! and check their expected outcome (an error when it is not met).

pub mod congestion;
pub mod ground_truth;
pub mod layers;
pub mod svg;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{bins, capture::Capture, teardown};

/// Runs experiment `name` (`ground-truth`, `congestion` or `all`): tables
/// and figures into `results/NAME`, raw captures into `work/NAME`, `count`
/// probe datagrams at `rate` per second per run. Tears the lab down on
/// SIGINT/SIGTERM/SIGHUP as well as on errors.
pub fn run(name: &str, results: &Path, work: &Path, count: u64, rate: u64) -> anyhow::Result<()> {
    if !crate::netns::is_root() {
        bail!("the lab needs root (network namespaces, eBPF)");
    }
    crate::topo::cleanup_stale()?;
    teardown::exit_on_signal();
    match name {
        "ground-truth" => ground_truth::run(results, work, count, rate),
        "send-buffer" => layers::send_buffer(results, work, 5),
        "cpu-contention" => layers::cpu_contention(results, work, count as usize),
        "congestion" => congestion::run(results, work, count, rate),
        "all" => {
            let g = ground_truth::run(results, work, count, rate);
            let b = layers::send_buffer(results, work, 5);
            let c = layers::cpu_contention(results, work, count as usize);
            let d = congestion::run(results, work, count, rate);
            g.and(b).and(c).and(d)
        }
        _ => bail!("no experiment {name:?} (ground-truth, send-buffer, cpu-contention, congestion, all)"),
    }
}

/// Where an experiment writes.
pub struct Dirs {
    /// Tables and figures (kept small: committed under results/).
    pub results: PathBuf,
    /// Raw captures (not committed).
    pub work: PathBuf,
}

impl Dirs {
    /// `results/NAME` and `work/NAME`, both emptied first.
    pub fn new(results: &Path, work: &Path, name: &str) -> anyhow::Result<Self> {
        let d = Self { results: results.join(name), work: work.join(name) };
        for p in [&d.results, &d.work] {
            if p.exists() {
                std::fs::remove_dir_all(p).with_context(|| format!("clearing {}", p.display()))?;
            }
            std::fs::create_dir_all(p)?;
        }
        Ok(d)
    }

    /// Writes `name` into the results folder.
    pub fn write(&self, name: &str, text: &str) -> anyhow::Result<()> {
        let p = self.results.join(name);
        std::fs::write(&p, text).with_context(|| p.display().to_string())
    }
}

/// One row of `netlat-analyze --table hops --format csv`, in µs.
#[derive(Clone, Debug)]
pub struct Hop {
    /// Earlier observation point, `host:ifname:hook`.
    pub from: String,
    /// Later observation point.
    pub to: String,
    /// Packets that passed it.
    pub count: u64,
    /// Packets lost on it.
    pub lost: u64,
    /// Figures, µs (NaN where the analyzer printed `-`).
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

impl Hop {
    /// `from -> to`.
    pub fn name(&self) -> String {
        format!("{} -> {}", self.from, self.to)
    }
}

/// Parses the hops CSV of netlat-analyze.
pub fn parse_hops(csv: &str) -> anyhow::Result<Vec<Hop>> {
    let mut lines = csv.lines();
    let head: Vec<&str> = lines.next().context("empty hops table")?.split(',').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).with_context(|| format!("no column {n} in {head:?}"));
    let (from, to, count, lost) = (col("from")?, col("to")?, col("count")?, col("lost")?);
    let (min, p50, p90, p99, max) = (col("min_us")?, col("p50_us")?, col("p90_us")?, col("p99_us")?, col("max_us")?);
    let p999 = col("p99.9_us")?;
    let num = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            anyhow::ensure!(f.len() == head.len(), "bad hops row {l:?}");
            Ok(Hop {
                from: f[from].into(),
                to: f[to].into(),
                count: f[count].parse()?,
                lost: f[lost].parse()?,
                min: num(f[min]),
                p50: num(f[p50]),
                p90: num(f[p90]),
                p99: num(f[p99]),
                p999: num(f[p999]),
                max: num(f[max]),
            })
        })
        .collect()
}

/// `netlat-analyze DIRS --same-clock --filter FILTER`'s hop table (hosts on
/// one machine share its clock).
pub fn analyze(dirs: &[PathBuf], filter: &str) -> anyhow::Result<Vec<Hop>> {
    let out = Command::new(bins::path("netlat-analyze"))
        .args(dirs)
        .args(["--same-clock", "--format", "csv", "--table", "hops", "--filter", filter])
        .output()?;
    if !out.status.success() {
        bail!("netlat-analyze failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    parse_hops(&String::from_utf8_lossy(&out.stdout))
}

/// Starts `netlat-capture` inside `netns` on `ifaces` as host `host`,
/// recording `filter`, clock sync off (one machine), into `dir`.
pub fn capture(netns: &str, dir: &Path, host: &str, ifaces: &[&str], filter: &str) -> anyhow::Result<Capture> {
    let mut args = vec!["-q", "--host-name", host, "--sync-port", "0"];
    for i in ifaces {
        args.extend(["-i", i]);
    }
    args.push(filter);
    Capture::start(Some(netns), dir, &args)
}

/// Stops captures, failing when one did not exit cleanly.
pub fn stop(caps: Vec<Capture>) -> anyhow::Result<()> {
    for c in caps {
        let pid = c.pid();
        let f = c.stop()?;
        if f.code != Some(0) {
            bail!("capture {pid} failed ({:?}): {}", f.code, f.stderr);
        }
    }
    Ok(())
}

/// CSV cell of a figure.
pub fn cell(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hops_csv_is_parsed() {
        let csv = "from,to,segment,count,lost,min_us,mean_us,p50_us,p90_us,p99_us,p99.9_us,max_us,bound_us\n\
a:eth0:tc_egress,b:eth0:xdp,network,305,2,1.690,5.849,4.944,7.985,22.533,27.993,27.993,0.000\n\
b:eth0:xdp,c:eth0:xdp,network,0,3,-,-,-,-,-,-,-,-\n";
        let h = parse_hops(csv).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].name(), "a:eth0:tc_egress -> b:eth0:xdp");
        assert_eq!((h[0].count, h[0].lost, h[0].p50, h[0].p99), (305, 2, 4.944, 22.533));
        assert!(h[1].p99.is_nan());
        assert!(parse_hops("from,to\nx\n").is_err());
    }
}
