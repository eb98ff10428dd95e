//! Compiler of tcpdump-like filter expressions into the kernel's [`Filter`].
//!
//! The kernel evaluates a fixed-size disjunctive normal form (at most
//! [`MAX_TERMS`] conjunctions of at most [`MAX_ATOMS`] atoms each, see
//! [`crate::filter`]), because the verifier only accepts
//! constant-bounded loops. This module parses the text, pushes negations into
//! the atoms (negation normal form, by De Morgan) and distributes `and` over
//! `or`, with light simplification so that equivalent expressions do not
//! waste terms.
//!
//! # Grammar (a pcap-filter subset)
//!
//! ```text
//! expr      := and_expr ( ("or" | "||") and_expr )*
//! and_expr  := unary ( ("and" | "&&") unary )*
//! unary     := ("not" | "!") unary | "(" expr ")" | primitive
//! primitive := [dir] "host" ADDR | [dir] "net" CIDR | [dir] "net" ADDR "mask" MASK
//!            | [dir] "port" N | [dir] "portrange" N-M | dir ADDR | dir CIDR | ADDR | CIDR
//!            | ("tcp" | "udp") [[dir] ("port" N | "portrange" N-M)]
//!            | "icmp" | "icmp6" | "ip" | "ip6" | "proto" P | ("ip" | "ip6") "proto" P
//!            | ("ip" | "ip6") [dir] ("host" | "net") ...
//! dir       := "src" | "dst" | "src or dst" | "dst or src" | "src and dst" | "dst and src"
//! P         := 0..255 | "tcp" | "udp" | "icmp" | "icmp6" (optionally written "\tcp" as in tcpdump)
//! ```
//!
//! Keywords are case-insensitive. Addresses are IPv4 or IPv6 literals; host
//! names are never resolved (the filter is compiled once, and a name could
//! resolve differently on each host of a measurement).
//!
//! **Precedence differs from tcpdump:** here `not` binds tighter than `and`,
//! which binds tighter than `or`, as in most languages. libpcap gives `and`
//! and `or` equal precedence, left to right, so `a or b and c` means
//! `(a or b) and c` to tcpdump but `a or (b and c)` here; add parentheses when
//! porting such expressions.
//!
//! # Semantics
//!
//! As in tcpdump: `port` and `portrange` match only TCP and UDP, so
//! `not port 53` also keeps ICMP; a `host`/`net` of one family never matches
//! a packet of the other, so `not host 10.0.0.1` keeps all IPv6 packets. With
//! no direction, `host X` matches source or destination; `src and dst host X`
//! requires both. For VXLAN the kernel reports (and filters on) the inner
//! headers.

// This crate is no_std for the kernel; the compiler is user-space code behind the `std`
// feature, so it needs the std prelude spelled out.
use std::net::{Ipv4Addr, Ipv6Addr};
use std::prelude::rust_2021::*;
use std::{format, vec};

use crate::abi::{atom, Filter, FilterAtom, MAX_ATOMS, MAX_TERMS};

/// Why an expression was rejected. Columns are 1-based byte offsets into
/// the expression, so they point at the offending token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// The grammar wanted something else at this point.
    #[error("filter: expected {expected} at column {col}, found {found}")]
    Expected {
        /// What was expected, e.g. "a port number after 'port'".
        expected: String,
        /// Column of the token found.
        col: usize,
        /// The token found, quoted, or "the end of the expression".
        found: String,
    },
    /// A word that is no keyword and no address.
    #[error("filter: unknown keyword '{word}' at column {col}")]
    UnknownKeyword {
        /// The word.
        word: String,
        /// Its column.
        col: usize,
    },
    /// A host name where an address is required.
    #[error(
        "filter: '{name}' at column {col} is not an IP address; host names are not resolved, \
         give an address such as 192.0.2.1 or 2001:db8::1"
    )]
    HostName {
        /// The name.
        name: String,
        /// Its column.
        col: usize,
    },
    /// A malformed address, prefix, mask, port range or protocol.
    #[error("filter: invalid {what} '{text}' at column {col}: {reason}")]
    Invalid {
        /// Kind of value ("address", "port range", ...).
        what: &'static str,
        /// The token.
        text: String,
        /// Its column.
        col: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// Parentheses or `not` nested deeper than [`MAX_NESTING`].
    #[error("filter: expression nested deeper than {MAX_NESTING} levels at column {col}")]
    TooDeep {
        /// Column of the token that went too deep.
        col: usize,
    },
    /// The disjunctive normal form does not fit the kernel's table.
    #[error(
        "filter: expression is too complex for the kernel filter: {detail}; the kernel evaluates \
         at most {MAX_TERMS} alternatives ('or' terms after distributing 'and' over 'or') of at \
         most {MAX_ATOMS} conditions each"
    )]
    TooComplex {
        /// What overflowed.
        detail: String,
    },
}

