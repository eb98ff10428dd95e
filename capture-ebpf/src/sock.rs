//! Socket-level programs (`--layers socket` and above): TCP bytes handed over by the
//! application, made readable, read, retransmitted, and the reading thread's scheduling.
//!
//! There is no packet here, so identity is the flow plus the absolute TCP sequence range
//! of the bytes, taken from the socket (`write_seq` after a send, `rcv_nxt` at data-ready,
//! `copied_seq` after a read) or from the skb's TCP control block (retransmissions). The
//! analyzer tracks bytes at fixed sequence positions through packets and sockets alike.

use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id,
    macros::{btf_tracepoint, map, tracepoint},
    maps::LruHashMap,
    programs::{BtfTracePointContext, TracePointContext},
};
use capture_common::{
    abi::{hook, stat, SockEvent},
    filter,
    func::at,
    hash,
    offsets::{StackConfig, NONE},
    parse::{PacketInfo, IPPROTO_TCP},
};

use crate::{
    cfg, count,
    stack::{cpu, kread, now, our_sock, stack, tid},
    wakeup_flags, EVENTS, SCRATCH,
};

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const MSG_PEEK: i32 = 2;
/// A read of the socket's error queue (`recvmsg` flag): it returns no datagram.
const MSG_ERRQUEUE: i32 = 0x2000;
/// `bpf_map_update_elem` flag: only if the key is absent.
pub(crate) const BPF_NOEXIST: u64 = 1;

/// Entry time of a socket's running `tcp_sendmsg_locked`, by `struct sock *`.
#[map]
static SEND_START: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

/// What a socket had made readable so far.
#[derive(Clone, Copy)]
#[repr(C)]
struct Ready {
    /// `rcv_nxt` at the last data-ready: bytes before it were reported.
    nxt: u32,
    _pad: u32,
    /// When.
    ts: u64,
}

/// By `struct sock *`.
#[map]
static READY: LruHashMap<u64, Ready> = LruHashMap::with_max_entries(4096, 0);

/// Threads that read from TCP sockets of this namespace (their scheduling is recorded).
#[map]
static READERS: LruHashMap<u32, u8> = LruHashMap::with_max_entries(4096, 0);

/// Threads inside a read system call (`recvfrom`, `recvmsg`, `recvmmsg`, `read`, `readv`):
/// their scheduling is recorded too, so a thread's first read of a socket (before it is
/// one of the [`READERS`]) has its wakeup and switch-in.
#[map]
static IN_READ: LruHashMap<u32, u8> = LruHashMap::with_max_entries(8192, 0);

/// `syscalls:sys_enter_{recvfrom,recvmsg,recvmmsg,read,readv}`.
#[tracepoint]
pub fn netlat_read_enter(_ctx: TracePointContext) -> i32 {
    let _ = IN_READ.insert(tid(), 1u8, 0);
    0
}

/// `syscalls:sys_exit_{recvfrom,recvmsg,recvmmsg,read,readv}`.
#[tracepoint]
pub fn netlat_read_exit(_ctx: TracePointContext) -> i32 {
    let _ = IN_READ.remove(tid());
    0
}

/// Whether thread `pid`'s scheduling is recorded.
#[inline(always)]
fn followed(pid: u32) -> bool {
    // SAFETY: only tested for presence.
    unsafe { READERS.get(pid).is_some() || IN_READ.get(pid).is_some() }
}

