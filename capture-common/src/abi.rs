//! `#[repr(C)]` records shared by the kernel programs and the loader.
//!
//! Field order is chosen so that no implicit padding exists: the layout is
//! the same for `bpfel` and `x86_64`, and the compile-time asserts below
//! catch any drift.

/// Hook that produced an event (the `hook` column).
pub mod hook {
    /// XDP, ingress, before the stack allocates an skb.
    pub const XDP: u8 = 0;
    /// TC clsact ingress (after GRO).
    pub const TC_INGRESS: u8 = 1;
    /// TC clsact egress (before the qdisc).
    pub const TC_EGRESS: u8 = 2;
    /// Tracepoint `net:net_dev_queue`: the stack hands the packet to the device layer
    /// (`__dev_queue_xmit`, before TC egress and the qdisc).
    pub const NET_DEV_QUEUE: u8 = 3;
    /// Tracepoint `net:net_dev_start_xmit`: the qdisc hands the packet to the driver.
    pub const NET_DEV_START_XMIT: u8 = 4;
    /// Tracepoint `net:netif_receive_skb`: the driver hands the packet to the stack.
    pub const NETIF_RECEIVE_SKB: u8 = 5;
    /// Tracepoint `qdisc:qdisc_enqueue`: the packet is queued in the device's qdisc.
    pub const QDISC_ENQUEUE: u8 = 6;
    /// Tracepoint `qdisc:qdisc_dequeue`: the qdisc releases it (the first of a bulk).
    pub const QDISC_DEQUEUE: u8 = 7;
    /// Tracepoint `net:napi_gro_receive_entry`: the driver's NAPI poll hands it to GRO.
    pub const NAPI_GRO_RECEIVE: u8 = 8;
    /// Tracepoint `net:net_dev_xmit`: the driver's transmit returned.
    pub const NET_DEV_XMIT: u8 = 9;
    /// Tracepoint `tcp:tcp_probe`: TCP processes a received segment (established socket).
    pub const TCP_PROBE: u8 = 10;
    /// Tracepoint `skb:skb_copy_datagram_iovec` for non-TCP sockets: the datagram is copied
    /// to the application (TCP reads are [`SOCK_RECV`]).
    pub const SKB_COPY_DATAGRAM: u8 = 11;
    /// Tracepoint `skb:kfree_skb`: the packet was dropped ([`super::DropEvent`]).
    pub const KFREE_SKB: u8 = 12;
    /// The application's send call handed TCP bytes to the socket ([`super::SockEvent`]):
    /// stamped at `tcp:tcp_sendmsg_locked`, bytes from `sock:sock_send_length`.
    pub const SOCK_SEND: u8 = 13;
    /// Tracepoint `sock:sk_data_ready`: TCP bytes became readable ([`super::SockEvent`]).
    pub const SK_DATA_READY: u8 = 14;
    /// Tracepoint `sock:sock_recv_length`: the application's read returned these TCP bytes.
    pub const SOCK_RECV: u8 = 15;
    /// Tracepoint `tcp:tcp_retransmit_skb`: these TCP bytes were sent again.
    pub const TCP_RETRANSMIT: u8 = 16;
    /// The reading thread was woken with the bytes ready (`sched:sched_wakeup`), stamped for
    /// the bytes of each read: the later of its last wakeup and the socket's last data-ready.
    pub const SCHED_WAKEUP: u8 = 17;
    /// The reading thread was on a CPU with the bytes ready (`sched:sched_switch`): the later
    /// of its last switch-in and [`SCHED_WAKEUP`]'s stamp.
    pub const SCHED_SWITCH: u8 = 18;
    /// A UDP datagram's send call began (`syscalls:sys_enter_sendto`, `sendmsg`, `sendmmsg`,
    /// `write`, `writev`; for the later datagrams of a `sendmmsg`, the previous one's
    /// return): a packet event, written when the datagram reaches the device layer
    /// (`net:net_dev_queue`) in the sending thread, with the call's time.
    pub const UDP_SEND: u8 = 19;
    /// The application's receive call returned this UDP datagram (`sock:sock_recv_length`):
    /// a packet event with the datagram's identity, read from the head of the socket's
    /// receive queues when it was last seen there (`sock:sk_data_ready`, or the previous
    /// read's return), written when a read consumed it.
    pub const UDP_RECV: u8 = 20;
    /// The first of [`FUNC_SLOTS`] hooks for probe points given as data (`conf/probes.yaml`
    /// entries that are not one of the hooks above: fentry/fexit, kprobe/kretprobe, and
    /// tracepoints with a packet argument). Slot `i` is hook `FUNC + i`; its name is the
    /// catalog probe's, given by the capture at run time (see [`crate::func`]).
    pub const FUNC: u8 = 21;
    /// Number of hooks for probe points given as data.
    pub const FUNC_SLOTS: usize = 10;
    /// Number of hooks; sizes the per-hook statistics.
    pub const COUNT: usize = FUNC as usize + FUNC_SLOTS;
    /// Names used in Parquet and on the command line, indexed by hook id (the catalog's
    /// probe names).
    pub const NAMES: [&str; COUNT] = [
        "xdp",
        "tc_ingress",
        "tc_egress",
        "net_dev_queue",
        "net_dev_start_xmit",
        "netif_receive_skb",
        "qdisc_enqueue",
        "qdisc_dequeue",
        "napi_gro_receive",
        "net_dev_xmit",
        "tcp_probe",
        "skb_copy_datagram",
        "kfree_skb",
        "sock_send",
        "sk_data_ready",
        "sock_recv",
        "tcp_retransmit",
        "sched_wakeup",
        "sched_switch",
        "udp_send",
        "udp_recv",
        "func0",
        "func1",
        "func2",
        "func3",
        "func4",
        "func5",
        "func6",
        "func7",
        "func8",
        "func9",
    ];
    /// Whether `h` is a hook for a probe point given as data (a [`FUNC`] slot).
    pub const fn is_func(h: u8) -> bool {
        h >= FUNC && (h as usize) < COUNT
    }
    /// Whether `h` sees a packet on its way out of the host (`Some(true)`), on its way in
    /// (`Some(false)`), or either ([`FUNC`] slots: not known). A host that saw a packet
    /// only on its way out sent it before any other host received it: the analyzer orders
    /// paths by this, never by clocks alone.
    pub const fn outbound(h: u8) -> Option<bool> {
        match h {
            TC_EGRESS | NET_DEV_QUEUE | NET_DEV_START_XMIT | QDISC_ENQUEUE | QDISC_DEQUEUE | NET_DEV_XMIT
            | SOCK_SEND | UDP_SEND => Some(true),
            XDP | TC_INGRESS | NETIF_RECEIVE_SKB | NAPI_GRO_RECEIVE | TCP_PROBE | SKB_COPY_DATAGRAM | SK_DATA_READY
            | SOCK_RECV | SCHED_WAKEUP | SCHED_SWITCH | UDP_RECV => Some(false),
            _ => None,
        }
    }
    /// Hooks whose events carry a TCP byte range of a socket rather than a packet.
    pub const fn is_socket(h: u8) -> bool {
        matches!(h, SOCK_SEND | SK_DATA_READY | SOCK_RECV | TCP_RETRANSMIT | SCHED_WAKEUP | SCHED_SWITCH)
    }
}

