//! Byte offsets of the kernel structure fields the eBPF programs read.
//!
//! Struct layouts change between kernel versions and configurations, so the
//! programs do not hard-code them: the loader reads them from the running
//! kernel's BTF at load time (`capture::btf::offsets::resolve`) and hands this
//! record to the programs as a global, so one binary runs on every kernel.
//! A program reads a field as `bpf_probe_read_kernel(ptr + offset)`.
//!
//! Every offset is a byte offset from the start of the named struct. Fields a
//! kernel may lack (configuration-dependent) hold [`NONE`]; the programs must
//! check for it before reading.

/// Offset of a field the running kernel does not have.
pub const NONE: u16 = u16::MAX;

/// Offsets of `sk_buff`, `net_device`, `sock`, `net` and `tcp_sock` fields.
///
/// Only `u16`s, so there is no padding and the layout is the same in the
/// kernel and in user space.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `sk_buff.head` (`unsigned char *`): start of the buffer; header offsets count from here.
    pub skb_head: u16,
    /// `sk_buff.data` (`unsigned char *`): current start of the packet data.
    pub skb_data: u16,
    /// `sk_buff.len` (`u32`): bytes of packet data, linear and paged.
    pub skb_len: u16,
    /// `sk_buff.data_len` (`u32`): bytes in paged fragments.
    pub skb_data_len: u16,
    /// `sk_buff.network_header`: offset of the IP header from `head`.
    pub skb_network_header: u16,
    /// `sk_buff.transport_header`: offset of the L4 header from `head`.
    pub skb_transport_header: u16,
    /// `sk_buff.mac_header`: offset of the Ethernet header from `head` (`0xffff`: unset).
    pub skb_mac_header: u16,
    /// Size in bytes of the three header fields above (2 on every kernel since
    /// 3.x on 64-bit, kept so a program can refuse a layout it was not built for).
    pub skb_header_size: u16,
    /// `sk_buff.protocol` (`__be16`): ethertype.
    pub skb_protocol: u16,
    /// `sk_buff.dev` (`struct net_device *`).
    pub skb_dev: u16,
    /// `sk_buff.sk` (`struct sock *`): owning socket, if any.
    pub skb_sk: u16,
    /// `sk_buff.tstamp` (`ktime_t`): arrival / departure stamp; [`NONE`] if absent.
    pub skb_tstamp: u16,
    /// `net_device.ifindex` (`int`).
    pub dev_ifindex: u16,
    /// `net_device.nd_net.net` (`struct net *`); [`NONE`] without `CONFIG_NET_NS`.
    pub dev_nd_net: u16,
    /// `sock.__sk_common.skc_family` (`unsigned short`): AF_INET / AF_INET6.
    pub sk_family: u16,
    /// `sock.__sk_common.skc_num` (`__u16`, host order): local port.
    pub sk_num: u16,
    /// `sock.__sk_common.skc_dport` (`__be16`): remote port.
    pub sk_dport: u16,
    /// `sock.__sk_common.skc_rcv_saddr` (`__be32`): local IPv4 address.
    pub sk_rcv_saddr: u16,
    /// `sock.__sk_common.skc_daddr` (`__be32`): remote IPv4 address.
    pub sk_daddr: u16,
    /// `sock.__sk_common.skc_v6_rcv_saddr` (`struct in6_addr`); [`NONE`] without IPv6.
    pub sk_v6_rcv_saddr: u16,
    /// `sock.__sk_common.skc_v6_daddr` (`struct in6_addr`); [`NONE`] without IPv6.
    pub sk_v6_daddr: u16,
    /// `sock.__sk_common.skc_net.net` (`struct net *`); [`NONE`] without `CONFIG_NET_NS`.
    pub sk_net: u16,
    /// `net.ns.inum` (`unsigned int`): the namespace inode, as in `/proc/PID/ns/net`.
    pub net_ns_inum: u16,
    /// `tcp_sock.write_seq` (`u32`): sequence number after the last byte the application wrote.
    pub tcp_write_seq: u16,
    /// `tcp_sock.snd_una` (`u32`): first byte not yet acknowledged.
    pub tcp_snd_una: u16,
    /// `tcp_sock.snd_nxt` (`u32`): next sequence number to send.
    pub tcp_snd_nxt: u16,
    /// `tcp_sock.copied_seq` (`u32`): first byte the application has not read yet.
    pub tcp_copied_seq: u16,
    /// `tcp_sock.rcv_nxt` (`u32`): next sequence number expected.
    pub tcp_rcv_nxt: u16,
    /// `sk_buff.cb` (`char[48]`): control block; TCP keeps `seq` and `end_seq` at its start.
    pub skb_cb: u16,
    /// `sock.sk_protocol` (`u16`): IPPROTO_*.
    pub sk_protocol: u16,
    /// `task_struct.pid` (`pid_t`): thread id.
    pub task_pid: u16,
    /// `sock.sk_cgrp_data.cgroup` (`struct cgroup *`): the cgroup (v2) of the socket's
    /// creator; [`NONE`] without `CONFIG_SOCK_CGROUP_DATA`.
    pub sk_cgroup: u16,
    /// `cgroup.kn` (`struct kernfs_node *`).
    pub cgroup_kn: u16,
    /// `kernfs_node.id` (`u64`): the cgroup id (the inode of its cgroupfs directory).
    pub kn_id: u16,
    /// `sock.sk_receive_queue` (`struct sk_buff_head`, whose first member points at the
    /// first queued skb, or back at the head when empty).
    pub sk_receive_queue: u16,
    /// `udp_sock.reader_queue` (`struct sk_buff_head`): datagrams UDP moved out of
    /// `sk_receive_queue` for its reader; [`NONE`] on kernels before 4.13.
    pub udp_reader_queue: u16,
    /// `socket.sk` (`struct sock *`): the sock of a `struct socket`.
    pub socket_sk: u16,
}

