//! The whole job: captures on every host, traffic, pulling, checks,
//! analysis, and the report. A host that fails is reported with its
//! reason; the other hosts' data is still collected.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use conf::hosts::{HostConf, HostsConf};

use super::{
    capture,
    check::{self, HostFiles},
    dry, progress,
    pull::{self, Pulled},
    remote,
    state::{self, CaptureState, RunRecord},
    CollectError, LocalBinary, Options,
};

/// What happened to one host.
#[derive(Clone, Debug, Default)]
pub struct HostReport {
    /// Host name.
    pub name: String,
    /// Every file is home, verified and checked.
    pub collected: bool,
    /// Its files at home.
    pub files: HostFiles,
    /// Files copied in this invocation / found verified already.
    pub fetched: usize,
    /// Files already at home and verified (resumed run).
    pub already: usize,
    /// Why it is missing or incomplete.
    pub problems: Vec<String>,
}

/// The result of a collection.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Run id.
    pub run_id: String,
    /// This invocation resumed an earlier one.
    pub resumed: bool,
    /// Per capturing host, in hosts.yaml order.
    pub hosts: Vec<HostReport>,
    /// The traffic command's failure, if it failed.
    pub traffic_error: Option<String>,
    /// Where the analysis went, or why it failed; None: not run.
    pub analysis: Option<Result<PathBuf, String>>,
    /// `--dry-run`: nothing was run.
    pub dry_run: bool,
}

impl Report {
    /// 0: every host collected (and traffic and analysis, if asked for,
    /// succeeded); 1: some host is missing or incomplete, or traffic or
    /// analysis failed. (2, configuration errors, never gets this far.)
    pub fn exit_code(&self) -> u8 {
        let bad = self.hosts.iter().any(|h| !h.collected)
            || self.traffic_error.is_some()
            || matches!(self.analysis, Some(Err(_)));
        u8::from(bad && !self.dry_run)
    }

    /// The closing summary, one line per host.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let w = self.hosts.iter().map(|h| h.name.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(s, "run {}{}", self.run_id, if self.resumed { " (resumed)" } else { "" });
        for h in &self.hosts {
            let status = if h.collected { "collected" } else { "MISSING" };
            let _ = write!(
                s,
                "  {:w$}  {status:9}  {} files, {} rows, {} bytes ({} copied now, {} verified before)",
                h.name, h.files.files, h.files.rows, h.files.bytes, h.fetched, h.already
            );
            if !h.problems.is_empty() {
                let _ = write!(s, ": {}", h.problems.join("; "));
            }
            s.push('\n');
        }
        let ok = self.hosts.iter().filter(|h| h.collected).count();
        let _ = write!(s, "{ok} of {} hosts collected", self.hosts.len());
        let missing: Vec<&str> = self.hosts.iter().filter(|h| !h.collected).map(|h| h.name.as_str()).collect();
        if !missing.is_empty() {
            let _ = write!(s, "; missing or incomplete: {}", missing.join(", "));
        }
        if let Some(e) = &self.traffic_error {
            let _ = write!(s, "\ntraffic command failed: {e}");
        }
        match &self.analysis {
            Some(Ok(p)) => {
                let _ = write!(s, "\nanalysis: {}", p.display());
            }
            Some(Err(e)) => {
                let _ = write!(s, "\nanalysis failed: {e}");
            }
            None => {}
        }
        s
    }
}

/// The run record, shared by the host threads and saved on every change.
struct Shared<'a> {
    out: &'a Path,
    record: Mutex<RunRecord>,
}

impl Shared<'_> {
    fn update(&self, f: impl FnOnce(&mut RunRecord)) {
        let mut r = self.record.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut r);
        if let Err(e) = r.save(self.out) {
            eprintln!("netlat-collect: warning: {e}");
        }
    }

    fn host(&self, name: &str) -> state::HostRecord {
        self.record.lock().unwrap_or_else(|e| e.into_inner()).hosts.get(name).cloned().unwrap_or_default()
    }
}

