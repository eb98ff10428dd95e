//! netlat's packet programs: XDP ingress and TC clsact ingress/egress.
//!
//! Each entry point is a thin wrapper around `try_packet`, which parses the
//! frame with the shared `capture_common::parse` code, applies the filter
//! and sampling chosen at load time (global `CFG`) and writes one
//! `PacketEvent` into the `EVENTS` ring buffer. Every packet is counted in
//! the per-CPU `STATS` array; a full ring buffer is a counted drop.
#![no_std]
#![no_main]

mod func;
mod sock;
mod stack;
mod udp;
mod udp_recv;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_skb_load_bytes},
    macros::{classifier, map, xdp},
    maps::{PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};
use capture_common::{
    abi::{hook, stat, CaptureConfig, PacketEvent, PacketHead, StackEvent, SyncStamp, MAX_SNAPLEN},
    filter, hash,
    offsets::StackConfig,
    parse::{self, HeadBuf, PacketBuf, PacketInfo, ParseError, HEAD_BUF, HEAD_LEN},
    probe,
};

/// Load-time configuration; `EbpfLoader::set_global("CFG", ..)` replaces it.
#[unsafe(no_mangle)]
static CFG: CaptureConfig = CaptureConfig {
    sample_seed: 0,
    sample_threshold: u64::MAX,
    filter: capture_common::abi::Filter {
        terms: [[capture_common::abi::FilterAtom {
            addr: [0; 16],
            mask: [0; 16],
            port_lo: 0,
            port_hi: 0,
            kind: 0,
            dir: 0,
            value: 0,
            negate: 0,
        }; capture_common::abi::MAX_ATOMS]; capture_common::abi::MAX_TERMS],
        term_len: [0; capture_common::abi::MAX_TERMS],
        n_terms: 0,
        _pad: [0; 7],
    },
    ports: [0; capture_common::abi::MAX_PORTS],
    n_ports: 0,
    vxlan_port: 4789,
    sync_port: 0,
    snaplen: 0,
    tcp_sample_mask: 0,
    _pad: 0,
};

/// Kernel structure offsets and the namespace of this copy, for the stack tracepoints;
/// `EbpfLoader::override_global("STACK", ..)` replaces it.
#[unsafe(no_mangle)]
pub(crate) static STACK: StackConfig = StackConfig {
    netns: 0,
    hooks: 0,
    drop_consumed: 0,
    skb_head: 0,
    skb_data: 0,
    skb_len: 0,
    skb_mac_header: 0,
    skb_network_header: 0,
    skb_dev: 0,
    skb_sk: 0,
    skb_cb: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    net_inum: 0,
    sk_family: 0,
    sk_protocol: 0,
    sk_num: 0,
    sk_dport: 0,
    sk_rcv_saddr: 0,
    sk_daddr: 0,
    sk_v6_rcv_saddr: 0,
    sk_v6_daddr: 0,
    sk_net: 0,
    tcp_write_seq: 0,
    tcp_copied_seq: 0,
    tcp_rcv_nxt: 0,
    task_pid: 0,
    sk_cgroup: 0,
    cgroup_kn: 0,
    kn_id: 0,
    sk_receive_queue: 0,
    udp_reader_queue: 0,
    socket_sk: 0,
};

/// Events for user space; its size is set at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Timestamps of clock-sync probes: a ring of their own, so a flood of
/// user traffic cannot starve clock sync (and vice versa).
#[map]
static SYNC_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 16, 0);

/// Per-CPU counters, `hook * stat::COUNT + stat`.
#[map]
pub(crate) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::MAP_LEN, 0);

/// Parse scratch space: a PacketInfo does not fit the BPF stack beside
/// the parser's header buffers.
#[map]
pub(crate) static SCRATCH: PerCpuArray<parse::PacketInfo> = PerCpuArray::with_max_entries(1, 0);

/// Each packet's first bytes, copied in one read before parsing (see `HeadBuf`).
#[map]
static HEADS: PerCpuArray<[u8; HEAD_BUF]> = PerCpuArray::with_max_entries(1, 0);

