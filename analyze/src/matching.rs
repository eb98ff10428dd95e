//! Matching observations of the same packet: reading the files (polars), the clock
//! alignment of every timestamp, then the per-packet passes ([`crate::walk`]) and the
//! summaries ([`crate::summary`]).
//!
//! 1. The distinct (point, flow) combinations are collected and numbered: observation
//!    points are (`host`, `netns`, `ifname`, `hook`), flows (`family`, `proto`, addresses,
//!    ports). Every event becomes a slim (`pkt_id`, `ts_ns`, combination) row.
//! 2. Timestamps are mapped into the reference time base, and the rows sorted by
//!    (`pkt_id`, time, point): each packet's observations are then one run of rows.
//! 3. The walk matches, measures hops, and follows each flow's path ([`crate::routes`]).
//!
//! Percentiles are nearest-rank ([`crate::stats`]).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use conf::hosts::HostsConf;
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::clocks::Alignment;
use crate::flows::{Flow, Selection};
use crate::input::{ColumnKind, REQUIRED_COLUMNS};
use crate::kernel_events::EXCLUDED_HOOKS;
use crate::routes;
use crate::spill::{SpillError, Store};
use crate::stats::Stats;
use crate::tcpbytes::{self, TcpUnit};
use crate::walk::{self, Detail, HopRows, Row, Scope};

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

/// Latency figures of the hops between one ordered pair of points (or stations).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PairStats {
    /// Label of the earlier point.
    pub from: String,
    /// Label of the later point.
    pub to: String,
    /// `host`, `network`, `host-vm` or `host-container` (see [`crate::routes::segment`]).
    pub segment: String,
    /// Packets that reached `from` on a path whose next station is `to` and were never
    /// seen again.
    pub lost: u64,
    /// Latency figures of the packets that went directly from `from` to `to` (count 0:
    /// none did).
    #[serde(flatten)]
    pub stats: Stats,
    /// Error bound (±) from clock alignment: 0 on one host; `None` when the
    /// two hosts are not in one time base (unaligned).
    pub bound_ns: Option<i64>,
}

/// [`PairStats`] of one flow (`--by flow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowPairStats {
    /// The flow, as text.
    pub flow: String,
    /// Its hop figures.
    #[serde(flatten)]
    pub pair: PairStats,
}

/// [`PairStats`] of one time window (`--window`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowStats {
    /// Window start, ns after the first event of the analysis.
    pub start_ns: i64,
    /// Its hop figures (`lost` is not split by time: 0).
    #[serde(flatten)]
    pub pair: PairStats,
}

/// One path: its stations, how its packets fared, end-to-end and per-hop figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathStats {
    /// Path name.
    pub name: String,
    /// Flows on it, as text.
    pub flows: Vec<String>,
    /// Station labels, in order.
    pub stations: Vec<String>,
    /// Packets of its flows seen at its first station or at two points or more.
    pub packets: u64,
    /// Seen at every station.
    pub complete: u64,
    /// Lost on the way (the sum of the hops' `lost`).
    pub lost: u64,
    /// Seen at points, or in an order, the path does not have.
    pub off_path: u64,
    /// Counted complete or lost though seen in another order across hosts: points of two
    /// hosts passed at once (a negative hop between them), or within the clocks' bound.
    pub crossed: u64,
    /// First to last station, over complete packets.
    pub end_to_end: Stats,
    /// Bound of the end-to-end figures (first and last station's hosts).
    pub end_to_end_bound_ns: Option<i64>,
    /// Each hop, in order, over packets that passed it on the path.
    pub hops: Vec<PairStats>,
}

impl PathStats {
    /// The end-to-end figures as a row of a hop table (segment `end-to-end`).
    pub fn end_to_end_pair(&self) -> PairStats {
        PairStats {
            from: self.stations.first().cloned().unwrap_or_default(),
            to: self.stations.last().cloned().unwrap_or_default(),
            segment: "end-to-end".into(),
            lost: self.lost,
            stats: self.end_to_end,
            bound_ns: self.end_to_end_bound_ns,
        }
    }
}

/// Ids seen at exactly one point, counted per point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unmatched {
    /// Label of the point.
    pub point: String,
    /// Number of distinct `pkt_id`s seen there and nowhere else.
    pub ids: u64,
}

