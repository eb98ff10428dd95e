//! One time base for all hosts: the pair fits combined into a map per host
//! against a reference host.
//!
//! A spanning tree from the reference (each host reached over its
//! narrowest-band pair) gives first maps. Then, at every knot time of every
//! pair (in reference time), the host offsets are solved by weighted least
//! squares over all pairs, `o_b − o_a ≈ θ_ab`: with three or more hosts
//! this makes the offsets consistent around loops (Huygens' network effect)
//! and the residuals show how well the loops close. With two hosts it is
//! the pair fit itself. Bounds add up along the tree path: a fixed
//! asymmetry on each hop is invisible and is reported, not removed.

use std::collections::{BTreeSet, VecDeque};

use serde::Serialize;

use crate::{
    map::{Knot, Piecewise},
    pair::{fit_edge, Config, EdgeFit},
    samples::{one_way, silent_peers, MessageCounts, OneWay, Stamp},
    traffic::{self, Observation, TrafficCounts},
};

/// One host's clock against the reference.
#[derive(Clone, Debug, Serialize)]
pub struct HostClock {
    /// Host name.
    pub host: String,
    /// True for the reference host.
    pub reference: bool,
    /// `t_host − t_reference` over the host's clock; `None`: not aligned.
    pub map: Option<Piecewise>,
    /// Offset at the host's first probe timestamp, ns.
    pub offset_ns: f64,
    /// Mean drift against the reference, ppm.
    pub drift_ppm: f64,
    /// Largest error bound (±), ns.
    pub bound_ns: f64,
    /// Samples in fits of pairs this host is part of.
    pub samples_used: usize,
    /// Pure samples of those pairs.
    pub samples: usize,
    /// Hosts on the tree path to the reference.
    pub via: Vec<String>,
    /// Why the host could not be aligned.
    pub problem: Option<String>,
}

/// Summary of one pair.
#[derive(Clone, Debug, Serialize)]
pub struct EdgeSummary {
    /// Host `a`.
    pub a: String,
    /// Host `b` (the map gives `t_b − t_a`).
    pub b: String,
    /// The fit.
    pub fit: EdgeFit,
    /// Largest |residual| of this pair in the least-squares solution, ns
    /// (0 with two hosts; loop inconsistency with more).
    pub loop_residual_ns: f64,
}

/// The result of [`estimate`].
#[derive(Clone, Debug, Serialize)]
pub struct SyncResult {
    /// Reference host, if any host has sync data.
    pub reference: Option<String>,
    /// Every host named in the input, reference first.
    pub hosts: Vec<HostClock>,
    /// Every pair with a fit.
    pub edges: Vec<EdgeSummary>,
    /// Message accounting.
    pub messages: MessageCounts,
    /// What the data packets gave ([`crate::traffic`]).
    pub traffic: TrafficCounts,
    /// `(host, destination, probes)`: probes nobody captured arriving.
    pub silent: Vec<(String, String, u64)>,
    /// Pairs whose traffic samples contradicted their probes, and were left out.
    pub contradicted: Vec<(String, String)>,
    /// Evaluation times where loops did not close (the pairs disagree by
    /// far more than their bands, as around a clock step they place at
    /// different probes); the tree's offsets are used there.
    pub inconsistent_times: usize,
}

impl SyncResult {
    /// The map of `host`, if aligned.
    pub fn map(&self, host: &str) -> Option<&Piecewise> {
        self.hosts.iter().find(|h| h.host == host).and_then(|h| h.map.as_ref())
    }

    /// Bound of `t_b − t_a` from the pair's own fit, when `a` and `b` exchanged samples:
    /// its bound plus how far the solution moved the pair from it (the loop residual).
    /// Often far tighter than the two hosts' bounds against the reference added up.
    pub fn pair_bound(&self, a: &str, b: &str) -> Option<f64> {
        if self.inconsistent_times > 0 {
            // The tree's offsets were used at some times: the residuals do not cover them.
            return None;
        }
        let e = self.edges.iter().find(|e| (e.a == a && e.b == b) || (e.a == b && e.b == a))?;
        Some(e.fit.map.max_bound() + e.loop_residual_ns)
    }
}

