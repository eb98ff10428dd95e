//! UDP's ingress program (`netlat_udp_ingress`, a `cgroup_skb/ingress` program): it gives
//! each datagram a ticket in the order UDP queues them, from which the reads are known
//! (docs/probes.md, `udp_recv`). It is attached at the root of the cgroup v2 hierarchy,
//! beside any other program there (it lets every packet through), with the program that
//! marks a datagram dropped before the queue.

use std::path::{Path, PathBuf};

use aya::programs::{BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType};
use aya::Ebpf;

use crate::loader::{kernel_at_least, program};

/// The mount point of the cgroup v2 hierarchy in `mounts` (`/proc/self/mounts`'s format).
pub fn cgroup2_root(mounts: &str) -> Option<PathBuf> {
    mounts.lines().find_map(|l| {
        let mut f = l.split_whitespace();
        let (_, dir, fstype) = (f.next()?, f.next()?, f.next()?);
        // Octal escapes (`\040` for a space) as the kernel writes them.
        (fstype == "cgroup2").then(|| PathBuf::from(unescape(dir)))
    })
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, c| v.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Loads and attaches both programs. An error is a sentence for the user: reads are then
/// not identified.
///
/// With no cgroup v2 hierarchy mounted here (`ip netns exec` mounts a fresh `/sys`, without
/// the host's cgroup mounts), one is mounted for the attach in a folder of its own and
/// unmounted after: the hierarchy, and the program attached at its root, stay.
pub fn attach(ebpf: &mut Ebpf, kernel_btf: &aya::Btf) -> Result<(), String> {
    let explain = |what: String| {
        format!("netlat-capture: udp_recv: {what}; UDP reads are not identified (each is counted as not identified)")
    };
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|e| explain(format!("/proc/self/mounts: {e}")))?;
    // Held until the attach is done.
    let private;
    let root = match cgroup2_root(&mounts) {
        Some(root) => root,
        None => {
            private = PrivateCgroup2::mount()
                .map_err(|e| explain(format!("no cgroup v2 hierarchy is mounted, and mounting one failed: {e}")))?;
            private.path().to_owned()
        }
    };
    attach_at(ebpf, kernel_btf, &root).map_err(|e| explain(format!("{e:#}")))
}

/// `path` for a system call.
fn c_path(path: &Path) -> std::io::Result<std::ffi::CString> {
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).map_err(std::io::Error::other)
}

/// The cgroup v2 hierarchy mounted in a temporary folder, unmounted (lazily) and removed
/// when dropped.
struct PrivateCgroup2(tempfile::TempDir);

impl PrivateCgroup2 {
    fn mount() -> std::io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("netlat-cgroup2-").tempdir()?;
        let path = c_path(dir.path())?;
        // SAFETY: NUL-terminated strings; mount(2) reads them only.
        let rc = unsafe { libc::mount(c"cgroup2".as_ptr(), path.as_ptr(), c"cgroup2".as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for PrivateCgroup2 {
    fn drop(&mut self) {
        if let Ok(path) = c_path(self.0.path()) {
            // SAFETY: a NUL-terminated path; the folder was mounted by `mount`.
            unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn attach_at(ebpf: &mut Ebpf, kernel_btf: &aya::Btf, root: &Path) -> Result<(), anyhow::Error> {
    let drop: &mut BtfTracePoint = program(ebpf, "netlat_udp_dropped")?;
    drop.load("kfree_skb", kernel_btf).map_err(|e| anyhow::Error::new(e).context("tp_btf kfree_skb"))?;
    drop.attach().map_err(|e| anyhow::Error::new(e).context("attaching tp_btf kfree_skb"))?;
    let cgroup = std::fs::File::open(root).map_err(|e| anyhow::Error::new(e).context(root.display().to_string()))?;
    let p: &mut CgroupSkb = program(ebpf, "netlat_udp_ingress")?;
    p.load().map_err(|e| anyhow::Error::new(e).context("cgroup_skb/ingress"))?;
    // Since Linux 5.7 a link, beside any other program (a link takes no flags); before, the
    // old attach, which needs `BPF_F_ALLOW_MULTI` not to exclude or replace others.
    let mode = if kernel_at_least(5, 7) { CgroupAttachMode::Single } else { CgroupAttachMode::AllowMultiple };
    p.attach(&cgroup, CgroupSkbAttachType::Ingress, mode)
        .map_err(|e| anyhow::Error::new(e).context(format!("attaching cgroup_skb/ingress to {}", root.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a capture started by `ip netns exec` finds: no cgroup2 mount of the host's. The
    /// one it mounts is the same hierarchy (the host's root cgroup), and goes away with it.
    #[test]
    fn a_private_cgroup2_mount_is_the_hierarchy_and_is_undone() {
        // SAFETY: no arguments.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("CI").is_none(), "needs root (mount), which CI has");
            eprintln!("skipped: needs root (mount)");
            return;
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let m = PrivateCgroup2::mount().unwrap();
        let dir = m.path().to_owned();
        assert!(dir.join("cgroup.procs").is_file(), "{}", dir.display());
        if let Some(host) = cgroup2_root(&mounts) {
            use std::os::unix::fs::MetadataExt as _;
            let id = |d: &Path| std::fs::metadata(d).map(|m| (m.dev(), m.ino())).unwrap();
            assert_eq!(id(&dir), id(&host));
        }
        drop(m);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn the_cgroup2_mount_is_found_among_others() {
        let mounts = "sysfs /sys sysfs rw 0 0\n\
                      cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nsdelegate 0 0\n";
        assert_eq!(cgroup2_root(mounts), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(cgroup2_root("none /odd\\040dir cgroup2 rw 0 0\n"), Some(PathBuf::from("/odd dir")));
        assert_eq!(cgroup2_root("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n"), None);
    }
}