/// What to analyze and what to collect besides the main tables.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Flows, hosts and time range kept.
    pub selection: Selection,
    /// Per-flow and per-window tables, hop records.
    pub detail: Detail,
    /// Topology (conf/hosts.yaml): path names and unseen points, hop segments.
    pub hosts: Option<HostsConf>,
    /// Most events held in memory at once; above it, rows are spilled to disk in buckets
    /// of packets ([`crate::spill`]). 0 means [`BUCKET_ROWS`].
    pub bucket_rows: usize,
    /// Folder for spill files (default: the system's temporary folder).
    pub spill_dir: Option<std::path::PathBuf>,
    /// TCP per packet or per tracked byte ([`crate::tcpbytes`]).
    pub tcp: TcpUnit,
    /// Tracked byte positions: one per `tcp_stride` (a power of two; 0 means
    /// [`crate::tcpbytes::DEFAULT_STRIDE`]).
    pub tcp_stride: u32,
}

/// Default of [`Options::bucket_rows`]: 8 Mi events, 192 MiB of rows.
pub const BUCKET_ROWS: usize = 8 << 20;

/// The result of [`analyze`].
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// Per ordered pair of points, by count descending, then `from`, then `to`.
    pub pairs: Vec<PairStats>,
    /// Per path, by name.
    pub paths: Vec<PathStats>,
    /// Per flow and pair (`--by flow`), by flow, then count descending.
    pub flow_pairs: Vec<FlowPairStats>,
    /// Per pair and time window (`--window`), by pair, then time.
    pub windows: Vec<WindowStats>,
    /// Per point with unmatched ids, by count descending, then point.
    pub unmatched: Vec<Unmatched>,
    /// Number of `pkt_id`s seen more than once at the same point.
    pub ambiguous: u64,
    /// Number of events (rows) in scope.
    pub events: u64,
    /// Number of distinct `pkt_id`s in scope.
    pub ids: u64,
    /// Observation points, indexed as in [`HopRows`].
    pub points: Vec<Point>,
    /// Flows, indexed as in [`HopRows`].
    pub flows: Vec<Flow>,
    /// The topology's remarks.
    pub notes: Vec<String>,
    /// TCP followed per byte: the stride of tracked sequence positions.
    pub tcp_stride: Option<u32>,
    /// Drops and retransmissions the kernel reported (filled by [`crate::analyze`]).
    pub kernel: crate::kernel_events::KernelEvents,
    /// First timestamp in scope (reference time base), ns.
    pub t0_ns: i64,
    /// One record per hop, with [`Detail::hop_rows`].
    pub rows: HopRows,
    /// Buckets the rows were matched in (1: all in memory; see [`crate::spill`]).
    pub buckets: usize,
}
/// Lazily reads the columns the analysis needs from one file.
pub fn scan_file(path: &Path) -> PolarsResult<LazyFrame> {
    scan_columns(path, &REQUIRED_COLUMNS.map(|(name, _)| name))
}

/// Lazily reads `columns` of one file (any netlat table), plus the [`SEQ_COLUMNS`] of
/// TCP byte mode where the file has them.
pub fn scan_columns(path: &Path, columns: &[&str]) -> PolarsResult<LazyFrame> {
    let path = path.to_str().ok_or_else(|| polars_err!(ComputeError: "path is not valid UTF-8: {}", path.display()))?;
    // No globbing: a capture file name is a literal path, even if it contains `*` or `[`.
    let args = ScanArgsParquet { glob: false, ..Default::default() };
    let mut lf = LazyFrame::scan_parquet(PlRefPath::from(path), args)?;
    let schema = lf.collect_schema()?;
    let optional = SEQ_COLUMNS.iter().filter(|c| schema.contains(c) && !columns.contains(c));
    let columns: Vec<Expr> = columns.iter().chain(optional).map(|name| col(*name)).collect();
    Ok(lf.select(columns))
}

/// Rows of `tables`, from the files' footers.
pub fn row_count(tables: &[LazyFrame]) -> PolarsResult<u64> {
    let mut total = 0;
    for t in tables {
        let n = t.clone().select([len().cast(DataType::UInt64).alias("n")]).collect()?;
        total += n.column("n")?.u64()?.get(0).unwrap_or(0);
    }
    Ok(total)
}

/// The columns TCP byte mode reads besides the [`REQUIRED_COLUMNS`].
pub const SEQ_COLUMNS: [&str; 2] = ["tcp_seq", "payload_len"];

