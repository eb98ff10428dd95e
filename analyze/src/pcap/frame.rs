//! Link layers: every supported link type is turned into an Ethernet frame for
//! `capture_common::parse`, the parser the kernel programs run, so a packet read from a
//! pcap gets the very `pkt_id` netlat-capture gives it.

use std::borrow::Cow;

use pcap_file::DataLink;

use super::read::Direction;

const ETH_P_IP: [u8; 2] = [0x08, 0x00];
const ETH_P_IPV6: [u8; 2] = [0x86, 0xDD];
/// Linux `PACKET_OUTGOING` in cooked-capture headers.
const PACKET_OUTGOING: u16 = 4;

/// An Ethernet frame made from a captured packet, and the direction if the link header
/// gives it. `None` for link types that carry no IP (or that netlat does not read).
pub fn ethernet(link: DataLink, data: &[u8]) -> Option<(Cow<'_, [u8]>, Option<Direction>)> {
    let dir = |pkttype: u16| Some(if pkttype == PACKET_OUTGOING { Direction::Out } else { Direction::In });
    match link {
        DataLink::ETHERNET => Some((Cow::Borrowed(data), None)),
        // Linux cooked v1 (`tcpdump -i any` before libpcap 1.10): 16-byte header,
        // packet type first, protocol last.
        DataLink::LINUX_SLL => {
            let h = data.get(..16)?;
            Some((framed([h[14], h[15]], &data[16..]), dir(u16::from_be_bytes([h[0], h[1]]))))
        }
        // Linux cooked v2: protocol first, packet type at byte 10; 20 bytes.
        DataLink::LINUX_SLL2 => {
            let h = data.get(..20)?;
            Some((framed([h[0], h[1]], &data[20..]), dir(u16::from(h[10]))))
        }
        // Bare IP: the version nibble says which.
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => {
            let proto = match data.first()? >> 4 {
                4 => ETH_P_IP,
                6 => ETH_P_IPV6,
                _ => return None,
            };
            Some((framed(proto, data), None))
        }
        // BSD loopback: 4-byte address family (host or network order).
        DataLink::NULL | DataLink::LOOP => {
            let rest = data.get(4..)?;
            let proto = match rest.first()? >> 4 {
                4 => ETH_P_IP,
                6 => ETH_P_IPV6,
                _ => return None,
            };
            Some((framed(proto, rest), None))
        }
        _ => None,
    }
}

/// The interface index a cooked-v2 header names (`tcpdump -i any`): packets of one file
/// seen on several interfaces are several observation points.
pub fn sll2_ifindex(link: DataLink, data: &[u8]) -> Option<u32> {
    (link == DataLink::LINUX_SLL2)
        .then(|| data.get(4..8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        .flatten()
}

fn framed(ethertype: [u8; 2], l3: &[u8]) -> Cow<'static, [u8]> {
    let mut v = Vec::with_capacity(14 + l3.len());
    v.extend_from_slice(&[0; 12]);
    v.extend_from_slice(&ethertype);
    v.extend_from_slice(l3);
    Cow::Owned(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooked_headers_give_direction_and_protocol() {
        let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&[0x45, 0]);
        let (f, d) = ethernet(DataLink::LINUX_SLL, &sll).unwrap();
        assert_eq!((&f[12..14], &f[14..], d), (&ETH_P_IP[..], &[0x45u8, 0][..], Some(Direction::Out)));
        let mut sll2 = vec![0x86, 0xDD, 0, 0, 0, 0, 0, 7, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        sll2.push(0x60);
        let (f, d) = ethernet(DataLink::LINUX_SLL2, &sll2).unwrap();
        assert_eq!((&f[12..14], d), (&ETH_P_IPV6[..], Some(Direction::In)));
        assert_eq!(sll2_ifindex(DataLink::LINUX_SLL2, &sll2), Some(7));
        assert!(ethernet(DataLink::LINUX_SLL, &sll[..10]).is_none());
        let (f, _) = ethernet(DataLink::RAW, &[0x45, 1]).unwrap();
        assert_eq!(f.len(), 16);
        assert!(ethernet(DataLink::RAW, &[0x25]).is_none());
    }
}
