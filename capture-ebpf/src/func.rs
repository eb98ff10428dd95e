//! Probe points given as data (`conf/probes.yaml` entries that are not netlat's own
//! hooks): fentry/fexit and kprobe/kretprobe on kernel functions, and any tracepoint with
//! a packet or socket argument. Each has a slot in the `FUNCS` global (see
//! `capture_common::func`) and records as hook `FUNC + slot`: packets through the same code
//! as the stack tracepoints (`stack::stack_packet`: namespace, parser, filter, sampling,
//! identity), TCP sockets' bytes through the socket layer's (`sock::probe_fired`).
//!
//! fentry/fexit and tracepoints load one program per slot (the kernel binds a tracing
//! program to its target at load, a raw tracepoint program reads its arguments at offsets
//! checked at attach); kprobes share one program and find their slot by function address.

use aya_ebpf::{
    helpers::generated::{bpf_get_func_arg, bpf_get_func_ip},
    macros::{fentry, fexit, kprobe, kretprobe, map, raw_tracepoint},
    maps::LruHashMap,
    programs::{FEntryContext, FExitContext, ProbeContext, RawTracePointContext, RetProbeContext},
    EbpfContext,
};
use capture_common::{
    abi::hook,
    func::{arg, at, FuncConfig, FuncSlot},
};

use crate::stack::{kread, stack, stack_packet, tid};

/// The slots; `EbpfLoader::override_global("FUNCS", ..)` replaces it.
#[unsafe(no_mangle)]
static FUNCS: FuncConfig = FuncConfig::EMPTY;

/// The slots, read through a volatile pointer like `crate::cfg` (the loader rewrites them).
#[inline(always)]
pub(crate) fn funcs() -> &'static FuncConfig {
    let p: *const FuncConfig = &FUNCS;
    // SAFETY: reads a valid pointer to a static back from the stack.
    unsafe { &*core::ptr::read_volatile(&p) }
}

/// Slot `i`.
#[inline(always)]
fn slot(i: usize) -> &'static FuncSlot {
    &funcs().slots[i]
}

/// Records the packet, or the TCP socket's call, that argument value `v` of slot `i` names.
#[inline(always)]
fn record(i: usize, v: u64) {
    let s = slot(i);
    if arg::is_sock(s.kind) {
        let sk = match s.kind {
            arg::SOCKET => kread::<u64>(v as *const u8, stack().socket_sk).unwrap_or(0),
            _ => v,
        };
        if sk != 0 {
            crate::sock::probe_fired(i, sk as *const u8, s.at, s.send != 0);
        }
        return;
    }
    let deref = |p: u64| kread::<u64>(p as *const u8, 0);
    if let Some(skb) = FuncConfig::skb(s.kind, v, deref) {
        stack_packet(skb as *const u8, hook::FUNC + i as u8);
    }
}

/// Argument `n` of a raw tracepoint. Each read is at a constant offset: the kernel
/// checks at attach that the program reads no argument past the tracepoint's, and `n`
/// comes from the read-only `FUNCS`, so only the taken branch counts.
#[inline(always)]
fn tp_arg(ctx: &RawTracePointContext, n: u8) -> Option<u64> {
    Some(match n {
        0 => ctx.arg::<u64>(0),
        1 => ctx.arg::<u64>(1),
        2 => ctx.arg::<u64>(2),
        3 => ctx.arg::<u64>(3),
        4 => ctx.arg::<u64>(4),
        5 => ctx.arg::<u64>(5),
        _ => return None,
    })
}

/// Argument `n` of the traced function (fentry/fexit), checked by the helper against
/// the function's own argument count.
#[inline(always)]
fn func_arg(ctx: *mut core::ffi::c_void, n: u8) -> Option<u64> {
    let mut v = 0u64;
    // SAFETY: `ctx` is the program's context; `v` is a valid u64 to write.
    (unsafe { bpf_get_func_arg(ctx, u32::from(n), &mut v) } == 0).then_some(v)
}

