//! Kernel tests of clock sync (issue 3): real probes between namespaces,
//! timestamped by the real eBPF programs, estimated offline and checked
//! against clock errors the test injected itself (`--sim-clock`).

use std::{process::Command, time::Duration};

use lab::{
    bins,
    capture::Capture,
    syncbench::{self, BenchConfig},
    testing::{kernel_test, run_meta},
    Lab,
};

/// The accuracy benchmark, shortened, as a CI guard: three hosts with
/// ±0.5 s and ±50 ppm injected and a 1 ms step on one of them. The goal
/// (BENCHMARKS.md) is p99 ≤ 1 µs; the guard is looser (20 µs) so a loaded
/// CI machine does not fail it, but catches any sign or clock-domain error.
#[test]
fn issue3_clock_sync_recovers_injected_clocks_and_aligns_latencies() {
    let Some(_serial) = kernel_test("issue3_clock_sync_recovers_injected_clocks_and_aligns_latencies") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = BenchConfig {
        out: tmp.path().join("bench"),
        duration: 12.0,
        hosts: vec![
            ("a".into(), String::new()),
            ("b".into(), "offset=0.5s,drift=50ppm".into()),
            ("c".into(), "offset=-0.5s,drift=-50ppm,step=1ms@6s".into()),
        ],
        rate: 500,
        sync_rate: 10.0,
        window: 5.0,
        step_guard: Duration::from_millis(300),
        load: false,
        spinning_senders: false,
        one_flow: false,
    };
    let report = syncbench::run(&cfg).unwrap();
    eprintln!("{}\n{}", report.sync_table, report.markdown());
    assert_eq!(report.reference, "a");
    assert_eq!(report.hosts.len(), 2);
    for h in &report.hosts {
        assert!(h.n > 200, "{h:?}");
        assert!(h.p99_ns < 20_000.0, "offset error {h:?}");
        // The drift is the slope over one window, as precise as the window's offsets: what
        // it puts across the window is within the printed bound, and the 50 ppm injected
        // is recovered to 5 ppm (a sign error is 100). A fixed 0.5 ppm failed CI on
        // d4384e7 (0.66 ppm: 3.3 µs across the 5 s window, against a ±16 µs bound); a run
        // here gave 1.5 ppm, 7.5 µs against ±11.5 µs, with the 1 ms step in the window.
        let drift_error = (h.drift_ppm - h.true_drift_ppm).abs();
        assert!(drift_error < 5.0 && drift_error * cfg.window * 1e3 <= h.bound_ns, "drift {h:?}");
        // The bound covers the whole window: 5 s windows with a few pure samples each way
        // leave the slope loose (22 µs in one run); a sign or clock-domain error gives
        // seconds.
        assert!(h.bound_ns > 0.0 && h.bound_ns < 100_000.0, "bound {h:?}");
    }
    assert!(report.sync_table.contains("clock step of"), "the 1 ms step was not found:\n{}", report.sync_table);
    assert_eq!(report.latencies.len(), 3);
    for l in &report.latencies {
        assert!(l.n > 1000, "{l:?}");
        let bound = l.bound_ns.expect("aligned") as f64;
        // Every packet's aligned latency is within the printed bound of the truth.
        assert!(l.max_ns <= bound, "latency error beyond the bound: {l:?}");
        assert!(l.p99_ns < 20_000.0, "{l:?}");
        assert!(((l.p50.0 - l.p50.1).abs() as f64) <= bound, "{l:?}");
    }
}

