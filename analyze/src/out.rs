//! `--out DIR`: the analysis as Parquet tables for Jupyter and other tools (docs/analysis.md).
//!
//! * `hops.parquet`: one row per packet and hop (needs [`crate::walk::Detail::hop_rows`]);
//! * `pairs.parquet`: the hop table, per ordered pair of points;
//! * `paths.parquet`: per path, one row per hop and one `e2e` row;
//! * `flows.parquet` (`--by flow`), `windows.parquet` (`--window`);
//! * `report.json`: everything else, as `--format json` prints it.
//!
//! Each file is written under a temporary name and renamed, so a reader never sees half a
//! table.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::matching::{Analysis, PairStats};

/// Why the outputs could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutError {
    /// Creating the folder or a file, or renaming, failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Building or writing a table failed.
    #[error("{path}: {source}")]
    Table {
        /// The file.
        path: PathBuf,
        /// The error.
        source: PolarsError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutError + '_ {
    move |source| OutError::Io { path: path.to_owned(), source }
}

/// Columns of a hop-figures table (nanoseconds; JSON and Parquet never round).
fn pair_columns(pairs: &[&PairStats]) -> Vec<Column> {
    let s = |name: &str, f: &dyn Fn(&PairStats) -> String| {
        Column::new(name.into(), pairs.iter().map(|p| f(p)).collect::<Vec<String>>())
    };
    let u = |name: &str, f: &dyn Fn(&PairStats) -> u64| {
        Column::new(name.into(), pairs.iter().map(|p| f(p)).collect::<Vec<u64>>())
    };
    // Latency figures are null where no packet made the hop (count 0).
    let lat = |name: &str, f: &dyn Fn(&PairStats) -> i64| {
        Column::new(name.into(), pairs.iter().map(|p| (p.stats.count > 0).then(|| f(p))).collect::<Vec<Option<i64>>>())
    };
    vec![
        s("from", &|p| p.from.clone()),
        s("to", &|p| p.to.clone()),
        s("segment", &|p| p.segment.clone()),
        u("count", &|p| p.stats.count),
        u("lost", &|p| p.lost),
        lat("min_ns", &|p| p.stats.min_ns),
        lat("mean_ns", &|p| p.stats.mean_ns),
        lat("p50_ns", &|p| p.stats.p50_ns),
        lat("p90_ns", &|p| p.stats.p90_ns),
        lat("p99_ns", &|p| p.stats.p99_ns),
        lat("p999_ns", &|p| p.stats.p999_ns),
        lat("max_ns", &|p| p.stats.max_ns),
        Column::new("bound_ns".into(), pairs.iter().map(|p| p.bound_ns).collect::<Vec<Option<i64>>>()),
    ]
}

fn frame(prefix: Vec<Column>, pairs: &[&PairStats]) -> PolarsResult<DataFrame> {
    let mut cols = prefix;
    cols.extend(pair_columns(pairs));
    DataFrame::new_infer_height(cols)
}

/// One row per packet and hop.
fn hops_frame(a: &Analysis) -> PolarsResult<DataFrame> {
    let r = &a.rows;
    let label = |p: &u32| a.points[*p as usize].label.clone();
    // Every hop's pair is in the pairs table, which knows its segment.
    let segments: std::collections::HashMap<(&str, &str), &str> =
        a.pairs.iter().map(|p| ((p.from.as_str(), p.to.as_str()), p.segment.as_str())).collect();
    let seg = |(f, t): (&u32, &u32)| {
        let key = (a.points[*f as usize].label.as_str(), a.points[*t as usize].label.as_str());
        segments.get(&key).copied().unwrap_or("").to_owned()
    };
    DataFrame::new_infer_height(vec![
        Column::new("pkt_id".into(), r.pkt_id.clone()),
        Column::new("time_ns".into(), r.ts.clone()),
        Column::new("flow".into(), r.flow.iter().map(|f| a.flows[*f as usize].to_string()).collect::<Vec<_>>()),
        Column::new(
            "path".into(),
            r.path.iter().map(|p| p.map(|p| a.paths[p as usize].name.as_str())).collect::<Vec<Option<&str>>>(),
        ),
        Column::new("hop".into(), r.hop.clone()),
        Column::new("from".into(), r.from.iter().map(label).collect::<Vec<_>>()),
        Column::new("to".into(), r.to.iter().map(label).collect::<Vec<_>>()),
        Column::new("segment".into(), r.from.iter().zip(&r.to).map(seg).collect::<Vec<_>>()),
        Column::new("latency_ns".into(), r.latency.clone()),
    ])
}

