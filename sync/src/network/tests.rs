use super::*;
use crate::{
    pair::tests_support::exchanges,
    samples::{Hook, OneWay},
    sim::{true_offset, SimClock},
    traffic::Observation,
};

fn stamps_of(msgs: &[OneWay], session: u64) -> Vec<Stamp> {
    msgs.iter()
        .flat_map(|w| {
            let s = |host, ts, hook| Stamp {
                host,
                ts_ns: ts,
                hook,
                kind: w.kind,
                idx: w.idx,
                session,
                seq: w.seq,
                daddr: format!("198.18.0.{}", w.to + 1),
            };
            [s(w.from, w.tx, Hook::TcEgress), s(w.to, w.rx, Hook::Xdp)]
        })
        .collect()
}

fn pair(clocks: &[SimClock], a: usize, b: usize, secs: i64, seed: u64) -> Vec<Stamp> {
    pair_with(clocks, a, b, secs, 3000.0, seed)
}

/// [`pair`] with minimum one-way delays of `d` ns.
fn pair_with(clocks: &[SimClock], a: usize, b: usize, secs: i64, d: f64, seed: u64) -> Vec<Stamp> {
    let msgs = exchanges(&clocks[a], &clocks[b], secs, d, 2000.0, seed);
    let remap: Vec<OneWay> = msgs
        .into_iter()
        .map(|mut w| {
            w.from = if w.from == 0 { a } else { b };
            w.to = if w.to == 0 { a } else { b };
            w
        })
        .collect();
    stamps_of(&remap, seed)
}

fn clocks() -> Vec<SimClock> {
    let r = 1_000_000_000_000;
    [(0, 0.0), (500_000_000, 50.0), (-500_000_000, -50.0)]
        .into_iter()
        .map(|(o, d)| SimClock { offset_ns: o, drift_ppm: d, ref_ns: r, ..Default::default() })
        .collect()
}

fn check(res: &SyncResult, clocks: &[SimClock], names: &[String], reference: usize, limit: f64) {
    for (h, c) in clocks.iter().enumerate() {
        let map = res.map(&names[h]).unwrap_or_else(|| panic!("{} not aligned: {res:#?}", names[h]));
        for s in 0..60 {
            let t = c.apply(1_000_000_000_000 + s * 1_000_000_000);
            let err = map.offset(t) - true_offset(&clocks[reference], c, t);
            assert!(err.abs() < limit, "{} at {s} s: error {err} ns", names[h]);
        }
    }
}

#[test]
fn three_hosts_full_mesh_agree_with_the_truth() {
    let c = clocks();
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let mut st = pair(&c, 0, 1, 60, 1);
    st.extend(pair(&c, 0, 2, 60, 2));
    st.extend(pair(&c, 1, 2, 60, 3));
    let res = estimate(&names, &st, &mut [], &Config::default(), None);
    assert_eq!(res.reference.as_deref(), Some("a"));
    assert_eq!(res.edges.len(), 3);
    check(&res, &c, &names, 0, 300.0);
    let b = res.hosts.iter().find(|h| h.host == "b").unwrap();
    assert!((b.drift_ppm - 50.0).abs() < 0.01, "{}", b.drift_ppm);
    assert!(b.bound_ns > 2000.0 && b.bound_ns < 4000.0, "bound {}", b.bound_ns);
    // Loops close to within the noise.
    assert!(
        res.edges.iter().all(|e| e.loop_residual_ns < 300.0),
        "{:?}",
        res.edges.iter().map(|e| e.loop_residual_ns).collect::<Vec<_>>()
    );
}

#[test]
fn a_chain_is_aligned_through_the_middle_host_and_any_reference() {
    let c = clocks();
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let mut st = pair(&c, 0, 1, 60, 4);
    st.extend(pair(&c, 1, 2, 60, 5));
    for reference in [0, 2] {
        let res = estimate(&names, &st, &mut [], &Config::default(), Some(&names[reference]));
        check(&res, &c, &names, reference, 500.0);
        let far = if reference == 0 { "c" } else { "a" };
        let h = res.hosts.iter().find(|h| h.host == far).unwrap();
        assert_eq!(h.via.len(), 2, "{h:?}");
        // Two hops: the bounds add.
        assert!(h.bound_ns > 5000.0, "{h:?}");
    }
}