/// Last wakeup of each reader thread.
#[map]
static WOKEN: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Last time each reader thread got a CPU.
#[map]
static ON_CPU: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Fills `info` with the socket's flow in its data's direction: the socket's own end is
/// the sender unless `recv`. IPv4-mapped IPv6 sockets report IPv4, as their packets do.
#[inline(always)]
fn flow(st: &StackConfig, sk: *const u8, recv: bool, info: &mut PacketInfo) -> Option<()> {
    *info = PacketInfo::default();
    let family = kread::<u16>(sk, st.sk_family)?;
    let (mut local, mut remote) = ([0u8; 16], [0u8; 16]);
    if family == AF_INET {
        local[..4].copy_from_slice(&kread::<[u8; 4]>(sk, st.sk_rcv_saddr)?);
        remote[..4].copy_from_slice(&kread::<[u8; 4]>(sk, st.sk_daddr)?);
        info.family = 4;
    } else if family == AF_INET6 && st.sk_v6_daddr != NONE && st.sk_v6_rcv_saddr != NONE {
        local = kread::<[u8; 16]>(sk, st.sk_v6_rcv_saddr)?;
        remote = kread::<[u8; 16]>(sk, st.sk_v6_daddr)?;
        info.family = 6;
        if is_v4_mapped(&remote) {
            let (l, r) = (local, remote);
            local = [0; 16];
            remote = [0; 16];
            local[..4].copy_from_slice(&l[12..]);
            remote[..4].copy_from_slice(&r[12..]);
            info.family = 4;
        }
    } else {
        return None;
    }
    let lport = kread::<u16>(sk, st.sk_num)?;
    let rport = u16::from_be(kread::<u16>(sk, st.sk_dport)?);
    info.proto = IPPROTO_TCP;
    if recv {
        (info.saddr, info.daddr, info.sport, info.dport) = (remote, local, rport, lport);
    } else {
        (info.saddr, info.daddr, info.sport, info.dport) = (local, remote, lport, rport);
    }
    Some(())
}

#[inline(always)]
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|b| *b == 0) && a[10] == 0xff && a[11] == 0xff
}

/// Whether `sk` is a TCP socket of this namespace.
#[inline(always)]
fn our_tcp(st: &StackConfig, sk: *const u8) -> bool {
    kread::<u16>(sk, st.sk_protocol) == Some(u16::from(IPPROTO_TCP)) && our_sock(st, sk)
}

/// Whether a socket call's bytes are recorded: their flow, filter and sampling are looked at
/// once per call ([`select`]) and every event of the call (its own, those of socket probes
/// given as data, the reader's scheduling) uses the answer and the flow left in [`SCRATCH`].
///
/// Once, not per event: besides the repeated reads of the socket, looking again for each
/// probe inside [`call_done`] took more stack than a BPF program has (see there).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    /// Selected; the flow is in [`SCRATCH`].
    Selected,
    /// Not selected by the filter or the sampling.
    Filtered,
    /// The socket's addresses could not be read.
    Malformed,
}

impl Flow {
    /// Counts an event of hook `h` of this flow; true if it is to be written.
    #[inline(always)]
    fn count(self, h: u8) -> bool {
        count(h, stat::SEEN);
        match self {
            Flow::Selected => {
                count(h, stat::SELECTED);
                true
            }
            Flow::Filtered => false,
            Flow::Malformed => {
                count(h, stat::MALFORMED);
                false
            }
        }
    }
}

/// Looks at `len` bytes from `seq` of `sk`'s flow (in the data's direction: the socket's
/// own end receives if `recv`): whether the capture's filter and sampling select them,
/// with the flow left in [`SCRATCH`] for [`emit`].
///
/// A subprogram of its own, with a 208-byte frame (the filter's loops): inlined into the
/// read program, Linux 6.18.44's verifier stopped on an internal error ("verifier bug:
/// stack slot 15, total slots 14"); called, the read program's frame is 288 bytes, and the
/// two stay within the 512 bytes of a chain of calls.
#[inline(never)]
fn select(st: &StackConfig, sk: *const u8, recv: bool, seq: u32, len: u32) -> Flow {
    let Some(info) = SCRATCH.get_ptr_mut(0) else { return Flow::Filtered };
    // SAFETY: per-CPU slot; programs do not nest on one CPU for this map.
    let info = unsafe { &mut *info };
    if flow(st, sk, recv, info).is_none() {
        return Flow::Malformed;
    }
    let cfg = cfg();
    if !filter::matches(&cfg.filter, info) || !filter::port_selected(cfg, info) {
        return Flow::Filtered;
    }
    // Sampled as TCP packets are, by the bytes they hold (capture_common::hash).
    if cfg.tcp_sample_mask != 0 && !hash::range_sampled(seq, len, cfg.tcp_sample_mask) {
        return Flow::Filtered;
    }
    Flow::Selected
}

