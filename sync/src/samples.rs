//! From probe timestamps (rows of the captures' `sync` tables) to one-way
//! samples between pairs of hosts.
//!
//! A message is one probe or reply, keyed by `(session, seq, idx, kind)`.
//! Its send time is the sender's TC-egress stamp and its receive time the
//! receiver's XDP stamp (TC ingress when XDP was not attached), the same
//! points packet latencies are measured between. Messages seen leaving more
//! than one host, or arriving at more than one, are ambiguous and left out.
//!
//! Coded pairs (Huygens): probes go in pairs a few µs apart. If the change
//! of the gap in flight (receive gap − send gap) differs from its typical
//! value on that path (the median) by more than the purity threshold, one
//! of the two was delayed by queueing or interrupts: both are dropped. The
//! median, not zero, is the reference because software paths treat the two
//! probes of a pair differently in a steady way: on veth the first probe of
//! a pair finds the receive path cold and is typically ~10 µs slower. A
//! message whose partner is missing cannot be checked and is dropped too.

use std::collections::{BTreeMap, HashMap};

/// Where a stamp was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    /// TC egress: the send time.
    TcEgress,
    /// XDP: the preferred receive time.
    Xdp,
    /// TC ingress: receive time when XDP is absent.
    TcIngress,
}

impl Hook {
    /// Every hook with its name in the `hook` column.
    pub const ALL: [(Self, &'static str); 3] =
        [(Self::TcEgress, "tc_egress"), (Self::Xdp, "xdp"), (Self::TcIngress, "tc_ingress")];

    /// From the `hook` column.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == s).map(|(h, _)| *h)
    }
}

/// One row of a `sync` table.
#[derive(Clone, Debug, PartialEq)]
pub struct Stamp {
    /// Index into the host names.
    pub host: usize,
    /// Host clock, ns.
    pub ts_ns: i64,
    /// Where.
    pub hook: Hook,
    /// 0 probe, 1 reply.
    pub kind: u8,
    /// 0 or 1 within the coded pair.
    pub idx: u8,
    /// Prober session.
    pub session: u64,
    /// Pair number.
    pub seq: u64,
    /// Destination address (to name peers that never answered).
    pub daddr: String,
}

/// One message between two hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneWay {
    /// Sender.
    pub from: usize,
    /// Receiver.
    pub to: usize,
    /// Send time, sender's clock.
    pub tx: i64,
    /// Receive time, receiver's clock.
    pub rx: i64,
    /// Prober session.
    pub session: u64,
    /// Pair number.
    pub seq: u64,
    /// Index in the pair.
    pub idx: u8,
    /// Probe or reply.
    pub kind: u8,
    /// Passed the coded-pair check (only pure messages are fitted; all
    /// complete ones help find clock steps).
    pub pure: bool,
}

/// Counts of what happened to messages.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounts {
    /// Distinct messages seen anywhere.
    pub messages: u64,
    /// Messages with a send and a receive stamp on two hosts.
    pub complete: u64,
    /// Sent but never seen arriving at any capturing host.
    pub unreceived: u64,
    /// Seen arriving but not leaving (the sender did not capture).
    pub unsent: u64,
    /// Seen leaving or arriving at more than one host (hosts that forwarded it aside).
    pub ambiguous: u64,
    /// Passed through a capturing host that forwarded it; that host's stamps are left out.
    pub forwarded: u64,
    /// Dropped by the coded-pair check (gap changed in flight).
    pub impure: u64,
    /// Dropped because the other message of the pair is missing.
    pub unpaired: u64,
    /// Kept.
    pub pure: u64,
}

