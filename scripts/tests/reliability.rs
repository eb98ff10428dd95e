//! Kernel tests of issue 9: exact accounting under overload, full disks and
//! read-only folders, SIGKILL at random moments, nothing left attached.

use std::{
    collections::BTreeMap,
    net::SocketAddrV4,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use lab::{
    accounting, bins,
    capture::{self, Capture},
    testing::{kernel_test, netlat_programs, run_meta},
    traffic, Lab,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Reads every row of a Parquet file; `Err` if any part is unreadable.
fn rows(path: &Path) -> Result<usize, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let r =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())?.build().map_err(|e| e.to_string())?;
    let mut n = 0;
    for b in r {
        n += b.map_err(|e| e.to_string())?.num_rows();
    }
    Ok(n)
}

fn finished(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(".parquet"));
    v.sort();
    v
}

/// A tmpfs mounted for the test, unmounted when dropped (also on panic).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, opts: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", opts, "tmpfs"]).arg(at).status().unwrap();
        assert!(ok.success(), "mount tmpfs {opts}");
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A flood far beyond what a capture with a 16 KiB ring buffer and a writer
/// slowed to one batch per 50 ms can record: for every hook, written +
/// kernel drops + user-space drops = selected, exactly; host a's egress
/// selected every datagram sent; the analyzer names the report loss.
#[test]
fn issue9_overload_accounting_is_exact() {
    let Some(_serial) = kernel_test("issue9_overload_accounting_is_exact") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let common =
        ["-q", "--ringbuf-kb", "16", "--queue-batches", "1", "--writer-delay-us", "50000", "udp and port 7001"];
    let (ca, cb) = capture::start_pair(&lab, tmp.path(), &[], &common).unwrap();
    let dst = SocketAddrV4::new(b.addr, 7001);
    let sink = traffic::UdpSink::start(&b.netns, dst).unwrap();
    let sent = 300_000u64;
    traffic::udp_send(&a.netns, dst, sent, 0, 64).unwrap();
    sink.finish().unwrap();
    let (fa, fb) = (ca.stop().unwrap(), cb.stop().unwrap());
    assert_eq!((fa.code, fb.code), (Some(0), Some(0)), "{}\n{}", fa.stderr, fb.stderr);
    let mut dropped = 0;
    let mut lines = BTreeMap::new();
    for host in ["a", "b"] {
        for h in accounting::read(&tmp.path().join(host)).unwrap() {
            assert_eq!(h.unexplained(), 0, "{host}/{h}");
            assert_eq!(h.selected, h.written + h.ringbuf_full + h.userspace_dropped, "{host}/{h}");
            dropped += h.ringbuf_full + h.userspace_dropped;
            lines.insert(format!("{host}/{}", h.hook), h);
        }
    }
    assert_eq!(lines["a/tc_egress"].selected, sent, "{:?}", lines["a/tc_egress"]);
    // The writer, relaxed (nice 10) while it keeps up, went back to the capture's own
    // priority whenever its queue (one batch here) had backed up: counted in the record.
    for host in ["a", "b"] {
        let v = run_meta(&tmp.path().join(host));
        assert_eq!(v["config"]["writer_nice"], "10", "{host}");
        if host == "a" {
            assert!(v["writer_urgent"].as_u64().unwrap() > 0, "{host}: {}", v["writer_urgent"]);
        }
    }
    assert!(lines["b/xdp"].selected <= sent && lines["b/xdp"].selected > sent / 2, "{:?}", lines["b/xdp"]);
    // Thousands of drops at the least (how many depends on the machine's speed and load).
    assert!(dropped > sent / 100, "the overload did not overload: {lines:?}");
    // The rows on disk are exactly the written counts.
    for host in ["a", "b"] {
        let on_disk: usize = finished(&tmp.path().join(host))
            .iter()
            .filter(|p| p.to_string_lossy().ends_with(".events.parquet"))
            .map(|p| rows(p).unwrap())
            .sum();
        let written: u64 = lines.iter().filter(|(k, _)| k.starts_with(host)).map(|(_, h)| h.written).sum();
        assert_eq!(on_disk as u64, written, "{host}");
    }
    let out = Command::new(bins::path("netlat-analyze")).arg(tmp.path()).output().unwrap();
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(t.contains("report loss (packets the captures selected but could not record"), "{t}");
    assert!(t.contains("a:tc_egress") && t.contains("kernel ring buffer full"), "{t}");
}