/// The configuration, read through a volatile pointer so LLVM cannot fold
/// the all-zero initial value into the code: the loader rewrites it.
#[inline(always)]
pub(crate) fn cfg() -> &'static CaptureConfig {
    let p: *const CaptureConfig = &CFG;
    // SAFETY: reads a valid pointer to a static back from the stack.
    unsafe { &*core::ptr::read_volatile(&p) }
}

/// Submit flags for a packet event: no wakeup of user space unless the ring is an eighth
/// full. A wakeup per event (the default) costs more than the rest of the hook together
/// (measured by `netlat-lab bench-capture`: about 1.2 µs per event); user space polls with
/// a timeout anyway, so with this it is woken only when there is a batch worth reading.
#[inline(always)]
pub(crate) fn wakeup_flags() -> u64 {
    use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE};
    if EVENTS.query(BPF_RB_AVAIL_DATA.into()) > EVENTS.query(BPF_RB_RING_SIZE.into()) / 8 {
        BPF_RB_FORCE_WAKEUP.into()
    } else {
        BPF_RB_NO_WAKEUP.into()
    }
}

#[inline(always)]
pub(crate) fn count(hook: u8, stat: u32) {
    if let Some(c) = STATS.get_ptr_mut(u32::from(hook) * stat::COUNT + stat) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *c += 1 };
    }
}

struct Tc<'a>(&'a TcContext);

impl Tc<'_> {
    /// Copies the packet's first `n` bytes into `dst` (which holds at least `n`).
    #[inline(always)]
    fn prefix(&self, dst: *mut u8, n: u32) -> bool {
        // SAFETY: the caller's buffer holds n bytes; the helper checks the packet bounds.
        unsafe { bpf_skb_load_bytes(self.0.skb.skb.cast(), 0, dst.cast(), n) == 0 }
    }
}

impl PacketBuf for Tc<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        self.0.load::<[u8; N]>(off as usize).ok()
    }
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.0.len()
    }
    #[inline(always)]
    fn copy_head(&self, dst: &mut [u8; MAX_SNAPLEN], len: u32) -> bool {
        self.prefix(dst.as_mut_ptr(), verifier_len(len))
    }
    #[inline(always)]
    fn read_head(&self, dst: &mut [u8; HEAD_BUF]) -> u32 {
        let n = head_len(self.frame_len());
        if self.prefix(dst.as_mut_ptr(), n) {
            n
        } else {
            0
        }
    }
}

/// `len` (1..=MAX) in a form the verifier can bound: a power-of-two mask.
#[inline(always)]
fn masked_len<const MAX: usize>(len: u32) -> u32 {
    const { assert!(MAX.is_power_of_two()) };
    (len.wrapping_sub(1) & (MAX as u32 - 1)) + 1
}

/// How many bytes [`PacketBuf::read_head`] copies of a `frame`-byte packet: all of it up
/// to [`HEAD_LEN`], in a form the verifier can bound (1..=HEAD_LEN).
#[inline(always)]
fn head_len(frame: u32) -> u32 {
    masked_len::<HEAD_LEN>(if frame < HEAD_LEN as u32 { frame } else { HEAD_LEN as u32 })
}

/// `len` (1..=MAX_SNAPLEN) in a form the verifier can bound.
#[inline(always)]
pub(crate) fn verifier_len(len: u32) -> u32 {
    masked_len::<MAX_SNAPLEN>(len)
}

struct Xdp<'a>(&'a XdpContext);

impl Xdp<'_> {
    /// `bpf_xdp_load_bytes` (helper 189, Linux 5.18): copies `n` bytes at `off` into `dst`
    /// (which holds at least `n`), bounds-checked, also across XDP multi-buffer fragments.
    #[inline(always)]
    fn load_bytes(&self, off: u32, dst: *mut u8, n: u32) -> bool {
        let f: unsafe extern "C" fn(*mut core::ffi::c_void, u32, *mut core::ffi::c_void, u32) -> i64 =
            unsafe { core::mem::transmute(189usize) };
        // SAFETY: the caller's buffer holds n bytes; the helper checks the packet bounds.
        unsafe { f(self.0.ctx.cast(), off, dst.cast(), n) == 0 }
    }
}

