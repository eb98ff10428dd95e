//! Packet identity and consistent sampling.
//!
//! The identity hash covers only fields that survive the path unchanged:
//! addresses, protocol, ports, IPv4 identification / IPv6 flow label and
//! fragment field, TCP sequence, acknowledgment and flags, the payload
//! length and the first [`ID_PAYLOAD_BYTES`] payload bytes. Never TTL/hop
//! limit, checksums, DSCP/ECN or VLAN tags, so the same packet hashes alike
//! at every host, inside and outside a VXLAN overlay.
//!
//! Sampling follows trajectory sampling (Duffield & Grossglauser; RFC 5475
//! hash-based selection): a packet is kept if a seeded hash of its identity
//! falls in the selection range, so every observation point keeps the same
//! packets.
//!
//! TCP data is not sampled by packet: the layers cut a stream into different packets
//! (TSO and GSO at the sender, GRO at the receiver, and the socket rows are the calls' byte
//! ranges), so packet identities differ between layers and a hash of them would keep
//! different bytes at each. A TCP row with payload is kept when its byte range holds a
//! position that is a multiple of the sampling stride (a power of two, in wrapping 32-bit
//! sequence space): the positions the analyzer tracks at that stride, kept at every layer.

use crate::{
    abi::ID_PAYLOAD_BYTES,
    parse::{PacketBuf, PacketInfo},
};

const K: u64 = 0x9E37_79B9_7F4A_7C15;

/// One absorb step: cheap enough for the kernel, good avalanche after
/// [`fmix64`].
#[inline(always)]
const fn absorb(h: u64, w: u64) -> u64 {
    (h ^ w).wrapping_mul(K).rotate_left(31)
}

/// MurmurHash3's 64-bit finaliser.
#[inline(always)]
pub const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^= h >> 33;
    h
}

#[inline(always)]
fn word(b: &[u8; 16], i: usize) -> u64 {
    u64::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]])
}

/// The payload bytes [`packet_id`] folds in: the first `min(payload_len,
/// ID_PAYLOAD_BYTES)` bytes at `info.payload_off`, zero-padded. One definition for the
/// kernel programs and for user space reading pcap files, so both give a packet the same
/// identity. A byte the buffer does not hold (a capture cut short) reads as zero.
#[inline(always)]
pub fn id_payload<B: PacketBuf>(buf: &B, info: &PacketInfo) -> [u8; ID_PAYLOAD_BYTES] {
    let mut payload = [0u8; ID_PAYLOAD_BYTES];
    if info.payload_len >= ID_PAYLOAD_BYTES as u32 {
        if let Some(p) = buf.load::<ID_PAYLOAD_BYTES>(info.payload_off) {
            return p;
        }
    }
    // Byte by byte, with a constant bound the verifier accepts.
    let mut i = 0;
    while i < ID_PAYLOAD_BYTES {
        if i as u32 >= info.payload_len {
            break;
        }
        if let Some([b]) = buf.load::<1>(info.payload_off + i as u32) {
            payload[i] = b;
        }
        i += 1;
    }
    payload
}

/// [`id_payload`] from the copy of the packet's first bytes in `head` when it holds them,
/// else from the packet `buf` (see [`crate::parse::HeadBuf`]): the same bytes either way.
#[inline(always)]
pub fn id_payload_head_first<B: PacketBuf>(
    head: &crate::parse::HeadBuf<'_>,
    buf: &B,
    info: &PacketInfo,
) -> [u8; ID_PAYLOAD_BYTES] {
    let payload = id_payload(head, info);
    if head.missed() {
        return id_payload(buf, info);
    }
    payload
}

/// Identity of a packet from its parsed headers and the first payload bytes
/// (`payload` holds `min(payload_len, ID_PAYLOAD_BYTES)` bytes, zero-padded).
#[inline(always)]
pub fn packet_id(info: &PacketInfo, payload: &[u8; ID_PAYLOAD_BYTES]) -> u64 {
    let mut h = K ^ (u64::from(info.family) << 8 | u64::from(info.proto));
    h = absorb(h, word(&info.saddr, 0));
    h = absorb(h, word(&info.saddr, 8));
    h = absorb(h, word(&info.daddr, 0));
    h = absorb(h, word(&info.daddr, 8));
    h = absorb(h, u64::from(info.sport) << 48 | u64::from(info.dport) << 32 | u64::from(info.ip_id));
    h = absorb(h, u64::from(info.seq) << 32 | u64::from(info.ack));
    h = absorb(h, u64::from(info.frag) << 40 | u64::from(info.tcp_flags) << 32 | u64::from(info.payload_len));
    h = absorb(h, u64::from_le_bytes(*payload));
    // Zero is reserved for "no identity".
    match fmix64(h) {
        0 => 1,
        id => id,
    }
}

/// Sampling decision for a packet identity: keep if the seeded hash is at
/// most `threshold` (`u64::MAX` keeps everything).
#[inline(always)]
pub const fn sampled(id: u64, seed: u64, threshold: u64) -> bool {
    threshold == u64::MAX || fmix64(id ^ seed) <= threshold
}

