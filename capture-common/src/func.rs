//! Probe points given as data: catalog entries (`conf/probes.yaml`) that are not one of
//! netlat's own hooks — fentry/fexit and kprobe/kretprobe on any kernel function, and any
//! tracepoint with a packet or TCP socket argument. Each gets a slot (hook [`hook::FUNC`]` + slot`); the
//! loader describes the slots in a [`FuncConfig`] global, read-only for the programs, so a
//! program knows at verification time which argument holds the packet and how.
//!
//! [`hook::FUNC`]: crate::abi::hook::FUNC

use crate::abi::hook::FUNC_SLOTS;

/// How a slot's argument carries the packet ([`FuncSlot::kind`]).
pub mod arg {
    /// Slot not in use.
    pub const UNUSED: u8 = 0;
    /// `struct sk_buff *`.
    pub const SKB: u8 = 1;
    /// `struct sk_buff **` (`__netif_receive_skb_core`).
    pub const PSKB: u8 = 2;
    /// A `void *` token that is the skb unless its low bit is set (virtio-net's
    /// `virtqueue_add_outbuf`: bit 0 marks an XDP frame, bit 1 an orphaned skb).
    pub const SKB_TOKEN: u8 = 3;
    /// `struct sock *` (a TCP socket: the slot records byte ranges, see [`super::FuncSlot`]).
    pub const SOCK: u8 = 4;
    /// `struct socket *` (its `sk` is the sock).
    pub const SOCKET: u8 = 5;

    /// Whether `kind` is a socket argument.
    #[inline(always)]
    pub const fn is_sock(kind: u8) -> bool {
        kind == SOCK || kind == SOCKET
    }
}

/// When a slot's program runs ([`FuncSlot::at`]).
pub mod at {
    /// At the function's entry (fentry, kprobe) or at the tracepoint.
    pub const ENTRY: u8 = 0;
    /// At the function's return (fexit, kretprobe): the packet is the argument the
    /// function was called with (a kretprobe keeps it from the entry, by thread).
    pub const RETURN: u8 = 1;
}

/// One slot.
///
/// A slot with a packet argument records the packet, as the stack tracepoints do. A slot
/// with a socket argument records, for a TCP socket, the bytes of the application's send
/// (`send` = 1) or receive call it ran in: at the entry, it stamps the call, whose bytes
/// are known when the call returns (`sock:sock_send_length` / `sock_recv_length`); at a
/// return, it records the bytes of the call the thread last completed on that socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuncSlot {
    /// Address of the function (kprobe/kretprobe: how the shared kprobe program tells
    /// its functions apart, by `bpf_get_func_ip`); 0 for fentry/fexit and tracepoints,
    /// which have a program per slot.
    pub ip: u64,
    /// One of [`arg`].
    pub kind: u8,
    /// Which argument (0-based; `TP_PROTO` order for tracepoints).
    pub arg: u8,
    /// One of [`at`].
    pub at: u8,
    /// Socket arguments: 1 for the send direction, 0 for the receive direction.
    pub send: u8,
    /// Explicit padding.
    pub _pad: [u8; 4],
}

const _: () = assert!(core::mem::size_of::<FuncSlot>() == 16);

impl FuncSlot {
    /// Whether this slot stamps the calls in the `send` (else receive) direction at their
    /// entry: a socket argument, at a function's entry or a tracepoint.
    #[inline(always)]
    pub fn stamps_calls(&self, send: bool) -> bool {
        arg::is_sock(self.kind) && self.at == at::ENTRY && (self.send != 0) == send
    }
}

/// Every slot; [`arg::UNUSED`] where none is assigned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuncConfig {
    /// Slot `i` is hook `FUNC + i`.
    pub slots: [FuncSlot; FUNC_SLOTS],
}

const _: () = assert!(core::mem::size_of::<FuncConfig>() == 16 * FUNC_SLOTS);

impl FuncConfig {
    /// An empty configuration (no slot in use), as a `const` for the kernel object.
    pub const EMPTY: FuncConfig = FuncConfig {
        slots: [FuncSlot { ip: 0, kind: arg::UNUSED, arg: 0, at: at::ENTRY, send: 0, _pad: [0; 4] }; FUNC_SLOTS],
    };

