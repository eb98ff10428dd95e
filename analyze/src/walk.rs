//! The per-packet passes over the observations, sorted by (`pkt_id`, time).
//!
//! Sorted so, each packet's observations are one run of rows in time order, and one linear
//! pass sees every packet whole. Two passes are made: the first counts the point sequences
//! of each flow's packets (from which [`crate::routes`] chooses routes), the second
//! measures hops, end-to-end latency and loss against those routes.
//!
//! Matching rules: an id seen twice at one point is *ambiguous* (a retransmission of
//! identical bytes, a loop) and left out; an id seen at one point only is *unmatched*
//! there. The observations of every other id, in time order, give one hop per consecutive
//! pair: a path A → B → C gives A→B and B→C, not A→C.

use std::collections::HashMap;

use indicatif::ProgressBar;

use crate::flows::Selection;
use crate::latencies::Latencies;
use crate::routes::{Sequences, Topology};

/// One observation: packet, time in the reference time base, point, flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    /// Packet identity.
    pub pkt_id: u64,
    /// Aligned timestamp, ns.
    pub ts: i64,
    /// Observation point index.
    pub point: u32,
    /// Flow index.
    pub flow: u32,
}

/// Which rows and packets take part, decided per point and per flow in advance.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Per point: kept?
    pub points: Vec<bool>,
    /// Per flow: kept?
    pub flows: Vec<bool>,
    /// First timestamp of the analysis (time filters and windows count from it).
    pub t0: i64,
    /// Time range of packets' first observations, relative to `t0`.
    pub since_ns: Option<i64>,
    /// See `since_ns`.
    pub until_ns: Option<i64>,
}

impl Scope {
    /// The scope of `sel`, with per-point and per-flow decisions, counting time from `t0`.
    pub fn new(t0: i64, sel: &Selection, points: Vec<bool>, flows: Vec<bool>) -> Self {
        Self { points, flows, t0, since_ns: sel.since_ns, until_ns: sel.until_ns }
    }

    /// The first timestamp among `rows` kept by `points` and `flows`.
    pub fn first_ts(rows: &[Row], points: &[bool], flows: &[bool]) -> Option<i64> {
        rows.iter().filter(|r| points[r.point as usize] && flows[r.flow as usize]).map(|r| r.ts).min()
    }
}

/// Calls `f` with each packet's kept observations (never empty), in time order, and
/// advances `progress` by the rows passed.
fn for_each_packet(rows: &[Row], scope: &Scope, progress: &ProgressBar, mut f: impl FnMut(&[Row])) {
    const STEP: usize = 1 << 16;
    let mut buf: Vec<Row> = Vec::with_capacity(16);
    let mut i = 0;
    let mut reported = 0;
    while i < rows.len() {
        if i - reported >= STEP {
            progress.inc((i - reported) as u64);
            reported = i;
        }
        let id = rows[i].pkt_id;
        let mut j = i + 1;
        while j < rows.len() && rows[j].pkt_id == id {
            j += 1;
        }
        buf.clear();
        buf.extend(rows[i..j].iter().filter(|r| scope.points[r.point as usize] && scope.flows[r.flow as usize]));
        if let Some(first) = buf.first() {
            let since = first.ts - scope.t0;
            if scope.since_ns.is_none_or(|s| since >= s) && scope.until_ns.is_none_or(|u| since <= u) {
                f(&buf);
            }
        }
        i = j;
    }
    progress.inc((rows.len() - reported) as u64);
}

/// True if some point occurs twice among `obs`.
fn repeats_a_point(obs: &[Row]) -> bool {
    obs.iter().enumerate().any(|(i, a)| obs[i + 1..].iter().any(|b| b.point == a.point))
}

/// Result of the first pass.
#[derive(Debug, Clone, Default)]
pub struct Census {
    /// Observations in scope.
    pub events: u64,
    /// Distinct packets in scope.
    pub ids: u64,
    /// Packets seen twice at one point.
    pub ambiguous: u64,
    /// Per point: packets seen there and nowhere else.
    pub unmatched: Vec<u64>,
    /// Per flow: its packets' point sequences.
    pub sequences: Vec<Sequences>,
}

