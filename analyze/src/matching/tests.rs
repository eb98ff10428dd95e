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

/// Events as (ts_ns, pkt_id, netns, "host:ifname:hook").
fn frame_ns(rows: &[(i64, u64, u64, &str)]) -> LazyFrame {
    let part = |i: usize| -> Vec<String> { rows.iter().map(|r| r.3.split(':').nth(i).unwrap().to_owned()).collect() };
    df!(
        "ts_ns" => rows.iter().map(|r| r.0).collect::<Vec<i64>>(),
        "host" => part(0),
        "netns" => rows.iter().map(|r| r.2).collect::<Vec<u64>>(),
        "ifname" => part(1),
        "hook" => part(2),
        "pkt_id" => rows.iter().map(|r| r.1).collect::<Vec<u64>>(),
    )
    .unwrap()
    .lazy()
}

fn stats(from: &str, to: &str, count: u64, [min, p50, p90, p99, max]: [i64; 5]) -> PairStats {
    PairStats {
        from: from.into(),
        to: to.into(),
        count,
        min_ns: min,
        p50_ns: p50,
        p90_ns: p90,
        p99_ns: p99,
        max_ns: max,
        bound_ns: Some(0),
    }
}

/// [`analyze`] with every capture on one clock.
fn analyze_same(events: LazyFrame) -> PolarsResult<Analysis> {
    analyze(events, |_| Alignment::same_clock()).map(|(a, _)| a)
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
    assert_eq!(a.pairs, vec![stats(A, B, 10, [1000, 5000, 9000, 10_000, 10_000])]);
    assert_eq!((a.ambiguous, a.events, a.ids), (0, 20, 10));
    assert!(a.unmatched.is_empty());
}

#[test]
fn ranks_are_computed_in_integers() {
    // 70 values 1..=70 given in scrambled order: p90 is rank 63 (float ⌈0.9·70⌉ would be 64),
    // p50 rank 35, p99 rank ⌈69.3⌉ = 70.
    let lat: Vec<i64> = (0..70).map(|i| (i * 37) % 70 + 1).collect();
    let a = analyze_same(frame(&hops(&lat))).unwrap();
    assert_eq!(a.pairs, vec![stats(A, B, 70, [1, 35, 63, 70, 70])]);
}

#[test]
fn small_groups() {
    let a = analyze_same(frame(&hops(&[7]))).unwrap();
    assert_eq!(a.pairs, vec![stats(A, B, 1, [7, 7, 7, 7, 7])]);
    // n = 2: p50 is rank 1, p90 rank ⌈1.8⌉ = 2.
    let a = analyze_same(frame(&hops(&[20, 10]))).unwrap();
    assert_eq!(a.pairs, vec![stats(A, B, 2, [10, 10, 20, 20, 20])]);
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
        a.pairs,
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
    assert_eq!(a.pairs, vec![stats(A, B, 1, [25; 5])]);
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
    for _ in 0..2 {
        hop(&mut rows, B, A);
        hop(&mut rows, A, B);
    }
    for _ in 0..3 {
        hop(&mut rows, C, B);
    }
    let a = analyze_same(frame(&rows)).unwrap();
    let order: Vec<_> = a.pairs.iter().map(|p| (p.from.as_str(), p.to.as_str(), p.count)).collect();
    assert_eq!(order, vec![(C, B, 3), (A, B, 2), (B, A, 2)]);
}

#[test]
fn equal_timestamps_pair_in_point_order_with_zero_latency() {
    let a = analyze_same(frame(&[(5, 1, B), (5, 1, A)])).unwrap();
    assert_eq!(a.pairs, vec![stats(A, B, 1, [0; 5])]);
}

#[test]
fn points_differing_only_in_netns_get_distinct_labels() {
    let a = analyze_same(frame_ns(&[(0, 1, 10, A), (40, 1, 11, A)])).unwrap();
    assert_eq!(a.pairs, vec![stats("h1:eth0:tc_egress[netns 10]", "h1:eth0:tc_egress[netns 11]", 1, [40; 5])]);
}

#[test]
fn empty_input_gives_empty_analysis() {
    let a = analyze_same(frame(&[])).unwrap();
    assert_eq!(a, Analysis::default());
}

#[test]
fn large_scrambled_input_matches_a_reference() {
    // Big enough for polars' parallel, partitioned code paths, which must keep each
    // group's rows in order for the rank lookups to be right.
    let pairs = [(A, B), (B, C), (C, A)];
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
    let a = analyze_same(frame(&rows)).unwrap();

    let rank = |v: &[i64], pct: usize| v[(pct * v.len()).div_ceil(100) - 1];
    let mut want: Vec<PairStats> = pairs
        .iter()
        .zip(&mut expected)
        .map(|(&(from, to), v)| {
            v.sort_unstable();
            let figures = [v[0], rank(v, 50), rank(v, 90), rank(v, 99), v[v.len() - 1]];
            stats(from, to, v.len() as u64, figures)
        })
        .collect();
    want.sort_by(|a, b| a.from.cmp(&b.from));
    assert_eq!(a.pairs, want);
}
