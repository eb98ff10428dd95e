//! The probe protocol: one UDP socket on the sync port answers every probe
//! it receives at once (responder) and sends coded pairs of probes to each
//! peer at a steady rate (prober).
//!
//! The timestamps that count are taken by the kernel programs as the
//! packets pass TC egress and XDP ingress; user space only needs to send
//! and answer promptly. Its own counts (pairs sent, replies back, the
//! round trip it saw) go into the capture's metadata so a silent peer is
//! reported by name.
//!
//! The rate is the configured one, except in the first and last [`EDGE`] of a run (the
//! last when its end is known, `--duration`), which go [`EDGE_BOOST`] times faster: there a
//! fit window has samples on one side only, its slope is loosest, and the run's largest
//! bound comes from them. It does not adapt to the replies: what the estimate needs is
//! the fastest one-way transits (~1.5 µs on veth), and the round trips the prober can see
//! are ruled by the responder's wake-up (probe out to reply in at the kernel: p10 44 µs,
//! median 127 µs on an idle lab VM), so they cannot tell a pinned fit from a loose one. At
//! the default 10 pairs/s a pair with its replies is ~260 bytes on the wire: ~21 kbit/s per
//! peer, 0.002 % of a 1 Gbit/s link; at the edges 0.017 %.

use std::{
    collections::HashMap,
    io,
    net::{SocketAddr, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use capture_common::probe::{kind, Header, HEADER_LEN};
use serde::Serialize;

/// The rate in a run's first and last [`EDGE`], as a multiple of the configured one.
pub const EDGE_BOOST: f64 = 8.0;
/// The start and end of a run probed at [`EDGE_BOOST`] times the rate.
pub const EDGE: Duration = Duration::from_secs(2);

/// Prober settings.
#[derive(Clone, Debug)]
pub struct ProberConfig {
    /// Where to listen (the sync port on the capture's address or any).
    pub bind: SocketAddr,
    /// Peers to probe.
    pub peers: Vec<SocketAddr>,
    /// Coded pairs per second per peer (outside a run's edges).
    pub pairs_per_sec: f64,
    /// Gap between the two probes of a pair.
    pub gap: Duration,
    /// When the run is due to end, if known (`--duration`).
    pub end: Option<Instant>,
}

/// What the prober saw of one peer.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerStats {
    /// The peer.
    pub addr: String,
    /// Coded pairs sent.
    pub pairs_sent: u64,
    /// Probes that could not be sent (with the last error).
    pub send_errors: u64,
    /// Last send error.
    pub last_error: Option<String>,
    /// Replies received.
    pub replies: u64,
    /// Smallest round trip user space saw, ns.
    pub min_rtt_ns: Option<u64>,
}

/// Counts of the prober and responder.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProberStats {
    /// This run's session id.
    pub session: u64,
    /// Per peer.
    pub peers: Vec<PeerStats>,
    /// Probes from others that were answered.
    pub answered: u64,
    /// Replies that could not be sent.
    pub answer_errors: u64,
    /// Datagrams on the port that are not netlat probes, or replies to
    /// another session.
    pub foreign: u64,
}

/// The prober/responder of one capture.
pub struct Prober {
    socket: UdpSocket,
    cfg: ProberConfig,
    stats: ProberStats,
    /// Send time of recent probes, to measure round trips.
    sent: HashMap<(u64, u8), Instant>,
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: valid buffer of the given length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        u64::from_le_bytes(b)
    } else {
        // No getrandom: time and pid are unique enough for a session id.
        (crate::clock::realtime_ns() as u64) ^ (u64::from(std::process::id()) << 40)
    }
}

impl Prober {
    /// Binds the socket. Call this inside the network namespace the probes
    /// must use; the socket stays there whichever thread runs [`run`].
    ///
    /// [`run`]: Prober::run
    pub fn bind(cfg: ProberConfig) -> io::Result<Self> {
        let socket = UdpSocket::bind(cfg.bind)?;
        let peers = cfg.peers.iter().map(|p| PeerStats { addr: p.to_string(), ..Default::default() }).collect();
        let stats = ProberStats { session: random_u64(), peers, ..Default::default() };
        Ok(Self { socket, cfg, stats, sent: HashMap::new() })
    }

    /// The session id in this prober's probes.
    pub fn session(&self) -> u64 {
        self.stats.session
    }

