//! UDP's socket layer on the receive side: when the application's receive call returned
//! a datagram (`udp_recv`), with the datagram's identity.
//!
//! The kernel copies a linear UDP datagram to the application with no tracepoint that
//! sees its skb, and by the time `sock_recv_length` fires the datagram is gone from the
//! socket. What a read returns, though, is the head of the socket's receive queues (UDP
//! moves `sk_receive_queue` into its own `reader_queue` and reads from there). So each
//! socket's next read is remembered ([`NEXT_READ`]): a datagram coming to a socket whose
//! queues are empty and that has none, at its ingress (a `cgroup_skb` program UDP runs
//! before it queues the datagram: [`netlat_udp_ingress`]), else at `sk_data_ready` (which
//! fires after the enqueue); and after every read, the new head (after a failed one too,
//! if none is kept). A read that returns while the remembered datagram is no longer at the
//! head consumed it: that is its `udp_recv`, stamped then. The rule corrects itself at
//! every read, so a datagram missed (queued before the capture began, or taken by another
//! thread reading the same socket) costs that row only, and is counted.
//!
//! Without the ingress program (no cgroup v2 hierarchy), a reader already running takes
//! a datagram between its enqueue and its `sk_data_ready` for about half of the datagrams
//! of a reader spinning on a non-blocking socket (`ci_7d11a92_*`); with it, a few in
//! 2,000. Entries carry the socket's count of reads ([`READS`]), so that one kept after its
//! datagram was read is not taken by the next read as its own.

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

/// The datagram a UDP socket's next read returns, as last seen at the head of its queues.
#[derive(Clone, Copy)]
#[repr(C)]
struct NextRead {
    /// Its `sk_buff`, to tell whether a read consumed it.
    skb: u64,
    /// Whether it is recorded (the capture selects it); if not, only `skb` is set, so that
    /// its read is known for what it is.
    recorded: u64,
    /// When it became the next read's: it came to an empty socket (at its ingress, else
    /// `sk_data_ready`), or a call of the reader returned (the reader was running then).
    /// The scheduler stamps of its read are not earlier.
    ready: u64,
    /// The socket's [`READS`] when its head was read: a read that began since may have
    /// taken it unseen, and only the first read after may take the entry.
    gen: u64,
    /// Set when the next datagram came in this one's `sk_buff` ([`arriving`]): the kernel
    /// reuses a freed one at once, and the next datagram can be at the head at the same
    /// address before the read of this one returns.
    taken: u64,
    /// Where [`keep`] puts it: 0, [`NEXT_READ`]; 1, [`AFTER`] (set in the per-CPU slot).
    slot: u64,
    /// Its event, written (stamped anew) when a read consumed it.
    ev: PacketEvent,
}

/// By `struct sock *`.
#[map]
static NEXT_READ: LruHashMap<u64, NextRead> = LruHashMap::with_max_entries(8192, 0);

/// The datagram after a socket's next read, by `struct sock *`, kept at its ingress while
/// the next read's datagram was already taken by a read that has not returned yet (the
/// socket's queues empty): that read makes it the next read ([`promote`]).
#[map]
static AFTER: LruHashMap<u64, NextRead> = LruHashMap::with_max_entries(8192, 0);

/// Reads that returned a datagram, by `struct sock *` of a UDP socket, counted when they
/// return (before their entry is looked at).
#[map]
static READS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(8192, 0);

/// Socket `key`'s [`READS`]. A function of its own: its key's stack slot is then not in
/// the read program's frame, which is at the 512-byte limit with the parser's.
#[inline(never)]
fn reads(key: u64) -> u64 {
    // SAFETY: copied out at once.
    unsafe { READS.get(key) }.copied().unwrap_or(0)
}

/// Where a [`NextRead`] is built (too large for the BPF stack with the parser).
#[map]
static NEXT_SCRATCH: PerCpuArray<NextRead> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn is_udp(st: &StackConfig, sk: *const u8) -> bool {
    kread::<u16>(sk, st.sk_protocol) == Some(IPPROTO_UDP)
}

/// The first skb of the queue at `sk + off` (`struct sk_buff_head`, whose `next` is its
/// first member and points back at the head when the queue is empty); null if none.
///
/// These return null rather than `None`: LLVM stored the undefined pointer of a `None`
/// across a call, which the verifier refuses (`R1 !read_ok`).
#[inline(always)]
fn first(sk: *const u8, off: u16) -> *const u8 {
    let skb = kread::<*const u8>(sk, off).unwrap_or(core::ptr::null());
    if skb == sk.wrapping_add(usize::from(off)) {
        return core::ptr::null();
    }
    skb
}

