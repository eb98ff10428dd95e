//! Running `netlat-capture` as a child process and stopping it cleanly.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::bins;

/// A running capture.
pub struct Capture {
    child: Option<Child>,
    /// Its output folder.
    pub dir: PathBuf,
    stderr_path: PathBuf,
}

/// How a capture ended.
#[derive(Debug)]
pub struct Finished {
    /// Exit code (None: killed by a signal).
    pub code: Option<i32>,
    /// Everything it printed on stderr.
    pub stderr: String,
}

impl Capture {
    /// Starts `netlat-capture ARGS -w DIR --ready-file ...`, inside network
    /// namespace `netns` if given (as `ip netns exec` would), and waits up to
    /// 30 s for it to report ready.
    pub fn start(netns: Option<&str>, dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ready = dir.join(".ready");
        let _ = std::fs::remove_file(&ready);
        let stderr_path = dir.join(".capture.stderr");
        let exe = bins::path("netlat-capture");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        // Our flags first: a filter expression at the end of `args` takes every word after it.
        cmd.arg("-w").arg(dir).arg("--ready-file").arg(&ready).args(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(&stderr_path)?);
        let child = cmd.spawn()?;
        // Tracked from the start: a lab command interrupted while the capture is still
        // loading its programs must stop it too (it was tracked only once ready, and a
        // SIGTERM during a slow start under load left it running).
        crate::teardown::track_child(child.id());
        let mut cap = Self { child: Some(child), dir: dir.to_owned(), stderr_path };
        let t = Instant::now();
        while !ready.exists() {
            if let Some(status) = cap.child.as_mut().expect("running").try_wait()? {
                let stderr = std::fs::read_to_string(&cap.stderr_path).unwrap_or_default();
                anyhow::bail!("netlat-capture exited before it was ready ({status}): {stderr}");
            }
            if t.elapsed() > Duration::from_secs(30) {
                anyhow::bail!("netlat-capture not ready after 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(cap)
    }

    /// Process id of the capture.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// True while the capture process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the capture with SIGKILL (no chance to close files) and waits.
    pub fn kill(mut self) -> anyhow::Result<Finished> {
        let mut child = self.child.take().expect("running");
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let status = child.wait()?;
        crate::teardown::untrack_child(child.id());
        Ok(Finished { code: status.code(), stderr: std::fs::read_to_string(&self.stderr_path).unwrap_or_default() })
    }

    /// Sends SIGTERM and waits for the capture to close its files.
    pub fn stop(mut self) -> anyhow::Result<Finished> {
        let mut child = self.child.take().expect("running");
        if matches!(child.try_wait(), Ok(None)) {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        }
        let status = child.wait()?;
        crate::teardown::untrack_child(child.id());
        Ok(Finished { code: status.code(), stderr: std::fs::read_to_string(&self.stderr_path).unwrap_or_default() })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as above; a test that panicked must not leave it running.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
            crate::teardown::untrack_child(c.id());
        }
    }
}

/// Starts one capture per host of a two-host lab, as a container host
/// would run them: host `a` from inside its namespace (`ip netns exec`),
/// host `b` from the root namespace through `NETNS/IFACE`. Files go to
/// `out/a` and `out/b`; `extra_b` goes to `b` only, `common` (which may end
/// with a filter expression) to both. Each probes the other's clock
/// (`--sync-peer`), so the analysis aligns them as it would real hosts.
pub fn start_pair(
    lab: &crate::Lab,
    out: &Path,
    extra_b: &[&str],
    common: &[&str],
) -> anyhow::Result<(Capture, Capture)> {
    let (a, b) = (&lab.hosts[0], &lab.hosts[1]);
    let args = |iface: &str, host: &str, peer: &crate::Host, extra: &[&str]| -> Vec<String> {
        let peer = peer.addr.to_string();
        let mut v: Vec<String> =
            ["-i", iface, "--host-name", host, "--sync-peer", &peer].iter().map(|s| s.to_string()).collect();
        v.extend(extra.iter().chain(common).map(|s| s.to_string()));
        v
    };
    let args_a = args(&a.iface, "a", b, &[]);
    let args_b = args(&format!("{}/{}", b.netns, b.iface), "b", a, extra_b);
    let mut caps = start_all(&[
        Start { netns: Some(a.netns.clone()), dir: out.join("a"), args: args_a },
        Start { netns: None, dir: out.join("b"), args: args_b },
    ])?
    .into_iter();
    Ok((caps.next().expect("two"), caps.next().expect("two")))
}

/// One capture to start: its namespace (`None`: this process's), output folder and
/// arguments.
pub struct Start {
    /// Namespace under /run/netns.
    pub netns: Option<String>,
    /// Output folder.
    pub dir: PathBuf,
    /// Arguments (a filter expression last).
    pub args: Vec<String>,
}

/// Starts every capture at once and waits until all are ready. Loading takes a capture
/// about 2 s here, and one started first would exchange clock-sync probes with nobody that
/// long (a pcap test saw a host pair left unaligned, CI on eb8259a).
pub fn start_all(starts: &[Start]) -> anyhow::Result<Vec<Capture>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = starts
            .iter()
            .map(|st| {
                s.spawn(move || {
                    let args: Vec<&str> = st.args.iter().map(String::as_str).collect();
                    Capture::start(st.netns.as_deref(), &st.dir, &args)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("capture start panicked")).collect()
    })
}

/// Lets captures started with `--duration` end by themselves (their last seconds are
/// probed fastest), waiting at most `timeout`, then stops any still running. Fails on the
/// first that did not exit 0, by its name in `names`.
pub fn finish_all(caps: Vec<Capture>, names: &[&str], timeout: Duration) -> anyhow::Result<()> {
    let mut caps = caps;
    let deadline = Instant::now() + timeout;
    while caps.iter_mut().any(Capture::is_running) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for (cap, name) in caps.into_iter().zip(names) {
        let f = cap.stop()?;
        if f.code != Some(0) {
            anyhow::bail!("capture on {name} failed ({:?}): {}", f.code, f.stderr);
        }
    }
    Ok(())
}
