//! Tracepoint programs that see a packet in an `sk_buff` (`--layers stack` and above).
//!
//! Tracepoints fire for every namespace; each program copy records only the packets of
//! its capture's namespace (`STACK.netns`), found through the packet's device or, where
//! it has none (a packet inside TCP or being freed), its socket. Kernel structures are
//! read at offsets from the running kernel's BTF (the `STACK` global).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_ns},
    macros::{btf_tracepoint, map},
    maps::{LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use capture_common::{
    abi::{hook, stat, DropEvent, StackEvent, MAX_SNAPLEN},
    offsets::{StackConfig, NONE},
    parse::{PacketBuf, PacketInfo},
};

use crate::{count, emit, fill, identify, select, try_packet, verifier_len, wakeup_flags, EVENTS, STACK};

/// The stack configuration, read like [`crate::cfg`].
#[inline(always)]
pub(crate) fn stack() -> &'static StackConfig {
    let p: *const StackConfig = &STACK;
    // SAFETY: reads a valid pointer to a static back from the stack.
    unsafe { &*core::ptr::read_volatile(&p) }
}

/// Reads a `T` at `base + off` of kernel memory.
#[inline(always)]
pub(crate) fn kread<T>(base: *const u8, off: u16) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, not a fault.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(base.add(usize::from(off)).cast::<T>()).ok() }
}

/// `N` bytes at `base + off` (a 32-bit offset, unlike [`kread`]).
#[inline(always)]
fn kread_at<const N: usize>(base: *const u8, off: u32) -> Option<[u8; N]> {
    // SAFETY: as in kread.
    unsafe { aya_ebpf::helpers::bpf_probe_read_kernel(base.add(off as usize).cast::<[u8; N]>()).ok() }
}

/// A packet in an `sk_buff`, seen from a tracepoint: read with `bpf_probe_read_kernel`
/// from its link-layer header on.
struct Skb {
    frame: *const u8,
    len: u32,
}

impl PacketBuf for Skb {
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        // No comparison with `len` here: each one doubles the verifier's states through
        // the parser's loops (it ran out of its budget). The parser bounds what it derives
        // from the headers by `frame_len`, and a read past the end of the buffer's memory
        // fails in the helper.
        kread_at::<N>(self.frame, off)
    }
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.len
    }
    #[inline(always)]
    fn copy_head(&self, dst: &mut [u8; MAX_SNAPLEN], len: u32) -> bool {
        let n = verifier_len(len);
        // SAFETY: dst holds MAX_SNAPLEN >= n bytes; the helper checks the source address.
        unsafe {
            aya_ebpf::helpers::generated::bpf_probe_read_kernel(dst.as_mut_ptr().cast(), n, self.frame.cast()) == 0
        }
    }
}

/// A packet with no link-layer header yet (locally made, before the device layer),
/// presented with a 14-byte Ethernet header in front so that the parser, and the identity,
/// are those of every other hook.
struct IpOnly {
    ip: Skb,
    ethertype: u16,
}

impl PacketBuf for IpOnly {
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        if off >= 14 {
            return self.ip.load::<N>(off - 14);
        }
        // The parser reads the Ethernet header whole, at offset 0.
        if off != 0 || N != 14 {
            return None;
        }
        let mut out = [0u8; N];
        let t = self.ethertype.to_be_bytes();
        out[12] = t[0];
        out[13] = t[1];
        Some(out)
    }
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.ip.len + 14
    }
    #[inline(always)]
    fn copy_head(&self, _dst: &mut [u8; MAX_SNAPLEN], _len: u32) -> bool {
        false
    }
}

/// Whether `net` (a `struct net *`) is this copy's namespace.
#[inline(always)]
fn our_net(st: &StackConfig, net: *const u8) -> bool {
    !net.is_null() && kread::<u32>(net, st.net_inum) == Some(st.netns)
}

/// Whether the socket `sk` lives in this copy's namespace.
#[inline(always)]
pub(crate) fn our_sock(st: &StackConfig, sk: *const u8) -> bool {
    !sk.is_null() && kread::<*const u8>(sk, st.sk_net).is_some_and(|net| our_net(st, net))
}

