//! The static binary's promise: on a machine (or as a user) that cannot
//! capture, netlat-capture says plainly what is missing and exits with 3,
//! before touching the kernel.

use std::{os::unix::fs::PermissionsExt as _, process::Command};

#[test]
fn without_root_it_names_what_is_missing() {
    // SAFETY: no arguments, cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: run it directly.
        let out = Command::new(env!("CARGO_BIN_EXE_netlat-capture")).args(["-i", "lo", "-w", "/nonexistent"]).output();
        let out = out.unwrap();
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        return;
    }
    // As root, drop to nobody with setpriv (util-linux). The binary must be
    // readable by nobody: copy it out of the (private) target folder.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("netlat-capture");
    std::fs::copy(env!("CARGO_BIN_EXE_netlat-capture"), &exe).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"])
        .arg(&exe)
        .args(["-i", "lo", "-w"])
        .arg(dir.path().join("out"))
        .output()
        .expect("setpriv (util-linux) runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("this machine cannot run the capture:"), "{stderr}");
    assert!(stderr.contains("not running as root and missing CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN"), "{stderr}");
    assert!(!dir.path().join("out").exists(), "nothing is created before the check");
}
