//! Loading the kernel programs and attaching them to interfaces.
//!
//! One copy of the eBPF object is loaded per network namespace (a "scope"):
//! interface indexes are only unique inside a namespace, so each copy owns
//! its ring buffer and counters and its events are tagged with the scope in
//! user space. Configuration is set once, at load time, in the `CFG` global.

use std::{collections::HashMap, os::fd::AsFd};

use aya::{
    maps::{Map, MapData, PerCpuArray},
    programs::{
        tc::{NlOptions, SchedClassifier, TcAttachOptions, TcError},
        BtfTracePoint, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use capture_common::abi::{hook, stat, CaptureConfig};

use crate::{
    meta::{HookCounts, IfaceMeta},
    netns::{IfaceSpec, Netns, NetnsError},
    ringread::RingReader,
    schema::{PointContext, PointLookup},
};

/// The eBPF object built by build.rs.
pub(crate) static EBPF_OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netlat"));

/// Loading or attaching failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The binary was built with AYA_BUILD_SKIP and has no kernel programs.
    #[error("this netlat-capture was built without its eBPF object (AYA_BUILD_SKIP); rebuild with the eBPF toolchain (scripts/bootstrap)")]
    NoObject,
    /// The kernel refused the object or a program.
    #[error("loading eBPF programs into namespace {netns:?}: {source:#}")]
    Load {
        /// Namespace.
        netns: String,
        /// aya's error (includes the verifier log).
        source: anyhow::Error,
    },
    /// Attaching a hook to an interface failed.
    #[error("attaching {hook} to {iface}: {source:#}{hint}")]
    Attach {
        /// Hook name.
        hook: &'static str,
        /// Interface as given.
        iface: String,
        /// Why.
        source: anyhow::Error,
        /// What the user can do.
        hint: &'static str,
    },
    /// Namespace or interface problem.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// Reading counters failed.
    #[error("reading counters: {0}")]
    Stats(#[from] aya::maps::MapError),
}

/// Which hooks to attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hooks {
    /// XDP ingress.
    pub xdp: bool,
    /// TC ingress.
    pub tc_ingress: bool,
    /// TC egress.
    pub tc_egress: bool,
    /// The tracepoint hooks to record (`--layers stack` and above), bit `1 << hook id`,
    /// for every interface and socket of the namespace.
    pub tracepoints: u32,
}

/// The tracepoint programs of the object: which hooks each one serves. A program is
/// loaded when any of its hooks is recorded (the data-ready and read programs keep the
/// state the scheduler stamps need; `net_dev_start_xmit` remembers what `net_dev_xmit`
/// reports).
const TRACEPOINTS: [(&str, &str, &[u8]); 17] = {
    use hook::*;
    [
        ("netlat_net_dev_queue", "net_dev_queue", &[NET_DEV_QUEUE]),
        ("netlat_net_dev_start_xmit", "net_dev_start_xmit", &[NET_DEV_START_XMIT, NET_DEV_XMIT]),
        ("netlat_net_dev_xmit", "net_dev_xmit", &[NET_DEV_XMIT]),
        ("netlat_netif_receive_skb", "netif_receive_skb", &[NETIF_RECEIVE_SKB]),
        ("netlat_qdisc_enqueue", "qdisc_enqueue", &[QDISC_ENQUEUE]),
        ("netlat_qdisc_dequeue", "qdisc_dequeue", &[QDISC_DEQUEUE]),
        ("netlat_napi_gro_receive", "napi_gro_receive_entry", &[NAPI_GRO_RECEIVE]),
        ("netlat_tcp_probe", "tcp_probe", &[TCP_PROBE]),
        ("netlat_skb_copy_datagram", "skb_copy_datagram_iovec", &[SKB_COPY_DATAGRAM]),
        ("netlat_kfree_skb", "kfree_skb", &[KFREE_SKB]),
        ("netlat_tcp_sendmsg", "tcp_sendmsg_locked", &[SOCK_SEND]),
        ("netlat_sock_send", "sock_send_length", &[SOCK_SEND, UDP_SEND]),
        ("netlat_sk_data_ready", "sk_data_ready", &[SK_DATA_READY, SOCK_RECV, SCHED_WAKEUP, SCHED_SWITCH]),
        ("netlat_sock_recv", "sock_recv_length", &[SOCK_RECV, SCHED_WAKEUP, SCHED_SWITCH, SKB_COPY_DATAGRAM, UDP_RECV]),
        ("netlat_tcp_retransmit", "tcp_retransmit_skb", &[TCP_RETRANSMIT]),
        ("netlat_sched_switch", "sched_switch", &[SCHED_SWITCH]),
        ("netlat_sched_wakeup", "sched_wakeup", &[SCHED_WAKEUP]),
    ]
};

impl Hooks {
    /// Names of the selected hooks.
    pub fn names(&self) -> Vec<String> {
        [(self.xdp, hook::XDP), (self.tc_ingress, hook::TC_INGRESS), (self.tc_egress, hook::TC_EGRESS)]
            .into_iter()
            .chain((3..hook::COUNT as u8).map(|h| (self.tracepoints & (1 << h) != 0, h)))
            .filter(|(on, _)| *on)
            .map(|(_, h)| hook::NAMES[usize::from(h)].to_owned())
            .collect()
    }
}

/// The programs loaded into one namespace and the interfaces they watch.
pub struct Scope {
    /// The namespace.
    pub netns: Netns,
    ebpf: Option<Ebpf>,
    /// Events from the kernel.
    pub ring: RingReader,
    /// Clock-sync probe stamps from the kernel.
    pub sync_ring: RingReader,
    stats: PerCpuArray<MapData, u64>,
    points: HashMap<u32, PointContext>,
    /// Names of the kernel's drop reasons, by value.
    pub drop_reasons: HashMap<u32, String>,
    /// Probes given as data that the kernel refused at load or attach, one sentence each.
    pub warnings: Vec<String>,
    /// Attached interfaces, for the run metadata.
    pub ifaces: Vec<IfaceMeta>,
    /// Interfaces (index, name) whose `clsact` qdisc this capture added, to
    /// be removed at exit; a qdisc that was there before is left alone.
    qdiscs_added: Vec<(u32, String)>,
}

/// How TC programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TcAttach {
    /// TCX links on Linux >= 6.6 (they go away with the process), netlink
    /// filters on a `clsact` qdisc before.
    #[default]
    Auto,
    /// Netlink filters on a `clsact` qdisc whatever the kernel (a test aid:
    /// the path of kernels before 6.6).
    Netlink,
}