/// Deepest nesting of parentheses and `not` accepted: the parser recurses.
pub const MAX_NESTING: usize = 64;

/// Longest expression accepted, in tokens: lowering recurses once per
/// operator; real filters are far shorter.
pub const MAX_TOKENS: usize = 1024;

/// Terms kept while distributing, before the final size check: intermediate
/// forms may be larger than the simplified result, but not unboundedly.
const WORK_TERMS: usize = 1024;

/// Compiles `expr` into the kernel's filter table.
///
/// An empty (or all-whitespace) expression yields [`Filter::default`], which
/// matches every packet. An unsatisfiable one (`tcp and not tcp`) yields a
/// single `FAMILY 0` atom, which no parsed packet has.
pub fn compile(expr: &str) -> Result<Filter, FilterError> {
    let Some(ast) = parse(expr)? else {
        return Ok(Filter::default());
    };
    let mut terms = dnf(&ast, false)?;
    if terms.is_empty() {
        terms.push(vec![FilterAtom { kind: atom::FAMILY, value: 0, ..FilterAtom::default() }]);
    }
    let widest = terms.iter().map(Vec::len).max().unwrap_or(0);
    if terms.len() > MAX_TERMS || widest > MAX_ATOMS {
        return Err(FilterError::TooComplex {
            detail: format!("it needs {} alternatives with up to {widest} conditions", terms.len()),
        });
    }
    let mut f = Filter::default();
    for (t, term) in terms.iter().enumerate() {
        f.terms[t][..term.len()].copy_from_slice(term);
        f.term_len[t] = term.len() as u8;
    }
    f.n_terms = terms.len() as u8;
    Ok(f)
}

/// Direction qualifier of an address or port primitive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    /// No qualifier, `src or dst`.
    Either,
    /// `src and dst`: two kernel atoms.
    Both,
}

/// One primitive, before lowering to kernel atoms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prim {
    /// `host` (full mask) or `net`; `family` 4 keeps the address in the
    /// first four bytes as the kernel does.
    Addr {
        dir: Dir,
        family: u8,
        addr: [u8; 16],
        mask: [u8; 16],
    },
    Port {
        dir: Dir,
        lo: u16,
        hi: u16,
    },
    Proto(u8),
    Family(u8),
}

/// Parsed expression.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ast {
    Prim(Prim),
    Not(Box<Ast>),
    And(Box<Ast>, Box<Ast>),
    Or(Box<Ast>, Box<Ast>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    LParen,
    RParen,
    Not,
    And,
    Or,
}

#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    kind: Kind,
    text: &'a str,
    col: usize,
}

fn lex(s: &str) -> Result<Vec<Tok<'_>>, FilterError> {
    let mut toks = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let (kind, len) = match c {
            _ if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'(' => (Kind::LParen, 1),
            b')' => (Kind::RParen, 1),
            b'!' => (Kind::Not, 1),
            b'&' | b'|' if b.get(i + 1) == Some(&c) => (if c == b'&' { Kind::And } else { Kind::Or }, 2),
            b'&' | b'|' => {
                let (c, col) = (char::from(c), i + 1);
                return Err(FilterError::Expected { expected: format!("'{c}{c}'"), col, found: format!("'{c}'") });
            }
            _ => {
                let n = b[i..]
                    .iter()
                    .position(|&c| c.is_ascii_whitespace() || b"()!&|".contains(&c))
                    .unwrap_or(b.len() - i);
                (Kind::Word, n)
            }
        };
        // Split points are ASCII, so `text` is on char boundaries.
        let text = &s[i..i + len];
        let kind = match kind {
            Kind::Word if text.eq_ignore_ascii_case("and") => Kind::And,
            Kind::Word if text.eq_ignore_ascii_case("or") => Kind::Or,
            Kind::Word if text.eq_ignore_ascii_case("not") => Kind::Not,
            k => k,
        };
        toks.push(Tok { kind, text, col: i + 1 });
        i += len;
    }
    Ok(toks)
}

