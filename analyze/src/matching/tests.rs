//! Latency math on hand-made frames, with exact expected figures.

use super::*;

const A: &str = "h1:eth0:tc_egress";
const B: &str = "h2:eth0:xdp";
const C: &str = "h2:NETNS/veth0:tc_ingress";

/// Events as (ts_ns, pkt_id, "host:ifname:hook"), all in namespace 1.
fn frame(rows: &[(i64, u64, &str)]) -> LazyFrame {
    let with_netns: Vec<_> = rows.iter().map(|&(ts, id, p)| (ts, id, 1, p)).collect();
    frame_ns(&with_netns)
}

/// Events as (ts_ns, pkt_id, netns, "host:ifname:hook"), all of one UDP flow.
fn frame_ns(rows: &[(i64, u64, u64, &str)]) -> LazyFrame {
    let with_port: Vec<_> = rows.iter().map(|&(ts, id, ns, p)| (ts, id, ns, p, 6000)).collect();
    frame_flows(&with_port)
}

/// Events as (ts_ns, pkt_id, netns, "host:ifname:hook", UDP destination port).
fn frame_flows(rows: &[(i64, u64, u64, &str, u16)]) -> LazyFrame {
    let part = |i: usize| -> Vec<String> { rows.iter().map(|r| r.3.split(':').nth(i).unwrap().to_owned()).collect() };
    let n = rows.len();
    df!(
        "ts_ns" => rows.iter().map(|r| r.0).collect::<Vec<i64>>(),
        "host" => part(0),
        "netns" => rows.iter().map(|r| r.2).collect::<Vec<u64>>(),
        "ifname" => part(1),
        "hook" => part(2),
        "pkt_id" => rows.iter().map(|r| r.1).collect::<Vec<u64>>(),
        "family" => vec![4u8; n],
        "proto" => vec![17u8; n],
        "saddr" => vec!["198.18.0.1"; n],
        "daddr" => vec!["198.18.0.2"; n],
        "sport" => vec![5000u16; n],
        "dport" => rows.iter().map(|r| r.4).collect::<Vec<u16>>(),
    )
    .unwrap()
    .lazy()
}

/// A pair's name and figures: (from, to, count, [min, p50, p90, p99, max]).
type Fig = (String, String, u64, [i64; 5]);

fn stats(from: &str, to: &str, count: u64, figures: [i64; 5]) -> Fig {
    (from.into(), to.into(), count, figures)
}

fn figs(pairs: &[PairStats]) -> Vec<Fig> {
    pairs
        .iter()
        .map(|p| {
            let s = &p.stats;
            (p.from.clone(), p.to.clone(), s.count, [s.min_ns, s.p50_ns, s.p90_ns, s.p99_ns, s.max_ns])
        })
        .collect()
}

/// [`analyze`] with every capture on one clock.
fn analyze_with(events: LazyFrame, opts: &Options) -> PolarsResult<Analysis> {
    analyze(vec![events], opts, |_| Alignment::same_clock()).map(|(a, _)| a)
}

fn analyze_same(events: LazyFrame) -> PolarsResult<Analysis> {
    analyze_with(events, &Options::default())
}

/// One packet per latency: sent at A, seen at B `latency` later. Rows are emitted in
/// reverse order so that nothing relies on the input being sorted.
fn hops(latencies: &[i64]) -> Vec<(i64, u64, &'static str)> {
    let mut rows = Vec::new();
    for (i, lat) in latencies.iter().enumerate() {
        let t0 = 1_000_000 * (i as i64 + 1);
        rows.push((t0, i as u64 + 1, A));
        rows.push((t0 + lat, i as u64 + 1, B));
    }
    rows.reverse();
    rows
}