/// The datagram UDP socket `sk`'s next read returns: the head of its `reader_queue`, else
/// of its `sk_receive_queue` (which a reader moves over whole when the first is empty);
/// null if both are empty.
#[inline(always)]
fn head(st: &StackConfig, sk: *const u8) -> *const u8 {
    if st.sk_receive_queue == NONE {
        return core::ptr::null();
    }
    if st.udp_reader_queue != NONE {
        let skb = first(sk, st.udp_reader_queue);
        if !skb.is_null() {
            return skb;
        }
    }
    first(sk, st.sk_receive_queue)
}

/// Stores the event of the selected datagram of `skb` (parsed by
/// [`crate::stack::keep_next_read`]) as socket `sk`'s next read, unless it has one: the
/// slot's `gen` was set by [`keep_head`].
#[inline(always)]
pub(crate) fn keep(info: &PacketInfo, id: u64, frame_len: u32, sk: *const u8, skb: *const u8) -> bool {
    let Some(n) = NEXT_SCRATCH.get_ptr_mut(0) else { return false };
    // SAFETY: per-CPU slot, filled whole, then copied into the map.
    unsafe {
        fill(&raw mut (*n).ev, info, id, frame_len, hook::UDP_RECV, 0);
        (*n).skb = skb as u64;
        (*n).recorded = 1;
        (*n).ready = (*n).ev.ts_ns;
        slot_map((*n).slot).insert(sk as u64, &*n, BPF_NOEXIST).is_ok()
    }
}

/// Remembers that socket `sk`'s next read returns `skb`, a datagram the capture does not
/// record (not selected, or not parsed): its read is then neither recorded nor counted as
/// one not identified.
#[inline(always)]
fn skip(sk: *const u8, skb: *const u8) {
    let Some(n) = NEXT_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot; only `skb`, `recorded`, `gen` and `taken` (set by `keep_head`)
    // are read back from such an entry.
    unsafe {
        (*n).skb = skb as u64;
        (*n).recorded = 0;
        let _ = slot_map((*n).slot).insert(sk as u64, &*n, BPF_NOEXIST);
    }
}

/// The map of a [`NextRead`]'s `slot`.
#[inline(always)]
fn slot_map(slot: u64) -> &'static LruHashMap<u64, NextRead> {
    if slot == 0 {
        &NEXT_READ
    } else {
        &AFTER
    }
}

/// Keeps `skb`, the head of socket `sk`'s queues, as its next read if it has none, with
/// `gen`, the socket's [`READS`] from before the head was read. `gen` goes through the
/// per-CPU slot rather than a register: held across the parser it took the read program's
/// frame past the 512-byte limit.
#[inline(always)]
fn keep_head(sk: *const u8, skb: *const u8, gen: u64) {
    keep_in(sk, skb, gen, 0);
}

/// Keeps `skb` as socket `sk`'s next read (`slot` 0) or the one after ([`AFTER`], 1).
#[inline(always)]
fn keep_in(sk: *const u8, skb: *const u8, gen: u64, slot: u64) {
    let Some(n) = NEXT_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU slot; the rest is filled by `keep` or `skip`.
    unsafe {
        (*n).gen = gen;
        (*n).taken = 0;
        (*n).slot = slot;
    }
    if !crate::stack::keep_next_read(sk, skb) {
        skip(sk, skb);
    }
}

/// At `sk_data_ready(sk)`: a UDP socket of this namespace with no next read known has one
/// now (a reader waiting on an empty queue reads this datagram), if its ingress did not
/// keep it.
///
/// A reader already running, on another CPU, can take the datagram before its head is read
/// here (the read finds nothing kept and is counted as not identified), or while it is
/// parsed. A read that finished before the entry was kept would leave it to the next read,
/// which would write this datagram as its own, with its own stamp: so the entry carries
/// the socket's [`READS`] from before the head was read, and a read takes it only if it is
/// the one read counted since. It is only added where none is: a read may have kept the new
/// head meanwhile.
#[inline(always)]
pub(crate) fn ready(st: &StackConfig, sk: *const u8) {
    let key = sk as u64;
    // SAFETY: only tested for presence.
    if !is_udp(st, sk) || unsafe { NEXT_READ.get(key) }.is_some() || !our_sock(st, sk) {
        return;
    }
    let gen = reads(key);
    let skb = head(st, sk);
    if skb.is_null() {
        return;
    }
    keep_head(sk, skb, gen);
    // A read counted meanwhile, whose datagram was not this one (still the head): the one
    // that takes it comes after the entry, and may take it.
    let now = reads(key);
    if now != gen && head(st, sk) == skb {
        if let Some(n) = NEXT_READ.get_ptr_mut(key) {
            // SAFETY: a value of the map; two fields.
            unsafe {
                if (*n).skb == skb as u64 {
                    (*n).gen = now;
                }
            }
        }
    }
}