/// Parses `s` into an AST; `None` for an empty expression.
fn parse(s: &str) -> Result<Option<Ast>, FilterError> {
    let toks = lex(s)?;
    if toks.is_empty() {
        return Ok(None);
    }
    if toks.len() > MAX_TOKENS {
        return Err(FilterError::TooComplex { detail: format!("it has more than {MAX_TOKENS} tokens") });
    }
    let mut p = Parser { toks, pos: 0, end_col: s.len() + 1, depth: 0 };
    let ast = p.expr()?;
    if p.pos < p.toks.len() {
        return Err(p.expected("'and', 'or' or the end of the expression"));
    }
    Ok(Some(ast))
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    pos: usize,
    end_col: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).copied()
    }

    fn peek_kind(&self, ahead: usize) -> Option<Kind> {
        self.toks.get(self.pos + ahead).map(|t| t.kind)
    }

    /// True if the token `ahead` is the keyword `kw`.
    fn is_word(&self, ahead: usize, kw: &str) -> bool {
        self.toks.get(self.pos + ahead).is_some_and(|t| t.kind == Kind::Word && t.text.eq_ignore_ascii_case(kw))
    }

    fn expected(&self, what: &str) -> FilterError {
        let (col, found) = match self.peek() {
            Some(t) => (t.col, format!("'{}'", t.text)),
            None => (self.end_col, "the end of the expression".to_owned()),
        };
        FilterError::Expected { expected: what.to_owned(), col, found }
    }

    /// The next token, which must be a word.
    fn word(&mut self, what: &str) -> Result<Tok<'a>, FilterError> {
        match self.peek() {
            Some(t) if t.kind == Kind::Word => {
                self.pos += 1;
                Ok(t)
            }
            _ => Err(self.expected(what)),
        }
    }

    fn expr(&mut self) -> Result<Ast, FilterError> {
        let mut lhs = self.conj()?;
        while self.peek_kind(0) == Some(Kind::Or) {
            self.pos += 1;
            lhs = Ast::Or(Box::new(lhs), Box::new(self.conj()?));
        }
        Ok(lhs)
    }

    fn conj(&mut self) -> Result<Ast, FilterError> {
        let mut lhs = self.unary()?;
        while self.peek_kind(0) == Some(Kind::And) {
            self.pos += 1;
            lhs = Ast::And(Box::new(lhs), Box::new(self.unary()?));
        }
        Ok(lhs)
    }

    fn unary(&mut self) -> Result<Ast, FilterError> {
        let Some(t) = self.peek() else {
            return Err(self.expected("a primitive such as 'host', 'port' or 'tcp'"));
        };
        if matches!(t.kind, Kind::Not | Kind::LParen) {
            self.depth += 1;
            if self.depth > MAX_NESTING {
                return Err(FilterError::TooDeep { col: t.col });
            }
            self.pos += 1;
            let ast = if t.kind == Kind::Not {
                Ast::Not(Box::new(self.unary()?))
            } else {
                let inner = self.expr()?;
                if self.peek_kind(0) != Some(Kind::RParen) {
                    return Err(self.expected(&format!("')' (to close the '(' at column {})", t.col)));
                }
                self.pos += 1;
                inner
            };
            self.depth -= 1;
            return Ok(ast);
        }
        self.primitive()
    }

    fn primitive(&mut self) -> Result<Ast, FilterError> {
        let t = self.word("a primitive such as 'host', 'port' or 'tcp'")?;
        let prim = match t.text.to_ascii_lowercase().as_str() {
            "src" | "dst" => {
                self.pos -= 1;
                let dir = self.dir();
                self.qualified(dir, Allow::Any)?
            }
            "host" | "net" | "port" | "portrange" => {
                self.pos -= 1;
                self.qualified(Dir::Either, Allow::Any)?
            }
            kw @ ("tcp" | "udp") => {
                let proto = Prim::Proto(if kw == "tcp" { 6 } else { 17 });
                if !["src", "dst", "port", "portrange"].iter().any(|k| self.is_word(0, k)) {
                    return Ok(Ast::Prim(proto));
                }
                let dir = self.dir();
                let port = self.qualified(dir, Allow::Ports)?;
                return Ok(Ast::And(Box::new(Ast::Prim(proto)), Box::new(Ast::Prim(port))));
            }
            "icmp" => Prim::Proto(1),
            "icmp6" => Prim::Proto(58),
            kw @ ("ip" | "ip6") => {
                let family = if kw == "ip" { 4 } else { 6 };
                if self.is_word(0, "proto") {
                    self.pos += 1;
                    let proto = self.proto()?;
                    let fam = Box::new(Ast::Prim(Prim::Family(family)));
                    return Ok(Ast::And(fam, Box::new(Ast::Prim(proto))));
                }
                if !["src", "dst", "host", "net"].iter().any(|k| self.is_word(0, k)) {
                    return Ok(Ast::Prim(Prim::Family(family)));
                }
                let dir = self.dir();
                self.qualified(dir, Allow::Addrs(family))?
            }
            "proto" => self.proto()?,
            _ => match Addr::parse(t.text, t.col)? {
                // A bare address (or prefix) is `host` (or `net`).
                Some(a) => a.prim(Dir::Either, t)?,
                None if t.text.bytes().all(|c| c.is_ascii_digit()) => {
                    self.pos -= 1;
                    return Err(self.expected(
                        "a primitive such as 'host', 'port' or 'tcp' (tcpdump's 'port 80 or 443' \
                         shorthand is not supported: write 'port 80 or port 443')",
                    ));
                }
                None if t.text.contains('.') => return Err(not_address(t)),
                None => return Err(FilterError::UnknownKeyword { word: t.text.to_owned(), col: t.col }),
            },
        };
        Ok(Ast::Prim(prim))
    }

    /// Consumes an optional direction qualifier.
    fn dir(&mut self) -> Dir {
        let (first, other) = if self.is_word(0, "src") {
            (Dir::Src, "dst")
        } else if self.is_word(0, "dst") {
            (Dir::Dst, "src")
        } else {
            return Dir::Either;
        };
        self.pos += 1;
        match self.peek_kind(0) {
            Some(op @ (Kind::And | Kind::Or)) if self.is_word(1, other) => {
                self.pos += 2;
                if op == Kind::And {
                    Dir::Both
                } else {
                    Dir::Either
                }
            }
            _ => first,
        }
    }

    /// `host`/`net`/`port`/`portrange`/address after a direction.
    fn qualified(&mut self, dir: Dir, allow: Allow) -> Result<Prim, FilterError> {
        let want = match allow {
            Allow::Any => "'host', 'net', 'port', 'portrange' or an address",
            Allow::Ports => "'port' or 'portrange'",
            Allow::Addrs(_) => "'host', 'net' or an address",
        };
        let kw = self.word(want)?;
        let lower = kw.text.to_ascii_lowercase();
        let is_port = matches!(lower.as_str(), "port" | "portrange");
        let allowed = match allow {
            Allow::Any => true,
            Allow::Ports => is_port,
            Allow::Addrs(_) => !is_port,
        };
        if !allowed {
            self.pos -= 1;
            return Err(self.expected(want));
        }
        // The token naming the value, for the family check below.
        let mut value_tok = kw;
        let prim = match lower.as_str() {
            "host" => {
                let t = self.word("an address after 'host'")?;
                let a = Addr::parse(t.text, t.col)?.ok_or_else(|| not_address(t))?;
                if a.prefix.is_some() {
                    return Err(invalid("host address", t, "a prefix needs 'net', not 'host'"));
                }
                value_tok = t;
                a.prim(dir, t)?
            }
            "net" => {
                let t = self.word("a network such as 10.0.0.0/8 after 'net'")?;
                let mut a = Addr::parse(t.text, t.col)?.ok_or_else(|| not_address(t))?;
                if a.prefix.is_none() && self.is_word(0, "mask") {
                    self.pos += 1;
                    let m = self.word("a mask after 'mask'")?;
                    let mask = Addr::parse(m.text, m.col)?.ok_or_else(|| not_address(m))?;
                    if mask.family != a.family || mask.prefix.is_some() {
                        return Err(invalid("mask", m, "give a plain mask of the network's family"));
                    }
                    a.mask = Some(mask.bytes);
                }
                value_tok = t;
                a.prim(dir, t)?
            }
            "port" => {
                let t = self.word("a port number after 'port'")?;
                let p = t.text.parse::<u16>().map_err(|_| {
                    self.pos -= 1;
                    self.expected("a port number after 'port'")
                })?;
                Prim::Port { dir, lo: p, hi: p }
            }
            "portrange" => {
                let t = self.word("a port range such as 1000-2000 after 'portrange'")?;
                let range = t.text.split_once('-').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
                let Some((lo, hi)) = range else {
                    return Err(invalid("port range", t, "expected two port numbers such as 1000-2000"));
                };
                if lo > hi {
                    return Err(invalid("port range", t, "the first port is larger than the second"));
                }
                Prim::Port { dir, lo, hi }
            }
            _ => match Addr::parse(kw.text, kw.col)? {
                Some(a) => a.prim(dir, kw)?,
                None => {
                    self.pos -= 1;
                    return Err(self.expected(want));
                }
            },
        };
        if let (Allow::Addrs(family), Prim::Addr { family: got, .. }) = (allow, prim) {
            if family != got {
                return Err(invalid(
                    "address",
                    value_tok,
                    &format!("an IPv{got} address never matches IPv{family} packets"),
                ));
            }
        }
        Ok(prim)
    }

    /// Protocol after `proto`: a number or a name.
    fn proto(&mut self) -> Result<Prim, FilterError> {
        let t = self.word("a protocol number or name after 'proto'")?;
        let name = t.text.trim_start_matches('\\').to_ascii_lowercase();
        let n = match name.as_str() {
            "tcp" => 6,
            "udp" => 17,
            "icmp" => 1,
            "icmp6" => 58,
            _ => name.parse::<u8>().map_err(|_| invalid("protocol", t, "give 0..255 or tcp, udp, icmp, icmp6"))?,
        };
        Ok(Prim::Proto(n))
    }
}

