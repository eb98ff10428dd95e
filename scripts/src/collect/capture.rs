//! One host's capture: connect and prepare its folder, copy the binary if
//! it is not there yet, start the capture over ssh, report when it is
//! ready, and wait for its end.

use std::{
    io::{BufRead as _, BufReader},
    process::{Child, Stdio},
    sync::mpsc::{self, RecvTimeoutError, Sender},
    time::{Duration, Instant},
};

use conf::hosts::{HostConf, HostsConf};

use super::{
    progress::HostBar,
    remote::{self, CaptureSpec},
    ssh::Argv,
    state::CaptureState,
    LocalBinary, Options,
};

/// The line netlat-capture prints on stderr once every hook is attached.
pub const READY: &str = "netlat-capture: ready:";

/// How a host's capture went.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    /// Where it got to.
    pub state: CaptureState,
    /// Remote run folder, once prepared.
    pub remote_run: Option<String>,
    /// Exit code of the capture (ssh passes it on; 255: ssh failed).
    pub exit_code: Option<i32>,
    /// What went wrong, if anything.
    pub reason: Option<String>,
}

impl Outcome {
    fn not_started(reason: String) -> Self {
        Outcome { state: CaptureState::NotStarted, remote_run: None, exit_code: None, reason: Some(reason) }
    }
}

/// Runs one host's capture. Sends on `ready` exactly once: Ok when the
/// capture is attached, Err(reason) when it will not be. `started` is
/// called with the remote run folder just before the capture starts, so
/// the run record knows where to look even if this process dies.
#[allow(clippy::too_many_arguments)]
pub fn run_host(
    opts: &Options,
    conf: &HostsConf,
    h: &HostConf,
    bin: &LocalBinary,
    run_id: &str,
    bar: &HostBar,
    ready: Sender<Result<(), String>>,
    started: &dyn Fn(&str),
) -> Outcome {
    let fail = |o: Outcome| {
        let _ = ready.send(Err(o.reason.clone().unwrap_or_default()));
        o
    };
    bar.phase("connecting", 0);
    let prep = match remote::prepare(&opts.ssh, h, conf.remote_dir(h), &bin.sha256, opts.tries) {
        Ok(p) => p,
        Err(e) => return fail(Outcome::not_started(e.to_string())),
    };
    if !prep.binary_present {
        bar.phase(&format!("copying netlat-capture ({:.1} MB)", bin.size as f64 / 1e6), 0);
        if let Err(e) = remote::upload(&opts.ssh, h, &bin.path, &prep.dir, &bin.sha256, opts.tries) {
            return fail(Outcome::not_started(e.to_string()));
        }
    }
    let run_dir = match prep.dir.join("runs").and_then(|r| r.join(run_id)) {
        Ok(d) => d.to_string(),
        Err(e) => return fail(Outcome::not_started(e)),
    };
    let bin_path = format!("{}/bin/{}", prep.dir, remote::binary_name(&bin.sha256));
    let spec = spec(opts, conf, h, &bin_path, &run_dir);
    let argv = match remote::capture_argv(&opts.ssh, &spec) {
        Ok(a) => a,
        Err(e) => return fail(Outcome::not_started(e.to_string())),
    };
    bar.phase(&format!("starting the capture (Linux {})", prep.kernel), 0);
    started(&run_dir);
    let mut out = Outcome { state: CaptureState::Started, remote_run: Some(run_dir), exit_code: None, reason: None };
    let (mut child, lines) = match spawn(&argv) {
        Ok(c) => c,
        Err(e) => {
            out.state = CaptureState::NotStarted;
            out.reason = Some(format!("cannot run ssh: {e}"));
            return fail(out);
        }
    };
    let mut last: Vec<String> = Vec::new();
    let mut ready_tx = Some(ready);
    let t0 = Instant::now();
    let mut deadline = t0 + opts.ready_timeout;
    let mut ready_at = None;
    loop {
        match lines.recv_timeout(Duration::from_millis(500)) {
            Ok(line) if ready_at.is_none() && line.starts_with(READY) => {
                ready_at = Some(Instant::now());
                deadline = Instant::now() + Duration::from_secs_f64(opts.duration) + opts.grace;
                bar.phase("capturing", opts.duration.ceil() as u64);
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(Ok(()));
                }
            }
            Ok(line) => {
                if !line.trim().is_empty() {
                    last.push(line);
                    if last.len() > 20 {
                        last.remove(0);
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        if let Some(r) = ready_at {
            bar.step((r.elapsed().as_secs()).min(opts.duration.ceil() as u64), None);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let why = match ready_at {
                None => format!("the capture was not ready within {} s", opts.ready_timeout.as_secs()),
                Some(_) => format!("the capture did not end within --duration + {} s", opts.grace.as_secs()),
            };
            out.reason = Some(with_last(why, &last));
            if let Some(tx) = ready_tx.take() {
                let _ = tx.send(Err(out.reason.clone().unwrap_or_default()));
            }
            return out;
        }
    }
    let status = child.wait().ok();
    out.exit_code = status.and_then(|s| s.code());
    out.state = CaptureState::Ended;
    let why = match out.exit_code {
        Some(0) if ready_at.is_some() => None,
        Some(0) => Some("the capture ended without reporting ready".to_owned()),
        Some(255) => Some("ssh failed or the connection was lost".to_owned()),
        Some(97) => Some("cannot create the run folder".to_owned()),
        Some(c) => Some(format!("the capture ended with exit code {c}")),
        None => Some("ssh was killed by a signal".to_owned()),
    };
    out.reason = why.map(|w| with_last(w, &last));
    if let Some(tx) = ready_tx.take() {
        let _ = tx.send(Err(out.reason.clone().unwrap_or_else(|| "ended before it was ready".into())));
    }
    out
}

fn with_last(why: String, last: &[String]) -> String {
    match last.last() {
        Some(l) => format!("{why}: {}", l.trim()),
        None => why,
    }
}

/// Starts ssh with stderr read line by line on a thread.
fn spawn(argv: &Argv) -> std::io::Result<(Child, mpsc::Receiver<String>)> {
    let sh = xshell::Shell::new().map_err(std::io::Error::other)?;
    let cmd = sh.cmd(&argv[0]).args(&argv[1..]).quiet();
    let mut child =
        std::process::Command::from(cmd).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// The capture on host `h` as the options and hosts.yaml ask for it (the
/// run and the dry run build it alike).
pub(super) fn spec<'a>(
    opts: &'a Options,
    conf: &'a HostsConf,
    h: &'a HostConf,
    bin: &'a str,
    run_dir: &'a str,
) -> CaptureSpec<'a> {
    CaptureSpec {
        bin,
        run_dir,
        host: h,
        duration: opts.duration,
        sync_peers: if conf.sync { conf.sync_peers(h) } else { Vec::new() },
        sync_port: conf.sync_port,
        extra: &opts.capture_args,
        filter: opts.filter.as_deref(),
    }
}