/// Joins stamps into messages and applies the coded-pair check: every
/// complete message is returned, marked pure or not.
pub fn one_way(stamps: &[Stamp], purity_ns: i64) -> (Vec<OneWay>, MessageCounts) {
    #[derive(Default)]
    struct Msg {
        tx: BTreeMap<usize, i64>,
        rx_xdp: BTreeMap<usize, i64>,
        rx_tc: BTreeMap<usize, i64>,
    }
    let mut msgs: HashMap<(u64, u64, u8, u8), Msg> = HashMap::new();
    for s in stamps {
        let m = msgs.entry((s.session, s.seq, s.idx, s.kind)).or_default();
        let slot = match s.hook {
            Hook::TcEgress => &mut m.tx,
            Hook::Xdp => &mut m.rx_xdp,
            Hook::TcIngress => &mut m.rx_tc,
        };
        // A host that stamps one message twice (two interfaces on the way
        // out) keeps the earliest.
        let e = slot.entry(s.host).or_insert(s.ts_ns);
        *e = (*e).min(s.ts_ns);
    }
    let mut counts = MessageCounts { messages: msgs.len() as u64, ..Default::default() };
    let mut complete = Vec::new();
    for ((session, seq, idx, kind), mut m) in msgs {
        // A host that saw the message both arrive and leave forwarded it (a VM between
        // two containers): its stamps say nothing of the two ends' clocks.
        let forwarders: Vec<usize> =
            m.tx.keys().copied().filter(|h| m.rx_xdp.contains_key(h) || m.rx_tc.contains_key(h)).collect();
        if !forwarders.is_empty() {
            counts.forwarded += 1;
            for h in &forwarders {
                m.tx.remove(h);
                m.rx_xdp.remove(h);
                m.rx_tc.remove(h);
            }
        }
        if m.tx.len() > 1 {
            counts.ambiguous += 1;
            continue;
        }
        let Some((&from, &tx)) = m.tx.iter().next() else {
            counts.unsent += 1;
            continue;
        };
        let rx_of = |rx: &BTreeMap<usize, i64>| -> Vec<(usize, i64)> {
            rx.iter().filter(|(h, _)| **h != from).map(|(h, t)| (*h, *t)).collect()
        };
        let xdp = rx_of(&m.rx_xdp);
        let rx = if xdp.is_empty() { rx_of(&m.rx_tc) } else { xdp };
        match rx.as_slice() {
            [] => counts.unreceived += 1,
            [(to, rx)] => complete.push(OneWay { from, to: *to, tx, rx: *rx, session, seq, idx, kind, pure: false }),
            _ => counts.ambiguous += 1,
        }
    }
    counts.complete = complete.len() as u64;

    // Coded pairs.
    let mut pairs: HashMap<(u64, u64, u8), [Option<OneWay>; 2]> = HashMap::new();
    for w in complete {
        pairs.entry((w.session, w.seq, w.kind)).or_default()[usize::from(w.idx.min(1))] = Some(w);
    }
    let mut checked: Vec<(OneWay, OneWay, i64)> = Vec::new();
    let mut unpaired = Vec::new();
    for pair in pairs.into_values() {
        match pair {
            [Some(a), Some(b)] if a.from == b.from && a.to == b.to => {
                checked.push((a, b, (b.rx - a.rx) - (b.tx - a.tx)));
            }
            [Some(_), Some(_)] => counts.ambiguous += 2,
            [Some(w), None] | [None, Some(w)] => {
                counts.unpaired += 1;
                unpaired.push(w);
            }
            [None, None] => {}
        }
    }
    // Typical change of the gap per path, direction and kind (a reply pair
    // leaves the responder's user space with its own rhythm).
    let mut changes: HashMap<(usize, usize, u8), Vec<i64>> = HashMap::new();
    for (a, _, d) in &checked {
        changes.entry((a.from, a.to, a.kind)).or_default().push(*d);
    }
    let typical: HashMap<(usize, usize, u8), i64> = changes
        .into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            (k, v[v.len() / 2])
        })
        .collect();
    let mut out = unpaired;
    for (mut a, mut b, d) in checked {
        let pure = (d - typical[&(a.from, a.to, a.kind)]).abs() <= purity_ns;
        (a.pure, b.pure) = (pure, pure);
        out.extend([a, b]);
        if pure {
            counts.pure += 2;
        } else {
            counts.impure += 2;
        }
    }
    out.sort_by_key(|w| (w.session, w.seq, w.kind, w.idx));
    (out, counts)
}

