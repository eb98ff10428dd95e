//! Kernel tests of issue 4: the socket layer and the scheduler (`--layers all`), TCP
//! followed per byte from the sender's `send()` to the receiver's `recv()`, and drops and
//! retransmissions made on purpose. The ground truth is what the test's own threads saw:
//! CLOCK_MONOTONIC (the capture's clock) around each `send()`, `recv()` and sleep.

use std::{
    fs::File,
    io::{Read, Write},
    net::{SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    process::Command,
    time::Duration,
};

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, UInt16Type, UInt32Type, UInt64Type};
use lab::testing::{captured_pair, kernel_test};
use lab::{bins, netns::run_in, Lab};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

/// CLOCK_MONOTONIC in ns, as `bpf_ktime_get_ns()` reads it.
fn mono_ns() -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// One `iovec` per buffer, for `sendmmsg` / `recvmmsg`.
fn iovecs<const N: usize>(bufs: &mut [[u8; N]]) -> Vec<libc::iovec> {
    bufs.iter_mut().map(|b| libc::iovec { iov_base: b.as_mut_ptr().cast(), iov_len: N }).collect()
}

/// One message per `iovec` (no address, no control data); `iov` must outlive their use.
fn mmsghdrs(iov: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iov.iter_mut()
        .map(|v| {
            // SAFETY: a zeroed mmsghdr is valid (no name, no control).
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect()
}

/// One event row.
#[derive(Debug, Clone)]
struct Ev {
    host: String,
    hook: String,
    ts: i64,
    pkt_id: u64,
    dport: u16,
    seq: u32,
    len: u32,
    reason: Option<String>,
    location: Option<String>,
    cgroup: Option<u64>,
}

fn read_events(dir: &Path) -> Vec<Ev> {
    let mut out = Vec::new();
    for host in ["a", "b"] {
        for e in std::fs::read_dir(dir.join(host)).unwrap() {
            let p = e.unwrap().path();
            if !p.to_string_lossy().ends_with(".events.parquet") {
                continue;
            }
            for b in ParquetRecordBatchReaderBuilder::try_new(File::open(&p).unwrap()).unwrap().build().unwrap() {
                let b = b.unwrap();
                let text = |n: &str| cast(b.column_by_name(n).unwrap(), &DataType::Utf8).unwrap();
                let (hook, reason, location) = (text("hook"), text("drop_reason"), text("drop_location"));
                let (hook, reason, location) =
                    (hook.as_string::<i32>(), reason.as_string::<i32>(), location.as_string::<i32>());
                let ts = b.column_by_name("ts_ns").unwrap().as_primitive::<Int64Type>().clone();
                let id = b.column_by_name("pkt_id").unwrap().as_primitive::<UInt64Type>().clone();
                let dport = b.column_by_name("dport").unwrap().as_primitive::<UInt16Type>().clone();
                let seq = b.column_by_name("tcp_seq").unwrap().as_primitive::<UInt32Type>().clone();
                let len = b.column_by_name("payload_len").unwrap().as_primitive::<UInt32Type>().clone();
                let cgroup = b.column_by_name("cgroup").unwrap().as_primitive::<UInt64Type>().clone();
                let opt = |a: &arrow::array::StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
                for i in 0..b.num_rows() {
                    out.push(Ev {
                        host: host.into(),
                        hook: hook.value(i).into(),
                        ts: ts.value(i),
                        pkt_id: id.value(i),
                        dport: dport.value(i),
                        seq: seq.value(i),
                        len: len.value(i),
                        reason: opt(reason, i),
                        location: opt(location, i),
                        cgroup: (!cgroup.is_null(i)).then(|| cgroup.value(i)),
                    });
                }
            }
        }
    }
    out.sort_by_key(|e| e.ts);
    out
}

/// Datagrams that `host`'s applications read and its capture could not identify (no
/// `udp_recv` row: docs/probes.md), from its run metadata.
fn unidentified_reads(dir: &Path, host: &str) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir.join(host)).unwrap() {
        let p = e.unwrap().path();
        if p.to_string_lossy().ends_with(".meta.json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            n += v["counts"]["udp_recv"]["unidentified"].as_u64().expect("udp_recv's unidentified count") as usize;
        }
    }
    n
}

/// Events of `host:hook` to `dport`, in time order.
fn at<'a>(evs: &'a [Ev], point: &str, dport: u16) -> Vec<&'a Ev> {
    evs.iter().filter(|e| format!("{}:{}", e.host, e.hook) == point && e.dport == dport).collect()
}

/// The analyzer's JSON report for the captures in `dir` (one machine: one clock).
fn analyze(dir: &Path, args: &[&str]) -> Value {
    let out = Command::new(bins::path("netlat-analyze"))
        .arg(dir.join("a"))
        .arg(dir.join("b"))
        .args(["--same-clock", "--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `host:hook` of each station of a path.
fn short_stations(path: &Value) -> Vec<String> {
    path["stations"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).map(short).collect()
}

fn short(label: &str) -> String {
    format!("{}:{}", &label[..1], label.rsplit(':').next().unwrap())
}

/// Each hop of `path` non-negative, and the hop means add up to the end-to-end mean.
/// A hop counts the complete bytes (or packets) and those lost on a later hop (they passed
/// it); the means add up exactly over the same complete bytes, so each hop's lost ones
/// may move the sum by their share of the hop's range at most. Returns (hop
/// `from -> to`, mean ns).
fn hops_add_up(path: &Value) -> Vec<(String, i64)> {
    let complete = path["complete"].as_u64().unwrap();
    let hops = path["hops"].as_array().unwrap();
    let lost: Vec<u64> = hops.iter().map(|h| h["lost"].as_u64().unwrap()).collect();
    let mut sum = 0;
    let mut slack = 0.0;
    let mut out = Vec::new();
    for (i, h) in hops.iter().enumerate() {
        assert!(h["min_ns"].as_i64().unwrap() >= 0, "{h}");
        let count = h["count"].as_u64().unwrap();
        assert_eq!(count, complete + lost[i + 1..].iter().sum::<u64>(), "{h}");
        let range = (h["max_ns"].as_i64().unwrap() - h["min_ns"].as_i64().unwrap()) as f64;
        slack += (count - complete) as f64 / count as f64 * range;
        sum += h["mean_ns"].as_i64().unwrap();
        out.push((
            format!("{} -> {}", short(h["from"].as_str().unwrap()), short(h["to"].as_str().unwrap())),
            h["mean_ns"].as_i64().unwrap(),
        ));
    }
    let e2e = path["end_to_end"]["mean_ns"].as_i64().unwrap();
    let bound = out.len() as i64 + slack.ceil() as i64;
    assert!((sum - e2e).abs() <= bound, "hop means add up to {sum} ns, end to end {e2e} ns (bound {bound} ns)");
    out
}

/// The request direction's layers, in the order the kernel passes them, on veth with XDP.
const SEND: [&str; 5] = ["a:sock_send", "a:tc_egress", "a:net_dev_queue", "a:net_dev_start_xmit", "a:net_dev_xmit"];
const RECV: [&str; 9] = [
    "b:xdp",
    "b:napi_gro_receive",
    "b:netif_receive_skb",
    "b:tc_ingress",
    "b:tcp_probe",
    "b:sk_data_ready",
    "b:sched_wakeup",
    "b:sched_switch",
    "b:sock_recv",
];

/// A (start, end) pair of CLOCK_MONOTONIC times, ns.
type Span = (i64, i64);

/// Times the client and server threads saw for one message.
#[derive(Debug, Clone, Copy, Default)]
struct Times {
    /// Client: just before `write`, just after it returned.
    write: (i64, i64),
    /// Server: just before `read` was called, just after it returned.
    read: (i64, i64),
    /// Server: its sleep before the read (start, end), when it slept.
    slept: Option<(i64, i64)>,
}

/// TCP request/response from `a` to a server on `b:port`: `n` messages of `size` bytes
/// (message `i` filled with byte `fill(i)`), each answered with one byte. With `nap`, the
/// server sleeps that long before each read, so the next message waits in its socket.
fn request_response(
    lab: &Lab,
    port: u16,
    n: usize,
    size: usize,
    nap: Option<Duration>,
    fill: fn(usize) -> u8,
) -> Vec<Times> {
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let addr = SocketAddrV4::new(b.addr, port);
    let listener = run_in(&b.netns, || TcpListener::bind(addr)).unwrap().unwrap();
    let server = std::thread::spawn(move || -> Vec<(Span, Option<Span>)> {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; size];
        let mut out = Vec::new();
        loop {
            // The first read blocks for its data: the thread becomes a known reader there.
            let slept = nap.filter(|_| !out.is_empty()).map(|d| {
                let t = mono_ns();
                std::thread::sleep(d);
                (t, mono_ns())
            });
            let t0 = mono_ns();
            match s.read_exact(&mut buf) {
                Ok(()) => out.push(((t0, mono_ns()), slept)),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return out,
                Err(e) => panic!("server read: {e}"),
            }
            s.write_all(&[1]).unwrap();
        }
    });
    let mut c = run_in(&a.netns, || TcpStream::connect(addr)).unwrap().unwrap();
    c.set_nodelay(true).unwrap();
    if nap.is_some() {
        // The server's first read then blocks for its data (it is woken by it).
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut times = Vec::with_capacity(n);
    let mut ack = [0u8; 1];
    for i in 0..n {
        let msg = vec![fill(i); size];
        let t0 = mono_ns();
        c.write_all(&msg).unwrap();
        times.push(Times { write: (t0, mono_ns()), ..Default::default() });
        c.read_exact(&mut ack).unwrap();
    }
    drop(c);
    for (t, (read, slept)) in times.iter_mut().zip(server.join().unwrap()) {
        t.read = read;
        t.slept = slept;
    }
    times
}

/// A bulk TCP transfer of `bytes` from `a` to a server on `b:port`, written `chunk` bytes
/// at a time; checks that the server read them all.
fn bulk(lab: &Lab, port: u16, bytes: u64, chunk: usize) {
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let addr = SocketAddrV4::new(b.addr, port);
    let listener = run_in(&b.netns, || TcpListener::bind(addr)).unwrap().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return got,
                n => got += n as u64,
            }
        }
    });
    let mut c = run_in(&a.netns, || TcpStream::connect(addr)).unwrap().unwrap();
    let data = vec![0x33u8; chunk];
    for _ in 0..bytes / chunk as u64 {
        c.write_all(&data).unwrap();
    }
    drop(c);
    assert_eq!(server.join().unwrap(), bytes);
}

