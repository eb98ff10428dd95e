//! Which probe points of the catalog (`conf/probes.yaml`) the running kernel
//! allows, and why not where it does not.
//!
//! * tracepoint: the event exists in tracefs (`events/SYSTEM/EVENT`); attached
//!   as `tp_btf` where the kernel has `btf_trace_EVENT` in its BTF, else as a
//!   raw tracepoint;
//! * kprobe / kretprobe: the kernel has kprobes (`kprobe_events` in tracefs or
//!   the `kprobe` perf PMU) and the function is a symbol in `/proc/kallsyms`
//!   (not inlined);
//! * fentry / fexit: the function has BTF and the kernel really loads a
//!   minimal tracing program on it (the only reliable test: lockdown, missing
//!   trampolines or a non-traceable function all show up only there). One
//!   refused load (EPERM) explains every probe of that kind;
//! * xdp / tc: netlat-capture's own hooks (see [`crate::preflight`]).
//!
//! For tracepoints and functions with BTF, the catalog's `arg` is checked
//! against the real argument type, so a catalog entry that is wrong for this
//! kernel is reported rather than loaded.

mod fentry;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
};

use conf::probes::{Arg, Catalog, Kind, Preset, Probe};
use serde::Serialize;

use crate::btf::Btf;

/// Whether a probe can be used here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// Usable; how it will attach (e.g. `tp_btf`).
    Available(String),
    /// Not usable, and why (one sentence naming the function or event).
    Unavailable(String),
}

/// Something that decides availability (the running kernel, or a fake in tests).
pub trait Kernel {
    /// Availability of `probe`.
    fn check(&mut self, probe: &Probe) -> Availability;
}

/// The probes of `preset` split into those this kernel allows and those it
/// does not (with the reason), in catalog order.
pub fn select<'a>(
    catalog: &'a Catalog,
    preset: Preset,
    kernel: &mut impl Kernel,
) -> (Vec<&'a Probe>, Vec<(&'a Probe, String)>) {
    let mut usable = Vec::new();
    let mut unusable = Vec::new();
    for p in catalog.preset(preset) {
        match kernel.check(p) {
            Availability::Available(_) => usable.push(p),
            Availability::Unavailable(why) => unusable.push((p, why)),
        }
    }
    (usable, unusable)
}

/// The warning printed for a probe that cannot be used.
pub fn warning(probe: &Probe, reason: &str) -> String {
    format!(
        "netlat-capture: warning: probe {} ({} {}) unavailable: {reason}; continuing without it",
        probe.name, probe.kind, probe.target
    )
}

/// Warnings for the rows of [`describe`] that are unavailable, or available but given no
/// slot by `funcs` (with its reason).
pub fn warnings<'a>(rows: &'a [ProbeMeta], funcs: &'a crate::funcs::Plan) -> impl Iterator<Item = String> + 'a {
    let why = move |n: &str| funcs.left_out.iter().find(|(p, _)| p == n).map(|(_, w)| w.as_str());
    rows.iter().filter(move |r| !r.available || why(&r.name).is_some()).map(move |r| {
        if let (true, Some(why)) = (r.available, why(&r.name)) {
            format!(
                "netlat-capture: warning: probe {} ({} {}) is not recorded: {why}; continuing without it",
                r.name, r.kind, r.target
            )
        } else {
            format!(
                "netlat-capture: warning: probe {} ({} {}) unavailable: {}; continuing without it",
                r.name, r.kind, r.target, r.detail
            )
        }
    })
}

/// Catalog probes netlat has hooks of its own for (XDP, TC, its tracepoints; then the
/// names of the slots for probes given as data, see [`crate::funcs`]): the hook names of
/// the events table are the catalog's probe names.
pub const RECORDED: [&str; capture_common::abi::hook::COUNT] = capture_common::abi::hook::NAMES;

/// Catalog probes that time-stamp another probe's events rather than having their own
/// (`tcp_sendmsg` gives `sock_send` its time).
pub const STAMPS: [&str; 1] = ["tcp_sendmsg"];

/// The tracepoint hooks to record (bit `1 << hook id`): the available rows that name one
/// of this version's tracepoint hooks.
pub fn tracepoint_mask(rows: &[ProbeMeta]) -> u32 {
    use capture_common::abi::hook;
    rows.iter()
        .filter(|r| r.available)
        .filter_map(|r| hook::NAMES.iter().position(|n| *n == r.name))
        .filter(|h| *h >= usize::from(hook::NET_DEV_QUEUE) && *h < usize::from(hook::FUNC))
        .fold(0, |m, h| m | 1 << h)
}

