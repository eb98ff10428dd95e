//! UDP's socket layer: when the application's send call began (`udp_send`) and when its
//! receive call returned (`udp_recv`), for each datagram, with the datagram's identity.
//!
//! ## Send
//!
//! No tracepoint sees a UDP datagram between the send call and the device layer, and the
//! socket tracepoint `sock_send_length` fires when the call returns, after the datagram
//! went down the stack. So the call's start is kept by thread, from the system call's
//! entry to its exit (`syscalls:sys_enter_*` / `sys_exit_*` of sendto, sendmsg, sendmmsg,
//! write, writev), and the first UDP packet of the sending thread's own socket that
//! reaches `net_dev_queue` during the call takes it (the rest of an IP-fragmented
//! datagram does not). For the later datagrams of a `sendmmsg`, their send begins when the
//! previous one's returns (`sock_send_length`).
//!
//! ## Receive
//!
//! The kernel copies a linear UDP datagram to the application with no tracepoint that
//! sees its skb, and by the time `sock_recv_length` fires the datagram is gone from the
//! socket. What a read returns, though, is the head of the socket's receive queues (UDP
//! moves `sk_receive_queue` into its own `reader_queue` and reads from there). So each
//! socket's head is remembered ([`NEXT_READ`]): when it gets one while nothing is
//! remembered (`sk_data_ready`, which fires at least when an empty queue gets a datagram)
//! and after every read (the new head). A read that returns while the remembered datagram
//! is no longer at the head consumed it: that is its `udp_recv`, stamped then. The rule
//! corrects itself at every read, so a datagram missed (queued before the capture began,
//! or taken by another thread reading the same socket) costs that row only.

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
};
use capture_common::{
    abi::{hook, stat, PacketEvent, StackEvent},
    offsets::{StackConfig, NONE},
    parse::{PacketBuf, PacketInfo},
};

use crate::{
    count, fill,
    stack::{cgroup, cpu, kread, now, our_sock, tid},
    wakeup_flags, write_stack_event, EVENTS,
};

const IPPROTO_UDP: u16 = 17;

/// A send call in progress.
#[derive(Clone, Copy)]
#[repr(C)]
struct SendCall {
    /// When the call began (or its previous datagram's send returned).
    ts: u64,
    /// Whether a datagram took `ts` already.
    used: u64,
}

/// By thread id, from the call's entry to its exit.
#[map]
static SEND_CALLS: LruHashMap<u32, SendCall> = LruHashMap::with_max_entries(8192, 0);

/// `syscalls:sys_enter_{sendto,sendmsg,sendmmsg,write,writev}`.
#[tracepoint]
pub fn netlat_send_enter(_ctx: TracePointContext) -> i32 {
    let _ = SEND_CALLS.insert(tid(), SendCall { ts: now(), used: 0 }, 0);
    0
}

/// `syscalls:sys_exit_{sendto,sendmsg,sendmmsg,write,writev}`.
#[tracepoint]
pub fn netlat_send_exit(_ctx: TracePointContext) -> i32 {
    let _ = SEND_CALLS.remove(tid());
    0
}

/// At `sock_send_length(sk, ..)`: a datagram's send returned; the next one of the same
/// call (`sendmmsg`) begins now.
#[inline(always)]
pub(crate) fn sent(st: &StackConfig, sk: *const u8) {
    if kread::<u16>(sk, st.sk_protocol) != Some(IPPROTO_UDP) {
        return;
    }
    if let Some(c) = SEND_CALLS.get_ptr_mut(tid()) {
        // SAFETY: this thread's own entry; only this thread writes it.
        unsafe { *c = SendCall { ts: now(), used: 0 } };
    }
}

/// At `net_dev_queue(skb)`: the start of the send call this UDP packet belongs to, if the
/// current thread is in one that no packet took yet and `skb` is its own socket's UDP
/// packet (not one forwarded or received in a softirq that borrowed the thread).
#[inline(always)]
pub(crate) fn start(st: &StackConfig, skb: *const u8) -> Option<u64> {
    let c = SEND_CALLS.get_ptr_mut(tid())?;
    // SAFETY: as in `sent`.
    let call = unsafe { &mut *c };
    if call.used != 0 {
        return None;
    }
    let sk = kread::<*const u8>(skb, st.skb_sk)?;
    if sk.is_null() || kread::<u16>(sk, st.sk_protocol) != Some(IPPROTO_UDP) {
        return None;
    }
    call.used = 1;
    Some(call.ts)
}