/// Issue 22: a sender that paces itself by busy-waiting, a busy loop on every core and b's
/// clock skewed made the analyzer print the path `b>a`, b's XDP ~2 µs before a's TC egress
/// and a hop of -44 µs in place of the real one. The hop must be there, in causal order,
/// with p50 and p99 within 1 µs of the truth the test set up (`--sim-clock`), and every
/// packet's aligned latency within the printed bound of its truth.
#[test]
fn issue22_a_busy_sender_on_a_busy_machine_keeps_the_hop_and_its_figures() {
    let Some(_serial) = kernel_test("issue22_a_busy_sender_on_a_busy_machine_keeps_the_hop_and_its_figures") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = BenchConfig {
        out: tmp.path().join("bench"),
        duration: 10.0,
        hosts: vec![("a".into(), String::new()), ("b".into(), "offset=-0.7s,drift=40ppm".into())],
        rate: 1000,
        sync_rate: 10.0,
        window: 10.0,
        step_guard: Duration::from_millis(300),
        load: true,
        spinning_senders: true,
        one_flow: true,
    };
    let report = syncbench::run(&cfg).unwrap();
    eprintln!("{}\n{}", report.sync_table, report.markdown());
    let stations = ["a:veth0:tc_egress", "b:veth0:xdp", "b:veth0:tc_ingress"];
    assert_eq!(report.paths, vec![("a>b".to_owned(), stations.map(String::from).to_vec(), 0)]);
    let [l] = &report.latencies[..] else { panic!("one direction expected: {:?}", report.latencies) };
    assert_eq!((l.from.as_str(), l.to.as_str()), ("a", "b"));
    assert!(l.n >= 9_000, "{l:?}");
    let bound = l.bound_ns.expect("aligned") as f64;
    assert!(l.max_ns <= bound, "a packet's latency is off its truth by more than the bound: {l:?}");
    let (p50, p99) = (l.analyze_p50.expect("hop printed"), l.analyze_p99.expect("hop printed"));
    assert!((p50 - l.p50.0).abs() <= 1_000 && (p99 - l.p99.0).abs() <= 1_000, "{l:?}");
    let [h] = &report.hosts[..] else { panic!("{:?}", report.hosts) };
    assert!(h.p99_ns <= 1_000.0, "offset error {h:?}");
}

/// Issue 22: vNetTracer's own topology (containers on two VMs over VXLAN, four captures,
/// four different clocks, an iperf3 flow beside a UDP one) under a busy loop on every core.
/// Estimated from probes alone the VMs were 6-24 µs off with bounds of ±20-115 µs, and
/// the path printed was `m1>c1>m1>m2>c2`. Every cross-host hop must now be in causal
/// order, within 1 µs of the truth at p50 and p99, and every packet within the printed
/// bound. (The bound's 2 µs goal is a benchmark figure: in 10 s a pair known from probes
/// alone, vm1-vm2 on the underlay, reached ±3.5 µs in a CI run of 3fe2f5a.)
#[test]
fn issue22_overlay_hops_are_right_under_load() {
    let Some(_serial) = kernel_test("issue22_overlay_hops_are_right_under_load") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = lab::syncoverlay::OverlayConfig { out: tmp.path().join("overlay"), load: true, ..Default::default() };
    let t = lab::syncoverlay::run(&cfg).unwrap();
    eprintln!("{}\n{:#?}", t.markdown(), t.paths);
    let udp = t.paths.iter().find(|p| p.0 == "c1>vm1>vm2>c2").expect("the UDP flow's path");
    let stations = [
        "c1:eth0:tc_egress",
        "vm1:c1p:xdp",
        "vm1:c1p:tc_ingress",
        "vm1:eth0:tc_egress",
        "vm2:eth0:xdp",
        "vm2:eth0:tc_ingress",
        "vm2:c2p:tc_egress",
        "c2:eth0:xdp",
        "c2:eth0:tc_ingress",
    ];
    assert_eq!(udp.1, stations);
    // The flows' paths both ways. (A stray ICMP error c2 -> c1, seen at vm2 only arriving
    // and at vm1 both ways, looks sent by vm1: such packets, seen at part of their path,
    // can be ordered wrongly, and are then counted out of order.)
    for name in ["c1>vm1>vm2>c2", "c2>vm2>vm1>c1"] {
        let p = t.paths.iter().find(|p| p.0 == name).unwrap_or_else(|| panic!("no path {name}: {:?}", t.paths));
        assert_eq!(p.2, 0, "packets out of causal order: {p:?}");
    }
    let main: Vec<_> = t.hops.iter().filter(|h| h.path == "c1>vm1>vm2>c2").collect();
    assert_eq!(main.len(), 3, "{main:?}");
    for h in t.hops.iter().filter(|h| h.n >= 100) {
        let bound = h.bound_ns.expect("aligned");
        assert!(h.max_error_ns <= bound, "a packet beyond the bound: {h:?}");
        assert!((h.p50.1 - h.p50.0).abs() <= 1_000 && (h.p99.1 - h.p99.0).abs() <= 1_000, "{h:?}");
    }
}

