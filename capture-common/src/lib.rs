//! The contract between netlat's eBPF programs and its user space.
//!
//! Everything here is `no_std` and free of allocation so the very same code
//! runs in the kernel (built for `bpfel-unknown-none`) and on the host, where
//! it is unit-tested and fuzzed:
//!
//! * [`abi`]: `#[repr(C)]` event and configuration records with compile-time
//!   size checks, mirrored field for field on both sides;
//! * [`parse`]: the packet parser (Ethernet, 802.1Q, IPv4, IPv6 with
//!   extension headers, TCP, UDP, ICMP, VXLAN) over any [`parse::PacketBuf`];
//! * [`hash`]: the packet identity hash and consistent sampling;
//! * [`filter`]: evaluation of a compiled filter expression;
//! * [`probe`]: the wire format of clock-sync probes;
//! * [`func`]: the probe points given as data (fentry, kprobe, any tracepoint), by slot;
//! * [`offsets`]: kernel structure field offsets, read from BTF at load time;
//! * `compile` (feature `std`, user space only): the compiler of filter expressions into the
//!   table [`filter`] evaluates, shared by the capture and the analyzer.
#![cfg_attr(not(test), no_std)]

pub mod abi;
#[cfg(feature = "std")]
extern crate std;
#[cfg(feature = "std")]
pub mod compile;
pub mod filter;
pub mod func;
pub mod hash;
pub mod offsets;
pub mod parse;
pub mod probe;
