//! UDP's socket layer on the send side: when the application's send call began
//! (`udp_send`), for each datagram, with the datagram's identity (the receive side is
//! [`crate::udp_recv`]).
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

use aya_ebpf::{
    macros::{map, tracepoint},
    maps::LruHashMap,
    programs::TracePointContext,
};
use capture_common::{
    abi::{hook, stat},
    offsets::StackConfig,
    parse::{PacketBuf, PacketInfo},
};

use crate::{
    count,
    stack::{kread, now, tid},
    write_stack_event,
};

pub(crate) const IPPROTO_UDP: u16 = 17;

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