    /// Whether any slot has a socket argument.
    #[inline(always)]
    pub fn any_sock(&self) -> bool {
        let mut i = 0;
        while i < FUNC_SLOTS {
            if arg::is_sock(self.slots[i].kind) {
                return true;
            }
            i += 1;
        }
        false
    }

    /// The slot serving a kprobe (`at` = `at`) at function address `ip`, if any: the first
    /// in slot order (the loader never gives one function two slots of the same `at`).
    #[inline(always)]
    pub fn kprobe_slot(&self, ip: u64, at: u8) -> Option<usize> {
        let mut i = 0;
        while i < FUNC_SLOTS {
            let s = &self.slots[i];
            if s.kind != arg::UNUSED && s.ip == ip && s.at == at {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// The skb pointer a slot's argument value `v` names, if it names one; `deref` reads a
    /// pointer from kernel memory (for [`arg::PSKB`]).
    #[inline(always)]
    pub fn skb(kind: u8, v: u64, deref: impl FnOnce(u64) -> Option<u64>) -> Option<u64> {
        let skb = match kind {
            arg::SKB => v,
            arg::PSKB if v != 0 => deref(v)?,
            // An XDP frame (bit 0) is not an skb; bit 1 only marks the skb as orphaned.
            arg::SKB_TOKEN if v & 1 == 0 => v & !3,
            _ => return None,
        };
        (skb != 0).then_some(skb)
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: repr(C), integer fields and explicit padding only (size asserted).
    unsafe impl aya::Pod for super::FuncConfig {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kprobe_slot_matches_address_and_when() {
        let mut c = FuncConfig::EMPTY;
        c.slots[2] = FuncSlot { ip: 0x1000, kind: arg::SKB, arg: 1, at: at::ENTRY, send: 0, _pad: [0; 4] };
        c.slots[5] = FuncSlot { ip: 0x1000, kind: arg::SKB, arg: 1, at: at::RETURN, send: 0, _pad: [0; 4] };
        assert_eq!(c.kprobe_slot(0x1000, at::ENTRY), Some(2));
        assert_eq!(c.kprobe_slot(0x1000, at::RETURN), Some(5));
        assert_eq!(c.kprobe_slot(0x2000, at::ENTRY), None);
        // Unused slots (ip 0) never match, even the address 0 bpf_get_func_ip gives on failure.
        assert_eq!(c.kprobe_slot(0, at::ENTRY), None);
    }

    #[test]
    fn only_socket_slots_at_an_entry_stamp_calls_of_their_direction() {
        let slot = |kind, at, send| FuncSlot { ip: 0, kind, arg: 0, at, send, _pad: [0; 4] };
        assert!(slot(arg::SOCK, at::ENTRY, 1).stamps_calls(true));
        assert!(!slot(arg::SOCK, at::ENTRY, 1).stamps_calls(false));
        assert!(slot(arg::SOCKET, at::ENTRY, 0).stamps_calls(false));
        assert!(!slot(arg::SOCKET, at::RETURN, 0).stamps_calls(false));
        assert!(!slot(arg::SKB, at::ENTRY, 0).stamps_calls(false));
    }

    #[test]
    fn skb_from_each_argument_kind() {
        let no = |_| panic!("not read");
        assert_eq!(FuncConfig::skb(arg::SKB, 0xffff_8880_0000_1000, no), Some(0xffff_8880_0000_1000));
        assert_eq!(FuncConfig::skb(arg::SKB, 0, no), None);
        assert_eq!(FuncConfig::skb(arg::PSKB, 0x10, |p| (p == 0x10).then_some(0x2000)), Some(0x2000));
        assert_eq!(FuncConfig::skb(arg::PSKB, 0x10, |_| None), None);
        assert_eq!(FuncConfig::skb(arg::PSKB, 0, no), None);
        assert_eq!(FuncConfig::skb(arg::SKB_TOKEN, 0x3000, no), Some(0x3000));
        assert_eq!(FuncConfig::skb(arg::SKB_TOKEN, 0x3002, no), Some(0x3000), "orphan flag");
        assert_eq!(FuncConfig::skb(arg::SKB_TOKEN, 0x3001, no), None, "an XDP frame");
        assert_eq!(FuncConfig::skb(arg::UNUSED, 0x3000, no), None);
    }
}