/// Per-hook counters kept in a per-CPU array: index `hook * COUNT + stat`.
pub mod stat {
    /// Packets the hook ran on.
    pub const SEEN: u32 = 0;
    /// Packets that passed filter and sampling: each must become an event
    /// or a counted drop.
    pub const SELECTED: u32 = 1;
    /// Events handed to user space through the ring buffer.
    pub const SUBMITTED: u32 = 2;
    /// Selected packets lost because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 3;
    /// Packets that are not IP (ARP, LLDP, ...): never selected.
    pub const NOT_IP: u32 = 4;
    /// Packets whose headers could not be parsed (truncated, bad IHL,
    /// extension or VLAN chains deeper than supported).
    pub const MALFORMED: u32 = 5;
    /// Sync probes of netlat's own clock-sync protocol, kept out of events.
    pub const SYNC: u32 = 6;
    /// Sync probes whose timestamp was lost because the sync ring buffer
    /// was full.
    pub const SYNC_LOST: u32 = 7;
    /// Reads that returned a datagram the capture had not identified (`udp_recv`): no row
    /// was written for it. It was queued before the capture began (it has no ticket), or
    /// the reads lost their place in the socket's tickets (docs/probes.md).
    pub const UNIDENTIFIED: u32 = 8;
    /// Counters per hook.
    pub const COUNT: u32 = 9;
    /// Column names, indexed by counter id.
    pub const NAMES: [&str; COUNT as usize] =
        ["seen", "selected", "submitted", "ringbuf_full", "not_ip", "malformed", "sync", "sync_lost", "unidentified"];
    /// Size of the statistics array map.
    pub const MAP_LEN: u32 = COUNT * super::hook::COUNT as u32;
}

