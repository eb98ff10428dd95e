//! Matching observations of the same packet and computing one-way latency, as polars
//! lazy queries (no per-row Rust loops, so it scales to tens of millions of events).
//!
//! The steps:
//!
//! 1. Observation points, i.e. distinct (`host`, `netns`, `ifname`, `hook`), are numbered;
//!    every event becomes a slim (`pkt_id`, `ts_ns`, `point`) row.
//! 2. Per `pkt_id`: number of rows and of distinct points. More rows than points means the
//!    id was seen twice at one point: *ambiguous*, left out of latency figures. A single
//!    row is *unmatched* (seen at one point only).
//! 3. The remaining ids' rows are sorted by (`pkt_id`, `ts_ns`); each row and the next one
//!    of the same id form a hop `a → b` with latency `ts_b − ts_a`. Only consecutive
//!    observations form pairs: a path A → B → C gives A→B and B→C, not A→C.
//! 4. Hops are aggregated per ordered pair of points.
//!
//! Percentiles use the **nearest-rank** method: the p-th percentile of n sorted values is
//! the value at 1-based rank ⌈p·n/100⌉, so it is always a latency that was observed.
//! The rank is computed in integers, because in floating point ⌈0.9·70⌉ is 64, not 63.
//!
//! All captures are assumed to share one clock (`ts_ns` is CLOCK_MONOTONIC of each
//! capturing host); across hosts that is only true once clocks are aligned.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

use crate::clocks::Alignment;
use crate::input::REQUIRED_COLUMNS;

/// An observation point: where a packet was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Capturing host.
    pub host: String,
    /// Inode of the network namespace.
    pub netns: u64,
    /// Interface name (`NETNS/ifname` for another namespace).
    pub ifname: String,
    /// Hook name (`xdp`, `tc_ingress`, `tc_egress`).
    pub hook: String,
    /// Display name, `host:ifname:hook`, made unique (see [`label_points`]).
    pub label: String,
}

/// Latency figures for one ordered pair of points, in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairStats {
    /// Label of the earlier point.
    pub from: String,
    /// Label of the later point.
    pub to: String,
    /// Number of packets that went directly from `from` to `to`.
    pub count: u64,
    /// Smallest latency.
    pub min_ns: i64,
    /// Median (nearest rank).
    pub p50_ns: i64,
    /// 90th percentile (nearest rank).
    pub p90_ns: i64,
    /// 99th percentile (nearest rank).
    pub p99_ns: i64,
    /// Largest latency.
    pub max_ns: i64,
    /// Error bound (±) from clock alignment: 0 on one host; `None` when the
    /// two hosts are not in one time base (unaligned).
    pub bound_ns: Option<i64>,
}

/// Ids seen at exactly one point, counted per point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// Label of the point.
    pub point: String,
    /// Number of distinct `pkt_id`s seen there and nowhere else.
    pub ids: u64,
}

/// The result of [`analyze`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Analysis {
    /// Per ordered pair of points, by count descending, then `from`, then `to`.
    pub pairs: Vec<PairStats>,
    /// Per point with unmatched ids, by count descending, then point.
    pub unmatched: Vec<Unmatched>,
    /// Number of `pkt_id`s seen more than once at the same point.
    pub ambiguous: u64,
    /// Number of events (rows) read.
    pub events: u64,
    /// Number of distinct `pkt_id`s.
    pub ids: u64,
}

/// Lazily reads the columns the analysis needs from one file.
pub fn scan_file(path: &Path) -> PolarsResult<LazyFrame> {
    scan_columns(path, &REQUIRED_COLUMNS.map(|(name, _)| name))
}

/// Lazily reads `columns` of one file (any netlat table).
pub fn scan_columns(path: &Path, columns: &[&str]) -> PolarsResult<LazyFrame> {
    let path = path.to_str().ok_or_else(|| polars_err!(ComputeError: "path is not valid UTF-8: {}", path.display()))?;
    // No globbing: a capture file name is a literal path, even if it contains `*` or `[`.
    let args = ScanArgsParquet { glob: false, ..Default::default() };
    let columns: Vec<Expr> = columns.iter().map(|name| col(*name)).collect();
    Ok(LazyFrame::scan_parquet(PlRefPath::from(path), args)?.select(columns))
}