/// The packet of the `sk_buff` at `skb` if it belongs to this copy's namespace (by its
/// device, else by `sk` or its own socket), with its interface index (0: no device).
#[inline(always)]
fn our_packet(st: &StackConfig, skb: *const u8, sk: *const u8) -> Option<(Skb, u32, bool)> {
    let dev = kread::<*const u8>(skb, st.skb_dev).unwrap_or(core::ptr::null());
    let ifindex = if !dev.is_null() {
        if !our_net(st, kread::<*const u8>(dev, st.dev_nd_net)?) {
            return None;
        }
        kread::<i32>(dev, st.dev_ifindex).unwrap_or(0) as u32
    } else {
        let sk = if sk.is_null() { kread::<*const u8>(skb, st.skb_sk)? } else { sk };
        if !our_sock(st, sk) {
            return None;
        }
        0
    };
    let (buf, ip_only) = skb_buf(st, skb)?;
    Some((buf, ifindex, ip_only))
}

/// The packet bytes of the `sk_buff` at `skb`, and whether they start at the IP header.
#[inline(always)]
fn skb_buf(st: &StackConfig, skb: *const u8) -> Option<(Skb, bool)> {
    let (head, data, len, mac) = (
        kread::<*const u8>(skb, st.skb_head)?,
        kread::<*const u8>(skb, st.skb_data)?,
        kread::<u32>(skb, st.skb_len)?,
        kread::<u16>(skb, st.skb_mac_header)?,
    );
    // From the link-layer header when it is set, so the parser and identity are those of
    // the XDP and TC hooks; else from the IP header (`ip_only`).
    let (frame, ip_only) = if mac != 0xffff {
        (unsafe { head.add(usize::from(mac)) }, false)
    } else {
        (unsafe { head.add(usize::from(kread::<u16>(skb, st.skb_network_header)?)) }, true)
    };
    let before = (data as usize).wrapping_sub(frame as usize) as u32;
    if before > 0xffff {
        return None;
    }
    Some((Skb { frame, len: len + before }, ip_only))
}

/// Records the packet of the `sk_buff` at `skb` at stack hook `hook`, if it belongs to this
/// copy's namespace.
#[inline(always)]
pub(crate) fn stack_packet(skb: *const u8, hook: u8) {
    let st = stack();
    let Some((buf, ifindex, ip_only)) = our_packet(st, skb, core::ptr::null()) else { return };
    let at = Some((skb, core::ptr::null()));
    if ip_only {
        if let Some(ethertype) = ethertype(&buf) {
            try_packet(&IpOnly { ip: buf, ethertype }, hook, ifindex, at);
        }
    } else {
        try_packet(&buf, hook, ifindex, at);
    }
}

/// The cgroup (v2) id of the packet's socket (`sk`, else the skb's own), 0 where there is
/// none (a packet forwarded, or received before TCP or UDP found its socket) or the kernel
/// keeps none.
///
/// Read without a branch per pointer (a failed read, as from a null pointer, gives 0, and
/// so does every read after it): the drop program ran out of the verifier's budget with
/// one per pointer.
#[inline(always)]
pub(crate) fn cgroup(st: &StackConfig, skb: *const u8, sk: *const u8) -> u64 {
    // Checked here too, before the socket is read, though `sock_cgroup` checks it: without
    // it the kprobe program of probes given as data ran out of the verifier's budget.
    if st.kn_id == NONE {
        return 0;
    }
    let sk = if sk.is_null() { read_or_zero(skb as u64, st.skb_sk) } else { sk as u64 };
    sock_cgroup(st, sk)
}

/// The cgroup (v2) id of the socket at `sk` (0: none), with no branch at all.
#[inline(always)]
fn sock_cgroup(st: &StackConfig, sk: u64) -> u64 {
    if st.kn_id == NONE {
        return 0;
    }
    let cg = read_or_zero(sk, st.sk_cgroup);
    let kn = read_or_zero(cg, st.cgroup_kn);
    read_or_zero(kn, st.kn_id)
}

/// 1 if `x` is 0, else 0, by arithmetic only: the shift's width is hidden from LLVM, which
/// would otherwise turn this into a comparison, and a comparison into a branch (BPF has no
/// conditional move).
#[inline(always)]
fn is_zero(x: u64) -> u64 {
    // `x | -x` has its top bit set exactly when `x` is not 0.
    1 - ((x | x.wrapping_neg()) >> core::hint::black_box(63u64))
}

/// The u64 at kernel address `base + off`; 0 if it cannot be read (the helper zeroes its
/// destination on failure, so no branch is needed).
#[inline(always)]
fn read_or_zero(base: u64, off: u16) -> u64 {
    let mut v = 0u64;
    // SAFETY: writes 8 bytes into `v`; the helper checks the source address.
    unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_kernel(
            (&raw mut v).cast(),
            8,
            base.wrapping_add(u64::from(off)) as *const core::ffi::c_void,
        )
    };
    v
}