/// Bits of [`PacketEvent::flags`].
pub mod flags {
    /// An 802.1Q / 802.1ad tag was present (outermost tag in `vlan`).
    pub const VLAN: u8 = 1 << 0;
    /// The addresses and ports are those of the VXLAN inner packet.
    pub const VXLAN: u8 = 1 << 1;
    /// A VXLAN packet inside the inner packet was seen and not parsed.
    pub const NESTED_TUNNEL: u8 = 1 << 2;
    /// IP fragment (first or later); later fragments carry no ports.
    pub const FRAGMENT: u8 = 1 << 3;
    /// The L4 header was cut short by the capture: ports and seq are zero.
    pub const L4_TRUNCATED: u8 = 1 << 4;
}

/// Number of payload bytes folded into the identity hash.
pub const ID_PAYLOAD_BYTES: usize = 8;

/// One selected packet, as written by the kernel into the ring buffer.
///
/// IPv4 addresses occupy the first four bytes of `saddr`/`daddr`, the
/// rest is zero; `family` tells them apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketEvent {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC of the capturing host.
    pub ts_ns: u64,
    /// Identity hash over fields that do not change along the path.
    pub pkt_id: u64,
    /// Source address (IPv4 in the first four bytes).
    pub saddr: [u8; 16],
    /// Destination address (IPv4 in the first four bytes).
    pub daddr: [u8; 16],
    /// TCP sequence number, or ICMP echo sequence.
    pub seq: u32,
    /// TCP acknowledgment number.
    pub ack: u32,
    /// L4 payload bytes (after the TCP/UDP/ICMP header).
    pub payload_len: u32,
    /// Length of the frame as the hook saw it (skb->len or XDP frame).
    pub wire_len: u32,
    /// Interface index the hook is attached to.
    pub ifindex: u32,
    /// IPv4 identification or IPv6 flow label.
    pub ip_id: u32,
    /// VXLAN network identifier (when `flags & VXLAN`).
    pub vni: u32,
    /// CPU the hook ran on.
    pub cpu: u16,
    /// Source port, or ICMP type << 8 | code.
    pub sport: u16,
    /// Destination port, or ICMP echo identifier.
    pub dport: u16,
    /// Outermost VLAN id (when `flags & VLAN`).
    pub vlan: u16,
    /// One of [`hook`].
    pub hook: u8,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol number of the (inner) L4 header.
    pub proto: u8,
    /// TCP flags byte (FIN=1, SYN=2, RST=4, PSH=8, ACK=16, ...).
    pub tcp_flags: u8,
    /// Bits from [`flags`].
    pub flags: u8,
    /// Explicit padding to a multiple of 8 bytes.
    pub _pad: [u8; 7],
}

/// Most bytes of a packet a capture keeps with `--snaplen`.
pub const MAX_SNAPLEN: usize = 256;

/// A selected packet with its first bytes, written instead of a bare [`PacketEvent`] when
/// the capture keeps packet bytes (`CaptureConfig::snaplen > 0`). User space tells the two
/// apart by the ring record's length.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHead {
    /// The event, as without `--snaplen`.
    pub event: PacketEvent,
    /// Bytes of `data` that hold the packet (from its link-layer header on).
    pub len: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// At the stack hooks, the cgroup id of the packet's socket, as in [`StackEvent`]; 0
    /// at XDP and TC, or where the packet has no socket.
    pub cgroup: u64,
    /// The first `len` bytes of the packet.
    pub data: [u8; MAX_SNAPLEN],
}

