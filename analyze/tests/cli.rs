//! End-to-end tests of the `netlat-analyze` binary on small capture files written here.
//!
//! The capture folder holds two good files (hosts h1 and h2) plus bad ones that must be
//! skipped with a warning naming them: a truncated file, a file whose footer is fine but
//! whose data pages are garbage, a foreign Parquet file, a netlat-tagged file lacking
//! `pkt_id`, a file of another schema version; and a `.partial` and a `.meta.json` file
//! that are ignored silently.
//!
//! Traffic (one clock, ns):
//! * ids 1..=5: h1 eth0 tc_egress → h2 eth0 xdp, latencies 10 500, 11 000, 12 250,
//!   15 000, 40 001 (nearest rank, n = 5: p50 = 3rd, p90 = p99 = 5th value);
//! * ids 11, 12: h2 eth0 tc_egress → h1 eth0 xdp, latencies 30 000 and 20 000;
//! * id 100: twice at h1 tc_egress (retransmission), once at h2 xdp: ambiguous;
//! * id 200: only at h1 tc_egress: unmatched.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;
use serde_json::{json, Value};

const T0: i64 = 1_000_000_000;

/// (ts_ns, pkt_id, ifname, hook) rows of one host.
type Rows<'a> = &'a [(i64, u64, &'a str, &'a str)];

fn events(host: &str, rows: Rows) -> DataFrame {
    let n = rows.len();
    // ids 11 and 12 go from h2 (198.18.0.2) to h1, the others from h1 to h2.
    let back = |id: u64| (11..=12).contains(&id);
    let addr = |back: bool| if back { "198.18.0.2" } else { "198.18.0.1" };
    df!(
        "ts_ns" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "host" => vec![host; n],
        "netns" => vec![4_026_531_840u64; n],
        "ifname" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "ifindex" => vec![2u32; n],
        "hook" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        // A column the analysis does not read, of a type it does not check, as in real files.
        "cpu" => vec![1u16; n],
        "family" => vec![4u8; n],
        "proto" => vec![17u8; n],
        "saddr" => rows.iter().map(|r| addr(back(r.1))).collect::<Vec<_>>(),
        "daddr" => rows.iter().map(|r| addr(!back(r.1))).collect::<Vec<_>>(),
        "sport" => rows.iter().map(|r| if back(r.1) { 6000u16 } else { 5000 }).collect::<Vec<_>>(),
        "dport" => rows.iter().map(|r| if back(r.1) { 5000u16 } else { 6000 }).collect::<Vec<_>>(),
        "pkt_id" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn write(path: &Path, mut df: DataFrame, kv: &[(&str, &str)]) {
    let kv = kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let file = File::create(path).unwrap();
    ParquetWriter::new(file).with_key_value_metadata(Some(KeyValueMetadata::from_static(kv))).finish(&mut df).unwrap();
}

fn netlat_kv(host: &'static str) -> [(&'static str, &'static str); 3] {
    [("netlat.schema_version", "1"), ("netlat.table", "events"), ("netlat.host", host)]
}

struct Capture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    h1: PathBuf,
    h2: PathBuf,
}

fn capture() -> Capture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cap");
    fs::create_dir_all(root.join("h1")).unwrap();
    fs::create_dir_all(root.join("h2/sub")).unwrap();

    let lat = [10_500, 11_000, 12_250, 15_000, 40_001];
    let t = |id: i64| T0 + id * 1_000_000;
    let (mut r1, mut r2) = (Vec::new(), Vec::new());
    for (i, l) in lat.iter().enumerate() {
        let id = i as i64 + 1;
        r1.push((t(id), id as u64, "eth0", "tc_egress"));
        r2.push((t(id) + l, id as u64, "eth0", "xdp"));
    }
    for (id, l) in [(11, 30_000), (12, 20_000)] {
        r2.push((t(id), id as u64, "eth0", "tc_egress"));
        r1.push((t(id) + l, id as u64, "eth0", "xdp"));
    }
    r1.extend([(t(100), 100, "eth0", "tc_egress"), (t(100) + 200_000, 100, "eth0", "tc_egress")]);
    r2.push((t(100) + 5_000, 100, "eth0", "xdp"));
    r1.push((t(200), 200, "eth0", "tc_egress"));

    let h1 = root.join("h1/h1-20250101T000000Z-7-00001.events.parquet");
    let h2 = root.join("h2/sub/h2-20250101T000000Z-9-00001.events.parquet");
    write(&h1, events("h1", &r1), &netlat_kv("h1"));
    write(&h2, events("h2", &r2), &netlat_kv("h2"));

    // Truncated: the footer is gone.
    let truncated = root.join("h1/h1-20250101T000000Z-7-00002.events.parquet");
    let bytes = fs::read(&h1).unwrap();
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    // Footer intact, data pages overwritten: only found when the data is read.
    let garbled = root.join("h2/h2-20250101T000000Z-9-00002.events.parquet");
    let mut bytes = fs::read(&h2).unwrap();
    let footer = u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let data_end = bytes.len() - 8 - footer as usize;
    bytes[4..data_end].fill(0xff);
    fs::write(&garbled, &bytes).unwrap();

    let foreign = df!("a" => [1i64, 2], "b" => ["x", "y"]).unwrap();
    write(&root.join("foreign.events.parquet"), foreign, &[]);
    let no_id = events("h1", &[(T0, 1, "eth0", "xdp")]).drop("pkt_id").unwrap();
    write(&root.join("noid.events.parquet"), no_id, &netlat_kv("h1"));
    let mut v2 = netlat_kv("h1");
    v2[0].1 = "2";
    write(&root.join("v2.events.parquet"), events("h1", &[(T0, 1, "eth0", "xdp")]), &v2);

    // Expected beside the events files, never read.
    fs::write(root.join("h1/.h1-20250101T000000Z-7-00003.events.parquet.partial"), b"PAR1").unwrap();
    fs::write(root.join("h1/h1-20250101T000000Z-7.meta.json"), b"{}").unwrap();
    Capture { _dir: dir, root, h1, h2 }
}

fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netlat-analyze"));
    for a in args {
        cmd.arg(a);
    }
    cmd.output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// Bad files under the capture root and a fragment of their expected reason.
const BAD: [(&str, &str); 5] = [
    ("h1/h1-20250101T000000Z-7-00002.events.parquet", "not a readable Parquet file"),
    ("h2/h2-20250101T000000Z-9-00002.events.parquet", "data cannot be read"),
    ("foreign.events.parquet", "not a netlat capture file"),
    ("noid.events.parquet", "missing column `pkt_id`"),
    ("v2.events.parquet", "this analyzer reads version 1"),
];

fn assert_warned(stderr: &str, root: &Path) {
    for (file, reason) in BAD {
        let path = root.join(file).display().to_string();
        let line = stderr.lines().find(|l| l.contains(&path));
        let line = line.unwrap_or_else(|| panic!("no warning for {path} in:\n{stderr}"));
        assert!(line.starts_with("netlat-analyze: warning: skipping "), "{line}");
        assert!(line.contains(reason), "{line}");
    }
    assert_eq!(stderr.lines().filter(|l| l.contains("warning")).count(), BAD.len(), "{stderr}");
    assert!(!stderr.contains(".partial") && !stderr.contains("meta.json"), "{stderr}");
}

#[test]
fn table_output() {
    let cap = capture();
    let out = run(&[&cap.root]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        text(&out.stdout),
        "\
from               to           segment  count  lost  min_us  mean_us  p50_us  p90_us  p99_us  p99.9_us  max_us   bound_us
h1:eth0:tc_egress  h2:eth0:xdp  network      5     1  10.500   17.750  12.250  40.001  40.001    40.001  40.001  unaligned
h2:eth0:tc_egress  h1:eth0:xdp  network      2     0  20.000   25.000  20.000  30.000  30.000    30.000  30.000  unaligned

paths:
h1>h2: udp 198.18.0.1:5000 > 198.18.0.2:6000; 6 packets: 5 complete, 1 lost, 0 off path
  hop  from               to           segment     count  lost  min_us  mean_us  p50_us  p90_us  p99_us  p99.9_us  max_us   bound_us
    0  h1:eth0:tc_egress  h2:eth0:xdp  network         5     1  10.500   17.750  12.250  40.001  40.001    40.001  40.001  unaligned
  e2e  h1:eth0:tc_egress  h2:eth0:xdp  end-to-end      5     1  10.500   17.750  12.250  40.001  40.001    40.001  40.001  unaligned
h2>h1: udp 198.18.0.2:6000 > 198.18.0.1:5000; 2 packets: 2 complete, 0 lost, 0 off path
  hop  from               to           segment     count  lost  min_us  mean_us  p50_us  p90_us  p99_us  p99.9_us  max_us   bound_us
    0  h2:eth0:tc_egress  h1:eth0:xdp  network         2     0  20.000   25.000  20.000  30.000  30.000    30.000  30.000  unaligned
  e2e  h2:eth0:tc_egress  h1:eth0:xdp  end-to-end      2     0  20.000   25.000  20.000  30.000  30.000    30.000  30.000  unaligned

unmatched ids: 1
  h1:eth0:tc_egress  1
ambiguous ids: 1
note: hosts h1, h2 could not be aligned: no clock-sync data (no *.sync.parquet files, or captures ran with --sync-port 0); cross-host latencies use each host's own clock and are only right if the clocks agree (hosts on one machine: pass --same-clock)
"
    );
    assert_warned(&stderr, &cap.root);
}

