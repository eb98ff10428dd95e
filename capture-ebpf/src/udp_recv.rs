//! UDP's socket layer on the receive side: when the application's receive call returned
//! a datagram (`udp_recv`), with the datagram's identity.
//!
//! The kernel copies a linear UDP datagram to the application with no tracepoint that
//! sees its skb, and by the time `sock_recv_length` fires the datagram is gone from the
//! socket. But a socket's queues are first in, first out. So each datagram gets a ticket
//! as it comes to its socket, in the order UDP queues them: at its ingress, a
//! `cgroup_skb` program UDP runs before it queues the datagram ([`netlat_udp_ingress`]).
//! One dropped before the queue (a socket filter, a full receive buffer) is marked so at
//! `kfree_skb` ([`netlat_udp_dropped`]). A read then returned the datagram just before
//! the one now at the head of the queues: the head's ticket tells which ([`received`]).
//! With the queues empty after the read, it returned the oldest live ticket not yet read
//! (later ones are still on their way to the queue). The rule depends on no timing between
//! the reader and the datagrams' arrival; a datagram that has no ticket (queued before the
//! capture began) or a reader that loses its place (tickets evicted, another thread reading
//! the same socket) costs those reads their rows, which are counted as not identified,
//! until the queue shows its place again.

use aya_ebpf::{
    macros::{btf_tracepoint, cgroup_skb, map},
    maps::{LruHashMap, PerCpuArray},
    programs::{BtfTracePointContext, SkBuffContext},
};
use capture_common::{
    abi::{hook, stat, PacketEvent, StackEvent},
    offsets::{StackConfig, NONE},
    parse::PacketInfo,
};

use crate::{
    count, fill,
    sock::BPF_NOEXIST,
    stack::{cgroup, cpu, kread, now, our_sock, stack, tid},
    udp::IPPROTO_UDP,
    wakeup_flags, EVENTS,
};

/// How far from a socket's next ticket the head of its queues is looked for, and how many
/// dropped tickets a read passes over.
const SCAN: u64 = 8;

/// A UDP socket's tickets.
#[derive(Clone, Copy)]
#[repr(C)]
struct Tickets {
    /// The next datagram's ticket.
    next: u64,
    /// The ticket of the datagram the next read returns, if its place is known.
    read: u64,
    /// Whether the place of the reads is not known: datagrams with no ticket were queued
    /// (before the capture began) or the head of the queue was not a ticket near `read`.
    /// Reads are not identified until the queue's head shows the place, or the queue is
    /// empty after a read (every ticket then was read, or is on its way).
    lost: u64,
    /// When a read of the socket last returned (the reader was running then).
    last_read: u64,
}

/// By `struct sock *`.
#[map]
static SOCKETS: LruHashMap<u64, Tickets> = LruHashMap::with_max_entries(8192, 0);

#[derive(Clone, Copy)]
#[repr(C)]
struct TicketKey {
    sk: u64,
    ticket: u64,
}

/// A datagram that came to a socket.
#[derive(Clone, Copy)]
#[repr(C)]
struct Ticket {
    /// Its `sk_buff`, to find it at the head of the queue.
    skb: u64,
    /// Whether it is recorded (the capture selects it); if not, only `skb` is set.
    recorded: u32,
    /// Dropped before the queue: no read returns it.
    dropped: u32,
    /// Its event, stamped at its ingress (written, stamped anew, when a read returned it).
    ev: PacketEvent,
}

/// Datagrams by socket and ticket; a read removes those it passed.
#[map]
static TICKETS: LruHashMap<TicketKey, Ticket> = LruHashMap::with_max_entries(65536, 0);

/// Where a [`Ticket`] is built (too large for the BPF stack with the parser).
#[map]
static TICKET_SCRATCH: PerCpuArray<Ticket> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn is_udp(st: &StackConfig, sk: *const u8) -> bool {
    kread::<u16>(sk, st.sk_protocol) == Some(IPPROTO_UDP)
}