/// Runs the collection described by `opts`.
pub fn collect(opts: &Options) -> Result<Report, CollectError> {
    let conf = HostsConf::load(&opts.hosts_file)?;
    if !(opts.duration > 0.0 && opts.duration.is_finite()) {
        return Err(CollectError::Usage("--duration must be a positive number of seconds".into()));
    }
    if opts.tries == 0 {
        return Err(CollectError::Usage("--tries must be at least 1".into()));
    }
    for a in opts.capture_args.iter().chain(&opts.filter) {
        super::quote::sh_quote(a).map_err(|e| CollectError::Usage(e.to_string()))?;
    }
    let bin = LocalBinary::inspect(&opts.capture_bin)?;
    let hosts: Vec<&HostConf> = conf.capture_hosts().collect();
    let existing = if opts.out.exists() { RunRecord::load(&opts.out)? } else { None };
    if opts.dry_run {
        let run_id = existing.as_ref().map(|r| r.run_id.clone()).unwrap_or_else(state::new_run_id);
        print!("{}", dry::plan(opts, &conf, &bin, &run_id)?);
        return Ok(Report { run_id, dry_run: true, ..Default::default() });
    }
    let progress = progress::Progress::new();
    if !bin.is_static {
        progress.note(&format!(
            "warning: {} is dynamically linked; it may not run on other hosts (scripts/build-static makes a static one)",
            bin.path.display()
        ));
    }
    std::fs::create_dir_all(&opts.out).map_err(|source| CollectError::Out { path: opts.out.clone(), source })?;
    let out =
        std::fs::canonicalize(&opts.out).map_err(|source| CollectError::Out { path: opts.out.clone(), source })?;
    let resumed = existing.is_some();
    let record = match existing {
        Some(r) => {
            progress.note(&format!(
                "resuming run {} from {} (use another --out for a new measurement)",
                r.run_id,
                RunRecord::path(&out).display()
            ));
            r
        }
        None => {
            let r = RunRecord::new(state::new_run_id(), opts.duration, hosts.iter().map(|h| h.name.to_string()));
            r.save(&out)?;
            r
        }
    };
    let run_id = record.run_id.clone();
    let shared = Shared { out: &out, record: Mutex::new(record) };
    let width = hosts.iter().map(|h| h.name.as_str().len()).max().unwrap_or(4);
    let bars: Vec<_> = hosts.iter().map(|h| progress.host(h.name.as_str(), width)).collect();
    let mut report = Report { run_id: run_id.clone(), resumed, ..Default::default() };

    if !resumed {
        report.traffic_error = capture_all(opts, &conf, &hosts, &bin, &run_id, &bars, &shared, &progress);
    } else {
        wait_for_started_captures(&shared, opts, &progress);
    }

    report.hosts = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .zip(&bars)
            .map(|(h, bar)| {
                let (shared, out) = (&shared, &out);
                s.spawn(move || collect_host(opts, h, out, shared, bar))
            })
            .collect();
        handles.into_iter().map(|t| t.join().expect("host thread")).collect()
    });
    // Hosts added to hosts.yaml after the run started took no part in it.
    for h in &mut report.hosts {
        if resumed && !shared.record.lock().unwrap_or_else(|e| e.into_inner()).hosts.contains_key(&h.name) {
            h.collected = false;
            h.problems = vec![format!("not part of run {run_id} (added to {} later)", opts.hosts_file.display())];
        }
    }
    if let Some(analyze) = &opts.analyze {
        let dirs: Vec<PathBuf> = report.hosts.iter().filter(|h| h.files.files > 0).map(|h| out.join(&h.name)).collect();
        if dirs.is_empty() {
            report.analysis = Some(Err("no host has event files".into()));
        } else {
            progress.note(&format!("running {} on {} hosts", analyze.display(), dirs.len()));
            report.analysis = Some(run_analysis(analyze, &dirs, &out));
        }
    }
    Ok(report)
}

/// Starts every capture, waits for every ready line (or failure), runs the
/// traffic command, waits for every capture to end. Returns the traffic
/// command's failure, if any.
#[allow(clippy::too_many_arguments)]
fn capture_all(
    opts: &Options,
    conf: &HostsConf,
    hosts: &[&HostConf],
    bin: &LocalBinary,
    run_id: &str,
    bars: &[progress::HostBar],
    shared: &Shared,
    progress: &progress::Progress,
) -> Option<String> {
    let mut traffic_error = None;
    std::thread::scope(|s| {
        let mut ready_rx = Vec::new();
        let mut handles = Vec::new();
        for (h, bar) in hosts.iter().zip(bars) {
            let (tx, rx) = mpsc::channel();
            ready_rx.push(rx);
            handles.push(s.spawn(move || {
                let name = h.name.to_string();
                let started = |dir: &str| {
                    shared.update(|r| {
                        let e = r.hosts.entry(name.clone()).or_default();
                        e.capture = CaptureState::Started;
                        e.remote_run = Some(dir.to_owned());
                        e.started_unix = Some(state::now_unix());
                    })
                };
                let o = capture::run_host(opts, conf, h, bin, run_id, bar, tx, &started);
                shared.update(|r| {
                    let e = r.hosts.entry(name.clone()).or_default();
                    e.capture = o.state;
                    e.remote_run = o.remote_run.clone().or(e.remote_run.take());
                    e.exit_code = o.exit_code;
                    e.reason = o.reason.clone();
                });
                match &o.reason {
                    Some(r) => bar.say(&format!("capture: {r}")),
                    None => bar.say("capture finished"),
                }
            }));
        }
        let ready = ready_rx.iter().filter(|rx| matches!(rx.recv(), Ok(Ok(())))).count();
        if let Some(cmd) = &opts.traffic {
            if ready == 0 {
                traffic_error = Some("not run: no capture became ready".into());
            } else {
                progress.note(&format!("{ready} of {} captures ready; running the traffic command", hosts.len()));
                traffic_error = run_traffic(cmd, shared.out, run_id).err();
                if let Some(e) = &traffic_error {
                    progress.note(&format!("traffic command failed: {e}"));
                }
            }
        }
        for h in handles {
            h.join().expect("capture thread");
        }
    });
    traffic_error
}