fn load_err(netns: &Netns) -> impl FnOnce(anyhow::Error) -> LoadError + '_ {
    move |source| LoadError::Load { netns: netns.name.clone(), source }
}

impl Scope {
    /// Loads the programs with `cfg` into `netns`'s scope; with `tracepoints` (bit per hook
    /// id), also those tracepoint programs, attached at once (tracepoints have no
    /// interface), recording this namespace's packets and sockets only.
    ///
    /// The probes of `funcs` (given as data) are loaded and attached too; one the kernel
    /// refuses is a warning (in [`Scope::warnings`]), not an error. So is UDP's ingress
    /// program (with `udp_recv`, unless `udp_ingress` is off) where it cannot be attached.
    pub fn load(
        netns: Netns,
        cfg: &CaptureConfig,
        ringbuf_bytes: u32,
        tracepoints: u32,
        funcs: &crate::funcs::Plan,
        udp_ingress: bool,
    ) -> Result<Self, LoadError> {
        if EBPF_OBJ.is_empty() {
            return Err(LoadError::NoObject);
        }
        raise_memlock();
        let func_cfg = if funcs.probes.is_empty() {
            capture_common::func::FuncConfig::EMPTY
        } else {
            let syms = Kallsyms::read();
            funcs.config(|f| syms.address(f)).map_err(|e| load_err(&netns)(anyhow::anyhow!(e)))?
        };
        let stack_hooks = tracepoints | funcs.mask();
        let (stack, drop_reasons) = if stack_hooks != 0 {
            let b = crate::btf::Btf::from_sys_fs().map_err(|e| load_err(&netns)(e.into()))?;
            let st = crate::btf::offsets::stack_config(&b, netns.inode as u32, stack_hooks)
                .map_err(|e| load_err(&netns)(e.into()))?;
            (st, crate::btf::offsets::drop_reasons(&b))
        } else {
            Default::default()
        };
        let mut ebpf = EbpfLoader::new()
            .override_global("CFG", cfg, true)
            .override_global("STACK", &stack, true)
            .override_global("FUNCS", &func_cfg, true)
            .map_max_entries("EVENTS", ringbuf_bytes)
            .load(EBPF_OBJ)
            .map_err(|e| load_err(&netns)(e.into()))?;
        for name in ["netlat_tc_in", "netlat_tc_out"] {
            let p: &mut SchedClassifier = program(&mut ebpf, name).map_err(load_err(&netns))?;
            p.load().map_err(|e| load_err(&netns)(anyhow::Error::new(e).context(name)))?;
        }
        let p: &mut Xdp = program(&mut ebpf, "netlat_xdp").map_err(load_err(&netns))?;
        p.load().map_err(|e| {
            load_err(&netns)(
                anyhow::Error::new(e).context("netlat_xdp (XDP needs Linux >= 5.18 for bpf_xdp_load_bytes)"),
            )
        })?;
        let mut points = HashMap::new();
        let mut warnings = Vec::new();
        if stack_hooks != 0 {
            let kernel_btf = aya::Btf::from_sys_fs().map_err(|e| load_err(&netns)(e.into()))?;
            warnings = crate::funcs::attach(&mut ebpf, funcs, &kernel_btf);
            for (name, tp, hooks) in TRACEPOINTS {
                // Socket probes given as data learn their calls' bytes where the calls return.
                let calls = funcs.any_sock() && matches!(name, "netlat_sock_send" | "netlat_sock_recv");
                if !calls && !hooks.iter().any(|h| tracepoints & (1 << h) != 0) {
                    continue;
                }
                let p: &mut BtfTracePoint = program(&mut ebpf, name).map_err(load_err(&netns))?;
                p.load(tp, &kernel_btf)
                    .map_err(|e| load_err(&netns)(anyhow::Error::new(e).context(format!("tp_btf {tp}"))))?;
                p.attach()
                    .map_err(|e| load_err(&netns)(anyhow::Error::new(e).context(format!("attaching tp_btf {tp}"))))?;
            }
            if udp_ingress && tracepoints & 1 << hook::UDP_RECV != 0 {
                if let Err(w) = crate::udp_ingress::attach(&mut ebpf, &kernel_btf) {
                    warnings.push(w);
                }
            }
            if tracepoints & 1 << hook::UDP_SEND != 0 {
                attach_calls(&mut ebpf, ["netlat_send_enter", "netlat_send_exit"], SEND_CALLS)
                    .map_err(load_err(&netns))?;
            }
            if tracepoints & (1 << hook::SCHED_WAKEUP | 1 << hook::SCHED_SWITCH) != 0 {
                attach_calls(&mut ebpf, ["netlat_read_enter", "netlat_read_exit"], READ_CALLS)
                    .map_err(load_err(&netns))?;
            }
            // Tracepoints see every interface of the namespace, and sockets (no interface:
            // `-`); interfaces named as `-i` names them, with the namespace prefix.
            let prefix = if netns.is_own() { String::new() } else { format!("{}/", netns.name) };
            for (ifindex, name) in netns.interfaces().map_err(|e| load_err(&netns)(e.into()))? {
                points.insert(ifindex, PointContext { netns: netns.inode, ifname: format!("{prefix}{name}") });
            }
            points.insert(0, PointContext { netns: netns.inode, ifname: format!("{prefix}-") });
        }
        let mut reader = |name: &str, what: &str| {
            let Some(Map::RingBuf(map)) = ebpf.take_map(name) else {
                panic!("{name}: a ring buffer map in the object")
            };
            RingReader::new(map)
                .map_err(|e| load_err(&netns)(anyhow::Error::new(e).context(format!("mapping the {what} ring buffer"))))
        };
        let ring = reader("EVENTS", "events")?;
        let sync_ring = reader("SYNC_EVENTS", "sync")?;
        let stats = PerCpuArray::try_from(ebpf.take_map("STATS").expect("STATS map in object"))
            .map_err(|e| load_err(&netns)(e.into()))?;
        Ok(Self {
            netns,
            ebpf: Some(ebpf),
            ring,
            sync_ring,
            stats,
            points,
            drop_reasons,
            warnings,
            ifaces: Vec::new(),
            qdiscs_added: Vec::new(),
        })
    }

