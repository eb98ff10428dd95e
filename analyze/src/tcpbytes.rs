//! TCP byte mode: following sequence positions instead of packets.
//!
//! One skb carries many segments (TSO/GSO on the way out, GRO on the way in) and the
//! socket layers see byte ranges, not packets, so a TCP packet's identity hash only
//! matches the same skb at the wire hooks. In byte mode every TCP event with payload
//! stands for its sequence range `[tcp_seq, tcp_seq + payload_len)`, and the analyzer
//! follows the positions `p` of that range with `p % stride == 0` (a consistent
//! sampling rule: the same bytes are picked at every layer and host). Each tracked
//! position gets an identity of its own (flow, position), and from then on is matched
//! like a packet: its time at each layer, per-layer latency and the sum, end to end
//! from the sender's `sock_send` to the receiver's `sock_recv`.
//!
//! Sequence numbers are 32 bits: a flow that sends more than 4 GiB reuses them. Positions
//! are therefore unwrapped to 64 bits by time ([`Trajectories`]): every point of a flow
//! sees, at any moment, sequence numbers within the bytes in flight of each other (far
//! less than 2 GiB), so the 64-bit position nearest to the flow's trajectory at that
//! moment is the one. A position seen twice at one point (a retransmission) is ambiguous
//! and left out.

/// How TCP events are identified (`--tcp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TcpUnit {
    /// Bytes when any socket-layer hook is in the input, else packets.
    #[default]
    Auto,
    /// Per tracked sequence position.
    Bytes,
    /// Per packet (the identity hash), as for other protocols.
    Packets,
}

/// Default sampling stride: one tracked byte per KiB of each flow.
pub const DEFAULT_STRIDE: u32 = 1024;

/// The stride asked for (`Options::tcp_stride`, 0: the default).
pub fn stride(asked: u32) -> u32 {
    match asked {
        0 => DEFAULT_STRIDE,
        s => s,
    }
}

/// Hooks whose events are byte ranges of a socket rather than packets.
pub const SOCKET_HOOKS: [&str; 5] = ["sock_send", "sk_data_ready", "sock_recv", "sched_wakeup", "sched_switch"];

impl TcpUnit {
    /// Whether to follow bytes, given the hooks present.
    pub fn bytes<'a>(self, mut hooks: impl Iterator<Item = &'a str>) -> bool {
        match self {
            Self::Bytes => true,
            Self::Packets => false,
            Self::Auto => hooks.any(|h| SOCKET_HOOKS.contains(&h)),
        }
    }
}

/// The stride the captures of `metas` (run-metadata files) sampled TCP bytes at
/// (`--sample`: config `tcp_sample_stride`), the largest if they differ; 0 when none did.
/// Unreadable records count as not sampled (the clock alignment reports them).
pub fn capture_stride(metas: &[std::path::PathBuf]) -> u32 {
    metas
        .iter()
        .filter_map(|m| crate::input::read_meta(m).ok())
        .filter_map(|v| v["config"]["tcp_sample_stride"].as_str()?.parse::<u32>().ok())
        .filter(|s| s.is_power_of_two())
        .max()
        .unwrap_or(0)
}

/// The tracked positions of `[seq, seq + len)`: every `p` with `p % stride == 0`, in
/// wrapping 32-bit sequence space. `stride` is a power of two (it divides 2^32, so the
/// rule is the same on both sides of a wrap).
pub fn positions(seq: u32, len: u32, stride: u32) -> impl Iterator<Item = u32> {
    debug_assert!(stride.is_power_of_two());
    let first_off = seq.wrapping_neg() & (stride - 1);
    let count = if len > first_off { (len - first_off - 1) / stride + 1 } else { 0 };
    (0..count).map(move |i| seq.wrapping_add(first_off).wrapping_add(i * stride))
}