/// Solves `A x = y` for a small dense symmetric system (Gaussian
/// elimination with partial pivoting).
fn solve(mut a: Vec<Vec<f64>>, mut y: Vec<f64>) -> Option<Vec<f64>> {
    let n = y.len();
    for c in 0..n {
        let p = (c..n).max_by(|i, j| a[*i][c].abs().total_cmp(&a[*j][c].abs()))?;
        if a[p][c].abs() < 1e-300 {
            return None;
        }
        a.swap(c, p);
        y.swap(c, p);
        let (top, rest) = a.split_at_mut(c + 1);
        let pivot = &top[c];
        for (i, row) in rest.iter_mut().enumerate() {
            let f = row[c] / pivot[c];
            for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            y[c + 1 + i] -= f * y[c];
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (y[r] - s) / a[r][r];
    }
    Some(x)
}

struct Tree<'a> {
    /// Per host: (edge index, parent) or None for the root / unreached.
    parent: Vec<Option<(usize, usize)>>,
    edges: &'a [EdgeFit],
}

impl Tree<'_> {
    /// `t_h − t_ref` at host time `t` along the tree.
    fn offset(&self, h: usize, t: i64) -> (f64, f64) {
        let Some((e, p)) = self.parent[h] else { return (0.0, 0.0) };
        let edge = &self.edges[e];
        let (theta, bound) = if edge.b == h {
            edge.map.eval(t)
        } else {
            // The map is over the parent's clock: t_p = t_h + θ(t_p).
            let mut tp = t;
            let mut tb = (0.0, 0.0);
            for _ in 0..4 {
                tb = edge.map.eval(tp);
                tp = t + tb.0.round() as i64;
            }
            (-tb.0, tb.1)
        };
        let (op, bp) = self.offset(p, t - theta.round() as i64);
        (theta + op, bound + bp)
    }

    /// Host time of host `h` at reference time `tau`.
    fn host_time(&self, h: usize, tau: i64) -> i64 {
        let mut t = tau;
        for _ in 0..4 {
            t = tau + self.offset(h, t).0.round() as i64;
        }
        t
    }

    fn path(&self, mut h: usize) -> Vec<usize> {
        let mut out = Vec::new();
        while let Some((_, p)) = self.parent[h] {
            out.push(p);
            h = p;
        }
        out
    }
}