fn write(dir: &Path, name: &str, df: PolarsResult<DataFrame>) -> Result<PathBuf, OutError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.partial"));
    let table = |source| OutError::Table { path: path.clone(), source };
    let mut df = df.map_err(table)?;
    let file = File::create(&tmp).map_err(io(&tmp))?;
    ParquetWriter::new(&file).finish(&mut df).map_err(table)?;
    file.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, &path).map_err(io(&path))?;
    Ok(path)
}

/// Writes the tables into `dir` (created if needed); `json` is the `--format json` text.
/// Returns the files written.
pub fn write_all(dir: &Path, a: &Analysis, json: &str) -> Result<Vec<PathBuf>, OutError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::new();
    written.push(write(dir, "hops.parquet", hops_frame(a))?);
    let pairs: Vec<&PairStats> = a.pairs.iter().collect();
    written.push(write(dir, "pairs.parquet", frame(vec![], &pairs))?);

    let mut path_rows: Vec<(String, Option<u32>, u64, u64, u64)> = Vec::new();
    let e2e: Vec<PairStats> = a.paths.iter().map(|p| p.end_to_end_pair()).collect();
    let mut path_pairs: Vec<&PairStats> = Vec::new();
    for (p, e) in a.paths.iter().zip(&e2e) {
        for (i, h) in p.hops.iter().enumerate() {
            path_rows.push((p.name.clone(), Some(i as u32), p.packets, p.complete, p.off_path));
            path_pairs.push(h);
        }
        path_rows.push((p.name.clone(), None, p.packets, p.complete, p.off_path));
        path_pairs.push(e);
    }
    let prefix = vec![
        Column::new("path".into(), path_rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()),
        Column::new("hop".into(), path_rows.iter().map(|r| r.1).collect::<Vec<_>>()),
        Column::new("packets".into(), path_rows.iter().map(|r| r.2).collect::<Vec<_>>()),
        Column::new("complete".into(), path_rows.iter().map(|r| r.3).collect::<Vec<_>>()),
        Column::new("off_path".into(), path_rows.iter().map(|r| r.4).collect::<Vec<_>>()),
    ];
    written.push(write(dir, "paths.parquet", frame(prefix, &path_pairs))?);

    if !a.flow_pairs.is_empty() {
        let prefix = vec![Column::new("flow".into(), a.flow_pairs.iter().map(|f| f.flow.clone()).collect::<Vec<_>>())];
        let pairs: Vec<&PairStats> = a.flow_pairs.iter().map(|f| &f.pair).collect();
        written.push(write(dir, "flows.parquet", frame(prefix, &pairs))?);
    }
    if !a.windows.is_empty() {
        let prefix = vec![Column::new("start_ns".into(), a.windows.iter().map(|w| w.start_ns).collect::<Vec<_>>())];
        let pairs: Vec<&PairStats> = a.windows.iter().map(|w| &w.pair).collect();
        written.push(write(dir, "windows.parquet", frame(prefix, &pairs))?);
    }
    let json_path = dir.join("report.json");
    let tmp = dir.join(".report.json.partial");
    fs::write(&tmp, json).map_err(io(&tmp))?;
    fs::rename(&tmp, &json_path).map_err(io(&json_path))?;
    written.push(json_path);
    Ok(written)
}
