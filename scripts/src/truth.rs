//! The truth of every cross-host hop netlat-analyze prints, for captures whose clocks were
//! distorted by `--sim-clock`: each packet's two timestamps are mapped back to the one real
//! clock of this machine (`sync::sim::SimClock::invert`) and compared, packet by packet,
//! with the aligned latency the analyzer wrote (`--out`, `hops.parquet`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use arrow::{
    array::{Array, AsArray, RecordBatch},
    compute::cast,
    datatypes::{DataType, Int64Type, UInt32Type, UInt64Type},
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sync::sim::SimClock;

use crate::bins;

/// One cross-host hop of one path, against the truth.
#[derive(Clone, Debug, PartialEq)]
pub struct HopTruth {
    /// Path name.
    pub path: String,
    /// Hop index on the path.
    pub hop: u32,
    /// Point labels.
    pub from: String,
    /// See `from`.
    pub to: String,
    /// Packets compared.
    pub n: usize,
    /// Same-clock truth p50 / the analyzer's p50, ns.
    pub p50: (i64, i64),
    /// Same-clock truth p99 / the analyzer's p99, ns.
    pub p99: (i64, i64),
    /// Largest |aligned − truth| of one packet, ns.
    pub max_error_ns: i64,
    /// The bound the analyzer printed for the hop.
    pub bound_ns: Option<i64>,
}

/// What the analyzer printed, against the truth.
#[derive(Clone, Debug)]
pub struct Truth {
    /// Every cross-host hop on a path.
    pub hops: Vec<HopTruth>,
    /// Each path: name, stations, packets seen out of its order across hosts.
    pub paths: Vec<(String, Vec<String>, u64)>,
}

fn nearest_rank(v: &mut [i64], q: f64) -> i64 {
    v.sort_unstable();
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

fn batches(file: &Path) -> anyhow::Result<Vec<RecordBatch>> {
    let f = std::fs::File::open(file).with_context(|| file.display().to_string())?;
    Ok(ParquetRecordBatchReaderBuilder::try_new(f)?.build()?.collect::<Result<_, _>>()?)
}

/// A column as strings, whatever string type the writer chose.
fn strings(b: &RecordBatch, name: &str) -> anyhow::Result<Vec<Option<String>>> {
    let c = cast(b.column_by_name(name).with_context(|| format!("no column {name}"))?, &DataType::Utf8)?;
    let a = c.as_string::<i32>();
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_owned())).collect())
}

fn ints<T: arrow::datatypes::ArrowPrimitiveType>(
    b: &RecordBatch,
    name: &str,
) -> anyhow::Result<Vec<Option<T::Native>>> {
    let c = cast(b.column_by_name(name).with_context(|| format!("no column {name}"))?, &T::DATA_TYPE)?;
    let a = c.as_primitive::<T>();
    Ok((0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i))).collect())
}

/// The host folders of `out` (one capture each) and their simulated clocks.
fn hosts(out: &Path) -> anyhow::Result<Vec<(String, PathBuf, SimClock)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(out)? {
        let dir = e?.path();
        if !dir.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&dir)? {
            let p = f?.path();
            if p.to_string_lossy().ends_with(".meta.json") {
                let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p)?)?;
                let sim = match m.get("sim_clock") {
                    Some(s) if !s.is_null() => serde_json::from_value(s.clone())?,
                    _ => SimClock::default(),
                };
                let host = m["host"].as_str().context("meta without host")?.to_owned();
                v.push((host, dir.clone(), sim));
            }
        }
    }
    Ok(v)
}

