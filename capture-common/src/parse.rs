//! Packet parser shared by the kernel programs and user space.
//!
//! Written for the BPF verifier: no recursion, every loop has a constant
//! bound, and all reads go through [`PacketBuf::load`], which the kernel side
//! implements with `bpf_skb_load_bytes` / `bpf_xdp_load_bytes` and the host
//! side with a bounds-checked slice read. Offsets are `u32` so the verifier
//! sees small, bounded values.

use crate::abi::{flags, MAX_SNAPLEN};

/// Random-access, bounds-checked reads of a packet.
pub trait PacketBuf {
    /// Reads `N` bytes at `off`, or `None` if they are not all inside.
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]>;
    /// Length of the packet in bytes, as the hook saw it.
    fn frame_len(&self) -> u32;
    /// Copies the first `len` bytes of the packet (`1..=MAX_SNAPLEN`, at most
    /// [`Self::frame_len`]) into `dst`; false if they cannot be read.
    fn copy_head(&self, dst: &mut [u8; MAX_SNAPLEN], len: u32) -> bool;
    /// Copies the packet's first bytes, at most [`HEAD_LEN`], into `dst` in one read and
    /// returns how many (0: none, every read goes to [`Self::load`]). See [`HeadBuf`].
    #[inline(always)]
    fn read_head(&self, _dst: &mut [u8; HEAD_BUF]) -> u32 {
        0
    }
}

/// Bytes [`HeadBuf`] copies: Ethernet, IPv6 and a TCP header with options plus the
/// identity's payload bytes fit, for most packets.
pub const HEAD_LEN: usize = 128;
/// Size of the buffer holding the copy: [`HEAD_LEN`] and room for one read of up to
/// [`HEAD_SLACK`] bytes starting inside it, so a masked offset needs no other bound.
pub const HEAD_BUF: usize = HEAD_LEN + HEAD_SLACK;
/// The longest single read of the parser (an IPv6 address is 16 bytes, the IPv4 header 20).
pub const HEAD_SLACK: usize = 32;

/// A packet's first bytes, copied in one read ([`PacketBuf::read_head`]). In the kernel
/// one helper call then replaces the four or more the parser makes, each of which costs
/// more than the parsing around it (`netlat-lab bench-capture --hooks-only`). A read of
/// bytes the copy lacks but the packet may hold is a miss: [`parse_head_first`] then parses
/// the packet itself, so the result, and every hook's identity of a packet, is that of
/// [`parse`] on the whole packet. (Falling back read by read instead doubles the
/// verifier's states at every read of the parser's loops, past its budget.)
pub struct HeadBuf<'a> {
    head: &'a [u8; HEAD_BUF],
    len: u32,
    frame: u32,
    missed: core::cell::Cell<bool>,
}

impl<'a> HeadBuf<'a> {
    /// The first `len` bytes (at most [`HEAD_LEN`]) of a `frame`-byte packet, in `head`.
    #[inline(always)]
    pub fn new(head: &'a [u8; HEAD_BUF], len: u32, frame: u32) -> Self {
        Self { head, len, frame, missed: core::cell::Cell::new(false) }
    }
    /// Whether a read wanted bytes of the packet past the copy.
    #[inline(always)]
    pub fn missed(&self) -> bool {
        self.missed.get()
    }
}

impl PacketBuf for HeadBuf<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        const { assert!(N <= HEAD_SLACK) };
        let o = off as usize;
        if o + N <= self.len as usize {
            // The mask is what the verifier sees bound the read (LLVM re-derives the
            // comparison above in a register the verifier does not connect to this one);
            // black_box keeps LLVM from dropping it as redundant. With `len <= HEAD_LEN`
            // it changes nothing.
            let i = core::hint::black_box(o) & (HEAD_LEN - 1);
            let mut out = [0u8; N];
            out.copy_from_slice(&self.head[i..i + N]);
            return Some(out);
        }
        if self.len < self.frame {
            self.missed.set(true);
        }
        None
    }
    #[inline(always)]
    fn frame_len(&self) -> u32 {
        self.frame
    }
    #[inline(always)]
    fn copy_head(&self, _dst: &mut [u8; MAX_SNAPLEN], _len: u32) -> bool {
        false
    }
}

