//! Kernel test of issue 8: tcpdump and dumpcap captures of real traffic between lab
//! namespaces, analyzed by netlat, agree with netlat-capture's own capture of the same
//! packets.

use std::{
    collections::HashMap,
    fs::File,
    net::SocketAddrV4,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use arrow::array::AsArray;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, UInt64Type};
use lab::testing::kernel_test;
use lab::{bins, capture, traffic, Lab};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// (pkt_id, point) → aligned time, from an `--out` folder's hops.parquet (each hop gives
/// its earlier point's time, and its later point's as that plus the latency; a hop between
/// hosts may run backwards in time by the clock alignment's error).
fn times(dir: &Path) -> HashMap<(u64, String), i64> {
    let r = ParquetRecordBatchReaderBuilder::try_new(File::open(dir.join("hops.parquet")).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let mut out = HashMap::new();
    for b in r {
        let b = b.unwrap();
        let text = |n: &str| cast(b.column_by_name(n).unwrap(), &DataType::Utf8).unwrap();
        let (from, to) = (text("from"), text("to"));
        let (from, to) = (from.as_string::<i32>(), to.as_string::<i32>());
        let id = b.column_by_name("pkt_id").unwrap().as_primitive::<UInt64Type>().clone();
        let ts = b.column_by_name("time_ns").unwrap().as_primitive::<Int64Type>().clone();
        let lat = b.column_by_name("latency_ns").unwrap().as_primitive::<Int64Type>().clone();
        for i in 0..b.num_rows() {
            out.insert((id.value(i), from.value(i).to_owned()), ts.value(i));
            out.insert((id.value(i), to.value(i).to_owned()), ts.value(i) + lat.value(i));
        }
    }
    out
}

/// The pair between points `a` and `b` in either direction (the clock alignment's error
/// can put packets in both): the packets of both, and one of them (for its bound).
fn either<'a>(v: &'a Value, a: &str, b: &str) -> (u64, &'a Value) {
    let pairs = v["pairs"].as_array().unwrap();
    let found: Vec<&Value> =
        pairs.iter().filter(|p| (p["from"] == a && p["to"] == b) || (p["from"] == b && p["to"] == a)).collect();
    let first = found.first().unwrap_or_else(|| panic!("no pair between {a} and {b}: {v}"));
    (found.iter().map(|p| p["count"].as_u64().unwrap()).sum(), first)
}

/// A packet-capture tool in a lab namespace, stopped with SIGINT like a user would.
struct Sniffer(Child, PathBuf);