/// Whether the TCP byte range `[seq, seq + len)` holds a tracked position: a `p` with
/// `p & mask == 0` (`mask` is the stride minus one; `0` tracks every byte). Ranges wrap
/// around the 32-bit sequence space as TCP's do.
#[inline(always)]
pub const fn range_sampled(seq: u32, len: u32, mask: u32) -> bool {
    // The distance from `seq` to the next multiple of the stride.
    seq.wrapping_neg() & mask < len
}

/// The sampling decision for a packet with headers `info` and identity `id`: TCP packets
/// with payload by their byte range ([`range_sampled`], with `tcp_mask` non-zero when
/// sampling), the rest by their identity ([`sampled`]).
#[inline(always)]
pub const fn packet_sampled(info: &PacketInfo, id: u64, seed: u64, threshold: u64, tcp_mask: u32) -> bool {
    if tcp_mask != 0
        && info.proto == crate::parse::IPPROTO_TCP
        && info.payload_len > 0
        && info.flags & crate::abi::flags::L4_TRUNCATED == 0
    {
        range_sampled(info.seq, info.payload_len, tcp_mask)
    } else {
        sampled(id, seed, threshold)
    }
}

/// The stride of TCP byte sampling for keeping `1/n` (`n >= 1`): 1024 bytes per `n`
/// (the analyzer's default stride, so an MTU segment is kept about once in `n`), rounded
/// up to a power of two. 0 when nothing is sampled out.
pub const fn tcp_stride_one_in(n: u64) -> u32 {
    if n <= 1 {
        0
    } else if n >= 1 << 22 {
        1 << 31
    } else {
        (1024 * n).next_power_of_two() as u32
    }
}

/// Threshold that keeps a fraction `1/n` of packets (`n >= 1`).
pub const fn threshold_one_in(n: u64) -> u64 {
    if n <= 1 {
        u64::MAX
    } else {
        u64::MAX / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_ranges_are_kept_when_they_hold_a_multiple_of_the_stride() {
        let mask = 1023;
        assert!(range_sampled(1024, 1, mask));
        assert!(range_sampled(1000, 25, mask));
        assert!(!range_sampled(1000, 24, mask));
        assert!(!range_sampled(1025, 1023, mask));
        assert!(range_sampled(1025, 1024, mask));
        assert!(!range_sampled(5, 0, mask));
        // Across the wrap of the sequence space: 0 is a multiple.
        assert!(range_sampled(u32::MAX - 10, 20, mask));
        assert!(!range_sampled(u32::MAX - 10, 11, mask));
        // Stride 1: every byte.
        assert!(range_sampled(7, 1, 0));
        // The same positions the analyzer tracks are in any range that is kept, whichever
        // way a stream is cut: a range is kept exactly when it holds one of them.
        for (seq, len) in [(0u32, 1448u32), (1448, 1448), (60_000, 65_160), (u32::MAX - 700, 1448)] {
            let tracked = (0..len).any(|i| seq.wrapping_add(i) & mask == 0);
            assert_eq!(range_sampled(seq, len, mask), tracked, "{seq}+{len}");
        }
    }

    #[test]
    fn tcp_data_is_sampled_by_range_and_the_rest_by_identity() {
        let data = PacketInfo { proto: 6, seq: 4096, payload_len: 100, ..Default::default() };
        let other = PacketInfo { proto: 6, seq: 4097, payload_len: 100, ..Default::default() };
        let ack = PacketInfo { proto: 6, seq: 4096, payload_len: 0, ..Default::default() };
        let none = 0; // a threshold that keeps no identity
        assert!(packet_sampled(&data, 1, 0, none, 4095));
        assert!(!packet_sampled(&other, 1, 0, u64::MAX, 4095));
        assert!(!packet_sampled(&ack, 1, 0, none, 4095));
        assert!(packet_sampled(&ack, 1, 0, u64::MAX, 4095));
        // Without a stride (no sampling), TCP goes by identity like the rest.
        assert!(packet_sampled(&other, 1, 0, u64::MAX, 0));
        assert_eq!(tcp_stride_one_in(1), 0);
        assert_eq!(tcp_stride_one_in(10), 16384);
        assert_eq!(tcp_stride_one_in(16), 16384);
        assert_eq!(tcp_stride_one_in(1 << 40), 1 << 31);
    }

    #[test]
    fn id_ignores_nothing_it_should_not_and_changes_with_payload() {
        let mut a = PacketInfo { family: 4, proto: 17, sport: 1, dport: 2, ..Default::default() };
        let p0 = [0u8; ID_PAYLOAD_BYTES];
        let id0 = packet_id(&a, &p0);
        let mut p1 = p0;
        p1[7] = 1;
        assert_ne!(id0, packet_id(&a, &p1));
        a.ip_id = 7;
        assert_ne!(id0, packet_id(&a, &p0));
        // VLAN and flags are not part of the identity.
        let mut b = a;
        b.vlan = 100;
        b.flags = 0xFF;
        b.vni = 42;
        assert_eq!(packet_id(&a, &p0), packet_id(&b, &p0));
    }

    #[test]
    fn one_in_n_sampling_keeps_about_one_in_n() {
        let t = threshold_one_in(10);
        let kept = (0..100_000u64).filter(|i| sampled(fmix64(*i), 99, t)).count();
        assert!((9_000..11_000).contains(&kept), "kept {kept}");
        assert!((0..1000u64).all(|i| sampled(i, 1, u64::MAX)));
    }
}