/// One probe with its availability, as recorded in the run metadata.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ProbeMeta {
    /// Catalog name.
    pub name: String,
    /// Layer.
    pub layer: String,
    /// Direction.
    pub dir: String,
    /// Attachment kind.
    pub kind: String,
    /// Event or function.
    pub target: String,
    /// Whether this kernel allows it.
    pub available: bool,
    /// How it attaches, or why it cannot.
    pub detail: String,
}

/// Probes whose events take their time from another probe: (probe, the stamping probe).
/// Without the stamping probe the program pair cannot load, so the probe is unavailable too.
pub const NEEDS: [(&str, &str); 3] =
    [("sock_send", "tcp_sendmsg"), ("udp_send", "net_dev_queue"), ("udp_recv", "sk_data_ready")];

/// Every probe of `preset` with its availability.
pub fn describe(catalog: &Catalog, preset: Preset, kernel: &mut impl Kernel) -> Vec<ProbeMeta> {
    let mut rows = check_rows(catalog, preset, kernel);
    for (probe, stamp) in NEEDS {
        let Some(s) = rows.iter().find(|r| r.name == stamp && !r.available).cloned() else { continue };
        for r in rows.iter_mut().filter(|r| r.name == probe && r.available) {
            r.available = false;
            r.detail = format!("needs {} ({} {}), which is unavailable: {}", s.name, s.kind, s.target, s.detail);
        }
    }
    rows
}

fn check_rows(catalog: &Catalog, preset: Preset, kernel: &mut impl Kernel) -> Vec<ProbeMeta> {
    catalog
        .preset(preset)
        .map(|p| {
            let (available, detail) = match kernel.check(p) {
                Availability::Available(how) => (true, how),
                Availability::Unavailable(why) => (false, why),
            };
            ProbeMeta {
                name: p.name.clone(),
                layer: p.layer.to_string(),
                dir: p.dir.to_string(),
                kind: p.kind.to_string(),
                target: p.target.clone(),
                available,
                detail,
            }
        })
        .collect()
}