/// Lazily reads several files, one table each: each file is projected to the needed
/// columns, so files that differ in other columns still combine.
pub fn scan_files(paths: &[PathBuf]) -> PolarsResult<Vec<LazyFrame>> {
    paths.iter().map(|p| scan_file(p)).collect()
}

const POINT_KEYS: [&str; 4] = ["host", "netns", "ifname", "hook"];
const FLOW_KEYS: [&str; 6] = ["family", "proto", "saddr", "daddr", "sport", "dport"];

/// The distinct (point, flow) combinations of the events, numbered: few rows, so they are
/// collected and split into points and flows in Rust.
struct Combos {
    /// Per combination: point index, flow index.
    point: Vec<u32>,
    flow: Vec<u32>,
    points: Vec<Point>,
    flows: Vec<Flow>,
}

impl Combos {
    /// Each point's map into the reference time base (`None`: it is the reference).
    fn clock_maps<'a>(&self, alignment: &'a Alignment) -> Vec<Option<&'a sync::map::Piecewise>> {
        self.points.iter().map(|p| alignment.map(&p.host)).collect()
    }
}

fn combos(df: &DataFrame) -> PolarsResult<Combos> {
    let s = |n: &str| -> PolarsResult<StringChunked> { Ok(df.column(n)?.str()?.clone()) };
    let (host, ifname, hook, saddr, daddr) = (s("host")?, s("ifname")?, s("hook")?, s("saddr")?, s("daddr")?);
    let netns = df.column("netns")?.u64()?.clone();
    let (family, proto) = (df.column("family")?.u8()?.clone(), df.column("proto")?.u8()?.clone());
    let (sport, dport) = (df.column("sport")?.u16()?.clone(), df.column("dport")?.u16()?.clone());
    let text = |c: &StringChunked, i| c.get(i).unwrap_or_default().to_owned();
    let mut point_keys = Vec::with_capacity(df.height());
    let mut flow_keys = Vec::with_capacity(df.height());
    for i in 0..df.height() {
        point_keys.push((text(&host, i), text(&ifname, i), text(&hook, i), netns.get(i).unwrap_or(0)));
        flow_keys.push(Flow {
            family: family.get(i).unwrap_or(0),
            proto: proto.get(i).unwrap_or(0),
            saddr: text(&saddr, i),
            daddr: text(&daddr, i),
            sport: sport.get(i).unwrap_or(0),
            dport: dport.get(i).unwrap_or(0),
        });
    }
    // Sorted, so that numbering (and thus tie-breaking between equal timestamps) is
    // deterministic: by host, ifname, hook, netns as the labels read.
    let distinct_points: Vec<_> = point_keys.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let flows: Vec<Flow> = flow_keys.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let point = point_keys.iter().map(|k| distinct_points.binary_search(k).expect("present") as u32).collect();
    let flow = flow_keys.iter().map(|k| flows.binary_search(k).expect("present") as u32).collect();
    let points = label_points(
        distinct_points
            .into_iter()
            .map(|(host, ifname, hook, netns)| Point { host, netns, ifname, hook, label: String::new() })
            .collect(),
    );
    Ok(Combos { point, flow, points, flows })
}

/// The columns the analysis reads (with `seq`, the [`SEQ_COLUMNS`] too), rows without
/// time or id left out, and nulls replaced: null keys would not join, so a missing value
/// is the empty one.
fn prepared(events: LazyFrame, seq: bool) -> LazyFrame {
    let seq_columns =
        SEQ_COLUMNS.iter().filter(|_| seq).map(|c| col(*c).fill_null(lit(0)).strict_cast(DataType::UInt32));
    events
        .select(REQUIRED_COLUMNS.iter().map(|(name, _)| col(*name)).chain(seq_columns).collect::<Vec<_>>())
        .filter(col("ts_ns").is_not_null().and(col("pkt_id").is_not_null()).and(
            // Drops and retransmissions are counted apart (crate::kernel_events).
            col("hook").neq(lit(EXCLUDED_HOOKS[0])).and(col("hook").neq(lit(EXCLUDED_HOOKS[1]))),
        ))
        .with_columns(
            POINT_KEYS
                .iter()
                .chain(&FLOW_KEYS)
                .map(|k| match *k {
                    "host" | "ifname" | "hook" | "saddr" | "daddr" => col(*k).fill_null(lit("")),
                    _ => col(*k).fill_null(lit(0)).strict_cast(required_type(k)),
                })
                .collect::<Vec<_>>(),
        )
}