/// The first skb of the queue at `sk + off` (`struct sk_buff_head`, whose `next` is its
/// first member and points back at the head when the queue is empty); 0 if none.
#[inline(always)]
fn first(sk: *const u8, off: u16) -> u64 {
    let skb = kread::<u64>(sk, off).unwrap_or(0);
    if skb == sk as u64 + u64::from(off) {
        return 0;
    }
    skb
}

/// The datagram UDP socket `sk`'s next read returns: the head of its `reader_queue`, else
/// of its `sk_receive_queue` (which a reader moves over whole when the first is empty);
/// 0 if both are empty.
#[inline(always)]
fn head(st: &StackConfig, sk: *const u8) -> u64 {
    if st.sk_receive_queue == NONE {
        return 0;
    }
    if st.udp_reader_queue != NONE {
        let skb = first(sk, st.udp_reader_queue);
        if skb != 0 {
            return skb;
        }
    }
    first(sk, st.sk_receive_queue)
}

/// Ticket `ticket` of socket `sk`, if kept.
#[inline(always)]
fn ticket(sk: u64, ticket: u64) -> Option<*mut Ticket> {
    TICKETS.get_ptr_mut(&TicketKey { sk, ticket })
}

/// Fills the per-CPU ticket with the selected datagram parsed by
/// [`crate::stack::ticket_datagram`]: its event, stamped now.
#[inline(always)]
pub(crate) fn fill_ticket(info: &PacketInfo, id: u64, frame_len: u32) {
    let Some(n) = TICKET_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot, filled whole.
    unsafe {
        fill(&raw mut (*n).ev, info, id, frame_len, hook::UDP_RECV, 0);
        (*n).recorded = 1;
    }
}

/// Where the ingress program turns its context into the `sk_buff`'s address: a context
/// pointer may be stored in a map when the loader may read kernel pointers (root), and
/// what is read back is a plain number, which the kernel readers take.
#[map]
static SKB_ADDR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `cgroup_skb/ingress`, attached at the root of the cgroup v2 hierarchy: UDP runs it (in
/// `sk_filter`) for each datagram it is about to queue on a socket, before any reader can
/// take it, in the order it queues them. Lets every packet through.
#[cgroup_skb(ingress)]
pub fn netlat_udp_ingress(ctx: SkBuffContext) -> i32 {
    if let Some(slot) = SKB_ADDR.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, written and read back at once.
        let skb = unsafe {
            core::ptr::write_volatile(slot, ctx.skb.skb as u64);
            core::ptr::read_volatile(slot)
        };
        arriving(stack(), skb);
    }
    1
}

/// Gives the datagram of `skb` the next ticket of the UDP socket it is queued on.
#[inline(always)]
fn arriving(st: &StackConfig, skb: u64) {
    // The socket UDP is queueing to: `skb->sk` while the program runs.
    let Some(sk) = kread::<*const u8>(skb as *const u8, st.skb_sk) else { return };
    if sk.is_null() || !is_udp(st, sk) || !our_sock(st, sk) {
        return;
    }
    let key = sk as u64;
    let n = match SOCKETS.get_ptr_mut(key) {
        // SAFETY: a value of the map. Two CPUs queueing on one socket at once may take
        // one ticket; the second overwrites the first's, whose read is then not
        // identified (the queue's head puts the reads back in place).
        Some(s) => unsafe {
            let n = (*s).next;
            (*s).next = n + 1;
            n
        },
        None => {
            // Datagrams already queued have no ticket: the reads' place is unknown until
            // they are read.
            let lost = u64::from(head(st, sk) != 0);
            let s = Tickets { next: 1, read: 0, lost, last_read: 0 };
            if SOCKETS.insert(key, &s, BPF_NOEXIST).is_err() {
                return;
            }
            0
        }
    };
    let Some(t) = TICKET_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot; `ev` is set by `fill_ticket` when the datagram is recorded.
    unsafe {
        (*t).skb = skb;
        (*t).recorded = 0;
        (*t).dropped = 0;
        crate::stack::ticket_datagram(skb as *const u8);
        let _ = TICKETS.insert(&TicketKey { sk: key, ticket: n }, &*t, 0);
    }
}

