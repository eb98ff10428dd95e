//! Header-only frames rebuilt from an event's fields, for packets whose bytes the capture
//! did not keep. Everything an event records is put back where the wire had it; what it
//! does not record (MAC addresses, TTL, TCP window and options) is zero or a fixed value.

use std::net::IpAddr;

use super::Fields;

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    !(s as u16)
}

/// Ethernet + IP + L4 header of the packet an event describes.
pub(super) fn rebuild(f: &Fields) -> Vec<u8> {
    let l4: Vec<u8> = match f.proto {
        6 => {
            let mut t = Vec::with_capacity(20);
            t.extend_from_slice(&f.sport.to_be_bytes());
            t.extend_from_slice(&f.dport.to_be_bytes());
            t.extend_from_slice(&f.seq.to_be_bytes());
            t.extend_from_slice(&f.ack.to_be_bytes());
            t.extend_from_slice(&[5 << 4, f.tcp_flags, 0xFF, 0xFF, 0, 0, 0, 0]);
            t
        }
        17 => {
            let mut u = Vec::with_capacity(8);
            u.extend_from_slice(&f.sport.to_be_bytes());
            u.extend_from_slice(&f.dport.to_be_bytes());
            u.extend_from_slice(&((8 + f.payload_len) as u16).to_be_bytes());
            u.extend_from_slice(&[0, 0]);
            u
        }
        // ICMP / ICMPv6: sport is type << 8 | code, dport the echo id, seq the echo seq.
        1 | 58 => {
            let mut i = Vec::with_capacity(8);
            i.extend_from_slice(&f.sport.to_be_bytes());
            i.extend_from_slice(&[0, 0]);
            i.extend_from_slice(&f.dport.to_be_bytes());
            i.extend_from_slice(&(f.seq as u16).to_be_bytes());
            i
        }
        _ => Vec::new(),
    };
    let l4_total = l4.len() as u32 + f.payload_len;
    let mut out = vec![0u8; 12];
    match (f.saddr.parse::<IpAddr>(), f.daddr.parse::<IpAddr>()) {
        (Ok(IpAddr::V4(s)), Ok(IpAddr::V4(d))) => {
            out.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + l4_total).min(0xFFFF) as u16).to_be_bytes());
            ip.extend_from_slice(&(f.ip_id as u16).to_be_bytes());
            ip.extend_from_slice(&[0x40, 0, 64, f.proto, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let c = fold(sum16(&ip));
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (Ok(IpAddr::V6(s)), Ok(IpAddr::V6(d))) => {
            out.extend_from_slice(&[0x86, 0xDD]);
            let fl = f.ip_id & 0x000F_FFFF;
            out.extend_from_slice(&(0x6000_0000 | fl).to_be_bytes());
            out.extend_from_slice(&(l4_total.min(0xFFFF) as u16).to_be_bytes());
            out.extend_from_slice(&[f.proto, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => return out,
    }
    out.extend_from_slice(&l4);
    out
}

#[cfg(test)]
mod tests {
    use capture_common::{hash, parse};

    use super::*;

    /// A rebuilt header parses back to the same fields, and (payload aside) the same identity.
    #[test]
    fn rebuilt_headers_parse_back() {
        for (proto, saddr, daddr) in
            [(6, "198.18.0.1", "198.18.0.2"), (17, "2001:db8::1", "2001:db8::2"), (1, "198.18.0.1", "198.18.0.2")]
        {
            let f = Fields {
                proto,
                saddr: saddr.into(),
                daddr: daddr.into(),
                sport: 0x0800,
                dport: 4242,
                ip_id: 77,
                seq: 1_000_000,
                ack: if proto == 6 { 5 } else { 0 },
                tcp_flags: if proto == 6 { 0x18 } else { 0 },
                payload_len: 0,
                wire_len: 100,
                head: None,
            };
            let frame = rebuild(&f);
            let mut info = parse::PacketInfo::default();
            parse::parse(&parse::SliceBuf(&frame), 0, &mut info).unwrap();
            assert_eq!((info.proto, info.sport, info.dport, info.ip_id), (proto, 0x0800, 4242, 77));
            if proto != 17 {
                assert_eq!(
                    info.seq & if proto == 1 { 0xFFFF } else { u32::MAX },
                    f.seq & if proto == 1 { 0xFFFF } else { u32::MAX }
                );
            }
            assert_eq!(info.ack, f.ack);
            let _ = hash::packet_id(&info, &[0; 8]);
        }
    }
}