/// Ethertype of an IP packet from its version nibble.
#[inline(always)]
fn ethertype(ip: &Skb) -> Option<u16> {
    match ip.load::<1>(0)?[0] >> 4 {
        4 => Some(0x0800),
        6 => Some(0x86DD),
        _ => None,
    }
}

/// `net:net_dev_queue`: the packet enters the device layer (`__dev_queue_xmit`). A UDP
/// packet of a send call in progress also gets its `udp_send` event here.
#[btf_tracepoint(function = "net_dev_queue")]
pub fn netlat_net_dev_queue(ctx: BtfTracePointContext) -> i32 {
    let skb = ctx.arg::<*const u8>(0);
    let st = stack();
    // One parse for both events: a second copy of the parser runs the verifier out of its
    // budget.
    let sent = if st.on(hook::UDP_SEND) { crate::udp::start(st, skb).unwrap_or(0) } else { 0 };
    let Some((buf, ifindex, ip_only)) = our_packet(st, skb, core::ptr::null()) else { return 0 };
    if ip_only {
        if let Some(ethertype) = ethertype(&buf) {
            queue(&IpOnly { ip: buf, ethertype }, ifindex, sent, skb);
        }
    } else {
        queue(&buf, ifindex, sent, skb);
    }
    0
}

/// Records a packet at `net_dev_queue`, and at `udp_send` with its send call's time
/// `sent` (0: none).
#[inline(always)]
fn queue<B: PacketBuf>(buf: &B, ifindex: u32, sent: u64, skb: *const u8) {
    let h = hook::NET_DEV_QUEUE;
    let Some((info, id)) = select(buf, h, ifindex) else { return };
    let at = Some((skb, core::ptr::null()));
    if sent != 0 {
        crate::udp::emit(buf, info, id, ifindex, sent, cgroup(stack(), skb, core::ptr::null()));
    }
    emit(buf, info, id, h, ifindex, at);
}

/// Packets handed to a driver (`net_dev_start_xmit`), by skb address, until the driver's
/// transmit returns (`net_dev_xmit`). By then the driver may have freed the skb or passed
/// it on (veth hands it to its peer, whose namespace and device it then carries), so
/// `net_dev_xmit` reports what was remembered instead of reading the skb.
#[map]
static IN_XMIT: LruHashMap<u64, StackEvent> = LruHashMap::with_max_entries(4096, 0);

/// Where a remembered event is built (too large for the BPF stack with the parser).
#[map]
static KEEP_SCRATCH: PerCpuArray<StackEvent> = PerCpuArray::with_max_entries(1, 0);

/// Remembers the event of a selected packet at `hook` in `map` under `key`, with its
/// socket's `cgroup` as known now, for a later tracepoint that can no longer read the
/// packet ([`emit_kept`]).
#[inline(always)]
fn keep<K, B: PacketBuf>(
    map: &LruHashMap<K, StackEvent>,
    key: K,
    buf: &B,
    info: &PacketInfo,
    id: u64,
    hook: u8,
    ifindex: u32,
    cgroup: u64,
) {
    if let Some(ev) = KEEP_SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, filled whole, then copied into the map.
        unsafe {
            fill(&raw mut (*ev).event, info, id, buf.frame_len(), hook, ifindex);
            (*ev).cgroup = cgroup;
            let _ = map.insert(key, &*ev, 0);
        }
    }
}

/// Writes a remembered event (its hook's counters: `seen` and `selected` too unless
/// they were counted when it was kept).
#[inline(always)]
fn emit_kept(ev: &StackEvent, counted: bool) {
    let h = ev.event.hook;
    if !counted {
        count(h, stat::SEEN);
        count(h, stat::SELECTED);
    }
    let Some(mut entry) = EVENTS.reserve::<StackEvent>(0) else {
        return count(h, stat::RINGBUF_FULL);
    };
    let e = entry.as_mut_ptr();
    // SAFETY: the reservation is exactly one StackEvent, copied whole from `ev`.
    unsafe { core::ptr::copy_nonoverlapping(ev, e, 1) };
    entry.submit(wakeup_flags());
    count(h, stat::SUBMITTED);
}