#[test]
fn ten_hops_give_exact_nearest_rank_percentiles() {
    let lat: Vec<i64> = (1..=10).map(|i| i * 1000).collect();
    let a = analyze_same(frame(&hops(&lat))).unwrap();
    // Ranks: p50 → ⌈5⌉ = 5, p90 → ⌈9⌉ = 9, p99 → ⌈9.9⌉ = 10.
    assert_eq!(figs(&a.pairs), vec![stats(A, B, 10, [1000, 5000, 9000, 10_000, 10_000])]);
    assert_eq!((a.ambiguous, a.events, a.ids), (0, 20, 10));
    assert!(a.unmatched.is_empty());
}

#[test]
fn ranks_are_computed_in_integers() {
    // 70 values 1..=70 given in scrambled order: p90 is rank 63 (float ⌈0.9·70⌉ would be 64),
    // p50 rank 35, p99 rank ⌈69.3⌉ = 70.
    let lat: Vec<i64> = (0..70).map(|i| (i * 37) % 70 + 1).collect();
    let a = analyze_same(frame(&hops(&lat))).unwrap();
    assert_eq!(figs(&a.pairs), vec![stats(A, B, 70, [1, 35, 63, 70, 70])]);
}

#[test]
fn small_groups() {
    let a = analyze_same(frame(&hops(&[7]))).unwrap();
    assert_eq!(figs(&a.pairs), vec![stats(A, B, 1, [7, 7, 7, 7, 7])]);
    // n = 2: p50 is rank 1, p90 rank ⌈1.8⌉ = 2.
    let a = analyze_same(frame(&hops(&[20, 10]))).unwrap();
    assert_eq!(figs(&a.pairs), vec![stats(A, B, 2, [10, 10, 20, 20, 20])]);
}

#[test]
fn only_consecutive_observations_pair_up() {
    let rows = [
        // id 1: A → B → C
        (100, 1, A),
        (350, 1, C),
        (200, 1, B),
        // id 2: C → A, a different ordered pair than A → C
        (1000, 2, C),
        (1500, 2, A),
    ];
    let a = analyze_same(frame(&rows)).unwrap();
    assert_eq!(
        figs(&a.pairs),
        vec![
            // Equal counts: by name, and "h2:NETNS/…" sorts before "h2:eth0…".
            stats(A, B, 1, [100; 5]),
            stats(C, A, 1, [500; 5]),
            stats(B, C, 1, [150; 5]),
        ]
    );
}

#[test]
fn ambiguous_ids_are_excluded_and_counted_and_singles_are_unmatched() {
    let rows = [
        // id 1: twice at A (a retransmission), once at B: ambiguous
        (10, 1, A),
        (20, 1, A),
        (30, 1, B),
        // id 2: only at A, id 5: only at A, id 6: only at B: unmatched
        (40, 2, A),
        (45, 5, A),
        (46, 6, B),
        // id 3: twice at B and nowhere else: ambiguous, not unmatched
        (50, 3, B),
        (60, 3, B),
        // id 4: a clean hop
        (70, 4, A),
        (95, 4, B),
    ];
    let a = analyze_same(frame(&rows)).unwrap();
    assert_eq!(figs(&a.pairs), vec![stats(A, B, 1, [25; 5])]);
    assert_eq!(a.ambiguous, 2);
    assert_eq!(a.unmatched, vec![Unmatched { point: A.into(), ids: 2 }, Unmatched { point: B.into(), ids: 1 }]);
    assert_eq!((a.events, a.ids), (10, 6));
}

#[test]
fn pairs_sort_by_count_then_names() {
    let mut rows = Vec::new();
    let mut id = 0;
    let mut hop = |rows: &mut Vec<_>, from: &'static str, to: &'static str| {
        id += 1;
        rows.push((id * 100, id as u64, from));
        rows.push((id * 100 + 5, id as u64, to));
    };
    // B and C are points of one host, both inbound: either order can happen.
    for _ in 0..2 {
        hop(&mut rows, C, B);
        hop(&mut rows, B, C);
    }
    for _ in 0..3 {
        hop(&mut rows, A, B);
    }
    let a = analyze_same(frame(&rows)).unwrap();
    let order: Vec<_> = a.pairs.iter().map(|p| (p.from.as_str(), p.to.as_str(), p.stats.count)).collect();
    assert_eq!(order, vec![(A, B, 3), (C, B, 2), (B, C, 2)]);
}