/// Captures on both hosts with `--layers all` and `filter`, around `traffic`.
fn captured<T>(lab: &Lab, dir: &Path, filter: &str, traffic: impl FnOnce() -> T) -> T {
    captured_pair(lab, dir, &["-q", "--layers", "all", filter], traffic)
}

#[test]
fn issue4_tcp_request_response_every_layer_in_order_matching_the_application() {
    let Some(_serial) = kernel_test("issue4_tcp_request_response_every_layer_in_order_matching_the_application") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    const N: usize = 200;
    const SIZE: usize = 100;
    let times =
        captured(&lab, tmp.path(), "tcp and port 6101", || request_response(&lab, 6101, N, SIZE, None, |_| 0x5a));
    let evs = read_events(tmp.path());

    // The socket rows are the application's calls: one sock_send per write, inside it,
    // with consecutive byte ranges; every byte read once, by the read that returned it.
    let sends = at(&evs, "a:sock_send", 6101);
    assert_eq!(sends.len(), N, "one sock_send per write");
    let isn = sends[0].seq;
    for (i, (e, t)) in sends.iter().zip(&times).enumerate() {
        assert_eq!((e.seq.wrapping_sub(isn), e.len), ((i * SIZE) as u32, SIZE as u32), "send {i}");
        assert!(t.write.0 <= e.ts && e.ts <= t.write.1, "send {i} stamped at {} outside the write {:?}", e.ts, t.write);
    }
    let recvs = at(&evs, "b:sock_recv", 6101);
    assert_eq!(recvs.iter().map(|e| u64::from(e.len)).sum::<u64>(), (N * SIZE) as u64, "{recvs:?}");
    for e in &recvs {
        let i = e.seq.wrapping_sub(isn) as usize / SIZE;
        let t = &times[i];
        assert!(t.read.0 <= e.ts && e.ts <= t.read.1, "read of message {i} stamped at {} outside {:?}", e.ts, t.read);
    }
    for p in ["b:sk_data_ready", "b:sched_wakeup", "b:sched_switch"] {
        // The data only: a FIN takes a sequence number too, and makes data ready (EOF).
        let data = |e: &&&Ev| (e.seq.wrapping_sub(isn) as usize) < N * SIZE;
        let bytes: u64 = at(&evs, p, 6101).iter().filter(data).map(|e| u64::from(e.len)).sum();
        assert_eq!(bytes, (N * SIZE) as u64, "{p}");
    }

    // Per byte (every 4th), through every layer in order; the layers add up to the end to
    // end, which is within the application's own write-to-read time.
    let v = analyze(tmp.path(), &["--filter", "tcp and dst port 6101", "--tcp-stride", "4"]);
    let path = &v["paths"][0];
    let want: Vec<String> = SEND.iter().chain(&RECV).map(|s| s.to_string()).collect();
    assert_eq!(short_stations(path), want, "{path}");
    assert_eq!(path["complete"].as_u64().unwrap(), (N * SIZE / 4) as u64, "{path}");
    let hops = hops_add_up(path);
    let e2e = path["end_to_end"]["mean_ns"].as_i64().unwrap();
    let app = times.iter().map(|t| t.read.1 - t.write.0).sum::<i64>() / N as i64;
    eprintln!("layers (mean ns): {hops:?}; end to end {e2e} ns; application write to read {app} ns");
    assert!(e2e <= app && app - e2e < 100_000, "end to end {e2e} ns, application {app} ns");
    assert_eq!(v["tcp_stride"], 4);
    drop(lab);
}

#[test]
fn issue4_reader_asleep_shows_as_scheduling_not_network() {
    let Some(_serial) = kernel_test("issue4_reader_asleep_shows_as_scheduling_not_network") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    const N: usize = 60;
    const NAP: Duration = Duration::from_millis(3);
    let times =
        captured(&lab, tmp.path(), "tcp and port 6102", || request_response(&lab, 6102, N, 100, Some(NAP), |_| 0x5a));
    let evs = read_events(tmp.path());
    // The reader was woken when its sleep ended, not when the data came: the wakeup row
    // of each read lies between the end of the nap and the read's return.
    let wakes = at(&evs, "b:sched_wakeup", 6102);
    let isn = at(&evs, "a:sock_send", 6102)[0].seq;
    assert_eq!(wakes.len(), N, "{wakes:?}");
    // One may miss: CI once had a wakeup row at the data-ready stand-in (+1 ns) for a
    // reader that slept, so no wakeup after the data was recorded for it. The likely cause
    // is that the kernel skips a run of a tracing program nested in another run of it on one
    // CPU (not confirmed: the program's recursion misses were not read then).
    let mut outside = Vec::new();
    for e in &wakes[1..] {
        let t = &times[e.seq.wrapping_sub(isn) as usize / 100];
        let (start, end) = t.slept.unwrap();
        if !(start + NAP.as_nanos() as i64 <= e.ts && e.ts <= end.max(t.read.1)) {
            outside.push(format!("wakeup at {} for {t:?}", e.ts));
        }
    }
    assert!(outside.len() <= 1, "{outside:?}");
    if !outside.is_empty() {
        eprintln!("one wakeup outside its nap's end and read: {outside:?}");
    }
    // The first read blocked for its data (the client waited before its first write): its
    // thread was followed from the read call's entry, so its wakeup and switch-in are the
    // kernel's, after the data was ready, not stand-ins 1 ns apart (which a thread gets
    // when it was running as the data came; before, every first read got those).
    let first = |p: &str| {
        let rows = at(&evs, p, 6102);
        rows.iter().find(|e| e.seq == isn).unwrap_or_else(|| panic!("no {p} row from {isn}: {:?}", &rows[..2])).ts
    };
    let (ready, woken, on_cpu) = (first("b:sk_data_ready"), first("b:sched_wakeup"), first("b:sched_switch"));
    eprintln!("first read: data ready, +{} ns woken, +{} ns on a CPU", woken - ready, on_cpu - woken);
    assert!(woken - ready >= 50 && on_cpu - woken >= 50, "ready {ready}, woken {woken}, on a CPU {on_cpu}");
    assert!(on_cpu <= times[0].read.1, "{on_cpu} after the read returned: {:?}", times[0]);
    let v = analyze(tmp.path(), &["--filter", "tcp and dst port 6102", "--tcp-stride", "4"]);
    let path = &v["paths"][0];
    let hops = hops_add_up(path);
    let mean = |h: &str| hops.iter().find(|(n, _)| n == h).unwrap_or_else(|| panic!("no {h} in {hops:?}")).1;
    let waited = mean("b:sk_data_ready -> b:sched_wakeup");
    let net: i64 = hops.iter().filter(|(n, _)| !n.contains("sched") && !n.contains("sock_recv")).map(|h| h.1).sum();
    // Ground truth: each message's data was ready at the earliest when its write began and
    // at the latest shortly (< 0.2 ms: one veth hop) after it returned; the reader woke
    // when its nap ended. The first message was read by a blocked reader, woken by it.
    let nap = NAP.as_nanos() as i64;
    let lo: i64 = times[1..].iter().map(|t| t.slept.unwrap().0 + nap - t.write.1 - 200_000).sum::<i64>() / N as i64;
    let hi: i64 = times.iter().map(|t| t.slept.map_or(t.read.1, |s| s.1) - t.write.0).sum::<i64>() / N as i64;
    eprintln!("layers (mean ns): {hops:?}; ready to wakeup within [{lo}, {hi}] ns by the application's clock");
    assert!(lo <= waited && waited <= hi, "data ready to wakeup {waited} ns, not within [{lo}, {hi}]");
    assert!(net < waited / 10, "network and stack {net} ns against {waited} ns of waiting for the reader");
    drop(lab);
}