/// Lazily reads several files as one table.
///
/// One scan per file, then a union, rather than a multi-file scan: each file is projected
/// to the needed columns first, so files that differ in other columns still combine.
pub fn scan_files(paths: &[PathBuf]) -> PolarsResult<LazyFrame> {
    let frames = paths.iter().map(|p| scan_file(p)).collect::<PolarsResult<Vec<_>>>()?;
    concat(frames, UnionArgs::default())
}

const POINT_KEYS: [&str; 4] = ["host", "netns", "ifname", "hook"];

/// Runs the matching and aggregation on `events`, a table with at least the columns
/// `ts_ns` (Int64), `pkt_id` (UInt64), `host`, `netns` (UInt64), `ifname`, `hook` (String).
/// Timestamps are first mapped into a common time base by the [`Alignment`] that `align`
/// makes for the observation points found.
pub fn analyze(events: LazyFrame, align: impl FnOnce(&[Point]) -> Alignment) -> PolarsResult<(Analysis, Alignment)> {
    let events = events
        .select(REQUIRED_COLUMNS.iter().map(|(name, _)| col(*name)).collect::<Vec<_>>())
        .filter(col("ts_ns").is_not_null().and(col("pkt_id").is_not_null()));
    let keys = || POINT_KEYS.map(col);

    // Step 1. Points are few, so they are collected; the sort makes numbering (and thus
    // tie-breaking between equal timestamps) deterministic. The two queries that read the
    // files run on the streaming engine: it decodes and joins in parallel batches without
    // holding the string columns in memory (10M events: ~1.4 s, against ~6 s in memory).
    // The later queries stay in memory, where they measured faster.
    let points_df = events
        .clone()
        .select(keys())
        .unique(None, UniqueKeepStrategy::Any)
        .sort(["host", "ifname", "hook", "netns"], SortMultipleOptions::default())
        .with_row_index("point", None)
        .with_column(col("point").cast(DataType::UInt32))
        .collect_with_engine(Engine::Streaming)?
        .unwrap_single();
    let points = label_points(&points_df)?;
    let alignment = align(&points);

    // Materialized once, sorted: three numeric columns reused by the queries below instead
    // of re-reading strings from the files for each. Sorting by `pkt_id` first puts each
    // packet's observations next to each other in time order (step 3) and lets the
    // group-by on `pkt_id` (step 2) use polars' fast path for sorted keys. `point` breaks
    // ties of equal timestamps, so that the direction of such a pair is deterministic.
    let slim = events
        .join(points_df.lazy(), keys(), keys(), JoinArgs::new(JoinType::Inner))
        .select([col("pkt_id"), col("ts_ns"), col("point")])
        .collect_with_engine(Engine::Streaming)?
        .unwrap_single();
    let slim = align_times(slim, &points, &alignment)?;
    let slim = slim.lazy().sort(["pkt_id", "ts_ns", "point"], SortMultipleOptions::default()).collect()?;

    // Step 2.
    let ids = slim
        .clone()
        .lazy()
        .group_by([col("pkt_id")])
        .agg([len().alias("rows"), col("point").n_unique().alias("points"), col("point").first().alias("point")])
        .collect()?;
    let totals = ids
        .clone()
        .lazy()
        .select([
            col("rows").gt(col("points")).sum().cast(DataType::UInt64).alias("ambiguous"),
            len().cast(DataType::UInt64).alias("ids"),
        ])
        .collect()?;
    let unmatched_df = ids
        .clone()
        .lazy()
        .filter(col("rows").eq(lit(1)))
        .group_by([col("point")])
        .agg([len().cast(DataType::UInt64).alias("ids")])
        .collect()?;
    // Usually few: joined to the hops (far fewer rows than `ids`) to drop theirs.
    let ambiguous_ids =
        ids.lazy().filter(col("rows").gt(col("points"))).select([col("pkt_id"), lit(true).alias("ambiguous")]);

    // Steps 3 and 4.
    let events_read = slim.height() as u64;
    let stats = slim
        .lazy()
        .select([
            col("pkt_id"),
            col("point").alias("from"),
            col("point").shift(lit(-1)).alias("to"),
            (col("ts_ns").shift(lit(-1)) - col("ts_ns")).alias("latency_ns"),
            col("pkt_id").shift(lit(-1)).eq(col("pkt_id")).alias("same_id"),
        ])
        .filter(col("same_id"))
        .join(ambiguous_ids, [col("pkt_id")], [col("pkt_id")], JoinArgs::new(JoinType::Left))
        .filter(col("ambiguous").is_null())
        // Rows keep their relative order within a group, so after a sort by latency alone
        // (one key: cheaper than sorting by from, to, latency) every group's latencies
        // arrive sorted and the percentiles below are plain lookups by rank.
        .sort(["latency_ns"], SortMultipleOptions::default())
        .group_by([col("from"), col("to")])
        .agg([
            len().cast(DataType::UInt64).alias("count"),
            col("latency_ns").min().alias("min_ns"),
            nearest_rank("latency_ns", 50).alias("p50_ns"),
            nearest_rank("latency_ns", 90).alias("p90_ns"),
            nearest_rank("latency_ns", 99).alias("p99_ns"),
            col("latency_ns").max().alias("max_ns"),
        ])
        .collect()?;

    let mut pairs = pairs_from(&stats, &points)?;
    for p in &mut pairs {
        let host = |label: &str| points.iter().find(|q| q.label == label).map(|q| q.host.clone()).unwrap_or_default();
        p.bound_ns = alignment.pair_bound(&host(&p.from), &host(&p.to)).map(|b| b.round() as i64);
    }
    let mut analysis = Analysis {
        pairs,
        unmatched: unmatched_from(&unmatched_df, &points)?,
        ambiguous: totals.column("ambiguous")?.u64()?.get(0).unwrap_or(0),
        events: events_read,
        ids: totals.column("ids")?.u64()?.get(0).unwrap_or(0),
    };
    analysis
        .pairs
        .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.from.cmp(&b.from)).then_with(|| a.to.cmp(&b.to)));
    analysis.unmatched.sort_by(|a, b| b.ids.cmp(&a.ids).then_with(|| a.point.cmp(&b.point)));
    Ok((analysis, alignment))
}

