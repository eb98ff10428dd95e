//! Paths: the route each flow takes through the observation points, named by the topology
//! (conf/hosts.yaml `paths:`) where one matches and after its hosts otherwise.
//!
//! A flow's route is chosen from the point sequences its packets were seen at. A packet
//! lost on the way leaves a *prefix* of the route, so a sequence is scored by how many
//! packets are consistent with it (seen at it or at a prefix of it), and the best-scoring
//! sequence that at least 0.5% of the flow's packets (or the most packets) completed is
//! the route. The support threshold keeps a stray packet that passed one extra point from
//! turning every normal packet into a "lost" one.
//!
//! Sequences are put in causal order first ([`causal`]): with clocks aligned only within a
//! bound, a packet can appear at the next host before it left the previous one, and a
//! route must never say so.
//!
//! A named path can extend a route: its points after the last one the flow was seen at
//! are stations too, so a flow that never reaches a captured point is lost there, which
//! no amount of looking at the flow's own packets could tell.

use std::collections::{BTreeMap, HashMap};

use conf::hosts::{HostsConf, Role};
use serde::Serialize;

use crate::matching::Point;

/// Point sequences of one flow's packets, with how many packets took each.
pub type Sequences = Vec<(Vec<u32>, u64)>;

/// A place on a path: an observation point, or a point the topology names where no packet
/// of the flow was ever seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Station {
    /// Observation point label, or `HOST:IFACE[:HOOK] (nothing seen)`.
    pub label: String,
    /// Index of the observation point (`None` for an unseen named point).
    pub point: Option<u32>,
    /// Host of the point.
    pub host: String,
}

/// One path: a route shared by one or more flows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathInfo {
    /// Name in reports: the topology's, or the hosts in order (`a>b`).
    pub name: String,
    /// The stations in order.
    pub stations: Vec<Station>,
    /// Kind of each hop between consecutive stations (see [`segment`]).
    pub segments: Vec<String>,
    /// Indexes of the flows that take it.
    pub flows: Vec<u32>,
}

/// Paths of one analysis, and the path of each flow.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Paths, sorted by name.
    pub paths: Vec<PathInfo>,
    /// Path of each flow (`None`: the flow has no packet seen at two points or more).
    pub flow_path: Vec<Option<u32>>,
    /// Things the user should know (unseen named points).
    pub notes: Vec<String>,
}

/// Kind of the hop between points of hosts `a` and `b`: `host` within one host,
/// `host-vm` / `host-container` between a VM or container and the host it runs on (by the
/// topology), `network` otherwise.
pub fn segment(a: &str, b: &str, hosts: Option<&HostsConf>) -> String {
    if a == b {
        return "host".into();
    }
    let role = |h: &str| hosts.and_then(|c| c.hosts.iter().find(|x| x.name.as_str() == h)).map(|x| &x.role);
    let on = |child: &str, parent: &str| match role(child) {
        Some(Role::VmOn(p)) if p.as_str() == parent => Some("host-vm"),
        Some(Role::ContainerOn(p)) if p.as_str() == parent => Some("host-container"),
        _ => None,
    };
    on(a, b).or_else(|| on(b, a)).unwrap_or("network").into()
}

/// `seq` in causal order: each host's points in their own order (one clock), and the
/// hosts ordered by what the points say, never by aligned clocks alone. A host that saw
/// the packet only on its way out sent it, so it comes before every other host; one that
/// saw it only on its way in received it, so it comes after every host that also sent it
/// on. Between hosts of the same kind (forwarders, or points of unknown side) the
/// observed order stands.
pub fn causal(seq: &[u32], points: &[Point]) -> Vec<u32> {
    use capture_common::abi::hook;
    let side = |p: u32| {
        let name = points[p as usize].hook.as_str();
        hook::NAMES.iter().position(|n| *n == name).and_then(|h| hook::outbound(h as u8))
    };
    let mut hosts: Vec<(&str, Vec<u32>)> = Vec::new();
    for &p in seq {
        let h = points[p as usize].host.as_str();
        match hosts.iter_mut().find(|(n, _)| *n == h) {
            Some((_, v)) => v.push(p),
            None => hosts.push((h, vec![p])),
        }
    }
    // Stable: hosts of one rank keep the observed order.
    hosts.sort_by_key(|(_, ps)| {
        let (out, inn) = (ps.iter().any(|p| side(*p) == Some(true)), ps.iter().any(|p| side(*p) == Some(false)));
        let unknown = ps.iter().any(|p| side(*p).is_none());
        match (out, inn, unknown) {
            (true, false, false) => 0,
            (false, true, false) => 2,
            _ => 1,
        }
    });
    hosts.into_iter().flat_map(|(_, v)| v).collect()
}

