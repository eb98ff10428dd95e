//! One-way samples from the captured traffic itself: every packet seen leaving one host
//! and arriving at another took a time `≥ 0` in between, so it bounds the two clocks'
//! offset exactly as a probe does (Huygens' "network effect" without extra packets). A
//! flow of thousands of packets per second pins a pair's band far tighter than a few
//! probes per second; probes remain for links without traffic, and for steps.
//!
//! Which host a packet left before it reached another is read from the packet's own
//! stamps, never from the clocks being estimated: a host that saw it only leave is where
//! it came from (the source), one that saw it only arrive is where it went (a sink), and
//! one that saw both forwarded it. With one source, the source's egress precedes every
//! other host's ingress, and a forwarder's egress precedes every sink's ingress. Packets
//! with two sources (a host between them not captured, or a `pkt_id` reused) and packets
//! seen twice at one point (a retransmission) give no samples.
//!
//! Samples are thinned to the one of least transit per direction and [`BUCKET_NS`] of
//! the sender's clock: only the lowest transits can touch the band, and within a
//! millisecond drift moves the bound by less than a nanosecond per 10 ppm.

use std::collections::HashMap;

use serde::Serialize;

use crate::samples::OneWay;

/// The `kind` of a [`OneWay`] taken from a data packet (probes are 0, replies 1).
pub const KIND: u8 = 2;

/// Thinning: one sample per direction of a pair and this much of the sender's clock.
pub const BUCKET_NS: i64 = 1_000_000;

/// One stamp of a data packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The packet's identity (the same at every point).
    pub pkt_id: u64,
    /// Host index.
    pub host: usize,
    /// Observation point (host, namespace, interface, hook), any numbering.
    pub point: u32,
    /// Leaving (TC egress) rather than arriving (XDP, TC ingress).
    pub egress: bool,
    /// Host clock, ns.
    pub ts_ns: i64,
}

/// What the traffic gave.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TrafficCounts {
    /// Packets seen on two hosts or more.
    pub packets: u64,
    /// Of those, left out: more than one source, or seen twice at one point.
    pub ambiguous: u64,
    /// One-way samples taken (before thinning).
    pub samples: u64,
    /// Samples kept after thinning.
    pub kept: u64,
}