/// Maps every `ts_ns` of `slim` into the reference time base, per point's host. A per-row
/// pass in Rust: the maps are piecewise linear with a binary search per row, which polars
/// expressions cannot express without one branch per knot.
fn align_times(slim: DataFrame, points: &[Point], alignment: &Alignment) -> PolarsResult<DataFrame> {
    let maps: Vec<Option<&sync::map::Piecewise>> = points.iter().map(|p| alignment.map(&p.host)).collect();
    if maps.iter().all(Option::is_none) {
        return Ok(slim);
    }
    let ts = slim.column("ts_ns")?.i64()?;
    let point = slim.column("point")?.u32()?;
    let aligned: Int64Chunked = ts
        .iter()
        .zip(point.iter())
        .map(|(t, p)| {
            let (t, p) = (t?, p?);
            Some(maps.get(p as usize).copied().flatten().map_or(t, |m| m.to_reference(t)))
        })
        .collect();
    let mut slim = slim;
    slim.with_column(aligned.with_name("ts_ns".into()).into_column())?;
    Ok(slim)
}

/// The `pct`-th percentile of `column` within a group whose values are sorted ascending:
/// the value at 1-based rank ⌈pct·n/100⌉, computed in integers.
fn nearest_rank(column: &str, pct: u64) -> Expr {
    let n = len().cast(DataType::UInt64);
    // `/` on unsigned integers truncates, i.e. floors (`floor_div` would need another polars
    // feature). n ≥ 1 in every group and pct ≥ 1, so the rank is ≥ 1: no underflow.
    let index = (n * lit(pct) + lit(99u64)) / lit(100u64) - lit(1u64);
    col(column).get(index, false)
}