/// Writes a [`SockEvent`] of hook `h` for `len` bytes from `seq` of the flow [`select`]
/// looked at, if it selected them.
#[inline(always)]
fn emit(flow: Flow, h: u8, ts: u64, seq: u32, len: u32, tid: u32) {
    if !flow.count(h) {
        return;
    }
    let Some(info) = SCRATCH.get_ptr(0) else { return };
    // SAFETY: per-CPU slot, filled by `select` in this program.
    let info = unsafe { &*info };
    let Some(mut entry) = EVENTS.reserve::<SockEvent>(0) else {
        return count(h, stat::RINGBUF_FULL);
    };
    let e = entry.as_mut_ptr();
    // SAFETY: the reservation is exactly one SockEvent; every field is set.
    unsafe {
        (*e).ts_ns = ts;
        (*e).cgroup = if tid != 0 { bpf_get_current_cgroup_id() } else { 0 };
        (*e).saddr = info.saddr;
        (*e).daddr = info.daddr;
        (*e).seq = seq;
        (*e).len = len;
        (*e).tid = tid;
        (*e).ifindex = 0;
        (*e).sport = info.sport;
        (*e).dport = info.dport;
        (*e).cpu = cpu();
        (*e).hook = h;
        (*e).family = info.family;
        (*e).proto = IPPROTO_TCP;
        (*e)._pad = [0; 7];
    }
    entry.submit(wakeup_flags());
    count(h, stat::SUBMITTED);
}

/// `tcp:tcp_sendmsg_locked(sk, msg, skb, size_goal)`: the application's bytes reach TCP.
/// It fires once per skb the send fills; the first one of a send is its start, kept until
/// the call returns ([`netlat_sock_send`]) and says how many bytes it took: bytes that
/// waited for room in the send buffer count that wait in the socket layer.
#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn netlat_tcp_sendmsg(ctx: BtfTracePointContext) -> i32 {
    let sk = ctx.arg::<u64>(0);
    let _ = SEND_START.insert(sk, now(), BPF_NOEXIST);
    0
}

/// `sock:sock_send_length(sk, ret, flags)`: sendmsg returned `ret`; for TCP the bytes
/// are `[write_seq - ret, write_seq)`, stamped when `tcp_sendmsg_locked` began.
#[btf_tracepoint(function = "sock_send_length")]
pub fn netlat_sock_send(ctx: BtfTracePointContext) -> i32 {
    let sk = ctx.arg::<*const u8>(0);
    let st = stack();
    if st.on(hook::UDP_SEND) {
        crate::udp::sent(st, sk);
    }
    let key = sk as u64;
    // SAFETY: the value is copied out at once.
    let start = (unsafe { SEND_START.get(key) }).copied();
    if start.is_some() {
        let _ = SEND_START.remove(key);
    } else if !crate::func::funcs().any_sock() {
        return 0;
    }
    let ret = ctx.arg::<u64>(1) as i32;
    if ret <= 0 || !our_tcp(st, sk) {
        call_failed(true);
        return 0;
    }
    let Some(end) = kread::<u32>(sk, st.tcp_write_seq) else { return 0 };
    let (seq, len, tid) = (end.wrapping_sub(ret as u32), ret as u32, tid());
    let flow = select(st, sk, false, seq, len);
    if let Some(start) = start {
        emit(flow, hook::SOCK_SEND, start, seq, len, tid);
    }
    call_done(sk, true, seq, len, tid, flow);
    0
}