/// `net:net_dev_start_xmit`: the qdisc hands the packet to the driver.
#[btf_tracepoint(function = "net_dev_start_xmit")]
pub fn netlat_net_dev_start_xmit(ctx: BtfTracePointContext) -> i32 {
    let skb = ctx.arg::<*const u8>(0);
    let st = stack();
    let Some((buf, ifindex, ip_only)) = our_packet(st, skb, core::ptr::null()) else { return 0 };
    if ip_only {
        if let Some(ethertype) = ethertype(&buf) {
            start_xmit(&IpOnly { ip: buf, ethertype }, skb as u64, ifindex);
        }
    } else {
        start_xmit(&buf, skb as u64, ifindex);
    }
    0
}

/// Records the packet at `net_dev_start_xmit` and remembers it for `net_dev_xmit`.
#[inline(always)]
fn start_xmit<B: PacketBuf>(buf: &B, skb: u64, ifindex: u32) {
    let st = stack();
    let h = if st.on(hook::NET_DEV_START_XMIT) { hook::NET_DEV_START_XMIT } else { hook::NET_DEV_XMIT };
    let Some((info, id)) = select(buf, h, ifindex) else { return };
    if st.on(hook::NET_DEV_XMIT) {
        let cg = cgroup(st, skb as *const u8, core::ptr::null());
        keep(&IN_XMIT, skb, buf, info, id, hook::NET_DEV_XMIT, ifindex, cg);
    }
    if h == hook::NET_DEV_START_XMIT {
        emit(buf, info, id, h, ifindex, Some((skb as *const u8, core::ptr::null())));
    }
}

/// `net:net_dev_xmit(skb, rc, dev, len)`: the driver's transmit returned. A packet the
/// driver refused (`NETDEV_TX_BUSY`) is handed to it again later, and reported then.
#[btf_tracepoint(function = "net_dev_xmit")]
pub fn netlat_net_dev_xmit(ctx: BtfTracePointContext) -> i32 {
    let (skb, rc) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1) as i32);
    // SAFETY: copied out at once.
    let Some(mut ev) = (unsafe { IN_XMIT.get(skb) }).copied() else { return 0 };
    let _ = IN_XMIT.remove(skb);
    if rc != 0 {
        return 0;
    }
    ev.event.ts_ns = now();
    ev.event.cpu = cpu();
    // Without start_xmit's own events, start_xmit counted the selection under this hook.
    emit_kept(&ev, !stack().on(hook::NET_DEV_START_XMIT));
    0
}

/// `net:netif_receive_skb`: the driver hands a received packet to the stack.
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn netlat_netif_receive_skb(ctx: BtfTracePointContext) -> i32 {
    stack_packet(ctx.arg::<*const u8>(0), hook::NETIF_RECEIVE_SKB);
    0
}

/// `qdisc:qdisc_enqueue`: the packet is queued in the device's qdisc.
#[btf_tracepoint(function = "qdisc_enqueue")]
pub fn netlat_qdisc_enqueue(ctx: BtfTracePointContext) -> i32 {
    stack_packet(ctx.arg::<*const u8>(2), hook::QDISC_ENQUEUE);
    0
}

/// `qdisc:qdisc_dequeue`: the qdisc releases the packet (the first of a bulk dequeue; the
/// skb is NULL when the queue was empty).
#[btf_tracepoint(function = "qdisc_dequeue")]
pub fn netlat_qdisc_dequeue(ctx: BtfTracePointContext) -> i32 {
    let skb = ctx.arg::<*const u8>(3);
    if !skb.is_null() {
        stack_packet(skb, hook::QDISC_DEQUEUE);
    }
    0
}

/// `net:napi_gro_receive_entry`: the driver's NAPI poll hands the packet to GRO.
#[btf_tracepoint(function = "napi_gro_receive_entry")]
pub fn netlat_napi_gro_receive(ctx: BtfTracePointContext) -> i32 {
    stack_packet(ctx.arg::<*const u8>(0), hook::NAPI_GRO_RECEIVE);
    0
}

/// `tcp:tcp_probe(sk, skb)`: TCP processes a received segment. TCP has cleared the skb's
/// device by then, and the skb is not charged to the socket yet: the namespace is `sk`'s.
#[btf_tracepoint(function = "tcp_probe")]
pub fn netlat_tcp_probe(ctx: BtfTracePointContext) -> i32 {
    let (sk, skb) = (ctx.arg::<*const u8>(0), ctx.arg::<*const u8>(1));
    let st = stack();
    let Some((buf, ifindex, ip_only)) = our_packet(st, skb, sk) else { return 0 };
    if ip_only {
        if let Some(ethertype) = ethertype(&buf) {
            tcp_probe(&IpOnly { ip: buf, ethertype }, skb, sk, ifindex);
        }
    } else {
        tcp_probe(&buf, skb, sk, ifindex);
    }
    0
}