/// Where the ingress program turns its context into the `sk_buff`'s address: a context
/// pointer may be stored in a map when the loader may read kernel pointers (root), and
/// what is read back is a plain number, which the kernel readers take.
#[map]
static SKB_ADDR: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// `cgroup_skb/ingress`, attached at the root of the cgroup v2 hierarchy: UDP runs it (in
/// `sk_filter`) for each datagram it is about to queue on a socket, before any reader can
/// take it. A datagram coming to a socket with an empty queue and no next read kept is the
/// next read: kept here, a reader already running cannot take it unseen, as it can
/// between the enqueue and `sk_data_ready` (where a read found no entry for about half of
/// the datagrams of a spinning reader: `ci_7d11a92_*`). Lets every packet through.
#[cgroup_skb(ingress)]
pub fn netlat_udp_ingress(ctx: SkBuffContext) -> i32 {
    if let Some(slot) = SKB_ADDR.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, written and read back at once.
        let skb = unsafe {
            core::ptr::write_volatile(slot, ctx.skb.skb as u64);
            core::ptr::read_volatile(slot)
        };
        arriving(stack(), skb as *const u8);
    }
    1
}

#[inline(always)]
fn arriving(st: &StackConfig, skb: *const u8) {
    // The socket UDP is queueing to: `skb->sk` while the program runs.
    let Some(sk) = kread::<*const u8>(skb, st.skb_sk) else { return };
    let key = sk as u64;
    if sk.is_null() || !is_udp(st, sk) || !our_sock(st, sk) {
        return;
    }
    let gen = reads(key);
    // Behind datagrams already queued (before the capture began, or with a reader that
    // has fallen behind) it is not the next read; a read keeps it when it is the head.
    if !head(st, sk).is_null() {
        return;
    }
    // With a next read kept while the queues are empty, its datagram was taken, by a read
    // that has not returned yet (or comes from another CPU behind this one): this one is
    // the one after (with the reads counted before it came, checked when it is promoted).
    let slot = match NEXT_READ.get_ptr_mut(key) {
        None => 0,
        Some(n) => {
            // SAFETY: a value of the map; two fields.
            unsafe {
                if (*n).skb == skb as u64 {
                    // The kept datagram's `sk_buff`, freed and reused for this one: the
                    // pending read finds this one at the head, and must not take it for the
                    // kept one.
                    (*n).taken = 1;
                }
            }
            1
        }
    };
    keep_in(sk, skb, gen, slot);
}

/// `skb:kfree_skb(skb, location, reason, rx_sk)`: a datagram kept at its ingress as a
/// socket's next read and then dropped before the queue (by a socket filter, another
/// cgroup's program, or UDP's memory limits) is forgotten, or the socket's next read would
/// take it for its own.
#[btf_tracepoint(function = "kfree_skb")]
pub fn netlat_udp_dropped(ctx: BtfTracePointContext) -> i32 {
    let (skb, sk) = (ctx.arg::<u64>(0), ctx.arg::<u64>(3));
    if sk == 0 {
        return 0;
    }
    for map in [&NEXT_READ, &AFTER] {
        if let Some(n) = map.get_ptr(sk) {
            // SAFETY: a value of the map, one field read.
            if unsafe { (*n).skb } == skb {
                let _ = map.remove(sk);
            }
        }
    }
    0
}