/// The `--list-probes` table.
pub fn table(rows: &[ProbeMeta]) -> String {
    let head = ["NAME", "LAYER", "DIR", "KIND", "TARGET", "AVAILABLE"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let avail = if r.available { format!("yes ({})", r.detail) } else { format!("no: {}", r.detail) };
            [r.name.clone(), r.layer.clone(), r.dir.clone(), r.kind.clone(), r.target.clone(), avail]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &cells {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: [&str; 6]| {
        for (i, c) in cols.iter().enumerate() {
            if i == 5 {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        out.push('\n');
    };
    line(head);
    for row in &cells {
        line(row.each_ref().map(String::as_str));
    }
    let n = rows.iter().filter(|r| r.available).count();
    out.push_str(&format!("{n} of {} probes available on this kernel\n", rows.len()));
    out
}

/// The running kernel, looked at lazily and once per question.
pub struct Running {
    btf: Result<Btf, String>,
    tracefs: Result<PathBuf, String>,
    kallsyms: Option<HashSet<String>>,
    /// A refusal that holds for every probe of a kind (fentry, fexit): the
    /// function it was tried on and the kernel's answer.
    refused: HashMap<Kind, (String, String)>,
    release: (u32, u32),
}

impl Default for Running {
    fn default() -> Self {
        Self::new()
    }
}

impl Running {
    /// Reads the kernel's BTF and finds (or mounts) tracefs.
    pub fn new() -> Self {
        let facts = crate::preflight::Facts::gather();
        Running {
            btf: Btf::from_sys_fs().map_err(|e| e.to_string()),
            tracefs: tracefs(),
            kallsyms: None,
            refused: HashMap::new(),
            release: crate::preflight::parse_release(&facts.release).unwrap_or((0, 0)),
        }
    }

    fn kallsyms(&mut self) -> &HashSet<String> {
        self.kallsyms.get_or_insert_with(|| {
            let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let (_, t, name) = (f.next()?, f.next()?, f.next()?);
                    matches!(t, "t" | "T").then(|| name.to_owned())
                })
                .collect()
        })
    }

    fn tracepoint(&self, p: &Probe) -> Availability {
        let Some((system, event)) = p.tracepoint() else {
            return Availability::Unavailable(format!("{:?} is not SYSTEM:EVENT", p.target));
        };
        let btf = self.btf.as_ref().ok().filter(|b| b.has_btf_tracepoint(event));
        match &self.tracefs {
            Ok(root) => {
                let dir = root.join("events").join(system).join(event);
                if !dir.is_dir() {
                    return Availability::Unavailable(format!(
                        "tracepoint {system}:{event} does not exist in this kernel (no {})",
                        dir.display()
                    ));
                }
            }
            // Without tracefs, BTF still proves the tracepoint exists (tp_btf needs nothing else).
            Err(why) if btf.is_none() => {
                return Availability::Unavailable(format!("cannot tell whether {system}:{event} exists: {why}"))
            }
            Err(_) => {}
        }
        // System call events are not raw tracepoints (they share raw_syscalls:sys_enter):
        // they attach as perf tracepoints.
        if system == "syscalls" {
            return Availability::Available("tracepoint".into());
        }
        let Some(btf) = btf else { return Availability::Available("raw_tp".into()) };
        if let (Some(arg), Some(params)) = (p.arg, btf.tracepoint_params(event)) {
            if let Err(why) = check_arg(btf, &format!("tracepoint {system}:{event}"), arg, &params) {
                return Availability::Unavailable(why);
            }
        }
        Availability::Available("tp_btf".into())
    }

    fn kprobe(&mut self, p: &Probe) -> Availability {
        let pmu = Path::new("/sys/bus/event_source/devices/kprobe").exists();
        let events = self.tracefs.as_ref().is_ok_and(|t| t.join("kprobe_events").exists());
        if !pmu && !events {
            return Availability::Unavailable(
                "kprobes are not built into this kernel (no kprobe_events in tracefs; \
                 CONFIG_KPROBES/CONFIG_KPROBE_EVENTS off)"
                    .into(),
            );
        }
        let f = p.target.as_str();
        if !self.kallsyms().contains(f) {
            let prefix = format!("{f}.");
            let clones: Vec<String> = self.kallsyms().iter().filter(|s| s.starts_with(&prefix)).cloned().collect();
            return Availability::Unavailable(if clones.is_empty() {
                format!("{f} is not a function of this kernel (not in /proc/kallsyms: inlined, renamed or absent)")
            } else {
                format!("{f} exists only as a compiler clone ({}); probe that name instead", clones.join(", "))
            });
        }
        if let Err(why) = self.btf_arg(p) {
            return Availability::Unavailable(why);
        }
        Availability::Available(p.kind.to_string())
    }

    fn fentry(&mut self, p: &Probe) -> Availability {
        let f = p.target.as_str();
        let Ok(btf) = &self.btf else {
            return Availability::Unavailable(format!(
                "{} needs kernel BTF: {}",
                p.kind,
                self.btf.as_ref().unwrap_err()
            ));
        };
        let Some(id) = btf.func_id(f) else {
            return Availability::Unavailable(format!(
                "{f} has no BTF in this kernel (inlined, a compiler clone, or absent), so {} cannot attach",
                p.kind
            ));
        };
        if let Err(why) = self.btf_arg(p) {
            return Availability::Unavailable(why);
        }
        let refused = |why: &str| format!("{} on {f}: the kernel refused to load a tracing program ({why})", p.kind);
        if let Some((first, why)) = self.refused.get(&p.kind) {
            return Availability::Unavailable(refused(&format!("{why}; tried once, on {first}")));
        }
        match fentry::try_load(p.kind, id) {
            Ok(()) => Availability::Available(format!("{} (BPF trampoline)", p.kind)),
            Err(e) => {
                if e.whole_kind() {
                    self.refused.insert(p.kind, (f.to_owned(), e.explain()));
                }
                Availability::Unavailable(refused(&e.explain()))
            }
        }
    }

    /// Checks `arg` against the function's BTF, where it has one.
    fn btf_arg(&self, p: &Probe) -> Result<(), String> {
        let (Ok(btf), Some(arg)) = (&self.btf, p.arg) else { return Ok(()) };
        match btf.func_params(&p.target) {
            Some(params) => check_arg(btf, &p.target, arg, &params),
            None => Ok(()),
        }
    }
}

/// Whether argument `arg` of `what` (parameter types `params`) is what the catalog says.
fn check_arg(btf: &Btf, what: &str, arg: Arg, params: &[u32]) -> Result<(), String> {
    let (want, depth) = match arg {
        Arg::Skb(_) => ("sk_buff", 1),
        Arg::Pskb(_) => ("sk_buff", 2),
        Arg::Sock(_) => ("sock", 1),
        Arg::Socket(_) => ("socket", 1),
        Arg::SkbToken(_) => ("", 0),
    };
    let i = usize::from(arg.index());
    let Some(&ty) = params.get(i) else {
        return Err(format!("{what} has {} arguments; the catalog's arg {arg} is past them", params.len()));
    };
    let found = btf.type_name(ty);
    let ok = match arg {
        Arg::SkbToken(_) => found == "void *" || btf.pointee_struct(ty) == Some(("sk_buff", 1)),
        _ => btf.pointee_struct(ty) == Some((want, depth)),
    };
    if ok {
        return Ok(());
    }
    let expected =
        if depth == 0 { "void *".to_owned() } else { format!("struct {want} {}", "*".repeat(depth as usize)) };
    Err(format!(
        "argument {i} of {what} is `{found}`, not {expected} (the catalog's arg {arg} is wrong for this kernel)"
    ))
}

impl Kernel for Running {
    fn check(&mut self, p: &Probe) -> Availability {
        match p.kind {
            Kind::Tracepoint => self.tracepoint(p),
            Kind::Kprobe | Kind::Kretprobe => self.kprobe(p),
            Kind::Fentry | Kind::Fexit => self.fentry(p),
            Kind::Xdp if self.release < crate::preflight::MIN_KERNEL_XDP => {
                let (a, b) = crate::preflight::MIN_KERNEL_XDP;
                Availability::Unavailable(format!("XDP needs Linux >= {a}.{b} (bpf_xdp_load_bytes)"))
            }
            Kind::Xdp => Availability::Available("xdp".into()),
            Kind::Tc if self.release >= (6, 6) => Availability::Available("tcx link".into()),
            Kind::Tc => Availability::Available("clsact qdisc".into()),
        }
    }
}

/// The tracefs mount: `/sys/kernel/tracing`, the old debugfs path, or mounted
/// at `/sys/kernel/tracing` now (as `scripts/bootstrap` does) if neither is there.
fn tracefs() -> Result<PathBuf, String> {
    const MAIN: &str = "/sys/kernel/tracing";
    for root in [MAIN, "/sys/kernel/debug/tracing"] {
        if Path::new(root).join("events").is_dir() {
            return Ok(root.into());
        }
    }
    // SAFETY: NUL-terminated literals; mount(2) reads them only.
    let rc = unsafe {
        libc::mount(c"nodev".as_ptr(), c"/sys/kernel/tracing".as_ptr(), c"tracefs".as_ptr(), 0, std::ptr::null())
    };
    if rc == 0 && Path::new(MAIN).join("events").is_dir() {
        return Ok(MAIN.into());
    }
    Err(format!(
        "tracefs is not mounted at {MAIN} and could not be mounted there ({}); \
         run `mount -t tracefs nodev {MAIN}` as root",
        std::io::Error::last_os_error()
    ))
}

#[cfg(test)]
mod tests {
    use conf::probes::Layer;

    use super::*;

    /// Refuses every fentry probe, allows the rest.
    struct Fake;

    impl Kernel for Fake {
        fn check(&mut self, p: &Probe) -> Availability {
            match p.kind {
                Kind::Fentry => Availability::Unavailable("EPERM".into()),
                _ => Availability::Available("x".into()),
            }
        }
    }

    #[test]
    fn select_splits_by_availability_in_catalog_order() {
        let c = Catalog::builtin();
        let (usable, unusable) = select(&c, Preset::Wire, &mut Fake);
        assert_eq!(usable.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["xdp", "tc_ingress", "tc_egress"]);
        assert!(unusable.is_empty());
        let (usable, unusable) = select(&c, Preset::All, &mut Fake);
        assert_eq!(usable.len() + unusable.len(), c.probes.len());
        assert!(unusable.iter().all(|(p, why)| p.kind == Kind::Fentry && why == "EPERM"));
        assert!(usable.iter().any(|p| p.layer == Layer::Sched));
        let w = warning(unusable[0].0, &unusable[0].1);
        assert_eq!(
            w,
            "netlat-capture: warning: probe fentry_sock_sendmsg (fentry sock_sendmsg) unavailable: EPERM; \
             continuing without it"
        );
    }

    /// Lacks the tracepoint tcp:tcp_sendmsg_locked (kernels before it was added).
    struct NoSendmsgLocked;

    impl Kernel for NoSendmsgLocked {
        fn check(&mut self, p: &Probe) -> Availability {
            match p.target.as_str() {
                "tcp:tcp_sendmsg_locked" => Availability::Unavailable("no such tracepoint".into()),
                _ => Availability::Available("x".into()),
            }
        }
    }

    #[test]
    fn sock_send_is_unavailable_without_its_time_stamp_probe() {
        use capture_common::abi::hook;
        let c = Catalog::builtin();
        let rows = describe(&c, Preset::Socket, &mut NoSendmsgLocked);
        let send = rows.iter().find(|r| r.name == "sock_send").expect("sock_send in the socket preset");
        assert!(!send.available);
        assert_eq!(
            send.detail,
            "needs tcp_sendmsg (tracepoint tcp:tcp_sendmsg_locked), which is unavailable: no such tracepoint"
        );
        let mask = tracepoint_mask(&rows);
        assert_eq!(mask & 1 << hook::SOCK_SEND, 0, "not loaded, so the rest still loads");
        assert_ne!(mask & 1 << hook::SOCK_RECV, 0);
        assert!(warnings(&rows, &Default::default())
            .any(|w| w.contains("probe sock_send") && w.contains("needs tcp_sendmsg")));
        // With the stamp there, sock_send is available.
        let rows = describe(&c, Preset::Socket, &mut Fake);
        assert!(rows.iter().any(|r| r.name == "sock_send" && r.available));
    }

    /// Lacks one tracepoint (`SYSTEM:EVENT`).
    struct Lacks(&'static str);

    impl Kernel for Lacks {
        fn check(&mut self, p: &Probe) -> Availability {
            if p.target == self.0 {
                Availability::Unavailable("no such tracepoint".into())
            } else {
                Availability::Available("x".into())
            }
        }
    }

    #[test]
    fn udp_send_is_unavailable_without_net_dev_queue() {
        use capture_common::abi::hook;
        let rows = describe(&Catalog::builtin(), Preset::Socket, &mut Lacks("net:net_dev_queue"));
        let udp = rows.iter().find(|r| r.name == "udp_send").expect("udp_send in the socket preset");
        assert!(!udp.available);
        assert!(udp.detail.starts_with("needs net_dev_queue (tracepoint net:net_dev_queue)"), "{}", udp.detail);
        assert_eq!(tracepoint_mask(&rows) & (1 << hook::UDP_SEND | 1 << hook::NET_DEV_QUEUE), 0);
        let rows = describe(&Catalog::builtin(), Preset::Socket, &mut Fake);
        assert_ne!(tracepoint_mask(&rows) & 1 << hook::UDP_SEND, 0);
        // Not below the socket preset.
        let rows = describe(&Catalog::builtin(), Preset::Stack, &mut Fake);
        assert_eq!(tracepoint_mask(&rows) & 1 << hook::UDP_SEND, 0);
    }

    #[test]
    fn udp_recv_is_unavailable_without_sk_data_ready() {
        use capture_common::abi::hook;
        let rows = describe(&Catalog::builtin(), Preset::Socket, &mut Lacks("sock:sk_data_ready"));
        let udp = rows.iter().find(|r| r.name == "udp_recv").expect("udp_recv in the socket preset");
        assert!(!udp.available);
        assert!(udp.detail.starts_with("needs sk_data_ready (tracepoint sock:sk_data_ready)"), "{}", udp.detail);
        assert_eq!(tracepoint_mask(&rows) & 1 << hook::UDP_RECV, 0);
        let rows = describe(&Catalog::builtin(), Preset::Socket, &mut Fake);
        assert_ne!(tracepoint_mask(&rows) & 1 << hook::UDP_RECV, 0);
        let rows = describe(&Catalog::builtin(), Preset::Stack, &mut Fake);
        assert_eq!(tracepoint_mask(&rows) & 1 << hook::UDP_RECV, 0);
    }

    #[test]
    fn table_lists_every_probe_with_its_availability() {
        let c = Catalog::builtin();
        let rows = describe(&c, Preset::All, &mut Fake);
        let t = table(&rows);
        assert!(t.starts_with("NAME "), "{t}");
        assert!(t.contains("no: EPERM") && t.contains("yes (x)"), "{t}");
        assert_eq!(t.lines().count(), c.probes.len() + 2);
        assert!(t.ends_with("probes available on this kernel\n"));
    }
}