/// The identity of 64-bit position `pos` (below 2^40, see [`Trajectories`]) of flow
/// `flow` (an index shared by every file of the analysis, below 2^24): a mixed 64-bit
/// value, never 0, as packet ids are.
pub fn position_id(flow: u32, pos: u64) -> u64 {
    // splitmix64's finalizer: distinct inputs give distinct outputs (it is a bijection).
    let mut z = (u64::from(flow) << 40 ^ pos) ^ 0x6e65_746c_6174_7463;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// One TCP event in this many (by `pkt_id`) is a knot of its flow's trajectory. Only a
/// flow that sends 4 GiB needs knots, and it takes at least 65,536 skbs (64 KiB each at
/// most) to do so: 64 knots on average; knots 2 GiB apart (32,768 skbs without one) come
/// with a probability of e^-32. Reading the sample costs little beside the analysis.
pub const KNOT_SAMPLE: u64 = 1024;

/// Where each flow's sequence space was over time, unwrapped to 64 bits: knots (time in
/// the reference time base, position), in time order.
#[derive(Debug, Default)]
pub struct Trajectories(Vec<Vec<(i64, u64)>>);

/// The 64-bit position of the first knot of every flow: room below it for sequence
/// numbers seen before it, and below 2^40 for a TiB after it.
const BASE: u64 = 1 << 33;

impl Trajectories {
    /// From knots (flow index, time, 32-bit sequence number) of `flows` flows, in any
    /// order: each flow's knots in time order, each unwrapped to the position nearest the
    /// previous one.
    pub fn new(flows: usize, knots: impl IntoIterator<Item = (u32, i64, u32)>) -> Self {
        let mut by_flow: Vec<Vec<(i64, u64)>> = vec![Vec::new(); flows];
        for (f, ts, seq) in knots {
            if let Some(v) = by_flow.get_mut(f as usize) {
                v.push((ts, u64::from(seq)));
            }
        }
        for v in &mut by_flow {
            v.sort_unstable();
            let mut prev: Option<u64> = None;
            for k in v.iter_mut() {
                let p = match prev {
                    None => BASE + k.1,
                    Some(p) => nearest(p, k.1 as u32),
                };
                k.1 = p;
                prev = Some(p);
            }
        }
        Self(by_flow)
    }

    /// The 64-bit position of sequence number `seq` of flow `flow` at time `ts`.
    pub fn unwrap(&self, flow: u32, ts: i64, seq: u32) -> u64 {
        let Some(v) = self.0.get(flow as usize).filter(|v| !v.is_empty()) else { return BASE + u64::from(seq) };
        let i = v.partition_point(|k| k.0 <= ts).saturating_sub(1);
        nearest(v[i].1, seq)
    }
}

/// The 64-bit position with low 32 bits `seq` nearest to `p`.
fn nearest(p: u64, seq: u32) -> u64 {
    p.wrapping_add_signed(i64::from(seq.wrapping_sub(p as u32) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trajectories_unwrap_each_flow_by_time() {
        const GIB: u32 = 1 << 30;
        // Flow 0 sends 10 GiB over 10 s, a knot per second from two points; flow 1 none.
        let start = u32::MAX - 100;
        let knots = (0..10u32).flat_map(|s| {
            let seq = start.wrapping_add(s * GIB);
            // The receiver lags 1 MiB behind.
            [(0, i64::from(s) * 1_000_000_000, seq), (0, i64::from(s) * 1_000_000_000 + 5, seq.wrapping_sub(1 << 20))]
        });
        let t = Trajectories::new(2, knots);
        let base = t.unwrap(0, 0, start);
        assert_eq!(base, BASE + u64::from(start));
        // The same 32-bit number, 4 and 8 GiB later.
        assert_eq!(t.unwrap(0, 4_200_000_000, start), base + (4u64 << 30));
        assert_eq!(t.unwrap(0, 8_100_000_000, start), base + (8u64 << 30));
        // Behind the knot (the receiver), and before the first knot.
        assert_eq!(t.unwrap(0, 4_000_000_010, start.wrapping_sub(1 << 20)), base + (4u64 << 30) - (1 << 20));
        assert_eq!(t.unwrap(0, -5, start.wrapping_sub(10)), base - 10);
        // Across the wrap of the 32-bit space within a second.
        assert_eq!(t.unwrap(0, 500, start.wrapping_add(200)), base + 200);
        // A flow without knots: the base.
        assert_eq!(t.unwrap(1, 0, 7), BASE + 7);
        assert_eq!(t.unwrap(5, 0, 7), BASE + 7);
        // Ids differ across epochs of one 32-bit number.
        assert_ne!(position_id(0, base), position_id(0, base + (4u64 << 30)));
    }

    #[test]
    fn positions_follow_the_stride() {
        assert_eq!(positions(0, 3000, 1024).collect::<Vec<_>>(), [0, 1024, 2048]);
        assert_eq!(positions(1, 1023, 1024).count(), 0);
        assert_eq!(positions(1, 1024, 1024).collect::<Vec<_>>(), [1024]);
        assert_eq!(positions(1000, 100, 1).count(), 100);
        assert_eq!(positions(5, 0, 1).count(), 0);
    }

    #[test]
    fn positions_wrap_at_four_gib() {
        let seq = u32::MAX - 99; // 100 bytes before the wrap, 100 after.
        assert_eq!(positions(seq, 200, 64).collect::<Vec<_>>(), [u32::MAX - 63, 0, 64]);
        assert_eq!(positions(seq, 200, 1).count(), 200);
    }

    #[test]
    fn split_ranges_pick_the_same_positions() {
        // One skb of 64 KiB at the sender, 45 segments of 1448 bytes at the receiver.
        let whole: Vec<u32> = positions(123_456, 65_160, 1024).collect();
        let parts: Vec<u32> = (0..45).flat_map(|i| positions(123_456 + i * 1448, 1448, 1024)).collect();
        assert_eq!(whole, parts);
    }

    #[test]
    fn ids_differ_by_flow_and_position() {
        assert_ne!(position_id(0, 1024), position_id(1, 1024));
        assert_ne!(position_id(0, 1024), position_id(0, 1024 + (1 << 32)));
        assert_ne!(position_id(0, 1024), position_id(0, 2048));
        assert_eq!(position_id(3, 7), position_id(3, 7));
    }

    #[test]
    fn auto_follows_bytes_only_with_socket_hooks() {
        assert!(TcpUnit::Auto.bytes(["xdp", "sock_recv"].into_iter()));
        assert!(!TcpUnit::Auto.bytes(["xdp", "tc_egress", "tcp_probe"].into_iter()));
        assert!(TcpUnit::Bytes.bytes(std::iter::empty()));
        assert!(!TcpUnit::Packets.bytes(["sock_send"].into_iter()));
    }
}
