//! Tests of the filter compiler. The main check is semantic: a compiled
//! filter, evaluated by the kernel's own `capture_common::filter::matches`,
//! must agree with a direct evaluation of the expression on many packets.

use super::*;
use crate::{filter::matches, parse::PacketInfo};
use std::net::IpAddr;

// ------------------------------------------------------------- helpers

fn addr(s: &str) -> (u8, [u8; 16]) {
    match s.parse::<IpAddr>().unwrap() {
        IpAddr::V4(a) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        }
        IpAddr::V6(a) => (6, a.octets()),
    }
}

fn pkt(s: &str, d: &str, proto: u8, sport: u16, dport: u16) -> PacketInfo {
    let (family, saddr) = addr(s);
    let (f2, daddr) = addr(d);
    assert_eq!(family, f2);
    PacketInfo { saddr, daddr, family, proto, sport, dport, ..PacketInfo::default() }
}

use crate::parse::tests::Rng;

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// A mix of IPv4/IPv6, protocols and ports, including ICMP with "ports"
/// equal to the port numbers used by the expressions.
fn packets() -> Vec<PacketInfo> {
    let v4 = ["10.0.0.1", "10.0.0.2", "10.0.5.9", "10.200.0.1", "192.168.1.1", "8.8.8.8"];
    let v6 = ["2001:db8::1", "2001:db8::2", "2001:db9::1", "fe80::1", "::1"];
    let protos = [6, 17, 1, 58, 47];
    let ports = [53, 80, 443, 1000, 1500, 2000, 2001, 5000, 0];
    let mut v = vec![
        pkt("10.0.0.1", "10.0.0.1", 6, 80, 80),
        pkt("10.0.0.2", "10.0.0.2", 17, 53, 53),
        pkt("fe80::1", "fe80::1", 6, 443, 1000),
        pkt("10.0.0.1", "10.0.0.2", 1, 53, 53),
        pkt("2001:db8::1", "2001:db8::2", 58, 80, 443),
        pkt("192.168.1.1", "10.0.5.9", 47, 0, 0),
    ];
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    while v.len() < 60 {
        let six = rng.below(3) == 0;
        let pool: &[&str] = if six { &v6 } else { &v4 };
        let (s, d) = (*rng.pick(pool), *rng.pick(pool));
        v.push(pkt(s, d, *rng.pick(&protos), *rng.pick(&ports), *rng.pick(&ports)));
    }
    v
}

/// Straightforward evaluation of the parsed expression, written from the
/// tcpdump semantics independently of the DNF lowering.
fn eval(ast: &Ast, p: &PacketInfo) -> bool {
    match ast {
        Ast::Not(x) => !eval(x, p),
        Ast::And(a, b) => eval(a, p) && eval(b, p),
        Ast::Or(a, b) => eval(a, p) || eval(b, p),
        Ast::Prim(Prim::Addr { dir, family, addr, mask }) => {
            let m = u128::from_be_bytes(*mask);
            let want = u128::from_be_bytes(*addr) & m;
            let s = u128::from_be_bytes(p.saddr) & m == want;
            let d = u128::from_be_bytes(p.daddr) & m == want;
            p.family == *family
                && match dir {
                    Dir::Src => s,
                    Dir::Dst => d,
                    Dir::Either => s || d,
                    Dir::Both => s && d,
                }
        }
        Ast::Prim(Prim::Port { dir, lo, hi }) => {
            let s = (*lo..=*hi).contains(&p.sport);
            let d = (*lo..=*hi).contains(&p.dport);
            (p.proto == 6 || p.proto == 17)
                && match dir {
                    Dir::Src => s,
                    Dir::Dst => d,
                    Dir::Either => s || d,
                    Dir::Both => s && d,
                }
        }
        Ast::Prim(Prim::Proto(n)) => p.proto == *n,
        Ast::Prim(Prim::Family(f)) => p.family == *f,
    }
}

fn c(expr: &str) -> Filter {
    compile(expr).unwrap_or_else(|e| panic!("{expr:?}: {e}"))
}

fn err(expr: &str) -> FilterError {
    compile(expr).expect_err(expr)
}

fn atoms(f: &Filter) -> Vec<Vec<FilterAtom>> {
    (0..f.n_terms as usize).map(|t| f.terms[t][..f.term_len[t] as usize].to_vec()).collect()
}