impl PacketBuf for Xdp<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        if self.load_bytes(off, out.as_mut_ptr(), N as u32) {
            Some(out)
        } else {
            None
        }
    }
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        (self.0.data_end() - self.0.data()) as u32
    }
    #[inline(always)]
    fn copy_head(&self, dst: &mut [u8; MAX_SNAPLEN], len: u32) -> bool {
        self.load_bytes(0, dst.as_mut_ptr(), verifier_len(len))
    }
    #[inline(always)]
    fn read_head(&self, dst: &mut [u8; HEAD_BUF]) -> u32 {
        let n = head_len(self.frame_len());
        if self.load_bytes(0, dst.as_mut_ptr(), n) {
            n
        } else {
            0
        }
    }
}

/// Parses, filters and samples the packet in `buf` at `hook`: the parsed headers and the
/// packet's identity if it is selected (counted), else `None` (a sync probe is recorded
/// on the way).
#[inline(always)]
pub(crate) fn select<B: PacketBuf>(buf: &B, hook: u8, ifindex: u32) -> Option<(&'static PacketInfo, u64)> {
    identify(buf, hook, ifindex, true)
}

/// [`select`], with `counted` false: no counters and no clock-sync stamps (for a packet
/// whose namespace is only known later; the caller counts it then).
#[inline(always)]
pub(crate) fn identify<B: PacketBuf>(
    buf: &B,
    hook: u8,
    ifindex: u32,
    counted: bool,
) -> Option<(&'static PacketInfo, u64)> {
    let (info, id) = identify_unsampled(buf, hook, ifindex, counted)?;
    sample(info, id, hook, counted).then_some((info, id))
}

/// Whether sampling keeps the packet with headers `info` and identity `id` at `hook`
/// (counted selected if so, with `counted`).
#[inline(always)]
pub(crate) fn sample(info: &PacketInfo, id: u64, hook: u8, counted: bool) -> bool {
    let cfg = cfg();
    let kept = hash::packet_sampled(info, id, cfg.sample_seed, cfg.sample_threshold, cfg.tcp_sample_mask);
    if kept && counted {
        count(hook, stat::SELECTED);
    }
    kept
}

/// [`identify`] up to sampling (for a hook that knows the packet's TCP range only after
/// it: the caller samples, and counts it selected).
#[inline(always)]
pub(crate) fn identify_unsampled<B: PacketBuf>(
    buf: &B,
    hook: u8,
    ifindex: u32,
    counted: bool,
) -> Option<(&'static PacketInfo, u64)> {
    let count = |h: u8, s: u32| {
        if counted {
            count(h, s)
        }
    };
    count(hook, stat::SEEN);
    let cfg = cfg();
    let info = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: per-CPU slot; programs do not nest on one CPU for this map.
    let info = unsafe { &mut *info };
    let head = HEADS.get_ptr_mut(0)?;
    // SAFETY: per-CPU slot, as SCRATCH.
    let head = unsafe { &mut *head };
    let frame = buf.frame_len();
    let copied = buf.read_head(head);
    let hb = HeadBuf::new(head, copied, frame);
    match parse::parse_head_first(&hb, buf, cfg.vxlan_port, info) {
        Ok(()) => {}
        Err(ParseError::NotIp) => {
            count(hook, stat::NOT_IP);
            return None;
        }
        Err(_) => {
            count(hook, stat::MALFORMED);
            return None;
        }
    }
    // Probes inside VXLAN are stamped too: the host that carries them between two
    // containers is then seen forwarding them (and they never become user events).
    if cfg.sync_port != 0
        && info.proto == parse::IPPROTO_UDP
        && (info.dport == cfg.sync_port || info.sport == cfg.sync_port)
    {
        let b = hb.load::<{ probe::HEADER_LEN }>(info.payload_off).or_else(|| buf.load(info.payload_off));
        if let Some(h) = b.and_then(|b| probe::Header::decode(&b)) {
            if counted {
                sync_stamp(info, &h, hook, ifindex);
            }
            return None;
        }
    }
    if !filter::matches(&cfg.filter, info) || !filter::port_selected(cfg, info) {
        return None;
    }
    let payload = hash::id_payload_head_first(&hb, buf, info);
    let id = hash::packet_id(info, &payload);
    Some((info, id))
}

