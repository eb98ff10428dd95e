//! The running kernel's BTF (`/sys/kernel/btf/vmlinux`), read just enough to find struct
//! member offsets and which functions and tracepoints exist.
//!
//! The kernel programs read kernel structures (`sk_buff`, `sock`, `tcp_sock`, ...) at
//! offsets resolved here at load time and handed to them as globals, so one binary runs
//! on every kernel version (docs: <https://docs.kernel.org/bpf/btf.html>).

use std::collections::HashMap;
use std::path::Path;

/// Where the running kernel's BTF is.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

/// Why BTF could not be read or a member not found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// Not BTF, or cut short.
    #[error("malformed BTF: {0}")]
    Malformed(String),
    /// No struct or union of that name.
    #[error("no struct {0} in the kernel's BTF")]
    NoStruct(String),
    /// The struct has no such member (or the path goes through a non-struct).
    #[error("no member {member} in struct {ty} (kernel BTF)")]
    NoMember {
        /// The struct.
        ty: String,
        /// The member path asked for.
        member: String,
    },
    /// The member is a bitfield: it has no byte offset.
    #[error("{ty}.{member} is a bitfield")]
    Bitfield {
        /// The struct.
        ty: String,
        /// The member.
        member: String,
    },
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// A struct or union member.
#[derive(Clone, Debug)]
struct Member {
    name: u32,
    ty: u32,
    /// Bit offset.
    bits: u32,
    /// Bitfield size (0: not a bitfield).
    bitfield: u32,
}

#[derive(Clone, Debug)]
struct Type {
    name: u32,
    kind: u32,
    /// Size (INT, STRUCT, UNION, ENUM) or referenced type (PTR, TYPEDEF, ...).
    size_or_type: u32,
    members: Vec<Member>,
    /// ARRAY: element type and count.
    array: Option<(u32, u32)>,
}

/// A found member: byte offset from the start of the outer struct, and size in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Byte offset.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// Parsed BTF: types by id (1-based; id 0 is `void`) and the string section.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    by_name: HashMap<String, Vec<u32>>,
}

