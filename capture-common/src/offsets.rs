//! Kernel structure layout handed to the stack-layer programs at load time.
//!
//! The tracepoint programs read `sk_buff`, `net_device` and `net` at byte offsets that
//! user space resolves from the running kernel's BTF (`capture::btf`) and sets as the
//! global `STACK`, so one binary runs on every kernel version without CO-RE relocations.

/// Offsets (bytes) and the namespace a program copy watches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StackConfig {
    /// Inode number of the network namespace this copy records (tracepoints fire for every
    /// namespace; packets of others are skipped).
    pub netns: u32,
    /// `sk_buff.head` (pointer).
    pub skb_head: u16,
    /// `sk_buff.data` (pointer).
    pub skb_data: u16,
    /// `sk_buff.len` (u32).
    pub skb_len: u16,
    /// `sk_buff.mac_header` (u16 offset from head; 0xffff when unset).
    pub skb_mac_header: u16,
    /// `sk_buff.dev` (pointer).
    pub skb_dev: u16,
    /// `net_device.ifindex` (int).
    pub dev_ifindex: u16,
    /// `net_device.nd_net` (`possible_net_t`, whose first member is the `struct net *`).
    pub dev_nd_net: u16,
    /// `net.ns.inum` (u32).
    pub net_inum: u16,
    /// Explicit padding.
    pub _pad: [u16; 4],
}

const _: () = assert!(core::mem::size_of::<StackConfig>() == 28);

#[cfg(feature = "user")]
// SAFETY: plain-old-data: repr(C), no padding, every bit pattern valid.
unsafe impl aya::Pod for StackConfig {}