impl Sniffer {
    fn start(netns: &str, tool: &str, args: &[&str], file: PathBuf) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", netns, tool])
            .args(args)
            .arg("-w")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} (Debian package; scripts/bootstrap installs it): {e}"));
        // Ready once the file has its header.
        let t = Instant::now();
        while std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0) == 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "{tool} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(300));
        Self(child, file)
    }

    fn stop(mut self) -> PathBuf {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        self.0.wait().unwrap();
        self.1.clone()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn analyze(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (Value, String) {
    let mut c = Command::new(bins::path("netlat-analyze"));
    for a in args {
        c.arg(a);
    }
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (serde_json::from_slice(&out.stdout).unwrap(), err)
}

#[test]
fn issue8_tcpdump_captures_agree_with_netlat_capture() {
    let Some(_serial) = kernel_test("issue8_tcpdump_captures_agree_with_netlat_capture") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let (cap_a, cap_b) = capture::start_pair(&lab, tmp.path(), &[], &["-q", "udp and port 6001"]).unwrap();
    // tcpdump writes classic pcap (nanosecond stamps), dumpcap pcapng with the interface name.
    let sa = Sniffer::start(
        &a.netns,
        "tcpdump",
        &["-i", "veth0", "-U", "--time-stamp-precision=nano"],
        tmp.path().join("a.pcap"),
    );
    let sb = Sniffer::start(&b.netns, "dumpcap", &["-q", "-i", "veth0"], tmp.path().join("b.pcapng"));

    const N: u64 = 2000;
    let dst = SocketAddrV4::new(b.addr, 6001);
    let sink = traffic::UdpSink::start(&b.netns, dst).unwrap();
    // Slow enough for the sync probes (10 pairs/s) to span the traffic.
    traffic::udp_send(&a.netns, dst, N, 1000, 64).unwrap();
    assert_eq!(sink.finish().unwrap().len() as u64, N);
    std::thread::sleep(Duration::from_millis(500));
    let (pa, pb) = (sa.stop(), sb.stop());
    let (fa, fb) = (cap_a.stop().unwrap(), cap_b.stop().unwrap());
    assert_eq!((fa.code, fb.code), (Some(0), Some(0)), "{}\n{}", fa.stderr, fb.stderr);

    let (pout, nout) = (tmp.path().join("pcap-out"), tmp.path().join("netlat-out"));
    let f = "udp and port 6001";
    let (pv, perr) = analyze(&[&pa, &pb, &"--filter", &f, &"--out", &pout, &"--format", &"json"]);
    let (nv, _) = analyze(&[&tmp.path().join("a"), &tmp.path().join("b"), &"--out", &nout, &"--format", &"json"]);
    eprintln!("{perr}");
    // Both pcaps aligned from the netlat sync probes they recorded.
    for file in ["a.pcap", "b.pcapng"] {
        assert!(
            perr.lines().any(|l| l.contains(file)
                && l.contains("clock aligned from")
                && l.contains("sync-probe stamps in the capture")),
            "{file}: {perr}"
        );
    }
    // The two pcaps' clocks are aligned within ±bound (µs) from probes on a few-µs wire: a
    // packet may land earlier at b than at a by up to the bound. On a loaded machine the
    // alignment can be several µs off (within its bound), and then every packet may.
    let (pcount, pp) = either(&pv, "a:-:pcap", "b:veth0:pcap");
    // b was captured from the root namespace: its interface is NETNS/veth0.
    let (bx, bi) = (format!("b:{}/veth0:xdp", b.netns), format!("b:{}/veth0:tc_ingress", b.netns));
    let (ncount, np) = either(&nv, "a:veth0:tc_egress", &bx);
    assert_eq!((pcount, ncount), (N, N), "pcap {pp}\nnetlat {np}");
    let aligned = |v: &Value, what: &str| {
        v["bound_ns"].as_i64().unwrap_or_else(|| panic!("{what}: the hosts' clocks were not aligned: {v}\n{perr}"))
    };
    let bound = aligned(pp, "pcap") + aligned(np, "netlat");

    // Same packets, same identities; each pcap latency lies inside netlat's tc_egress ->
    // tc_ingress span of that packet (the sniffer taps sit after tc egress and before tc
    // ingress), within the two alignments' bounds.
    let (pt, nt) = (times(&pout), times(&nout));
    let mut n = 0;
    let mut diffs = Vec::new();
    let mut lats = Vec::new();
    for ((id, point), ta) in &pt {
        if point != "a:-:pcap" {
            continue;
        }
        let lat = pt[&(*id, "b:veth0:pcap".to_owned())] - ta;
        assert!(lat >= -bound, "packet {id:x}: b before a by {} ns, beyond the bound {bound} ns", -lat);
        let span = nt[&(*id, bi.clone())] - nt[&(*id, "a:veth0:tc_egress".to_owned())];
        assert!(
            lat <= span + bound,
            "packet {id:x}: pcap {lat} ns, netlat tc_egress->tc_ingress {span} ns, bound {bound} ns"
        );
        diffs.push(span - lat);
        lats.push(lat);
        n += 1;
    }
    assert_eq!(n, N, "every packet matched in both");
    diffs.sort();
    lats.sort();
    eprintln!(
        "pcap a->b p50 {} ns (min {} ns); netlat tc_egress->xdp p50 {} ns; (netlat span - pcap) p50 {} ns, max {} ns; bounds {bound} ns",
        lats[lats.len() / 2],
        lats[0],
        np["p50_ns"],
        diffs[diffs.len() / 2],
        diffs[diffs.len() - 1]
    );
    drop(lab);
}

/// `(pkt_id, wire_len, head)` of every event in the captures under `dir`.
fn heads(dir: &Path) -> Vec<(u64, u32, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if !p.to_string_lossy().ends_with(".events.parquet") {
            continue;
        }
        for b in ParquetRecordBatchReaderBuilder::try_new(File::open(&p).unwrap()).unwrap().build().unwrap() {
            let b = b.unwrap();
            let id = b.column_by_name("pkt_id").unwrap().as_primitive::<UInt64Type>().clone();
            let wire = b.column_by_name("wire_len").unwrap().as_primitive::<arrow::datatypes::UInt32Type>().clone();
            let head = b.column_by_name("head").expect("--snaplen adds the head column").as_binary::<i32>().clone();
            for i in 0..b.num_rows() {
                out.push((id.value(i), wire.value(i), head.value(i).to_vec()));
            }
        }
    }
    out
}

#[test]
fn issue8_snaplen_keeps_the_first_bytes_of_each_packet() {
    let Some(_serial) = kernel_test("issue8_snaplen_keeps_the_first_bytes_of_each_packet") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    // a keeps 64 bytes, b the most it can (256): datagrams of 300 bytes are cut at both.
    let start = |host: &str, snap: &str, netns: &str| {
        let peer = if host == "a" { b.addr } else { a.addr }.to_string();
        let args = ["-i", "veth0", "--host-name", host, "--sync-peer", &peer, "-q", "-s", snap, "udp and port 6001"];
        capture::Capture::start(Some(netns), &tmp.path().join(host), &args).unwrap()
    };
    let (cap_a, cap_b) = (start("a", "64", &a.netns), start("b", "256", &b.netns));
    const N: u64 = 300;
    let dst = SocketAddrV4::new(b.addr, 6001);
    let sink = traffic::UdpSink::start(&b.netns, dst).unwrap();
    traffic::udp_send(&a.netns, dst, N, 2000, 300).unwrap();
    traffic::udp_send(&a.netns, dst, N, 2000, 20).unwrap();
    // Both rounds are numbered 0..N: the sink counts distinct numbers.
    assert_eq!(sink.finish().unwrap().len() as u64, N);
    let (fa, fb) = (cap_a.stop().unwrap(), cap_b.stop().unwrap());
    assert_eq!((fa.code, fb.code), (Some(0), Some(0)), "{}\n{}", fa.stderr, fb.stderr);

    for (host, snap, points) in [("a", 64usize, 1), ("b", 256, 2)] {
        let rows = heads(&tmp.path().join(host));
        assert_eq!(rows.len() as u64, 2 * N * points, "{host}");
        for (id, wire, head) in &rows {
            assert_eq!(head.len(), snap.min(*wire as usize), "{host}: packet {id:x} of {wire} bytes");
            // The kept bytes are the packet's: parsed in user space they give the identity
            // the kernel computed (the first 8 payload bytes are within 64).
            let mut info = capture_common::parse::PacketInfo::default();
            let buf = capture_common::parse::CutBuf { bytes: head, len: *wire };
            capture_common::parse::parse(&buf, 4789, &mut info).unwrap();
            {
                assert_eq!(
                    capture_common::hash::packet_id(&info, &capture_common::hash::id_payload(&buf, &info)),
                    *id,
                    "{host}"
                );
            }
        }
    }
    // Exported, the packets carry those bytes: every block, none rebuilt.
    let out = tmp.path().join("m.pcapng");
    let r = Command::new(bins::path("netlat-analyze"))
        .args(["export", "--pcapng"])
        .arg(&out)
        .arg(tmp.path().join("a"))
        .arg(tmp.path().join("b"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(r.status.success(), "{err}");
    assert!(
        err.contains(&format!("{} packets, {} observations ({} with captured bytes", 2 * N, 6 * N, 6 * N)),
        "{err}"
    );
    drop(lab);
}