/// One-way samples from `obs` (any order; sorted here).
pub fn one_way(obs: &mut [Observation]) -> (Vec<OneWay>, TrafficCounts) {
    obs.sort_unstable_by_key(|o| (o.pkt_id, o.host, o.point, o.ts_ns));
    let mut counts = TrafficCounts::default();
    // (from, to, bucket) -> the sample of least transit.
    let mut best: HashMap<(usize, usize, i64), OneWay> = HashMap::new();
    let mut keep = |w: OneWay| {
        let e = best.entry((w.from, w.to, w.tx.div_euclid(BUCKET_NS))).or_insert(w);
        if w.rx - w.tx < e.rx - e.tx {
            *e = w;
        }
    };
    for packet in obs.chunk_by(|a, b| a.pkt_id == b.pkt_id) {
        if packet.iter().all(|o| o.host == packet[0].host) {
            continue;
        }
        counts.packets += 1;
        if packet.windows(2).any(|w| w[0].point == w[1].point && w[0].host == w[1].host) {
            counts.ambiguous += 1;
            continue;
        }
        // Per host: latest departure, earliest arrival.
        let mut hosts: Vec<(usize, Option<i64>, Option<i64>)> = Vec::new();
        for host in packet.chunk_by(|a, b| a.host == b.host) {
            let out = host.iter().filter(|o| o.egress).map(|o| o.ts_ns).max();
            let inn = host.iter().filter(|o| !o.egress).map(|o| o.ts_ns).min();
            hosts.push((host[0].host, out, inn));
        }
        let mut sources = hosts.iter().filter(|h| h.1.is_some() && h.2.is_none());
        let (Some(&(src, Some(sent), _)), None) = (sources.next(), sources.next()) else {
            counts.ambiguous += 1;
            continue;
        };
        let mut sample = |from: usize, tx: i64, to: usize, rx: i64| {
            counts.samples += 1;
            keep(OneWay { from, to, tx, rx, session: 0, seq: 0, idx: 0, kind: KIND, pure: true });
        };
        for &(h, out, inn) in &hosts {
            let Some(rx) = inn else { continue };
            sample(src, sent, h, rx);
            if out.is_none() {
                // A sink: every forwarder's departure precedes it.
                for &(f, fout, finn) in &hosts {
                    if let (Some(tx), Some(_)) = (fout, finn) {
                        sample(f, tx, h, rx);
                    }
                }
            }
        }
    }
    let mut out: Vec<OneWay> = best.into_values().collect();
    out.sort_unstable_by_key(|w| (w.from, w.to, w.tx));
    counts.kept = out.len() as u64;
    (out, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(pkt_id: u64, host: usize, point: u32, egress: bool, ts_ns: i64) -> Observation {
        Observation { pkt_id, host, point, egress, ts_ns }
    }

    fn pairs(w: &[OneWay]) -> Vec<(usize, usize, i64, i64)> {
        w.iter().map(|w| (w.from, w.to, w.tx, w.rx)).collect()
    }

    #[test]
    fn a_packet_from_one_host_to_another_is_one_sample() {
        let mut obs = vec![o(7, 1, 3, false, 5_000), o(7, 0, 1, true, 1_000), o(7, 1, 4, false, 6_000)];
        let (w, c) = one_way(&mut obs);
        assert_eq!(pairs(&w), vec![(0, 1, 1_000, 5_000)]);
        assert_eq!((c.packets, c.ambiguous, c.samples, c.kept), (1, 0, 1, 1));
    }

    #[test]
    fn a_forwarded_packet_orders_hosts_by_its_own_stamps() {
        // 0 sends, 1 and 2 forward (order unknown to the packet), 3 receives. The clocks
        // are far apart: nothing may depend on them.
        let mut obs = vec![
            o(9, 0, 0, true, 100),
            o(9, 1, 1, false, 9_000_000),
            o(9, 1, 2, true, 9_000_010),
            o(9, 2, 3, false, -5_000),
            o(9, 2, 4, true, -4_990),
            o(9, 3, 5, false, 77),
        ];
        let (w, _) = one_way(&mut obs);
        assert_eq!(
            pairs(&w),
            vec![
                (0, 1, 100, 9_000_000),
                (0, 2, 100, -5_000),
                (0, 3, 100, 77),
                (1, 3, 9_000_010, 77),
                (2, 3, -4_990, 77)
            ]
        );
    }

    #[test]
    fn two_sources_or_a_point_seen_twice_give_nothing() {
        let mut obs = vec![o(1, 0, 0, true, 1), o(1, 1, 1, true, 2), o(1, 2, 2, false, 3)];
        obs.extend([o(2, 0, 0, true, 1), o(2, 0, 0, true, 9), o(2, 1, 1, false, 5)]);
        let (w, c) = one_way(&mut obs);
        assert!(w.is_empty());
        assert_eq!((c.packets, c.ambiguous), (2, 2));
    }

    #[test]
    fn thinning_keeps_the_least_transit_per_millisecond() {
        let mut obs = Vec::new();
        for (i, (tx, transit)) in [(0, 900), (400_000, 300), (999_999, 500), (1_000_000, 700)].into_iter().enumerate() {
            obs.push(o(i as u64, 0, 0, true, tx));
            obs.push(o(i as u64, 1, 1, false, tx + transit));
        }
        let (w, c) = one_way(&mut obs);
        assert_eq!(pairs(&w), vec![(0, 1, 400_000, 400_300), (0, 1, 1_000_000, 1_000_700)]);
        assert_eq!((c.samples, c.kept), (4, 2));
    }
}
