//! Flows (one direction of a conversation: protocol, addresses, ports) and the analyzer's
//! filters: the capture's own filter language (`--filter`), hosts, and a time range.
//!
//! A packet's flow columns are the same at every observation point (the packet identity
//! hash covers them), so flows are a property of the packet, not of the row.

use std::fmt;
use std::net::IpAddr;

use capture_common::abi::Filter;
use capture_common::parse::{PacketInfo, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
use serde::Serialize;

/// One direction of a conversation, as the events table gives it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct Flow {
    /// 4 or 6 (0 when the file did not say).
    pub family: u8,
    /// IP protocol number.
    pub proto: u8,
    /// Source address, text.
    pub saddr: String,
    /// Destination address, text.
    pub daddr: String,
    /// Source port (ICMP: type << 8 | code).
    pub sport: u16,
    /// Destination port (ICMP: echo identifier).
    pub dport: u16,
}

/// Protocol name as tcpdump writes it, or the number.
pub fn proto_name(proto: u8) -> String {
    match proto {
        IPPROTO_TCP => "tcp".into(),
        IPPROTO_UDP => "udp".into(),
        IPPROTO_ICMP => "icmp".into(),
        IPPROTO_ICMPV6 => "icmp6".into(),
        n => format!("proto {n}"),
    }
}

impl Flow {
    fn has_ports(&self) -> bool {
        self.proto == IPPROTO_TCP || self.proto == IPPROTO_UDP
    }

    /// The packet fields the capture's filter looks at, so that `--filter` here means
    /// exactly what it means to `netlat-capture --filter`.
    pub fn packet_info(&self) -> PacketInfo {
        fn bytes(text: &str) -> [u8; 16] {
            let mut out = [0; 16];
            match text.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => out[..4].copy_from_slice(&a.octets()),
                Ok(IpAddr::V6(a)) => out = a.octets(),
                Err(_) => {}
            }
            out
        }
        PacketInfo {
            saddr: bytes(&self.saddr),
            daddr: bytes(&self.daddr),
            family: self.family,
            proto: self.proto,
            sport: self.sport,
            dport: self.dport,
            ..PacketInfo::default()
        }
    }

    /// True if the packets of this flow pass `filter`.
    pub fn passes(&self, filter: &Filter) -> bool {
        capture_common::filter::matches(filter, &self.packet_info())
    }
}

impl fmt::Display for Flow {
    /// `udp 198.18.0.1:5000 > 198.18.0.2:6000`, `tcp [2001:db8::1]:443 > ...`,
    /// `icmp 198.18.0.1 > 198.18.0.2 id 7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = proto_name(self.proto);
        let host = |a: &str| if a.contains(':') { format!("[{a}]") } else { a.to_owned() };
        if self.has_ports() {
            write!(f, "{proto} {}:{} > {}:{}", host(&self.saddr), self.sport, host(&self.daddr), self.dport)
        } else if self.proto == IPPROTO_ICMP || self.proto == IPPROTO_ICMPV6 {
            write!(f, "{proto} {} > {} id {}", self.saddr, self.daddr, self.dport)
        } else {
            write!(f, "{proto} {} > {}", self.saddr, self.daddr)
        }
    }
}

/// What the user asked to keep. Flows and hosts are decided once per distinct value (they
/// are few), so the per-row work is two table lookups.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Compiled `--filter` expression (`None`: every flow).
    pub filter: Option<Filter>,
    /// `--host`: keep only observation points of these hosts (empty: all).
    pub hosts: Vec<String>,
    /// `--since`: keep packets first seen at least this long after the first event, ns.
    pub since_ns: Option<i64>,
    /// `--until`: keep packets first seen at most this long after the first event, ns.
    pub until_ns: Option<i64>,
}

impl Selection {
    /// True if the flow is selected.
    pub fn flow(&self, flow: &Flow) -> bool {
        self.filter.as_ref().is_none_or(|f| flow.passes(f))
    }

    /// True if observation points of `host` are kept.
    pub fn host(&self, host: &str) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h == host)
    }

    /// True if a packet first seen `since_start` ns after the first event is kept.
    pub fn time(&self, since_start: i64) -> bool {
        self.since_ns.is_none_or(|s| since_start >= s) && self.until_ns.is_none_or(|u| since_start <= u)
    }

    /// True if nothing is filtered out.
    pub fn is_everything(&self) -> bool {
        self.filter.is_none() && self.hosts.is_empty() && self.since_ns.is_none() && self.until_ns.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_common::compile::compile;

    fn udp(s: &str, sp: u16, d: &str, dp: u16) -> Flow {
        let family = if s.contains(':') { 6 } else { 4 };
        Flow { family, proto: 17, saddr: s.into(), daddr: d.into(), sport: sp, dport: dp }
    }

    #[test]
    fn display() {
        assert_eq!(udp("198.18.0.1", 5000, "198.18.0.2", 6000).to_string(), "udp 198.18.0.1:5000 > 198.18.0.2:6000");
        assert_eq!(udp("2001:db8::1", 1, "2001:db8::2", 2).to_string(), "udp [2001:db8::1]:1 > [2001:db8::2]:2");
        let icmp = Flow { proto: 1, dport: 7, ..udp("198.18.0.1", 0x800, "198.18.0.2", 0) };
        assert_eq!(icmp.to_string(), "icmp 198.18.0.1 > 198.18.0.2 id 7");
    }

    #[test]
    fn filter_means_what_the_capture_means() {
        let f = udp("198.18.0.1", 5000, "198.18.0.2", 6000);
        let yes = ["udp", "host 198.18.0.2", "src net 198.18.0.0/24 and dst port 6000", "portrange 5999-6001"];
        let no = ["tcp", "src host 198.18.0.2", "port 53", "ip6", "not udp"];
        for e in yes {
            assert!(f.passes(&compile(e).unwrap()), "{e}");
        }
        for e in no {
            assert!(!f.passes(&compile(e).unwrap()), "{e}");
        }
    }

    #[test]
    fn selection() {
        let s = Selection { hosts: vec!["a".into()], since_ns: Some(10), until_ns: Some(20), ..Default::default() };
        assert!(s.host("a") && !s.host("b"));
        assert!(s.time(10) && s.time(20) && !s.time(9) && !s.time(21));
        assert!(Selection::default().is_everything());
    }
}