/// Records a segment at `tcp_probe` with TCP's own sequence range (`TCP_SKB_CB`: `seq`,
/// `end_seq`, and `tcp_flags` at byte 12): segments that arrived while the socket was
/// busy are coalesced into the skb at the tail of its backlog, whose headers then describe
/// the first of them only.
#[inline(always)]
fn tcp_probe<B: PacketBuf>(buf: &B, skb: *const u8, sk: *const u8, ifindex: u32) {
    let h = hook::TCP_PROBE;
    // Sampled by the range TCP gives (the headers give the first coalesced segment's only).
    let Some((info, id)) = crate::identify_unsampled(buf, h, ifindex, true) else { return };
    let st = stack();
    let cb = (kread::<u32>(skb, st.skb_cb), kread::<u32>(skb, st.skb_cb + 4), kread::<u8>(skb, st.skb_cb + 12));
    let at = Some((skb, sk));
    let (Some(seq), Some(end), Some(flags)) = cb else { return emit_sampled(buf, info, id, h, ifindex, at) };
    // SYN and FIN take a sequence number each, but carry no data.
    let (syn, fin) = (u32::from(flags & 2 != 0), u32::from(flags & 1 != 0));
    let len = end.wrapping_sub(seq).wrapping_sub(syn + fin);
    if len > 0x10_0000 {
        return emit_sampled(buf, info, id, h, ifindex, at);
    }
    let Some(p) = crate::SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: the per-CPU slot `info` points to; `info` is not used after this.
    let info = unsafe {
        (*p).seq = seq.wrapping_add(syn);
        (*p).payload_len = len;
        &*p
    };
    emit_sampled(buf, info, id, h, ifindex, at);
}

/// Writes a packet [`crate::identify_unsampled`] gave if sampling keeps it.
#[inline(always)]
fn emit_sampled<B: PacketBuf>(buf: &B, info: &PacketInfo, id: u64, h: u8, ifindex: u32, at: Option<crate::SkbRef>) {
    if crate::sample(info, id, h, true) {
        emit(buf, info, id, h, ifindex, at);
    }
}

/// `skb:skb_copy_datagram_iovec(skb, len)`: a datagram is copied to the application.
/// TCP's copies are skipped: a TCP skb in the receive queue may hold coalesced segments
/// whose headers are gone, and TCP reads are recorded by byte range (`sock_recv`).
///
/// Neither the skb's device (UDP reuses that field as scratch space once the datagram is
/// queued) nor its owner (UDP sets none) tells the namespace here: the datagram is kept
/// by thread until `sock:sock_recv_length` names the socket ([`copied`]).
#[btf_tracepoint(function = "skb_copy_datagram_iovec")]
pub fn netlat_skb_copy_datagram(ctx: BtfTracePointContext) -> i32 {
    let skb = ctx.arg::<*const u8>(0);
    let st = stack();
    let sk = kread::<*const u8>(skb, st.skb_sk).unwrap_or(core::ptr::null());
    if !sk.is_null() && (kread::<u16>(sk, st.sk_protocol) == Some(6) || !our_sock(st, sk)) {
        return 0;
    }
    let Some((buf, ip_only)) = skb_buf(st, skb) else { return 0 };
    if ip_only {
        if let Some(ethertype) = ethertype(&buf) {
            keep_copied(&IpOnly { ip: buf, ethertype });
        }
    } else {
        keep_copied(&buf);
    }
    0
}

/// Datagrams copied to an application, by thread, until its receive call returns.
#[map]
static COPIED: LruHashMap<u32, StackEvent> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn keep_copied<B: PacketBuf>(buf: &B) {
    let h = hook::SKB_COPY_DATAGRAM;
    let Some((info, id)) = identify(buf, h, 0, false) else { return };
    // The socket, hence the cgroup, is known when the receive call returns (`copied`).
    keep(&COPIED, tid(), buf, info, id, h, 0, 0);
}