/// A disk that fills mid-run: the capture stops with a clear error and exit
/// code 1, and every finished file is complete. A read-only folder is
/// refused before any program is loaded (exit 2).
#[test]
fn issue9_full_disk_and_read_only_folder() {
    let Some(_serial) = kernel_test("issue9_full_disk_and_read_only_folder") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let before = netlat_programs().len();

    let ro = Tmpfs::mount(&tmp.path().join("ro"), "ro,size=1m");
    let out = Command::new("ip")
        .args(["netns", "exec", &a.netns])
        .arg(bins::path("netlat-capture"))
        .args(["-i", "veth0", "--duration", "1", "-w"])
        .arg(ro.0.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&ro.0.join("out").display().to_string()) && err.contains("Read-only"), "{err}");
    assert_eq!(netlat_programs().len(), before);

    let small = Tmpfs::mount(&tmp.path().join("small"), "size=3m");
    let dir = small.0.join("out");
    let mut cap = Capture::start(Some(&a.netns), &dir, &["-i", "veth0", "-q", "-C", "1", "udp and port 7002"]).unwrap();
    let dst = SocketAddrV4::new(b.addr, 7002);
    let _sink = traffic::UdpSink::start(&b.netns, dst).unwrap();
    for _ in 0..100 {
        if !cap.is_running() {
            break;
        }
        // Distinct payloads so the files do not compress to nothing.
        traffic::udp_send(&a.netns, dst, 50_000, 0, 200).unwrap();
    }
    let f = cap.stop().unwrap();
    assert_eq!(f.code, Some(1), "{}", f.stderr);
    assert!(f.stderr.contains("No space left on device"), "{}", f.stderr);
    let files: Vec<PathBuf> =
        finished(&dir).into_iter().filter(|p| p.to_string_lossy().ends_with(".events.parquet")).collect();
    assert!(!files.is_empty(), "no file was finished before the disk filled");
    for p in &files {
        assert!(rows(p).unwrap() > 0, "{}", p.display());
    }
    // The file in progress is recovered in place, on the full disk.
    let out = Command::new(bins::path("netlat-capture")).arg("recover").arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "recover on a full disk: {err}");
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".partial") && !name.ends_with(".footer"), "{name} left after recovery: {err}");
    }
    for p in finished(&dir) {
        rows(&p).unwrap_or_else(|e| panic!("{} unreadable after recovery: {e}", p.display()));
    }
    drop(small);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(netlat_programs().len(), before, "programs left after a failed run");
}

