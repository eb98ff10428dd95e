//! The packet parser the kernel runs, on arbitrary frames: it must never
//! panic, and what it reports must lie inside the frame.
#![no_main]

use capture_common::{
    abi::ID_PAYLOAD_BYTES,
    hash,
    parse::{parse, PacketBuf, PacketInfo, SliceBuf},
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
        let end = info.payload_off as usize + info.payload_len as usize;
        assert!(info.payload_off as usize <= frame.len(), "payload offset past the frame");
        assert!(end <= frame.len() || info.flags & capture_common::abi::flags::L4_TRUNCATED != 0 || end <= frame.len() + 65_535);
        assert!(info.family == 4 || info.family == 6);
        let payload = buf.load::<ID_PAYLOAD_BYTES>(info.payload_off).unwrap_or_default();
        let id = hash::packet_id(&info, &payload);
        assert_ne!(id, 0);
    }
});