/// Runs the analysis on `tables` (one per file, or any split), each with the
/// [`REQUIRED_COLUMNS`]. Timestamps are first mapped into a common time base by the
/// [`Alignment`] that `align` makes for the observation points found.
///
/// Polars reads and joins (streaming: it decodes in parallel batches without holding the
/// string columns), one table at a time, so that only the slim rows of all tables
/// (24 bytes per event) and one table's columns are in memory at once; the packets are
/// then sorted and walked in Rust ([`crate::walk`]).
pub fn analyze(
    tables: Vec<LazyFrame>,
    opts: &Options,
    align: impl FnOnce(&[Point]) -> Alignment,
) -> PolarsResult<(Analysis, Alignment)> {
    let keys: Vec<Expr> = POINT_KEYS.iter().chain(&FLOW_KEYS).map(|k| col(*k)).collect();
    // Rows are reserved once (the counts come from the footers): growing by doubling would
    // copy them and briefly hold up to three times their size.
    let total = row_count(&tables)? as usize;
    let mut raw = tables;
    let tables: Vec<LazyFrame> = raw.iter().cloned().map(|t| prepared(t, false)).collect();
    let reading = crate::progress::spinner("reading capture files");
    // Distinct combinations file by file, then of those few rows: one query over all files
    // at once held far more than any single file (1.1 GB for 10M events, against 0.2 GB).
    let mut distinct = vec![prepared(DataFrame::empty_with_schema(&empty_schema()).lazy(), false).select(keys.clone())];
    for table in &tables {
        let df = table.clone().select(keys.clone()).unique(None, UniqueKeepStrategy::Any).collect()?;
        distinct.push(df.lazy());
    }
    let combos_df = concat(distinct, UnionArgs::default())?
        .unique(None, UniqueKeepStrategy::Any)
        .with_row_index("combo", None)
        .collect()?;
    let c = combos(&combos_df)?;
    let alignment = align(&c.points);
    // Byte mode reads the sequence columns of the tables that have them; a table
    // without them (not a netlat capture) keeps its TCP rows as packets.
    let stride = tcpbytes::stride(opts.tcp_stride);
    let stride = opts.tcp.bytes(c.points.iter().map(|p| p.hook.as_str())).then_some(stride);
    // Per table: its rows, and the stride when they are followed per byte.
    let tables: Vec<(LazyFrame, Option<u32>)> = raw
        .iter_mut()
        .zip(tables)
        .map(|(r, t)| {
            match stride.filter(|_| r.collect_schema().is_ok_and(|s| SEQ_COLUMNS.iter().all(|c| s.contains(c)))) {
                Some(n) => (prepared(r.clone(), true), Some(n)),
                None => (t, None),
            }
        })
        .collect();
    drop(raw);

    // Byte mode: the flows' trajectories through their sequence space, to tell apart the
    // bytes of a flow that sends more than 4 GiB (one pass over the sequence columns).
    let mut knots = Vec::new();
    for (table, table_stride) in &tables {
        if table_stride.is_some() {
            knots.extend(seq_knots(table.clone(), &combos_df, &keys, &c, &alignment)?);
        }
    }
    let trajectories = tcpbytes::Trajectories::new(c.flows.len(), knots);

    let keep_points: Vec<bool> = c.points.iter().map(|p| opts.selection.host(&p.host)).collect();
    let keep_flows: Vec<bool> = c.flows.iter().map(|f| opts.selection.flow(f)).collect();
    let bucket_rows = if opts.bucket_rows == 0 { BUCKET_ROWS } else { opts.bucket_rows };
    let spill_dir = opts.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
    let mut store = Store::new(total, bucket_rows, &spill_dir)?;
    let (mut t0, mut read): (Option<i64>, usize) = (None, 0);
    for (table, table_stride) in tables {
        reading.set_message(format!("reading capture files ({read} events, {} buckets)", store.buckets()));
        let (first, n) = store.add(
            |rows| {
                let slim = slim(table, &combos_df, &keys, table_stride.is_some())?;
                let events = slim.height();
                append_rows(rows, slim, &c, &alignment, table_stride.map(|s| (s, &trajectories)))?;
                Ok::<_, PolarsError>(events)
            },
            |rows| (Scope::first_ts(rows, &keep_points, &keep_flows), rows.len()),
        )?;
        t0 = match (t0, first) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        read += n;
    }
    reading.set_message(format!("sorting {read} events"));
    store.finish()?;
    reading.finish_and_clear();

    let scope = Scope::new(t0.unwrap_or(0), &opts.selection, keep_points, keep_flows);
    let passes = crate::progress::bar("matching packets", 2 * read as u64, "events");
    let census =
        store.fold(|rows| walk::census(rows, &scope, c.points.len(), c.flows.len(), &passes), walk::Census::merge)?;
    let topo = routes::build(&c.points, &census.sequences, opts.hosts.as_ref());
    let m = store.fold(|rows| walk::measure(rows, &scope, &topo, opts.detail, &passes), walk::Measure::merge)?;
    passes.finish_and_clear();
    let buckets = store.buckets();
    drop(store);
    let t0 = scope.t0;
    let summary = crate::summary::Summary {
        points: &c.points,
        flows: &c.flows,
        topo: &topo,
        alignment: &alignment,
        hosts: opts.hosts.as_ref(),
    };
    let pairs = summary.pairs(m.pairs, &m.paths);
    let bound_notes = crate::summary::bound_notes(&pairs);
    let analysis = Analysis {
        pairs,
        paths: summary.paths(m.paths),
        flow_pairs: summary.flow_pairs(m.flow_pairs),
        windows: summary.windows(m.windows, opts.detail.window_ns.unwrap_or(1)),
        unmatched: summary.unmatched(&census.unmatched),
        ambiguous: census.ambiguous,
        events: census.events,
        ids: census.ids,
        notes: topo
            .notes
            .iter()
            .cloned()
            .chain(bound_notes)
            .chain(stride.map(|n| {
                format!(
                    "TCP is followed per byte: the sequence positions divisible by {n}; TCP counts are \
                     tracked bytes, not packets (--tcp packets for packets)"
                )
            }))
            .collect(),
        tcp_stride: stride,
        kernel: Default::default(),
        t0_ns: t0,
        rows: m.rows,
        buckets,
        points: c.points,
        flows: c.flows,
    };
    Ok((analysis, alignment))
}