/// SIGKILL at random moments, again and again, into one folder: finished
/// files always open and are complete, the file in progress only ever has a
/// `.partial` name, earlier files are never overwritten, and no program stays
/// loaded. After each kill the run is recovered, by `netlat-capture recover`
/// or (every other round) by the next capture's start: no `.partial` is left,
/// the recovered file opens with the run's schema and metadata, the run's
/// meta.json lists it, and the rows on disk are the rows sent but for at most
/// one flush interval (0.5 s here, plus the 0.2 s batch age).
#[test]
fn issue9_sigkill_leaves_finished_files_intact_and_nothing_attached() {
    let Some(_serial) = kernel_test("issue9_sigkill_leaves_finished_files_intact_and_nothing_attached") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (lab.hosts[0].clone(), lab.hosts[1].clone());
    let before = netlat_programs().len();
    let dir = tmp.path().join("a");
    let dst = SocketAddrV4::new(b.addr, 7003);
    let _sink = traffic::UdpSink::start(&b.netns, dst).unwrap();
    let mut seen: BTreeMap<PathBuf, (u64, std::time::SystemTime)> = BTreeMap::new();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (rounds, rate) = (8, 20_000u64);
    // The killed run still to be checked once the next capture has started.
    let mut pending: Option<Killed> = None;
    let mut with_footer = 0;
    for round in 0..rounds {
        let args = ["-i", "veth0", "-q", "-G", "2", "--flush-seconds", "0.5", "udp and port 7003"];
        let cap = Capture::start(Some(&a.netns), &dir, &args).unwrap();
        if let Some(k) = pending.take() {
            // This capture's start recovered the previous run's files.
            check_killed(&dir, &k);
        }
        let run_id = std::fs::read_to_string(dir.join(".ready")).unwrap().trim().to_owned();
        let send_ms = 200 + next() % 2500;
        let ns = a.netns.clone();
        let sent = send_ms * rate / 1000;
        traffic::udp_send(&ns, dst, sent, rate, 64).unwrap();
        // A random moment within (and beyond) a flush interval after the traffic ends.
        std::thread::sleep(Duration::from_millis(next() % 700));
        let killed_at = sync::clock::monotonic_ns();
        let f = cap.kill().unwrap();
        assert_eq!(f.code, None, "round {round}: not killed by the signal");
        for p in std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()) {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with(".parquet") {
                rows(&p).unwrap_or_else(|e| panic!("round {round}: finished file {name} unreadable: {e}"));
                let md = std::fs::metadata(&p).unwrap();
                let entry = (md.len(), md.modified().unwrap());
                if let Some(old) = seen.insert(p.clone(), entry) {
                    assert_eq!(old, entry, "round {round}: {name} was rewritten");
                }
            } else {
                assert!(
                    name.ends_with(".meta.json")
                        || (name.starts_with('.') && (name.ends_with(".partial") || name.ends_with(".footer")))
                        || name.starts_with(".ready")
                        || name.starts_with(".capture"),
                    "round {round}: unexpected file {name}"
                );
            }
        }
        // Each file in progress with a recovery footer must come back: the
        // footer is stored only once a row group is on disk.
        let footers = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(&run_id) && n.ends_with(::capture::recover::FOOTER_SUFFIX))
            .filter(|n| {
                dir.join(n.replace(::capture::recover::FOOTER_SUFFIX, ::capture::recover::PARTIAL_SUFFIX)).exists()
            })
            .count();
        eprintln!("round {round}: {sent} sent, {footers} file(s) in progress with a recovery footer");
        with_footer += footers;
        let killed = Killed { round, run_id, sent, killed_at, footers };
        if round % 2 == 1 && round + 1 < rounds {
            pending = Some(killed);
        } else {
            let out = Command::new(bins::path("netlat-capture")).arg("recover").arg(&dir).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "round {round}: recover: {err}");
            assert!(!err.contains("could not recover"), "round {round}: {err}");
            check_killed(&dir, &killed);
        }
    }
    // Each kill finds a file in progress with most of its row groups on disk
    // (traffic 0.2-2.7 s, the kill 0-0.7 s after, 2 s files, 0.5 s flushes):
    // all 8 missing one would be a broken writer, not chance.
    assert!(with_footer > 0, "no kill in {rounds} rounds left a file with a recovery footer");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(netlat_programs().len(), before, "programs left after SIGKILL");
    // The analyzer reads recovered files like any other.
    let out = Command::new(bins::path("netlat-analyze")).arg("--same-clock").arg(&dir).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("skipping"), "{err}");
}

/// A capture killed in round `round` after `sent` datagrams.
struct Killed {
    round: usize,
    run_id: String,
    sent: u64,
    killed_at: i64,
    /// Files in progress that had a recovery footer when the capture was killed.
    footers: usize,
}