/// Writes the `udp_send` event of a selected packet: its `net_dev_queue` event with the
/// send call's time (and its socket's cgroup).
#[inline(always)]
pub(crate) fn emit<B: PacketBuf>(buf: &B, info: &PacketInfo, id: u64, ifindex: u32, ts: u64, cgroup: u64) {
    let h = hook::UDP_SEND;
    count(h, stat::SEEN);
    count(h, stat::SELECTED);
    write_stack_event(buf, info, id, h, ifindex, cgroup, Some(ts));
}

/// The datagram a UDP socket's next read returns, as last seen at the head of its queues.
#[derive(Clone, Copy)]
#[repr(C)]
struct NextRead {
    /// Its `sk_buff`, to tell whether a read consumed it.
    skb: u64,
    /// Whether it is recorded (the capture selects it); if not, only `skb` is set, so that
    /// its read is known for what it is.
    recorded: u64,
    /// When it became the next read's: it came to an empty socket (`sk_data_ready`), or
    /// the previous read returned (the reader was running then). The scheduler stamps of
    /// its read are not earlier.
    ready: u64,
    /// Its event, written (stamped anew) when a read consumed it.
    ev: PacketEvent,
}

/// By `struct sock *`.
#[map]
static NEXT_READ: LruHashMap<u64, NextRead> = LruHashMap::with_max_entries(8192, 0);

/// Where a [`NextRead`] is built (too large for the BPF stack with the parser).
#[map]
static NEXT_SCRATCH: PerCpuArray<NextRead> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn is_udp(st: &StackConfig, sk: *const u8) -> bool {
    kread::<u16>(sk, st.sk_protocol) == Some(IPPROTO_UDP)
}

/// The first skb of the queue at `sk + off` (`struct sk_buff_head`, whose `next` is its
/// first member and points back at the head when the queue is empty).
#[inline(always)]
fn first(sk: *const u8, off: u16) -> Option<*const u8> {
    let skb = kread::<*const u8>(sk, off)?;
    (!skb.is_null() && skb != sk.wrapping_add(usize::from(off))).then_some(skb)
}

/// The datagram UDP socket `sk`'s next read returns: the head of its `reader_queue`, else
/// of its `sk_receive_queue` (which a reader moves over whole when the first is empty).
#[inline(always)]
fn head(st: &StackConfig, sk: *const u8) -> Option<*const u8> {
    if st.sk_receive_queue == NONE {
        return None;
    }
    if st.udp_reader_queue != NONE {
        if let Some(skb) = first(sk, st.udp_reader_queue) {
            return Some(skb);
        }
    }
    first(sk, st.sk_receive_queue)
}

/// Stores the event of the selected datagram of `skb` (parsed by
/// [`crate::stack::keep_next_read`]) as socket `sk`'s next read.
#[inline(always)]
pub(crate) fn keep(info: &PacketInfo, id: u64, frame_len: u32, sk: *const u8, skb: *const u8) -> bool {
    let Some(n) = NEXT_SCRATCH.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU slot, filled whole, then copied into the map.
    unsafe {
        fill(&raw mut (*n).ev, info, id, frame_len, hook::UDP_RECV, 0);
        (*n).skb = skb as u64;
        (*n).recorded = 1;
        (*n).ready = (*n).ev.ts_ns;
        NEXT_READ.insert(sk as u64, &*n, 0).is_ok()
    }
}

/// Remembers that socket `sk`'s next read returns `skb`, a datagram the capture does not
/// record (not selected, or not parsed): its read is then neither recorded nor counted as
/// one not identified.
#[inline(always)]
fn skip(sk: *const u8, skb: *const u8) {
    let Some(n) = NEXT_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot; only `skb` and `recorded` are read back from such an entry.
    unsafe {
        (*n).skb = skb as u64;
        (*n).recorded = 0;
        let _ = NEXT_READ.insert(sk as u64, &*n, 0);
    }
}

/// At `sk_data_ready(sk)`: a UDP socket of this namespace with no next read known has one
/// now (a reader waiting on an empty queue reads this datagram).
#[inline(always)]
pub(crate) fn ready(st: &StackConfig, sk: *const u8) {
    // SAFETY: only tested for presence.
    if !is_udp(st, sk) || unsafe { NEXT_READ.get(sk as u64) }.is_some() || !our_sock(st, sk) {
        return;
    }
    if let Some(skb) = head(st, sk) {
        if !crate::stack::keep_next_read(sk, skb) {
            skip(sk, skb);
        }
    }
}

