//! Evaluation of a compiled filter ([`Filter`]) against parsed headers.
//!
//! The text syntax (`host`, `net`, `port`, `portrange`, `proto`, `and`,
//! `or`, `not`, parentheses) is compiled in user space
//! (`capture::filter`) into disjunctive normal form; here only the constant
//! bounded loops the verifier accepts.

use crate::{
    abi::{atom, CaptureConfig, Filter, FilterAtom},
    parse::PacketInfo,
};

#[inline(always)]
fn addr_eq(a: &[u8; 16], want: &[u8; 16], mask: &[u8; 16]) -> bool {
    let mut i = 0;
    while i < 16 {
        if (a[i] ^ want[i]) & mask[i] != 0 {
            return false;
        }
        i += 1;
    }
    true
}

#[inline(always)]
fn atom_matches(a: &FilterAtom, p: &PacketInfo) -> bool {
    let src = a.dir & atom::DIR_SRC != 0;
    let dst = a.dir & atom::DIR_DST != 0;
    let hit = match a.kind {
        atom::ADDR => {
            p.family == a.value
                && ((src && addr_eq(&p.saddr, &a.addr, &a.mask)) || (dst && addr_eq(&p.daddr, &a.addr, &a.mask)))
        }
        atom::PORT => {
            // Ports only exist for TCP and UDP (tcpdump semantics).
            (p.proto == crate::parse::IPPROTO_TCP || p.proto == crate::parse::IPPROTO_UDP)
                && ((src && p.sport >= a.port_lo && p.sport <= a.port_hi)
                    || (dst && p.dport >= a.port_lo && p.dport <= a.port_hi))
        }
        atom::PROTO => p.proto == a.value,
        atom::FAMILY => p.family == a.value,
        _ => false,
    };
    hit != (a.negate != 0)
}

/// True if `p` passes the filter.
#[inline(always)]
pub fn matches(f: &Filter, p: &PacketInfo) -> bool {
    if f.n_terms == 0 {
        return true;
    }
    // Iterators, not indexing: with `terms[t][i]` LLVM kept bounds checks,
    // i.e. panic paths, which the verifier rejects.
    for (t, (term, len)) in f.terms.iter().zip(f.term_len.iter()).enumerate() {
        if t >= f.n_terms as usize {
            break;
        }
        let mut all = true;
        for (i, a) in term.iter().enumerate() {
            if i >= *len as usize {
                break;
            }
            if !atom_matches(a, p) {
                all = false;
                break;
            }
        }
        if all {
            return true;
        }
    }
    false
}

/// The seed tool's port selection: with a non-empty list, the source or
/// destination port must be listed. Like a `port` atom, only TCP and UDP
/// have ports: ICMP's type/code and echo id (and the zero "ports" of other
/// protocols) must not be mistaken for listed ports.
#[inline(always)]
pub fn port_selected(cfg: &CaptureConfig, p: &PacketInfo) -> bool {
    let n = cfg.n_ports as usize;
    if n == 0 {
        return true;
    }
    if p.proto != crate::parse::IPPROTO_TCP && p.proto != crate::parse::IPPROTO_UDP {
        return false;
    }
    // An iterator, not indexing: LLVM kept a bounds check (a panic path the
    // verifier rejects) on `ports[i]`.
    for (i, port) in cfg.ports.iter().enumerate() {
        if i >= n {
            break;
        }
        if *port == p.sport || *port == p.dport {
            return true;
        }
    }
    false
}
