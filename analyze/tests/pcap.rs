//! Issue 8: pcap and pcapng files as observation points, and `export --pcapng`.
//!
//! Two captures of one UDP flow written here with known times: `a.pcap` (classic pcap,
//! microseconds, Ethernet) at the sender, `b.pcapng` (nanoseconds, interface `eth1`) at the
//! receiver, whose clock is 5 ms ahead. Latency of packet i is 20 000 + 1 037·i ns.

use std::borrow::Cow;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness};
use serde_json::Value;

const N: u64 = 50;
const T0: u64 = 1_795_000_000_000_000_000;
const B_AHEAD: u64 = 5_000_000;

fn latency(i: u64) -> u64 {
    20_000 + 1_037 * i
}

/// Ethernet + IPv4 + UDP 198.18.0.1:5000 → 198.18.0.2:6000, payload = i (8 bytes) + 24 zeros.
fn frame(i: u64) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    let payload: Vec<u8> = i.to_be_bytes().into_iter().chain([0u8; 24]).collect();
    let tot = (20 + 8 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&tot.to_be_bytes());
    f.extend_from_slice(&(i as u16).to_be_bytes());
    f.extend_from_slice(&[0x40, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&6000u16.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&payload);
    f
}

fn sent(i: u64) -> u64 {
    T0 + i * 1_000_000 // whole microseconds: exact in a microsecond pcap
}

fn write_pcap(path: &Path, packets: &[(u64, Vec<u8>)]) {
    write_pcap_cut(path, packets, usize::MAX);
}

/// As `tcpdump -s SNAP`: each record keeps at most `snap` bytes and the original length.
fn write_pcap_cut(path: &Path, packets: &[(u64, Vec<u8>)], snap: usize) {
    let header = PcapHeader { endianness: Endianness::Little, ..Default::default() };
    let mut w = PcapWriter::with_header(File::create(path).unwrap(), header).unwrap();
    for (ts, data) in packets {
        let kept = &data[..data.len().min(snap)];
        w.write_packet(&PcapPacket::new(Duration::from_nanos(*ts), data.len() as u32, kept).unwrap()).unwrap();
    }
}