    /// Attaches the selected hooks to `spec`'s interface (in this scope's
    /// namespace).
    pub fn attach(&mut self, spec: &IfaceSpec, hooks: Hooks, tc: TcAttach) -> Result<(), LoadError> {
        let ifindex = self.netns.ifindex(&spec.iface)?;
        let iface = spec.iface.clone();
        let ebpf = self.ebpf.as_mut().expect("loaded");
        let mut qdisc_added = false;
        let added = &mut qdisc_added;
        let attach_err = |hook: &'static str, hint: &'static str| {
            let iface = spec.display();
            move |source: anyhow::Error| LoadError::Attach { hook, iface, source, hint }
        };
        let attached = self.netns.run(|| -> Result<(), LoadError> {
            if hooks.xdp {
                let p: &mut Xdp = program(ebpf, "netlat_xdp").map_err(attach_err("xdp", ""))?;
                p.attach_to_if_index(ifindex, XdpMode::Default).map_err(|e| {
                    attach_err(
                        "xdp",
                        " (is another XDP program attached? `ip link show` tells; use --hooks to skip XDP)",
                    )(e.into())
                })?;
            }
            let netlink = tc == TcAttach::Netlink || !kernel_at_least(6, 6);
            if netlink && (hooks.tc_ingress || hooks.tc_egress) {
                // Netlink filters need a clsact qdisc. EEXIST: one was there
                // already (someone else's), which must outlive this capture.
                match aya::programs::tc::qdisc_add_clsact(&iface) {
                    Ok(()) => *added = true,
                    Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    Err(e) => return Err(attach_err("tc", "")(anyhow::Error::new(e).context("adding a clsact qdisc"))),
                }
            }
            for (on, name, hook, ty) in [
                (hooks.tc_ingress, "netlat_tc_in", "tc_ingress", TcAttachType::Ingress),
                (hooks.tc_egress, "netlat_tc_out", "tc_egress", TcAttachType::Egress),
            ] {
                if !on {
                    continue;
                }
                let p: &mut SchedClassifier = program(ebpf, name).map_err(attach_err(hook, ""))?;
                if netlink {
                    p.attach_with_options(&iface, ty, TcAttachOptions::Netlink(NlOptions::default()))
                } else {
                    p.attach(&iface, ty)
                }
                .map_err(|e| attach_err(hook, "")(e.into()))?;
            }
            Ok(())
        });
        // Recorded whatever happened next: a failed attach still removes it.
        if qdisc_added {
            self.qdiscs_added.push((ifindex, spec.display()));
        }
        attached??;
        let ctx = PointContext { netns: self.netns.inode, ifname: spec.display() };
        self.points.insert(ifindex, ctx);
        self.ifaces.push(IfaceMeta {
            ifname: spec.display(),
            netns: self.netns.name.clone(),
            netns_inode: self.netns.inode,
            ifindex,
            hooks: hooks.names(),
        });
        Ok(())
    }