/// At `sock_recv_length(sk, ret, flags)`: a read of UDP socket `sk` returned `ret` bytes.
/// If the remembered datagram left the head, this read consumed it: it is written as
/// `udp_recv`, stamped now, when its length and port agree with the read and the socket
/// (a remembered datagram of a closed socket whose memory a new one reuses does not).
/// Then the new head is remembered. A read that returned a datagram nothing remembered
/// (queued before the capture began, taken by a reader already running between its
/// enqueue and its `sk_data_ready` where the ingress program is not attached, or queued
/// from another CPU ahead of the one remembered) is counted as `unidentified`. A
/// remembered datagram whose `sk_buff` the next one reuses (its ingress tells) is not
/// taken for still at the head.
#[inline(always)]
pub(crate) fn received(st: &StackConfig, sk: *const u8, ret: i32, no_datagram: bool) {
    if no_datagram || !is_udp(st, sk) || !our_sock(st, sk) {
        return;
    }
    let key = sk as u64;
    let mut next = head(st, sk);
    if ret < 0 {
        // A failed read (`EAGAIN` of a reader that does not block) took no datagram, and
        // leaves an entry alone: it may be a datagram between its ingress and the queue.
        // SAFETY: only tested for presence.
        if unsafe { NEXT_READ.get(key) }.is_some() {
            return;
        }
        // With none, a datagram queued since the call looked is kept now, by the thread
        // that reads it next (it cannot take it before): where the data-ready is too late
        // for a spinning reader, this is not.
    } else {
        consumed(st, sk, next, ret);
        if next.is_null() {
            // A datagram that came since the head was read may have found the entry still
            // there at its data-ready, and left it: look again now that it is gone (if it
            // comes later still, its data-ready finds no entry).
            next = head(st, sk);
        }
        if next.is_null() {
            // One on its way to the queue, kept at its ingress meanwhile.
            return promote(key);
        }
        let _ = AFTER.remove(key);
    }
    if !next.is_null() {
        keep_head(sk, next, reads(key));
    }
}

/// A read of socket `sk` returned `ret` bytes, with `next` at the head after it: writes the
/// kept datagram it took, if any, and forgets it, else counts the read as not identified.
#[inline(always)]
fn consumed(st: &StackConfig, sk: *const u8, next: *const u8, ret: i32) {
    let key = sk as u64;
    // Counted first: an entry kept from now on is kept after this read took its datagram.
    count_read(key);
    let Some(n) = NEXT_READ.get_ptr(key) else {
        return count(hook::UDP_RECV, stat::UNIDENTIFIED);
    };
    // SAFETY: a value of the map; read in place (a copy does not fit the BPF stack beside
    // the parser's).
    let (skb, recorded, taken) = unsafe { ((*n).skb, (*n).recorded, (*n).taken) };
    if next == skb as *const u8 && taken == 0 {
        // The kept datagram is still the head: this read took one queued ahead of it that
        // nothing kept (another CPU's, queued between its ingress and the queue).
        return count(hook::UDP_RECV, stat::UNIDENTIFIED);
    }
    // SAFETY: as above.
    let (len, port, gen) = unsafe { ((*n).ev.payload_len, (*n).ev.dport, (*n).gen) };
    if gen.wrapping_add(1) != reads(key) {
        // Kept after a read took it (see `ready`): not this read's datagram.
        count(hook::UDP_RECV, stat::UNIDENTIFIED);
    } else if recorded == 0 {
        // It consumed a datagram the capture does not record.
    } else if ret as u32 <= len && kread::<u16>(sk, st.sk_num) == Some(port) {
        // SAFETY: as above.
        write_read(unsafe { &*n }, cgroup(st, core::ptr::null(), sk));
    } else {
        count(hook::UDP_RECV, stat::UNIDENTIFIED);
    }
    // Only this entry: one kept while it was read (at a datagram's ingress, or its
    // data-ready) is the next read's.
    let _ = NEXT_READ.remove(key);
}

/// Makes socket `key`'s [`AFTER`], if any, its next read, which the next read counted
/// may take (a function of its own, as [`reads`]).
#[inline(never)]
fn promote(key: u64) {
    let Some(a) = AFTER.get_ptr_mut(key) else { return };
    let now = reads(key);
    // SAFETY: a value of the map, copied into the other by the kernel.
    unsafe {
        // Kept before at most one read (the one promoting it) was counted; after more, it
        // was itself read already (kept again at its data-ready), and promoted it would be
        // taken by the next read: every row one read late, from then on (CI on 0b64967).
        if now.wrapping_sub((*a).gen) <= 1 {
            (*a).gen = now;
            let _ = NEXT_READ.insert(key, &*a, BPF_NOEXIST);
        }
    }
    let _ = AFTER.remove(key);
}

/// Adds a read that returned a datagram to socket `key`'s [`READS`] (a function of its own,
/// as [`reads`]).
#[inline(never)]
fn count_read(key: u64) {
    match READS.get_ptr_mut(key) {
        // SAFETY: a value of the map. Two readers of one socket adding at once may lose
        // one of the adds; the count still changes, which is all a kept entry is checked
        // against.
        Some(c) => unsafe { *c += 1 },
        None => {
            let _ = READS.insert(key, 1, BPF_NOEXIST);
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