/// A send or receive call on a TCP socket, by thread: when a socket probe given as data
/// stamped it at its entry, or the call itself once it returned.
#[derive(Clone, Copy)]
#[repr(C)]
struct Call {
    sk: u64,
    /// Entry stamps: when; completed calls: the first byte's sequence number.
    ts_or_seq: u64,
    /// Completed calls: bytes; entry stamps: unused.
    len: u32,
    /// 1: a send.
    send: u32,
}

/// Entry stamps of socket probes given as data, by `tid << 8 | slot`, until the call
/// they ran in returns.
#[map]
static PROBE_MARKS: LruHashMap<u64, Call> = LruHashMap::with_max_entries(8192, 0);

/// The TCP call each thread completed last, for socket probes given as data at a
/// function's return (which fires after `sock_send_length` / `sock_recv_length`).
#[map]
static LAST_CALL: LruHashMap<u32, Call> = LruHashMap::with_max_entries(8192, 0);

#[inline(always)]
fn mark_key(tid: u32, slot: usize) -> u64 {
    u64::from(tid) << 8 | slot as u64
}

/// A socket probe given as data (slot `slot`, socket `sk`, in the `send` or receive
/// direction) fired `when` (a [`at`] value). At an entry, the call in progress is stamped
/// now (the first firing in a call counts, as `tcp_sendmsg_locked` does for `sock_send`)
/// and written when it returns ([`call_done`]). At a return, the bytes of the call the
/// thread completed last on `sk`, in that direction, are written now.
#[inline(always)]
pub(crate) fn probe_fired(slot: usize, sk: *const u8, when: u8, send: bool) {
    let st = stack();
    if !our_tcp(st, sk) {
        return;
    }
    let tid = tid();
    if when == at::ENTRY {
        let mark = Call { sk: sk as u64, ts_or_seq: now(), len: 0, send: u32::from(send) };
        let _ = PROBE_MARKS.insert(mark_key(tid, slot), mark, BPF_NOEXIST);
        return;
    }
    // SAFETY: copied out at once.
    let Some(c) = (unsafe { LAST_CALL.get(tid) }).copied() else { return };
    if c.sk == sk as u64 && c.send == u32::from(send) {
        let (t, seq) = (now(), c.ts_or_seq as u32);
        emit(select(st, sk, !send, seq, c.len), hook::FUNC + slot as u8, t, seq, c.len, tid);
    }
}

/// A send (`send`) or receive call of this thread returned no TCP bytes (an error, a peek,
/// not TCP): entry stamps of its socket probes must not pass to the thread's next call.
#[inline(always)]
fn call_failed(send: bool) {
    let f = crate::func::funcs();
    if !f.any_sock() {
        return;
    }
    let tid = tid();
    let mut i = 0;
    while i < hook::FUNC_SLOTS {
        if f.slots[i].stamps_calls(send) {
            let _ = PROBE_MARKS.remove(mark_key(tid, i));
        }
        i += 1;
    }
}