    /// The file descriptor of the loaded program `name` (for [`crate::testrun`]).
    pub fn program_fd(&self, name: &str) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.ebpf.as_ref()?.program(name)?.fd().ok().map(|f| f.as_fd())
    }

    /// Kernel counters summed over CPUs, per hook.
    pub fn counts(&self) -> Result<Vec<HookCounts>, LoadError> {
        let mut out = vec![HookCounts::default(); hook::COUNT];
        for (h, c) in out.iter_mut().enumerate() {
            let get = |s: u32| -> Result<u64, LoadError> {
                let idx = h as u32 * stat::COUNT + s;
                Ok(self.stats.get(&idx, 0)?.iter().sum())
            };
            c.seen = get(stat::SEEN)?;
            c.selected = get(stat::SELECTED)?;
            c.submitted = get(stat::SUBMITTED)?;
            c.ringbuf_full = get(stat::RINGBUF_FULL)?;
            c.not_ip = get(stat::NOT_IP)?;
            c.malformed = get(stat::MALFORMED)?;
            c.sync = get(stat::SYNC)?;
            c.sync_lost = get(stat::SYNC_LOST)?;
            c.unidentified = get(stat::UNIDENTIFIED)?;
        }
        Ok(out)
    }

    /// Detaches everything and removes the `clsact` qdiscs this capture
    /// added, inside the namespace (netlink calls must run there).
    pub fn detach(&mut self) {
        let ebpf = self.ebpf.take();
        let qdiscs = std::mem::take(&mut self.qdiscs_added);
        if ebpf.is_none() && qdiscs.is_empty() {
            return;
        }
        let _ = self.netns.run(move || {
            drop(ebpf);
            for (ifindex, name) in qdiscs {
                match crate::qdisc::delete_clsact(ifindex) {
                    // Gone with its interface (or removed by someone else).
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENOENT | libc::EINVAL)) => {}
                    Err(e) => eprintln!("netlat-capture: warning: removing the clsact qdisc added to {name}: {e}"),
                    Ok(()) => {}
                }
            }
        });
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Point contexts of all scopes, by scope index, the kernel's names for drop reasons and
/// code addresses, and the hook names.
pub struct Points(
    pub Vec<HashMap<u32, PointContext>>,
    pub HashMap<u32, String>,
    std::sync::OnceLock<Kallsyms>,
    Vec<String>,
);

