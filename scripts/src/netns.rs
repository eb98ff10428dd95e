//! Running code inside a named network namespace.

use std::{fs::File, os::fd::AsRawFd};

/// Runs `f` on a thread that has entered `/run/netns/<name>`. Sockets made
/// there stay in that namespace after the thread ends.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    let file = File::open(format!("/run/netns/{name}"))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on this thread only, with a valid fd.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .expect("netns thread panicked")
    })
}

/// True when running as root (the kernel tests and the lab need it).
pub fn is_root() -> bool {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Starts `args` inside namespace `netns` (as `ip netns exec`), output discarded, tracked
/// for teardown.
pub fn spawn_in(netns: &str, args: &[&str]) -> anyhow::Result<std::process::Child> {
    use anyhow::Context as _;
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {args:?}"))?;
    crate::teardown::track_child(child.id());
    Ok(child)
}
