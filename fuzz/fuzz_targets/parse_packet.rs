//! The packet parser the kernel runs, on arbitrary frames: it must never
//! panic; a cut-short L4 header carries no ports and no payload; the
//! identity hash is never 0. (`payload_off` may lie past the frame when
//! IP or TCP options claim more bytes than there are: loads there fail.)
#![no_main]

use capture_common::{
    abi::ID_PAYLOAD_BYTES,
    hash,
    parse::{parse, parse_head_first, HeadBuf, PacketBuf, PacketInfo, SliceBuf, HEAD_BUF, HEAD_LEN},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the VXLAN port (0 = off, often 4789).
    let (port, frame) = match data {
        [a, b, rest @ ..] => (if *a & 1 == 0 { 4789 } else { u16::from_be_bytes([*a, *b]) }, rest),
        _ => (4789, data),
    };
    let buf = SliceBuf(frame);
    let mut info = PacketInfo::default();
    if parse(&buf, port, &mut info).is_ok() {
        if info.flags & capture_common::abi::flags::L4_TRUNCATED != 0 {
            assert_eq!((info.payload_len, info.sport, info.dport), (0, 0, 0));
        }
        assert!(info.payload_len <= 65_535 + 40, "payload length beyond any IP packet");
        assert!(info.family == 4 || info.family == 6);
        let payload = buf.load::<ID_PAYLOAD_BYTES>(info.payload_off).unwrap_or_default();
        let id = hash::packet_id(&info, &payload);
        assert_ne!(id, 0);
    }
    // The kernel parses from a copy of the first bytes, falling back to the frame on a
    // miss: the same result for any copy length.
    let mut head = [0u8; HEAD_BUF];
    for n in [0, 14, 34, 42, 54, 64, 100, HEAD_LEN] {
        let n = n.min(frame.len());
        head[..n].copy_from_slice(&frame[..n]);
        let hb = HeadBuf::new(&head, n as u32, frame.len() as u32);
        let mut h = PacketInfo::default();
        let r = parse_head_first(&hb, &buf, port, &mut h);
        let mut full = PacketInfo::default();
        assert_eq!(r, parse(&buf, port, &mut full));
        assert_eq!(h, full);
        if r.is_ok() {
            assert_eq!(hash::id_payload_head_first(&hb, &buf, &h), hash::id_payload(&buf, &full));
        }
    }
});