/// Runs netlat-analyze on `out` (`extra` arguments added) and compares every cross-host
/// hop of every path with the truth.
pub fn check(out: &Path, extra: &[&str]) -> anyhow::Result<Truth> {
    let hosts = hosts(out)?;
    // (label, pkt_id) -> true time; None when seen twice there.
    let mut truth: HashMap<(String, u64), Option<i64>> = HashMap::new();
    for (host, dir, sim) in &hosts {
        for f in std::fs::read_dir(dir)? {
            let p = f?.path();
            if !p.to_string_lossy().ends_with(".events.parquet") {
                continue;
            }
            for b in batches(&p)? {
                let (h, ifname, hook) = (strings(&b, "host")?, strings(&b, "ifname")?, strings(&b, "hook")?);
                let (id, ts) = (ints::<UInt64Type>(&b, "pkt_id")?, ints::<Int64Type>(&b, "ts_ns")?);
                for i in 0..b.num_rows() {
                    let (Some(id), Some(ts)) = (id[i], ts[i]) else { continue };
                    let label = format!(
                        "{}:{}:{}",
                        h[i].as_deref().unwrap_or(host),
                        ifname[i].as_deref().unwrap_or(""),
                        hook[i].as_deref().unwrap_or("")
                    );
                    let e = truth.entry((label, id)).or_insert(Some(sim.invert(ts)));
                    if e.is_some_and(|t| t != sim.invert(ts)) {
                        *e = None;
                    }
                }
            }
        }
    }
    let tmp = tempfile::tempdir()?;
    let o = Command::new(bins::path("netlat-analyze"))
        .arg(out)
        .args(["--format", "json", "--out"])
        .arg(tmp.path())
        .args(extra)
        .output()?;
    if !o.status.success() {
        bail!("netlat-analyze {}: {}", out.display(), String::from_utf8_lossy(&o.stderr));
    }
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)?;
    let host_of = |label: &str| label.split(':').next().unwrap_or("").to_owned();
    // (path, hop) -> (from, to, truths, aligned, errors)
    type Acc = (String, String, Vec<i64>, Vec<i64>, i64);
    let mut acc: HashMap<(String, u32), Acc> = HashMap::new();
    for b in batches(&tmp.path().join("hops.parquet"))? {
        let (path, from, to) = (strings(&b, "path")?, strings(&b, "from")?, strings(&b, "to")?);
        let (hop, id, lat) =
            (ints::<UInt32Type>(&b, "hop")?, ints::<UInt64Type>(&b, "pkt_id")?, ints::<Int64Type>(&b, "latency_ns")?);
        for i in 0..b.num_rows() {
            let (Some(path), Some(hop), Some(from), Some(to), Some(id), Some(lat)) =
                (&path[i], hop[i], &from[i], &to[i], id[i], lat[i])
            else {
                continue;
            };
            if host_of(from) == host_of(to) {
                continue;
            }
            let t = |l: &String| truth.get(&(l.clone(), id)).copied().flatten();
            let (Some(t0), Some(t1)) = (t(from), t(to)) else { continue };
            let e = acc.entry((path.clone(), hop)).or_insert_with(|| (from.clone(), to.clone(), vec![], vec![], 0));
            e.2.push(t1 - t0);
            e.3.push(lat);
            e.4 = e.4.max((lat - (t1 - t0)).abs());
        }
    }
    let paths_json = doc["paths"].as_array().cloned().unwrap_or_default();
    let bound = |path: &str, hop: u32| {
        paths_json.iter().find(|p| p["name"] == path).and_then(|p| p["hops"][hop as usize]["bound_ns"].as_i64())
    };
    let mut hops: Vec<HopTruth> = acc
        .into_iter()
        .map(|((path, hop), (from, to, mut t, mut a, max))| HopTruth {
            bound_ns: bound(&path, hop),
            n: t.len(),
            p50: (nearest_rank(&mut t, 0.5), nearest_rank(&mut a, 0.5)),
            p99: (nearest_rank(&mut t, 0.99), nearest_rank(&mut a, 0.99)),
            max_error_ns: max,
            path,
            hop,
            from,
            to,
        })
        .collect();
    hops.sort_by(|a, b| (&a.path, a.hop).cmp(&(&b.path, b.hop)));
    Ok(Truth { hops, paths: paths(&doc) })
}

/// Each path of netlat-analyze's JSON output: name, stations, packets seen out of its
/// order across hosts.
pub fn paths(doc: &serde_json::Value) -> Vec<(String, Vec<String>, u64)> {
    doc["paths"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let stations = p["stations"].as_array().into_iter().flatten();
            (
                p["name"].as_str().unwrap_or_default().to_owned(),
                stations.map(|s| s.as_str().unwrap_or_default().to_owned()).collect(),
                p["crossed"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

impl Truth {
    /// A markdown table of the hops.
    pub fn markdown(&self) -> String {
        let mut s = String::from(
            "| path | hop | packets | truth p50 / printed | truth p99 / printed | max error | bound |\n|---|---|---:|---:|---:|---:|---:|\n",
        );
        for h in &self.hops {
            s.push_str(&format!(
                "| {} | {} → {} | {} | {} / {} ns | {} / {} ns | {} ns | ±{} ns |\n",
                h.path,
                h.from,
                h.to,
                h.n,
                h.p50.0,
                h.p50.1,
                h.p99.0,
                h.p99.1,
                h.max_error_ns,
                h.bound_ns.map_or("-".into(), |b| b.to_string())
            ));
        }
        s
    }
}
