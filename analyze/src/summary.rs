//! From the walk's raw latencies to the reported tables: labels, segments, loss, bounds
//! and [`Stats`]. Sorting for percentiles happens here, in parallel over groups.

use std::collections::HashMap;

use conf::hosts::HostsConf;
use rayon::prelude::*;

use crate::clocks::Alignment;
use crate::flows::Flow;
use crate::latencies::Latencies;
use crate::matching::{FlowPairStats, PairStats, PathStats, Point, Unmatched, WindowStats};
use crate::routes::{segment, Topology};
use crate::stats::Stats;
use crate::walk::PathMeasure;

/// What labels and bounds are made from.
pub struct Summary<'a> {
    /// Observation points.
    pub points: &'a [Point],
    /// Flows.
    pub flows: &'a [Flow],
    /// Paths.
    pub topo: &'a Topology,
    /// Clock alignment (bounds).
    pub alignment: &'a Alignment,
    /// Topology file (segments).
    pub hosts: Option<&'a HostsConf>,
}

fn stats(v: Latencies) -> Stats {
    v.stats().unwrap_or_default()
}

impl Summary<'_> {
    fn bound(&self, a: &str, b: &str) -> Option<i64> {
        self.alignment.pair_bound(a, b).map(|b| b.round() as i64)
    }

    fn pair(&self, a: u32, b: u32, latencies: Latencies) -> PairStats {
        let (pa, pb) = (&self.points[a as usize], &self.points[b as usize]);
        PairStats {
            from: pa.label.clone(),
            to: pb.label.clone(),
            segment: segment(&pa.host, &pb.host, self.hosts),
            lost: 0,
            stats: stats(latencies),
            bound_ns: self.bound(&pa.host, &pb.host),
        }
    }

    /// Per ordered pair of points, with each path hop's loss added to its pair (a hop into
    /// a named point nobody saw gets a row of its own, with count 0).
    pub fn pairs(&self, pairs: HashMap<(u32, u32), Latencies>, paths: &[PathMeasure]) -> Vec<PairStats> {
        let mut out: Vec<PairStats> = pairs.into_par_iter().map(|((a, b), v)| self.pair(a, b, v)).collect();
        let mut index: HashMap<(String, String), usize> =
            out.iter().enumerate().map(|(i, p)| ((p.from.clone(), p.to.clone()), i)).collect();
        for (info, pm) in self.topo.paths.iter().zip(paths) {
            for (h, &lost) in pm.lost.iter().enumerate().filter(|(_, &n)| n > 0) {
                let (sa, sb) = (&info.stations[h], &info.stations[h + 1]);
                let key = (sa.label.clone(), sb.label.clone());
                let i = *index.entry(key).or_insert_with(|| {
                    out.push(PairStats {
                        from: sa.label.clone(),
                        to: sb.label.clone(),
                        segment: info.segments[h].clone(),
                        lost: 0,
                        stats: Stats::default(),
                        bound_ns: self.bound(&sa.host, &sb.host),
                    });
                    out.len() - 1
                });
                out[i].lost += lost;
            }
        }
        out.sort_by(|a, b| {
            b.stats.count.cmp(&a.stats.count).then_with(|| a.from.cmp(&b.from)).then_with(|| a.to.cmp(&b.to))
        });
        out
    }

    /// Per path, in the topology's order (by name).
    pub fn paths(&self, measures: Vec<PathMeasure>) -> Vec<PathStats> {
        self.topo
            .paths
            .par_iter()
            .zip(measures)
            .map(|(info, pm)| {
                let st = &info.stations;
                let hops = pm
                    .hops
                    .into_iter()
                    .enumerate()
                    .map(|(h, v)| PairStats {
                        from: st[h].label.clone(),
                        to: st[h + 1].label.clone(),
                        segment: info.segments[h].clone(),
                        lost: pm.lost[h],
                        stats: stats(v),
                        bound_ns: self.bound(&st[h].host, &st[h + 1].host),
                    })
                    .collect();
                let (first, last) = (&st[0], &st[st.len() - 1]);
                PathStats {
                    name: info.name.clone(),
                    flows: info.flows.iter().map(|&f| self.flows[f as usize].to_string()).collect(),
                    stations: st.iter().map(|s| s.label.clone()).collect(),
                    packets: pm.packets,
                    complete: pm.complete,
                    lost: pm.lost.iter().sum(),
                    off_path: pm.off_path,
                    crossed: pm.crossed,
                    end_to_end: stats(pm.end_to_end),
                    end_to_end_bound_ns: self.bound(&first.host, &last.host),
                    hops,
                }
            })
            .collect()
    }

    /// Per flow and pair, by flow text, then count descending, then names.
    pub fn flow_pairs(&self, m: HashMap<(u32, u32, u32), Latencies>) -> Vec<FlowPairStats> {
        let mut out: Vec<FlowPairStats> = m
            .into_par_iter()
            .map(|((f, a, b), v)| FlowPairStats { flow: self.flows[f as usize].to_string(), pair: self.pair(a, b, v) })
            .collect();
        out.sort_by(|x, y| {
            (x.flow.as_str(), std::cmp::Reverse(x.pair.stats.count), &x.pair.from, &x.pair.to).cmp(&(
                y.flow.as_str(),
                std::cmp::Reverse(y.pair.stats.count),
                &y.pair.from,
                &y.pair.to,
            ))
        });
        out
    }

    /// Per pair and window of `window_ns`, by pair names, then time.
    pub fn windows(&self, m: HashMap<(u32, u32, i64), Latencies>, window_ns: i64) -> Vec<WindowStats> {
        let mut out: Vec<WindowStats> = m
            .into_par_iter()
            .map(|((a, b, w), v)| WindowStats { start_ns: w * window_ns, pair: self.pair(a, b, v) })
            .collect();
        out.sort_by(|x, y| (&x.pair.from, &x.pair.to, x.start_ns).cmp(&(&y.pair.from, &y.pair.to, y.start_ns)));
        out
    }

    /// Unmatched ids per point, by count descending, then point.
    pub fn unmatched(&self, per_point: &[u64]) -> Vec<Unmatched> {
        let mut out: Vec<Unmatched> = per_point
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(p, &n)| Unmatched { point: self.points[p].label.clone(), ids: n })
            .collect();
        out.sort_by(|a, b| b.ids.cmp(&a.ids).then_with(|| a.point.cmp(&b.point)));
        out
    }
}

/// Words for the hops whose clock bound is larger than their median: their figures say
/// little beyond the bound, and a reader of the table alone would trust them.
pub fn bound_notes(pairs: &[PairStats]) -> Vec<String> {
    pairs
        .iter()
        .filter_map(|p| {
            let b = p.bound_ns?;
            (p.stats.count > 0 && b > 0 && b > p.stats.p50_ns.abs()).then(|| {
                format!(
                    "{} -> {}: the clocks are aligned within ±{:.3} us, more than this hop's median ({:.3} us): \
                     its figures are right only to within that bound",
                    p.from,
                    p.to,
                    b as f64 / 1e3,
                    p.stats.p50_ns as f64 / 1e3
                )
            })
        })
        .collect()
}