/// Where a stack hook's packet is: its `sk_buff` and, if the hook has it, its socket (for
/// the socket's cgroup).
pub(crate) type SkbRef = (*const u8, *const u8);

/// Records the packet in `buf` at `hook` if it is selected; `skb`: at the stack hooks,
/// where its socket's cgroup is read (once the packet is selected: read before the
/// parser, its branches multiplied the parser's verifier states past the budget), `None`
/// at XDP and TC (a constant at each call site, so each program has one record type).
#[inline(always)]
pub(crate) fn try_packet<B: PacketBuf>(buf: &B, hook: u8, ifindex: u32, skb: Option<SkbRef>) {
    let Some((info, id)) = select(buf, hook, ifindex) else { return };
    emit(buf, info, id, hook, ifindex, skb);
}

/// Writes the event of a selected packet (with its first bytes under `--snaplen`, else
/// with its socket's cgroup at the stack hooks: see [`try_packet`]).
#[inline(always)]
pub(crate) fn emit<B: PacketBuf>(buf: &B, info: &PacketInfo, id: u64, hook: u8, ifindex: u32, skb: Option<SkbRef>) {
    let snaplen = cfg().snaplen;
    if snaplen != 0 {
        // `skb` is a constant at each call site: no branch at run time.
        let cgroup = match skb {
            Some((skb, sk)) => stack::cgroup(stack::stack(), skb, sk),
            None => 0,
        };
        return write_head(buf, info, id, hook, ifindex, u32::from(snaplen), cgroup);
    }
    if let Some((skb, sk)) = skb {
        let cgroup = stack::cgroup(stack::stack(), skb, sk);
        return write_stack_event(buf, info, id, hook, ifindex, cgroup, None);
    }
    let Some(mut entry) = EVENTS.reserve::<PacketEvent>(0) else {
        return count(hook, stat::RINGBUF_FULL);
    };
    // SAFETY: the reservation is exactly one PacketEvent.
    unsafe { fill(entry.as_mut_ptr(), info, id, buf.frame_len(), hook, ifindex) };
    entry.submit(wakeup_flags());
    count(hook, stat::SUBMITTED);
}

/// Writes a [`StackEvent`] of a selected packet with its socket's `cgroup`, stamped now or
/// at `ts`.
#[inline(always)]
pub(crate) fn write_stack_event<B: PacketBuf>(
    buf: &B,
    info: &PacketInfo,
    id: u64,
    hook: u8,
    ifindex: u32,
    cgroup: u64,
    ts: Option<u64>,
) {
    let Some(mut entry) = EVENTS.reserve::<StackEvent>(0) else {
        return count(hook, stat::RINGBUF_FULL);
    };
    let e = entry.as_mut_ptr();
    // SAFETY: the reservation is exactly one StackEvent; fill sets every other field.
    unsafe {
        fill(&raw mut (*e).event, info, id, buf.frame_len(), hook, ifindex);
        if let Some(ts) = ts {
            (*e).event.ts_ns = ts;
        }
        (*e).cgroup = cgroup;
    }
    entry.submit(wakeup_flags());
    count(hook, stat::SUBMITTED);
}