const _: () = assert!(core::mem::size_of::<KernelOffsets>() == 74);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), only u16 fields, no padding (checked by the size assert).
    unsafe impl aya::Pod for super::KernelOffsets {}
}

/// What the tracepoint programs read (`--layers stack` and above): the offsets they need,
/// filled from [`KernelOffsets`], the namespace a program copy watches and which hooks it
/// records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackConfig {
    /// Inode number of the network namespace this copy records (tracepoints fire for every
    /// namespace; packets and sockets of others are skipped).
    pub netns: u32,
    /// Bit `1 << hook` for every tracepoint hook this capture records.
    pub hooks: u32,
    /// `SKB_CONSUMED` of `enum skb_drop_reason`: a free that is not a drop.
    pub drop_consumed: u32,
    /// `sk_buff.head` (pointer).
    pub skb_head: u16,
    /// `sk_buff.data` (pointer).
    pub skb_data: u16,
    /// `sk_buff.len` (u32).
    pub skb_len: u16,
    /// `sk_buff.mac_header` (u16 offset from head; 0xffff when unset).
    pub skb_mac_header: u16,
    /// `sk_buff.network_header` (u16 offset from head).
    pub skb_network_header: u16,
    /// `sk_buff.dev` (pointer).
    pub skb_dev: u16,
    /// `sk_buff.sk` (pointer).
    pub skb_sk: u16,
    /// `sk_buff.cb` (TCP: `seq`, `end_seq` at its start).
    pub skb_cb: u16,
    /// `net_device.ifindex` (int).
    pub dev_ifindex: u16,
    /// `net_device.nd_net` (`possible_net_t`, whose first member is the `struct net *`).
    pub dev_nd_net: u16,
    /// `net.ns.inum` (u32).
    pub net_inum: u16,
    /// `sock.skc_family` (u16).
    pub sk_family: u16,
    /// `sock.sk_protocol` (u16).
    pub sk_protocol: u16,
    /// `sock.skc_num` (u16, host order).
    pub sk_num: u16,
    /// `sock.skc_dport` (be16).
    pub sk_dport: u16,
    /// `sock.skc_rcv_saddr` (be32).
    pub sk_rcv_saddr: u16,
    /// `sock.skc_daddr` (be32).
    pub sk_daddr: u16,
    /// `sock.skc_v6_rcv_saddr` ([`NONE`] without IPv6).
    pub sk_v6_rcv_saddr: u16,
    /// `sock.skc_v6_daddr` ([`NONE`] without IPv6).
    pub sk_v6_daddr: u16,
    /// `sock.skc_net` (pointer).
    pub sk_net: u16,
    /// `tcp_sock.write_seq` (u32).
    pub tcp_write_seq: u16,
    /// `tcp_sock.copied_seq` (u32).
    pub tcp_copied_seq: u16,
    /// `tcp_sock.rcv_nxt` (u32).
    pub tcp_rcv_nxt: u16,
    /// `task_struct.pid` (i32).
    pub task_pid: u16,
    /// `sock.sk_cgrp_data.cgroup` ([`NONE`]: no cgroup of packets).
    pub sk_cgroup: u16,
    /// `cgroup.kn` ([`NONE`]: as above).
    pub cgroup_kn: u16,
    /// `kernfs_node.id` ([`NONE`]: as above).
    pub kn_id: u16,
    /// `sock.sk_receive_queue` ([`NONE`]: no `udp_recv`).
    pub sk_receive_queue: u16,
    /// `udp_sock.reader_queue` ([`NONE`]: the kernel has only `sk_receive_queue`).
    pub udp_reader_queue: u16,
    /// `socket.sk` (probes given as data with a `struct socket *` argument).
    pub socket_sk: u16,
}

impl StackConfig {
    /// Whether hook `h` is recorded.
    #[inline(always)]
    pub fn on(&self, h: u8) -> bool {
        self.hooks & (1 << h) != 0
    }
}

const _: () = assert!(core::mem::size_of::<StackConfig>() == 72);
const _: () = assert!(crate::abi::hook::COUNT <= 32);

#[cfg(feature = "user")]
// SAFETY: plain-old-data: repr(C), no padding, every bit pattern valid.
unsafe impl aya::Pod for StackConfig {}