/// Checks a killed run after recovery: every file in progress that had a
/// recovery footer is back as a `-recovered` file (regression: the test
/// asked for 4 recovered files in 8 random kills, and a few percent of runs
/// had fewer by chance).
fn check_killed(dir: &Path, k: &Killed) {
    let round = k.round;
    let mut on_disk = 0u64;
    let mut recovered = Vec::new();
    let mut newest_ts = i64::MIN;
    for p in finished(dir) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains(&k.run_id) {
            continue;
        }
        let n = rows(&p).unwrap_or_else(|e| panic!("round {round}: {name} unreadable after recovery: {e}"));
        let f = std::fs::File::open(&p).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        let kv: BTreeMap<String, String> = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .into_iter()
            .flatten()
            .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(kv.get("netlat.schema_version").map(String::as_str), Some("1"), "round {round}: {name}");
        assert_eq!(kv.get("netlat.run_id"), Some(&k.run_id), "round {round}: {name}");
        if name.contains("-recovered") {
            assert!(kv.contains_key("netlat.recovered_from"), "round {round}: {name}: {kv:?}");
            recovered.push(name.clone());
        }
        if name.ends_with(".events.parquet") {
            let schema = builder.schema();
            assert_eq!(schema.fields().len(), 23, "round {round}: {name}");
            assert_eq!(schema.field_with_name("ts_ns").unwrap().data_type(), &arrow::datatypes::DataType::Int64);
            on_disk += n as u64;
            if n > 0 {
                newest_ts = newest_ts.max(max_ts(&p));
            }
        }
    }
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !(name.contains(&k.run_id) && (name.ends_with(".partial") || name.contains(".footer"))),
            "round {round}: {name} left after recovery"
        );
    }
    // Only the egress hook of veth0 sees the datagrams (the sink sends nothing back).
    let flush_window = (0.5 + 0.2 + 0.3) * k.sent.min(20_000) as f64;
    assert!(on_disk <= k.sent, "round {round}: {on_disk} rows on disk, {} sent", k.sent);
    assert!(
        (k.sent - on_disk) as f64 <= flush_window,
        "round {round}: {on_disk} rows on disk of {} sent: more than one flush interval lost",
        k.sent
    );
    if on_disk > 0 {
        assert!(
            k.killed_at - newest_ts < 2_000_000_000,
            "round {round}: newest recorded event {} ms before the kill",
            (k.killed_at - newest_ts) / 1_000_000
        );
    }
    let meta = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&format!("{}.meta.json", k.run_id)))
        .unwrap_or_else(|| panic!("round {round}: no meta.json"));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    if !recovered.is_empty() {
        assert_eq!(v["status"], "interrupted", "round {round}: {v}");
        let listed: Vec<&str> = v["files"].as_array().unwrap().iter().filter_map(|f| f.as_str()).collect();
        for r in recovered.iter().filter(|r| r.ends_with(".events.parquet")) {
            assert!(listed.contains(&r.as_str()), "round {round}: {r} not in meta files {listed:?}");
        }
    }
    assert_eq!(recovered.len(), k.footers, "round {round}: recovered {recovered:?}, footers at the kill {}", k.footers);
}

fn max_ts(p: &Path) -> i64 {
    let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap()).unwrap().build().unwrap();
    let mut m = i64::MIN;
    for b in r {
        let b = b.unwrap();
        let ts =
            b.column_by_name("ts_ns").unwrap().as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().clone();
        m = m.max(ts.values().iter().copied().max().unwrap_or(i64::MIN));
    }
    m
}