fn u32_at(b: &[u8], off: usize, big: bool) -> Result<u32, BtfError> {
    let s: [u8; 4] = b
        .get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| BtfError::Malformed(format!("cut short at byte {off}")))?;
    Ok(if big { u32::from_be_bytes(s) } else { u32::from_le_bytes(s) })
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn kernel() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX))
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let bytes = std::fs::read(path).map_err(|source| BtfError::Io { path: path.display().to_string(), source })?;
        Self::parse(&bytes)
    }

    /// Parses raw BTF (header, type section, string section).
    pub fn parse(b: &[u8]) -> Result<Self, BtfError> {
        let big = match b.get(..2) {
            Some([0x9f, 0xeb]) => false,
            Some([0xeb, 0x9f]) => true,
            _ => return Err(BtfError::Malformed("bad magic".into())),
        };
        let hdr_len = u32_at(b, 4, big)? as usize;
        let (type_off, type_len) = (u32_at(b, 8, big)? as usize, u32_at(b, 12, big)? as usize);
        let (str_off, str_len) = (u32_at(b, 16, big)? as usize, u32_at(b, 20, big)? as usize);
        let section = |off: usize, len: usize| {
            b.get(hdr_len + off..hdr_len + off + len).ok_or_else(|| BtfError::Malformed("section out of range".into()))
        };
        let t = section(type_off, type_len)?;
        let strings = section(str_off, str_len)?.to_vec();
        let mut types = vec![Type { name: 0, kind: 0, size_or_type: 0, members: vec![], array: None }];
        let mut p = 0;
        while p < t.len() {
            let (name, info, st) = (u32_at(t, p, big)?, u32_at(t, p + 4, big)?, u32_at(t, p + 8, big)?);
            p += 12;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let mut ty = Type { name, kind, size_or_type: st, members: vec![], array: None };
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => p += 4,
                KIND_ARRAY => {
                    ty.array = Some((u32_at(t, p, big)?, u32_at(t, p + 8, big)?));
                    p += 12;
                }
                KIND_STRUCT | KIND_UNION => {
                    for i in 0..vlen {
                        let q = p + 12 * i;
                        let off = u32_at(t, q + 8, big)?;
                        let (bits, bitfield) = if kind_flag { (off & 0xff_ffff, off >> 24) } else { (off, 0) };
                        ty.members.push(Member { name: u32_at(t, q, big)?, ty: u32_at(t, q + 4, big)?, bits, bitfield });
                    }
                    p += 12 * vlen;
                }
                KIND_ENUM => p += 8 * vlen,
                KIND_FUNC_PROTO => p += 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => p += 12 * vlen,
                KIND_PTR | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_FUNC | KIND_TYPE_TAG
                | 7 /* FWD */ | 16 /* FLOAT */ => {}
                k => return Err(BtfError::Malformed(format!("unknown type kind {k} at type {}", types.len()))),
            }
            types.push(ty);
        }
        let mut btf = Self { types, strings, by_name: HashMap::new() };
        for id in 1..btf.types.len() {
            let name = btf.str(btf.types[id].name).to_owned();
            if !name.is_empty() {
                btf.by_name.entry(name).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    fn str(&self, off: u32) -> &str {
        let s = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
        std::str::from_utf8(&s[..end]).unwrap_or("")
    }

    fn named(&self, name: &str, kinds: &[u32]) -> Option<u32> {
        self.by_name.get(name)?.iter().copied().find(|&id| kinds.contains(&self.types[id as usize].kind))
    }

    /// True if the kernel has a function `name` (a target for fentry and kprobes).
    pub fn has_func(&self, name: &str) -> bool {
        self.named(name, &[KIND_FUNC]).is_some()
    }

    /// True if the kernel describes tracepoint `name` for `tp_btf` programs.
    pub fn has_btf_tracepoint(&self, name: &str) -> bool {
        self.named(&format!("btf_trace_{name}"), &[KIND_TYPEDEF]).is_some()
    }

    /// Skips typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.types.get(id as usize).map(|t| t.kind) {
                Some(KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG) => {
                    id = self.types[id as usize].size_or_type;
                }
                _ => break,
            }
        }
        id
    }

    fn size_of(&self, id: u32) -> u32 {
        let id = self.resolve(id);
        let t = &self.types[id as usize];
        match t.kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 | 16 => t.size_or_type,
            KIND_PTR => 8,
            KIND_ARRAY => t.array.map_or(0, |(elem, n)| self.size_of(elem) * n),
            _ => 0,
        }
    }

    /// Finds member `name` of struct/union `id`, also inside anonymous members; returns
    /// its bit offset, bitfield size and type.
    fn find(&self, id: u32, name: &str, depth: u32) -> Option<(u32, u32, u32)> {
        let t = &self.types[self.resolve(id) as usize];
        if depth > 8 || !matches!(t.kind, KIND_STRUCT | KIND_UNION) {
            return None;
        }
        for m in &t.members {
            let n = self.str(m.name);
            if n == name {
                return Some((m.bits, m.bitfield, m.ty));
            }
            if n.is_empty() {
                if let Some((bits, bf, ty)) = self.find(m.ty, name, depth + 1) {
                    return Some((m.bits + bits, bf, ty));
                }
            }
        }
        None
    }

    /// Byte offset and size of `path` (`skc_daddr`, `__sk_common.skc_daddr`,
    /// `ns.inum`) inside struct `ty`.
    pub fn member(&self, ty: &str, path: &str) -> Result<Field, BtfError> {
        let no_member = || BtfError::NoMember { ty: ty.to_owned(), member: path.to_owned() };
        let mut id = self.named(ty, &[KIND_STRUCT, KIND_UNION]).ok_or_else(|| BtfError::NoStruct(ty.to_owned()))?;
        let mut bits = 0;
        for part in path.split('.') {
            let (b, bf, t) = self.find(id, part, 0).ok_or_else(no_member)?;
            if bf != 0 || b % 8 != 0 {
                return Err(BtfError::Bitfield { ty: ty.to_owned(), member: path.to_owned() });
            }
            bits += b;
            id = t;
        }
        Ok(Field { offset: bits / 8, size: self.size_of(id) })
    }
}

/// The offsets the stack-layer programs need, for namespace `netns`.
pub fn stack_config(btf: &Btf, netns: u32) -> Result<capture_common::offsets::StackConfig, BtfError> {
    let off = |ty: &str, m: &str| btf.member(ty, m).map(|f| f.offset as u16);
    Ok(capture_common::offsets::StackConfig {
        netns,
        skb_head: off("sk_buff", "head")?,
        skb_data: off("sk_buff", "data")?,
        skb_len: off("sk_buff", "len")?,
        skb_mac_header: off("sk_buff", "mac_header")?,
        skb_dev: off("sk_buff", "dev")?,
        dev_ifindex: off("net_device", "ifindex")?,
        dev_nd_net: off("net_device", "nd_net")?,
        net_inum: off("net", "ns.inum")?,
        _pad: [0; 4],
    })
}

#[cfg(test)]
mod tests;
