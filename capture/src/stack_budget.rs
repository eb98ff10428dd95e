//! Every program of the eBPF object fits the BPF stack on any kernel: the frames of each
//! chain of BPF-to-BPF calls add up to at most 512 bytes.
//!
//! Kernels since 6.13 may give a tracing program's subprograms private stacks and then check
//! each frame alone; older kernels (and 6.18.44 for the socket programs) add the frames of a
//! chain. A kernel test only sees the configurations it loads, and only the check of the
//! kernel it runs on; this reads the object as the loader links it and checks every program
//! the stricter way, as the verifier's `check_max_stack_depth` does.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use aya_obj::{generated::bpf_insn, Object};

/// The most a chain of calls may use (`MAX_BPF_STACK`).
const MAX_BPF_STACK: u64 = 512;
/// `BPF_PSEUDO_CALL`: a call's source register for a call of a subprogram.
const PSEUDO_CALL: u8 = 1;
/// `BPF_PSEUDO_FUNC`: a 64-bit load of a subprogram's address (a callback).
const PSEUDO_FUNC: u8 = 4;
/// The frame pointer.
const FP: u8 = 10;

/// The bytes below the frame pointer that instruction `i` reaches, tracking registers that
/// hold the frame pointer plus a known offset (`regs`), as a stack address passed to a helper
/// is made.
fn reach(i: &bpf_insn, regs: &mut [Option<i64>; 11]) -> u64 {
    let (class, mode, dst, src) = (i.code & 0x07, i.code & 0xe0, i.dst_reg(), i.src_reg());
    let below = |base: Option<i64>, off: i64| base.map_or(0, |b| (-(b + off)).max(0) as u64);
    let mut depth = 0;
    match class {
        // Loads: LDX from memory at src + off.
        0x01 if mode == 0x60 => {
            depth = below(regs[usize::from(src)], i64::from(i.off));
            regs[usize::from(dst)] = None;
        }
        // Stores: ST / STX (and atomics) to memory at dst + off.
        0x02 | 0x03 => {
            depth = below(regs[usize::from(dst)], i64::from(i.off));
            // An atomic fetch writes its source register (or r0 for a compare-exchange).
            if class == 0x03 && mode == 0xc0 {
                regs[usize::from(src)] = None;
                regs[0] = None;
            }
        }
        // 64-bit ALU: a move from the frame pointer, then additions of constants.
        0x07 => {
            let d = usize::from(dst);
            let (op, from_reg) = (i.code & 0xf0, i.code & 0x08 != 0);
            regs[d] = match (op, from_reg) {
                (0xb0, true) => regs[usize::from(src)],
                (0x00, false) => regs[d].map(|b| b + i64::from(i.imm)),
                (0x10, false) => regs[d].map(|b| b - i64::from(i.imm)),
                _ => None,
            };
            depth = below(regs[d], 0);
        }
        // A call clobbers r0-r5.
        0x05 if i.code == 0x85 => regs[..6].fill(None),
        0x05 | 0x06 => {}
        _ => regs[usize::from(dst)] = None,
    }
    depth
}

/// The subprogram instruction `i` at `pc` calls: a call's target, or a callback whose
/// address it loads (the verifier counts a callback's frame on top of its caller's, too).
fn callee(pc: usize, i: &bpf_insn) -> Option<usize> {
    let called = (i.code == 0x85 && i.src_reg() == PSEUDO_CALL) || (i.code == 0x18 && i.src_reg() == PSEUDO_FUNC);
    called.then(|| (pc as i64 + i64::from(i.imm) + 1) as usize)
}

/// The subprograms of a linked program (its first instruction and everything it calls),
/// each with its frame (bytes, rounded up to 16 as for a JIT) and the subprograms it calls.
fn subprograms(insns: &[bpf_insn]) -> BTreeMap<usize, (u64, BTreeSet<usize>)> {
    let starts: BTreeSet<usize> =
        [0].into_iter().chain(insns.iter().enumerate().filter_map(|(pc, i)| callee(pc, i))).collect();
    let bounds: Vec<usize> = starts.iter().copied().chain([insns.len()]).collect();
    let mut out = BTreeMap::new();
    for w in bounds.windows(2) {
        let (mut frame, mut calls) = (0, BTreeSet::new());
        let mut regs = [None; 11];
        regs[usize::from(FP)] = Some(0);
        let mut pc = w[0];
        while pc < w[1] {
            let i = &insns[pc];
            frame = frame.max(reach(i, &mut regs));
            regs[usize::from(FP)] = Some(0);
            calls.extend(callee(pc, i));
            // A 64-bit immediate load takes two instructions.
            pc += if i.code == 0x18 { 2 } else { 1 };
        }
        out.insert(w[0], (frame.div_ceil(16) * 16, calls));
    }
    out
}