#[test]
fn issue4_tcp_bulk_every_tracked_byte_through_every_layer() {
    let Some(_serial) = kernel_test("issue4_tcp_bulk_every_tracked_byte_through_every_layer") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    const BYTES: usize = 4 << 20;
    captured(&lab, tmp.path(), "tcp and port 6103", || bulk(&lab, 6103, BYTES as u64, 65536));
    let v = analyze(tmp.path(), &["--filter", "tcp and dst port 6103"]);
    let path = &v["paths"][0];
    let stations = short_stations(path);
    eprintln!("stations {stations:?}; complete {} of {}", path["complete"], BYTES / 1024);
    for p in v["pairs"].as_array().unwrap() {
        eprintln!(
            "pair {} -> {}: {} lost {}",
            short(p["from"].as_str().unwrap()),
            short(p["to"].as_str().unwrap()),
            p["count"],
            p["lost"]
        );
    }
    eprintln!(
        "packets {} off_path {} lost {} unmatched {} ambiguous {}",
        path["packets"], path["off_path"], path["lost"], v["unmatched"], v["ambiguous"]
    );
    assert_eq!(stations.first().map(String::as_str), Some("a:sock_send"), "{path}");
    assert_eq!(stations.last().map(String::as_str), Some("b:sock_recv"), "{path}");
    for p in SEND.iter().chain(&RECV) {
        assert!(stations.iter().any(|s| s == p), "{p} missing from {stations:?}");
    }
    // Every tracked byte (positions divisible by 1024: exactly BYTES / 1024 of them), but
    // those TCP retransmitted: seen twice at the sender, they are ambiguous (a veth with XDP
    // drops segments when its ring is full; CI once had 54 such positions of 4,096).
    let (complete, ambiguous) = (path["complete"].as_u64().unwrap(), v["ambiguous"].as_u64().unwrap());
    let retransmitted = v["retransmits"][0]["bytes"].as_u64().unwrap_or(0);
    assert!(ambiguous <= 2 * retransmitted / 1024 + 32, "{ambiguous} ambiguous; {retransmitted} bytes retransmitted");
    assert!((complete + ambiguous) * 100 >= (BYTES / 1024) as u64 * 99, "{path}");
    let hops = hops_add_up(path);
    eprintln!("layers (mean ns): {hops:?}");
    drop(lab);
}

/// `--sample` on TCP keeps the same bytes at every layer (regression test for sampled TCP
/// captures, whose packet rows were thinned by packet identity, which differs between the
/// layers' segments, while the socket rows were all kept: tracked bytes went missing at
/// random layers). A TCP row with payload is kept when it holds a position the analyzer
/// tracks at the stride the capture sampled at; the analyzer takes that stride from the
/// run metadata. Every tracked byte then passes every layer, and the rows are thinned.
#[test]
fn issue4_sampled_tcp_keeps_the_same_bytes_at_every_layer() {
    let Some(_serial) = kernel_test("issue4_sampled_tcp_keeps_the_same_bytes_at_every_layer") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    const BYTES: u64 = 16 << 20;
    let filter = ["-q", "--layers", "all", "--sample", "10", "tcp and port 6114"];
    captured_pair(&lab, tmp.path(), &filter, || bulk(&lab, 6114, BYTES, 65536));
    let v = analyze(tmp.path(), &["--filter", "tcp and dst port 6114"]);
    let stride = v["tcp_stride"].as_u64().expect("the stride in the report");
    assert_eq!(stride, 16384, "1024 x 10, rounded up to a power of two");
    let path = &v["paths"][0];
    let stations = short_stations(path);
    let (complete, ambiguous) = (path["complete"].as_u64().unwrap(), v["ambiguous"].as_u64().unwrap());
    eprintln!("stations {stations:?}; complete {complete} of {}; ambiguous {ambiguous}", BYTES / stride);
    assert_eq!(stations.first().map(String::as_str), Some("a:sock_send"), "{path}");
    assert_eq!(stations.last().map(String::as_str), Some("b:sock_recv"), "{path}");
    // A tracked position TCP sent again is seen twice at the sender: ambiguous. The rows of
    // retransmitted segments are sampled like the rest (kept when they hold a position), so
    // count the positions they hold rather than scale their bytes by the stride (a kept
    // 1448-byte segment holds one position of 16384).
    let evs = read_events(tmp.path());
    let resent: u64 = at(&evs, "a:tcp_retransmit", 6114)
        .iter()
        .map(|e| {
            let first = e.seq.wrapping_neg() & (stride as u32 - 1);
            if e.len > first {
                u64::from((e.len - first - 1) / stride as u32 + 1)
            } else {
                0
            }
        })
        .sum();
    assert!(ambiguous <= resent + 4, "{ambiguous} ambiguous; {resent} tracked positions retransmitted");
    assert!((complete + ambiguous) * 100 >= BYTES / stride * 99, "{path}");
    hops_add_up(path);
    // Thinned: the bytes of the data segments kept at TC ingress, about one in 16384 / 1448
    // (11) on a veth with XDP (no GRO: MTU-sized segments).
    let kept: Vec<u64> = at(&evs, "b:tc_ingress", 6114).iter().map(|e| u64::from(e.len)).filter(|l| *l > 0).collect();
    let bytes: u64 = kept.iter().sum();
    eprintln!("{} data segments ({bytes} bytes) kept at b's TC ingress of {BYTES} bytes", kept.len());
    assert!(bytes <= BYTES / 5, "{bytes} bytes kept");
    drop(lab);
}

#[test]
fn issue4_nftables_drop_and_retransmission_attributed() {
    let Some(_serial) = kernel_test("issue4_nftables_drop_and_retransmission_attributed") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    // On b: drop UDP datagram 7 (its first 8 payload bytes are its number), and the first
    // copy only of the TCP message filled with 0xa5 (the quota is spent by that copy).
    let rules = "table inet netlat_test {
        chain input {
            type filter hook input priority 0;
            udp dport 6104 @th,64,64 7 drop
            tcp dport 6105 @ih,0,32 0xa5a5a5a5 quota until 200 bytes drop
        }
    }\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &b.netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success(), "nft");
    const N: usize = 20;
    let got = captured(&lab, tmp.path(), "port 6104 or port 6105", || {
        let dst = SocketAddrV4::new(b.addr, 6104);
        let sink = lab::traffic::UdpSink::start(&b.netns, dst).unwrap();
        lab::traffic::udp_send(&a.netns, dst, N as u64, 1000, 100).unwrap();
        let got = sink.finish().unwrap();
        request_response(&lab, 6105, N, 100, None, |i| if i == 5 { 0xa5 } else { 0x5a });
        got
    });
    assert_eq!(got.len(), N - 1);
    assert!(!got.contains(&7));
    let evs = read_events(tmp.path());

    // The UDP drop: datagram 7 left a and reached b's stack, where netfilter freed it.
    let udp_drops = at(&evs, "b:kfree_skb", 6104);
    assert_eq!(udp_drops.len(), 1, "{udp_drops:?}");
    let d = udp_drops[0];
    assert_eq!(d.reason.as_deref(), Some("NETFILTER_DROP"), "{d:?}");
    // Where netfilter freed it: the rule's chain (or the hook that applied its verdict).
    let loc = d.location.as_deref().unwrap_or("");
    assert!(loc.starts_with("nft_do_chain+0x") || loc.starts_with("nf_hook_slow+0x"), "{d:?}");
    let sent: Vec<&Ev> = at(&evs, "a:tc_egress", 6104);
    assert_eq!(sent.len(), N);
    assert_eq!(sent[7].pkt_id, d.pkt_id, "the dropped packet is datagram 7");
    assert!(at(&evs, "a:kfree_skb", 6104).is_empty(), "a dropped nothing");
    // It reached b's TC ingress first.
    let seen = at(&evs, "b:tc_ingress", 6104);
    assert!(seen.iter().any(|e| e.pkt_id == d.pkt_id && e.ts < d.ts), "{seen:?}");

    // The TCP drop and the retransmission of exactly that message.
    let tcp_drops = at(&evs, "b:kfree_skb", 6105);
    let sends = at(&evs, "a:sock_send", 6105);
    assert_eq!(sends.len(), N);
    let fifth = sends[5];
    let nf: Vec<_> = tcp_drops.iter().filter(|e| e.reason.as_deref() == Some("NETFILTER_DROP")).collect();
    assert_eq!(nf.len(), 1, "{tcp_drops:?}");
    assert_eq!((nf[0].seq, nf[0].len), (fifth.seq, fifth.len), "the dropped segment is message 5");
    let re = at(&evs, "a:tcp_retransmit", 6105);
    assert!(!re.is_empty(), "no retransmission seen");
    assert!(re.iter().all(|e| (e.seq, e.len) == (fifth.seq, fifth.len)), "{re:?}");
    assert!(re[0].ts > nf[0].ts);

    // The analyzer names both, and keeps them out of the latency paths.
    let v = analyze(tmp.path(), &[]);
    let drops = v["kernel_drops"].as_array().unwrap();
    let nfd: Vec<&Value> = drops.iter().filter(|d| d["reason"] == "NETFILTER_DROP").collect();
    assert_eq!(nfd.len(), 2, "{drops:?}");
    assert!(nfd.iter().all(|d| d["host"] == "b" && d["packets"] == 1), "{drops:?}");
    let re = v["retransmits"].as_array().unwrap();
    assert!(re.iter().any(|r| r["host"] == "a" && r["bytes"].as_u64().unwrap() >= 100), "{re:?}");
    for p in v["paths"].as_array().unwrap() {
        assert!(!short_stations(p).iter().any(|s| s.ends_with("kfree_skb") || s.ends_with("tcp_retransmit")), "{p}");
    }
    // UDP: the path ends at the application's read (`udp_recv`, after the reader's
    // scheduling); datagram 7, dropped by netfilter's input hook after TC ingress, is the
    // one lost, on the hop after TC ingress.
    let v = analyze(tmp.path(), &["--filter", "udp and dst port 6104"]);
    let path = &v["paths"][0];
    let stations = short_stations(path);
    let tail = ["b:tc_ingress", "b:sched_wakeup", "b:sched_switch", "b:udp_recv"];
    assert_eq!(stations[stations.len() - 4..], tail, "{path}");
    // Every read is identified (its datagram's ticket): none is missing or counted.
    let missing = (N - 1 - at(&evs, "b:udp_recv", 6104).len()) as u64;
    let unidentified = unidentified_reads(tmp.path(), "b") as u64;
    assert_eq!((missing, unidentified), (0, 0), "rows missing, reads not identified");
    let lost_here = 1 + missing;
    assert_eq!(
        (path["complete"].as_u64(), path["lost"].as_u64()),
        (Some(N as u64 - lost_here), Some(lost_here)),
        "{path}"
    );
    let hops = path["hops"].as_array().unwrap();
    let lost: Vec<u64> = hops.iter().map(|h| h["lost"].as_u64().unwrap()).collect();
    assert_eq!(lost.iter().sum::<u64>(), lost_here, "{path}");
    assert_eq!(lost[lost.len() - 3], lost_here, "lost between tc_ingress and the reader: {path}");
    drop(lab);
}