fn v4_atom(dir: u8, a: [u8; 4], prefix: u32, negate: u8) -> FilterAtom {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&a);
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&(u32::MAX.checked_shl(32 - prefix).unwrap_or(0)).to_be_bytes());
    FilterAtom { addr, mask, kind: atom::ADDR, dir, value: 4, negate, ..FilterAtom::default() }
}

// ----------------------------------------------------- compiled structure

#[test]
fn empty_expression_matches_everything() {
    for e in ["", "   ", "\t\n "] {
        assert_eq!(c(e), Filter::default());
    }
}

#[test]
fn src_and_dst_is_two_atoms_in_one_term() {
    let f = c("src and dst host 10.0.0.1");
    let x = [10, 0, 0, 1];
    assert_eq!(atoms(&f), vec![vec![v4_atom(atom::DIR_SRC, x, 32, 0), v4_atom(atom::DIR_DST, x, 32, 0)]]);
    assert_eq!(c("dst && src host 10.0.0.1"), f);
}

#[test]
fn negated_src_and_dst_is_two_terms() {
    let f = c("not (src and dst host 10.0.0.1)");
    let x = [10, 0, 0, 1];
    assert_eq!(atoms(&f), vec![vec![v4_atom(atom::DIR_SRC, x, 32, 1)], vec![v4_atom(atom::DIR_DST, x, 32, 1)]]);
}

#[test]
fn not_port_is_one_negated_any_direction_atom() {
    let want = FilterAtom {
        port_lo: 53,
        port_hi: 53,
        kind: atom::PORT,
        dir: atom::DIR_ANY,
        negate: 1,
        ..FilterAtom::default()
    };
    assert_eq!(atoms(&c("not port 53")), vec![vec![want]]);
    assert_eq!(atoms(&c("!port 53")), vec![vec![want]]);
    assert_eq!(atoms(&c("not not not port 53")), vec![vec![want]]);
}

#[test]
fn equivalent_spellings_compile_alike() {
    let same = [
        ["host 10.0.0.1", "src or dst host 10.0.0.1", "10.0.0.1"],
        ["dst or src 10.0.0.1", "HOST 10.0.0.1", "(host 10.0.0.1)"],
        ["net 10.0.0.0/8", "net 10.0.0.0 mask 255.0.0.0", "10.0.0.0/8"],
        ["proto 6", "proto tcp", "proto \\tcp"],
        ["tcp", "Tcp", "((tcp))"],
        ["tcp or tcp", "tcp or (tcp and port 80)", "tcp and tcp"],
        ["not tcp and udp", "(not tcp) and udp", "!tcp && udp"],
        ["tcp or udp and port 53", "tcp or (udp and port 53)", "tcp || udp && port 53"],
        ["src 10.0.0.1", "src host 10.0.0.1", "src net 10.0.0.1/32"],
        ["net 2001:db8::/32", "net 2001:db8:: mask ffff:ffff::", "2001:db8::/32"],
    ];
    for group in same {
        let f = c(group[0]);
        for e in &group[1..] {
            assert_eq!(c(e), f, "{e:?} vs {:?}", group[0]);
        }
    }
    // Precedence: not > and > or (not tcpdump's equal and/or precedence).
    assert_ne!(c("tcp or udp and port 53"), c("(tcp or udp) and port 53"));
}

#[test]
fn protocol_family_and_qualified_ports() {
    let proto = |n| FilterAtom { kind: atom::PROTO, value: n, ..FilterAtom::default() };
    let family = |n| FilterAtom { kind: atom::FAMILY, value: n, ..FilterAtom::default() };
    assert_eq!(atoms(&c("ip proto 17")), vec![vec![family(4), proto(17)]]);
    assert_eq!(atoms(&c("ip6 proto icmp6")), vec![vec![family(6), proto(58)]]);
    assert_eq!(atoms(&c("icmp or icmp6")), vec![vec![proto(1)], vec![proto(58)]]);
    assert_eq!(atoms(&c("ip or ip6")), vec![vec![family(4)], vec![family(6)]]);
    let port = FilterAtom { port_lo: 80, port_hi: 80, kind: atom::PORT, dir: atom::DIR_DST, ..FilterAtom::default() };
    assert_eq!(atoms(&c("tcp dst port 80")), vec![vec![proto(6), port]]);
    let range =
        FilterAtom { port_lo: 1000, port_hi: 2000, kind: atom::PORT, dir: atom::DIR_ANY, ..FilterAtom::default() };
    assert_eq!(atoms(&c("udp portrange 1000-2000")), vec![vec![proto(17), range]]);
    // `ip host` / `ip6 net` just check the family of the address.
    assert_eq!(c("ip host 10.0.0.1"), c("host 10.0.0.1"));
    assert_eq!(c("ip6 src net 2001:db8::/32"), c("src net 2001:db8::/32"));
}

