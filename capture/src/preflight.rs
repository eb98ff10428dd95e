//! Checks, before anything is loaded, that this machine can run the
//! capture, and says plainly what is missing otherwise.
//!
//! netlat-capture is one static binary meant to be copied to any x86_64
//! Linux. What it needs from the machine: Linux ≥ 5.8 (BPF ring buffer,
//! CAP_BPF), kernel type information (BTF, `/sys/kernel/btf/vmlinux`),
//! root or CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN, and for the XDP hook
//! Linux ≥ 5.18 (`bpf_xdp_load_bytes`). Without these the kernel's own
//! errors (EPERM, EINVAL from the verifier) say little.

use std::{fmt, path::Path};

/// Oldest kernel the capture runs on.
pub const MIN_KERNEL: (u32, u32) = (5, 8);
/// Oldest kernel with `bpf_xdp_load_bytes`, which the XDP hook calls.
pub const MIN_KERNEL_XDP: (u32, u32) = (5, 18);
/// Where the kernel publishes its BTF.
pub const BTF_PATH: &str = "/sys/kernel/btf/vmlinux";

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the checks look at, gathered once (and made up in tests).
#[derive(Clone, Debug)]
pub struct Facts {
    /// `uname -r`.
    pub release: String,
    /// Whether [`BTF_PATH`] exists.
    pub btf: bool,
    /// Effective capability set (`CapEff` of /proc/self/status), if readable.
    pub cap_eff: Option<u64>,
    /// Effective user id.
    pub euid: u32,
}

impl Facts {
    /// Looks at the running system.
    pub fn gather() -> Self {
        Facts {
            release: kernel_release(),
            btf: Path::new(BTF_PATH).exists(),
            cap_eff: std::fs::read_to_string("/proc/self/status").ok().and_then(|s| cap_eff(&s)),
            // SAFETY: no arguments, cannot fail.
            euid: unsafe { libc::geteuid() },
        }
    }
}

fn kernel_release() -> String {
    // SAFETY: uname fills a zeroed struct of fixed-size, NUL-terminated arrays.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u.release.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `CapEff` from the text of /proc/self/status.
pub fn cap_eff(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// `(major, minor)` of a kernel release such as `6.1.0-18-amd64`.
pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Everything this machine lacks, one plain sentence each; empty when all is there.
pub fn problems(f: &Facts, xdp: bool) -> Vec<String> {
    let mut out = Vec::new();
    let version = parse_release(&f.release);
    if let Some(v) = version {
        if v < MIN_KERNEL {
            out.push(format!(
                "Linux {} is too old: netlat-capture needs Linux {}.{} or newer (BPF ring buffer, CAP_BPF)",
                f.release, MIN_KERNEL.0, MIN_KERNEL.1
            ));
        } else if xdp && v < MIN_KERNEL_XDP {
            out.push(format!(
                "Linux {} has no bpf_xdp_load_bytes, which the xdp hook needs (Linux {}.{}); \
                 capture with --hooks tc_ingress,tc_egress on this machine",
                f.release, MIN_KERNEL_XDP.0, MIN_KERNEL_XDP.1
            ));
        }
    }
    if !f.btf {
        out.push(format!(
            "this kernel publishes no type information (BTF): {BTF_PATH} is missing; \
             use a kernel built with CONFIG_DEBUG_INFO_BTF=y (the default of current distributions)"
        ));
    }
    if f.euid != 0 {
        let has = |cap: u32| f.cap_eff.is_some_and(|c| c & (1u64 << cap) != 0);
        let mut missing = Vec::new();
        if !has(CAP_SYS_ADMIN) {
            missing.extend([(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")].iter().filter(|(c, _)| !has(*c)));
        }
        if !has(CAP_NET_ADMIN) {
            missing.push(&(CAP_NET_ADMIN, "CAP_NET_ADMIN"));
        }
        if !missing.is_empty() {
            let names: Vec<&str> = missing.iter().map(|(_, n)| *n).collect();
            out.push(format!(
                "not running as root and missing {}: run it as root (sudo netlat-capture ...) \
                 or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (setcap, or systemd's AmbientCapabilities)",
                names.join(", ")
            ));
        }
    }
    out
}

/// The machine cannot run the capture.
#[derive(Debug)]
pub struct Unsupported(pub Vec<String>);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "this machine cannot run the capture:")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Unsupported {}

/// Checks the running system; `xdp`: the XDP hook was asked for.
pub fn check(xdp: bool) -> Result<(), Unsupported> {
    let p = problems(&Facts::gather(), xdp);
    if p.is_empty() {
        Ok(())
    } else {
        Err(Unsupported(p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(release: &str, btf: bool, euid: u32, caps: u64) -> Facts {
        Facts { release: release.into(), btf, cap_eff: Some(caps), euid }
    }

    #[test]
    fn releases_parse() {
        assert_eq!(parse_release("6.18.44-fc-v445"), Some((6, 18)));
        assert_eq!(parse_release("5.8.0"), Some((5, 8)));
        assert_eq!(parse_release("4.19.0-26-amd64"), Some((4, 19)));
        assert_eq!(parse_release("5.15"), Some((5, 15)));
        assert_eq!(parse_release("weird"), None);
    }

    #[test]
    fn capabilities_parse() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(cap_eff(status), Some(0x1ff_ffff_ffff));
        assert_eq!(cap_eff("Name: x\n"), None);
    }

    #[test]
    fn a_good_machine_has_no_problems() {
        assert!(problems(&facts("6.1.0-18-amd64", true, 0, 0), true).is_empty());
        // Not root, but with the three capabilities.
        let caps = (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_NET_ADMIN);
        assert!(problems(&facts("6.1.0", true, 1000, caps), true).is_empty());
        // CAP_SYS_ADMIN stands in for CAP_BPF + CAP_PERFMON.
        let caps = (1 << CAP_SYS_ADMIN) | (1 << CAP_NET_ADMIN);
        assert!(problems(&facts("6.1.0", true, 1000, caps), true).is_empty());
    }

    #[test]
    fn each_missing_piece_is_named() {
        let p = problems(&facts("4.19.0-26-amd64", false, 1000, 0), true);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("Linux 4.19.0-26-amd64 is too old") && p[0].contains("5.8"), "{}", p[0]);
        assert!(p[1].contains("/sys/kernel/btf/vmlinux is missing"), "{}", p[1]);
        assert!(p[2].contains("CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN"), "{}", p[2]);
        let p = problems(&facts("5.10.0", true, 0, 0), true);
        assert!(p.len() == 1 && p[0].contains("--hooks tc_ingress,tc_egress"), "{p:?}");
        assert!(problems(&facts("5.10.0", true, 0, 0), false).is_empty());
        let p = problems(&facts("6.1.0", true, 1000, 1 << CAP_BPF | 1 << CAP_PERFMON), true);
        assert!(p.len() == 1 && p[0].contains("missing CAP_NET_ADMIN"), "{p:?}");
        let text = Unsupported(p).to_string();
        assert!(text.starts_with("this machine cannot run the capture:\n  - not running as root"), "{text}");
    }

    #[test]
    fn this_machine_is_described() {
        let f = Facts::gather();
        assert!(parse_release(&f.release).is_some(), "{f:?}");
        assert!(f.cap_eff.is_some(), "{f:?}");
    }
}