/// UDP's socket layer on the send side: one `udp_send` per datagram, stamped inside the
/// application's own send call (CLOCK_MONOTONIC around it) and before the datagram reaches
/// the device layer; the later datagrams of a `sendmmsg` when the previous one's send
/// returned. The analyzer's UDP path then starts at the application's send.
#[test]
fn issue4_udp_send_stamped_inside_the_application_send() {
    let Some(_serial) = kernel_test("issue4_udp_send_stamped_inside_the_application_send") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    const N: usize = 200;
    const BATCH: usize = 4;
    const M: usize = 50;
    const SIZE: usize = 100;
    let dst = SocketAddrV4::new(b.addr, 6106);
    let filter = ["-q", "--layers", "socket", "udp and port 6106"];
    let (single, batches) = captured_pair(&lab, tmp.path(), &filter, || {
        let sink = lab::traffic::UdpSink::start(&b.netns, dst).unwrap();
        let sock = run_in(&a.netns, || std::net::UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
        sock.connect(dst).unwrap();
        // Datagram i carries i in its first 8 bytes (the sink's numbering; unique identities).
        let datagram = |i: usize| {
            let mut buf = [0x5au8; SIZE];
            buf[..8].copy_from_slice(&(i as u64).to_be_bytes());
            buf
        };
        let mut single = Vec::new();
        for i in 0..N {
            let buf = datagram(i);
            let t0 = mono_ns();
            sock.send(&buf).unwrap();
            single.push((t0, mono_ns()));
            std::thread::sleep(Duration::from_micros(200));
        }
        let mut batches = Vec::new();
        for j in 0..M {
            let mut bufs: Vec<[u8; SIZE]> = (0..BATCH).map(|k| datagram(N + j * BATCH + k)).collect();
            let mut iov = iovecs(&mut bufs);
            let mut msgs = mmsghdrs(&mut iov);
            let t0 = mono_ns();
            // SAFETY: valid socket and message vector.
            let n =
                unsafe { libc::sendmmsg(std::os::fd::AsRawFd::as_raw_fd(&sock), msgs.as_mut_ptr(), BATCH as u32, 0) };
            batches.push((t0, mono_ns()));
            assert_eq!(n, BATCH as i32, "sendmmsg: {}", std::io::Error::last_os_error());
            std::thread::sleep(Duration::from_micros(200));
        }
        assert_eq!(sink.finish().unwrap().len(), N + M * BATCH);
        (single, batches)
    });
    let evs = read_events(tmp.path());
    let sends = at(&evs, "a:udp_send", 6106);
    let queued = at(&evs, "a:net_dev_queue", 6106);
    assert_eq!((sends.len(), queued.len()), (N + M * BATCH, N + M * BATCH));
    // Each datagram's udp_send, then its net_dev_queue (same identity), in send order.
    let queue_of = |s: &Ev| {
        let q: Vec<&&Ev> = queued.iter().filter(|q| q.pkt_id == s.pkt_id).collect();
        assert_eq!(q.len(), 1, "{s:?}");
        q[0].ts
    };
    for (i, (s, (t0, t1))) in sends.iter().zip(&single).enumerate() {
        let q = queue_of(s);
        assert!(*t0 <= s.ts && s.ts <= q && q <= *t1, "datagram {i}: send {t0}..{t1}, udp_send {}, queued {q}", s.ts);
    }
    for (j, (t0, t1)) in batches.iter().enumerate() {
        let batch = &sends[N + j * BATCH..N + (j + 1) * BATCH];
        let mut prev_queued = *t0;
        for (k, s) in batch.iter().enumerate() {
            let q = queue_of(s);
            assert!(prev_queued <= s.ts && s.ts <= q && q <= *t1, "batch {j} datagram {k}: {s:?} queued {q}");
            prev_queued = q;
        }
    }
    let mean = |v: Vec<i64>| v.iter().sum::<i64>() / v.len() as i64;
    let in_socket = mean(sends.iter().map(|s| queue_of(s) - s.ts).collect());

    // The analyzer's UDP path starts at the application's send; hops add up.
    let v = analyze(tmp.path(), &["--filter", "udp and dst port 6106"]);
    let path = &v["paths"][0];
    let stations = short_stations(path);
    assert_eq!(stations[0], "a:udp_send", "{path}");
    // Every read is identified, `recvmmsg`'s too: none is missing or counted.
    let missing = N + M * BATCH - at(&evs, "b:udp_recv", 6106).len();
    let unidentified = unidentified_reads(tmp.path(), "b");
    assert_eq!((missing, unidentified), (0, 0), "rows missing, reads not identified");
    assert_eq!(path["complete"].as_u64().unwrap(), (N + M * BATCH - missing) as u64, "{path}");
    let hops = hops_add_up(path);
    eprintln!("udp_send to net_dev_queue: mean {in_socket} ns; layers (mean ns): {hops:?}");
    drop(lab);
}

/// UDP's socket layer on the receive side (regression test for issue 4's UDP path ending at
/// `tc_ingress`): one `udp_recv` per datagram, stamped inside the receive call that returned
/// it (CLOCK_MONOTONIC around each `recv`, and around each `recvmmsg` of several), whether
/// the reader was waiting on an empty socket or the datagram waited in the queue while the
/// reader slept. The analyzer's UDP path then runs from the sender's send call to the
/// receiver's read, and its end-to-end figures lie within what the two applications timed.
#[test]
fn issue4_udp_recv_stamped_inside_the_application_receive() {
    let Some(_serial) = kernel_test("issue4_udp_recv_stamped_inside_the_application_receive") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    const N: usize = 300;
    const BATCH: usize = 4;
    const M: usize = 25;
    const TOTAL: usize = N + M * BATCH;
    const SIZE: usize = 100;
    let nap = Duration::from_millis(3);
    let dst = SocketAddrV4::new(b.addr, 6107);
    let filter = ["-q", "--layers", "socket", "udp and port 6107"];
    // (datagram number, before, after) of each read; (before, after) of each send.
    let (reads, sends) = captured_pair(&lab, tmp.path(), &filter, || {
        let rx = run_in(&b.netns, || std::net::UdpSocket::bind(dst)).unwrap().unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let reader = std::thread::spawn(move || {
            let number = |b: &[u8]| u64::from_be_bytes(b[..8].try_into().unwrap()) as usize;
            let mut reads = Vec::new();
            let mut buf = [0u8; 2048];
            for i in 0..N {
                // Every tenth read after a nap: the datagrams sent meanwhile wait queued.
                if i % 10 == 0 {
                    std::thread::sleep(nap);
                }
                let r0 = mono_ns();
                let n = rx.recv(&mut buf).unwrap();
                let r1 = mono_ns();
                assert_eq!(n, SIZE);
                reads.push((number(&buf), r0, r1));
            }
            let mut bufs = vec![[0u8; SIZE]; BATCH];
            for _ in 0..M {
                std::thread::sleep(nap);
                let mut iov = iovecs(&mut bufs);
                let mut msgs = mmsghdrs(&mut iov);
                let r0 = mono_ns();
                // SAFETY: valid socket and message vector; blocks until BATCH datagrams came.
                let n = unsafe {
                    libc::recvmmsg(
                        std::os::fd::AsRawFd::as_raw_fd(&rx),
                        msgs.as_mut_ptr(),
                        BATCH as u32,
                        0,
                        std::ptr::null_mut(),
                    )
                };
                let r1 = mono_ns();
                assert_eq!(n, BATCH as i32, "recvmmsg: {}", std::io::Error::last_os_error());
                reads.extend(bufs.iter().map(|b| (number(b), r0, r1)));
            }
            reads
        });
        let tx = run_in(&a.netns, || std::net::UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
        tx.connect(dst).unwrap();
        let mut sends = Vec::new();
        for i in 0..TOTAL {
            let mut buf = [0x5au8; SIZE];
            buf[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let s0 = mono_ns();
            tx.send(&buf).unwrap();
            sends.push((s0, mono_ns()));
            std::thread::sleep(Duration::from_micros(300));
        }
        (reader.join().unwrap(), sends)
    });
    let evs = read_events(tmp.path());
    // Datagram numbers by identity: the sender's datagrams in send order.
    let sent = at(&evs, "a:udp_send", 6107);
    assert_eq!(sent.len(), TOTAL);
    let number: std::collections::HashMap<u64, usize> = sent.iter().enumerate().map(|(i, e)| (e.pkt_id, i)).collect();
    assert_eq!(number.len(), TOTAL, "one identity per datagram");
    let arrived: std::collections::HashMap<u64, i64> =
        at(&evs, "b:tc_ingress", 6107).iter().map(|e| (e.pkt_id, e.ts)).collect();
    let mut window = vec![None; TOTAL];
    for (k, r0, r1) in &reads {
        assert!(window[*k].replace((*r0, *r1)).is_none(), "datagram {k} read twice");
    }
    // One udp_recv per datagram, whether the reader was waiting or far behind.
    let recvs = at(&evs, "b:udp_recv", 6107);
    let missing = TOTAL - recvs.len();
    let unidentified = unidentified_reads(tmp.path(), "b");
    assert_eq!((missing, unidentified), (0, 0), "rows missing, reads not identified");
    let (mut waiting, mut queued) = (0, 0);
    // Per datagram: bounds on its end-to-end latency from the applications' own clocks.
    let (mut lo, mut hi) = (Vec::new(), Vec::new());
    for e in &recvs {
        let k = number[&e.pkt_id];
        let (r0, r1) = window[k].expect("every datagram read");
        let t_in = arrived[&e.pkt_id];
        assert!(r0 <= e.ts && e.ts <= r1 && t_in <= e.ts, "datagram {k}: read {r0}..{r1}, arrived {t_in}, {e:?}");
        assert_eq!(e.len as usize, SIZE);
        assert!(e.cgroup.is_some(), "{e:?}");
        if r0 < t_in {
            waiting += 1;
        }
        if e.ts - t_in > 500_000 {
            queued += 1;
        }
        let (s0, s1) = sends[k];
        lo.push((r0 - s1).max(0));
        hi.push(r1 - s0);
    }
    // Both a reader waiting for its datagram and a queue that built up were exercised
    // (each datagram's stamp is checked above either way). Not 50 each: under two busy loops the reader
    // was already late for all but 44 (a loaded run of the suite).
    assert!(waiting >= 10 && queued >= 10, "reader waiting for {waiting}, datagrams queued for {queued}");

    let v = analyze(tmp.path(), &["--filter", "udp and dst port 6107"]);
    let path = &v["paths"][0];
    let stations = short_stations(path);
    assert_eq!((stations[0].as_str(), stations.last().unwrap().as_str()), ("a:udp_send", "b:udp_recv"), "{path}");
    assert_eq!(path["complete"].as_u64().unwrap(), TOTAL as u64, "{path}");
    let hops = hops_add_up(path);
    // Order statistics keep the per-datagram bounds.
    let e2e = &path["end_to_end"];
    lo.sort_unstable();
    hi.sort_unstable();
    let q = |v: &[i64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    for (key, p) in [("p50_ns", 0.5), ("p99_ns", 0.99), ("max_ns", 1.0)] {
        let got = e2e[key].as_i64().unwrap_or_else(|| panic!("{key} in {e2e}"));
        // The analyzer's percentile may pick the neighbouring rank: allow one rank.
        let (l, h) = (q(&lo, (p - 0.01f64).max(0.0)), q(&hi, (p + 0.01f64).min(1.0)));
        assert!(l <= got && got <= h, "end to end {key} {got} ns outside the applications' {l}..{h} ns");
    }
    let mean = |v: &[i64]| v.iter().sum::<i64>() / v.len() as i64;
    let got = e2e["mean_ns"].as_i64().unwrap();
    assert!(mean(&lo) <= got && got <= mean(&hi), "end to end mean {got} ns outside {}..{} ns", mean(&lo), mean(&hi));
    eprintln!(
        "udp_recv: reader waiting {waiting}, queued {queued}; end to end {e2e}; applications' bounds p50 {}..{} ns; layers (mean ns): {hops:?}",
        q(&lo, 0.5),
        q(&hi, 0.5)
    );
    drop(lab);
}

/// Sets `SOL_SOCKET` option `opt` (named `name` in the failure) of `sock` to `value`, whose
/// type is the option's.
fn set_socket_option<T>(sock: &std::net::UdpSocket, opt: libc::c_int, value: &T, name: &str) {
    // SAFETY: a valid socket, and a value of the option's type, which the kernel copies.
    let r = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            libc::SOL_SOCKET,
            opt,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    assert_eq!(r, 0, "{name}: {}", std::io::Error::last_os_error());
}

/// Reads datagrams from non-blocking `rx` in a loop until `total` came or 30 s passed:
/// the reader is running whenever a datagram comes. Each read is (the datagram's number,
/// its first 8 bytes, CLOCK_MONOTONIC before and after the `recv` that returned it).
fn spinning_reader(
    rx: std::net::UdpSocket,
    total: usize,
    size: usize,
) -> std::thread::JoinHandle<Vec<(usize, i64, i64)>> {
    rx.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut reads = Vec::with_capacity(total);
        let mut buf = [0u8; 2048];
        let deadline = mono_ns() + 30_000_000_000;
        while reads.len() < total && mono_ns() < deadline {
            let r0 = mono_ns();
            match rx.recv(&mut buf) {
                Ok(n) => {
                    assert_eq!(n, size);
                    reads.push((u64::from_be_bytes(buf[..8].try_into().unwrap()) as usize, r0, mono_ns()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("recv: {e}"),
            }
        }
        reads
    })
}

/// Sends datagrams `0..n` of `size` bytes (the number in the first 8) from namespace `ns`
/// to `dst`, about one per 20 µs: most come to an empty socket.
fn paced_datagrams(ns: &str, dst: SocketAddrV4, n: usize, size: usize) {
    let tx = run_in(ns, || std::net::UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    tx.connect(dst).unwrap();
    for i in 0..n {
        let mut buf = vec![0x5au8; size];
        buf[..8].copy_from_slice(&(i as u64).to_be_bytes());
        tx.send(&buf).unwrap();
        let t = mono_ns();
        while mono_ns() - t < 20_000 {
            std::hint::spin_loop();
        }
    }
}

/// Checks `host`'s `udp_recv` rows to `dport` against the reads the application timed:
/// each row is of a datagram read, stamped inside the `recv` that returned it; a read
/// with no row is counted as not identified, and there are at most `max_missing` such.
/// `number` maps identities to datagram numbers. Returns (rows, reads not identified).
fn rows_match_the_reads(
    dir: &Path,
    (evs, host, dport): (&[Ev], &str, u16),
    number: &std::collections::HashMap<u64, usize>,
    reads: &[(usize, i64, i64)],
    max_missing: usize,
) -> (usize, usize) {
    let mut window = std::collections::HashMap::new();
    for (k, r0, r1) in reads {
        assert!(window.insert(*k, (*r0, *r1)).is_none(), "datagram {k} read twice");
    }
    let rows = at(evs, &format!("{host}:udp_recv"), dport);
    let mut wrong = Vec::new();
    for e in &rows {
        let k = number[&e.pkt_id];
        match window.get(&k) {
            Some(&(r0, r1)) if r0 <= e.ts && e.ts <= r1 => {}
            w => wrong.push(format!("datagram {k}: read {w:?}, udp_recv at {}", e.ts)),
        }
    }
    assert!(wrong.is_empty(), "{} rows not inside their own read: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    let missing = reads.len() - rows.len();
    let unidentified = unidentified_reads(dir, host);
    assert!(
        missing <= unidentified && missing <= max_missing,
        "{missing} rows missing of {} reads, {unidentified} reads not identified",
        reads.len()
    );
    (rows.len(), unidentified)
}

/// 2,000 datagrams to a spinning reader on `port`, captured with `extra` arguments; the
/// rows checked by [`rows_match_the_reads`] with at most `max_missing` reads unrecorded.
/// Returns (rows, reads not identified).
fn spinning_reader_captured(port: u16, extra: &[&str], max_missing: usize) -> (usize, usize) {
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    const TOTAL: usize = 2000;
    let dst = SocketAddrV4::new(b.addr, port);
    let udp = format!("udp and port {port}");
    let args: Vec<&str> =
        ["-q", "--layers", "socket"].into_iter().chain(extra.iter().copied()).chain([udp.as_str()]).collect();
    let reads = captured_pair(&lab, tmp.path(), &args, || {
        let rx = run_in(&b.netns, || std::net::UdpSocket::bind(dst)).unwrap().unwrap();
        let reader = spinning_reader(rx, TOTAL, 100);
        paced_datagrams(&a.netns, dst, TOTAL, 100);
        reader.join().unwrap()
    });
    assert_eq!(reads.len(), TOTAL, "datagrams read");
    let evs = read_events(tmp.path());
    let sent = at(&evs, "a:udp_send", port);
    assert_eq!(sent.len(), TOTAL);
    let number = sent.iter().enumerate().map(|(i, e)| (e.pkt_id, i)).collect();
    rows_match_the_reads(tmp.path(), (&evs, "b", port), &number, &reads, max_missing)
}

/// A reader already running when its datagrams come (regression test for CI on 7d11a92,
/// which failed `issue4_packets_carry_their_sockets_cgroup` with 2 of 49 reads not
/// identified, and for the CI run of the fix, where 4 rows were each stamped one read late):
/// such a reader takes a datagram between its enqueue and its `sk_data_ready`, and empties
/// the queue at every read. Each datagram's ticket, given at its ingress in queue order,
/// tells the reads apart whatever the timing: one `udp_recv` per read,
/// stamped inside the non-blocking `recv` that returned its own datagram, none missing.
#[test]
fn ci_7d11a92_running_reader_rows_stamped_inside_their_own_read() {
    let Some(_serial) = kernel_test("ci_7d11a92_running_reader_rows_stamped_inside_their_own_read") else { return };
    let (rows, unidentified) = spinning_reader_captured(6115, &[], 0);
    eprintln!("{rows} udp_recv rows of 2000 reads; {unidentified} reads not identified");
}

/// The same reader without the ingress program (`--no-udp-ingress`, as where no cgroup v2
/// hierarchy is mounted): no datagram has a ticket, so no read takes a row, and each read
/// is counted as not identified.
#[test]
fn ci_7d11a92_without_the_ingress_program_no_read_takes_another_datagrams_row() {
    let test = "ci_7d11a92_without_the_ingress_program_no_read_takes_another_datagrams_row";
    let Some(_serial) = kernel_test(test) else { return };
    let (rows, unidentified) = spinning_reader_captured(6117, &["--no-udp-ingress"], 2000);
    eprintln!("without the ingress program: {rows} udp_recv rows of 2000 reads; {unidentified} reads not identified");
}

/// A datagram that got its ticket at its ingress, then was dropped before the queue (here by
/// the socket's own filter, which runs after the cgroup programs), is marked dropped: no
/// read takes it for its own. The filter drops the odd datagrams; every row is of an even
/// one, inside its own read.
#[test]
fn ci_7d11a92_datagram_a_socket_filter_drops_is_no_reads() {
    let Some(_serial) = kernel_test("ci_7d11a92_datagram_a_socket_filter_drops_is_no_reads") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    const TOTAL: usize = 1000;
    let dst = SocketAddrV4::new(b.addr, 6116);
    let filter = ["-q", "--layers", "socket", "udp and port 6116"];
    let reads = captured_pair(&lab, tmp.path(), &filter, || {
        let rx = run_in(&b.netns, || std::net::UdpSocket::bind(dst)).unwrap().unwrap();
        // A UDP socket's filter sees the datagram from its UDP header: byte 15 is the
        // last of the datagram's number.
        let code = [
            libc::sock_filter { code: 0x30, jt: 0, jf: 0, k: 15 }, // ldb [15]
            libc::sock_filter { code: 0x45, jt: 0, jf: 1, k: 1 },  // jset #1
            libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0 },  // ret #0: drop
            libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: u32::MAX }, // ret all
        ];
        let prog = libc::sock_fprog { len: code.len() as u16, filter: code.as_ptr().cast_mut() };
        set_socket_option(&rx, libc::SO_ATTACH_FILTER, &prog, "SO_ATTACH_FILTER");
        let reader = spinning_reader(rx, TOTAL / 2, 100);
        paced_datagrams(&a.netns, dst, TOTAL, 100);
        reader.join().unwrap()
    });
    assert_eq!(reads.len(), TOTAL / 2, "datagrams read");
    assert!(reads.iter().all(|(k, _, _)| k % 2 == 0), "the filter let an odd datagram through");
    let evs = read_events(tmp.path());
    let sent = at(&evs, "a:udp_send", 6116);
    assert_eq!(sent.len(), TOTAL);
    let number = sent.iter().enumerate().map(|(i, e)| (e.pkt_id, i)).collect();
    let (rows, unidentified) = rows_match_the_reads(tmp.path(), (&evs, "b", 6116), &number, &reads, 0);
    eprintln!("{rows} udp_recv rows of {} reads ({TOTAL} sent, the odd dropped by the socket filter); {unidentified} reads not identified", reads.len());
    drop(lab);
}

/// A UDP read the capture cannot identify is counted, not silent (regression test for
/// issue 4's `udp_recv` rows that went missing without a trace): three datagrams queued
/// before the capture began, then read, then five more sent and read. The first three
/// reads return datagrams nothing saw arrive: no rows, each counted `unidentified` in the
/// run metadata and reported by the analyzer as the capture's loss; the five after get
/// their rows.
#[test]
fn issue4_udp_read_not_identified_is_counted() {
    let Some(_serial) = kernel_test("issue4_udp_read_not_identified_is_counted") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let dst = SocketAddrV4::new(b.addr, 6111);
    let rx = run_in(&b.netns, || std::net::UdpSocket::bind(dst)).unwrap().unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let tx = run_in(&a.netns, || std::net::UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
    tx.connect(dst).unwrap();
    let send = |i: u8| assert_eq!(tx.send(&[i; 100]).unwrap(), 100);
    let mut buf = [0u8; 256];
    let mut read = |i: u8| {
        assert_eq!(rx.recv(&mut buf).unwrap(), 100);
        assert_eq!(buf[0], i);
    };
    (0..3).for_each(send);
    // The datagrams are in b's socket before the capture starts.
    std::thread::sleep(Duration::from_millis(50));
    captured_pair(&lab, tmp.path(), &["-q", "--layers", "socket", "udp and port 6111"], || {
        (0..3).for_each(&mut read);
        for i in 3..8 {
            send(i);
            read(i);
        }
    });
    let evs = read_events(tmp.path());
    // The count is of datagrams whatever their port (their identity is unknown); the
    // clock-sync probes get tickets as any datagram, so the three are all.
    let rows = at(&evs, "b:udp_recv", 6111);
    let unidentified = unidentified_reads(tmp.path(), "b");
    assert_eq!(rows.len(), 5, "{rows:?}");
    assert_eq!(unidentified, 3, "reads not identified");
    let v = analyze(tmp.path(), &["--filter", "udp and dst port 6111"]);
    let loss: Vec<&Value> = v["report_loss"].as_array().unwrap().iter().filter(|d| d["unidentified"] != 0).collect();
    assert_eq!(loss.len(), 1, "{loss:?}");
    assert_eq!((&loss[0]["host"], &loss[0]["hook"]), (&Value::from("b"), &Value::from("udp_recv")), "{loss:?}");
    assert_eq!(loss[0]["unidentified"], unidentified, "{loss:?}");
    let text = Command::new(bins::path("netlat-analyze"))
        .args([tmp.path().join("a"), tmp.path().join("b")])
        .args(["--same-clock", "--filter", "udp and dst port 6111"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    let line = format!(
        "b:udp_recv  {unidentified} of {} (kernel ring buffer full 0, writer queue full 0, reads not identified {unidentified})",
        5 + unidentified
    );
    assert!(text.contains(&line), "{line} not in {text}");
    drop(lab);
}

/// UDP reads and the scheduler (`--layers all`): a UDP server that naps before each read
/// (its request waits queued meanwhile) shows the wait as scheduling, not network: each
/// read's `sched_wakeup` row, a packet row of the datagram it returned, lies between the
/// end of the nap and the read's return, and the analyzer's arrival-to-wakeup hop is the
/// wait the applications timed. The first read blocked for its datagram, which woke it.
#[test]
fn issue4_udp_reader_asleep_shows_as_scheduling_not_network() {
    let Some(_serial) = kernel_test("issue4_udp_reader_asleep_shows_as_scheduling_not_network") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    const N: usize = 60;
    const NAP: Duration = Duration::from_millis(3);
    let dst = SocketAddrV4::new(b.addr, 6110);
    // Per request: (write before, write after), (nap start, nap end), (read before, after).
    let times = captured(&lab, tmp.path(), "udp and port 6110", || {
        let rx = run_in(&b.netns, || std::net::UdpSocket::bind(dst)).unwrap().unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let server = std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut out = Vec::new();
            for i in 0..N {
                let slept = (i > 0).then(|| {
                    let t = mono_ns();
                    std::thread::sleep(NAP);
                    (t, mono_ns())
                });
                let r0 = mono_ns();
                let (n, peer) = rx.recv_from(&mut buf).unwrap();
                let r1 = mono_ns();
                assert_eq!(u64::from_be_bytes(buf[..8].try_into().unwrap()), i as u64);
                assert_eq!(n, 100);
                rx.send_to(&[1], peer).unwrap();
                out.push((slept, (r0, r1)));
            }
            out
        });
        let tx = run_in(&a.netns, || std::net::UdpSocket::bind("0.0.0.0:0")).unwrap().unwrap();
        tx.connect(dst).unwrap();
        // The server's first read then blocks for its datagram (it is woken by it).
        std::thread::sleep(Duration::from_millis(200));
        let mut writes = Vec::new();
        let mut ack = [0u8; 1];
        for i in 0..N {
            let mut buf = [0x5au8; 100];
            buf[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let t0 = mono_ns();
            tx.send(&buf).unwrap();
            writes.push((t0, mono_ns()));
            tx.recv(&mut ack).unwrap();
        }
        writes.into_iter().zip(server.join().unwrap()).collect::<Vec<_>>()
    });
    let evs = read_events(tmp.path());
    // Request i by identity: the sender's datagrams in send order.
    let sent = at(&evs, "a:udp_send", 6110);
    assert_eq!(sent.len(), N);
    let number: std::collections::HashMap<u64, usize> = sent.iter().enumerate().map(|(i, e)| (e.pkt_id, i)).collect();
    let first_row = |p: &str| at(&evs, p, 6110).into_iter().find(|e| number[&e.pkt_id] == 0).map(|e| e.ts);
    let wakes = at(&evs, "b:sched_wakeup", 6110);
    assert_eq!(wakes.len(), N, "{wakes:?}");
    // At most one outside, as in the TCP test above.
    let mut outside = Vec::new();
    for e in &wakes {
        let (_, (slept, read)) = &times[number[&e.pkt_id]];
        if let Some((start, end)) = slept {
            let nap = NAP.as_nanos() as i64;
            if !(start + nap <= e.ts && e.ts <= (*end).max(read.1)) {
                outside.push(format!("wakeup at {} for {slept:?} {read:?}", e.ts));
            }
        }
    }
    assert!(outside.len() <= 1, "{outside:?}");
    // The first read blocked for its datagram: woken after it came, on a CPU after that.
    let (came, woken, on_cpu, read) =
        (first_row("b:tc_ingress"), first_row("b:sched_wakeup"), first_row("b:sched_switch"), first_row("b:udp_recv"));
    let (came, woken, on_cpu, read) = (came.unwrap(), woken.unwrap(), on_cpu.unwrap(), read.unwrap());
    eprintln!(
        "first read: arrived, +{} ns woken, +{} ns on a CPU, +{} ns read",
        woken - came,
        on_cpu - woken,
        read - on_cpu
    );
    assert!(came < woken && woken < on_cpu && on_cpu <= read && read <= times[0].1 .1 .1);

    let v = analyze(tmp.path(), &["--filter", "udp and dst port 6110"]);
    let path = &v["paths"][0];
    let stations = short_stations(path);
    let tail = ["b:tc_ingress", "b:sched_wakeup", "b:sched_switch", "b:udp_recv"];
    assert_eq!(stations[stations.len() - 4..], tail, "{path}");
    assert_eq!(path["complete"].as_u64().unwrap(), N as u64, "{path}");
    let hops = hops_add_up(path);
    let mean = |h: &str| hops.iter().find(|(n, _)| n == h).unwrap_or_else(|| panic!("no {h} in {hops:?}")).1;
    let waited = mean("b:tc_ingress -> b:sched_wakeup");
    // Ground truth: a request arrived at the earliest when its send began and at the latest
    // shortly (< 0.2 ms: one veth hop) after it returned; the server woke when its nap
    // ended (the first: when its request came, within its send and read).
    let nap = NAP.as_nanos() as i64;
    let lo: i64 = times[1..].iter().map(|(w, (s, _))| s.unwrap().0 + nap - w.1 - 200_000).sum::<i64>() / N as i64;
    let hi: i64 = times.iter().map(|(w, (s, r))| s.map_or(r.1, |s| s.1.max(r.1)) - w.0).sum::<i64>() / N as i64;
    eprintln!("layers (mean ns): {hops:?}; arrival to wakeup within [{lo}, {hi}] ns by the applications' clocks");
    assert!(lo <= waited && waited <= hi, "arrival to wakeup {waited} ns, not within [{lo}, {hi}]");
    drop(lab);
}

/// Socket probes given as data (regression test for issue 4's probes with a socket
/// argument, which were listed and not recorded): tracepoints whose argument is the socket,
/// one in the send direction (`tcp:tcp_sendmsg_locked`) and one in the receive direction
/// (`tcp:tcp_rcv_space_adjust`, inside `tcp_recvmsg`), record each write and read of a TCP
/// exchange with the bytes `sock_send` and `sock_recv` record, stamped inside the
/// application's own call, and the analyzer follows every tracked byte through them.
#[test]
fn issue4_socket_probes_given_as_data_record_each_calls_bytes() {
    let Some(_serial) = kernel_test("issue4_socket_probes_given_as_data_record_each_calls_bytes") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let file = tmp.path().join("probes.yaml");
    let builtin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/probes.yaml")).unwrap();
    let extra = r#"
  - {name: my_send, layer: socket, dir: send, kind: tracepoint, target: "tcp:tcp_sendmsg_locked",
     arg: {sock: 0}, presets: [socket, all]}
  - {name: my_recv, layer: socket, dir: recv, kind: tracepoint, target: "tcp:tcp_rcv_space_adjust",
     arg: {sock: 0}, presets: [socket, all]}
"#;
    std::fs::write(&file, builtin + extra).unwrap();
    const N: usize = 100;
    const SIZE: usize = 100;
    let args = ["-q", "--layers", "socket", "--probes", file.to_str().unwrap(), "tcp and port 6109"];
    let times = captured_pair(&lab, tmp.path(), &args, || request_response(&lab, 6109, N, SIZE, None, |_| 0x5a));
    let evs = read_events(tmp.path());

    // Send: one row per write, the bytes of sock_send's, stamped inside the write (where
    // sock_send is stamped: the same tracepoint).
    let (sends, mine) = (at(&evs, "a:sock_send", 6109), at(&evs, "a:my_send", 6109));
    assert_eq!((sends.len(), mine.len()), (N, N), "{mine:?}");
    for (i, ((s, m), t)) in sends.iter().zip(&mine).zip(&times).enumerate() {
        assert_eq!((m.seq, m.len), (s.seq, s.len), "write {i}");
        assert!(t.write.0 <= m.ts && m.ts <= t.write.1, "write {i}: my_send at {} outside {:?}", m.ts, t.write);
        assert!((m.ts - s.ts).abs() < 100_000, "write {i}: my_send {} vs sock_send {}", m.ts, s.ts);
        assert_eq!(m.cgroup, s.cgroup, "the writing thread's cgroup");
    }
    // Receive: the bytes of each read, stamped inside it, before the read returned.
    let isn = sends[0].seq;
    let (reads, mine) = (at(&evs, "b:sock_recv", 6109), at(&evs, "b:my_recv", 6109));
    let ranges = |v: &[&Ev]| v.iter().map(|e| (e.seq, e.len)).collect::<Vec<_>>();
    assert_eq!(ranges(&mine), ranges(&reads), "one my_recv per read, with its bytes");
    assert_eq!(mine.iter().map(|e| u64::from(e.len)).sum::<u64>(), (N * SIZE) as u64);
    for (m, r) in mine.iter().zip(&reads) {
        let i = m.seq.wrapping_sub(isn) as usize / SIZE;
        let t = &times[i];
        assert!(t.read.0 <= m.ts && m.ts <= r.ts && r.ts <= t.read.1, "read of message {i}: {m:?} {r:?} {:?}", t.read);
    }

    // The analyzer follows every tracked byte through both.
    let v = analyze(tmp.path(), &["--filter", "tcp and dst port 6109", "--tcp-stride", "4"]);
    let paths = v["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{v}");
    let stations = short_stations(&paths[0]);
    for p in ["a:sock_send", "a:my_send", "b:my_recv", "b:sock_recv"] {
        assert!(stations.iter().any(|s| s == p), "{p} in {stations:?}");
    }
    assert_eq!(paths[0]["complete"].as_u64().unwrap(), (N * SIZE / 4) as u64, "{}", paths[0]);
    let hops = hops_add_up(&paths[0]);
    eprintln!("socket probes given as data: layers (mean ns): {hops:?}");
    drop(lab);
}

/// A TCP flow of 5 GiB reuses a quarter of its 32-bit sequence numbers: every tracked byte
/// (one per MiB) is still followed from the sender's `send()` to the receiver's `recv()`
/// (each 32-bit position told apart by when it was seen), except those TCP retransmitted.
#[test]
fn issue4_tcp_bulk_past_four_gib_every_tracked_byte() {
    let Some(_serial) = kernel_test("issue4_tcp_bulk_past_four_gib_every_tracked_byte") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    const BYTES: u64 = 5 << 30;
    let filter = ["-q", "--layers", "socket", "tcp and port 6105"];
    captured_pair(&lab, tmp.path(), &filter, || bulk(&lab, 6105, BYTES, 1 << 20));
    let stride = 1u64 << 20;
    let v = analyze(tmp.path(), &["--filter", "tcp and dst port 6105", "--tcp-stride", &stride.to_string()]);
    let path = &v["paths"][0];
    let stations = short_stations(path);
    eprintln!(
        "stations {stations:?}; complete {} of {}; ambiguous {}",
        path["complete"],
        BYTES / stride,
        v["ambiguous"]
    );
    assert_eq!(stations.first().map(String::as_str), Some("a:sock_send"), "{path}");
    assert_eq!(stations.last().map(String::as_str), Some("b:sock_recv"), "{path}");
    // Without unwrapping, the 1,024 tracked positions of the first GiB and of the fifth
    // would be the same ids, each seen twice at every point: all ambiguous. What is left
    // ambiguous here are positions TCP retransmitted (seen twice at the sender).
    let (complete, ambiguous) = (path["complete"].as_u64().unwrap(), v["ambiguous"].as_u64().unwrap());
    let retransmitted = v["retransmits"][0]["bytes"].as_u64().unwrap_or(0);
    assert!(ambiguous <= 2 * retransmitted / stride + 32, "{ambiguous} ambiguous; {retransmitted} bytes retransmitted");
    assert!(ambiguous < 256, "{ambiguous} ambiguous");
    assert!((complete + ambiguous) * 100 >= BYTES / stride * 99, "{path}");
    hops_add_up(path);
    drop(lab);
}

/// Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on a hybrid
/// host).
fn cgroup2_root() -> std::path::PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    capture::udp_ingress::cgroup2_root(&mounts).expect("a cgroup2 mount")
}

/// The cgroup (v2) id of this test process: the inode of its cgroupfs directory.
fn own_cgroup() -> u64 {
    let root = cgroup2_root();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let path = own.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line");
    let dir = root.join(path.trim_start_matches('/'));
    std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir).unwrap())
}

/// With `--snaplen`, the stack hooks' rows keep their socket's cgroup (regression test for
/// issue 4's cgroup missing on rows with packet bytes): this process's datagrams carry its
/// cgroup at the sender's device-layer hooks, with their first bytes; TC's rows have none.
/// With every layer on, rows without bytes (socket, scheduler) mix with them (regression
/// test for the writer stopping on a `head` column shorter than the batch).
#[test]
fn issue4_snaplen_rows_carry_their_sockets_cgroup() {
    let Some(_serial) = kernel_test("issue4_snaplen_rows_carry_their_sockets_cgroup") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    const N: u64 = 30;
    let dst = SocketAddrV4::new(b.addr, 6113);
    captured_pair(&lab, tmp.path(), &["-q", "--layers", "all", "-s", "64", "udp and port 6113"], || {
        let sink = lab::traffic::UdpSink::start(&b.netns, dst).unwrap();
        lab::traffic::udp_send(&a.netns, dst, N, 1000, 100).unwrap();
        assert_eq!(sink.finish().unwrap().len() as u64, N);
    });
    let evs = read_events(tmp.path());
    let mine = own_cgroup();
    for p in ["a:udp_send", "a:net_dev_queue", "a:net_dev_start_xmit", "a:net_dev_xmit", "b:udp_recv"] {
        let rows = at(&evs, p, 6113);
        if p == "b:udp_recv" {
            // Every read is identified (CI on 4f26675 saw 29 of 30 when reads were
            // identified at the data-ready).
            let missing = N - rows.len() as u64;
            let unidentified = unidentified_reads(tmp.path(), "b") as u64;
            assert_eq!((missing, unidentified), (0, 0), "rows missing, reads not identified");
        } else {
            assert_eq!(rows.len() as u64, N, "{p}");
        }
        assert!(rows.iter().all(|e| e.cgroup == Some(mine)), "{p}: {:?}, this process's cgroup {mine}", rows[0]);
    }
    assert!(at(&evs, "a:tc_egress", 6113).iter().all(|e| e.cgroup.is_none()));
    // The rows have their bytes.
    let with_bytes: usize = ["a", "b"]
        .iter()
        .flat_map(|h| std::fs::read_dir(tmp.path().join(h)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".events.parquet"))
        .flat_map(|p| ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap()).unwrap().build().unwrap())
        .map(|b| {
            let b = b.unwrap();
            let head = b.column_by_name("head").expect("a head column").as_binary::<i32>().clone();
            (0..b.num_rows()).filter(|i| !head.is_null(*i) && head.value(*i).len() == 64).count()
        })
        .sum();
    assert!(with_bytes as u64 >= 3 * N, "{with_bytes} rows with 64 bytes");
    assert!(!at(&evs, "b:sched_switch", 6113).is_empty(), "scheduler rows (no bytes) in the batches too");
    eprintln!("cgroup {mine} on every datagram at a's device-layer hooks with --snaplen 64");
    drop(lab);
}

/// A cgroup (v2) made for a test, removed when dropped (after its processes have exited).
struct TestCgroup(std::path::PathBuf);

impl TestCgroup {
    /// Under the cgroup2 mount.
    fn new(name: &str) -> Self {
        let dir = cgroup2_root().join(format!("{name}-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Self(dir)
    }

    /// The cgroup id: the inode of its directory.
    fn id(&self) -> u64 {
        std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&self.0).unwrap())
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Packets inside the stack carry their socket's cgroup: an application moved into a cgroup
/// of the test's own sends datagrams, and every one of them has that cgroup's id at the
/// sender's stack hooks (and none at TC, which does not read it), the one netfilter drops
/// on its way out too; the receiver's reads carry the receiving socket's, and so do the
/// datagrams dropped at a receiving socket whose buffer is full (the socket does not own
/// them yet: `kfree_skb`'s `rx_sk`).
#[test]
fn issue4_packets_carry_their_sockets_cgroup() {
    let Some(_serial) = kernel_test("issue4_packets_carry_their_sockets_cgroup") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let cg = TestCgroup::new("netlat-test");
    const N: usize = 50;
    let dst = SocketAddrV4::new(b.addr, 6107);
    // Datagram 7 is dropped on its way out of a (netfilter's output hook), still the
    // sender's socket's packet.
    let rules = "table inet netlat_test {
        chain output {
            type filter hook output priority 0;
            udp dport 6107 @th,64,64 7 drop
        }
    }\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", &a.netns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success(), "nft");
    // A socket that is never read, with the smallest receive buffer: most datagrams sent
    // to it are dropped at it.
    let full = SocketAddrV4::new(b.addr, 6112);
    let unread = run_in(&b.netns, || std::net::UdpSocket::bind(full)).unwrap().unwrap();
    set_socket_option(&unread, libc::SO_RCVBUF, &(1 as libc::c_int), "SO_RCVBUF");
    const FULL: usize = 20;
    let filter = ["-q", "--layers", "all", "udp and (port 6107 or port 6112)"];
    captured_pair(&lab, tmp.path(), &filter, || {
        let sink = lab::traffic::UdpSink::start(&b.netns, dst).unwrap();
        // The sender joins the cgroup before it makes its socket.
        let send = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             for i in range({N}):\n\
             \x20   try: s.sendto(i.to_bytes(8, 'big') + bytes(92), ('{}', 6107))\n\
             \x20   except PermissionError: assert i == 7  # the output hook's drop\n\
             for i in range({FULL}): s.sendto(bytes(100), ('{}', 6112))\n",
            b.addr, b.addr
        );
        // Moved from here (`ip netns exec` mounts its own /sys): the shell waits for a line,
        // then becomes the sender, which keeps the cgroup.
        let mut child = Command::new("sh")
            .args(["-c", "read go && exec ip netns exec \"$0\" python3 -c \"$1\"", &a.netns, &send])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::fs::write(cg.0.join("cgroup.procs"), child.id().to_string()).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        assert!(child.wait().unwrap().success(), "sender");
        assert_eq!(sink.finish().unwrap().len(), N - 1);
    });
    let evs = read_events(tmp.path());
    for p in ["a:udp_send", "a:net_dev_queue", "a:net_dev_start_xmit", "a:net_dev_xmit"] {
        let rows = at(&evs, p, 6107);
        assert_eq!(rows.len(), N - 1, "{p}");
        assert!(rows.iter().all(|e| e.cgroup == Some(cg.id())), "{p}: {:?} for cgroup {}", rows[0], cg.id());
    }
    let drops = at(&evs, "a:kfree_skb", 6107);
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert_eq!((drops[0].reason.as_deref(), drops[0].cgroup), (Some("NETFILTER_DROP"), Some(cg.id())), "{drops:?}");
    // The receiver's reads: its own socket's cgroup (it stayed where the test runs).
    let reads = at(&evs, "b:udp_recv", 6107);
    let missing = N - 1 - reads.len();
    let unidentified = unidentified_reads(tmp.path(), "b");
    assert_eq!((missing, unidentified), (0, 0), "rows missing, reads not identified");
    let theirs = reads[0].cgroup;
    assert!(theirs.is_some_and(|c| c != cg.id()), "{:?}", reads[0]);
    assert!(reads.iter().all(|e| e.cgroup == theirs), "{reads:?}");
    // The datagrams the full socket dropped: its cgroup (the test's, as the receiver's), not
    // the sender's (whose thread the receive path ran in).
    let full_drops = at(&evs, "b:kfree_skb", 6112);
    assert!(full_drops.len() >= FULL / 2, "{full_drops:?}");
    for d in &full_drops {
        assert_eq!((d.reason.as_deref(), d.cgroup), (Some("SOCKET_RCVBUFF"), theirs), "{d:?}");
    }
    drop(unread);
    // TC does not read the socket; the receiver's packets have no socket at netif_receive_skb.
    assert!(at(&evs, "a:tc_egress", 6107).iter().all(|e| e.cgroup.is_none()));
    assert!(at(&evs, "b:netif_receive_skb", 6107).iter().all(|e| e.cgroup.is_none()));
    eprintln!(
        "cgroup {} ({}) on every datagram at a's stack hooks; {} datagrams dropped at a full socket, with its cgroup {theirs:?}",
        cg.id(),
        cg.0.display(),
        full_drops.len()
    );
    drop(lab);
}