/// The deepest chain of calls from `start`: its bytes and the subprograms on it.
fn deepest(subs: &BTreeMap<usize, (u64, BTreeSet<usize>)>, start: usize) -> (u64, Vec<(usize, u64)>) {
    let (frame, calls) = &subs[&start];
    let below = calls.iter().map(|c| deepest(subs, *c)).max_by_key(|(d, _)| *d).unwrap_or_default();
    let mut chain = vec![(start, *frame)];
    chain.extend(below.1);
    (frame + below.0, chain)
}

/// Every program of the embedded object by name, with its instructions linked as the loader
/// links them (the subprograms it calls appended).
fn linked_programs() -> Vec<(String, Vec<bpf_insn>)> {
    let mut obj = Object::parse(crate::loader::EBPF_OBJ).expect("the embedded eBPF object parses");
    let text: HashSet<usize> = obj.functions.keys().map(|(section, _)| *section).collect();
    obj.relocate_calls(&text).expect("the object's calls link");
    let mut out: Vec<_> = obj
        .programs
        .iter()
        .map(|(name, p)| (name.clone(), obj.functions[&p.function_key()].instructions.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The regression test for the socket programs' stack (608 bytes under the send program
/// and 736 under the read program, with a 328-byte subprogram for socket probes given as
/// data, which Linux 6.18.44 refused): every program's deepest chain of calls is within 512
/// bytes.
#[test]
fn every_programs_chain_of_calls_fits_the_bpf_stack() {
    let programs = linked_programs();
    assert!(programs.len() > 20, "{} programs", programs.len());
    let mut over = Vec::new();
    let mut with_calls = 0;
    for (name, insns) in &programs {
        let subs = subprograms(insns);
        let (depth, chain) = deepest(&subs, 0);
        with_calls += usize::from(chain.len() > 1);
        eprintln!("{name}: {depth} bytes over {chain:?}");
        if depth > MAX_BPF_STACK {
            over.push(format!("{name}: {depth} bytes over the chain (first instruction, frame) {chain:?}"));
        }
    }
    assert!(over.is_empty(), "chains of calls past {MAX_BPF_STACK} bytes:\n{}", over.join("\n"));
    // The reading sees the subprograms (else it would pass anything).
    assert!(with_calls >= 3, "{with_calls} programs call subprograms");
}

/// The reading of frames and calls, on hand-made programs.
#[test]
fn frames_and_calls_are_read_as_the_verifier_counts_them() {
    let insn = |code: u8, dst: u8, src: u8, off: i16, imm: i32| bpf_insn {
        code,
        _bitfield_align_1: [],
        _bitfield_1: bpf_insn::new_bitfield_1(dst, src),
        off,
        imm,
    };
    let insns = [
        // 0: *(u64 *)(r10 - 40) = r1; r2 = r10; r2 += -100 (a key passed to a helper)
        insn(0x7b, FP, 1, -40, 0),
        insn(0xbf, 2, FP, 0, 0),
        insn(0x07, 2, 0, 0, -100),
        // 3: call the subprogram at 6; exit
        insn(0x85, 0, PSEUDO_CALL, 0, 2),
        insn(0x95, 0, 0, 0, 0),
        insn(0x95, 0, 0, 0, 0),
        // 6: r1 = *(u32 *)(r10 - 300); exit
        insn(0x61, 1, FP, -300, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    let subs = subprograms(&insns);
    assert_eq!(subs[&0], (112, BTreeSet::from([6])));
    assert_eq!(subs[&6], (304, BTreeSet::new()));
    assert_eq!(deepest(&subs, 0), (416, vec![(0, 112), (6, 304)]));
    // A callback's address loaded (as for bpf_loop) counts as a call of it.
    let insns = [
        // 0: r2 = the callback at 4 (two instructions); *(u64 *)(r10 - 8) = r1; exit
        insn(0x18, 2, PSEUDO_FUNC, 0, 3),
        insn(0x00, 0, 0, 0, 0),
        insn(0x7b, FP, 1, -8, 0),
        insn(0x95, 0, 0, 0, 0),
        // 4: *(u64 *)(r10 - 64) = r1; exit
        insn(0x7b, FP, 1, -64, 0),
        insn(0x95, 0, 0, 0, 0),
    ];
    let subs = subprograms(&insns);
    assert_eq!(subs[&0], (16, BTreeSet::from([4])));
    assert_eq!(deepest(&subs, 0), (80, vec![(0, 16), (4, 64)]));
}