/// `skb:kfree_skb(skb, location, reason, rx_sk)`: a datagram that got a ticket at its
/// ingress and was then dropped before the queue (by a socket filter, another cgroup's
/// program, or UDP's memory limits) is marked: no read returns it.
#[btf_tracepoint(function = "kfree_skb")]
pub fn netlat_udp_dropped(ctx: BtfTracePointContext) -> i32 {
    let (skb, sk) = (ctx.arg::<u64>(0), ctx.arg::<u64>(3));
    if sk == 0 {
        return 0;
    }
    // SAFETY: copied out at once.
    let Some(s) = (unsafe { SOCKETS.get(sk) }).copied() else { return 0 };
    // The newest first: an older ticket may hold the same, reused, `sk_buff`.
    for k in 1..=SCAN {
        if k > s.next.wrapping_sub(s.read) {
            break;
        }
        if let Some(t) = ticket(sk, s.next - k) {
            // SAFETY: a value of the map; two fields.
            unsafe {
                if (*t).skb == skb {
                    (*t).dropped = 1;
                    break;
                }
            }
        }
    }
    0
}

/// At `sock_recv_length(sk, ret, flags)`: a read of UDP socket `sk` returned `ret` bytes
/// (`no_datagram`: a peek, or a read of the error queue). The datagram it returned is
/// written as `udp_recv`, stamped now, when its length and port agree with the read and
/// the socket (a ticket of a closed socket whose memory a new one reuses does not); a
/// read whose datagram is not known is counted as `unidentified`.
#[inline(always)]
pub(crate) fn received(st: &StackConfig, sk: *const u8, ret: i32, no_datagram: bool) {
    if no_datagram || !is_udp(st, sk) || !our_sock(st, sk) {
        return;
    }
    read_done(st, sk, ret);
}

/// Finds the datagram a read of `sk` that returned `ret` took, writes it, and moves the
/// reads' place on. A function of its own (a BPF subprogram with its own stack frame).
#[inline(never)]
fn read_done(st: &StackConfig, sk: *const u8, ret: i32) {
    let key = sk as u64;
    let t = now();
    let Some(s) = SOCKETS.get_ptr_mut(key) else {
        if ret >= 0 {
            count(hook::UDP_RECV, stat::UNIDENTIFIED);
        }
        return;
    };
    // SAFETY: a value of the map, read and updated in place by this socket's reader.
    let (next, read, lost, last_read) = unsafe { ((*s).next, (*s).read, (*s).lost, (*s).last_read) };
    // SAFETY: as above.
    unsafe { (*s).last_read = t };
    let h = head(st, sk);
    // The head's ticket, looked for from the reads' place on.
    let mut at_head = None;
    if h != 0 {
        for k in 0..SCAN {
            let n = read + k;
            if n >= next {
                break;
            }
            if let Some(p) = ticket(key, n) {
                // SAFETY: a value of the map; two fields.
                if unsafe { (*p).skb == h && (*p).dropped == 0 } {
                    at_head = Some(n);
                    break;
                }
            }
        }
    }
    if ret < 0 {
        // A failed read (`EAGAIN` of a reader that does not block) took no datagram; the
        // head may still show the place.
        if let Some(n) = at_head {
            set_place(s, n, 0);
        }
        return;
    }
    // The ticket this read returned, and the reads' place after it.
    let (took, place, now_lost) = match at_head {
        // The live ticket before the head's, if any of those not read yet.
        Some(n) => (live_before(key, read, n), n, 0),
        // A datagram with no ticket is at the head: this read's had none either.
        None if h != 0 => (None, read, 1),
        // Queue empty: every datagram queued was read, this one last; tickets after
        // the oldest live one are on their way to the queue.
        None if lost == 0 => match live_from(key, read, next) {
            Some(n) => (Some(n), n + 1, 0),
            None => (None, read, 0),
        },
        // With the place lost, every ticket queued so far was read.
        None => (None, next, 0),
    };
    set_place(s, place, now_lost);
    match took {
        Some(n) => written(st, sk, key, n, ret, last_read),
        None => count(hook::UDP_RECV, stat::UNIDENTIFIED),
    }
    forget(key, read, place);
}

