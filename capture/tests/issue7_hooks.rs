//! Issue 7 (overhead work), kernel side: the packet programs parse from a one-read copy of
//! each packet's first bytes, and user space reads the ring buffer in batches. Both are
//! checked against the kernel here: every event a test run makes comes back once, in
//! order, across many wrap-arounds of a small ring, and the kernel's identity of each
//! packet, including packets whose headers run past the copy, is the one user space
//! computes from the whole frame.
//!
//! Kernel tests need root; in CI (`CI` set) a test that cannot run fails instead of
//! skipping (the project rule, as `scripts::testing::kernel_test`).

mod common;
use common::kernel_test;

use capture::{loader::Scope, netns::Netns, testrun::test_run};
use capture_common::{
    abi::{hook, CaptureConfig, PacketEvent},
    hash,
    parse::{parse, PacketInfo, SliceBuf, HEAD_LEN},
};

/// Ethernet + IPv4 + UDP 198.18.0.1:40000 → 198.18.0.2:9, `payload` bytes told apart by `i`.
fn udp4(i: u32, payload: usize) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + payload];
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + 8 + payload) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&(i as u16).to_be_bytes());
    f[22] = 64;
    f[23] = 17;
    f[26..30].copy_from_slice(&[198, 18, 0, 1]);
    f[30..34].copy_from_slice(&[198, 18, 0, 2]);
    f[34..36].copy_from_slice(&40000u16.to_be_bytes());
    f[36..38].copy_from_slice(&9u16.to_be_bytes());
    f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    for (k, b) in f[42..].iter_mut().enumerate() {
        *b = (k as u32 ^ i.wrapping_mul(0x9E37_79B9)) as u8;
    }
    f
}

/// Ethernet + IPv6 with a hop-by-hop header of `ext` bytes + TCP: with a long extension
/// header the TCP header and payload lie past the kernel's copy of the first bytes.
fn tcp6(i: u32, ext: usize, payload: usize) -> Vec<u8> {
    assert!(ext.is_multiple_of(8) && ext >= 8);
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&0x86DDu16.to_be_bytes());
    let plen = ext + 20 + payload;
    f.extend((6u32 << 28 | (i & 0xFFFFF)).to_be_bytes());
    f.extend((plen as u16).to_be_bytes());
    f.extend([0, 64]); // next header: hop-by-hop
    f.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    let mut h = vec![6, (ext / 8 - 1) as u8, 1, (ext - 4) as u8];
    h.resize(ext, 0);
    f.extend(h);
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&443u16.to_be_bytes());
    t[2..4].copy_from_slice(&50000u16.to_be_bytes());
    t[4..8].copy_from_slice(&(0xDEAD_0000 | i).to_be_bytes());
    t[12] = 5 << 4;
    t[13] = 0x18;
    f.extend(t);
    f.extend((0..payload).map(|k| (k as u32 + i) as u8));
    f
}

/// The identity user space gives the whole frame.
fn user_id(frame: &[u8]) -> (u64, PacketInfo) {
    let buf = SliceBuf(frame);
    let mut info = PacketInfo::default();
    parse(&buf, 4789, &mut info).expect("test frame parses");
    (hash::packet_id(&info, &hash::id_payload(&buf, &info)), info)
}

fn event(rec: &[u8]) -> PacketEvent {
    assert_eq!(rec.len(), std::mem::size_of::<PacketEvent>(), "a packet event record");
    // SAFETY: a whole PacketEvent, read unaligned.
    unsafe { std::ptr::read_unaligned(rec.as_ptr().cast()) }
}

#[test]
fn issue7_batched_ring_reader_returns_every_event_in_order_across_wraps() {
    if !kernel_test("issue7_batched_ring_reader_returns_every_event_in_order_across_wraps") {
        return;
    }
    // 64 KiB hold ~680 events: 5,000 wrap the ring seven times.
    let mut scope =
        Scope::load(Netns::current().unwrap(), &CaptureConfig::default(), 64 << 10, 0, &Default::default(), true)
            .unwrap();
    let frames: Vec<Vec<u8>> = (0..5000).map(|i| udp4(i, 16 + (i as usize % 200))).collect();
    let mut got = Vec::new();
    let mut max = 1;
    for (i, f) in frames.iter().enumerate() {
        let fd = scope.program_fd("netlat_tc_out").expect("netlat_tc_out loaded");
        let r = test_run(fd, f, 1).expect("BPF_PROG_TEST_RUN");
        assert_eq!(r.retval as i32, -1, "TC_ACT_UNSPEC");
        // Drain now and then, in batches of varying size: 1, 2, .. 511 records.
        if i % 300 == 299 {
            loop {
                let n = scope.ring.drain(max, |rec| got.push(event(rec)));
                assert!(n <= max, "drain({max}) returned {n}");
                max = max % 511 + 1;
                if n == 0 {
                    break;
                }
            }
        }
    }
    scope.ring.drain(usize::MAX, |rec| got.push(event(rec)));
    assert_eq!(got.len(), frames.len(), "one event per run, none lost or repeated");
    let counts = scope.counts().unwrap();
    assert_eq!(counts[usize::from(hook::TC_EGRESS)].ringbuf_full, 0);
    for (f, e) in frames.iter().zip(&got) {
        let (id, info) = user_id(f);
        assert_eq!(e.pkt_id, id, "kernel and user-space identity, in order");
        assert_eq!((e.hook, e.ip_id, e.payload_len), (hook::TC_EGRESS, info.ip_id, info.payload_len));
    }
}

#[test]
fn issue7_head_copy_parse_gives_the_whole_frame_identity() {
    if !kernel_test("issue7_head_copy_parse_gives_the_whole_frame_identity") {
        return;
    }
    let mut scope =
        Scope::load(Netns::current().unwrap(), &CaptureConfig::default(), 1 << 20, 0, &Default::default(), true)
            .unwrap();
    // Inside the copy, across its end, and past it (a 64-byte hop-by-hop header puts the
    // TCP header at 118..138), shorter than the copy, and an IPv6 header of 200 bytes of
    // extensions; each at XDP, TC ingress and TC egress.
    let frames = [
        udp4(1, 64),
        udp4(2, 3),
        udp4(3, 300),
        tcp6(4, 8, 100),
        tcp6(5, 64, 40),
        tcp6(6, 64, 0),
        tcp6(7, 200, 500),
        tcp6(8, 56, 30),
    ];
    assert!(frames.iter().any(|f| f.len() < HEAD_LEN) && frames.iter().any(|f| f.len() > HEAD_LEN + 100));
    for (name, h) in [("netlat_xdp", hook::XDP), ("netlat_tc_in", hook::TC_INGRESS), ("netlat_tc_out", hook::TC_EGRESS)]
    {
        for f in &frames {
            let fd = scope.program_fd(name).expect("program loaded");
            test_run(fd, f, 1).expect("BPF_PROG_TEST_RUN");
            let mut got = Vec::new();
            scope.ring.drain(usize::MAX, |rec| got.push(event(rec)));
            assert_eq!(got.len(), 1, "{name}: one event for a {}-byte frame", f.len());
            let (id, info) = user_id(f);
            let e = &got[0];
            assert_eq!(e.hook, h);
            assert_eq!(e.pkt_id, id, "{name}: identity of a {}-byte frame", f.len());
            assert_eq!(
                (e.sport, e.dport, e.seq, e.payload_len, e.ip_id),
                (info.sport, info.dport, info.seq, info.payload_len, info.ip_id),
                "{name}: fields of a {}-byte frame",
                f.len()
            );
        }
    }
}