/// Parses the datagram of the `sk_buff` at `skb`, coming to a UDP socket, into the ticket
/// [`crate::udp_recv::fill_ticket`] builds, if the capture selects it.
#[inline(always)]
pub(crate) fn ticket_datagram(skb: *const u8) {
    let st = stack();
    let Some((buf, ip_only)) = skb_buf(st, skb) else { return };
    if ip_only {
        if let Some(ethertype) = ethertype(&buf) {
            ticket_parsed(&IpOnly { ip: buf, ethertype });
        }
    } else {
        ticket_parsed(&buf);
    }
}

#[inline(always)]
fn ticket_parsed<B: PacketBuf>(buf: &B) {
    if let Some((info, id)) = identify(buf, hook::UDP_RECV, 0, false) {
        crate::udp_recv::fill_ticket(info, id, buf.frame_len());
    }
}

/// At `sock_recv_length(sk, ret, flags)`: records the datagram this thread's receive call
/// copied, if `sk` is a socket of this namespace and the call consumed it (not a peek).
#[inline(always)]
pub(crate) fn copied(st: &StackConfig, sk: *const u8, ret: i32, peek: bool) {
    let tid = tid();
    let Some(ev) = COPIED.get_ptr_mut(tid) else { return };
    if ret >= 0 && !peek && our_sock(st, sk) {
        // SAFETY: this thread's own entry, used in place (a copy does not fit the read
        // program's stack) before it is removed.
        unsafe {
            (*ev).cgroup = cgroup(st, core::ptr::null(), sk);
            emit_kept(&*ev, false);
        }
    }
    let _ = COPIED.remove(tid);
}

/// `skb:kfree_skb(skb, location, reason, rx_sk)`: a packet dropped, with the reason.
#[btf_tracepoint(function = "kfree_skb")]
pub fn netlat_kfree_skb(ctx: BtfTracePointContext) -> i32 {
    let st = stack();
    let reason = ctx.arg::<u64>(2) as u32;
    if reason == st.drop_consumed {
        return 0;
    }
    let (skb, location, rx_sk) = (ctx.arg::<*const u8>(0), ctx.arg::<u64>(1), ctx.arg::<*const u8>(3));
    // The owner's cgroup, else (a drop at a receiving socket, which does not own the skb
    // yet) that socket's. Read before the parser without branches (after it, on every parsed
    // path, it took this program past the verifier's budget; so did a branch on `rx_sk`
    // before it): drops are few, so both are read.
    let owner = sock_cgroup(st, read_or_zero(skb as u64, st.skb_sk));
    // `rx_sk` read again as a plain number (the verifier forbids arithmetic on the typed
    // pointer before a null check, and a check is a branch).
    let receiver = sock_cgroup(st, read_or_zero(aya_ebpf::EbpfContext::as_ptr(&ctx) as u64, 3 * 8));
    let cg = owner + receiver * is_zero(owner);
    let Some((buf, ifindex, ip_only)) = our_packet(st, skb, rx_sk) else { return 0 };
    if ip_only {
        if let Some(ethertype) = ethertype(&buf) {
            drop_packet(&IpOnly { ip: buf, ethertype }, ifindex, reason, location, cg);
        }
    } else {
        drop_packet(&buf, ifindex, reason, location, cg);
    }
    0
}

#[inline(always)]
fn drop_packet<B: PacketBuf>(buf: &B, ifindex: u32, reason: u32, location: u64, cg: u64) {
    let h = hook::KFREE_SKB;
    let Some((info, id)) = select(buf, h, ifindex) else { return };
    let Some(mut entry) = EVENTS.reserve::<DropEvent>(0) else {
        return count(h, stat::RINGBUF_FULL);
    };
    let d = entry.as_mut_ptr();
    // SAFETY: the reservation is exactly one DropEvent; every field is set.
    unsafe {
        fill(&raw mut (*d).event, info, id, buf.frame_len(), h, ifindex);
        (*d).reason = reason;
        (*d)._pad = 0;
        (*d).location = location;
        (*d).cgroup = cg;
    }
    entry.submit(wakeup_flags());
    count(h, stat::SUBMITTED);
}

/// The CPU, for records written outside [`fill`].
#[inline(always)]
pub(crate) fn cpu() -> u16 {
    // SAFETY: no arguments.
    unsafe { bpf_get_smp_processor_id() as u16 }
}

/// The current thread's id.
#[inline(always)]
pub(crate) fn tid() -> u32 {
    bpf_get_current_pid_tgid() as u32
}

/// Now, CLOCK_MONOTONIC.
#[inline(always)]
pub(crate) fn now() -> u64 {
    // SAFETY: no arguments.
    unsafe { bpf_ktime_get_ns() }
}