/// Which primitives a qualifier prefix admits.
#[derive(Clone, Copy)]
enum Allow {
    Any,
    /// After `tcp`/`udp`.
    Ports,
    /// After `ip`/`ip6`: addresses of that family.
    Addrs(u8),
}

fn invalid(what: &'static str, t: Tok<'_>, reason: &str) -> FilterError {
    FilterError::Invalid { what, text: t.text.to_owned(), col: t.col, reason: reason.to_owned() }
}

fn not_address(t: Tok<'_>) -> FilterError {
    FilterError::HostName { name: t.text.to_owned(), col: t.col }
}

/// An address literal with an optional `/prefix` or `mask`.
struct Addr {
    family: u8,
    bytes: [u8; 16],
    prefix: Option<u8>,
    mask: Option<[u8; 16]>,
}

impl Addr {
    /// `Ok(None)` if `text` does not look like an address at all (a word or
    /// host name); an error if it looks like one but is malformed.
    fn parse(text: &str, col: usize) -> Result<Option<Self>, FilterError> {
        let t = Tok { kind: Kind::Word, text, col };
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let (family, bytes) = if let Ok(a) = addr.parse::<Ipv4Addr>() {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&a.octets());
            (4, b)
        } else if let Ok(a) = addr.parse::<Ipv6Addr>() {
            (6, a.octets())
        } else if addr.contains(':') {
            return Err(invalid("IPv6 address", t, "not a valid IPv6 address"));
        } else if !addr.is_empty() && addr.bytes().all(|c| c.is_ascii_digit() || c == b'.') && addr.contains('.') {
            return Err(invalid("IPv4 address", t, "give all four octets, e.g. 10.1.0.0/16"));
        } else if prefix.is_some() {
            return Err(not_address(t));
        } else {
            return Ok(None);
        };
        let max = if family == 4 { 32 } else { 128 };
        let prefix = match prefix {
            None => None,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => Some(n),
                _ => return Err(invalid("prefix", t, &format!("the prefix length must be 0..{max}"))),
            },
        };
        Ok(Some(Self { family, bytes, prefix, mask: None }))
    }

    /// The primitive, refusing address bits outside the mask (as tcpdump
    /// does: `net 10.0.0.1/8` is more likely a typo than intended).
    fn prim(&self, dir: Dir, t: Tok<'_>) -> Result<Prim, FilterError> {
        let len = if self.family == 4 { 4 } else { 16 };
        let mask = self.mask.unwrap_or_else(|| {
            let bits = usize::from(self.prefix.unwrap_or(if self.family == 4 { 32 } else { 128 }));
            let mut m = [0u8; 16];
            for (i, b) in m.iter_mut().enumerate().take(len) {
                *b = match bits.saturating_sub(i * 8) {
                    0 => 0,
                    n if n >= 8 => 0xFF,
                    n => 0xFF << (8 - n),
                };
            }
            m
        });
        if self.bytes.iter().zip(mask).any(|(a, m)| a & !m != 0) {
            return Err(invalid("network", t, "address bits are set outside the mask"));
        }
        Ok(Prim::Addr { dir, family: self.family, addr: self.bytes, mask })
    }
}