impl From<SpillError> for PolarsError {
    fn from(e: SpillError) -> Self {
        polars_err!(ComputeError: "{e}")
    }
}

/// Type of a required column, for casts after `fill_null`.
fn required_type(name: &str) -> DataType {
    match REQUIRED_COLUMNS.iter().find(|(n, _)| *n == name).map(|c| c.1) {
        Some(ColumnKind::UInt8) => DataType::UInt8,
        Some(ColumnKind::UInt16) => DataType::UInt16,
        Some(ColumnKind::Int64) => DataType::Int64,
        _ => DataType::UInt64,
    }
}

/// One table's knots for [`tcpbytes::Trajectories`]: (flow, time in the reference time
/// base, sequence number) of the TCP events with payload whose `pkt_id` is a multiple of
/// [`tcpbytes::KNOT_SAMPLE`] (ids are hashes: a consistent, cheap sample; see there).
fn seq_knots(
    table: LazyFrame,
    combos_df: &DataFrame,
    keys: &[Expr],
    c: &Combos,
    alignment: &Alignment,
) -> PolarsResult<Vec<(u32, i64, u32)>> {
    let sampled = (col("pkt_id") % lit(tcpbytes::KNOT_SAMPLE)).eq(lit(0u64));
    let df = table
        .filter(sampled.and(col("proto").eq(lit(6u8))).and(col("payload_len").gt(lit(0u32))))
        .join(combos_df.clone().lazy(), keys.to_vec(), keys.to_vec(), JoinArgs::new(JoinType::Inner))
        .select([col("combo"), col("ts_ns"), col("tcp_seq")])
        .collect()?;
    let (combo, ts, seq) = (df.column("combo")?.idx()?, df.column("ts_ns")?.i64()?, df.column("tcp_seq")?.u32()?);
    let maps = c.clock_maps(alignment);
    Ok(combo
        .into_no_null_iter()
        .zip(ts.into_no_null_iter())
        .zip(seq.into_no_null_iter())
        .map(|((k, t), s)| {
            let k = k as usize;
            let t = maps[c.point[k] as usize].map_or(t, |m| m.to_reference(t));
            (c.flow[k], t, s)
        })
        .collect())
}

