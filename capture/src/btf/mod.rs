//! A small reader of raw kernel BTF (`/sys/kernel/btf/vmlinux`): enough to
//! find structure field offsets and to tell which functions and BTF-enabled
//! tracepoints the running kernel has.
//!
//! Why not `aya`'s own BTF: `aya_obj::btf::Btf` parses the same data but keeps
//! type lookup by id and member access crate-private, so member paths through
//! anonymous unions cannot be resolved with it. The format is small (a header,
//! an array of variable-length type records, a string table; see
//! <https://docs.kernel.org/bpf/btf.html>), so it is read here directly.
//!
//! * [`Btf::field`]: `"sock.__sk_common.skc_daddr"` → byte offset and size, through
//!   nested and anonymous structs and unions, typedefs and qualifiers;
//! * [`Btf::func_id`]: whether a kernel function has BTF (fentry/fexit targets);
//! * [`Btf::has_btf_tracepoint`]: whether `btf_trace_<name>` exists (tp_btf).

pub mod offsets;
mod raw;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, path::Path};

use raw::Reader;

/// Where the running kernel publishes its BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const HEADER_LEN: usize = 24;

/// BTF type kinds (`BTF_KIND_*`) this reader looks at.
pub mod kind {
    /// Integer.
    pub const INT: u8 = 1;
    /// Pointer.
    pub const PTR: u8 = 2;
    /// Array.
    pub const ARRAY: u8 = 3;
    /// Structure.
    pub const STRUCT: u8 = 4;
    /// Union.
    pub const UNION: u8 = 5;
    /// Enumeration (32-bit values).
    pub const ENUM: u8 = 6;
    /// Forward declaration.
    pub const FWD: u8 = 7;
    /// Typedef.
    pub const TYPEDEF: u8 = 8;
    /// `volatile`.
    pub const VOLATILE: u8 = 9;
    /// `const`.
    pub const CONST: u8 = 10;
    /// `restrict`.
    pub const RESTRICT: u8 = 11;
    /// Function.
    pub const FUNC: u8 = 12;
    /// Function prototype.
    pub const FUNC_PROTO: u8 = 13;
    /// Variable.
    pub const VAR: u8 = 14;
    /// Data section.
    pub const DATASEC: u8 = 15;
    /// Floating point.
    pub const FLOAT: u8 = 16;
    /// Declaration tag.
    pub const DECL_TAG: u8 = 17;
    /// Type tag (`__rcu`, `__user`, ...).
    pub const TYPE_TAG: u8 = 18;
    /// Enumeration (64-bit values).
    pub const ENUM64: u8 = 19;
}

/// Why BTF could not be read or a name could not be resolved; every variant
/// names the struct, field or function concerned.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The BTF file could not be read.
    #[error("{path}: cannot read kernel BTF: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not BTF, or truncated.
    #[error("kernel BTF is malformed: {0}")]
    Malformed(String),
    /// No struct or union of that name.
    #[error("struct {0} is not in the kernel's BTF")]
    NoStruct(String),
    /// The struct has no such field (searched through anonymous members).
    #[error("{strukt} has no field `{field}` in the kernel's BTF (wanted {path})")]
    NoField {
        /// The struct or union searched.
        strukt: String,
        /// The missing member name.
        field: String,
        /// The whole path asked for.
        path: String,
    },
    /// A path step goes into something that is not a struct or union.
    #[error("{path}: `{field}` is not a struct or union, cannot look inside it")]
    NotAggregate {
        /// The whole path asked for.
        path: String,
        /// The member that is not an aggregate.
        field: String,
    },
    /// The field is a bitfield, which has no byte offset.
    #[error("{0} is a bitfield: it has no byte offset")]
    Bitfield(String),
    /// The field lies beyond what [`offsets`] can hold.
    #[error("{path}: offset {offset} does not fit in 16 bits")]
    TooFar {
        /// The whole path.
        path: String,
        /// Byte offset found.
        offset: u32,
    },
}

/// One member of a struct or union.
#[derive(Clone, Copy, Debug)]
struct Member {
    name: u32,
    ty: u32,
    /// Offset in bits from the start of the enclosing aggregate.
    bit_offset: u32,
    /// Bitfield width in bits; 0 for ordinary members.
    bitfield: u32,
}