/// Probes a host sent that no capturing host saw arrive, per destination
/// address: peers that never answered, or were not captured.
pub fn silent_peers(stamps: &[Stamp], hosts: usize) -> Vec<(usize, String, u64)> {
    /// (session, seq, idx, kind).
    type Key = (u64, u64, u8, u8);
    let mut seen: HashMap<Key, (Option<usize>, bool)> = HashMap::new();
    let mut dest: HashMap<Key, &str> = HashMap::new();
    for s in stamps {
        let key = (s.session, s.seq, s.idx, s.kind);
        let e = seen.entry(key).or_insert((None, false));
        if s.hook == Hook::TcEgress {
            e.0 = Some(s.host);
            dest.insert(key, &s.daddr);
        }
    }
    for s in stamps {
        let key = (s.session, s.seq, s.idx, s.kind);
        if s.hook != Hook::TcEgress && seen.get(&key).is_some_and(|e| e.0 != Some(s.host)) {
            seen.get_mut(&key).expect("present").1 = true;
        }
    }
    let mut per: BTreeMap<(usize, String), (u64, u64)> = BTreeMap::new();
    for (key, (from, received)) in seen {
        let (Some(from), Some(d)) = (from, dest.get(&key)) else { continue };
        if key.3 != capture_common::probe::kind::PROBE || from >= hosts {
            continue;
        }
        let e = per.entry((from, (*d).to_owned())).or_default();
        e.0 += 1;
        e.1 += u64::from(received);
    }
    per.into_iter().filter(|(_, (_, rx))| *rx == 0).map(|((h, d), (n, _))| (h, d, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(host: usize, ts: i64, hook: Hook, kind: u8, idx: u8, seq: u64) -> Stamp {
        Stamp { host, ts_ns: ts, hook, kind, idx, session: 9, seq, daddr: "198.18.0.2".into() }
    }

    #[test]
    fn joins_prefers_xdp_and_checks_pairs() {
        let mut s = vec![
            // Pair 1, probe 0 -> 1: gaps 20 µs and 20.3 µs: pure at 1 µs.
            st(0, 1000, Hook::TcEgress, 0, 0, 1),
            st(0, 21_000, Hook::TcEgress, 0, 1, 1),
            st(1, 5000, Hook::Xdp, 0, 0, 1),
            st(1, 5100, Hook::TcIngress, 0, 0, 1),
            st(1, 25_300, Hook::Xdp, 0, 1, 1),
            // Pair 2: the second probe was delayed 5 µs: impure.
            st(0, 100_000, Hook::TcEgress, 0, 0, 2),
            st(0, 120_000, Hook::TcEgress, 0, 1, 2),
            st(1, 104_000, Hook::Xdp, 0, 0, 2),
            st(1, 129_000, Hook::Xdp, 0, 1, 2),
            // Pair 4: like pair 1 (the typical change is +300 ns).
            st(0, 300_000, Hook::TcEgress, 0, 0, 4),
            st(0, 320_000, Hook::TcEgress, 0, 1, 4),
            st(1, 304_000, Hook::Xdp, 0, 0, 4),
            st(1, 324_300, Hook::Xdp, 0, 1, 4),
            // Pair 3: only one probe arrived.
            st(0, 200_000, Hook::TcEgress, 0, 0, 3),
            st(0, 220_000, Hook::TcEgress, 0, 1, 3),
            st(1, 204_000, Hook::TcIngress, 0, 0, 3),
        ];
        let (w, c) = one_way(&s, 1000);
        let w: Vec<OneWay> = w.into_iter().filter(|w| w.pure).collect();
        assert_eq!(w.len(), 4);
        assert_eq!((w[0].from, w[0].to, w[0].tx, w[0].rx), (0, 1, 1000, 5000));
        assert_eq!((c.messages, c.complete, c.unreceived, c.impure, c.unpaired, c.pure), (8, 7, 1, 2, 1, 4));
        // A host that saw a message arrive and leave forwarded it: the ends still pair.
        let mut fwd = s.clone();
        fwd.extend([st(2, 6000, Hook::Xdp, 0, 0, 1), st(2, 6100, Hook::TcEgress, 0, 0, 1)]);
        let (w, c) = one_way(&fwd, 1000);
        assert_eq!((w.iter().filter(|w| w.pure).count(), c.forwarded, c.ambiguous), (4, 1, 0));
        // A second sender for one message makes it ambiguous.
        s.push(st(2, 1, Hook::TcEgress, 0, 0, 1));
        let (w, c) = one_way(&s, 1000);
        assert_eq!((w.iter().filter(|w| w.pure).count(), c.ambiguous), (2, 1));
    }

    #[test]
    fn names_peers_that_never_answered() {
        let s = vec![
            st(0, 1, Hook::TcEgress, 0, 0, 1),
            st(0, 2, Hook::TcEgress, 0, 1, 1),
            Stamp { daddr: "198.18.0.9".into(), ..st(0, 3, Hook::TcEgress, 0, 0, 2) },
            st(1, 5, Hook::Xdp, 0, 0, 1),
        ];
        assert_eq!(silent_peers(&s, 2), vec![(0, "198.18.0.9".to_owned(), 1)]);
    }
}