#[test]
fn equal_timestamps_pair_in_point_order_with_zero_latency() {
    let a = analyze_same(frame(&[(5, 1, B), (5, 1, A)])).unwrap();
    assert_eq!(figs(&a.pairs), vec![stats(A, B, 1, [0; 5])]);
}

#[test]
fn points_differing_only_in_netns_get_distinct_labels() {
    let a = analyze_same(frame_ns(&[(0, 1, 10, A), (40, 1, 11, A)])).unwrap();
    assert_eq!(figs(&a.pairs), vec![stats("h1:eth0:tc_egress[netns 10]", "h1:eth0:tc_egress[netns 11]", 1, [40; 5])]);
}

#[test]
fn empty_input_gives_empty_analysis() {
    let a = analyze_same(frame(&[])).unwrap();
    assert!(a.pairs.is_empty() && a.paths.is_empty() && a.unmatched.is_empty());
    assert_eq!((a.events, a.ids, a.ambiguous), (0, 0, 0));
}

#[test]
fn large_scrambled_input_matches_a_reference() {
    large_scrambled(&Options::default());
    // The same through spill files, in 5 buckets.
    let tmp = tempfile::tempdir().unwrap();
    large_scrambled(&Options { bucket_rows: 25_000, spill_dir: Some(tmp.path().to_owned()), ..Default::default() });
}

fn large_scrambled(opts: &Options) {
    // Big enough for polars' parallel, partitioned code paths, which must keep each
    // group's rows in order for the rank lookups to be right.
    // Pairs in causal order: h1 (A) sends, h2 (B, C) receives.
    let pairs = [(A, B), (B, C), (A, C)];
    let mut rows = Vec::new();
    let mut expected: Vec<Vec<i64>> = vec![Vec::new(); pairs.len()];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for id in 1..=60_000u64 {
        // xorshift: scrambles both latencies and row order
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = (id % 3) as usize;
        let lat = (x % 1_000_000) as i64;
        let t0 = (x >> 24) as i64 % 1_000_000_000;
        rows.push((x, (t0, id, pairs[k].0)));
        rows.push((x.rotate_left(29), (t0 + lat, id, pairs[k].1)));
        expected[k].push(lat);
    }
    rows.sort_unstable_by_key(|r| r.0);
    let rows: Vec<_> = rows.into_iter().map(|r| r.1).collect();
    let a = analyze_with(frame(&rows), opts).unwrap();

    let rank = |v: &[i64], pct: usize| v[(pct * v.len()).div_ceil(100) - 1];
    let mut want: Vec<Fig> = pairs
        .iter()
        .zip(&mut expected)
        .map(|(&(from, to), v)| {
            v.sort_unstable();
            let figures = [v[0], rank(v, 50), rank(v, 90), rank(v, 99), v[v.len() - 1]];
            stats(from, to, v.len() as u64, figures)
        })
        .collect();
    want.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(figs(&a.pairs), want);
}

/// Two UDP flows (ports 6000 and 7000) from A through B to C; t in ns:
/// * 6000: packets 1..=10 A→B 1000·i, B→C 100·i; 11, 12 reach B only; 13 stays at A;
/// * 7000: packets 21..=24 A→B 50; 25 stays at A.
fn two_flows() -> LazyFrame {
    let mut rows = Vec::new();
    for i in 1..=12i64 {
        let t = i * 100_000;
        rows.push((t, i as u64, 1, A, 6000));
        rows.push((t + 1000 * i, i as u64, 1, B, 6000));
        if i <= 10 {
            rows.push((t + 1100 * i, i as u64, 1, C, 6000));
        }
    }
    rows.push((1_300_000, 13, 1, A, 6000));
    for i in 21..=24u64 {
        rows.push((i as i64 * 100_000, i, 1, A, 7000));
        rows.push((i as i64 * 100_000 + 50, i, 1, B, 7000));
    }
    rows.push((2_500_000, 25, 1, A, 7000));
    frame_flows(&rows)
}