impl Points {
    /// Snapshot of the scopes' interface tables, with the hooks' names (`hook_names`, by
    /// hook id: [`crate::funcs::Plan::hook_names`]).
    pub fn of(scopes: &[Scope], hook_names: Vec<String>) -> Self {
        let reasons = scopes.iter().find(|s| !s.drop_reasons.is_empty()).map(|s| s.drop_reasons.clone());
        Self(
            scopes.iter().map(|s| s.points.clone()).collect(),
            reasons.unwrap_or_default(),
            Default::default(),
            hook_names,
        )
    }

    /// From interface tables alone (benchmarks and tests: no drop reasons).
    pub fn from_tables(tables: Vec<HashMap<u32, PointContext>>) -> Self {
        Self(tables, HashMap::new(), Default::default(), crate::funcs::Plan::default().hook_names())
    }
}

impl PointLookup for Points {
    fn point(&self, scope: usize, ifindex: u32) -> Option<&PointContext> {
        self.0.get(scope)?.get(&ifindex)
    }
    fn drop_reason(&self, reason: u32) -> String {
        self.1.get(&reason).cloned().unwrap_or_else(|| format!("reason {reason}"))
    }
    fn symbol(&self, addr: u64) -> String {
        self.2.get_or_init(Kallsyms::read).symbol(addr)
    }
    fn hook_name(&self, h: usize) -> &str {
        self.3.get(h).map_or("unknown", String::as_str)
    }
}

/// The kernel's text symbols (`/proc/kallsyms`), read once at the first drop.
#[derive(Default)]
pub struct Kallsyms(Vec<(u64, String)>);