    /// Probes and answers until `stop` is set; returns the counts.
    pub fn run(mut self, stop: &AtomicBool) -> ProberStats {
        let n = self.cfg.peers.len().max(1);
        let period = Duration::from_secs_f64(1.0 / self.cfg.pairs_per_sec.max(0.001));
        let start = Instant::now();
        // Peers are spread over the period so their pairs do not collide.
        let mut next: Vec<Instant> =
            (0..self.cfg.peers.len()).map(|i| start + period.mul_f64(i as f64 / n as f64)).collect();
        let mut seq: u64 = 0;
        let mut jitter: u64 = self.stats.session | 1;
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            let edge = now.duration_since(start) < EDGE
                || self.cfg.end.is_some_and(|e| e.saturating_duration_since(now) < EDGE);
            let boost = if edge { EDGE_BOOST } else { 1.0 };
            for (i, due) in next.iter_mut().enumerate() {
                if *due <= now {
                    self.send_pair(i, seq);
                    seq += 1;
                    // ±10 % jitter (xorshift) so probes do not lock to
                    // periodic activity on the hosts.
                    jitter ^= jitter << 13;
                    jitter ^= jitter >> 7;
                    jitter ^= jitter << 17;
                    let f = 0.9 + (jitter % 2001) as f64 / 10_000.0;
                    *due = (*due + period.mul_f64(f / boost)).max(now);
                }
            }
            let wait = next.iter().min().map_or(Duration::from_millis(100), |d| d.saturating_duration_since(now));
            let wait = wait.clamp(Duration::from_micros(100), Duration::from_millis(100));
            let _ = self.socket.set_read_timeout(Some(wait));
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) => self.on_datagram(&buf[..len], from),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(_) => {} // ICMP errors from earlier sends surface here; counted on send.
            }
        }
        self.stats
    }

    fn send_pair(&mut self, peer: usize, seq: u64) {
        let to = self.cfg.peers[peer];
        for idx in 0..2u8 {
            if idx == 1 {
                // The known gap: a short spin keeps it tight.
                let t = Instant::now();
                while t.elapsed() < self.cfg.gap {
                    std::hint::spin_loop();
                }
            }
            let h = Header { kind: kind::PROBE, idx, session: self.stats.session, seq };
            let p = &mut self.stats.peers[peer];
            // Before the send: on veth the reply can be queued before `send_to` returns.
            let at = Instant::now();
            match self.socket.send_to(&h.encode(), to) {
                Ok(_) => {
                    self.sent.insert((seq, idx), at);
                }
                Err(e) => {
                    p.send_errors += 1;
                    p.last_error = Some(e.to_string());
                }
            }
        }
        self.stats.peers[peer].pairs_sent += 1;
        if self.sent.len() > 4096 {
            let oldest = seq.saturating_sub(1024);
            self.sent.retain(|(s, _), _| *s >= oldest);
        }
    }

    fn on_datagram(&mut self, data: &[u8], from: SocketAddr) {
        let header = data.get(..HEADER_LEN).and_then(|b| Header::decode(b.try_into().expect("HEADER_LEN bytes")));
        let Some(h) = header else {
            self.stats.foreign += 1;
            return;
        };
        match h.kind {
            kind::PROBE => {
                let reply = Header { kind: kind::REPLY, ..h };
                match self.socket.send_to(&reply.encode(), from) {
                    Ok(_) => self.stats.answered += 1,
                    Err(_) => self.stats.answer_errors += 1,
                }
            }
            _ if h.session != self.stats.session => self.stats.foreign += 1,
            _ => {
                let rtt = self.sent.get(&(h.seq, h.idx)).map(|t| t.elapsed().as_nanos() as u64);
                if let Some(p) = self.peer_mut(from) {
                    p.replies += 1;
                    if let Some(r) = rtt {
                        p.min_rtt_ns = Some(p.min_rtt_ns.map_or(r, |m| m.min(r)));
                    }
                } else {
                    self.stats.foreign += 1;
                }
            }
        }
    }

    fn peer_mut(&mut self, from: SocketAddr) -> Option<&mut PeerStats> {
        let i = self.cfg.peers.iter().position(|p| *p == from)?;
        self.stats.peers.get_mut(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn two_probers_on_loopback_answer_each_other() {
        let a = Prober::bind(ProberConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            peers: vec![],
            pairs_per_sec: 50.0,
            gap: Duration::from_micros(20),
            end: None,
        })
        .unwrap();
        let a_addr = a.socket.local_addr().unwrap();
        let b = Prober::bind(ProberConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            peers: vec![a_addr, "127.0.0.1:9".parse().unwrap()],
            pairs_per_sec: 50.0,
            gap: Duration::from_micros(20),
            end: None,
        })
        .unwrap();
        assert_ne!(a.session(), b.session());
        let stop = Arc::new(AtomicBool::new(false));
        let (s1, s2) = (stop.clone(), stop.clone());
        let ta = std::thread::spawn(move || a.run(&s1));
        let tb = std::thread::spawn(move || b.run(&s2));
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let (sa, sb) = (ta.join().unwrap(), tb.join().unwrap());
        let live = &sb.peers[0];
        assert!(live.pairs_sent >= 15, "{sb:?}");
        assert!(live.replies >= 2 * live.pairs_sent - 2, "{sb:?}");
        assert!(live.min_rtt_ns.unwrap() < 50_000_000);
        // Both stop on one flag: a can answer the last pair after b stopped reading.
        assert!(live.replies <= sa.answered && sa.answered <= live.replies + 2, "{sa:?} {sb:?}");
        // Port 9 (discard) on loopback: nothing answers.
        assert_eq!(sb.peers[1].replies, 0);
    }

    /// The run's first seconds, and its last ones when its end is known, are probed
    /// faster; the middle at the configured rate.
    #[test]
    fn the_edges_of_a_run_are_probed_faster() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let cfg = |end| ProberConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            peers: vec![peer.local_addr().unwrap()],
            pairs_per_sec: 10.0,
            gap: Duration::from_micros(20),
            end,
        };
        let run = |end: Option<Instant>, secs: f64| {
            let p = Prober::bind(cfg(end)).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let s = stop.clone();
            let t = std::thread::spawn(move || p.run(&s));
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
            t.join().unwrap().peers[0].pairs_sent
        };
        // 2 s at 80 pairs/s, then 2 s at 10: ~180 (±10 % jitter; fewer if the thread is
        // kept off the CPU, never more).
        let open = run(None, 4.0);
        assert!((120..=200).contains(&open), "{open}");
        // The same with its end 4 s ahead: the last 2 s at 80 too, ~320.
        let bounded = run(Some(Instant::now() + Duration::from_secs(4)), 4.0);
        assert!(bounded >= open + 70 && bounded <= 360, "{bounded} against {open}");
    }
}