#[test]
fn paths_follow_each_flow_and_count_loss_where_it_happened() {
    let a = analyze_same(two_flows()).unwrap();
    let names: Vec<&str> = a.paths.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["h1>h2", "h1>h2#2"]);
    let (short, long) = (&a.paths[0], &a.paths[1]);
    assert_eq!(short.flows, ["udp 198.18.0.1:5000 > 198.18.0.2:7000"]);
    assert_eq!((short.packets, short.complete, short.lost, short.off_path), (5, 4, 1, 0));
    assert_eq!(short.end_to_end.p50_ns, 50);
    assert_eq!(long.stations, [A, B, C]);
    assert_eq!((long.packets, long.complete, long.lost), (13, 10, 3));
    assert_eq!([long.hops[0].lost, long.hops[1].lost], [1, 2]);
    // End to end over the 10 complete packets: 1100·i; nearest-rank p50 = 5th, p90 = 9th.
    let e = long.end_to_end;
    assert_eq!((e.count, e.min_ns, e.p50_ns, e.p90_ns, e.max_ns, e.mean_ns), (10, 1100, 5500, 9900, 11_000, 6050));
    // Hop 0 has 12 packets (the two lost later passed it): 1000..=12000.
    assert_eq!((long.hops[0].stats.count, long.hops[0].stats.max_ns), (12, 12_000));
    assert_eq!(long.hops[1].stats.count, 10);
    assert_eq!(long.hops.iter().map(|h| h.segment.as_str()).collect::<Vec<_>>(), ["network", "host"]);
    // Per pair: the two flows' A→B hops together, and their losses.
    let ab = a.pairs.iter().find(|p| p.from == A && p.to == B).unwrap();
    assert_eq!((ab.stats.count, ab.lost), (16, 2));
    let bc = a.pairs.iter().find(|p| p.from == B && p.to == C).unwrap();
    assert_eq!((bc.stats.count, bc.lost), (10, 2));
    assert_eq!([long.hops[0].stats.mean_ns, long.hops[1].stats.mean_ns], [6500, 550]);
}

#[test]
fn filter_hosts_and_time_select_packets() {
    let only = |sel: Selection| {
        let opts = Options { selection: sel, ..Default::default() };
        analyze_with(two_flows(), &opts).unwrap()
    };
    let f = capture_common::compile::compile("udp and dst port 7000").unwrap();
    let a = only(Selection { filter: Some(f), ..Default::default() });
    assert_eq!(figs(&a.pairs), vec![stats(A, B, 4, [50; 5])]);
    assert_eq!((a.ids, a.unmatched[0].ids), (5, 1));
    // Only h1's point: nothing pairs, every packet is unmatched there.
    let a = only(Selection { hosts: vec!["h1".into()], ..Default::default() });
    assert!(a.pairs.is_empty());
    assert_eq!(a.unmatched, vec![Unmatched { point: A.into(), ids: 18 }]);
    // First seen 0.5..1.0 ms after the first event (t0 = 100 µs): packets 6..=10.
    let a = only(Selection { since_ns: Some(500_000), until_ns: Some(900_000), ..Default::default() });
    assert_eq!(a.ids, 5);
    assert_eq!(figs(&a.pairs)[0], stats(A, B, 5, [6000, 8000, 10_000, 10_000, 10_000]));
}