/// A packet seen by a hook inside the stack (tracepoints, probes given as data): the event
/// with the cgroup (v2) of the packet's socket's creator. The stack hooks write it instead
/// of a bare [`PacketEvent`] (user space tells them apart by length).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackEvent {
    /// The event.
    pub event: PacketEvent,
    /// cgroup id of the packet's socket; 0 where the packet has none (forwarded, or
    /// received before TCP or UDP found its socket) or the kernel keeps none.
    pub cgroup: u64,
}

/// A dropped packet (`skb:kfree_skb`): the packet's event with why and where.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropEvent {
    /// The packet, as at any other hook (`hook` is [`hook::KFREE_SKB`]).
    pub event: PacketEvent,
    /// `enum skb_drop_reason` value (names from the kernel's BTF in user space).
    pub reason: u32,
    /// Explicit padding.
    pub _pad: u32,
    /// Kernel address of the code that freed the packet (symbolized in user space).
    pub location: u64,
    /// cgroup id of the packet's socket, as in [`StackEvent`].
    pub cgroup: u64,
}

/// TCP bytes seen at a socket-level hook ([`hook::is_socket`]): no packet, a byte range.
///
/// Addresses and ports are those of the data's direction (sender → receiver) whichever
/// end records it, so both ends of a connection name the same flow as its packets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockEvent {
    /// `bpf_ktime_get_ns()` (see each hook for what it stamps).
    pub ts_ns: u64,
    /// cgroup id of the task (`bpf_get_current_cgroup_id`), 0 in interrupt context.
    pub cgroup: u64,
    /// Sender's address (IPv4 in the first four bytes).
    pub saddr: [u8; 16],
    /// Receiver's address.
    pub daddr: [u8; 16],
    /// TCP sequence number of the first byte.
    pub seq: u32,
    /// Number of bytes.
    pub len: u32,
    /// Thread id (0 in interrupt context).
    pub tid: u32,
    /// Interface index (0: none).
    pub ifindex: u32,
    /// Sender's port.
    pub sport: u16,
    /// Receiver's port.
    pub dport: u16,
    /// CPU the hook ran on.
    pub cpu: u16,
    /// One of [`hook`].
    pub hook: u8,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol (6).
    pub proto: u8,
    /// Explicit padding.
    pub _pad: [u8; 7],
}

/// The timestamp of one clock-sync probe at one hook, written by the kernel
/// into the `SYNC_EVENTS` ring buffer (apart from packet events, so user
/// traffic filling its ring cannot crowd out clock sync).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStamp {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC of the capturing host.
    pub ts_ns: u64,
    /// Probe session (see [`crate::probe`]).
    pub session: u64,
    /// Pair number within the session.
    pub seq: u64,
    /// Source address (IPv4 in the first four bytes).
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// Interface index the hook is attached to.
    pub ifindex: u32,
    /// UDP source port.
    pub sport: u16,
    /// UDP destination port.
    pub dport: u16,
    /// One of [`hook`].
    pub hook: u8,
    /// 4 or 6.
    pub family: u8,
    /// Probe or reply ([`crate::probe::kind`]).
    pub kind: u8,
    /// 0 or 1: position in the coded pair.
    pub idx: u8,
    /// CPU the hook ran on.
    pub cpu: u16,
    /// Explicit padding.
    pub _pad: [u8; 2],
}

/// What a filter atom tests.
pub mod atom {
    /// Match an address under a mask (`host`, `net`).
    pub const ADDR: u8 = 1;
    /// Match a port range (`port`, `portrange`).
    pub const PORT: u8 = 2;
    /// Match the IP protocol (`tcp`, `udp`, `icmp`, `proto N`).
    pub const PROTO: u8 = 3;
    /// Match the address family (`ip`, `ip6`).
    pub const FAMILY: u8 = 4;
    /// Direction: source only.
    pub const DIR_SRC: u8 = 1;
    /// Direction: destination only.
    pub const DIR_DST: u8 = 2;
    /// Direction: either source or destination.
    pub const DIR_ANY: u8 = 3;
}