/// Builds [`Point`]s, indexed by the `point` column of `points_df`.
///
/// The label `host:ifname:hook` leaves out the namespace because `ifname` already names
/// it for interfaces outside the capture's own namespace. Should two points still share a
/// label (e.g. captures that named a namespaced interface without the prefix), each of them
/// gets `[netns INODE]` appended, so that rows never silently merge in the output.
pub fn label_points(points_df: &DataFrame) -> PolarsResult<Vec<Point>> {
    let index = points_df.column("point")?.u32()?;
    let host = points_df.column("host")?.str()?;
    let netns = points_df.column("netns")?.u64()?;
    let ifname = points_df.column("ifname")?.str()?;
    let hook = points_df.column("hook")?.str()?;
    let mut points = vec![None; points_df.height()];
    for i in 0..points_df.height() {
        let (host, ifname, hook) = (
            host.get(i).unwrap_or_default().to_owned(),
            ifname.get(i).unwrap_or_default().to_owned(),
            hook.get(i).unwrap_or_default().to_owned(),
        );
        let label = format!("{host}:{ifname}:{hook}");
        let slot = index.get(i).expect("row index is never null") as usize;
        points[slot] = Some(Point { host, netns: netns.get(i).unwrap_or(0), ifname, hook, label });
    }
    let mut points: Vec<Point> = points.into_iter().map(|p| p.expect("row index is dense")).collect();
    let mut uses: HashMap<String, usize> = HashMap::new();
    for p in &points {
        *uses.entry(p.label.clone()).or_default() += 1;
    }
    for p in &mut points {
        if uses[&p.label] > 1 {
            p.label = format!("{}[netns {}]", p.label, p.netns);
        }
    }
    Ok(points)
}

fn label(points: &[Point], index: Option<u32>) -> PolarsResult<String> {
    index
        .and_then(|i| points.get(i as usize))
        .map(|p| p.label.clone())
        .ok_or_else(|| polars_err!(ComputeError: "point index {index:?} out of range"))
}

fn pairs_from(stats: &DataFrame, points: &[Point]) -> PolarsResult<Vec<PairStats>> {
    let from = stats.column("from")?.u32()?;
    let to = stats.column("to")?.u32()?;
    let count = stats.column("count")?.u64()?;
    let int = |name: &str| -> PolarsResult<Int64Chunked> { Ok(stats.column(name)?.i64()?.clone()) };
    let (min, p50, p90, p99, max) = (int("min_ns")?, int("p50_ns")?, int("p90_ns")?, int("p99_ns")?, int("max_ns")?);
    (0..stats.height())
        .map(|i| {
            Ok(PairStats {
                from: label(points, from.get(i))?,
                to: label(points, to.get(i))?,
                count: count.get(i).unwrap_or(0),
                min_ns: min.get(i).unwrap_or(0),
                p50_ns: p50.get(i).unwrap_or(0),
                p90_ns: p90.get(i).unwrap_or(0),
                p99_ns: p99.get(i).unwrap_or(0),
                max_ns: max.get(i).unwrap_or(0),
                bound_ns: Some(0),
            })
        })
        .collect()
}

fn unmatched_from(df: &DataFrame, points: &[Point]) -> PolarsResult<Vec<Unmatched>> {
    let point = df.column("point")?.u32()?;
    let ids = df.column("ids")?.u64()?;
    (0..df.height())
        .map(|i| Ok(Unmatched { point: label(points, point.get(i))?, ids: ids.get(i).unwrap_or(0) }))
        .collect()
}

#[cfg(test)]
mod tests;