/// One table's (`pkt_id`, `ts_ns`, combination) rows, with `seq` also (`tcp_seq`,
/// `payload_len`).
fn slim(table: LazyFrame, combos_df: &DataFrame, keys: &[Expr], seq: bool) -> PolarsResult<DataFrame> {
    let mut columns = vec![col("pkt_id"), col("ts_ns"), col("combo")];
    if seq {
        columns.extend(SEQ_COLUMNS.map(col));
    }
    Ok(table
        .join(combos_df.clone().lazy(), keys.to_vec(), keys.to_vec(), JoinArgs::new(JoinType::Inner))
        .select(columns)
        .collect_with_engine(Engine::Streaming)?
        .unwrap_single())
}

/// An empty table with the required columns (no input files).
fn empty_schema() -> Schema {
    REQUIRED_COLUMNS
        .iter()
        .map(|(name, kind)| {
            let dtype = if *kind == ColumnKind::Text { DataType::String } else { required_type(name) };
            Field::new((*name).into(), dtype)
        })
        .collect()
}

/// Appends the slim table to `rows` as [`Row`]s in the reference time base. The clock maps
/// are piecewise linear with a binary search per row, which polars expressions cannot
/// express without one branch per knot, hence Rust (in parallel).
///
/// With `stride` (TCP byte mode), a TCP event with payload becomes one row per tracked
/// position of its sequence range ([`tcpbytes::positions`]), unwrapped to 64 bits by the
/// flows' trajectories.
fn append_rows(
    rows: &mut Vec<Row>,
    mut slim: DataFrame,
    c: &Combos,
    alignment: &Alignment,
    stride: Option<(u32, &tcpbytes::Trajectories)>,
) -> PolarsResult<()> {
    slim.rechunk_mut();
    let id = slim.column("pkt_id")?.u64()?;
    let ts = slim.column("ts_ns")?.i64()?;
    let combo = slim.column("combo")?.idx()?;
    let start = rows.len();
    let events = id.into_no_null_iter().zip(ts.into_no_null_iter()).zip(combo.into_no_null_iter());
    let row = |pkt_id, ts, k: usize| Row { pkt_id, ts, point: c.point[k], flow: c.flow[k] };
    let maps = c.clock_maps(alignment);
    match stride {
        None => rows.extend(events.map(|((pkt_id, ts), k)| row(pkt_id, ts, k as usize))),
        Some((stride, trajectories)) => {
            let seq = slim.column("tcp_seq")?.u32()?;
            let len = slim.column("payload_len")?.u32()?;
            for ((((pkt_id, ts), k), seq), len) in events.zip(seq.into_no_null_iter()).zip(len.into_no_null_iter()) {
                let k = k as usize;
                let flow = c.flow[k];
                if c.flows[flow as usize].proto == 6 && len > 0 {
                    let t = maps[c.point[k] as usize].map_or(ts, |m| m.to_reference(ts));
                    let first = trajectories.unwrap(flow, t, seq);
                    rows.extend(tcpbytes::positions(seq, len, stride).map(|p| {
                        let pos = first + u64::from(p.wrapping_sub(seq));
                        row(tcpbytes::position_id(flow, pos), ts, k)
                    }));
                } else {
                    rows.push(row(pkt_id, ts, k));
                }
            }
        }
    }
    if maps.iter().any(Option::is_some) {
        rows[start..].par_iter_mut().for_each(|r| {
            if let Some(m) = maps[r.point as usize] {
                r.ts = m.to_reference(r.ts);
            }
        });
    }
    Ok(())
}

/// Gives each point its label `host:ifname:hook`.
///
/// The label leaves out the namespace because `ifname` already names it for interfaces
/// outside the capture's own namespace. Should two points still share a label (e.g.
/// captures that named a namespaced interface without the prefix), each of them gets
/// `[netns INODE]` appended, so that rows never silently merge in the output.
pub fn label_points(mut points: Vec<Point>) -> Vec<Point> {
    for p in &mut points {
        p.label = format!("{}:{}:{}", p.host, p.ifname, p.hook);
    }
    let mut uses: HashMap<String, usize> = HashMap::new();
    for p in &points {
        *uses.entry(p.label.clone()).or_default() += 1;
    }
    for p in &mut points {
        if uses[&p.label] > 1 {
            p.label = format!("{}[netns {}]", p.label, p.netns);
        }
    }
    points
}

#[cfg(test)]
mod tests;