/// One predicate of a compiled filter; see [`crate::filter`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterAtom {
    /// Address (IPv4 in the first four bytes).
    pub addr: [u8; 16],
    /// Mask applied to both sides before comparing.
    pub mask: [u8; 16],
    /// Lowest port of the range.
    pub port_lo: u16,
    /// Highest port of the range (inclusive).
    pub port_hi: u16,
    /// One of the `atom::*` kinds.
    pub kind: u8,
    /// One of `atom::DIR_*`.
    pub dir: u8,
    /// Family for ADDR/FAMILY (4 or 6); protocol number for PROTO.
    pub value: u8,
    /// Non-zero: the atom's result is inverted.
    pub negate: u8,
}

/// Most conjunctions in a compiled filter (disjunctive normal form).
pub const MAX_TERMS: usize = 8;
/// Most atoms in one conjunction.
pub const MAX_ATOMS: usize = 8;
/// Most ports in the seed-style port selection list.
pub const MAX_PORTS: usize = 16;

/// A filter expression compiled to disjunctive normal form: the packet
/// matches if every atom of at least one term matches. `n_terms == 0`
/// matches everything.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    /// Atoms, `terms[t][..term_len[t]]` in use.
    pub terms: [[FilterAtom; MAX_ATOMS]; MAX_TERMS],
    /// Used atoms per term.
    pub term_len: [u8; MAX_TERMS],
    /// Used terms; 0 means "match everything".
    pub n_terms: u8,
    /// Explicit padding.
    pub _pad: [u8; 7],
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            terms: [[FilterAtom::default(); MAX_ATOMS]; MAX_TERMS],
            term_len: [0; MAX_TERMS],
            n_terms: 0,
            _pad: [0; 7],
        }
    }
}

/// Load-time configuration of the packet programs (global `CFG`), set once
/// by the loader with `EbpfLoader::set_global`: no per-event branches on
/// user flags beyond reading these constants.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureConfig {
    /// Seed of the consistent-sampling hash (same on every host).
    pub sample_seed: u64,
    /// Keep a packet if `sample_hash(id, seed) <= sample_threshold`;
    /// `u64::MAX` keeps every packet.
    pub sample_threshold: u64,
    /// The compiled filter expression.
    pub filter: Filter,
    /// Seed-style port selection: if `n_ports > 0`, keep only packets whose
    /// source or destination port is listed.
    pub ports: [u16; MAX_PORTS],
    /// Used entries of `ports`.
    pub n_ports: u16,
    /// UDP port recognised as VXLAN (0 disables decapsulation).
    pub vxlan_port: u16,
    /// UDP port of netlat's sync probes (0: none). UDP packets from or to
    /// it that carry a probe header ([`crate::probe`]) are timestamped into
    /// the sync ring buffer, counted as `SYNC`, and never appear as events;
    /// other packets on the port are ordinary traffic.
    pub sync_port: u16,
    /// Bytes of each selected packet to keep (0: none, the default: payload is private);
    /// at most [`MAX_SNAPLEN`].
    pub snaplen: u16,
    /// TCP byte sampling: the stride minus one (0: TCP is not sampled by its bytes); see
    /// [`crate::hash::packet_sampled`].
    pub tcp_sample_mask: u32,
    /// Explicit padding.
    pub _pad: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            sample_seed: 0,
            sample_threshold: u64::MAX,
            filter: Filter::default(),
            ports: [0; MAX_PORTS],
            n_ports: 0,
            vxlan_port: 4789,
            sync_port: 0,
            snaplen: 0,
            tcp_sample_mask: 0,
            _pad: 0,
        }
    }
}

const _: () = assert!(core::mem::size_of::<PacketEvent>() == 96);
const _: () = assert!(core::mem::size_of::<SyncStamp>() == 72);
const _: () = assert!(core::mem::size_of::<DropEvent>() == 120);
const _: () = assert!(core::mem::size_of::<StackEvent>() == 104);
const _: () = assert!(core::mem::size_of::<SockEvent>() == 80);
const _: () = assert!(core::mem::size_of::<PacketHead>() == 96 + 16 + MAX_SNAPLEN);
const _: () = assert!(core::mem::size_of::<FilterAtom>() == 40);
const _: () = assert!(core::mem::size_of::<Filter>() == 40 * MAX_ATOMS * MAX_TERMS + 16);
const _: () = assert!(core::mem::size_of::<CaptureConfig>() & 7 == 0);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain-old-data: repr(C), no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::PacketEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SyncStamp {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::PacketHead {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::StackEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CaptureConfig {}
}