/// First pass: counts and each flow's point sequences.
pub fn census(rows: &[Row], scope: &Scope, n_points: usize, n_flows: usize, progress: &ProgressBar) -> Census {
    let mut c = Census { unmatched: vec![0; n_points], ..Default::default() };
    let mut seqs: Vec<HashMap<Vec<u32>, u64>> = vec![HashMap::new(); n_flows];
    let mut key: Vec<u32> = Vec::with_capacity(16);
    for_each_packet(rows, scope, progress, |obs| {
        c.events += obs.len() as u64;
        c.ids += 1;
        if repeats_a_point(obs) {
            c.ambiguous += 1;
            return;
        }
        if obs.len() == 1 {
            c.unmatched[obs[0].point as usize] += 1;
        }
        key.clear();
        key.extend(obs.iter().map(|r| r.point));
        let map = &mut seqs[obs[0].flow as usize];
        match map.get_mut(key.as_slice()) {
            Some(n) => *n += 1,
            None => {
                map.insert(key.clone(), 1);
            }
        }
    });
    c.sequences = seqs
        .into_iter()
        .map(|m| {
            let mut v: Sequences = m.into_iter().collect();
            v.sort();
            v
        })
        .collect();
    c
}

/// What the second pass collects besides the fixed tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Detail {
    /// Per-flow hop latencies (`--by flow`).
    pub by_flow: bool,
    /// Window length for hop latencies over time, ns (`--window`).
    pub window_ns: Option<i64>,
    /// One record per hop (`--out`, the HTML report).
    pub hop_rows: bool,
}

/// One hop of one packet, as `--out` writes it.
#[derive(Debug, Clone, Default)]
pub struct HopRows {
    /// Packet.
    pub pkt_id: Vec<u64>,
    /// Aligned time of the earlier observation, ns.
    pub ts: Vec<i64>,
    /// Flow index.
    pub flow: Vec<u32>,
    /// Earlier point.
    pub from: Vec<u32>,
    /// Later point.
    pub to: Vec<u32>,
    /// Path of the flow, if any.
    pub path: Vec<Option<u32>>,
    /// Index of the hop on the path, when the packet followed the path so far.
    pub hop: Vec<Option<u32>>,
    /// Latency, ns.
    pub latency: Vec<i64>,
}

/// Per packet, whether it followed its flow's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Seen at every station of its path.
    Complete,
    /// Seen at the first stations only: lost after station `n - 1` (the hop index).
    Lost(u32),
    /// Seen elsewhere, or in another order, than its path says.
    OffPath,
}

/// Per path: packets, fates, end-to-end and per-hop latencies.
#[derive(Debug, Clone, Default)]
pub struct PathMeasure {
    /// Packets of the path's flows seen at two points or more, or lost after the first.
    pub packets: u64,
    /// Seen at every station.
    pub complete: u64,
    /// Seen off the path.
    pub off_path: u64,
    /// Complete or lost, but seen in another order than the path's across hosts (see
    /// [`in_path_order`]).
    pub crossed: u64,
    /// Lost per hop.
    pub lost: Vec<u64>,
    /// Latency per hop, of packets that passed it on the path.
    pub hops: Vec<Latencies>,
    /// First to last station of complete packets.
    pub end_to_end: Latencies,
}

impl Census {
    /// Adds the census of another set of packets (another bucket of ids).
    pub fn merge(&mut self, other: Census) {
        self.events += other.events;
        self.ids += other.ids;
        self.ambiguous += other.ambiguous;
        for (a, b) in self.unmatched.iter_mut().zip(other.unmatched) {
            *a += b;
        }
        for (mine, theirs) in self.sequences.iter_mut().zip(other.sequences) {
            let mut all: HashMap<Vec<u32>, u64> = std::mem::take(mine).into_iter().collect();
            for (seq, n) in theirs {
                *all.entry(seq).or_insert(0) += n;
            }
            let mut v: Sequences = all.into_iter().collect();
            v.sort();
            *mine = v;
        }
    }
}

fn merge_map<K: std::hash::Hash + Eq>(mine: &mut HashMap<K, Latencies>, theirs: HashMap<K, Latencies>) {
    for (k, l) in theirs {
        mine.entry(k).or_default().merge(l);
    }
}

/// Result of the second pass.
#[derive(Debug, Clone, Default)]
pub struct Measure {
    /// Per ordered pair of points, every hop's latency.
    pub pairs: HashMap<(u32, u32), Latencies>,
    /// Per (flow, from, to), with [`Detail::by_flow`].
    pub flow_pairs: HashMap<(u32, u32, u32), Latencies>,
    /// Per (from, to, window index), with [`Detail::window_ns`].
    pub windows: HashMap<(u32, u32, i64), Latencies>,
    /// Per path.
    pub paths: Vec<PathMeasure>,
    /// With [`Detail::hop_rows`].
    pub rows: HopRows,
}

