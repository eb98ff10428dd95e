//! netlat-collect against real OpenSSH servers: three hosts, each a
//! network namespace running its own sshd (keys and known_hosts made by the
//! test), the collector in a fourth namespace. The "remote" captures run
//! inside each host namespace, started over ssh, on that host's `eth0`.
//!
//! They need root and /usr/sbin/sshd; without them they are skipped with a
//! message, in CI (`CI=true`) that is a failure.

use std::{
    collections::BTreeMap,
    fs::File,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use lab::{bins, sshlab::SshLab};
use parquet::file::reader::{FileReader as _, SerializedFileReader};

/// The tests load eBPF programs and make namespaces: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Packets per destination in the traffic command.
const COUNT: u64 = 300;

/// Start of every test here: `None` (skip, with a message) without root or
/// sshd outside CI, a failure in CI; otherwise the guard that keeps the
/// tests one at a time.
fn kernel_test(test: &str) -> Option<MutexGuard<'static, ()>> {
    let ci = std::env::var("CI").is_ok();
    if !lab::netns::is_root() {
        assert!(!ci, "{test}: netlat-collect tests must run as root in CI");
        eprintln!("SKIPPED {test}: needs root (run scripts/test as root)");
        return None;
    }
    if !Path::new(lab::sshlab::SSHD).exists() {
        assert!(!ci, "{test}: {} missing in CI (scripts/bootstrap installs openssh-server)", lab::sshlab::SSHD);
        eprintln!("SKIPPED {test}: needs {} (apt-get install openssh-server)", lab::sshlab::SSHD);
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The static netlat-capture from scripts/build-static (CI builds it
/// before the tests); outside CI the ordinary build stands in if it is
/// missing.
fn capture_bin() -> PathBuf {
    let netlat_collect = bins::path("netlat-collect");
    let p = netlat_collect.parent().unwrap().join("../x86_64-unknown-linux-musl/release/netlat-capture");
    if p.exists() {
        return p;
    }
    assert!(std::env::var("CI").is_err(), "{} missing: .ci/run must run scripts/build-static first", p.display());
    eprintln!("NOTE: {} missing (scripts/build-static); using the dynamic build", p.display());
    bins::path("netlat-capture")
}

/// Everything one collection needs: the lab, hosts.yaml, the output folder.
struct Setup {
    lab: SshLab,
    hosts: PathBuf,
    out: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let lab = SshLab::start(&["a", "b", "c"]).expect("ssh lab");
        let hosts = lab.dir.join("hosts.yaml");
        std::fs::write(&hosts, lab.hosts_yaml()).unwrap();
        let out = lab.dir.join("out");
        Setup { lab, hosts, out }
    }

    /// `a` sends COUNT datagrams to `b` and COUNT to `c`.
    fn traffic(&self) -> String {
        let (a, b, c) = (&self.lab.hosts[0], &self.lab.hosts[1], &self.lab.hosts[2]);
        format!(
            "{} send --netns {} --to {}:5001 --to {}:5001 --count {COUNT} --rate 1000",
            bins::path("netlat-lab").display(),
            a.netns,
            b.addr,
            c.addr
        )
    }

    /// netlat-collect in the hub namespace with the lab's ssh config.
    fn command(&self, extra: &[&str]) -> Command {
        self.command_at(&self.out, "udp and port 5001", extra)
    }

    /// The same with another output folder and filter.
    fn command_at(&self, out: &Path, filter: &str, extra: &[&str]) -> Command {
        let mut c = self.lab.in_hub(&bins::path("netlat-collect"));
        c.arg("--hosts").arg(&self.hosts).arg("--out").arg(out);
        c.arg("-F").arg(self.lab.ssh_config());
        c.arg("--capture-bin").arg(capture_bin());
        c.arg("--analyze").arg(bins::path("netlat-analyze"));
        c.args(["--duration", "3", "--filter", filter, "--connect-timeout", "3"]);
        c.args(extra);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, extra: &[&str]) -> (Output, Duration) {
        let t = Instant::now();
        let out = self.command(extra).output().expect("netlat-collect runs");
        let took = t.elapsed();
        eprintln!(
            "netlat-collect {extra:?}: {} in {:.1} s\n--- stderr\n{}--- stdout\n{}",
            out.status,
            took.as_secs_f64(),
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        (out, took)
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Rows per host (from the `host` key of each file's footer) in `dir`'s event files.
fn rows_in(dir: &Path) -> BTreeMap<String, u64> {
    let mut rows = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".events.parquet") {
            continue;
        }
        let r = SerializedFileReader::new(File::open(&p).unwrap()).unwrap();
        let m = r.metadata().file_metadata();
        let host = m.key_value_metadata().unwrap().iter().find(|k| k.key == "netlat.host").unwrap().value.clone();
        *rows.entry(host.unwrap()).or_default() += m.num_rows() as u64;
    }
    rows
}

fn files_in(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.ends_with(suffix));
    v.sort();
    v
}

/// The one remote run folder of a host (the hosts share this machine's disk).
fn remote_runs(lab: &SshLab, i: usize) -> Vec<PathBuf> {
    let runs = lab.hosts[i].remote_dir.join("runs");
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(runs).map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn record(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("collect.json")).unwrap()).unwrap()
}

#[test]
fn collect_three_hosts_end_to_end_and_resume() {
    let Some(_g) = kernel_test("collect_three_hosts_end_to_end_and_resume") else { return };
    let s = Setup::new();
    let traffic = s.traffic();
    let (o, took) = s.run(&["--traffic", &traffic]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    eprintln!("MEASURED collect run (3 hosts, --duration 3): {:.2} s wall", took.as_secs_f64());
    assert!(err.contains("3 of 3 hosts collected"), "{err}");

    // Every host's files are home, verified and from that host.
    let mut total = BTreeMap::new();
    for (i, h) in ["a", "b", "c"].iter().enumerate() {
        let dir = s.out.join(h);
        assert_eq!(files_in(&dir, ".meta.json").len(), 1, "{h}");
        assert!(files_in(&dir, ".partial").is_empty(), "{h}");
        let rows = rows_in(&dir);
        assert_eq!(rows.keys().collect::<Vec<_>>(), [h], "{h}: {rows:?}");
        total.insert(h.to_string(), rows[*h]);
        // The remote side: one run, setgid folder, files not world-readable.
        let runs = remote_runs(&s.lab, i);
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(mode(&runs[0]), 0o2750, "{}", runs[0].display());
        for f in files_in(&runs[0], ".events.parquet").iter().chain(&files_in(&runs[0], ".meta.json")) {
            assert_eq!(mode(&runs[0].join(f)) & 0o007, 0, "{f} is world-accessible");
            assert_eq!(mode(&runs[0].join(f)) & 0o022, 0, "{f} is group/world-writable");
        }
        let bins = files_in(&s.lab.hosts[i].remote_dir.join("bin"), "");
        assert_eq!(bins.len(), 1, "{bins:?}");
        assert_eq!(mode(&s.lab.hosts[i].remote_dir.join("bin").join(&bins[0])), 0o750);
    }
    // a sent COUNT to b and COUNT to c (tc_egress); b and c each received
    // COUNT, seen at xdp and tc_ingress.
    assert_eq!(total["a"], 2 * COUNT, "{total:?}");
    assert_eq!(total["b"], 2 * COUNT, "{total:?}");
    assert_eq!(total["c"], 2 * COUNT, "{total:?}");

    // netlat-analyze ran on the three folders.
    let analysis = std::fs::read_to_string(s.out.join("analysis.txt")).expect("analysis.txt");
    for h in ["a:eth0", "b:eth0", "c:eth0"] {
        assert!(analysis.contains(h), "{h} not in analysis:\n{analysis}");
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("a:eth0"), "the table is printed");
    let r = record(&s.out);
    for h in ["a", "b", "c"] {
        assert_eq!(r["hosts"][h]["complete"], true, "{r}");
        assert_eq!(r["hosts"][h]["exit_code"], 0, "{r}");
    }
    let traffic_log = std::fs::read_to_string(s.out.join("traffic.log")).unwrap();
    assert!(traffic_log.contains(&format!("sent {COUNT} datagrams to each of")), "{traffic_log}");

    // A second run resumes: nothing captured again, nothing copied again.
    let (o, _) = s.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("resuming run"), "{err}");
    assert!(err.contains("(resumed)"), "{err}");
    assert!(err.contains("0 copied now"), "{err}");
    for i in 0..3 {
        assert_eq!(remote_runs(&s.lab, i).len(), 1, "no second capture");
    }
}

#[test]
fn a_host_stopped_mid_run_is_reported_and_the_others_are_collected() {
    let Some(_g) = kernel_test("a_host_stopped_mid_run_is_reported_and_the_others_are_collected") else { return };
    let mut s = Setup::new();
    let traffic = s.traffic();
    let mut child = s
        .command(&["--traffic", &traffic, "--tries", "2", "--remove-remote"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once c's capture is attached, c "crashes": sshd, its sessions and the capture die.
    let t = Instant::now();
    loop {
        let ready = remote_runs(&s.lab, 2).iter().any(|r| r.join(".ready").exists());
        if ready {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "c never became ready");
        assert!(child.try_wait().unwrap().is_none(), "netlat-collect ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    s.lab.stop_host(2).unwrap();
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    eprintln!("{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("2 of 3 hosts collected; missing or incomplete: c"), "{err}");
    let c_line = err.lines().find(|l| l.contains("  c  ")).unwrap_or_default();
    assert!(c_line.contains("MISSING"), "{c_line}");
    assert!(c_line.contains("ssh failed"), "the reason is ssh's: {c_line}");
    assert!(c_line.contains("2 tries"), "retries are bounded and counted: {c_line}");
    for h in ["a", "b"] {
        let rows = rows_in(&s.out.join(h));
        assert_eq!(rows.get(h), Some(&(2 * COUNT)), "{h}: {rows:?}");
    }
    // The analysis ran on what was collected.
    assert!(s.out.join("analysis.txt").exists());
    // --remove-remote: the collected hosts' run folders are gone, c's is left.
    assert!(remote_runs(&s.lab, 0).is_empty() && remote_runs(&s.lab, 1).is_empty());
    assert_eq!(remote_runs(&s.lab, 2).len(), 1);
    let r = record(&s.out);
    assert_eq!(r["hosts"]["c"]["complete"], false);
    assert_eq!(r["hosts"]["a"]["complete"], true);
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// An scp stand-in: copies with the real scp, then cuts every pulled
/// event file to half and still exits 0 (the worst case: scp claims
/// success). Uploads to `upload_host` are cut to 1000 bytes too (the
/// hosts share this machine's disk, so the stand-in can reach the copy).
fn broken_scp(dir: &Path, upload_host: &str) -> PathBuf {
    script(
        dir,
        "broken-scp",
        &format!(
            "for a; do last=$a; done\n/usr/bin/scp \"$@\" || exit $?\n\
             case \"$last\" in {upload_host}:*) truncate -s 1000 \"${{last#*:}}\";; esac\n\
             case \"$last\" in /*.events.parquet.partial) s=$(stat -c %s \"$last\"); truncate -s $((s / 2)) \"$last\";; esac\n\
             exit 0\n"
        ),
    )
}

#[test]
fn copies_cut_short_are_retried_never_kept_and_a_rerun_resumes() {
    let Some(_g) = kernel_test("copies_cut_short_are_retried_never_kept_and_a_rerun_resumes") else { return };
    let s = Setup::new();
    // Uploads to c are cut: c never gets a binary, so it never captures.
    let scp = broken_scp(&s.lab.dir, &s.lab.hosts[2].addr.to_string());
    let traffic = s.traffic();
    let (o, _) = s.run(&["--traffic", &traffic, "--tries", "2", "--scp", scp.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("0 of 3 hosts collected"), "{err}");
    let c_line = err.lines().find(|l| l.contains("  c  ")).unwrap_or_default();
    assert!(c_line.contains("copying netlat-capture: not copied intact in 2 tries"), "{c_line}");
    assert!(c_line.contains("copy cut short"), "{c_line}");
    assert!(files_in(&s.lab.hosts[2].remote_dir.join("bin"), "").is_empty(), "no broken binary is kept on c");
    for h in ["a", "b"] {
        let line = err.lines().find(|l| l.contains(&format!("  {h}  "))).unwrap_or_default();
        assert!(line.contains("not copied intact in 2 tries") && line.contains("copy has"), "{line}");
        let dir = s.out.join(h);
        assert!(files_in(&dir, ".events.parquet").is_empty(), "{h}: a cut copy was kept");
        assert!(files_in(&dir, ".partial").is_empty(), "{h}: partial files left");
        assert_eq!(files_in(&dir, ".meta.json").len(), 1, "{h}: the intact file is kept");
    }

    // The rerun with a working scp resumes: no new capture, only what is
    // missing is copied, and c is reported as never having captured.
    let meta_a = s.out.join("a").join(&files_in(&s.out.join("a"), ".meta.json")[0]);
    let (o, _) = s.run(&[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "c is still missing: {err}");
    assert!(err.contains("resuming run") && err.contains("2 of 3 hosts collected"), "{err}");
    let c_line = err.lines().find(|l| l.contains("  c  ")).unwrap_or_default();
    assert!(c_line.contains("no capture ran") && c_line.contains("copy cut short"), "{c_line}");
    for (i, h) in ["a", "b"].iter().enumerate() {
        assert_eq!(remote_runs(&s.lab, i).len(), 1, "no second capture on {h}");
        let line = err.lines().find(|l| l.contains(&format!("  {h}  "))).unwrap_or_default();
        // The run record and the sync table came home intact the first time.
        assert!(line.contains("collected") && line.contains("2 verified before"), "{line}");
        assert_eq!(rows_in(&s.out.join(h)).get(*h), Some(&(2 * COUNT)));
    }

    // A good file at home is never replaced by a broken copy: the host's
    // record changes, every copy of it is cut; the old file stays as it was.
    let before = std::fs::read(&meta_a).unwrap();
    let remote_meta = remote_runs(&s.lab, 0)[0].join(meta_a.file_name().unwrap());
    let mut changed = std::fs::read(&remote_meta).unwrap();
    changed.extend_from_slice(b"\n");
    std::fs::write(&remote_meta, &changed).unwrap();
    let scp_all = script(
        &s.lab.dir,
        "cutting-scp",
        "for a; do last=$a; done\n/usr/bin/scp \"$@\" || exit $?\n\
         case \"$last\" in /*.partial) truncate -s 10 \"$last\";; esac\nexit 0\n",
    );
    // The record says a is complete; force it to look again.
    let mut r = record(&s.out);
    r["hosts"]["a"]["complete"] = serde_json::Value::Bool(false);
    std::fs::write(s.out.join("collect.json"), r.to_string()).unwrap();
    let (o, _) = s.run(&["--tries", "2", "--scp", scp_all.to_str().unwrap()]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let a_line = err.lines().find(|l| l.contains("  a  ")).unwrap_or_default();
    assert!(a_line.contains("MISSING") && a_line.contains("copy has 10 bytes"), "{a_line}");
    assert_eq!(std::fs::read(&meta_a).unwrap(), before, "the good copy is untouched");
    assert!(files_in(&s.out.join("a"), ".partial").is_empty());
}

/// `yaml` with the first `key: ...` line's value replaced by `value`.
fn with_value(yaml: &str, key: &str, value: &str) -> String {
    let mut done = false;
    yaml.lines()
        .map(|l| {
            let body = l.trim_start().trim_start_matches("- ");
            if !done && body.starts_with(&format!("{key}:")) {
                done = true;
                let indent = &l[..l.len() - body.len()];
                format!("{indent}{key}: {value}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

#[test]
fn hostile_names_are_rejected_and_hostile_arguments_passed_safely() {
    let Some(_g) = kernel_test("hostile_names_are_rejected_and_hostile_arguments_passed_safely") else { return };
    let s = Setup::new();
    let marker = s.lab.dir.join("pwned");
    let m = marker.display();
    // An ssh stand-in that leaves a mark if it is ever run.
    let fake_ssh = script(&s.lab.dir, "fake-ssh", &format!("touch {m}.ssh\nexit 255\n"));
    let good = s.lab.hosts_yaml();
    for (key, value) in [
        ("name", format!("\"x; touch {m}\"")),
        ("name", format!("\"$(touch {m})\"")),
        ("name", "-rf".to_owned()),
        ("user", format!("\"-oProxyCommand=touch {m}\"")),
        ("user", "\"ro ot\"".to_owned()),
        ("address", format!("\"198.18.1.1;touch {m}\"")),
        ("address", format!("\"-oProxyCommand=touch {m}\"")),
        ("interfaces", "[\"eth0 `id`\"]".to_owned()),
        ("remote_dir", "\"/tmp/it's\"".to_owned()),
        ("remote_dir", "\"../../etc\"".to_owned()),
    ] {
        let bad = with_value(&good, key, &value);
        assert_ne!(bad, good, "{key}");
        std::fs::write(&s.hosts, &bad).unwrap();
        let (o, _) = s.run(&["--ssh", fake_ssh.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{key}={value}: {err}");
        assert!(err.contains(&s.hosts.display().to_string()), "the file is named: {err}");
        assert!((3..=7).any(|l| err.contains(&format!(" at line {l} "))), "the line of host a's entry: {err}");
        assert!(err.contains(&format!("hosts[0].{key}")) || err.contains("hosts[0]"), "the field: {err}");
    }
    assert!(!Path::new(&format!("{m}.ssh")).exists(), "ssh was run for a bad configuration");
    std::fs::write(&s.hosts, &good).unwrap();

    // Hostile words on the command line reach netlat-capture verbatim
    // through ssh and the remote shell, and nothing is executed. A capture
    // configuration file whose name is full of shell syntax (the hosts
    // share this disk) is read, and the capture records its argv.
    let evil = format!(
        "it's a $(touch netlat-pwned-{pid}) ;x `touch netlat-pwned-{pid}` \"q\".yaml",
        pid = std::process::id()
    );
    let evil_path = s.lab.dir.join(&evil);
    std::fs::write(&evil_path, "sampling:\n  one_in: 1\n").unwrap();
    let config_arg = format!("--config={}", evil_path.display());
    let (o, _) = s.run(&["--no-analyze", "--capture-arg", &config_arg]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for h in ["a", "b", "c"] {
        let dir = s.out.join(h);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(&files_in(&dir, ".meta.json")[0])).unwrap())
                .unwrap();
        let argv: Vec<&str> = meta["argv"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert!(argv.contains(&config_arg.as_str()), "{h}: {argv:?}");
        assert_eq!(meta["config"]["config_file"], evil_path.display().to_string());
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    for dir in [PathBuf::from(home), s.lab.dir.clone(), std::env::current_dir().unwrap()] {
        assert!(!dir.join(format!("netlat-pwned-{}", std::process::id())).exists(), "executed in {}", dir.display());
    }

    // A hostile filter: refused by netlat-capture (exit 2 on every host), not run by any shell.
    let filter = format!("udp and port 5001 $(touch {m}) ; touch {m} ' \" `touch {m}`");
    let out2 = s.lab.dir.join("out2");
    let o = s.command_at(&out2, &filter, &["--tries", "1", "--no-analyze"]).output().unwrap();
    let err = stderr(&o);
    eprintln!("{err}");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("the capture ended with exit code 2: netlat-capture: filter:"), "{err}");
    assert!(!marker.exists(), "a hostile word was executed");

    // Host keys are checked: with a known_hosts that lacks them, no host is contacted further.
    let strange = s.lab.dir.join("ssh_config_strange");
    let text = std::fs::read_to_string(s.lab.ssh_config()).unwrap();
    std::fs::write(s.lab.dir.join("known_hosts_empty"), "").unwrap();
    std::fs::write(&strange, text.replace("/known_hosts", "/known_hosts_empty")).unwrap();
    let out4 = s.lab.dir.join("out4");
    let runs_before: Vec<usize> = (0..3).map(|i| remote_runs(&s.lab, i).len()).collect();
    let mut c = s.lab.in_hub(&bins::path("netlat-collect"));
    c.arg("--hosts").arg(&s.hosts).arg("--out").arg(&out4).arg("-F").arg(&strange);
    c.arg("--capture-bin").arg(capture_bin()).args(["--tries", "3", "--no-analyze", "--duration", "1"]);
    let o = c.output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("0 of 3 hosts collected"), "{err}");
    for h in ["a", "b", "c"] {
        let line = err.lines().find(|l| l.contains(&format!("  {h}  "))).unwrap_or_default();
        // Not retried: a refused key stays refused.
        assert!(line.contains("ssh failed (1 try): Host key verification failed"), "{line}");
    }
    let runs_after: Vec<usize> = (0..3).map(|i| remote_runs(&s.lab, i).len()).collect();
    assert_eq!(runs_before, runs_after, "nothing was started on a host with an unknown key");

    // --dry-run shows the commands, and runs none (not even ssh).
    let out3 = s.lab.dir.join("out3");
    let dry = ["--dry-run", "--ssh", fake_ssh.to_str().unwrap()];
    let o = s.command_at(&out3, "udp and port 5001", &dry).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let plan = String::from_utf8_lossy(&o.stdout);
    eprintln!("{plan}");
    assert!(plan.contains("StrictHostKeyChecking=yes"), "{plan}");
    assert!(plan.contains("-- 198.18.1.3 "), "{plan}");
    assert!(plan.contains("netlat-analyze"), "{plan}");
    assert!(!Path::new(&format!("{m}.ssh")).exists(), "--dry-run ran ssh");
    assert!(!out3.join("collect.json").exists(), "--dry-run wrote a record");
}

/// `--dry-run` with the repository's example conf/hosts.yaml: every
/// command in order, sudo for non-root logins, nothing run. Needs no root.
#[test]
fn dry_run_of_the_example_hosts_file_prints_every_command_and_runs_none() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let fake_ssh = script(tmp.path(), "fake-ssh", &format!("touch {}/ran\nexit 255\n", tmp.path().display()));
    let o = Command::new(bins::path("netlat-collect"))
        .arg("--hosts")
        .arg(repo.join("conf/hosts.yaml"))
        .arg("--out")
        .arg(&out)
        .arg("--capture-bin")
        .arg(capture_bin())
        .args(["--ssh", fake_ssh.to_str().unwrap(), "--scp", fake_ssh.to_str().unwrap(), "--dry-run"])
        .args(["--duration", "60", "--traffic", "iperf3 -c 198.18.0.2 -u -t 50", "--filter", "udp port 5201"])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}\n{plan}", stderr(&o));
    eprintln!("{plan}");
    // node1 and vm1 capture (web1 is topology only); user netlat needs sudo.
    let captures: Vec<&str> = plan.lines().filter(|l| l.contains("<START>")).collect();
    assert_eq!(captures.len(), 2, "{plan}");
    assert!(captures[0].contains("-l netlat -- 198.18.0.1 <START> 'netlat/runs/"), "{}", captures[0]);
    assert!(captures[0].contains("'sudo' '-n' '--' 'netlat/bin/netlat-capture-"), "{}", captures[0]);
    assert!(
        captures[0].contains(
            "'--host-name' 'node1' '--duration' '60' '-q' '-i' 'eth0' '--sync-peer' '198.18.0.2' 'udp port 5201'"
        ),
        "{}",
        captures[0]
    );
    assert!(captures[1].contains("'/var/tmp/netlat/runs/") && captures[1].contains("'-i' 'ens3'"), "{}", captures[1]);
    assert!(!plan.contains("web1:"), "web1 does not capture");
    for step in [
        "<PREPARE>",
        "<INSTALL>",
        "<LIST>",
        "-q -P 22 -o User=netlat -- ",
        "'iperf3 -c 198.18.0.2 -u -t 50'",
        "netlat-analyze",
    ] {
        assert!(plan.contains(step), "{step} missing:\n{plan}");
    }
    assert!(!tmp.path().join("ran").exists(), "--dry-run ran ssh or scp");
    assert!(!out.exists(), "--dry-run created the output folder");

    // sync_port is passed on; sync: false leaves the peers out.
    let hosts = tmp.path().join("hosts.yaml");
    let text = std::fs::read_to_string(repo.join("conf/hosts.yaml")).unwrap();
    let dry_run = |yaml: String| {
        std::fs::write(&hosts, yaml).unwrap();
        let o = Command::new(bins::path("netlat-collect"))
            .arg("--hosts")
            .arg(&hosts)
            .arg("--capture-bin")
            .arg(capture_bin())
            .args(["--dry-run", "--no-analyze"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let plan = dry_run(text.replace("sync: true", "sync: true\nsync_port: 9123"));
    let captures: Vec<&str> = plan.lines().filter(|l| l.contains("<START>")).collect();
    assert!(captures[0].contains("'--sync-peer' '198.18.0.2' '--sync-port' '9123'"), "{}", captures[0]);
    assert!(captures[1].contains("'--sync-peer' '198.18.0.1' '--sync-port' '9123'"), "{}", captures[1]);
    assert!(!plan.contains("netlat-analyze"));
    let plan = dry_run(text.replace("sync: true", "sync: false"));
    assert!(!plan.contains("--sync-peer"), "{plan}");
}