/// Generates slot `$i`'s raw tracepoint, fentry and fexit programs.
macro_rules! slot_programs {
    ($i:literal, $tp:ident, $fentry:ident, $fexit:ident) => {
        /// A tracepoint given as data, slot
        #[doc = stringify!($i)]
        #[raw_tracepoint]
        pub fn $tp(ctx: RawTracePointContext) -> i32 {
            if let Some(v) = tp_arg(&ctx, slot($i).arg) {
                record($i, v);
            }
            0
        }

        /// fentry given as data, slot
        #[doc = stringify!($i)]
        #[fentry]
        pub fn $fentry(ctx: FEntryContext) -> i32 {
            if let Some(v) = func_arg(ctx.as_ptr(), slot($i).arg) {
                record($i, v);
            }
            0
        }

        /// fexit given as data, slot
        #[doc = stringify!($i)]
        #[fexit]
        pub fn $fexit(ctx: FExitContext) -> i32 {
            if let Some(v) = func_arg(ctx.as_ptr(), slot($i).arg) {
                record($i, v);
            }
            0
        }
    };
}

slot_programs!(0, netlat_func_tp0, netlat_fentry0, netlat_fexit0);
slot_programs!(1, netlat_func_tp1, netlat_fentry1, netlat_fexit1);
slot_programs!(2, netlat_func_tp2, netlat_fentry2, netlat_fexit2);
slot_programs!(3, netlat_func_tp3, netlat_fentry3, netlat_fexit3);
slot_programs!(4, netlat_func_tp4, netlat_fentry4, netlat_fexit4);
slot_programs!(5, netlat_func_tp5, netlat_fentry5, netlat_fexit5);
slot_programs!(6, netlat_func_tp6, netlat_fentry6, netlat_fexit6);
slot_programs!(7, netlat_func_tp7, netlat_fentry7, netlat_fexit7);
slot_programs!(8, netlat_func_tp8, netlat_fentry8, netlat_fexit8);
slot_programs!(9, netlat_func_tp9, netlat_fentry9, netlat_fexit9);

/// A kprobe's argument `n` (registers, in the x86-64 kernel calling convention), read
/// with the helper: LLVM turns a `match` of direct loads into one load at a computed
/// offset, which the verifier refuses on the context ("dereference of modified ctx ptr").
#[inline(always)]
fn probe_arg(ctx: &ProbeContext, n: u8) -> Option<u64> {
    let r = ctx.regs;
    // SAFETY: only addresses inside the context are computed here; the helper reads.
    let p: *const u64 = unsafe {
        match n {
            0 => &raw const (*r).rdi,
            1 => &raw const (*r).rsi,
            2 => &raw const (*r).rdx,
            3 => &raw const (*r).rcx,
            4 => &raw const (*r).r8,
            5 => &raw const (*r).r9,
            _ => return None,
        }
    };
    kread::<u64>(p.cast(), 0)
}

/// Packet arguments of running kretprobe'd calls, by (thread, slot), from their entry
/// to their return.
#[map]
static RET_ARGS: LruHashMap<u64, u64> = LruHashMap::with_max_entries(4096, 0);

#[inline(always)]
fn ret_key(i: usize) -> u64 {
    u64::from(tid()) << 8 | i as u64
}

/// Every kprobe given as data: the slot is found by the function's address. A kretprobe's
/// slot is served here too (its function has this program at its entry as well): the
/// packet argument is kept until the return.
#[kprobe]
pub fn netlat_kprobe(ctx: ProbeContext) -> i32 {
    // SAFETY: the program's own context.
    let ip = unsafe { bpf_get_func_ip(ctx.as_ptr()) };
    let f = funcs();
    if let Some(i) = f.kprobe_slot(ip, at::RETURN) {
        if let Some(v) = probe_arg(&ctx, f.slots[i].arg) {
            let _ = RET_ARGS.insert(ret_key(i), v, 0);
        }
    }
    if let Some(i) = f.kprobe_slot(ip, at::ENTRY) {
        if let Some(v) = probe_arg(&ctx, f.slots[i].arg) {
            record(i, v);
        }
    }
    0
}

/// Every kretprobe given as data: records the packet its call was made with.
#[kretprobe]
pub fn netlat_kretprobe(ctx: RetProbeContext) -> i32 {
    // SAFETY: the program's own context.
    let ip = unsafe { bpf_get_func_ip(ctx.as_ptr()) };
    let f = funcs();
    let Some(i) = f.kprobe_slot(ip, at::RETURN) else { return 0 };
    let key = ret_key(i);
    // SAFETY: copied out at once.
    let Some(v) = (unsafe { RET_ARGS.get(key) }).copied() else { return 0 };
    let _ = RET_ARGS.remove(key);
    record(i, v);
    0
}