impl Measure {
    /// Adds the measures of another set of packets (another bucket of ids).
    pub fn merge(&mut self, other: Measure) {
        merge_map(&mut self.pairs, other.pairs);
        merge_map(&mut self.flow_pairs, other.flow_pairs);
        merge_map(&mut self.windows, other.windows);
        for (mine, theirs) in self.paths.iter_mut().zip(other.paths) {
            mine.packets += theirs.packets;
            mine.complete += theirs.complete;
            mine.off_path += theirs.off_path;
            mine.crossed += theirs.crossed;
            for (a, b) in mine.lost.iter_mut().zip(theirs.lost) {
                *a += b;
            }
            for (a, b) in mine.hops.iter_mut().zip(theirs.hops) {
                a.merge(b);
            }
            mine.end_to_end.merge(theirs.end_to_end);
        }
        let (r, o) = (&mut self.rows, other.rows);
        r.pkt_id.extend(o.pkt_id);
        r.ts.extend(o.ts);
        r.flow.extend(o.flow);
        r.from.extend(o.from);
        r.to.extend(o.to);
        r.path.extend(o.path);
        r.hop.extend(o.hop);
        r.latency.extend(o.latency);
    }
}

/// Where `obs` stands against the path's stations (`points`: each station's point, `None`
/// for a named point never seen).
pub fn fate(obs: &[Row], stations: &[Option<u32>]) -> Fate {
    let n = obs.len();
    if n > stations.len() || obs.iter().zip(stations).any(|(r, s)| *s != Some(r.point)) {
        return Fate::OffPath;
    }
    if n == stations.len() {
        Fate::Complete
    } else {
        Fate::Lost(n as u32 - 1)
    }
}

/// `obs` in the order of the path's first `obs.len()` stations, when it was seen at exactly
/// those and each host's observations are in the path's order, but those of different
/// hosts interleave otherwise (`hosts`: each station's host, as a number).
///
/// Two hosts' points can pass a packet at once: veth hands a packet to its peer inside
/// the sender's transmit call, and the peer's NAPI poll, already running on another CPU,
/// can see it before the sender's `net_dev_xmit` tracepoint fires. Clocks aligned within
/// a bound can likewise order close points of two hosts either way. Such a packet took
/// the path; its hop across the hosts is negative.
pub fn in_path_order(obs: &[Row], stations: &[Option<u32>], hosts: &[u32]) -> Option<Vec<Row>> {
    if obs.len() > stations.len() {
        return None;
    }
    let ordered: Vec<Row> = stations[..obs.len()]
        .iter()
        .map(|s| obs.iter().find(|r| Some(r.point) == *s).copied())
        .collect::<Option<_>>()?;
    // Each host's observations in the path's order must be in time order.
    let in_order = ordered.iter().zip(hosts).enumerate().all(|(i, (r, h))| {
        ordered[..i].iter().zip(hosts).rev().find(|(_, g)| *g == h).is_none_or(|(q, _)| q.ts <= r.ts)
    });
    in_order.then_some(ordered)
}