/// Issue 22: two hosts routed through a third (its relay at no added delay), an iperf3
/// flow loading one side of the router only, three different clocks: the UDP flow's path
/// a > r > b in causal order, each cross-host hop within 1 µs of the truth at p50 and p99,
/// every packet within the printed bound.
#[test]
fn issue22_a_routed_chain_with_load_on_one_side_keeps_every_hop_right() {
    let Some(_serial) = kernel_test("issue22_a_routed_chain_with_load_on_one_side_keeps_every_hop_right") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let cfg = lab::syncoverlay::OverlayConfig {
        shape: lab::syncoverlay::Shape::Chain,
        out: tmp.path().join("chain"),
        ..Default::default()
    };
    let t = lab::syncoverlay::run(&cfg).unwrap();
    eprintln!("{}\n{:#?}", t.markdown(), t.paths);
    let udp = t.paths.iter().find(|p| p.0 == "a>r>b").unwrap_or_else(|| panic!("no path a>r>b: {:?}", t.paths));
    let stations =
        ["a:eth0:tc_egress", "r:toa:xdp", "r:toa:tc_ingress", "r:tob:tc_egress", "b:eth0:xdp", "b:eth0:tc_ingress"];
    assert_eq!(udp.1, stations);
    assert_eq!(udp.2, 0, "packets out of causal order: {udp:?}");
    let main: Vec<_> = t.hops.iter().filter(|h| h.path == "a>r>b").collect();
    assert_eq!(main.len(), 2, "{main:?}");
    for h in t.hops.iter().filter(|h| h.n >= 100) {
        let bound = h.bound_ns.expect("aligned");
        assert!(h.max_error_ns <= bound, "a packet beyond the bound: {h:?}");
        assert!((h.p50.1 - h.p50.0).abs() <= 1_000 && (h.p99.1 - h.p99.0).abs() <= 1_000, "{h:?}");
    }
}

