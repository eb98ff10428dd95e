//! Probe points given as data: the catalog entries (`conf/probes.yaml`, `--probes FILE`)
//! that are not one of netlat's own hooks. fentry/fexit and kprobe/kretprobe on any kernel
//! function, and any tracepoint, whose `arg` is the packet (`skb`, `pskb`, `skb_token`) or a
//! socket (`sock`, `socket`; with `dir: send` or `recv`), each get one of
//! [`hook::FUNC_SLOTS`] slots: hook `FUNC + slot`, named after the probe in the events and
//! the metadata. A packet probe records packets; a socket probe records the TCP bytes of
//! the application's send or receive call it ran in (see `capture_common::func::FuncSlot`).
//! The kernel side is `capture-ebpf/src/func.rs`.
//!
//! Which entries get a slot is decided once, from the availability rows
//! ([`crate::probes::describe`]), so every namespace's programs use the same slots.

use aya::{
    programs::{FEntry, FExit, KProbe, RawTracePoint},
    Ebpf,
};
use capture_common::{
    abi::hook,
    func::{arg, at, FuncConfig, FuncSlot},
};
use conf::probes::{Arg, Catalog, Dir, Kind, Probe};

use crate::probes::{ProbeMeta, RECORDED, STAMPS};

/// A catalog probe recorded through a slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuncProbe {
    /// Catalog name: the `hook` of its events.
    pub name: String,
    /// How it attaches (never xdp or tc).
    pub kind: Kind,
    /// Kernel function, or `SYSTEM:EVENT`.
    pub target: String,
    /// The packet or socket argument.
    pub arg: Arg,
    /// Its direction (a socket probe's calls: sends or receives).
    pub dir: Dir,
    /// Its slot (hook `FUNC + slot`).
    pub slot: usize,
}

/// The slots of a capture, and the available probes that got none (with why).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In slot order.
    pub probes: Vec<FuncProbe>,
    /// (probe name, why it is not recorded).
    pub left_out: Vec<(String, String)>,
}

/// Whether `name` is one of netlat's own hooks (or a time stamp of one).
pub fn builtin(name: &str) -> bool {
    RECORDED[..usize::from(hook::FUNC)].contains(&name) || STAMPS.contains(&name)
}

/// Gives the available probes of `rows` that are not netlat's own hooks a slot each, in
/// catalog order.
pub fn plan(catalog: &Catalog, rows: &[ProbeMeta]) -> Plan {
    let mut out = Plan::default();
    let probes = rows.iter().filter(|r| r.available && !builtin(&r.name)).filter_map(|r| catalog.get(&r.name));
    for p in probes {
        match slot_for(p, &out.probes) {
            Ok(a) => {
                let slot = out.probes.len();
                out.probes.push(FuncProbe {
                    name: p.name.clone(),
                    kind: p.kind,
                    target: p.target.clone(),
                    arg: a,
                    dir: p.dir,
                    slot,
                });
            }
            Err(why) => out.left_out.push((p.name.clone(), why)),
        }
    }
    out
}

/// The packet argument of `p` if it can take the next slot after `taken`.
fn slot_for(p: &Probe, taken: &[FuncProbe]) -> Result<Arg, String> {
    let a = match p.arg {
        Some(a @ (Arg::Skb(_) | Arg::Pskb(_) | Arg::SkbToken(_))) => a,
        Some(a @ (Arg::Sock(_) | Arg::Socket(_))) if matches!(p.dir, Dir::Send | Dir::Recv) => a,
        Some(a @ (Arg::Sock(_) | Arg::Socket(_))) => {
            return Err(format!(
                "its argument is a socket ({a}) but its dir is {}: a socket probe records the bytes of \
                 the send or receive calls it runs in, so it needs `dir: send` or `dir: recv`",
                p.dir
            ))
        }
        None => return Err("it names no packet or socket argument (`arg: {skb: N}`, `arg: {sock: N}`)".into()),
    };
    if matches!(p.kind, Kind::Xdp | Kind::Tc) {
        return Err(format!("{} is one of netlat's own hooks under another name", p.target));
    }
    // One function, one time (entry or return): the catalog's fentry and kprobe twins
    // would record the same packets at the same place, so the first listed (fentry: the
    // cheaper) takes it; the kprobe program also tells its functions apart by address.
    let function = |k: Kind| k != Kind::Tracepoint;
    let twin = |t: &&FuncProbe| function(t.kind) && t.target == p.target && when(t.kind) == when(p.kind);
    if let Some(t) = taken.iter().find(twin).filter(|_| function(p.kind)) {
        return Err(format!("{} is recorded by {} ({}) already", p.target, t.name, t.kind));
    }
    if taken.len() == hook::FUNC_SLOTS {
        let names: Vec<&str> = taken.iter().map(|t| t.name.as_str()).collect();
        return Err(format!(
            "all {} slots for probes given as data are taken ({})",
            hook::FUNC_SLOTS,
            names.join(", ")
        ));
    }
    Ok(a)
}