/// On a resumed run, captures whose end was not seen may still be
/// running: wait until their duration plus `--grace` has passed since they
/// were started. (One still running after that is reported incomplete, and
/// the next rerun picks it up.)
fn wait_for_started_captures(shared: &Shared, opts: &Options, progress: &progress::Progress) {
    let r = shared.record.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let allowance = r.duration_s.ceil() as u64 + opts.grace.as_secs();
    let Some(end) = r
        .hosts
        .values()
        .filter(|h| h.capture == CaptureState::Started && !h.complete)
        .map(|h| h.started_unix.unwrap_or(r.started_unix) + allowance)
        .max()
    else {
        return;
    };
    let now = state::now_unix();
    if end > now {
        progress.note(&format!("captures of run {} may still be running; waiting {} s", r.run_id, end - now));
        std::thread::sleep(Duration::from_secs(end - now));
    }
}

/// Pulls and checks one host's files, updating the record.
fn collect_host(opts: &Options, h: &HostConf, out: &Path, shared: &Shared, bar: &progress::HostBar) -> HostReport {
    let name = h.name.to_string();
    let local = out.join(&name);
    let mut rep = HostReport { name: name.clone(), ..Default::default() };
    let rec = shared.host(&name);
    if rec.complete {
        // Collected by an earlier invocation: check what is at home.
        rep.files = check::check_host(&local, &name);
        if rep.files.problems.is_empty() {
            rep.collected = true;
            rep.already = rec.files.len();
            bar.done(&format!("collected before: {} files, {} rows", rep.files.files, rep.files.rows));
            return rep;
        }
    }
    let Some(run_dir) = rec.remote_run.clone().filter(|_| rec.capture != CaptureState::NotStarted) else {
        let why = rec.reason.clone().unwrap_or_else(|| "its capture never started".into());
        rep.problems.push(format!("no capture ran: {why}"));
        bar.done("missing: no capture ran");
        return rep;
    };
    bar.phase("pulling files", 0);
    let step = |done: usize, total: usize, file: &str| {
        bar.bar_len(total as u64);
        bar.step(done as u64, Some(&format!("pulled {file}")));
    };
    match pull::pull_host(&opts.ssh, h, &run_dir, &local, opts.tries, &step) {
        Ok(Pulled { fetched, already, failed, verified, listed, .. }) => {
            rep.fetched = fetched;
            rep.already = already;
            shared.update(|r| r.hosts.entry(name.clone()).or_default().files.extend(verified));
            if listed == 0 {
                rep.problems.push("the host has no finished files for this run".into());
            }
            for (file, why) in failed {
                rep.problems.push(format!("{file}: {why}"));
            }
        }
        Err(e) => rep.problems.push(format!("pulling: {e}")),
    }
    if local.exists() {
        rep.files = check::check_host(&local, &name);
        rep.problems.extend(rep.files.problems.iter().cloned());
    }
    rep.collected = rep.problems.is_empty();
    if !rep.collected {
        // The capture's own failure explains the rest; put it first.
        if let Some(why) = rec.reason.clone().or_else(|| shared.host(&name).reason) {
            rep.problems.insert(0, format!("capture: {why}"));
        }
    }
    shared.update(|r| {
        let e = r.hosts.entry(name.clone()).or_default();
        e.complete = rep.collected;
        if rep.collected {
            e.reason = None;
        }
    });
    if rep.collected && opts.remove_remote {
        if let Err(e) = remote::remove(&opts.ssh, h, &run_dir, opts.tries) {
            bar.say(&format!("warning: {e}"));
        }
    }
    if rep.collected {
        bar.done(&format!("collected: {} files, {} rows", rep.files.files, rep.files.rows));
    } else {
        bar.done(&format!("MISSING: {}", rep.problems.join("; ")));
    }
    rep
}

/// Runs the traffic command with `sh -c` (it is the user's own command
/// line, not configuration), output to `OUT/traffic.log`.
fn run_traffic(cmd: &str, out: &Path, run_id: &str) -> Result<(), String> {
    let log_path = out.join("traffic.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let t = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("NETLAT_RUN_ID", run_id)
        .env("NETLAT_OUT", out)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!("{status} after {:.1} s: {last} (see {})", t.elapsed().as_secs_f64(), log_path.display()))
    }
}

/// `netlat-analyze DIR...` with its table saved to `OUT/analysis.txt` and printed.
fn run_analysis(analyze: &Path, dirs: &[PathBuf], out: &Path) -> Result<PathBuf, String> {
    let o = Command::new(analyze)
        .args(dirs)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", analyze.display()))?;
    if !o.status.success() {
        return Err(format!("{} {}: {}", analyze.display(), o.status, String::from_utf8_lossy(&o.stderr).trim()));
    }
    let path = out.join("analysis.txt");
    std::fs::write(&path, &o.stdout).map_err(|e| format!("{}: {e}", path.display()))?;
    print!("{}", String::from_utf8_lossy(&o.stdout));
    Ok(path)
}