/// Probes are timestamped at TC egress and XDP on both sides, written to the
/// sync tables, answered, and never appear as packet events even with no
/// filter at all.
#[test]
fn issue3_sync_probes_are_stamped_and_never_user_events() {
    let Some(_serial) = kernel_test("issue3_sync_probes_are_stamped_and_never_user_events") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    // Started together (`start_pair`): each probes from its start, and loading the programs
    // takes ~2 s here; one after the other, a probed alone for that long and got replies to
    // fewer probes than it sent (82 to 85 pairs in CI on c027bc5).
    let (ca, cb) = lab::capture::start_pair(&lab, tmp.path(), &[], &["-q", "--sync-rate", "20"]).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (fa, fb) = (ca.stop().unwrap(), cb.stop().unwrap());
    assert_eq!((fa.code, fb.code), (Some(0), Some(0)), "{}\n{}", fa.stderr, fb.stderr);
    for h in ["a", "b"] {
        let m = run_meta(&tmp.path().join(h));
        let s = &m["sync"];
        assert_eq!(s["port"], 7310, "{m}");
        let peer = &s["prober"]["peers"][0];
        let sent = peer["pairs_sent"].as_u64().unwrap();
        assert!(sent >= 20, "{m}");
        // Replies to at least half the probes (two per pair): none to those sent before
        // the peer's capture was up, or after it stopped.
        assert!(peer["replies"].as_u64().unwrap() >= sent, "{m}");
        assert!(s["prober"]["answered"].as_u64().unwrap() >= 30, "{m}");
        assert_eq!(s["stamps_dropped"], 0);
        for hook in ["tc_egress", "xdp", "tc_ingress"] {
            assert!(m["counts"][hook]["sync"].as_u64().unwrap() >= 60, "{hook}: {m}");
            assert_eq!(m["counts"][hook]["sync_lost"], 0);
        }
        // Every probe and reply this host sent or received is in its sync table.
        let stamps = s["stamps_written"].as_u64().unwrap();
        let counted: u64 =
            ["tc_egress", "xdp", "tc_ingress"].iter().map(|k| m["counts"][k]["sync"].as_u64().unwrap()).sum();
        assert_eq!(stamps, counted, "{m}");
    }
    // No event is a probe: nothing on port 7310 in the events tables.
    let out = Command::new(bins::path("netlat-analyze")).arg(tmp.path()).arg("--format").arg("json").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for h in ["a", "b"] {
        for f in std::fs::read_dir(tmp.path().join(h)).unwrap() {
            let p = f.unwrap().path();
            if p.to_string_lossy().ends_with(".events.parquet") {
                let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                    std::fs::File::open(&p).unwrap(),
                )
                .unwrap()
                .build()
                .unwrap();
                for batch in r {
                    let batch = batch.unwrap();
                    for col in ["sport", "dport"] {
                        let c = batch.column_by_name(col).unwrap();
                        let c = c.as_any().downcast_ref::<arrow::array::UInt16Array>().unwrap();
                        assert!(c.iter().all(|v| v != Some(7310)), "{} has sync traffic in {col}", p.display());
                    }
                }
            }
        }
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clocks"]["reference"], "a", "{v}");
    assert!(v["clocks"]["hosts"].as_array().unwrap().iter().all(|h| h["aligned"] == true), "{v}");
}

/// A peer that never answers is counted in the metadata and named by the
/// analyzer; a sync port already taken is a clear setup error (exit 3).
#[test]
fn issue3_silent_peer_and_taken_port_are_reported() {
    let Some(_serial) = kernel_test("issue3_silent_peer_and_taken_port_are_reported") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let a = &lab.hosts[0];
    // 198.18.0.77 is on the lab's subnet, and nobody has it.
    let ca = Capture::start(
        Some(&a.netns),
        &tmp.path().join("a"),
        &["-i", "veth0", "--host-name", "a", "-q", "--sync-peer", "198.18.0.77", "--sync-rate", "20"],
    )
    .unwrap();
    // A second capture in the same namespace cannot take the port.
    let second = Command::new("ip")
        .args(["netns", "exec", &a.netns])
        .arg(bins::path("netlat-capture"))
        .args(["-i", "lo", "--hooks", "tc_ingress", "-q", "--duration", "1", "--sync-peer", "198.18.0.2", "-w"])
        .arg(tmp.path().join("second"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(err.contains("cannot bind UDP port 7310"), "{err}");
    std::thread::sleep(Duration::from_millis(1500));
    let f = ca.stop().unwrap();
    assert_eq!(f.code, Some(0), "{}", f.stderr);
    let m = run_meta(&tmp.path().join("a"));
    let peer = &m["sync"]["prober"]["peers"][0];
    assert_eq!(peer["addr"], "198.18.0.77:7310");
    assert!(peer["pairs_sent"].as_u64().unwrap() >= 10, "{m}");
    assert_eq!(peer["replies"], 0, "{m}");
    let out = Command::new(bins::path("netlat-analyze")).args(["sync"]).arg(tmp.path()).output().unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // No probe even left (nobody answers ARP for it): the prober's own
    // counts in the metadata name the peer.
    assert!(t.contains("note: host a sent") && t.contains("probe pairs to 198.18.0.77:7310 and got no reply"), "{t}");
}