/// When a probe's program runs.
fn when(k: Kind) -> u8 {
    if matches!(k, Kind::Fexit | Kind::Kretprobe) {
        at::RETURN
    } else {
        at::ENTRY
    }
}

impl Plan {
    /// Hook names by hook id: netlat's own, then each slot's probe name (`funcN` for a
    /// slot not in use).
    pub fn hook_names(&self) -> Vec<String> {
        let mut names: Vec<String> = hook::NAMES.iter().map(|n| (*n).to_owned()).collect();
        for p in &self.probes {
            names[usize::from(hook::FUNC) + p.slot] = p.name.clone();
        }
        names
    }

    /// The bit `1 << hook` of every slot in use.
    pub fn mask(&self) -> u32 {
        self.probes.iter().fold(0, |m, p| m | 1 << (usize::from(hook::FUNC) + p.slot))
    }

    /// Whether a slot has a socket argument (the socket layer's call tracepoints, where
    /// its bytes are known, must then be loaded).
    pub fn any_sock(&self) -> bool {
        self.probes.iter().any(|p| matches!(p.arg, Arg::Sock(_) | Arg::Socket(_)))
    }

    /// The programs' view of the slots; kprobes need their function's address (`address`
    /// looks it up, as in `/proc/kallsyms`).
    pub fn config(&self, address: impl Fn(&str) -> Option<u64>) -> Result<FuncConfig, String> {
        let mut c = FuncConfig::EMPTY;
        for p in &self.probes {
            let (kind, i) = match p.arg {
                Arg::Skb(i) => (arg::SKB, i),
                Arg::Pskb(i) => (arg::PSKB, i),
                Arg::SkbToken(i) => (arg::SKB_TOKEN, i),
                Arg::Sock(i) => (arg::SOCK, i),
                Arg::Socket(i) => (arg::SOCKET, i),
            };
            let ip = match p.kind {
                Kind::Kprobe | Kind::Kretprobe => address(&p.target)
                    .ok_or_else(|| format!("probe {}: {} has no address in /proc/kallsyms", p.name, p.target))?,
                _ => 0,
            };
            let send = u8::from(arg::is_sock(kind) && p.dir == Dir::Send);
            c.slots[p.slot] = FuncSlot { ip, kind, arg: i, at: when(p.kind), send, _pad: [0; 4] };
        }
        Ok(c)
    }
}

/// Loads and attaches each slot's program in `ebpf`. A probe the kernel refuses here is
/// a warning naming it and the reason, and the capture carries on without it.
pub fn attach(ebpf: &mut Ebpf, plan: &Plan, btf: &aya::Btf) -> Vec<String> {
    let mut warnings = Vec::new();
    let mut kprobe_loaded = [false; 2];
    for p in &plan.probes {
        if let Err(e) = attach_one(ebpf, p, btf, &mut kprobe_loaded) {
            warnings.push(format!(
                "netlat-capture: warning: probe {} ({} {}) could not be attached: {e:#}; continuing without it",
                p.name, p.kind, p.target
            ));
        }
    }
    warnings
}