/// Disjunctive normal form: terms of atoms, both in order of appearance.
type Dnf = Vec<Vec<FilterAtom>>;

/// Lowers `ast` to DNF. `neg` carries pending negations downwards: `not`
/// flips it, `and`/`or` swap under it (De Morgan), and at a primitive it
/// becomes the atoms' `negate` flag. That is the negation normal form,
/// built on the way down; `and` is then distributed over `or`.
fn dnf(ast: &Ast, neg: bool) -> Result<Dnf, FilterError> {
    match ast {
        Ast::Not(x) => dnf(x, !neg),
        Ast::And(a, b) | Ast::Or(a, b) => {
            let (x, y) = (dnf(a, neg)?, dnf(b, neg)?);
            if matches!(ast, Ast::And(..)) != neg {
                product(&x, &y)
            } else {
                Ok(simplify(x.into_iter().chain(y).collect()))
            }
        }
        Ast::Prim(p) => Ok(prim_dnf(*p, neg)),
    }
}

/// A primitive as kernel atoms. Every atom is self-contained and its
/// `negate` inverts exactly its own result, so negating a one-atom
/// primitive is exact; `src and dst` is two atoms and negates to two terms.
fn prim_dnf(p: Prim, neg: bool) -> Dnf {
    let negate = u8::from(neg);
    let with_dir = |a: FilterAtom, dir: Dir| -> Vec<FilterAtom> {
        match dir {
            Dir::Src => vec![FilterAtom { dir: atom::DIR_SRC, ..a }],
            Dir::Dst => vec![FilterAtom { dir: atom::DIR_DST, ..a }],
            Dir::Either => vec![FilterAtom { dir: atom::DIR_ANY, ..a }],
            Dir::Both => vec![FilterAtom { dir: atom::DIR_SRC, ..a }, FilterAtom { dir: atom::DIR_DST, ..a }],
        }
    };
    let atoms = match p {
        Prim::Addr { dir, family, addr, mask } => {
            with_dir(FilterAtom { addr, mask, kind: atom::ADDR, value: family, negate, ..FilterAtom::default() }, dir)
        }
        Prim::Port { dir, lo, hi } => {
            with_dir(FilterAtom { port_lo: lo, port_hi: hi, kind: atom::PORT, negate, ..FilterAtom::default() }, dir)
        }
        Prim::Proto(n) => vec![FilterAtom { kind: atom::PROTO, value: n, negate, ..FilterAtom::default() }],
        Prim::Family(f) => vec![FilterAtom { kind: atom::FAMILY, value: f, negate, ..FilterAtom::default() }],
    };
    // Positive: one conjunction. Negated (De Morgan): one term per atom.
    if neg {
        atoms.into_iter().map(|a| vec![a]).collect()
    } else {
        vec![atoms]
    }
}