#[test]
fn json_output() {
    let cap = capture();
    let out = run(&[&"--format", &"json", &cap.root]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["pairs"],
        json!([
            {"from": "h1:eth0:tc_egress", "to": "h2:eth0:xdp", "segment": "network", "lost": 1, "count": 5,
             "min_ns": 10_500, "mean_ns": 17_750, "p50_ns": 12_250, "p90_ns": 40_001, "p99_ns": 40_001,
             "p999_ns": 40_001, "max_ns": 40_001, "bound_ns": null},
            {"from": "h2:eth0:tc_egress", "to": "h1:eth0:xdp", "segment": "network", "lost": 0, "count": 2,
             "min_ns": 20_000, "mean_ns": 25_000, "p50_ns": 20_000, "p90_ns": 30_000, "p99_ns": 30_000,
             "p999_ns": 30_000, "max_ns": 30_000, "bound_ns": null},
        ])
    );
    assert_eq!(v["paths"][0]["name"], "h1>h2");
    assert_eq!(v["paths"][0]["end_to_end"]["p50_ns"], 12_250);
    assert_eq!(v["paths"][0]["hops"][0]["lost"], 1);
    assert_eq!(v["clocks"]["same_clock"], false);
    assert!(v["clocks"]["notes"][0].as_str().unwrap().contains("could not be aligned: no clock-sync data"), "{v}");
    assert_eq!(v["unmatched"], json!([{"point": "h1:eth0:tc_egress", "ids": 1}]));
    assert_eq!(v["ambiguous"], 1);
    assert_eq!(v["events"], 18);
    assert_eq!(v["ids"], 9);
    let used = [cap.h1.display().to_string(), cap.h2.display().to_string()];
    assert_eq!(v["files"]["used"], json!(used));
    let skipped = v["files"]["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), BAD.len());
    for (file, reason) in BAD {
        let path = cap.root.join(file).display().to_string();
        let s = skipped.iter().find(|s| s["file"] == path.as_str()).expect(file);
        assert!(s["reason"].as_str().unwrap().contains(reason), "{s}");
    }
    assert_warned(&stderr, &cap.root);
}

#[test]
fn csv_output_keeps_summary_on_stderr() {
    let cap = capture();
    let out = run(&[&cap.h2, &"--format=csv", &"--same-clock", &cap.h1]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        text(&out.stdout),
        "from,to,segment,count,lost,min_us,mean_us,p50_us,p90_us,p99_us,p99.9_us,max_us,bound_us\n\
         h1:eth0:tc_egress,h2:eth0:xdp,network,5,1,10.500,17.750,12.250,40.001,40.001,40.001,40.001,0.000\n\
         h2:eth0:tc_egress,h1:eth0:xdp,network,2,0,20.000,25.000,20.000,30.000,30.000,30.000,30.000,0.000\n"
    );
    assert!(text(&out.stderr).contains("ambiguous ids: 1"));
}

/// Quoted patterns are expanded by netlat-analyze; one that matches nothing is named.
#[test]
fn issue5_quoted_globs_expand() {
    let cap = capture();
    let pattern = cap.root.join("h*/**/*-00001.events.parquet");
    let none = cap.root.join("nothing-*.parquet");
    let out = run(&[&pattern, &none, &"--format=json"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["files"]["used"], json!([cap.h1.display().to_string(), cap.h2.display().to_string()]));
    assert!(stderr.contains(&format!("skipping {}: pattern matched no file", none.display())), "{stderr}");
}

#[test]
fn same_file_twice_is_read_once() {
    let cap = capture();
    let out = run(&[&cap.h1, &cap.h2, &cap.h1, &"--format=json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ambiguous"], 1);
    assert_eq!(v["files"]["used"].as_array().unwrap().len(), 2);
}

#[test]
fn no_usable_input_exits_1() {
    let cap = capture();
    let missing = cap.root.join("missing.events.parquet");
    let out = run(&[&cap.root.join(BAD[0].0), &cap.root.join(BAD[2].0), &missing]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(stderr.contains("error: no usable capture file (3 skipped)"), "{stderr}");
    assert!(stderr.contains(&format!("skipping {}: cannot read", missing.display())), "{stderr}");

    let empty = tempfile::tempdir().unwrap();
    let out = run(&[&empty.path()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no usable capture file (0 skipped)"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(run(&[]).status.code(), Some(2));
    assert_eq!(run(&[&"--format", &"xml", &"x"]).status.code(), Some(2));
    let help = run(&[&"--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("Exit codes:"));
}

/// Real captures from the namespace lab (`netlat-lab demo --duration 0.1
/// --rate 1000`, in testdata/two-ns/) give the recorded table: regression
/// guard for issue 2's end-to-end path on files the capture really wrote.
#[test]
fn issue2_lab_captures_match_golden() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/two-ns");
    // Both hosts ran on one machine, without clock sync.
    let out = run(&[&dir, &"--same-clock"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let want = golden(&dir.join("expected.txt"), &text(&out.stdout));
    // 100 UDP datagrams plus TCP traffic crossed a -> b: every packet leaving
    // a's egress was matched at b's XDP hook.
    assert!(want.contains("a:veth0:tc_egress"), "{want}");
    assert!(want.contains("unmatched ids: 0"), "{want}");
}

/// Checks `actual` against the golden file `path` and returns it; with
/// `NETLAT_REGENERATE_GOLDENS=1` writes `actual` there instead (review the diff).
fn golden(path: &Path, actual: &str) -> String {
    if std::env::var_os("NETLAT_REGENERATE_GOLDENS").is_some_and(|v| v == "1") {
        fs::write(path, actual).unwrap();
        return actual.to_owned();
    }
    let want = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, want, "output differs from {}", path.display());
    want
}

fn sync_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/sync-3h")
}

/// Real captures of three namespaces on one switch (`netlat-lab syncbench --duration 4
/// --rate 50`), host b's clock set 0.5 s and 50 ppm ahead, c's 0.5 s and 50 ppm behind
/// (`--sim-clock`): the aligned latency table and the clock table match the recorded ones.
#[test]
fn issue3_sync_captures_match_golden() {
    let dir = sync_dir();
    let out = run(&[&dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    golden(&dir.join("expected.txt"), &text(&out.stdout));
    let out = run(&[&"sync", &dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    golden(&dir.join("expected-sync.txt"), &text(&out.stdout));
}

fn nearest_rank(sorted: &[i64], per_mille: usize) -> i64 {
    sorted[(sorted.len() * per_mille).div_ceil(1000).max(1) - 1]
}

/// Every figure of `fig` (JSON, ns) is within `bound` of the same figure of `truth`
/// (sorted), and the counts agree.
fn within_bound(what: &str, fig: &Value, truth: &[i64], bound: i64) {
    assert_eq!(fig["count"].as_u64().unwrap() as usize, truth.len(), "{what}");
    let mean = truth.iter().sum::<i64>() as f64 / truth.len() as f64;
    for (key, want) in [
        ("min_ns", truth[0]),
        ("mean_ns", mean.round() as i64),
        ("p50_ns", nearest_rank(truth, 500)),
        ("p90_ns", nearest_rank(truth, 900)),
        ("p99_ns", nearest_rank(truth, 990)),
        ("p999_ns", nearest_rank(truth, 999)),
        ("max_ns", truth[truth.len() - 1]),
    ] {
        let got = fig[key].as_i64().unwrap();
        assert!((got - want).abs() <= bound, "{what} {key}: printed {got}, truth {want}, bound {bound}");
    }
}

/// The same captures against the truth the lab set up: every figure netlat-analyze prints
/// for a cross-host pair lies within its printed bound of the figure computed on the one
/// real clock (each timestamp mapped back through the injected clock error), and the
/// clock table recovers the injected offsets and drifts.
#[test]
fn issue3_aligned_latencies_agree_with_the_injected_clocks() {
    let dir = sync_dir();
    let mut sims = std::collections::HashMap::new();
    let mut first_probe = std::collections::HashMap::new();
    for h in ["a", "b", "c"] {
        for f in fs::read_dir(dir.join(h)).unwrap() {
            let p = f.unwrap().path();
            let name = p.to_string_lossy().into_owned();
            if name.ends_with(".meta.json") {
                let v: Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                let sim: sync::sim::SimClock = if v["sim_clock"].is_null() {
                    Default::default()
                } else {
                    serde_json::from_value(v["sim_clock"].clone()).unwrap()
                };
                sims.insert(h.to_owned(), sim);
            } else if name.ends_with(".sync.parquet") {
                let df = ParquetReader::new(File::open(&p).unwrap()).finish().unwrap();
                first_probe.insert(h.to_owned(), df.column("ts_ns").unwrap().i64().unwrap().min().unwrap());
            }
        }
    }
    // Truth per packet: tc_egress on one host, xdp on another, on the real clock.
    let mut tx = std::collections::HashMap::new();
    let mut rx = std::collections::HashMap::new();
    let mut ingress = std::collections::HashMap::new();
    for h in ["a", "b", "c"] {
        for f in fs::read_dir(dir.join(h)).unwrap() {
            let p = f.unwrap().path();
            if !p.to_string_lossy().ends_with(".events.parquet") {
                continue;
            }
            let df = ParquetReader::new(File::open(&p).unwrap()).finish().unwrap();
            let ts = df.column("ts_ns").unwrap().i64().unwrap().clone();
            let hook = df.column("hook").unwrap().str().unwrap().clone();
            let id = df.column("pkt_id").unwrap().u64().unwrap().clone();
            for i in 0..df.height() {
                let real = sims[h].invert(ts.get(i).unwrap());
                match hook.get(i).unwrap() {
                    "tc_egress" => tx.insert(id.get(i).unwrap(), (h, real)),
                    "xdp" => rx.insert(id.get(i).unwrap(), (h, real)),
                    "tc_ingress" => ingress.insert(id.get(i).unwrap(), (h, real)),
                    _ => None,
                };
            }
        }
    }
    let mut truth: std::collections::BTreeMap<(&str, &str), Vec<i64>> = Default::default();
    // End to end: the sender's tc_egress to the receiver's tc_ingress.
    let mut e2e_truth: std::collections::BTreeMap<(&str, &str), Vec<i64>> = Default::default();
    for (id, (from, t1)) in &tx {
        if let Some((to, t2)) = rx.get(id) {
            if from != to {
                truth.entry((from, to)).or_default().push(t2 - t1);
            }
        }
        if let Some((to, t3)) = ingress.get(id) {
            if from != to {
                e2e_truth.entry((from, to)).or_default().push(t3 - t1);
            }
        }
    }
    let out = run(&[&dir, &"--format", &"json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(truth.len(), 3);
    for ((from, to), mut lat) in truth {
        lat.sort_unstable();
        let pair = v["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["from"] == format!("{from}:veth0:tc_egress") && p["to"] == format!("{to}:veth0:xdp"))
            .unwrap_or_else(|| panic!("no pair {from} -> {to} in {v}"));
        let bound = pair["bound_ns"].as_i64().unwrap();
        assert!(bound > 0 && bound < 10_000, "{pair}");
        within_bound(&format!("{from}->{to}"), pair, &lat, bound);
    }
    // Each path's end-to-end figures (and the path is the one the packets took).
    assert_eq!(e2e_truth.len(), 3);
    for ((from, to), mut lat) in e2e_truth {
        lat.sort_unstable();
        let path = v["paths"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == format!("{from}>{to}"))
            .unwrap_or_else(|| panic!("no path {from}>{to} in {v}"));
        let stations = [format!("{from}:veth0:tc_egress"), format!("{to}:veth0:xdp"), format!("{to}:veth0:tc_ingress")];
        assert_eq!(path["stations"], json!(stations));
        assert_eq!((path["complete"].as_u64(), path["lost"].as_u64()), (Some(lat.len() as u64), Some(0)));
        let bound = path["end_to_end_bound_ns"].as_i64().unwrap();
        within_bound(&format!("{from}>{to} end to end"), &path["end_to_end"], &lat, bound);
    }
    // The clock table.
    let out = run(&[&"sync", &dir, &"--format", &"json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"]["reference"], "a");
    for h in v["result"]["hosts"].as_array().unwrap().iter().filter(|h| h["host"] != "a") {
        let name = h["host"].as_str().unwrap();
        let (sa, sh) = (sims["a"], sims[name]);
        let true_offset = sync::sim::true_offset(&sa, &sh, first_probe[name]);
        let offset = h["offset_ns"].as_f64().unwrap();
        let bound = h["bound_ns"].as_f64().unwrap();
        assert!((offset - true_offset).abs() < bound, "{name}: offset {offset}, truth {true_offset}, bound {bound}");
        let true_drift = (1.0 - (1.0 + sa.drift_ppm * 1e-6) / (1.0 + sh.drift_ppm * 1e-6)) * 1e6;
        let drift = h["drift_ppm"].as_f64().unwrap();
        assert!((drift - true_drift).abs() < 0.5, "{name}: drift {drift}, truth {true_drift}");
    }
}

/// Bad input gets a statement, not silent numbers: a peer whose captures are missing is
/// named with the probes it never answered, and a single host is said to need no alignment.
#[test]
fn issue3_missing_peer_and_single_host_are_explained() {
    let dir = sync_dir();
    let out = run(&[&dir.join("a"), &dir.join("b")]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(t.contains("note: host a sent") && t.contains("to 198.18.0.3 that no capture saw arrive"), "{t}");
    // A record that is not JSON is named and skipped.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("x.meta.json");
    fs::write(&bad, "{not json").unwrap();
    let out = run(&[&dir.join("a"), &dir.join("b"), &bad]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains(&format!("skipping {}: not a run-metadata record", bad.display())),
        "{}",
        text(&out.stderr)
    );
    assert!(t.contains("b: offset +0.5"), "{t}");
    let out = run(&[&"sync", &dir.join("a")]);
    assert_eq!(out.status.code(), Some(0));
    let t = text(&out.stdout);
    assert!(t.contains("note: one host (a)"), "{t}");
    assert!(t.contains("no capture saw arrive"), "{t}");
}

/// `--filter` uses the capture's language; `--by flow`, `--window` and `--table` add and
/// pick tables; bad values are usage errors naming the flag.
#[test]
fn issue5_filters_flows_and_windows() {
    let cap = capture();
    let out = run(&[&cap.h1, &cap.h2, &"--same-clock", &"--filter", &"src host 198.18.0.2", &"--format=csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let csv = text(&out.stdout);
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("h2:eth0:tc_egress,h1:eth0:xdp,network,2,0,20.000,25.000"), "{csv}");

    let args: [&dyn AsRef<std::ffi::OsStr>; 8] =
        [&cap.h1, &cap.h2, &"--same-clock", &"--by", &"flow", &"--format=csv", &"--table", &"flows"];
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().nth(1).unwrap(),
        "udp 198.18.0.1:5000 > 198.18.0.2:6000,h1:eth0:tc_egress,h2:eth0:xdp,network,5,0,10.500,17.750,12.250,40.001,40.001,40.001,40.001,0.000"
    );

    // Windows of 2 ms from the first event: ids 1..=5 leave 0..4 ms after it.
    let out = run(&[&cap.h1, &cap.h2, &"--same-clock", &"--window", &"0.002", &"--format=csv", &"--table=windows"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let rows: Vec<String> = text(&out.stdout)
        .lines()
        .filter(|l| l.contains("h1:eth0:tc_egress,h2"))
        .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
        .collect();
    let want = ["0.000", "0.002", "0.004"].map(|t| format!("{t},h1:eth0:tc_egress,h2:eth0:xdp,network"));
    assert_eq!(rows, [2, 2, 1].iter().zip(want).map(|(n, w)| format!("{w},{n}")).collect::<Vec<_>>());

    for (args, flag) in [
        (vec!["--filter", "port banana"], "--filter"),
        (vec!["--window", "0"], "--window"),
        (vec!["--since=-1"], "--since"),
        (vec!["--table", "flows", "--format", "csv"], "--by flow"),
    ] {
        let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&cap.h1];
        all.extend(args.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        let out = run(&all);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(text(&out.stderr).contains(flag), "{args:?}: {}", text(&out.stderr));
    }
}

/// A topology that names a point nobody captured makes every packet that reached the point
/// before it lost there, and says so; `--out` writes Parquet tables whose rows are the
/// packets' hops.
#[test]
fn issue5_topology_and_parquet_outputs() {
    let cap = capture();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.yaml");
    fs::write(
        &hosts,
        "hosts:\n\
         - {name: h1, address: 198.18.0.1, interfaces: [eth0]}\n\
         - {name: h2, address: 198.18.0.2, interfaces: [eth0], role: {container_on: h1}}\n\
         - {name: h3, address: 198.18.0.3, interfaces: [eth0]}\n\
         paths:\n\
         - {name: out, points: ['h1:eth0', 'h2:eth0', 'h3:eth0']}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let out = run(&[&cap.h1, &cap.h2, &"--same-clock", &"--hosts", &hosts, &"--out", &out_dir, &"--format=json"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let path = v["paths"].as_array().unwrap().iter().find(|p| p["name"] == "out").expect("named path");
    assert_eq!(path["stations"], json!(["h1:eth0:tc_egress", "h2:eth0:xdp", "h3:eth0 (nothing seen)"]));
    assert_eq!(path["hops"][0]["segment"], "host-container");
    assert_eq!([&path["hops"][0]["lost"], &path["hops"][1]["lost"]], [&json!(1), &json!(5)]);
    assert_eq!((path["complete"].as_u64(), path["lost"].as_u64()), (Some(0), Some(6)));
    assert!(v["notes"][0].as_str().unwrap().contains("no packet was seen at h3:eth0"), "{v}");
    assert!(stderr.contains("wrote 4 files"), "{stderr}");

    let read = |name: &str| ParquetReader::new(File::open(out_dir.join(name)).unwrap()).finish().unwrap();
    let hops = read("hops.parquet").sort(["latency_ns"], Default::default()).unwrap();
    assert_eq!(hops.height(), 7, "{hops}");
    let lat: Vec<i64> = hops.column("latency_ns").unwrap().i64().unwrap().into_no_null_iter().collect();
    assert_eq!(lat, [10_500, 11_000, 12_250, 15_000, 20_000, 30_000, 40_001]);
    let first = |c: &str| hops.column(c).unwrap().get(0).unwrap().to_string();
    assert_eq!(first("path"), "\"out\"");
    assert_eq!(first("hop"), "0");
    assert_eq!(first("segment"), "\"host-container\"");
    assert_eq!(first("flow"), "\"udp 198.18.0.1:5000 > 198.18.0.2:6000\"");
    assert_eq!(first("time_ns"), (T0 + 1_000_000).to_string());
    let pairs = read("pairs.parquet");
    assert_eq!(pairs.column("p999_ns").unwrap().i64().unwrap().get(0), Some(40_001));
    let paths = read("paths.parquet");
    // out: two hops and e2e; h2>h1: one hop and e2e.
    assert_eq!(paths.height(), 3 + 2);
    let json: Value = serde_json::from_slice(&fs::read(out_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json, v);
}

/// `netlat-analyze report` on real captures (testdata/sync-3h): one HTML file that
/// headless Chromium renders with every chart, and the same charts as PNG files.
#[test]
fn issue5_report_renders_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("report.html");
    let png = dir.path().join("png");
    let out = run(&[&"report", &sync_dir(), &"-o", &html, &"--png", &png]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = fs::read_to_string(&html).unwrap();
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("<script"), "self-contained");
    let shot = common::chromium::render_with(&html, (1200, 4000));
    for title in analyze::html_report::TITLES {
        assert!(shot.dom.contains(title), "{title} missing from the rendered page");
        let file = png.join(format!("{}.png", analyze::html_report::slug(title)));
        let bytes = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
        assert!(bytes > 5_000, "{}: {bytes} bytes", file.display());
    }
    // The tables carry the figures the text report prints.
    assert!(shot.dom.contains("a:veth0:tc_egress") && shot.dom.contains("33.539"), "hop table");
    assert!(shot.non_white_fraction() > 0.05, "blank page: {}", shot.non_white_fraction());
    let palette_seen = analyze::charts::PALETTE.iter().filter(|c| shot.count_colour(c, 12) > 200).count();
    assert!(palette_seen >= 3, "only {palette_seen} palette colours drawn");
}