/// A send (`send`) or receive call of this thread on the TCP socket `sk` returned the
/// bytes `[seq, seq + len)` (of `flow`): socket probes given as data that stamped it at an
/// entry write them now, with their stamps; probes at a return will find them in
/// [`LAST_CALL`].
///
/// Inlined. As a subprogram that looked at the flow itself for each probe, its 328-byte
/// frame came on top of the send program's (608 bytes in all) and the read program's (736):
/// past the 512 bytes a chain of BPF calls may use where the kernel gives subprograms no
/// private stacks (before Linux 6.13, and for these programs on 6.18.44; regression tests
/// `issue4_socket_probes_given_as_data_record_each_calls_bytes` and capture's
/// `every_programs_chain_of_calls_fits_the_bpf_stack`).
#[inline(always)]
fn call_done(sk: *const u8, send: bool, seq: u32, len: u32, tid: u32, flow: Flow) {
    let f = crate::func::funcs();
    if !f.any_sock() {
        return;
    }
    let _ = LAST_CALL.insert(tid, Call { sk: sk as u64, ts_or_seq: u64::from(seq), len, send: u32::from(send) }, 0);
    let mut i = 0;
    while i < hook::FUNC_SLOTS {
        if f.slots[i].stamps_calls(send) {
            let key = mark_key(tid, i);
            // SAFETY: copied out at once.
            if let Some(m) = (unsafe { PROBE_MARKS.get(key) }).copied() {
                let _ = PROBE_MARKS.remove(key);
                if m.sk == sk as u64 {
                    emit(flow, hook::FUNC + i as u8, m.ts_or_seq, seq, len, tid);
                }
            }
        }
        i += 1;
    }
}

/// `sock:sk_data_ready(sk)`: TCP made `[last rcv_nxt, rcv_nxt)` readable and woke the
/// reader. Interrupt context: no thread.
#[btf_tracepoint(function = "sk_data_ready")]
pub fn netlat_sk_data_ready(ctx: BtfTracePointContext) -> i32 {
    let sk = ctx.arg::<*const u8>(0);
    let st = stack();
    if !our_tcp(st, sk) {
        return 0;
    }
    let Some(nxt) = kread::<u32>(sk, st.tcp_rcv_nxt) else { return 0 };
    let key = sk as u64;
    // SAFETY: copied out at once.
    let from = match unsafe { READY.get(key) } {
        Some(r) => r.nxt,
        None => match kread::<u32>(sk, st.tcp_copied_seq) {
            Some(c) => c,
            None => return 0,
        },
    };
    let len = nxt.wrapping_sub(from) as i32;
    if len <= 0 {
        return 0;
    }
    let t = now();
    let _ = READY.insert(key, Ready { nxt, _pad: 0, ts: t }, 0);
    if st.on(hook::SK_DATA_READY) {
        emit(select(st, sk, true, from, len as u32), hook::SK_DATA_READY, t, from, len as u32, 0);
    }
    0
}

/// `sock:sock_recv_length(sk, ret, flags)`: recvmsg returned `ret` TCP bytes,
/// `[copied_seq - ret, copied_seq)`. With the scheduler hooks, also stamps when the reading
/// thread was woken and on a CPU with those bytes ready.
#[btf_tracepoint(function = "sock_recv_length")]
pub fn netlat_sock_recv(ctx: BtfTracePointContext) -> i32 {
    let sk = ctx.arg::<*const u8>(0);
    let (ret, flags) = (ctx.arg::<u64>(1) as i32, ctx.arg::<u64>(2) as i32);
    let st = stack();
    if st.on(hook::SKB_COPY_DATAGRAM) {
        crate::stack::copied(st, sk, ret, flags & MSG_PEEK != 0);
    }
    if st.on(hook::UDP_RECV) {
        crate::udp_recv::received(st, sk, ret, flags & (MSG_PEEK | MSG_ERRQUEUE) != 0);
    }
    if ret <= 0 || flags & MSG_PEEK != 0 || !our_tcp(st, sk) {
        call_failed(false);
        return 0;
    }
    let Some(end) = kread::<u32>(sk, st.tcp_copied_seq) else { return 0 };
    let (t, tid, seq, len) = (now(), tid(), end.wrapping_sub(ret as u32), ret as u32);
    let sched = st.on(hook::SCHED_WAKEUP) || st.on(hook::SCHED_SWITCH);
    // Looked at only if some event of the read may be written.
    let flow = if st.on(hook::SOCK_RECV) || sched || crate::func::funcs().any_sock() {
        select(st, sk, true, seq, len)
    } else {
        Flow::Filtered
    };
    call_done(sk, false, seq, len, tid, flow);
    let key = sk as u64;
    // SAFETY: copied out at once.
    let ready = unsafe { READY.get(key) }.copied();
    // Bytes read before any data-ready covered them are never reported readable later.
    if ready.is_none_or(|r| (end.wrapping_sub(r.nxt) as i32) > 0) {
        let _ = READY.insert(key, Ready { nxt: end, _pad: 0, ts: ready.map_or(t, |r| r.ts) }, 0);
    }
    if st.on(hook::SOCK_RECV) {
        emit(flow, hook::SOCK_RECV, t, seq, len, tid);
    }
    if sched {
        let (woken, on_cpu) = sched_stamps(tid, ready.map_or(t, |r| r.ts), t);
        if st.on(hook::SCHED_WAKEUP) {
            emit(flow, hook::SCHED_WAKEUP, woken, seq, len, tid);
        }
        if st.on(hook::SCHED_SWITCH) {
            emit(flow, hook::SCHED_SWITCH, on_cpu, seq, len, tid);
        }
    }
    0
}