#[test]
fn per_flow_and_per_window_tables() {
    let detail = Detail { by_flow: true, window_ns: Some(1_000_000), hop_rows: true };
    let a = analyze_with(two_flows(), &Options { detail, ..Default::default() }).unwrap();
    let flows: Vec<(&str, &str, u64)> =
        a.flow_pairs.iter().map(|f| (f.flow.as_str(), f.pair.from.as_str(), f.pair.stats.count)).collect();
    assert_eq!(
        flows,
        [
            ("udp 198.18.0.1:5000 > 198.18.0.2:6000", A, 12),
            ("udp 198.18.0.1:5000 > 198.18.0.2:6000", B, 10),
            ("udp 198.18.0.1:5000 > 198.18.0.2:7000", A, 4),
        ]
    );
    // Windows of 1 ms from t0 = 100 µs: A→B hops start at 0.1..1.2 ms (6000) and 2.1..2.4
    // ms (7000): windows 0 (i = 1..=10), 1 (i = 11, 12) and 2 (7000).
    let ab: Vec<(i64, u64)> =
        a.windows.iter().filter(|w| w.pair.from == A).map(|w| (w.start_ns, w.pair.stats.count)).collect();
    assert_eq!(ab, [(0, 10), (1_000_000, 2), (2_000_000, 4)]);
    // One record per hop: 12 + 10 + 4.
    assert_eq!(a.rows.latency.len(), 26);
    assert_eq!(a.rows.hop.iter().filter(|h| **h == Some(1)).count(), 10);
}

/// Inputs larger than the memory limit are matched bucket by bucket from spill files, and
/// give exactly the same tables.
#[test]
fn spilled_buckets_give_the_same_analysis() {
    let detail = Detail { by_flow: true, window_ns: Some(300_000), hop_rows: true };
    let whole = analyze_with(two_flows(), &Options { detail, ..Default::default() }).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options { detail, bucket_rows: 7, spill_dir: Some(tmp.path().to_owned()), ..Default::default() };
    let split = analyze_with(two_flows(), &opts).unwrap();
    assert_eq!(split.pairs, whole.pairs);
    assert_eq!(split.paths, whole.paths);
    assert_eq!(split.flow_pairs, whole.flow_pairs);
    assert_eq!(split.windows, whole.windows);
    assert_eq!(split.unmatched, whole.unmatched);
    assert_eq!(
        (split.events, split.ids, split.ambiguous, split.t0_ns),
        (whole.events, whole.ids, whole.ambiguous, whole.t0_ns)
    );
    let sorted = |a: &Analysis| {
        let mut v: Vec<(u64, i64)> = a.rows.pkt_id.iter().copied().zip(a.rows.latency.iter().copied()).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&split), sorted(&whole));
    // The spill folder is removed afterwards.
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// Start of the byte-mode tests' timestamps.
const T_BYTES: i64 = 1_000_000_000;

/// TCP rows as (ts_ns, "host:ifname:hook", tcp_seq, payload_len), all of one flow, with
/// packet ids that match nowhere (as socket rows' ids do not), each a trajectory knot.
fn tcp_frame(rows: &[(i64, &str, u32, u32)]) -> LazyFrame {
    let part = |i: usize| -> Vec<String> { rows.iter().map(|r| r.1.split(':').nth(i).unwrap().to_owned()).collect() };
    let n = rows.len();
    df!(
        "ts_ns" => rows.iter().map(|r| r.0).collect::<Vec<i64>>(),
        "host" => part(0),
        "netns" => vec![1u64; n],
        "ifname" => part(1),
        "hook" => part(2),
        // Multiples of KNOT_SAMPLE: every row is a knot of its flow's trajectory.
        "pkt_id" => (1..=n as u64).map(|i| i * crate::tcpbytes::KNOT_SAMPLE).collect::<Vec<u64>>(),
        "family" => vec![4u8; n],
        "proto" => vec![6u8; n],
        "saddr" => vec!["198.18.0.1"; n],
        "daddr" => vec!["198.18.0.2"; n],
        "sport" => vec![40000u16; n],
        "dport" => vec![6000u16; n],
        "tcp_seq" => rows.iter().map(|r| r.2).collect::<Vec<u32>>(),
        "payload_len" => rows.iter().map(|r| r.3).collect::<Vec<u32>>(),
    )
    .unwrap()
    .lazy()
}