/// One type record.
#[derive(Clone, Debug)]
struct Type {
    kind: u8,
    name: u32,
    /// `size` for INT/STRUCT/UNION/ENUM/FLOAT, `type` for PTR/TYPEDEF/qualifiers/FUNC.
    size_or_type: u32,
    /// INT encoding (bits, offset) or ARRAY (element type, count); else zero.
    extra: (u32, u32),
    members: Vec<Member>,
}

/// A resolved field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    /// Bytes from the start of the outermost struct.
    pub offset: u32,
    /// Size of the field, bytes.
    pub size: u32,
    /// BTF id of the field's type.
    pub type_id: u32,
}

/// Parsed BTF: types by id (id 0 is `void`) and an index of names.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    /// Name → ids of named types, in id order.
    by_name: HashMap<String, Vec<u32>>,
}

impl std::fmt::Debug for Btf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Btf({} types)", self.types.len())
    }
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX))
    }

    /// Reads BTF from a file.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Read { path: path.display().to_string(), source })?;
        Self::parse(&data)
    }

    /// Parses raw BTF (either byte order).
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let bad = |m: &str| BtfError::Malformed(m.to_owned());
        if data.len() < HEADER_LEN {
            return Err(bad("shorter than the header"));
        }
        let big = match [data[0], data[1]] {
            m if u16::from_le_bytes(m) == MAGIC => false,
            m if u16::from_be_bytes(m) == MAGIC => true,
            _ => return Err(bad("no BTF magic 0xeb9f")),
        };
        let rd = Reader { data, big };
        let hdr_len = rd.u32(4)? as usize;
        let (type_off, type_len) = (rd.u32(8)? as usize, rd.u32(12)? as usize);
        let (str_off, str_len) = (rd.u32(16)? as usize, rd.u32(20)? as usize);
        let section = |off: usize, len: usize, what: &str| {
            let start = hdr_len.checked_add(off).ok_or_else(|| bad(what))?;
            let end = start.checked_add(len).ok_or_else(|| bad(what))?;
            if end > data.len() {
                return Err(BtfError::Malformed(format!("{what} section runs past the end")));
            }
            Ok(start..end)
        };
        let type_range = section(type_off, type_len, "type")?;
        let strings = data[section(str_off, str_len, "string")?].to_vec();

        // Id 0 is void.
        let mut types = vec![Type { kind: 0, name: 0, size_or_type: 0, extra: (0, 0), members: Vec::new() }];
        let mut at = type_range.start;
        while at < type_range.end {
            let (ty, next) = rd.type_at(at)?;
            if next > type_range.end {
                return Err(BtfError::Malformed(format!("type {} runs past the type section", types.len())));
            }
            types.push(ty);
            at = next;
        }
        let mut btf = Btf { types, strings, by_name: HashMap::new() };
        for id in 1..btf.types.len() {
            let name = btf.types[id].name;
            if name != 0 {
                let n = btf.str(name)?.to_owned();
                btf.by_name.entry(n).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    /// The enumerators of `enum name` (32-bit enums), in declaration order.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(String, u32)>> {
        let id = self.ids(name, kind::ENUM).next()?;
        let t = &self.types[id as usize];
        Some(t.members.iter().map(|m| (self.str(m.name).unwrap_or("").to_owned(), m.ty)).collect())
    }

    /// Number of types, `void` included.
    pub fn len(&self) -> usize {
        self.types.len()
    }

    /// Whether only `void` is there.
    pub fn is_empty(&self) -> bool {
        self.types.len() <= 1
    }

    fn str(&self, off: u32) -> Result<&str, BtfError> {
        let rest = self
            .strings
            .get(off as usize..)
            .ok_or_else(|| BtfError::Malformed(format!("string offset {off} past the string section")))?;
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).map_err(|_| BtfError::Malformed(format!("string at {off} is not UTF-8")))
    }

    fn name_of(&self, id: u32) -> &str {
        self.types.get(id as usize).and_then(|t| self.str(t.name).ok()).unwrap_or("")
    }

    fn ty(&self, id: u32) -> Result<&Type, BtfError> {
        self.types.get(id as usize).ok_or_else(|| BtfError::Malformed(format!("type id {id} out of range")))
    }

    /// Ids of types named `name` of kind `k`.
    fn ids(&self, name: &str, k: u8) -> impl Iterator<Item = u32> + '_ {
        let ids = self.by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
        ids.iter().copied().filter(move |id| self.types[*id as usize].kind == k)
    }

    /// Id of the struct or union `name` (the complete one, not a forward declaration).
    pub fn struct_id(&self, name: &str) -> Result<u32, BtfError> {
        self.ids(name, kind::STRUCT)
            .chain(self.ids(name, kind::UNION))
            .next()
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))
    }

    /// Id of the function `name`, if the kernel has BTF for it (a candidate for fentry/fexit).
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.ids(name, kind::FUNC).next()
    }

    /// Whether the tracepoint `name` (without its system, e.g. `net_dev_queue`) can be
    /// attached as `tp_btf`: the kernel then has a typedef `btf_trace_<name>`.
    pub fn has_btf_tracepoint(&self, name: &str) -> bool {
        let n = format!("btf_trace_{name}");
        self.ids(&n, kind::TYPEDEF).next().is_some() || self.ids(&n, kind::STRUCT).next().is_some()
    }

    /// Parameter types of function `name`, if it has BTF.
    pub fn func_params(&self, name: &str) -> Option<Vec<u32>> {
        self.proto_params(self.ty(self.func_id(name)?).ok()?.size_or_type)
    }

    /// Argument types of tracepoint `name` as in its `TP_PROTO` (tp_btf programs
    /// see these), if the kernel has `btf_trace_<name>`.
    pub fn tracepoint_params(&self, name: &str) -> Option<Vec<u32>> {
        let id = self.ids(&format!("btf_trace_{name}"), kind::TYPEDEF).next()?;
        let ptr = self.ty(self.strip(id).ok()?).ok()?;
        // A pointer to `void (*)(void *__data, TP_PROTO...)`: drop the context pointer.
        let params = self.proto_params(ptr.size_or_type)?;
        Some(params.into_iter().skip(1).collect())
    }

    fn proto_params(&self, proto: u32) -> Option<Vec<u32>> {
        let t = self.ty(self.strip(proto).ok()?).ok()?;
        (t.kind == kind::FUNC_PROTO).then(|| t.members.iter().map(|m| m.ty).collect())
    }

    /// C spelling of type `id`, e.g. `const struct sk_buff *`.
    pub fn type_name(&self, id: u32) -> String {
        let Ok(t) = self.ty(id) else { return format!("<type {id}>") };
        let name = self.name_of(id);
        match t.kind {
            0 => "void".into(),
            kind::PTR => format!("{} *", self.type_name(t.size_or_type)),
            // `const` binds to the left of a pointer: `struct sk_buff *const`.
            kind::CONST if self.ty(t.size_or_type).is_ok_and(|i| i.kind == kind::PTR) => {
                format!("{}const", self.type_name(t.size_or_type))
            }
            kind::CONST => format!("const {}", self.type_name(t.size_or_type)),
            kind::VOLATILE => format!("volatile {}", self.type_name(t.size_or_type)),
            kind::RESTRICT | kind::TYPE_TAG => self.type_name(t.size_or_type),
            kind::STRUCT => format!("struct {name}"),
            kind::UNION => format!("union {name}"),
            kind::ENUM | kind::ENUM64 => format!("enum {name}"),
            kind::FWD => format!("struct {name}"),
            kind::ARRAY => format!("{}[{}]", self.type_name(t.extra.0), t.extra.1),
            _ if !name.is_empty() => name.to_owned(),
            _ => format!("<type {id}>"),
        }
    }

    /// For `struct S *` (pointer depth 1) or `struct S **` (2), through
    /// qualifiers and typedefs: `(S, depth)`.
    pub fn pointee_struct(&self, mut id: u32) -> Option<(&str, u32)> {
        let mut depth = 0;
        loop {
            let t = self.ty(self.strip(id).ok()?).ok()?;
            match t.kind {
                kind::PTR if depth < 4 => {
                    depth += 1;
                    id = t.size_or_type;
                }
                kind::STRUCT | kind::UNION | kind::FWD if depth > 0 => return Some((self.str(t.name).ok()?, depth)),
                _ => return None,
            }
        }
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut id: u32) -> Result<u32, BtfError> {
        for _ in 0..64 {
            match self.ty(id)?.kind {
                kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT | kind::TYPE_TAG => {
                    id = self.ty(id)?.size_or_type
                }
                _ => return Ok(id),
            }
        }
        Err(BtfError::Malformed(format!("typedef chain from type {id} does not end")))
    }

    /// Size in bytes of type `id`.
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let id = self.strip(id)?;
        let t = self.ty(id)?;
        Ok(match t.kind {
            kind::INT | kind::STRUCT | kind::UNION | kind::ENUM | kind::ENUM64 | kind::FLOAT => t.size_or_type,
            // BTF does not record pointer width: it is the kernel's, which is ours.
            kind::PTR => std::mem::size_of::<usize>() as u32,
            kind::ARRAY => self.size_of(t.extra.0)?.saturating_mul(t.extra.1),
            _ => 0,
        })
    }

    /// Resolves `"STRUCT.member.member..."`, e.g. `"sock.__sk_common.skc_daddr"`:
    /// byte offset from the start of STRUCT and size. Anonymous structs and
    /// unions are searched through; bitfields are an error.
    pub fn field(&self, path: &str) -> Result<Field, BtfError> {
        let (bits, size, type_id, bitfield) = self.field_bits(path)?;
        if bitfield != 0 || bits % 8 != 0 {
            return Err(BtfError::Bitfield(path.to_owned()));
        }
        Ok(Field { offset: bits / 8, size, type_id })
    }

    /// Like [`Btf::field`] but allows bitfields: `(bit offset, byte size of the
    /// declared type, type id, bitfield width or 0)`.
    pub fn field_bits(&self, path: &str) -> Result<(u32, u32, u32, u32), BtfError> {
        let mut parts = path.split('.');
        let root = parts.next().unwrap_or_default();
        let mut cur = self.struct_id(root)?;
        let mut bits = 0u32;
        let mut last = None;
        let mut prev_name = root.to_owned();
        for part in parts {
            let agg = self.strip(cur)?;
            if !matches!(self.ty(agg)?.kind, kind::STRUCT | kind::UNION) {
                return Err(BtfError::NotAggregate { path: path.to_owned(), field: prev_name });
            }
            let (off, m) = self.member(agg, part)?.ok_or_else(|| BtfError::NoField {
                strukt: self.name_of(agg).to_owned(),
                field: part.to_owned(),
                path: path.to_owned(),
            })?;
            bits += off;
            cur = m.ty;
            last = Some(m);
            prev_name = part.to_owned();
        }
        let m = last.ok_or_else(|| BtfError::NoField {
            strukt: root.to_owned(),
            field: String::new(),
            path: path.to_owned(),
        })?;
        let size = self.size_of(m.ty)?;
        let mut width = m.bitfield;
        // Without kflag, a bitfield is an INT member whose encoding is narrower than its size.
        let base = self.ty(self.strip(m.ty)?)?;
        if width == 0 && base.kind == kind::INT && (base.extra.0 != size * 8 || base.extra.1 != 0) {
            width = base.extra.0;
            bits += base.extra.1;
        }
        Ok((bits, size, m.ty, width))
    }

    /// Member `name` of aggregate `agg`, searching anonymous members depth
    /// first: (bit offset from `agg`, the member).
    fn member(&self, agg: u32, name: &str) -> Result<Option<(u32, Member)>, BtfError> {
        for m in &self.ty(agg)?.members {
            if m.name != 0 {
                if self.str(m.name)? == name {
                    return Ok(Some((m.bit_offset, *m)));
                }
                continue;
            }
            let inner = self.strip(m.ty)?;
            if matches!(self.ty(inner)?.kind, kind::STRUCT | kind::UNION) {
                if let Some((off, found)) = self.member(inner, name)? {
                    return Ok(Some((m.bit_offset + off, found)));
                }
            }
        }
        Ok(None)
    }
}
