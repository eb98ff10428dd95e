//! Wire format of netlat's clock-sync probes (UDP payload), shared by the
//! kernel programs, which recognise and timestamp probes, and the prober in
//! user space, which builds them.
//!
//! Layout (24 bytes, integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 0..4 | magic `NLSY` |
//! | 4 | version (1) |
//! | 5 | kind: 0 probe, 1 reply |
//! | 6 | index in the coded pair: 0 or 1 |
//! | 7 | reserved, 0 |
//! | 8..16 | session: random per prober run |
//! | 16..24 | sequence number of the pair within the session |
//!
//! A reply repeats the probe's session, sequence and index, so the four
//! timestamps of one exchange (probe sent, probe received, reply sent,
//! reply received) are joined offline by `(session, seq, idx)`.

/// First bytes of every probe.
pub const MAGIC: [u8; 4] = *b"NLSY";
/// Layout version.
pub const VERSION: u8 = 1;
/// Bytes of the header; probes carry exactly this payload.
pub const HEADER_LEN: usize = 24;

/// Values of [`Header::kind`].
pub mod kind {
    /// Sent by the prober.
    pub const PROBE: u8 = 0;
    /// Sent back by the responder.
    pub const REPLY: u8 = 1;
    /// Names, indexed by kind.
    pub const NAMES: [&str; 2] = ["probe", "reply"];
}

/// A decoded probe header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`kind::PROBE`] or [`kind::REPLY`].
    pub kind: u8,
    /// 0 or 1: position in the coded pair.
    pub idx: u8,
    /// Random per prober run.
    pub session: u64,
    /// Pair number within the session.
    pub seq: u64,
}

impl Header {
    /// The 24 payload bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = VERSION;
        b[5] = self.kind;
        b[6] = self.idx;
        b[8..16].copy_from_slice(&self.session.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b
    }

    /// Decodes a payload prefix; `None` if it is not a netlat probe of a
    /// known version (then the packet is ordinary traffic).
    #[inline(always)]
    pub fn decode(b: &[u8; HEADER_LEN]) -> Option<Self> {
        if b[0] != MAGIC[0] || b[1] != MAGIC[1] || b[2] != MAGIC[2] || b[3] != MAGIC[3] || b[4] != VERSION {
            return None;
        }
        if b[5] > kind::REPLY || b[6] > 1 {
            return None;
        }
        let mut s = [0u8; 8];
        let mut q = [0u8; 8];
        let mut i = 0;
        while i < 8 {
            s[i] = b[8 + i];
            q[i] = b[16 + i];
            i += 1;
        }
        Some(Self { kind: b[5], idx: b[6], session: u64::from_le_bytes(s), seq: u64::from_le_bytes(q) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = Header { kind: kind::REPLY, idx: 1, session: 0x0102_0304_0506_0708, seq: u64::MAX - 3 };
        assert_eq!(Header::decode(&h.encode()), Some(h));
    }

    #[test]
    fn foreign_payloads_are_not_probes() {
        let good = Header { kind: kind::PROBE, idx: 0, session: 1, seq: 2 }.encode();
        for (at, v) in [(0, b'X'), (3, b'Z'), (4, 2), (5, 2), (6, 2)] {
            let mut b = good;
            b[at] = v;
            assert_eq!(Header::decode(&b), None, "byte {at} = {v}");
        }
        assert_eq!(Header::decode(&[0; HEADER_LEN]), None);
    }
}