/// One send of 2000 bytes leaves as two skbs of 1000 and is read at once: each tracked
/// byte (1024 and 2048, stride 1024) gets the times of the rows that carried it.
#[test]
fn issue4_tcp_bytes_are_followed_through_ranges_of_any_split() {
    let rows = [
        (T_BYTES, "h1:-:sock_send", 1000, 2000),
        (T_BYTES + 10, "h1:eth0:tc_egress", 1000, 1000),
        (T_BYTES + 20, "h1:eth0:tc_egress", 2000, 1000),
        (T_BYTES + 100, "h2:-:sock_recv", 1000, 2000),
        // A pure ACK: no bytes, kept as a packet (seen once: unmatched).
        (T_BYTES + 50, "h2:eth0:tc_egress", 5000, 0),
    ];
    let opts = Options { tcp: TcpUnit::Auto, tcp_stride: 1024, ..Default::default() };
    let a = analyze_with(tcp_frame(&rows), &opts).unwrap();
    assert_eq!(a.tcp_stride, Some(1024));
    assert_eq!(
        figs(&a.pairs),
        [
            stats("h1:-:sock_send", "h1:eth0:tc_egress", 2, [10, 10, 20, 20, 20]),
            stats("h1:eth0:tc_egress", "h2:-:sock_recv", 2, [80, 80, 90, 90, 90]),
        ]
    );
    assert_eq!(a.paths[0].end_to_end.count, 2);
    assert_eq!(a.paths[0].end_to_end.max_ns, 100);
    assert!(a.notes.iter().any(|n| n.contains("divisible by 1024")), "{:?}", a.notes);
    // Per packet, nothing matches: the socket rows' ids are their own.
    let packets = Options { tcp: TcpUnit::Packets, ..Default::default() };
    let a = analyze_with(tcp_frame(&rows), &packets).unwrap();
    assert!(a.pairs.is_empty() && a.tcp_stride.is_none());
}

/// A stride of 1 follows every byte; positions wrap at 2^32 within one range.
#[test]
fn issue4_tcp_bytes_wrap_with_the_sequence_space() {
    let seq = u32::MAX - 9; // 10 bytes before the wrap, 10 after.
    let rows = [
        (T_BYTES, "h1:eth0:tc_egress", seq, 20),
        (T_BYTES + 7, "h2:eth0:xdp", seq, 10),
        (T_BYTES + 9, "h2:eth0:xdp", 0, 10),
    ];
    let opts = Options { tcp: TcpUnit::Bytes, tcp_stride: 1, ..Default::default() };
    let a = analyze_with(tcp_frame(&rows), &opts).unwrap();
    assert_eq!(figs(&a.pairs), [stats("h1:eth0:tc_egress", "h2:eth0:xdp", 20, [7, 7, 9, 9, 9])]);
}

/// A flow that sends 12 GiB reuses each 32-bit sequence number three times: the bytes of
/// each pass are told apart by when they were seen (the flow's trajectory), not left out
/// as ambiguous. Each pass has its own latency, so a mix-up would show.
#[test]
fn issue4_tcp_bytes_past_four_gib_are_told_apart_by_time() {
    const GIB: u32 = 1 << 30;
    const SECOND: i64 = 1_000_000_000;
    let start = 12_345u32;
    // One 100-byte segment per GiB sent (a second apart), seen at the sender's egress and
    // 1 µs + 1 ns per GiB later at the receiver; 12 GiB: three passes over the space.
    let mut rows = Vec::new();
    for g in 0..12u32 {
        let t = T_BYTES + i64::from(g) * SECOND;
        let seq = start.wrapping_add(g.wrapping_mul(GIB));
        rows.push((t, "h1:eth0:tc_egress", seq, 100));
        rows.push((t + 1000 + i64::from(g), "h2:eth0:xdp", seq, 100));
    }
    let opts = Options { tcp: TcpUnit::Bytes, tcp_stride: 1, ..Default::default() };
    let a = analyze_with(tcp_frame(&rows), &opts).unwrap();
    // Every byte of all 12 segments, none ambiguous; latencies 1000..1011 ns, 100 bytes each (p90: byte 1080 of 1200, the 11th segment).
    assert_eq!(a.ambiguous, 0);
    assert_eq!(figs(&a.pairs), [stats("h1:eth0:tc_egress", "h2:eth0:xdp", 1200, [1000, 1005, 1010, 1011, 1011])]);
    assert_eq!(a.paths[0].end_to_end.count, 1200);
}