/// Second pass: hops, loss and end-to-end latency.
pub fn measure(rows: &[Row], scope: &Scope, topo: &Topology, detail: Detail, progress: &ProgressBar) -> Measure {
    let stations: Vec<Vec<Option<u32>>> =
        topo.paths.iter().map(|p| p.stations.iter().map(|s| s.point).collect()).collect();
    let hosts: Vec<Vec<u32>> = topo
        .paths
        .iter()
        .map(|p| {
            let mut names: Vec<&str> = Vec::new();
            p.stations
                .iter()
                .map(|s| match names.iter().position(|n| *n == s.host) {
                    Some(i) => i as u32,
                    None => {
                        names.push(&s.host);
                        names.len() as u32 - 1
                    }
                })
                .collect()
        })
        .collect();
    let mut m = Measure {
        paths: stations
            .iter()
            .map(|s| {
                let hops = s.len().saturating_sub(1);
                PathMeasure { lost: vec![0; hops], hops: vec![Latencies::default(); hops], ..Default::default() }
            })
            .collect(),
        ..Default::default()
    };
    for_each_packet(rows, scope, progress, |obs| {
        if repeats_a_point(obs) {
            return;
        }
        let flow = obs[0].flow;
        let path = topo.flow_path.get(flow as usize).copied().flatten();
        let mut fate = path.map(|p| fate(obs, &stations[p as usize]));
        let reordered = match (path, fate) {
            (Some(p), Some(Fate::OffPath)) => in_path_order(obs, &stations[p as usize], &hosts[p as usize]),
            _ => None,
        };
        let obs = match &reordered {
            Some(r) => {
                let p = path.expect("reordered on a path") as usize;
                m.paths[p].crossed += 1;
                fate = Some(self::fate(r, &stations[p]));
                r.as_slice()
            }
            None => obs,
        };
        if let (Some(p), Some(f)) = (path, fate) {
            let pm = &mut m.paths[p as usize];
            // A packet seen at one point that is not the path's first is not the path's.
            if obs.len() >= 2 || f != Fate::OffPath {
                pm.packets += 1;
            }
            match f {
                Fate::Complete => {
                    pm.complete += 1;
                    pm.end_to_end.push(obs[obs.len() - 1].ts - obs[0].ts);
                }
                Fate::Lost(h) => pm.lost[h as usize] += 1,
                Fate::OffPath if obs.len() >= 2 => pm.off_path += 1,
                Fate::OffPath => {}
            }
        }
        let on_path = matches!(fate, Some(Fate::Complete | Fate::Lost(_)));
        for (i, w) in obs.windows(2).enumerate() {
            let (a, b) = (w[0], w[1]);
            let lat = b.ts - a.ts;
            m.pairs.entry((a.point, b.point)).or_default().push(lat);
            if on_path {
                let p = path.expect("on a path") as usize;
                m.paths[p].hops[i].push(lat);
            }
            if detail.by_flow {
                m.flow_pairs.entry((flow, a.point, b.point)).or_default().push(lat);
            }
            if let Some(w) = detail.window_ns {
                m.windows.entry((a.point, b.point, (a.ts - scope.t0).div_euclid(w))).or_default().push(lat);
            }
            if detail.hop_rows {
                let r = &mut m.rows;
                r.pkt_id.push(a.pkt_id);
                r.ts.push(a.ts);
                r.flow.push(flow);
                r.from.push(a.point);
                r.to.push(b.point);
                r.path.push(path);
                r.hop.push(on_path.then_some(i as u32));
                r.latency.push(lat);
            }
        }
    });
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pkt_id: u64, ts: i64, point: u32) -> Row {
        Row { pkt_id, ts, point, flow: 0 }
    }

    #[test]
    fn fates() {
        let obs = [row(1, 0, 0), row(1, 5, 1)];
        assert_eq!(fate(&obs, &[Some(0), Some(1)]), Fate::Complete);
        assert_eq!(fate(&obs, &[Some(0), Some(1), Some(2)]), Fate::Lost(1));
        assert_eq!(fate(&obs, &[Some(0), Some(1), None]), Fate::Lost(1));
        assert_eq!(fate(&obs, &[Some(1), Some(0)]), Fate::OffPath);
        assert_eq!(fate(&obs, &[Some(0)]), Fate::OffPath);
        assert_eq!(fate(&obs[..1], &[Some(0), Some(1)]), Fate::Lost(0));
    }

    #[test]
    fn packets_interleaved_across_hosts_keep_to_the_path() {
        // Host 0 passes points 0, 1, 2; host 1 sees the packet (point 3) before point 2.
        let obs = [row(1, 0, 0), row(1, 5, 1), row(1, 6, 3), row(1, 7, 2)];
        let stations = [Some(0), Some(1), Some(2), Some(3)];
        let hosts = [0, 0, 0, 1];
        assert_eq!(fate(&obs, &stations), Fate::OffPath);
        let r = in_path_order(&obs, &stations, &hosts).unwrap();
        assert_eq!(r.iter().map(|r| r.point).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(fate(&r, &stations), Fate::Complete);
        // Lost after the third station, with the second host's first point seen early.
        let five = [Some(0), Some(1), Some(2), Some(3), Some(4)];
        let r = in_path_order(&obs, &five, &[0, 0, 0, 1, 1]).unwrap();
        assert_eq!(fate(&r, &five), Fate::Lost(3));
        // One host's own points in another order: another path.
        let swapped = [row(1, 0, 0), row(1, 5, 2), row(1, 6, 1), row(1, 7, 3)];
        assert_eq!(in_path_order(&swapped, &stations, &hosts), None);
        // A point the path does not have.
        let other = [row(1, 0, 0), row(1, 5, 1), row(1, 6, 9)];
        assert_eq!(in_path_order(&other, &stations, &hosts), None);
    }

    #[test]
    fn census_counts_and_time_scope() {
        let rows = vec![
            row(1, 0, 0),
            row(1, 10, 1),
            row(2, 100, 0),
            row(2, 100, 0), // ambiguous
            row(3, 200, 1), // unmatched at 1
        ];
        let all = Scope { points: vec![true; 2], flows: vec![true], t0: 0, since_ns: None, until_ns: None };
        let c = census(&rows, &all, 2, 1, &ProgressBar::hidden());
        assert_eq!((c.events, c.ids, c.ambiguous), (5, 3, 1));
        assert_eq!(c.unmatched, [0, 1]);
        assert_eq!(c.sequences[0], vec![(vec![0, 1], 1), (vec![1], 1)]);
        let late = Scope { since_ns: Some(150), ..all.clone() };
        assert_eq!(census(&rows, &late, 2, 1, &ProgressBar::hidden()).ids, 1);
        let only0 = Scope { points: vec![true, false], ..all };
        let c = census(&rows, &only0, 2, 1, &ProgressBar::hidden());
        assert_eq!((c.ids, c.unmatched[0]), (2, 1));
    }
}