#[test]
fn hosts_without_sync_data_are_named_with_a_reason() {
    let c = clocks();
    let names: Vec<String> = ["a", "b", "lonely"].map(String::from).to_vec();
    let st = pair(&c, 0, 1, 20, 6);
    let res = estimate(&names, &st, &mut [], &Config::default(), None);
    let lonely = res.hosts.iter().find(|h| h.host == "lonely").unwrap();
    assert!(lonely.map.is_none());
    assert!(lonely.problem.as_deref().unwrap().contains("no sync exchanges"), "{lonely:?}");
    let none = estimate(&names, &[], &mut [], &Config::default(), None);
    assert!(none.reference.is_none());
    assert!(none.hosts.iter().all(|h| h.problem.as_deref().unwrap().contains("no host has usable sync data")));
}

/// Regression (CI on 1242cd9): b was aligned through c, whose pairs with a and b bracket a
/// 1 ms clock step, because those pairs' bands were narrower than a-b's. Where the two
/// pairs placed the step differently, b's latencies were 1 ms off. A pair's steps now count
/// at their size in the choice of path.
#[test]
fn a_host_is_not_aligned_through_a_pair_with_a_clock_step() {
    let mut c = clocks();
    c[2].step_ns = 1_000_000;
    c[2].step_after_ns = 30_050_000_000;
    let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let mut st = pair_with(&c, 0, 1, 60, 8000.0, 7);
    st.extend(pair_with(&c, 0, 2, 60, 1000.0, 8));
    st.extend(pair_with(&c, 1, 2, 60, 1000.0, 9));
    let res = estimate(&names, &st, &mut [], &Config::default(), Some("a"));
    assert!(res.edges.iter().filter(|e| !e.fit.steps.is_empty()).count() == 2, "{:?}", res.edges);
    let b = res.hosts.iter().find(|h| h.host == "b").unwrap();
    assert_eq!(b.via, ["a"], "{b:?}");
    let cc = res.hosts.iter().find(|h| h.host == "c").unwrap();
    assert_eq!(cc.via, ["a"], "{cc:?}");
}

/// Data packets a → b every ms, `d` ns on the wire: their stamps on each host's clock.
fn traffic(clocks: &[SimClock], a: usize, b: usize, secs: i64, d: i64) -> Vec<Observation> {
    let t0 = 1_000_000_000_000i64;
    (0..secs * 1000)
        .flat_map(|i| {
            let t = t0 + i * 1_000_000;
            let id = (a as u64) << 40 | i as u64;
            [
                Observation { pkt_id: id, host: a, point: 0, egress: true, ts_ns: clocks[a].apply(t) },
                Observation { pkt_id: id, host: b, point: 1, egress: false, ts_ns: clocks[b].apply(t + d) },
            ]
        })
        .collect()
}

/// Issue 22: data packets one way tighten the pair's band to their transit plus the
/// probes' the other way, and the estimate stays right.
#[test]
fn traffic_samples_tighten_the_band() {
    let c = clocks();
    let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
    let st = pair(&c, 0, 1, 30, 10);
    let probes_only = estimate(&names, &st, &mut [], &Config::default(), None);
    let mut obs = traffic(&c, 0, 1, 30, 500);
    let with = estimate(&names, &st, &mut obs, &Config::default(), None);
    // The minimum delays differ (0.5 against 3 µs): the middle of the band is half the
    // difference, 1.25 µs, off; within the half band.
    check(&with, &c[..2], &names, 0, 1300.0);
    let band = |r: &SyncResult| r.edges[0].fit.windows.iter().map(|w| w.half_band_ns).fold(f64::INFINITY, f64::min);
    // Probes: 3 µs each way; traffic: 0.5 µs one way.
    assert!((band(&probes_only) - 3000.0).abs() < 300.0, "{}", band(&probes_only));
    assert!((band(&with) - 1750.0).abs() < 300.0, "{}", band(&with));
    assert_eq!((with.traffic.packets, with.traffic.kept), (30_000, 30_000));
    assert!(with.contradicted.is_empty());
}

/// Packets taken the wrong way round (a host that only saw them leave, though it forwarded
/// them) contradict the probes: the pair is fitted on its probes alone, and said so.
#[test]
fn traffic_that_contradicts_the_probes_is_left_out() {
    let c = clocks();
    let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
    let st = pair(&c, 0, 1, 30, 11);
    // b's packets reached a 20 µs before b stamped them leaving.
    let mut obs = traffic(&c, 1, 0, 30, -20_000);
    let res = estimate(&names, &st, &mut obs, &Config::default(), None);
    assert_eq!(res.contradicted, vec![("a".to_owned(), "b".to_owned())]);
    check(&res, &c[..2], &names, 0, 1000.0);
}
