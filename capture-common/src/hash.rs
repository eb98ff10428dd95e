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
