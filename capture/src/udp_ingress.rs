//! UDP's ingress program (`netlat_udp_ingress`, a `cgroup_skb/ingress` program): it keeps a
//! datagram as its socket's next read before the datagram is queued, so that a reader
//! already running cannot take it unseen (docs/probes.md, `udp_recv`). It is attached at the
//! root of the cgroup v2 hierarchy, beside any other program there (it lets every packet
//! through), with the program that forgets a kept datagram dropped before the queue.

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
/// identified at the data-ready alone.
pub fn attach(ebpf: &mut Ebpf, kernel_btf: &aya::Btf) -> Result<(), String> {
    let explain = |what: String| {
        format!(
            "netlat-capture: udp_recv: {what}; a reader already running can take a datagram before the capture identifies it (such reads are counted as not identified)"
        )
    };
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").map_err(|e| explain(format!("/proc/self/mounts: {e}")))?;
    let root = cgroup2_root(&mounts).ok_or_else(|| explain("no cgroup v2 hierarchy is mounted".into()))?;
    attach_at(ebpf, kernel_btf, &root).map_err(|e| explain(format!("{e:#}")))
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