/// [`parse`] from the copy in `head`, reading the packet `buf` only if that parse missed
/// bytes past the copy. Same result as `parse(buf, ..)`.
#[inline(always)]
pub fn parse_head_first<B: PacketBuf>(
    head: &HeadBuf<'_>,
    buf: &B,
    vxlan_port: u16,
    info: &mut PacketInfo,
) -> Result<(), ParseError> {
    let r = parse(head, vxlan_port, info);
    if head.missed() {
        return parse(buf, vxlan_port, info);
    }
    r
}

/// A packet held in a byte slice (user space, tests and fuzzing).
pub struct SliceBuf<'a>(pub &'a [u8]);

impl PacketBuf for SliceBuf<'_> {
    #[inline]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let off = off as usize;
        let bytes = self.0.get(off..off.checked_add(N)?)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Some(out)
    }
    #[inline]
    fn frame_len(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }
    fn copy_head(&self, dst: &mut [u8; MAX_SNAPLEN], len: u32) -> bool {
        let n = len as usize;
        match self.0.get(..n) {
            Some(src) if n <= MAX_SNAPLEN => {
                dst[..n].copy_from_slice(src);
                true
            }
            _ => false,
        }
    }
}

/// A packet of which only the first bytes were kept (a pcap's snap length, netlat-capture's
/// `--snaplen`): reads stop at the kept bytes, but the frame length is the whole packet's,
/// so what the parser derives from it (the L4 payload length) and the identity hash are
/// those the kernel computed on the whole packet.
pub struct CutBuf<'a> {
    /// The kept bytes, from the Ethernet header on.
    pub bytes: &'a [u8],
    /// Length of the whole frame.
    pub len: u32,
}

impl PacketBuf for CutBuf<'_> {
    #[inline]
    fn load<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        SliceBuf(self.bytes).load(off)
    }
    #[inline]
    fn frame_len(&self) -> u32 {
        self.len
    }
    fn copy_head(&self, dst: &mut [u8; MAX_SNAPLEN], len: u32) -> bool {
        SliceBuf(self.bytes).copy_head(dst, len)
    }
}

/// Why a packet yields no event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not IPv4/IPv6 (ARP, LLDP, ...), or VXLAN disabled for it.
    NotIp,
    /// A header the parser needs is cut short.
    Truncated,
    /// IPv4 header with version != 4 or IHL < 5, or IPv6 version != 6.
    BadIpHeader,
    /// More VLAN tags than [`MAX_VLAN`].
    VlanTooDeep,
    /// More IPv6 extension headers than [`MAX_IPV6_EXT`].
    Ipv6ExtTooDeep,
}

/// VLAN tags followed before giving up (QinQ).
pub const MAX_VLAN: usize = 2;
/// IPv6 extension headers followed before giving up.
pub const MAX_IPV6_EXT: usize = 6;

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
/// IP protocol numbers.
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// Header fields of one packet, as the event and the identity hash need them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Source address (IPv4 in the first four bytes).
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// 4 or 6.
    pub family: u8,
    /// L4 protocol.
    pub proto: u8,
    /// Source port / ICMP type<<8|code.
    pub sport: u16,
    /// Destination port / ICMP echo id.
    pub dport: u16,
    /// Outermost VLAN id.
    pub vlan: u16,
    /// IPv4 identification or IPv6 flow label.
    pub ip_id: u32,
    /// IPv4 flags+fragment offset field, or IPv6 fragment offset/M field.
    pub frag: u16,
    /// TCP sequence / ICMP echo sequence.
    pub seq: u32,
    /// TCP acknowledgment.
    pub ack: u32,
    /// TCP flags.
    pub tcp_flags: u8,
    /// Bits from [`crate::abi::flags`].
    pub flags: u8,
    /// VXLAN network identifier.
    pub vni: u32,
    /// Offset of the L4 payload.
    pub payload_off: u32,
    /// Length of the L4 payload.
    pub payload_len: u32,
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn be32(b: [u8; 4]) -> u32 {
    u32::from_be_bytes(b)
}