/// Writes ticket `n` of socket `sk` (`key`), which a read that returned `ret` took, if the
/// capture records it and it agrees with the read; counts it as not identified if not.
#[inline(always)]
fn written(st: &StackConfig, sk: *const u8, key: u64, n: u64, ret: i32, last_read: u64) {
    let Some(p) = ticket(key, n) else {
        return count(hook::UDP_RECV, stat::UNIDENTIFIED);
    };
    // SAFETY: a value of the map, read in place (a copy does not fit the BPF stack).
    let (recorded, len, port) = unsafe { ((*p).recorded, (*p).ev.payload_len, (*p).ev.dport) };
    if recorded == 0 {
        // A datagram the capture does not record.
    } else if ret as u32 <= len && kread::<u16>(sk, st.sk_num) == Some(port) {
        // SAFETY: as above.
        unsafe {
            // Its read began no earlier than it came, nor than the reader's last call
            // returned (the reader was running then).
            let ready = (*p).ev.ts_ns.max(last_read);
            write_read(&(*p).ev, ready, cgroup(st, core::ptr::null(), sk));
        }
    } else {
        count(hook::UDP_RECV, stat::UNIDENTIFIED);
    }
}

#[inline(always)]
fn set_place(s: *mut Tickets, read: u64, lost: u64) {
    // SAFETY: a value of the map.
    unsafe {
        (*s).read = read;
        (*s).lost = lost;
    }
}

/// The newest ticket in `[from, to)` of socket `key` that was not dropped.
#[inline(always)]
fn live_before(key: u64, from: u64, to: u64) -> Option<u64> {
    for k in 1..=SCAN {
        if to < from + k {
            break;
        }
        let n = to - k;
        // SAFETY: one field of a value of the map.
        if ticket(key, n).is_some_and(|p| unsafe { (*p).dropped } == 0) {
            return Some(n);
        }
    }
    None
}

/// The oldest ticket in `[from, to)` of socket `key` that was not dropped.
#[inline(always)]
fn live_from(key: u64, from: u64, to: u64) -> Option<u64> {
    for k in 0..SCAN {
        let n = from + k;
        if n >= to {
            break;
        }
        // SAFETY: one field of a value of the map.
        if ticket(key, n).is_some_and(|p| unsafe { (*p).dropped } == 0) {
            return Some(n);
        }
    }
    None
}

/// Removes socket `key`'s tickets in `[from, to)`: reads passed them.
#[inline(always)]
fn forget(key: u64, from: u64, to: u64) {
    for k in 0..SCAN {
        let n = from + k;
        if n >= to {
            break;
        }
        let _ = TICKETS.remove(&TicketKey { sk: key, ticket: n });
    }
}

/// Writes a datagram's `udp_recv` event, stamped now, with its socket's cgroup; with the
/// scheduler hooks, also when the reading thread was woken and got a CPU for it (as for
/// TCP reads, `sock::sched_stamps`, not before `ready`), as packet events of the datagram.
#[inline(never)]
fn write_read(ev: &PacketEvent, ready: u64, cgroup: u64) {
    let st = crate::stack::stack();
    let t = now();
    if st.on(hook::SCHED_WAKEUP) || st.on(hook::SCHED_SWITCH) {
        let (woken, on_cpu) = crate::sock::sched_stamps(tid(), ready, t);
        if st.on(hook::SCHED_WAKEUP) {
            write_datagram(ev, hook::SCHED_WAKEUP, woken, cgroup);
        }
        if st.on(hook::SCHED_SWITCH) {
            write_datagram(ev, hook::SCHED_SWITCH, on_cpu, cgroup);
        }
    }
    write_datagram(ev, hook::UDP_RECV, t, cgroup);
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