/// `x and y` distributed: every term of `x` joined with every term of `y`.
fn product(x: &Dnf, y: &Dnf) -> Result<Dnf, FilterError> {
    if x.len().saturating_mul(y.len()) > WORK_TERMS {
        return Err(FilterError::TooComplex {
            detail: format!("distributing 'and' over 'or' gives more than {WORK_TERMS} alternatives"),
        });
    }
    let mut out = Vec::with_capacity(x.len() * y.len());
    for a in x {
        for b in y {
            out.push(a.iter().chain(b).copied().collect());
        }
    }
    Ok(simplify(out))
}

/// Removes repeated atoms, contradictory terms (`a and not a`), and terms
/// implied by a shorter one (absorption: `a or (a and b)` is `a`). Exact
/// only; it keeps the table small, it does not minimise.
fn simplify(terms: Dnf) -> Dnf {
    let flip = |a: &FilterAtom| FilterAtom { negate: a.negate ^ 1, ..*a };
    let mut terms: Dnf = terms
        .into_iter()
        .filter_map(|t| {
            let mut u: Vec<FilterAtom> = Vec::with_capacity(t.len());
            for a in t {
                if u.contains(&flip(&a)) {
                    return None;
                }
                if !u.contains(&a) {
                    u.push(a);
                }
            }
            Some(u)
        })
        .collect();
    let subset = |s: &[FilterAtom], t: &[FilterAtom]| s.iter().all(|a| t.contains(a));
    let mut i = 0;
    while i < terms.len() {
        // Drop term i if another term is a subset of it; of two equal
        // terms the later one goes.
        let absorbed = (0..terms.len())
            .any(|j| j != i && subset(&terms[j], &terms[i]) && (terms[j].len() < terms[i].len() || j < i));
        if absorbed {
            terms.remove(i);
        } else {
            i += 1;
        }
    }
    terms
}

#[cfg(test)]
mod tests;