/// Legacy TC attachment (netlink filters on a `clsact` qdisc, as on kernels
/// before 6.6; forced here with the hidden `--tc-netlink`): the capture
/// removes the qdisc it added when it stops on SIGTERM and when it fails (an
/// unknown second interface, after the first was attached), and leaves a
/// qdisc that was there before, without netlat's filters.
#[test]
fn issue9_legacy_tc_attach_removes_only_its_own_qdisc() {
    let Some(_serial) = kernel_test("issue9_legacy_tc_attach_removes_only_its_own_qdisc") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let a = lab.hosts[0].clone();
    let tc = |args: &[&str]| -> String {
        let out = Command::new("ip").args(["netns", "exec", &a.netns, "tc"]).args(args).output().unwrap();
        assert!(out.status.success(), "tc {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let qdiscs = || tc(&["qdisc", "show", "dev", &a.iface]);
    let filters =
        || tc(&["filter", "show", "dev", &a.iface, "ingress"]) + &tc(&["filter", "show", "dev", &a.iface, "egress"]);
    let before = netlat_programs().len();
    assert!(!qdiscs().contains("clsact"), "{}", qdiscs());
    let dir = tmp.path().join("a");
    for preexisting in [false, true] {
        if preexisting {
            tc(&["qdisc", "add", "dev", &a.iface, "clsact"]);
        }
        let cap =
            Capture::start(Some(&a.netns), &dir, &["-i", &a.iface, "-q", "--tc-netlink", "udp and port 7004"]).unwrap();
        assert!(qdiscs().contains("clsact"), "{}", qdiscs());
        let f = filters();
        assert!(f.contains("netlat_tc_in") && f.contains("netlat_tc_out"), "netlink filters missing: {f}");
        let fin = cap.stop().unwrap();
        assert_eq!(fin.code, Some(0), "{}", fin.stderr);
        assert_eq!(
            qdiscs().contains("clsact"),
            preexisting,
            "after SIGTERM (qdisc there before: {preexisting}): {}",
            qdiscs()
        );
        assert!(!filters().contains("netlat"), "filters left after SIGTERM: {}", filters());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(netlat_programs().len(), before, "programs left after SIGTERM");

        let out = Command::new("ip")
            .args(["netns", "exec", &a.netns])
            .arg(bins::path("netlat-capture"))
            .args(["-i", &a.iface, "-i", "nosuch0", "-q", "--tc-netlink", "--duration", "5", "-w"])
            .arg(&dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(err.contains("nosuch0"), "{err}");
        assert_eq!(
            qdiscs().contains("clsact"),
            preexisting,
            "after an error (qdisc there before: {preexisting}): {}",
            qdiscs()
        );
        assert!(!filters().contains("netlat"), "filters left after an error: {}", filters());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(netlat_programs().len(), before, "programs left after an error");
        if preexisting {
            tc(&["qdisc", "del", "dev", &a.iface, "clsact"]);
        }
    }
}

/// The name and nice value of every thread of process `pid` (`comm`, and field 19
/// of /proc/PID/task/TID/stat).
fn thread_nice(pid: u32) -> Vec<(String, i64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let t = t.unwrap().path();
            let stat = std::fs::read_to_string(t.join("stat")).unwrap();
            // Fields after the parenthesised command name start at field 3.
            let rest: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
            let comm = std::fs::read_to_string(t.join("comm")).unwrap().trim().to_owned();
            (comm, rest[19 - 3].parse().unwrap())
        })
        .collect()
}

/// `--nice N` (issue 7: the capture's own threads yield to the host's work) applies to every
/// thread the capture runs, the clock-sync prober included, and the Parquet writer runs 10
/// nice levels below the others (at most 19) unless `--writer-nice` says otherwise; values
/// out of range are bad usage. The threads have their names and values when the capture
/// says it is ready (a loaded run of the suite found the writer not yet running then, still
/// named and niced as the thread that made it).
#[test]
fn issue7_nice_applies_to_every_capture_thread() {
    let Some(_serial) = kernel_test("issue7_nice_applies_to_every_capture_thread") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let lab = Lab::two_hosts().unwrap();
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let peer = b.addr.to_string();
    // Not 19: on a busy machine a capture at 19 gets so little CPU that it was not ready
    // in 30 s (two busy loops at nice 0); any value shows that the threads inherit it.
    for (args, want, want_writer) in [
        (vec!["--nice", "7", "--sync-peer", &peer], 7, 17),
        (vec![], 0, 10),
        (vec!["--nice", "3", "--writer-nice", "5"], 3, 5),
    ] {
        let cap = Capture::start(Some(&a.netns), &tmp.path().join("a"), &[&["-i", "veth0", "-q"], &args[..]].concat())
            .unwrap();
        let nice = thread_nice(cap.pid());
        assert!(nice.len() >= 2 + usize::from(!args.is_empty()), "reader, writer (and prober) threads: {nice:?}");
        let writers = nice.iter().filter(|(comm, _)| comm == "netlat-writer").count();
        assert_eq!(writers, 1, "{args:?}: {nice:?}");
        for (comm, n) in &nice {
            assert_eq!(*n, if comm == "netlat-writer" { want_writer } else { want }, "{args:?}: {nice:?}");
        }
        let done = cap.stop().unwrap();
        assert_eq!(done.code, Some(0), "{}", done.stderr);
    }

    for flag in ["--nice", "--writer-nice"] {
        let out = Command::new(bins::path("netlat-capture")).args(["-i", "lo", flag, "20"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains(flag));
    }
}