impl Kallsyms {
    /// From `/proc/kallsyms`.
    pub fn read() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/kallsyms").unwrap_or_default())
    }

    /// From the text of `/proc/kallsyms` (addresses all zero when not readable: then
    /// addresses stay numbers).
    pub fn parse(text: &str) -> Self {
        let mut v: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
                let addr = u64::from_str_radix(addr, 16).ok().filter(|a| *a != 0)?;
                // Text symbols only: a code address lies in a function.
                matches!(kind, "t" | "T").then(|| (addr, name.to_owned()))
            })
            .collect();
        v.sort_unstable();
        Self(v)
    }

    /// The address of the function `name` (the first, if the name is not unique).
    pub fn address(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(_, n)| n == name).map(|(a, _)| *a)
    }

    /// `addr` as `function+0xoffset`, or the bare address when no function holds it.
    pub fn symbol(&self, addr: u64) -> String {
        match self.0.partition_point(|(a, _)| *a <= addr).checked_sub(1) {
            Some(i) => format!("{}+{:#x}", self.0[i].1, addr - self.0[i].0),
            None => format!("{addr:#x}"),
        }
    }
}

/// The system calls that send a UDP datagram from a buffer (`udp_send`'s time stamps).
const SEND_CALLS: [&str; 5] = ["sendto", "sendmsg", "sendmmsg", "write", "writev"];

/// The system calls that read from a socket (whose threads' scheduling is followed).
const READ_CALLS: [&str; 5] = ["recvfrom", "recvmsg", "recvmmsg", "read", "readv"];

/// Attaches the programs `[enter, exit]` to the entry and exit of each of `calls`.
fn attach_calls(ebpf: &mut Ebpf, programs: [&'static str; 2], calls: [&str; 5]) -> Result<(), anyhow::Error> {
    for (name, edge) in programs.into_iter().zip(["enter", "exit"]) {
        let p: &mut aya::programs::TracePoint = program(ebpf, name)?;
        p.load().map_err(|e| anyhow::Error::new(e).context(name))?;
        for call in calls {
            let event = format!("sys_{edge}_{call}");
            p.attach("syscalls", &event)
                .map_err(|e| anyhow::Error::new(e).context(format!("attaching {name} to syscalls:{event}")))?;
        }
    }
    Ok(())
}

pub(crate) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, anyhow::Error>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or_else(|| anyhow::anyhow!("program {name} missing from the object"))?;
    Ok(p.try_into()?)
}

/// Whether the running kernel is at least `major.minor`.
pub(crate) fn kernel_at_least(major: u8, minor: u8) -> bool {
    aya::util::KernelVersion::current().is_ok_and(|v| v >= aya::util::KernelVersion::new(major, minor, 0))
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: valid pointer; failure only matters on old kernels, where the
    // load error that follows says so.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_names_the_function_holding_an_address() {
        let k = Kallsyms::parse(
            "ffffffff81000000 T _stext\nffffffff81a00000 t nf_hook_slow\nffffffff81a00200 T ip_rcv\n\
             ffffffff82000000 D some_data\n",
        );
        assert_eq!(k.symbol(0xffffffff81a00094), "nf_hook_slow+0x94");
        assert_eq!(k.symbol(0xffffffff81a00200), "ip_rcv+0x0");
        assert_eq!(k.symbol(0x1000), "0x1000");
        // Unreadable (addresses hidden as zeros): numbers stay numbers.
        let hidden = Kallsyms::parse("0000000000000000 T nf_hook_slow\n");
        assert_eq!(hidden.symbol(0xffffffff81a00094), "0xffffffff81a00094");
    }

    #[test]
    fn hooks_name_the_recorded_tracepoints() {
        let h = Hooks { xdp: true, tc_ingress: false, tc_egress: true, tracepoints: 1 << hook::SOCK_RECV };
        assert_eq!(h.names(), ["xdp", "tc_egress", "sock_recv"]);
    }
}