/// `seqs` in causal order ([`causal`]), sequences that become one merged.
pub fn causal_sequences(seqs: &Sequences, points: &[Point]) -> Sequences {
    let mut merged: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
    for (s, n) in seqs {
        *merged.entry(causal(s, points)).or_default() += n;
    }
    merged.into_iter().collect()
}

/// The route of one flow, from its packets' sequences (see the module doc).
pub fn choose(seqs: &Sequences) -> Option<Vec<u32>> {
    let total: u64 = seqs.iter().map(|s| s.1).sum();
    let most = seqs.iter().map(|s| s.1).max()?;
    let score = |r: &[u32]| -> u64 { seqs.iter().filter(|(s, _)| r.starts_with(s)).map(|s| s.1).sum() };
    seqs.iter()
        .filter(|(s, n)| s.len() >= 2 && (n * 200 >= total || *n == most))
        .map(|(s, _)| (score(s), s))
        // Highest score, then longer, then the smaller sequence (deterministic).
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.len().cmp(&b.1.len())).then(b.1.cmp(a.1)))
        .map(|(_, s)| s.clone())
}

fn matches(named: &conf::hosts::Point, p: &Point) -> bool {
    named.host.as_str() == p.host
        && named.iface.as_str() == p.ifname
        && named.hook.as_deref().is_none_or(|h| h == p.hook)
}

/// Stations of `route` under the named path `conf`, if every point of the route is on it
/// in order; unseen named points after the route's last one are appended.
fn under_named(route: &[u32], points: &[Point], conf: &conf::hosts::PathConf) -> Option<Vec<Station>> {
    let mut at = 0;
    let mut stations = Vec::new();
    for &p in route {
        let point = &points[p as usize];
        at += conf.points[at..].iter().position(|n| matches(n, point))?;
        stations.push(Station { label: point.label.clone(), point: Some(p), host: point.host.clone() });
    }
    for n in &conf.points[at + 1..] {
        let hook = n.hook.as_deref().map(|h| format!(":{h}")).unwrap_or_default();
        stations.push(Station {
            label: format!("{}:{}{hook} (nothing seen)", n.host.as_str(), n.iface.as_str()),
            point: None,
            host: n.host.as_str().to_owned(),
        });
    }
    Some(stations)
}

/// Host names of `stations` in order, consecutive repeats merged: `a>b`.
fn host_name(stations: &[Station]) -> String {
    let mut hosts: Vec<&str> = Vec::new();
    for s in stations {
        if hosts.last() != Some(&s.host.as_str()) {
            hosts.push(&s.host);
        }
    }
    hosts.join(">")
}