/// Sets every field of the event at `ev`.
#[inline(always)]
pub(crate) unsafe fn fill(ev: *mut PacketEvent, info: &PacketInfo, id: u64, wire_len: u32, hook: u8, ifindex: u32) {
    // SAFETY: the caller hands a reserved, writable PacketEvent.
    unsafe {
        (*ev).ts_ns = bpf_ktime_get_ns();
        (*ev).pkt_id = id;
        (*ev).saddr = info.saddr;
        (*ev).daddr = info.daddr;
        (*ev).seq = info.seq;
        (*ev).ack = info.ack;
        (*ev).payload_len = info.payload_len;
        (*ev).wire_len = wire_len;
        (*ev).ifindex = ifindex;
        (*ev).ip_id = info.ip_id;
        (*ev).vni = info.vni;
        (*ev).cpu = bpf_get_smp_processor_id() as u16;
        (*ev).sport = info.sport;
        (*ev).dport = info.dport;
        (*ev).vlan = info.vlan;
        (*ev).hook = hook;
        (*ev).family = info.family;
        (*ev).proto = info.proto;
        (*ev).tcp_flags = info.tcp_flags;
        (*ev).flags = info.flags;
        (*ev)._pad = [0; 7];
    }
}

/// `--snaplen`: the event followed by the packet's first bytes (and at the stack hooks its
/// socket's `cgroup`).
#[inline(always)]
fn write_head<B: PacketBuf>(buf: &B, info: &PacketInfo, id: u64, hook: u8, ifindex: u32, snaplen: u32, cgroup: u64) {
    let Some(mut entry) = EVENTS.reserve::<PacketHead>(0) else {
        return count(hook, stat::RINGBUF_FULL);
    };
    let h = entry.as_mut_ptr();
    let frame = buf.frame_len();
    let want = if snaplen < frame { snaplen } else { frame };
    // SAFETY: the reservation is exactly one PacketHead; every field is set (`data` up to
    // `len`, which is all user space reads).
    unsafe {
        fill(&raw mut (*h).event, info, id, frame, hook, ifindex);
        let ok = want > 0 && buf.copy_head(&mut (*h).data, want);
        (*h).len = if ok { verifier_len(want) } else { 0 };
        (*h)._pad = 0;
        (*h).cgroup = cgroup;
    }
    entry.submit(wakeup_flags());
    count(hook, stat::SUBMITTED);
}

/// Records a clock-sync probe; it never becomes a packet event.
#[inline(always)]
fn sync_stamp(info: &PacketInfo, h: &probe::Header, hook: u8, ifindex: u32) {
    count(hook, stat::SYNC);
    let Some(mut entry) = SYNC_EVENTS.reserve::<SyncStamp>(0) else {
        return count(hook, stat::SYNC_LOST);
    };
    let s = entry.as_mut_ptr();
    // SAFETY: the reservation is exactly one SyncStamp; every field is set.
    unsafe {
        (*s).ts_ns = bpf_ktime_get_ns();
        (*s).session = h.session;
        (*s).seq = h.seq;
        (*s).saddr = info.saddr;
        (*s).daddr = info.daddr;
        (*s).ifindex = ifindex;
        (*s).sport = info.sport;
        (*s).dport = info.dport;
        (*s).hook = hook;
        (*s).family = info.family;
        (*s).kind = h.kind;
        (*s).idx = h.idx;
        (*s).cpu = bpf_get_smp_processor_id() as u16;
        (*s)._pad = [0; 2];
    }
    entry.submit(0);
}

/// XDP ingress: timestamps before the stack allocates an skb.
#[xdp]
pub fn netlat_xdp(ctx: XdpContext) -> u32 {
    try_packet(&Xdp(&ctx), hook::XDP, ctx.ingress_ifindex() as u32, None);
    xdp_action::XDP_PASS
}

/// Does nothing: `netlat-lab bench-capture` attaches it to tell what XDP mode itself costs
/// an interface (a veth with an XDP program copies every locally made packet into a new
/// buffer before the program runs) from what netlat's XDP program costs. Never loaded by
/// a capture.
#[xdp]
pub fn netlat_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// TC clsact ingress.
#[classifier]
pub fn netlat_tc_in(ctx: TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    try_packet(&Tc(&ctx), hook::TC_INGRESS, ifindex, None);
    TC_ACT_UNSPEC
}

/// TC clsact egress.
#[classifier]
pub fn netlat_tc_out(ctx: TcContext) -> i32 {
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    try_packet(&Tc(&ctx), hook::TC_EGRESS, ifindex, None);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