/// Parses the frame in `buf` (starting with an Ethernet header) into `info`,
/// which the caller provides so the kernel can keep it in a per-CPU map
/// rather than on its 512-byte stack.
///
/// With `vxlan_port != 0`, a UDP packet to that port is decapsulated once and
/// the inner packet's fields are reported with [`flags::VXLAN`]; a further
/// VXLAN layer inside is flagged [`flags::NESTED_TUNNEL`], not followed.
#[inline(always)]
pub fn parse<B: PacketBuf>(buf: &B, vxlan_port: u16, info: &mut PacketInfo) -> Result<(), ParseError> {
    *info = PacketInfo::default();
    let frame_end = buf.frame_len();
    parse_l3(buf, 0, frame_end, info)?;
    if vxlan_port == 0 || info.proto != IPPROTO_UDP || info.dport != vxlan_port {
        return Ok(());
    }
    // VXLAN header: flags(1) reserved(3) VNI(3) reserved(1).
    let vx_off = info.payload_off;
    let Some(vx) = buf.load::<8>(vx_off) else {
        return Ok(()); // too short for VXLAN: report the outer UDP packet
    };
    if vx[0] & 0x08 == 0 {
        return Ok(()); // VNI flag clear: not VXLAN
    }
    let vni = u32::from_be_bytes([0, vx[4], vx[5], vx[6]]);
    let outer_vlan = info.vlan;
    let outer_flags = info.flags;
    *info = PacketInfo::default();
    parse_l3(buf, vx_off + 8, frame_end, info)?;
    info.vni = vni;
    info.flags |= flags::VXLAN | (outer_flags & flags::VLAN);
    if outer_flags & flags::VLAN != 0 {
        info.vlan = outer_vlan;
    }
    if info.proto == IPPROTO_UDP && info.dport == vxlan_port {
        info.flags |= flags::NESTED_TUNNEL;
    }
    Ok(())
}

/// Parses Ethernet/VLAN/IP/L4 at `off` into `info`.
#[inline(always)]
fn parse_l3<B: PacketBuf>(buf: &B, off: u32, frame_end: u32, info: &mut PacketInfo) -> Result<(), ParseError> {
    let eth: [u8; 14] = buf.load(off).ok_or(ParseError::Truncated)?;
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut l3 = off + 14;
    let mut tags = 0usize;
    while tags < MAX_VLAN + 1 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        if tags == MAX_VLAN {
            return Err(ParseError::VlanTooDeep);
        }
        let tag: [u8; 4] = buf.load(l3).ok_or(ParseError::Truncated)?;
        if tags == 0 {
            info.vlan = be16([tag[0], tag[1]]) & 0x0FFF;
            info.flags |= flags::VLAN;
        }
        ethertype = be16([tag[2], tag[3]]);
        l3 += 4;
        tags += 1;
    }
    let (l4, ip_end) = match ethertype {
        ETH_P_IP => parse_ipv4(buf, l3, frame_end, info)?,
        ETH_P_IPV6 => parse_ipv6(buf, l3, frame_end, info)?,
        _ => return Err(ParseError::NotIp),
    };
    parse_l4(buf, l4, ip_end, info);
    Ok(())
}

#[inline(always)]
fn parse_ipv4<B: PacketBuf>(buf: &B, l3: u32, frame_end: u32, info: &mut PacketInfo) -> Result<(u32, u32), ParseError> {
    let ip: [u8; 20] = buf.load(l3).ok_or(ParseError::Truncated)?;
    let ihl = u32::from(ip[0] & 0x0F) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 {
        return Err(ParseError::BadIpHeader);
    }
    let tot_len = u32::from(be16([ip[2], ip[3]]));
    info.family = 4;
    info.ip_id = u32::from(be16([ip[4], ip[5]]));
    info.frag = be16([ip[6], ip[7]]);
    info.proto = ip[9];
    info.saddr[..4].copy_from_slice(&ip[12..16]);
    info.daddr[..4].copy_from_slice(&ip[16..20]);
    // tot_len is 0 for BIG TCP GSO packets and may exceed a truncated frame.
    let ip_end = if tot_len < ihl || l3 + tot_len > frame_end { frame_end } else { l3 + tot_len };
    if info.frag & 0x3FFF != 0 {
        info.flags |= flags::FRAGMENT;
    }
    Ok((l3 + ihl, ip_end))
}