/// When thread `tid`, whose read returned at `t` data that was ready at `ready`, was woken
/// and when it got a CPU for it; the thread is followed from now on ([`READERS`]). Not
/// before the data was there (the thread may have been awake all along), never after the
/// read; a stamp that equals the one before it is moved 1 ns later, so that the layers keep
/// their order where the analyzer sorts by time.
#[inline(always)]
pub(crate) fn sched_stamps(tid: u32, ready: u64, t: u64) -> (u64, u64) {
    let _ = READERS.insert(tid, 1u8, 0);
    let base = ready.min(t);
    // SAFETY: copied out at once.
    let woken = unsafe { WOKEN.get(tid) }.copied().unwrap_or(0).clamp((base + 1).min(t), t);
    // SAFETY: copied out at once.
    let on_cpu = unsafe { ON_CPU.get(tid) }.copied().unwrap_or(0).clamp((woken + 1).min(t), t);
    (woken, on_cpu)
}

/// `tcp:tcp_retransmit_skb(sk, skb, err)`: the bytes `[seq, end_seq)` of the skb's TCP
/// control block were sent again.
#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn netlat_tcp_retransmit(ctx: BtfTracePointContext) -> i32 {
    let (sk, skb, err) = (ctx.arg::<*const u8>(0), ctx.arg::<*const u8>(1), ctx.arg::<u64>(2) as i32);
    let st = stack();
    if err != 0 || !our_tcp(st, sk) {
        return 0;
    }
    let (Some(seq), Some(end)) = (kread::<u32>(skb, st.skb_cb), kread::<u32>(skb, st.skb_cb + 4)) else {
        return 0;
    };
    let (t, len) = (now(), end.wrapping_sub(seq));
    emit(select(st, sk, false, seq, len), hook::TCP_RETRANSMIT, t, seq, len, tid());
    0
}

/// `sched:sched_switch(preempt, prev, next, prev_state)`: a reader thread got a CPU.
#[btf_tracepoint(function = "sched_switch")]
pub fn netlat_sched_switch(ctx: BtfTracePointContext) -> i32 {
    let next = ctx.arg::<*const u8>(2);
    let Some(pid) = kread::<i32>(next, stack().task_pid) else { return 0 };
    let pid = pid as u32;
    if followed(pid) {
        let _ = ON_CPU.insert(pid, now(), 0);
    }
    0
}

/// `sched:sched_wakeup(p)`: a reader thread was made runnable.
#[btf_tracepoint(function = "sched_wakeup")]
pub fn netlat_sched_wakeup(ctx: BtfTracePointContext) -> i32 {
    let p = ctx.arg::<*const u8>(0);
    let Some(pid) = kread::<i32>(p, stack().task_pid) else { return 0 };
    let pid = pid as u32;
    if followed(pid) {
        let _ = WOKEN.insert(pid, now(), 0);
    }
    0
}