/// In byte mode one event is a row per tracked position: an input of few events but many
/// positions is sized by its rows and spilled past the memory limit, with the same result.
#[test]
fn issue4_byte_mode_spills_by_rows_not_events() {
    // 4 events, 16,000 tracked positions (stride 1).
    let rows = [
        (T_BYTES, "h1:eth0:tc_egress", 1000, 8000),
        (T_BYTES + 10, "h1:eth0:tc_egress", 9000, 8000),
        (T_BYTES + 30, "h2:eth0:xdp", 1000, 8000),
        (T_BYTES + 40, "h2:eth0:xdp", 9000, 8000),
    ];
    let opts = Options { tcp: TcpUnit::Bytes, tcp_stride: 1, ..Default::default() };
    let whole = analyze_with(tcp_frame(&rows), &opts).unwrap();
    assert_eq!(whole.buckets, 1);
    let tmp = tempfile::tempdir().unwrap();
    let limited = Options { bucket_rows: 1000, spill_dir: Some(tmp.path().to_owned()), ..opts };
    let split = analyze_with(tcp_frame(&rows), &limited).unwrap();
    assert!(split.buckets >= 16, "{} buckets for 32,000 rows of at most 1,000", split.buckets);
    assert_eq!(figs(&split.pairs), [stats("h1:eth0:tc_egress", "h2:eth0:xdp", 16_000, [30, 30, 30, 30, 30])]);
    assert_eq!(split.pairs, whole.pairs);
}

/// Regression (CI on 9c22689): veth hands a packet to its peer inside the sender's
/// transmit call, so the peer's XDP can fire before the sender's `net_dev_xmit`. Such a
/// packet took the path: it is complete, counted as crossed, with a negative hop.
#[test]
fn packets_seen_by_two_hosts_at_once_stay_on_their_path() {
    const D: &str = "h1:eth0:net_dev_xmit";
    let mut rows = Vec::new();
    for i in 1..=300u64 {
        let t = i as i64 * 100_000;
        // A +100 D +200 B +300 C; packet 300: B 50 ns before D.
        let d = if i == 300 { 250 } else { 100 };
        rows.extend([(t, i, A), (t + d, i, D), (t + 200, i, B), (t + 500, i, C)]);
    }
    let a = analyze_same(frame(&rows)).unwrap();
    assert_eq!(a.paths.len(), 1);
    let p = &a.paths[0];
    assert_eq!(p.stations, [A, D, B, C]);
    assert_eq!((p.packets, p.complete, p.lost, p.off_path, p.crossed), (300, 300, 0, 0, 1));
    let h: Vec<(u64, i64, i64)> = p.hops.iter().map(|h| (h.stats.count, h.stats.min_ns, h.stats.max_ns)).collect();
    assert_eq!(h, [(300, 100, 250), (300, -50, 100), (300, 300, 300)]);
    assert_eq!((p.end_to_end.min_ns, p.end_to_end.max_ns), (500, 500));
    // The pairs table follows the path's order too: no B→D pair.
    assert!(a.pairs.iter().all(|x| !(x.from == B && x.to == D)));
    let text = crate::report::crossed_note(p.crossed);
    assert!(text.starts_with(" (1 seen out of the path's order across hosts"), "{text}");
}