#[inline(always)]
fn parse_ipv6<B: PacketBuf>(buf: &B, l3: u32, frame_end: u32, info: &mut PacketInfo) -> Result<(u32, u32), ParseError> {
    // Loaded in pieces: one 40-byte buffer is too much for the BPF stack.
    let ip: [u8; 8] = buf.load(l3).ok_or(ParseError::Truncated)?;
    if ip[0] >> 4 != 6 {
        return Err(ParseError::BadIpHeader);
    }
    info.saddr = buf.load(l3 + 8).ok_or(ParseError::Truncated)?;
    info.daddr = buf.load(l3 + 24).ok_or(ParseError::Truncated)?;
    info.family = 6;
    info.ip_id = be32([0, ip[1] & 0x0F, ip[2], ip[3]]);
    let plen = u32::from(be16([ip[4], ip[5]]));
    let ip_end = if plen == 0 || l3 + 40 + plen > frame_end { frame_end } else { l3 + 40 + plen };
    let mut next = ip[6];
    let mut off = l3 + 40;
    let mut n = 0usize;
    while n < MAX_IPV6_EXT + 1 {
        let len = match next {
            // hop-by-hop, routing, destination options: (hdr_ext_len + 1) * 8
            0 | 43 | 60 => {
                let h: [u8; 2] = buf.load(off).ok_or(ParseError::Truncated)?;
                next = h[0];
                (u32::from(h[1]) + 1) * 8
            }
            // fragment header: fixed 8 bytes
            44 => {
                let h: [u8; 8] = buf.load(off).ok_or(ParseError::Truncated)?;
                next = h[0];
                info.frag = be16([h[2], h[3]]);
                info.ip_id = be32([h[4], h[5], h[6], h[7]]);
                if info.frag & 0xFFF9 != 0 {
                    info.flags |= flags::FRAGMENT;
                }
                8
            }
            // authentication header: (payload_len + 2) * 4
            51 => {
                let h: [u8; 2] = buf.load(off).ok_or(ParseError::Truncated)?;
                next = h[0];
                (u32::from(h[1]) + 2) * 4
            }
            _ => break,
        };
        if n == MAX_IPV6_EXT {
            return Err(ParseError::Ipv6ExtTooDeep);
        }
        off += len;
        n += 1;
    }
    info.proto = next;
    Ok((off, ip_end))
}

/// Fills ports, TCP fields and the payload span. A cut-short L4 header is
/// flagged, not an error: the IP-level identity is still useful.
#[inline(always)]
fn parse_l4<B: PacketBuf>(buf: &B, l4: u32, ip_end: u32, info: &mut PacketInfo) {
    // Only the first fragment carries the L4 header.
    let later_fragment = if info.family == 4 { info.frag & 0x1FFF != 0 } else { info.frag & 0xFFF8 != 0 };
    let hdr_len = if later_fragment {
        0
    } else {
        match info.proto {
            IPPROTO_TCP => match buf.load::<20>(l4) {
                Some(t) => {
                    info.sport = be16([t[0], t[1]]);
                    info.dport = be16([t[2], t[3]]);
                    info.seq = be32([t[4], t[5], t[6], t[7]]);
                    info.ack = be32([t[8], t[9], t[10], t[11]]);
                    info.tcp_flags = t[13];
                    let doff = u32::from(t[12] >> 4) * 4;
                    if doff < 20 {
                        20
                    } else {
                        doff
                    }
                }
                None => {
                    info.flags |= flags::L4_TRUNCATED;
                    0
                }
            },
            IPPROTO_UDP => match buf.load::<8>(l4) {
                Some(u) => {
                    info.sport = be16([u[0], u[1]]);
                    info.dport = be16([u[2], u[3]]);
                    8
                }
                None => {
                    info.flags |= flags::L4_TRUNCATED;
                    0
                }
            },
            IPPROTO_ICMP | IPPROTO_ICMPV6 => match buf.load::<8>(l4) {
                Some(c) => {
                    info.sport = be16([c[0], c[1]]);
                    info.dport = be16([c[4], c[5]]);
                    info.seq = u32::from(be16([c[6], c[7]]));
                    8
                }
                None => {
                    info.flags |= flags::L4_TRUNCATED;
                    0
                }
            },
            _ => 0,
        }
    };
    info.payload_off = l4 + hdr_len;
    // A cut-short L4 header has no payload, only header fragments.
    info.payload_len = if info.flags & flags::L4_TRUNCATED != 0 { 0 } else { ip_end.saturating_sub(l4 + hdr_len) };
}

#[cfg(test)]
pub(crate) mod tests;