/// Estimates every host's clock against `reference` (default: the first
/// host, by name, that has sync data), from the probes' `stamps` and the data packets'
/// `observations` (host indices into `hosts` in both).
pub fn estimate(
    hosts: &[String],
    stamps: &[Stamp],
    observations: &mut [Observation],
    cfg: &Config,
    reference: Option<&str>,
) -> SyncResult {
    let (mut msgs, messages) = one_way(stamps, cfg.purity_ns);
    let (data, traffic) = traffic::one_way(observations);
    msgs.extend(data);
    let silent =
        silent_peers(stamps, hosts.len()).into_iter().map(|(h, d, n)| (hosts[h].clone(), d, n)).collect::<Vec<_>>();
    let mut pairs: BTreeSet<(usize, usize)> = BTreeSet::new();
    for w in &msgs {
        pairs.insert((w.from.min(w.to), w.from.max(w.to)));
    }
    let mut contradicted: Vec<(usize, usize)> = Vec::new();
    let edges: Vec<EdgeFit> = pairs
        .iter()
        .filter_map(|&(a, b)| {
            let fit = fit_edge(a, b, &msgs, cfg)?;
            if fit.windows.iter().all(|w| w.consistent) {
                return Some(fit);
            }
            // Traffic samples that contradict probes the pair fits without them: a host
            // that saw packets only leave though it forwarded them (its other interface
            // not captured) was taken as their origin. The probes alone are trusted.
            let probes: Vec<OneWay> = msgs.iter().filter(|w| w.kind < traffic::KIND).copied().collect();
            match fit_edge(a, b, &probes, cfg) {
                Some(p) if !p.windows.is_empty() && p.windows.iter().all(|w| w.consistent) => {
                    contradicted.push((a, b));
                    Some(p)
                }
                _ => Some(fit),
            }
        })
        .collect();
    let with_data: BTreeSet<usize> = edges.iter().flat_map(|e| [e.a, e.b]).collect();
    let mut order: Vec<usize> = (0..hosts.len()).collect();
    order.sort_by(|a, b| hosts[*a].cmp(&hosts[*b]));
    let root = match reference {
        Some(r) => hosts.iter().position(|h| h == r),
        None => order.iter().copied().find(|h| with_data.contains(h)),
    };

    // Spanning tree, narrowest bands first (Dijkstra on summed bounds). A pair's clock step
    // counts at its size: its time is known only to between the probes around it, and a
    // host aligned through the pair would inherit that error there (a CI run aligned b
    // through c, whose 1 ms step the a-c and b-c pairs placed 40 ms apart, and b's latencies
    // were 1 ms off in between). Its own bound does not say so: the step is placed, then
    // trusted.
    let edge_cost = |e: &EdgeFit| e.map.max_bound() + e.steps.iter().map(|s| s.size_ns.abs()).sum::<f64>();
    let n = hosts.len();
    let mut parent = vec![None; n];
    let mut cost = vec![f64::INFINITY; n];
    if let Some(r) = root {
        cost[r] = 0.0;
        let mut queue = VecDeque::from([r]);
        while let Some(h) = queue.pop_front() {
            for (i, e) in edges.iter().enumerate() {
                let other = if e.a == h {
                    e.b
                } else if e.b == h {
                    e.a
                } else {
                    continue;
                };
                let c = cost[h] + edge_cost(e);
                if c < cost[other] {
                    cost[other] = c;
                    parent[other] = Some((i, h));
                    queue.push_back(other);
                }
            }
        }
    }
    let tree = Tree { parent, edges: &edges };
    let reached: Vec<usize> = (0..n).filter(|h| cost[*h].is_finite()).collect();

    // Evaluation times: every pair's knots, in reference time.
    let mut taus: Vec<i64> = Vec::new();
    for e in &edges {
        if cost[e.b].is_finite() {
            for k in &e.map.knots {
                taus.push(k.t_ns - tree.offset(e.b, k.t_ns).0.round() as i64);
            }
        }
    }
    taus.sort_unstable();
    taus.dedup();
    if let (Some(&lo), Some(&hi)) = (taus.first(), taus.last()) {
        taus.insert(0, lo - 1_000_000_000);
        taus.push(hi + 1_000_000_000);
    }

    // Least squares at each time, over the pairs inside the reached set.
    let idx: Vec<Option<usize>> = {
        let mut v = vec![None; n];
        let mut k = 0;
        for &h in &reached {
            if Some(h) != root {
                v[h] = Some(k);
                k += 1;
            }
        }
        v
    };
    let unknowns = reached.len().saturating_sub(1);
    let mut knots: Vec<Vec<Knot>> = vec![Vec::new(); n];
    let mut residual = vec![0.0f64; edges.len()];
    let mut inconsistent = 0usize;
    for &tau in &taus {
        let t: Vec<i64> = (0..n).map(|h| if cost[h].is_finite() { tree.host_time(h, tau) } else { 0 }).collect();
        let mut a = vec![vec![0.0; unknowns]; unknowns];
        let mut y = vec![0.0; unknowns];
        let mut meas = Vec::new();
        for (i, e) in edges.iter().enumerate() {
            if !(cost[e.a].is_finite() && cost[e.b].is_finite()) {
                continue;
            }
            let (m, bound) = e.map.eval(t[e.b]);
            let w = 1.0 / bound.max(50.0).powi(2);
            meas.push((i, m));
            // o_b − o_a = m
            let (ia, ib) = (idx[e.a], idx[e.b]);
            if let Some(ib) = ib {
                a[ib][ib] += w;
                y[ib] += w * m;
            }
            if let Some(ia) = ia {
                a[ia][ia] += w;
                y[ia] -= w * m;
            }
            if let (Some(ia), Some(ib)) = (ia, ib) {
                a[ia][ib] -= w;
                a[ib][ia] -= w;
            }
        }
        let Some(mut o) = solve(a, y) else { continue };
        let res = |o: &[f64], i: usize, m: f64| {
            let off = |h: usize| idx[h].map_or(0.0, |k| o[k]);
            (off(edges[i].b) - off(edges[i].a) - m).abs()
        };
        // A loop that does not close by far more than the bands (pairs that
        // place a clock step at different probes) is not averaged: the tree
        // keeps each host on its own best pair there.
        if meas.iter().any(|&(i, m)| res(&o, i, m) > 10.0 * edges[i].map.eval(t[edges[i].b]).1.max(1000.0)) {
            inconsistent += 1;
            for &h in &reached {
                if let Some(k) = idx[h] {
                    o[k] = tree.offset(h, t[h]).0;
                }
            }
        } else {
            for &(i, m) in &meas {
                residual[i] = residual[i].max(res(&o, i, m));
            }
        }
        let off = |h: usize| idx[h].map_or(0.0, |k| o[k]);
        for &h in &reached {
            // The tree's bound holds for the tree's offset; the solution moved it by `d`.
            let (tree_off, tree_bound) = tree.offset(h, t[h]);
            let k = Knot { t_ns: t[h], offset_ns: off(h), bound_ns: tree_bound + (off(h) - tree_off).abs() };
            let list = &mut knots[h];
            // A backward step maps two reference times to one host time: the
            // later mapping wins.
            while list.last().is_some_and(|l: &Knot| l.t_ns >= k.t_ns) {
                list.pop();
            }
            list.push(k);
        }
    }

    let mut first_stamp = vec![i64::MAX; n];
    for s in stamps {
        first_stamp[s.host] = first_stamp[s.host].min(s.ts_ns);
    }
    let mut out_hosts: Vec<HostClock> = Vec::new();
    for &h in order.iter() {
        let incident: Vec<&EdgeFit> = edges.iter().filter(|e| e.a == h || e.b == h).collect();
        let mut hc = HostClock {
            host: hosts[h].clone(),
            reference: Some(h) == root,
            map: None,
            offset_ns: 0.0,
            drift_ppm: 0.0,
            bound_ns: 0.0,
            samples_used: incident.iter().map(|e| e.used).sum(),
            samples: incident.iter().map(|e| e.samples).sum(),
            via: tree.path(h).into_iter().map(|p| hosts[p].clone()).collect(),
            problem: None,
        };
        if Some(h) == root {
            hc.map = Some(Piecewise::constant(0.0));
        } else if cost[h].is_finite() && knots[h].len() >= 2 {
            let k = &knots[h];
            let slope = |a: &Knot, b: &Knot| (b.offset_ns - a.offset_ns) / (b.t_ns - a.t_ns) as f64;
            let map = Piecewise {
                slope_before: slope(&k[0], &k[1]),
                slope_after: slope(&k[k.len() - 2], &k[k.len() - 1]),
                knots: k.clone(),
            };
            hc.offset_ns = map.offset(first_stamp[h]);
            hc.drift_ppm = map.mean_slope() * 1e6;
            hc.bound_ns = map.max_bound();
            hc.map = Some(map);
        } else {
            hc.problem = Some(if let Some(r) = root.filter(|_| !incident.is_empty()) {
                format!("its sync exchanges do not connect it to the reference {}", hosts[r])
            } else if root.is_none() {
                "no host has usable sync data (captures ran without --sync-peer, or no probe was answered)".into()
            } else {
                format!(
                    "no sync exchanges with any other host (pure samples: 0; {} messages seen in total)",
                    messages.messages
                )
            });
        }
        out_hosts.push(hc);
    }
    out_hosts.sort_by_key(|h| !h.reference);
    let edges = edges
        .into_iter()
        .zip(residual)
        .map(|(fit, r)| EdgeSummary { a: hosts[fit.a].clone(), b: hosts[fit.b].clone(), fit, loop_residual_ns: r })
        .collect();
    SyncResult {
        reference: root.map(|r| hosts[r].clone()),
        hosts: out_hosts,
        edges,
        messages,
        traffic,
        contradicted: contradicted.into_iter().map(|(a, b)| (hosts[a].clone(), hosts[b].clone())).collect(),
        silent,
        inconsistent_times: inconsistent,
    }
}

#[cfg(test)]
mod tests;