fn write_pcapng(path: &Path, packets: &[(u64, Vec<u8>)]) {
    let mut w = PcapNgWriter::new(File::create(path).unwrap()).unwrap();
    let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
    idb.options = vec![
        InterfaceDescriptionOption::IfName("eth1".into()),
        InterfaceDescriptionOption::IfTsResol(InterfaceTsResolution::NANO),
    ];
    w.write_pcapng_block(idb).unwrap();
    for (ts, data) in packets {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(*ts),
            original_len: data.len() as u32,
            data: Cow::Borrowed(data),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
}

/// The two captures in a fresh folder.
fn captures() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.pcap");
    let b = dir.path().join("b.pcapng");
    write_pcap(&a, &(0..N).map(|i| (sent(i), frame(i))).collect::<Vec<_>>());
    write_pcapng(&b, &(0..N).map(|i| (sent(i) + latency(i) + B_AHEAD, frame(i))).collect::<Vec<_>>());
    (dir, a, b)
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_netlat-analyze"));
    for a in args {
        c.arg(a);
    }
    c.output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn nearest_rank(sorted: &[i64], per_mille: usize) -> i64 {
    sorted[(per_mille * sorted.len()).div_ceil(1000).max(1) - 1]
}

#[test]
fn issue8_pcaps_with_stated_offsets_give_exact_latencies() {
    let (_d, a, b) = captures();
    let out = run(&[
        &a,
        &b,
        &"--offset",
        &format!("{}=0", a.display()),
        &"--offset",
        &format!("{}={B_AHEAD}", b.display()),
        &"--format",
        &"json",
    ]);
    let v = json(&out);
    let pair = &v["pairs"][0];
    assert_eq!((pair["from"].as_str(), pair["to"].as_str()), (Some("a:-:pcap"), Some("b:eth1:pcap")), "{v}");
    let mut truth: Vec<i64> = (0..N).map(|i| latency(i) as i64).collect();
    truth.sort();
    assert_eq!(pair["count"], N);
    assert_eq!(pair["min_ns"], truth[0]);
    assert_eq!(pair["max_ns"], truth[N as usize - 1]);
    for (k, pm) in [("p50_ns", 500), ("p90_ns", 900), ("p99_ns", 990), ("p999_ns", 999)] {
        assert_eq!(pair[k], nearest_rank(&truth, pm), "{k}");
    }
    assert_eq!(pair["bound_ns"], 0);
    let notes = String::from_utf8_lossy(&out.stderr);
    assert!(notes.contains("clock offset stated with --offset: 5000000 ns"), "{notes}");
    // The listing names the pcaps, not the converted tables.
    let used: Vec<&str> = v["files"]["used"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert_eq!(used, [a.to_str().unwrap(), b.to_str().unwrap()]);
}

#[test]
fn issue8_pcaps_without_sync_or_offset_say_so() {
    let (_d, a, b) = captures();
    let v = json(&run(&[&a, &b, &"--format", &"json"]));
    let pair = &v["pairs"][0];
    // Own clocks, used as they are: 5 ms too long, and marked unaligned (no bound).
    assert_eq!(pair["min_ns"], (latency(0) + B_AHEAD) as i64);
    assert!(pair["bound_ns"].is_null(), "{pair}");
    let notes = v["clocks"].to_string();
    assert!(notes.contains("no sync probes and no --offset"), "{notes}");
}

#[test]
fn issue8_damaged_pcaps_are_named_with_the_byte_offset() {
    let (d, a, b) = captures();
    // Truncated: the last record cut in half (a capture killed mid-write).
    let bytes = fs::read(&a).unwrap();
    let rec = 16 + frame(0).len();
    let last = 24 + (N as usize - 1) * rec;
    let cut = d.path().join("cut.pcap");
    fs::write(&cut, &bytes[..last + rec / 2]).unwrap();
    // Malformed: record 3 claims more bytes than the snap length.
    let mut bad = bytes.clone();
    let r3 = 24 + 3 * rec;
    bad[r3 + 8..r3 + 12].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let badp = d.path().join("bad.pcap");
    fs::write(&badp, &bad).unwrap();
    // Not a capture at all, though named like one: found by walking the folder.
    let sub = d.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(sub.join("junk.pcap"), b"this is not a capture").unwrap();

    let off = |f: &Path, ns: u64| format!("{}={ns}", f.display());
    let out = run(&[&cut, &b, &sub, &"--offset", &off(&b, B_AHEAD), &"--offset", &off(&cut, 0), &"--format", &"json"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(&format!("{}: truncated at byte {last}", cut.display())), "{err}");
    assert!(err.contains("junk.pcap: named like a capture but not a pcap or pcapng file"), "{err}");
    // Nothing before the damage is lost.
    assert_eq!(json(&out)["pairs"][0]["count"], N - 1);
    let out = run(&[&badp, &b, &"--offset", &off(&b, B_AHEAD), &"--offset", &off(&badp, 0), &"--format", &"json"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains(&format!("{}: malformed record at byte {r3}: record of", badp.display())), "{err}");
    assert_eq!(json(&out)["pairs"][0]["count"], 3);
    // A file with nothing readable is skipped, named.
    let out = run(&[&sub.join("junk.pcap"), &b]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("junk.pcap: not a readable Parquet file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn issue8_export_pcapng_reads_back_in_tshark() {
    let (d, a, b) = captures();
    let out = d.path().join("matched.pcapng");
    let r = run(&[
        &"export",
        &"--pcapng",
        &out,
        &a,
        &b,
        &"--offset",
        &format!("{}=0", a.display()),
        &"--offset",
        &format!("{}={B_AHEAD}", b.display()),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let t = Command::new("tshark")
        .args(["-r"])
        .arg(&out)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.interface_name",
            "-e",
            "frame.time_epoch",
            "-e",
            "ip.id",
            "-e",
            "udp.dstport",
            "-e",
            "frame.comment",
        ])
        .output()
        .expect("tshark (Debian package tshark; scripts/bootstrap installs it)");
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let text = String::from_utf8(t.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len() as u64, 2 * N, "{text}");
    for i in 0..N {
        // Packet i at both points, its hop latency in the comment, the real bytes dissected.
        let want = format!("netlat: a:-:pcap -> b:eth1:pcap {:.3} us", latency(i) as f64 / 1000.0);
        let rows: Vec<&&str> =
            lines.iter().filter(|l| l.split('|').nth(2) == Some(&format!("0x{:04x}", i)[..])).collect();
        assert_eq!(rows.len(), 2, "packet {i}: {text}");
        assert!(rows[0].starts_with("a:-:pcap|") && rows[1].starts_with("b:eth1:pcap|"), "{rows:?}");
        for r in &rows {
            assert!(r.ends_with(&want) && r.contains("|6000|"), "{r} lacks {want}");
        }
        let secs = |r: &str| r.split('|').nth(1).unwrap().parse::<f64>().unwrap();
        let dt = (secs(rows[1]) - secs(rows[0])) * 1e9;
        assert!((dt - latency(i) as f64).abs() < 500.0, "packet {i}: {dt} ns apart");
    }
}

#[test]
fn issue8_pcaps_cut_at_the_snap_length_keep_packet_identity() {
    let (d, _, b) = captures();
    // 50 bytes: headers and the first 8 payload bytes, as `tcpdump -s 50` keeps them.
    let cut = d.path().join("a.pcap");
    write_pcap_cut(&cut, &(0..N).map(|i| (sent(i), frame(i))).collect::<Vec<_>>(), 50);
    let v = json(&run(&[
        &cut,
        &b,
        &"--offset",
        &format!("{}=0", cut.display()),
        &"--offset",
        &format!("{}={B_AHEAD}", b.display()),
        &"--format",
        &"json",
    ]));
    assert_eq!(v["pairs"][0]["count"], N, "{v}");
    assert_eq!(v["pairs"][0]["min_ns"], latency(0));
}

/// Damaged files never panic the reader: random byte flips and cuts of both formats
/// either read or stop with an error naming an offset inside the file.
#[test]
fn issue8_damaged_pcaps_never_panic_the_reader() {
    use analyze::pcap::read::{self, Format, ReadError};
    let (d, a, b) = captures();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let path = d.path().join("fuzz");
    for (src, format) in [(a, Format::Pcap), (b, Format::PcapNg)] {
        let good = fs::read(&src).unwrap();
        for _ in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..1 + rnd() % 8 {
                let i = (rnd() as usize) % bytes.len();
                bytes[i] = rnd() as u8;
            }
            bytes.truncate(bytes.len() - (rnd() as usize % 64));
            fs::write(&path, &bytes).unwrap();
            let mut n = 0u64;
            if let Err((_, e)) = read::read(&path, format, &mut |_, _| n += 1) {
                if let ReadError::Truncated { offset, .. } | ReadError::Malformed { offset, .. } = e {
                    assert!(offset < bytes.len() as u64, "{e}");
                }
            }
        }
    }
}