/// Chooses every flow's route and groups flows into paths.
pub fn build(points: &[Point], sequences: &[Sequences], hosts: Option<&HostsConf>) -> Topology {
    // Route → (path name from the topology, flows), ordered by stations for determinism.
    let mut by_route: BTreeMap<Vec<Station>, (Option<String>, Vec<u32>)> = BTreeMap::new();
    let mut flow_route: Vec<Option<Vec<Station>>> = Vec::with_capacity(sequences.len());
    for (flow, seqs) in sequences.iter().enumerate() {
        let Some(route) = choose(&causal_sequences(seqs, points)) else {
            flow_route.push(None);
            continue;
        };
        let named = hosts
            .into_iter()
            .flat_map(|c| &c.paths)
            .find_map(|n| under_named(&route, points, n).map(|st| (n.name.as_str().to_owned(), st)));
        let (name, stations) = match named {
            Some((name, stations)) => (Some(name), stations),
            None => {
                let st = route
                    .iter()
                    .map(|&p| {
                        let q = &points[p as usize];
                        Station { label: q.label.clone(), point: Some(p), host: q.host.clone() }
                    })
                    .collect();
                (None, st)
            }
        };
        let entry = by_route.entry(stations.clone()).or_insert((name, Vec::new()));
        entry.1.push(flow as u32);
        flow_route.push(Some(stations));
    }

    let mut topo = Topology::default();
    let mut taken: HashMap<String, usize> = HashMap::new();
    let mut index: HashMap<Vec<Station>, u32> = HashMap::new();
    for (stations, (name, flows)) in by_route {
        let base = name.unwrap_or_else(|| host_name(&stations));
        let n = taken.entry(base.clone()).or_default();
        *n += 1;
        // A topology path can carry several routes (e.g. flows seen at different hooks):
        // each is its own row, told apart by a suffix.
        let name = if *n == 1 { base } else { format!("{base}#{n}") };
        for s in stations.iter().filter(|s| s.point.is_none()) {
            topo.notes.push(format!(
                "path {name}: no packet was seen at {}, so every packet that reached the point \
                 before it counts as lost there; was that point captured?",
                s.label.trim_end_matches(" (nothing seen)")
            ));
        }
        let segments = stations.windows(2).map(|w| segment(&w[0].host, &w[1].host, hosts)).collect();
        index.insert(stations.clone(), topo.paths.len() as u32);
        topo.paths.push(PathInfo { name, stations, segments, flows });
    }
    // By name, so that a path's index is its place in reports too.
    let mut order: Vec<u32> = (0..topo.paths.len() as u32).collect();
    order.sort_by(|&a, &b| topo.paths[a as usize].name.cmp(&topo.paths[b as usize].name));
    let mut new_index = vec![0; order.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old as usize] = new as u32;
    }
    let mut paths: Vec<Option<PathInfo>> = std::mem::take(&mut topo.paths).into_iter().map(Some).collect();
    topo.paths = order.iter().map(|&old| paths[old as usize].take().expect("each once")).collect();
    topo.flow_path = flow_route.into_iter().map(|r| r.map(|st| new_index[index[&st] as usize])).collect();
    topo
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(v: &[(&[u32], u64)]) -> Sequences {
        v.iter().map(|(s, n)| (s.to_vec(), *n)).collect()
    }

    #[test]
    fn the_full_route_wins_over_its_lossy_prefixes() {
        // 40% lost after point 1: the route is still 0,1,2.
        assert_eq!(choose(&seqs(&[(&[0, 1], 400), (&[0, 1, 2], 600), (&[0], 5)])), Some(vec![0, 1, 2]));
        // Even when most packets are lost, as long as 0.5% made it.
        assert_eq!(choose(&seqs(&[(&[0, 1], 990), (&[0, 1, 2], 10)])), Some(vec![0, 1, 2]));
    }

    #[test]
    fn a_stray_packet_does_not_define_the_route() {
        assert_eq!(choose(&seqs(&[(&[0, 1], 1000), (&[0, 1, 2], 1)])), Some(vec![0, 1]));
        // Two routes: the one more packets agree with.
        assert_eq!(choose(&seqs(&[(&[0, 1, 2], 300), (&[0, 1, 3], 500), (&[0, 1], 10)])), Some(vec![0, 1, 3]));
        // Nothing seen at two points: no route.
        assert_eq!(choose(&seqs(&[(&[0], 10)])), None);
    }

    /// Issue 22: clocks aligned within a few µs put b's XDP before a's TC egress in most
    /// packets; the route still goes a → b, and a forwarder stays between them.
    #[test]
    fn routes_follow_causality_not_the_clocks() {
        let points = [
            point("a", "eth0", "tc_egress"),
            point("b", "eth0", "xdp"),
            point("b", "eth0", "tc_ingress"),
            point("m", "p1", "xdp"),
            point("m", "eth0", "tc_egress"),
        ];
        assert_eq!(causal(&[1, 0, 2], &points), vec![0, 1, 2]);
        assert_eq!(causal(&[1, 2, 0], &points), vec![0, 1, 2]);
        // m forwards: after the sender, before the receiver, its own points in its order.
        assert_eq!(causal(&[3, 1, 4, 2, 0], &points), vec![0, 3, 4, 1, 2]);
        // Sequences that differ only by the clocks are one route.
        let merged = causal_sequences(&seqs(&[(&[1, 0, 2], 700), (&[0, 1, 2], 300)]), &points);
        assert_eq!(merged, seqs(&[(&[0, 1, 2], 1000)]));
        let topo = build(&points, &[seqs(&[(&[1, 0, 2], 700), (&[0, 1, 2], 300)])], None);
        assert_eq!(topo.paths[0].name, "a>b");
    }

    fn point(host: &str, ifname: &str, hook: &str) -> Point {
        Point {
            host: host.into(),
            netns: 1,
            ifname: ifname.into(),
            hook: hook.into(),
            label: format!("{host}:{ifname}:{hook}"),
        }
    }

    const HOSTS: &str = "