#[test]
fn ipv6_addresses_and_masks() {
    let f = c("dst net 2001:db8:ff00::/40");
    let a = atoms(&f)[0][0];
    assert_eq!((a.kind, a.dir, a.value), (atom::ADDR, atom::DIR_DST, 6));
    assert_eq!(a.addr, "2001:db8:ff00::".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(a.mask, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let h = atoms(&c("host ::ffff:10.0.0.1"))[0][0];
    assert_eq!((h.value, h.mask), (6, [0xFF; 16]), "an IPv4-mapped address is IPv6");
    let n = atoms(&c("net 10.128.0.0/9"))[0][0];
    assert_eq!(n.mask, [0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let all = atoms(&c("net 0.0.0.0/0"))[0][0];
    assert_eq!((all.mask, all.value), ([0; 16], 4));
}

#[test]
fn unsatisfiable_expression_matches_nothing() {
    for e in ["tcp and not tcp", "not (port 1 or not port 1)", "(host 10.0.0.1 and not host 10.0.0.1) and udp"] {
        let f = c(e);
        assert_eq!(f.n_terms, 1, "{e}");
        assert!(packets().iter().all(|p| !matches(&f, p)), "{e}");
    }
}

#[test]
fn contradictions_and_repeats_cost_no_terms() {
    let proto = |n| FilterAtom { kind: atom::PROTO, value: n, ..FilterAtom::default() };
    assert_eq!(atoms(&c("(tcp and not tcp) or udp")), vec![vec![proto(17)]]);
    assert_eq!(atoms(&c("tcp and (not tcp or udp)")), vec![vec![proto(6), proto(17)]]);
    assert_eq!(atoms(&c("udp or tcp or udp or (tcp and udp)")), vec![vec![proto(17)], vec![proto(6)]]);
}

#[test]
fn kernel_limits() {
    // Exactly MAX_TERMS terms and MAX_ATOMS atoms fit.
    let terms: Vec<String> = (1..=MAX_TERMS).map(|i| format!("port {i}")).collect();
    assert_eq!(c(&terms.join(" or ")).n_terms as usize, MAX_TERMS);
    let conj: Vec<String> = (1..=MAX_ATOMS).map(|i| format!("not port {i}")).collect();
    assert_eq!(c(&conj.join(" and ")).term_len[0] as usize, MAX_ATOMS);
    // One more does not.
    let too_many = format!("{} or port 999", terms.join(" or "));
    let e = err(&too_many);
    assert!(matches!(e, FilterError::TooComplex { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains("too complex for the kernel filter") && msg.contains("9 alternatives"), "{msg}");
    assert!(msg.contains(&format!("at most {MAX_TERMS}")) && msg.contains(&format!("at most {MAX_ATOMS}")), "{msg}");
    let e = err(&format!("{} and not port 999", conj.join(" and ")));
    assert!(e.to_string().contains("up to 9 conditions"), "{e}");
    // Distribution: 3 x 3 = 9 terms.
    let e = err("(port 1 or port 2 or port 3) and (host 10.0.0.1 or host 10.0.0.2 or host 10.0.0.3)");
    assert!(matches!(e, FilterError::TooComplex { .. }), "{e}");
    // 2^11 intermediate terms: refused before building them all.
    let big: Vec<String> = (0..11).map(|i| format!("(port {} or port {})", 2 * i, 2 * i + 1)).collect();
    assert!(err(&big.join(" and ")).to_string().contains("more than 1024"));
    // Negation of a conjunction of eight ports: eight one-atom terms.
    assert_eq!(c(&format!("not ({})", conj.join(" and "))).n_terms as usize, MAX_TERMS);
}

#[test]
fn long_and_deep_expressions_are_refused_cleanly() {
    let deep = format!("{}tcp", "not ".repeat(MAX_NESTING + 1));
    assert!(matches!(err(&deep), FilterError::TooDeep { .. }));
    let parens = format!("{}tcp{}", "(".repeat(MAX_NESTING + 1), ")".repeat(MAX_NESTING + 1));
    assert!(matches!(err(&parens), FilterError::TooDeep { col } if col == MAX_NESTING + 1));
    assert_eq!(c(&format!("{}tcp", "not ".repeat(MAX_NESTING))), c(["tcp", "not tcp"][MAX_NESTING & 1]));
    let long = vec!["tcp"; MAX_TOKENS].join(" or ");
    assert!(matches!(err(&long), FilterError::TooComplex { .. }));
    let ok = vec!["tcp"; 200].join(" or ");
    assert_eq!(c(&ok), c("tcp"));
}

// ------------------------------------------------------------------ errors

#[test]
fn error_messages_name_the_token_and_column() {
    let cases: &[(&str, &str)] = &[
        ("tcp and port abc", "filter: expected a port number after 'port' at column 14, found 'abc'"),
        ("port 70000", "filter: expected a port number after 'port' at column 6, found '70000'"),
        ("port", "filter: expected a port number after 'port' at column 5, found the end of the expression"),
        ("port and tcp", "filter: expected a port number after 'port' at column 6, found 'and'"),
        ("tcp and foo", "filter: unknown keyword 'foo' at column 9"),
        ("tcp udp", "filter: expected 'and', 'or' or the end of the expression at column 5, found 'udp'"),
        (
            "(tcp or udp",
            "filter: expected ')' (to close the '(' at column 1) at column 12, found the end of the expression",
        ),
        ("tcp)", "filter: expected 'and', 'or' or the end of the expression at column 4, found ')'"),
        (
            "tcp and",
            "filter: expected a primitive such as 'host', 'port' or 'tcp' at column 8, found the end of the expression",
        ),
        ("()", "filter: expected a primitive such as 'host', 'port' or 'tcp' at column 2, found ')'"),
        ("tcp & udp", "filter: expected '&&' at column 5, found '&'"),
        ("tcp |udp", "filter: expected '||' at column 5, found '|'"),
        ("src tcp", "filter: expected 'host', 'net', 'port', 'portrange' or an address at column 5, found 'tcp'"),
        ("tcp src host 10.0.0.1", "filter: expected 'port' or 'portrange' at column 9, found 'host'"),
        ("ip port 80", "filter: expected 'and', 'or' or the end of the expression at column 4, found 'port'"),
        ("ip src port 80", "filter: expected 'host', 'net' or an address at column 8, found 'port'"),
        ("proto foo", "filter: invalid protocol 'foo' at column 7: give 0..255 or tcp, udp, icmp, icmp6"),
        ("proto 256", "filter: invalid protocol '256' at column 7: give 0..255 or tcp, udp, icmp, icmp6"),
        (
            "portrange 2000-1000",
            "filter: invalid port range '2000-1000' at column 11: the first port is larger than the second",
        ),
        ("portrange 80", "filter: invalid port range '80' at column 11: expected two port numbers such as 1000-2000"),
        ("net 10.0.0.1/8", "filter: invalid network '10.0.0.1/8' at column 5: address bits are set outside the mask"),
        ("net 10.0.0.0/33", "filter: invalid prefix '10.0.0.0/33' at column 5: the prefix length must be 0..32"),
        ("net 2001:db8::/129", "filter: invalid prefix '2001:db8::/129' at column 5: the prefix length must be 0..128"),
        ("host 10.1", "filter: invalid IPv4 address '10.1' at column 6: give all four octets, e.g. 10.1.0.0/16"),
        (
            "host 10.0.0.256",
            "filter: invalid IPv4 address '10.0.0.256' at column 6: give all four octets, e.g. 10.1.0.0/16",
        ),
        ("host 2001:db8:::1", "filter: invalid IPv6 address '2001:db8:::1' at column 6: not a valid IPv6 address"),
        ("host 10.0.0.0/8", "filter: invalid host address '10.0.0.0/8' at column 6: a prefix needs 'net', not 'host'"),
        (
            "net 10.0.0.0 mask ffff::",
            "filter: invalid mask 'ffff::' at column 19: give a plain mask of the network's family",
        ),
        (
            "ip6 host 10.0.0.1",
            "filter: invalid address '10.0.0.1' at column 10: an IPv4 address never matches IPv6 packets",
        ),
        (
            "ip net 2001:db8:: mask ffff:ffff::",
            "filter: invalid address '2001:db8::' at column 8: an IPv6 address never matches IPv4 packets",
        ),
    ];
    for (expr, want) in cases {
        assert_eq!(err(expr).to_string(), *want, "{expr:?}");
    }
}

#[test]
fn host_names_are_not_resolved() {
    for (expr, col) in [("host example.com", 6), ("src host gateway", 10), ("tcp and db.internal", 9), ("net foo/8", 5)]
    {
        let e = err(expr);
        assert!(matches!(&e, FilterError::HostName { col: c, .. } if *c == col), "{expr}: {e:?}");
        assert!(e.to_string().contains("not resolved") && e.to_string().contains("192.0.2.1"), "{e}");
    }
}

#[test]
fn tcpdump_port_list_shorthand_gets_a_hint() {
    let e = err("port 80 or 443").to_string();
    assert!(e.contains("at column 12, found '443'") && e.contains("port 80 or port 443"), "{e}");
}

#[test]
fn errors_point_into_the_expression() {
    // Every column reported lies within the expression (or just past it).
    for expr in ["  tcp and  port x", "\thost\tfoo.bar", "a", "(((tcp)", "net 1.2.3.4 mask", "proto", "src and"] {
        let e = err(expr);
        let col = match e {
            FilterError::Expected { col, .. }
            | FilterError::UnknownKeyword { col, .. }
            | FilterError::HostName { col, .. }
            | FilterError::Invalid { col, .. }
            | FilterError::TooDeep { col } => col,
            FilterError::TooComplex { .. } => panic!("{expr}"),
        };
        assert!((1..=expr.len() + 1).contains(&col), "{expr:?}: {e}");
    }
}

// --------------------------------------------------------------- semantics

#[test]
fn fixed_expressions_agree_with_direct_evaluation() {
    let exprs = [
        "host 10.0.0.1",
        "src host 10.0.0.2",
        "dst net 10.0.0.0/8",
        "src and dst host 10.0.0.1",
        "not (src and dst host 10.0.0.1)",
        "not src and dst net 10.0.0.0/8",
        "src or dst net 10.0.0.0/16",
        "not host 10.0.0.1",
        "host 2001:db8::1 or host 10.0.0.2",
        "src net 2001:db8::/32 and not dst net 2001:db8::/32",
        "src and dst host fe80::1",
        "port 53",
        "not port 53",
        "src port 80 or dst portrange 1000-2000",
        "not (src and dst portrange 0-1000)",
        "tcp",
        "not tcp and not udp",
        "icmp or icmp6",
        "ip and not udp",
        "ip6 proto tcp",
        "ip proto 17 or ip6 proto 58",
        "proto 47 or (tcp dst port 443)",
        "udp port 53 or tcp port 80",
        "not (tcp or udp) or port 2001",
        "(host 10.0.0.1 or host 10.0.0.2) and (port 80 or port 53)",
        "not ((host 10.0.0.1 or host 10.0.0.2) and (port 80 or port 53))",
        "tcp or udp and port 53",
        "!(ip6) && (port 0 || src 192.168.0.0/16)",
        "net 10.0.0.0 mask 255.255.0.0 and not src 10.0.0.1",
        "not not (dst 10.0.5.9 or src 8.8.8.8)",
        "(tcp and port 80) or (udp and not port 53) or icmp6",
        "not (not tcp or not port 80)",
    ];
    let pk = packets();
    for e in exprs {
        let f = c(e);
        let ast = parse(e).unwrap().unwrap();
        let mut hits = 0;
        for p in &pk {
            let want = eval(&ast, p);
            assert_eq!(matches(&f, p), want, "{e:?} on {p:?}");
            hits += usize::from(want);
        }
        // Each expression should separate the packet set, or the test
        // proves little.
        assert!(hits > 0 && hits < pk.len(), "{e:?} matches {hits} of {} packets", pk.len());
    }
}

#[test]
fn precedence_and_qualifiers_parse_as_documented() {
    let p = |s: &str| parse(s).unwrap().unwrap();
    let prim = |s: &str| match p(s) {
        Ast::Prim(x) => x,
        other => panic!("{other:?}"),
    };
    let (tcp, udp) = (Prim::Proto(6), Prim::Proto(17));
    let port = prim("port 53");
    let b = |x| Box::new(Ast::Prim(x));
    assert_eq!(p("tcp or udp and port 53"), Ast::Or(b(tcp), Box::new(Ast::And(b(udp), b(port)))));
    assert_eq!(p("not tcp and udp"), Ast::And(Box::new(Ast::Not(b(tcp))), b(udp)));
    assert_eq!(p("tcp and udp and port 53"), Ast::And(Box::new(Ast::And(b(tcp), b(udp))), b(port)));
    assert!(matches!(prim("src and dst port 1"), Prim::Port { dir: Dir::Both, .. }));
    assert!(matches!(prim("dst or src port 1"), Prim::Port { dir: Dir::Either, .. }));
    assert!(matches!(prim("dst port 1"), Prim::Port { dir: Dir::Dst, .. }));
    // "src" followed by "and" + another primitive is not a qualifier pair.
    assert!(err("src and tcp").to_string().contains("found 'and'"));
}

/// Leaves of random expressions, each with its meaning written out by hand.
type Oracle = fn(&PacketInfo) -> bool;

/// `a` is inside `net` (CIDR text) and the packet has the net's family.
fn within(a: &[u8; 16], net: &str, p: &PacketInfo) -> bool {
    let (net, len) = net.split_once('/').unwrap();
    let (family, n) = addr(net);
    let len: u32 = len.parse().unwrap();
    let bits = if family == 4 { 32 } else { 128 };
    // The address as a `bits`-wide number, then without its host bits.
    let top = |x: &[u8; 16]| (u128::from_be_bytes(*x) >> (128 - bits)).checked_shr(bits - len).unwrap_or(0);
    p.family == family && top(a) == top(&n)
}

fn s_in(p: &PacketInfo, net: &str) -> bool {
    within(&p.saddr, net, p)
}

fn d_in(p: &PacketInfo, net: &str) -> bool {
    within(&p.daddr, net, p)
}

fn has_ports(p: &PacketInfo) -> bool {
    p.proto == 6 || p.proto == 17
}

const LEAVES: &[(&str, Oracle)] = &[
    ("host 10.0.0.1", |p| s_in(p, "10.0.0.1/32") || d_in(p, "10.0.0.1/32")),
    ("src host 10.0.0.2", |p| s_in(p, "10.0.0.2/32")),
    ("dst net 10.0.0.0/8", |p| d_in(p, "10.0.0.0/8")),
    ("src or dst net 10.0.0.0/16", |p| s_in(p, "10.0.0.0/16") || d_in(p, "10.0.0.0/16")),
    ("src and dst net 10.0.0.0/8", |p| s_in(p, "10.0.0.0/8") && d_in(p, "10.0.0.0/8")),
    ("dst 10.0.0.2", |p| d_in(p, "10.0.0.2/32")),
    ("192.168.0.0/16", |p| s_in(p, "192.168.0.0/16") || d_in(p, "192.168.0.0/16")),
    ("net 10.0.0.0 mask 255.255.0.0", |p| s_in(p, "10.0.0.0/16") || d_in(p, "10.0.0.0/16")),
    ("host 2001:db8::1", |p| s_in(p, "2001:db8::1/128") || d_in(p, "2001:db8::1/128")),
    ("src net 2001:db8::/32", |p| s_in(p, "2001:db8::/32")),
    ("dst and src host fe80::1", |p| s_in(p, "fe80::1/128") && d_in(p, "fe80::1/128")),
    ("port 53", |p| has_ports(p) && (p.sport == 53 || p.dport == 53)),
    ("src port 80", |p| has_ports(p) && p.sport == 80),
    ("dst portrange 1000-2000", |p| has_ports(p) && (1000..=2000).contains(&p.dport)),
    ("src and dst portrange 0-1000", |p| has_ports(p) && p.sport <= 1000 && p.dport <= 1000),
    ("tcp", |p| p.proto == 6),
    ("udp", |p| p.proto == 17),
    ("icmp", |p| p.proto == 1),
    ("icmp6", |p| p.proto == 58),
    ("ip", |p| p.family == 4),
    ("ip6", |p| p.family == 6),
    ("proto 47", |p| p.proto == 47),
    ("ip proto 17", |p| p.family == 4 && p.proto == 17),
    ("ip6 proto \\tcp", |p| p.family == 6 && p.proto == 6),
    ("tcp dst port 443", |p| p.proto == 6 && p.dport == 443),
    ("udp port 53", |p| p.proto == 17 && (p.sport == 53 || p.dport == 53)),
];

enum Gen {
    Leaf(usize),
    Not(Box<Gen>),
    And(Box<Gen>, Box<Gen>),
    Or(Box<Gen>, Box<Gen>),
}

fn gen(rng: &mut Rng, depth: usize) -> Gen {
    match if depth == 0 { 0 } else { rng.below(5) } {
        0 | 1 => Gen::Leaf(rng.below(LEAVES.len())),
        2 => Gen::Not(Box::new(gen(rng, depth - 1))),
        3 => Gen::And(Box::new(gen(rng, depth - 1)), Box::new(gen(rng, depth - 1))),
        _ => Gen::Or(Box::new(gen(rng, depth - 1)), Box::new(gen(rng, depth - 1))),
    }
}

fn oracle(g: &Gen, p: &PacketInfo) -> bool {
    match g {
        Gen::Leaf(i) => LEAVES[*i].1(p),
        Gen::Not(x) => !oracle(x, p),
        Gen::And(a, b) => oracle(a, p) && oracle(b, p),
        Gen::Or(a, b) => oracle(a, p) || oracle(b, p),
    }
}

/// Renders `g` with the fewest parentheses the documented precedence
/// allows (plus some random extra ones and spellings), so the parser's
/// precedence is tested too. `min` is the binding strength the context
/// needs: 1 or, 2 and, 3 not/leaf.
fn render(g: &Gen, min: u8, rng: &mut Rng) -> String {
    let (s, strength) = match g {
        Gen::Leaf(i) => (LEAVES[*i].0.to_owned(), 3),
        Gen::Not(x) => {
            let op = *rng.pick(&["not ", "!", "NOT "]);
            (format!("{op}{}", render(x, 3, rng)), 3)
        }
        Gen::And(a, b) => {
            let op = *rng.pick(&[" and ", " && ", "&&"]);
            (format!("{}{op}{}", render(a, 2, rng), render(b, 2, rng)), 2)
        }
        Gen::Or(a, b) => {
            let op = *rng.pick(&[" or ", " || ", "||"]);
            (format!("{}{op}{}", render(a, 1, rng), render(b, 1, rng)), 1)
        }
    };
    if strength < min || rng.below(8) == 0 {
        format!("({s})")
    } else {
        s
    }
}

#[test]
fn random_expressions_agree_with_a_hand_written_oracle() {
    let pk = packets();
    let mut rng = Rng(0xF11_7E57_0000_0042);
    let (mut compiled, mut too_complex) = (0, 0);
    for _ in 0..3000 {
        let g = gen(&mut rng, 4);
        let text = render(&g, 1, &mut rng);
        match compile(&text) {
            Ok(f) => {
                compiled += 1;
                for p in &pk {
                    assert_eq!(matches(&f, p), oracle(&g, p), "{text:?} on {p:?}");
                }
            }
            Err(FilterError::TooComplex { .. }) => too_complex += 1,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }
    eprintln!("{compiled} random expressions compiled, {too_complex} too complex for the kernel");
    assert!(compiled > 2000, "only {compiled} compiled, {too_complex} too complex");
}

#[test]
fn leaves_parse_to_the_oracle_meaning() {
    // Guards the oracle table itself against typos, via the AST evaluator.
    for (text, f) in LEAVES {
        let ast = parse(text).unwrap().unwrap();
        for p in &packets() {
            assert_eq!(eval(&ast, p), f(p), "{text:?} on {p:?}");
        }
    }
}
