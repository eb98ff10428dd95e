//! Reading the type records of raw BTF.

use super::{kind, BtfError, Member, Type};

/// Byte-order-aware reads from the raw blob.
pub(super) struct Reader<'a> {
    pub(super) data: &'a [u8],
    pub(super) big: bool,
}

impl Reader<'_> {
    pub(super) fn u32(&self, at: usize) -> Result<u32, BtfError> {
        let b: [u8; 4] = self
            .data
            .get(at..at + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| BtfError::Malformed(format!("truncated at byte {at}")))?;
        Ok(if self.big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    /// The type record at `at` and where the next one starts.
    pub(super) fn type_at(&self, at: usize) -> Result<(Type, usize), BtfError> {
        let name = self.u32(at)?;
        let info = self.u32(at + 4)?;
        let size_or_type = self.u32(at + 8)?;
        let k = ((info >> 24) & 0x1f) as u8;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        let body = at + 12;
        let mut ty = Type { kind: k, name, size_or_type, extra: (0, 0), members: Vec::new() };
        let trailing = match k {
            kind::INT => {
                let enc = self.u32(body)?;
                ty.extra = (enc & 0xff, (enc >> 16) & 0xff);
                4
            }
            kind::PTR | kind::FWD | kind::TYPEDEF | kind::VOLATILE | kind::CONST | kind::RESTRICT => 0,
            kind::FUNC | kind::FLOAT | kind::TYPE_TAG => 0,
            kind::ARRAY => {
                ty.extra = (self.u32(body)?, self.u32(body + 8)?);
                12
            }
            kind::STRUCT | kind::UNION => {
                for i in 0..vlen {
                    let m = body + i * 12;
                    let off = self.u32(m + 8)?;
                    // With kflag the offset word packs the bitfield width into its top byte.
                    let (bit_offset, bitfield) = if kflag { (off & 0xff_ffff, off >> 24) } else { (off, 0) };
                    ty.members.push(Member { name: self.u32(m)?, ty: self.u32(m + 4)?, bit_offset, bitfield });
                }
                vlen * 12
            }
            kind::FUNC_PROTO => {
                // Parameters: (name, type); kept as members to check which argument is the skb.
                for i in 0..vlen {
                    let m = body + i * 8;
                    ty.members.push(Member { name: self.u32(m)?, ty: self.u32(m + 4)?, bit_offset: 0, bitfield: 0 });
                }
                vlen * 8
            }
            kind::ENUM => {
                // Enumerators: (name, value); kept as members with the value in `ty`.
                for i in 0..vlen {
                    let m = body + i * 8;
                    ty.members.push(Member { name: self.u32(m)?, ty: self.u32(m + 4)?, bit_offset: 0, bitfield: 0 });
                }
                vlen * 8
            }
            kind::VAR | kind::DECL_TAG => 4,
            kind::DATASEC | kind::ENUM64 => vlen * 12,
            other => return Err(BtfError::Malformed(format!("unknown type kind {other} at byte {at}"))),
        };
        Ok((ty, body + trailing))
    }
}