hosts:
  - {name: a, address: 198.18.0.1, interfaces: [eth0]}
  - {name: b, address: 198.18.0.2, role: {vm_on: a}, interfaces: [eth0]}
  - {name: c, address: 198.18.0.3, interfaces: [eth0]}
paths:
  - name: a-to-c
    points: [a:eth0:tc_egress, b:eth0, c:eth0]
";

    #[test]
    fn named_paths_name_routes_and_add_unseen_points() {
        let conf = HostsConf::parse(std::path::Path::new("hosts.yaml"), HOSTS).unwrap();
        let points = [point("a", "eth0", "tc_egress"), point("b", "eth0", "xdp"), point("b", "eth0", "tc_ingress")];
        // Flow 0 seen at a, then b twice (two hooks of one named point); flow 1 only at b.
        let sequences = vec![seqs(&[(&[0, 1, 2], 10)]), seqs(&[(&[1, 2], 3)])];
        let topo = build(&points, &sequences, Some(&conf));
        assert_eq!(topo.paths.len(), 2);
        let p = &topo.paths[topo.flow_path[0].unwrap() as usize];
        assert_eq!(p.name, "a-to-c");
        let labels: Vec<&str> = p.stations.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["a:eth0:tc_egress", "b:eth0:xdp", "b:eth0:tc_ingress", "c:eth0 (nothing seen)"]);
        assert_eq!(p.segments, ["host-vm", "host", "network"]);
        // The second route also fits the named path: same name, told apart.
        assert_eq!(topo.paths[topo.flow_path[1].unwrap() as usize].name, "a-to-c#2");
        assert_eq!(topo.notes.len(), 2);
    }

    #[test]
    fn without_topology_paths_are_named_by_hosts() {
        let points = [point("a", "eth0", "tc_egress"), point("b", "eth0", "xdp"), point("b", "eth0", "tc_ingress")];
        let sequences = vec![seqs(&[(&[0, 1, 2], 10)]), seqs(&[(&[0, 1], 5)]), seqs(&[(&[0, 1, 2], 1)])];
        let topo = build(&points, &sequences, None);
        let names: Vec<&str> = topo.paths.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a>b", "a>b#2"]);
        // Flows 0 and 2 share a route, hence a path; indexes follow the sorted names.
        assert_eq!(topo.flow_path, [Some(1), Some(0), Some(1)]);
        assert_eq!(topo.paths[1].flows, [0, 2]);
        assert_eq!(topo.paths[0].segments, ["network"]);
    }
}
