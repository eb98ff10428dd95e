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
//! Positions are 32-bit sequence numbers: arithmetic wraps, and a flow that sends more
//! than 4 GiB reuses positions; a position seen twice at one point is then ambiguous and
//! left out, as a retransmitted one is.

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

/// The tracked positions of `[seq, seq + len)`: every `p` with `p % stride == 0`, in
/// wrapping 32-bit sequence space. `stride` is a power of two (it divides 2^32, so the
/// rule is the same on both sides of a wrap).
pub fn positions(seq: u32, len: u32, stride: u32) -> impl Iterator<Item = u32> {
    debug_assert!(stride.is_power_of_two());
    let first_off = seq.wrapping_neg() & (stride - 1);
    let count = if len > first_off { (len - first_off - 1) / stride + 1 } else { 0 };
    (0..count).map(move |i| seq.wrapping_add(first_off).wrapping_add(i * stride))
}

/// The identity of position `pos` of flow `flow` (an index shared by every file of the
/// analysis): a mixed 64-bit value, never 0, as packet ids are.
pub fn position_id(flow: u32, pos: u32) -> u64 {
    // splitmix64's finalizer: distinct inputs give distinct outputs (it is a bijection).
    let mut z = (u64::from(flow) << 32 | u64::from(pos)) ^ 0x6e65_746c_6174_7463;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

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