/// At `sock_recv_length(sk, ret, flags)`: a read of UDP socket `sk` returned `ret` bytes.
/// If the remembered datagram left the head, this read consumed it: it is written as
/// `udp_recv`, stamped now, when its length and port agree with the read and the socket
/// (a remembered datagram of a closed socket whose memory a new one reuses does not).
/// Then the new head is remembered. A read that returned a datagram nothing remembered
/// (queued before the capture began, or taken by a reader already running between its
/// enqueue and its `sk_data_ready`) is counted as `unidentified`.
#[inline(always)]
pub(crate) fn received(st: &StackConfig, sk: *const u8, ret: i32, no_datagram: bool) {
    if no_datagram || !is_udp(st, sk) || !our_sock(st, sk) {
        return;
    }
    let key = sk as u64;
    let mut next = head(st, sk);
    // Whether this read returned a datagram that gets no `udp_recv` row: counted, so the
    // analyzer reports the missing row as the capture's, not as loss in the network.
    let mut unidentified = ret >= 0;
    if let Some(n) = NEXT_READ.get_ptr(key) {
        // SAFETY: a value of the map; read in place (a copy does not fit the BPF stack
        // beside the parser's).
        let (skb, recorded) = unsafe { ((*n).skb, (*n).recorded) };
        if next == Some(skb as *const u8) {
            // Not consumed by this call (it failed).
            return;
        }
        // SAFETY: as above.
        let (len, port) = unsafe { ((*n).ev.payload_len, (*n).ev.dport) };
        if recorded == 0 {
            // It consumed a datagram the capture does not record.
            unidentified = false;
        } else if ret >= 0 && ret as u32 <= len && kread::<u16>(sk, st.sk_num) == Some(port) {
            unidentified = false;
            // SAFETY: as above.
            write_read(unsafe { &*n }, cgroup(st, core::ptr::null(), sk));
        }
    }
    if unidentified {
        count(hook::UDP_RECV, stat::UNIDENTIFIED);
    }
    if next.is_none() {
        let _ = NEXT_READ.remove(key);
        // A datagram that came since the head was read may have found the entry still
        // there at its data-ready, and left it: look again now that it is gone (if it comes
        // later still, its data-ready finds no entry).
        next = head(st, sk);
    }
    if let Some(skb) = next {
        if !crate::stack::keep_next_read(sk, skb) {
            skip(sk, skb);
        }
    }
}

/// Writes a datagram's `udp_recv` event, stamped now, with its socket's cgroup; with the
/// scheduler hooks, also when the reading thread was woken and got a CPU for it (as for
/// TCP reads, `sock::sched_stamps`), as packet events of the datagram.
///
/// A function of its own (a BPF subprogram with its own stack frame): inlined into the
/// read program beside the parser and the TCP events, the frame passed 512 bytes.
#[inline(never)]
fn write_read(n: &NextRead, cgroup: u64) {
    let st = crate::stack::stack();
    let t = now();
    if st.on(hook::SCHED_WAKEUP) || st.on(hook::SCHED_SWITCH) {
        let (woken, on_cpu) = crate::sock::sched_stamps(tid(), n.ready, t);
        if st.on(hook::SCHED_WAKEUP) {
            write_datagram(&n.ev, hook::SCHED_WAKEUP, woken, cgroup);
        }
        if st.on(hook::SCHED_SWITCH) {
            write_datagram(&n.ev, hook::SCHED_SWITCH, on_cpu, cgroup);
        }
    }
    write_datagram(&n.ev, hook::UDP_RECV, t, cgroup);
}

/// Writes the datagram of `ev` at hook `h`, stamped `ts`.
#[inline(always)]
fn write_datagram(ev: &PacketEvent, h: u8, ts: u64, cgroup: u64) {
    count(h, stat::SEEN);
    count(h, stat::SELECTED);
    let Some(mut entry) = EVENTS.reserve::<StackEvent>(0) else {
        return count(h, stat::RINGBUF_FULL);
    };
    let e = entry.as_mut_ptr();
    // SAFETY: the reservation is exactly one StackEvent; every field is set.
    unsafe {
        core::ptr::copy_nonoverlapping(ev, &raw mut (*e).event, 1);
        (*e).event.ts_ns = ts;
        (*e).event.hook = h;
        (*e).event.cpu = cpu();
        (*e).cgroup = cgroup;
    }
    entry.submit(wakeup_flags());
    count(h, stat::SUBMITTED);
}