fn attach_one(ebpf: &mut Ebpf, p: &FuncProbe, btf: &aya::Btf, kprobe_loaded: &mut [bool; 2]) -> anyhow::Result<()> {
    use anyhow::Context;
    fn get<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut aya::programs::Program> {
        ebpf.program_mut(name).ok_or_else(|| anyhow::anyhow!("program {name} missing from the object"))
    }
    let prog = |kind: &str| format!("netlat_{kind}{}", p.slot);
    let loading = |name: &str| format!("loading {name}");
    let attaching = |name: &str| format!("attaching {name} to {}", p.target);
    match p.kind {
        Kind::Tracepoint => {
            let event = p.target.split_once(':').map_or(p.target.as_str(), |(_, e)| e);
            let name = prog("func_tp");
            let t: &mut RawTracePoint = get(ebpf, &name)?.try_into()?;
            t.load().with_context(|| loading(&name))?;
            t.attach(event).with_context(|| attaching(&name))?;
        }
        Kind::Fentry => {
            let name = prog("fentry");
            let f: &mut FEntry = get(ebpf, &name)?.try_into()?;
            f.load(&p.target, btf).with_context(|| loading(&name))?;
            f.attach().with_context(|| attaching(&name))?;
        }
        Kind::Fexit => {
            let name = prog("fexit");
            let f: &mut FExit = get(ebpf, &name)?.try_into()?;
            f.load(&p.target, btf).with_context(|| loading(&name))?;
            f.attach().with_context(|| attaching(&name))?;
        }
        Kind::Kprobe | Kind::Kretprobe => {
            // A kretprobe needs the entry program too, to keep the call's packet.
            let mut names = vec![("netlat_kprobe", 0)];
            if p.kind == Kind::Kretprobe {
                names.push(("netlat_kretprobe", 1));
            }
            // Both loaded before either attaches: a kernel that refuses the attachment
            // still verifies both.
            for (name, i) in &names {
                let k: &mut KProbe = get(ebpf, name)?.try_into()?;
                if !kprobe_loaded[*i] {
                    k.load().with_context(|| loading(name))?;
                    kprobe_loaded[*i] = true;
                }
            }
            for (name, _) in names {
                let k: &mut KProbe = get(ebpf, name)?.try_into()?;
                k.attach(&p.target, 0).with_context(|| attaching(name))?;
            }
        }
        Kind::Xdp | Kind::Tc => unreachable!("plan() gives netlat's own hooks no slot"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, available: bool) -> ProbeMeta {
        ProbeMeta {
            name: name.into(),
            layer: String::new(),
            dir: String::new(),
            kind: String::new(),
            target: String::new(),
            available,
            detail: String::new(),
        }
    }

    fn catalog(yaml: &str) -> Catalog {
        Catalog::parse(std::path::Path::new("test.yaml"), yaml).expect("valid catalog")
    }

    const CATALOG: &str = "probes:
  - {name: xdp, layer: wire, dir: recv, kind: xdp, target: xdp, presets: [wire, stack, socket, all]}
  - {name: net_dev_queue, layer: qdisc, dir: send, kind: tracepoint, target: \"net:net_dev_queue\", arg: {skb: 0}, presets: [stack, socket, all]}
  - {name: my_queue, layer: qdisc, dir: send, kind: tracepoint, target: \"net:net_dev_queue\", arg: {skb: 0}, presets: [all]}
  - {name: k_rcv, layer: tcp, dir: recv, kind: kprobe, target: tcp_v4_rcv, arg: {skb: 0}, presets: [all]}
  - {name: k_rcv_again, layer: tcp, dir: recv, kind: kprobe, target: tcp_v4_rcv, arg: {skb: 0}, presets: [all]}
  - {name: kr_rcv, layer: tcp, dir: recv, kind: kretprobe, target: tcp_v4_rcv, arg: {skb: 0}, presets: [all]}
  - {name: f_core, layer: ip, dir: recv, kind: fentry, target: __netif_receive_skb_core, arg: {pskb: 0}, presets: [all]}
  - {name: f_send, layer: socket, dir: send, kind: fentry, target: sock_sendmsg, arg: {socket: 0}, presets: [all]}
  - {name: t_nodir, layer: socket, dir: none, kind: tracepoint, target: \"sock:sock_recv_length\", arg: {sock: 0}, presets: [all]}
  - {name: f_gone, layer: ip, dir: recv, kind: fentry, target: ip_rcv, arg: {skb: 0}, presets: [all]}
";

    #[test]
    fn slots_go_to_available_probes_given_as_data_in_catalog_order() {
        let c = catalog(CATALOG);
        let rows: Vec<ProbeMeta> = c.probes.iter().map(|p| row(&p.name, p.name != "f_gone")).collect();
        let plan = plan(&c, &rows);
        let got: Vec<(&str, usize)> = plan.probes.iter().map(|p| (p.name.as_str(), p.slot)).collect();
        assert_eq!(got, [("my_queue", 0), ("k_rcv", 1), ("kr_rcv", 2), ("f_core", 3), ("f_send", 4)]);
        let left: Vec<&str> = plan.left_out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(left, ["k_rcv_again", "t_nodir"]);
        assert_eq!(plan.left_out[0].1, "tcp_v4_rcv is recorded by k_rcv (kprobe) already");
        assert!(plan.left_out[1].1.contains("its dir is none"), "{:?}", plan.left_out);
        assert!(plan.any_sock());
        let names = plan.hook_names();
        assert_eq!(names[usize::from(hook::FUNC)], "my_queue");
        assert_eq!(names[usize::from(hook::FUNC) + 3], "f_core");
        assert_eq!(names[usize::from(hook::FUNC) + 4], "f_send");
        assert_eq!(names[usize::from(hook::FUNC) + 5], "func5");
        assert_eq!(names[usize::from(hook::NET_DEV_QUEUE)], "net_dev_queue");
        assert_eq!(plan.mask(), 0b11111 << hook::FUNC);
    }

    #[test]
    fn config_gives_kprobes_their_address_and_returns_their_time() {
        let c = catalog(CATALOG);
        let rows: Vec<ProbeMeta> = c.probes.iter().map(|p| row(&p.name, true)).collect();
        let plan = plan(&c, &rows);
        let cfg = plan.config(|f| (f == "tcp_v4_rcv").then_some(0xffff_ffff_8100_0000)).unwrap();
        assert_eq!(cfg.slots[0], FuncSlot { ip: 0, kind: arg::SKB, arg: 0, at: at::ENTRY, send: 0, _pad: [0; 4] });
        assert_eq!(cfg.slots[1].ip, 0xffff_ffff_8100_0000);
        assert_eq!((cfg.slots[2].ip, cfg.slots[2].at), (0xffff_ffff_8100_0000, at::RETURN));
        assert_eq!((cfg.slots[3].kind, cfg.slots[3].ip), (arg::PSKB, 0));
        assert_eq!((cfg.slots[4].kind, cfg.slots[4].arg, cfg.slots[4].send), (arg::SOCKET, 0, 1), "f_send");
        assert_eq!((cfg.slots[5].kind, cfg.slots[5].at), (arg::SKB, at::ENTRY), "f_gone");
        assert_eq!(cfg.slots[6].kind, arg::UNUSED);
        assert_eq!(cfg.kprobe_slot(0xffff_ffff_8100_0000, at::ENTRY), Some(1));
        let err = plan.config(|_| None).unwrap_err();
        assert_eq!(err, "probe k_rcv: tcp_v4_rcv has no address in /proc/kallsyms");
    }

    #[test]
    fn the_builtin_catalog_fits_its_functions_in_the_slots() {
        // Where fentry and kprobes both work: each function once, by its fentry entry.
        let c = Catalog::builtin();
        let rows: Vec<ProbeMeta> = c.probes.iter().map(|p| row(&p.name, true)).collect();
        let fentry = plan(&c, &rows);
        assert_eq!(fentry.probes.len(), hook::FUNC_SLOTS);
        assert!(fentry.probes.iter().all(|p| p.kind == Kind::Fentry), "{:?}", fentry.probes);
        for (name, why) in &fentry.left_out {
            assert!(why.contains("(fentry) already"), "{name}: {why}");
        }
        // Where only kprobes work, they take the slots.
        let rows: Vec<ProbeMeta> = c.probes.iter().map(|p| row(&p.name, !p.name.starts_with("fentry_"))).collect();
        let kprobes = plan(&c, &rows);
        assert_eq!(kprobes.probes.len(), hook::FUNC_SLOTS);
        assert!(kprobes.probes.iter().all(|p| p.kind == Kind::Kprobe));
    }

    #[test]
    fn slots_run_out_with_a_reason_naming_them() {
        let mut yaml = String::from("probes:\n");
        for i in 0..hook::FUNC_SLOTS + 2 {
            yaml.push_str(&format!(
                "  - {{name: t{i}, layer: ip, dir: recv, kind: tracepoint, target: \"net:netif_rx\", arg: {{skb: 0}}, presets: [all]}}\n"
            ));
        }
        let c = catalog(&yaml);
        let rows: Vec<ProbeMeta> = c.probes.iter().map(|p| row(&p.name, true)).collect();
        let plan = plan(&c, &rows);
        assert_eq!(plan.probes.len(), hook::FUNC_SLOTS);
        assert_eq!(plan.left_out.len(), 2);
        assert!(plan.left_out[0].1.starts_with("all 10 slots for probes given as data are taken (t0, t1,"));
    }
}
