//! The `events` table: Arrow schema and conversion of kernel events.
//! docs/schema.md is the user-facing description; keep them in step.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use arrow::{
    array::{ArrayRef, BinaryArray, Int64Array, StringBuilder, UInt16Array, UInt32Array, UInt64Array, UInt8Array},
    datatypes::{DataType, Field, Schema, SchemaRef},
    error::ArrowError,
    record_batch::RecordBatch,
};
use capture_common::abi::{hook, PacketEvent};

/// Version of the file layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Where an event was observed, beyond what the kernel reports.
#[derive(Clone, Debug)]
pub struct PointContext {
    /// Namespace inode.
    pub netns: u64,
    /// Interface name as given on the command line.
    pub ifname: String,
}

/// What the kernel tells beyond a packet's headers, for the socket and drop hooks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extra {
    /// Thread id (0: none).
    pub tid: u32,
    /// cgroup id (0: none).
    pub cgroup: u64,
    /// Drop reason (`kfree_skb` only).
    pub reason: Option<u32>,
    /// Kernel address that freed the packet (`kfree_skb` only).
    pub location: u64,
}

/// The columns [`Extra`] adds (`--layers socket` and above).
pub const EXTRA_COLUMNS: [&str; 4] = ["tid", "cgroup", "drop_reason", "drop_location"];

/// Arrow schema of the `events` table; `head` adds the `--snaplen` column, `extra` the
/// [`EXTRA_COLUMNS`].
pub fn events_schema(head: bool, extra: bool) -> SchemaRef {
    use DataType::*;
    let f = |name: &str, t: DataType| Field::new(name, t, false);
    let mut fields = vec![
        f("ts_ns", Int64),
        f("host", Utf8),
        f("netns", UInt64),
        f("ifname", Utf8),
        f("ifindex", UInt32),
        f("hook", Utf8),
        f("cpu", UInt16),
        f("family", UInt8),
        f("proto", UInt8),
        f("saddr", Utf8),
        f("daddr", Utf8),
        f("sport", UInt16),
        f("dport", UInt16),
        f("ip_id", UInt32),
        f("tcp_seq", UInt32),
        f("tcp_ack", UInt32),
        f("tcp_flags", UInt8),
        f("payload_len", UInt32),
        f("wire_len", UInt32),
        f("pkt_id", UInt64),
        f("flags", UInt8),
        f("vlan", UInt16),
        f("vni", UInt32),
    ];
    if head {
        fields.push(f("head", Binary));
    }
    if extra {
        let n = |name: &str, t: DataType| Field::new(name, t, true);
        fields.extend([n("tid", UInt32), n("cgroup", UInt64), n("drop_reason", Utf8), n("drop_location", Utf8)]);
    }
    Arc::new(Schema::new(fields))
}

/// Text form of an event address.
pub fn addr_string(family: u8, a: &[u8; 16]) -> String {
    if family == 4 {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    } else {
        Ipv6Addr::from(*a).to_string()
    }
}

/// Looks up the context of an event: (scope index, ifindex) → point.
pub trait PointLookup {
    /// Context for an event from scope `scope` on `ifindex`.
    fn point(&self, scope: usize, ifindex: u32) -> Option<&PointContext>;
    /// Name of a kernel drop reason.
    fn drop_reason(&self, reason: u32) -> String {
        format!("reason {reason}")
    }
    /// A kernel code address as `function+0xoffset`.
    fn symbol(&self, addr: u64) -> String {
        format!("{addr:#x}")
    }
}

/// Builds one record batch from events tagged with their scope index.
pub fn to_batch(
    host: &str,
    events: &[(usize, PacketEvent)],
    heads: Option<&[Vec<u8>]>,
    extras: Option<&[Extra]>,
    points: &dyn PointLookup,
) -> Result<RecordBatch, ArrowError> {
    let n = events.len();
    macro_rules! col {
        ($arr:ident, $e:expr) => {
            Arc::new($arr::from_iter_values(events.iter().map($e))) as ArrayRef
        };
    }
    let mut hosts = StringBuilder::with_capacity(n, n * host.len());
    let mut ifnames = StringBuilder::with_capacity(n, n * 8);
    let mut hooks = StringBuilder::with_capacity(n, n * 8);
    let mut saddrs = StringBuilder::with_capacity(n, n * 12);
    let mut daddrs = StringBuilder::with_capacity(n, n * 12);
    let mut netns = Vec::with_capacity(n);
    // Addresses repeat within a flow: format each distinct pair once.
    struct LastPair {
        key: ([u8; 16], [u8; 16], u8),
        src: String,
        dst: String,
    }
    let mut last: Option<LastPair> = None;
    for (scope, e) in events {
        hosts.append_value(host);
        match points.point(*scope, e.ifindex) {
            Some(p) => {
                ifnames.append_value(&p.ifname);
                netns.push(p.netns);
            }
            None => {
                ifnames.append_value(format!("if{}", e.ifindex));
                netns.push(0);
            }
        }
        hooks.append_value(hook::NAMES.get(usize::from(e.hook)).copied().unwrap_or("unknown"));
        let key = (e.saddr, e.daddr, e.family);
        if last.as_ref().is_none_or(|l| l.key != key) {
            last = Some(LastPair { key, src: addr_string(e.family, &e.saddr), dst: addr_string(e.family, &e.daddr) });
        }
        let pair = last.as_ref().expect("just set");
        saddrs.append_value(&pair.src);
        daddrs.append_value(&pair.dst);
    }
    let columns: Vec<ArrayRef> = vec![
        col!(Int64Array, |(_, e)| e.ts_ns as i64),
        Arc::new(hosts.finish()),
        Arc::new(UInt64Array::from(netns)),
        Arc::new(ifnames.finish()),
        col!(UInt32Array, |(_, e)| e.ifindex),
        Arc::new(hooks.finish()),
        col!(UInt16Array, |(_, e)| e.cpu),
        col!(UInt8Array, |(_, e)| e.family),
        col!(UInt8Array, |(_, e)| e.proto),
        Arc::new(saddrs.finish()),
        Arc::new(daddrs.finish()),
        col!(UInt16Array, |(_, e)| e.sport),
        col!(UInt16Array, |(_, e)| e.dport),
        col!(UInt32Array, |(_, e)| e.ip_id),
        col!(UInt32Array, |(_, e)| e.seq),
        col!(UInt32Array, |(_, e)| e.ack),
        col!(UInt8Array, |(_, e)| e.tcp_flags),
        col!(UInt32Array, |(_, e)| e.payload_len),
        col!(UInt32Array, |(_, e)| e.wire_len),
        col!(UInt64Array, |(_, e)| e.pkt_id),
        col!(UInt8Array, |(_, e)| e.flags),
        col!(UInt16Array, |(_, e)| e.vlan),
        col!(UInt32Array, |(_, e)| e.vni),
    ];
    let mut columns = columns;
    if let Some(heads) = heads {
        columns.push(Arc::new(BinaryArray::from_iter_values(heads.iter())));
    }
    if let Some(x) = extras {
        columns.extend(extra_columns(x, points));
    }
    RecordBatch::try_new(events_schema(heads.is_some(), extras.is_some()), columns)
}

/// The [`EXTRA_COLUMNS`]: null where the hook has no such thing.
fn extra_columns(x: &[Extra], points: &dyn PointLookup) -> [ArrayRef; 4] {
    let some = |v: u64| (v != 0).then_some(v);
    let mut reasons = StringBuilder::new();
    let mut locations = StringBuilder::new();
    for e in x {
        match e.reason {
            Some(r) => {
                reasons.append_value(points.drop_reason(r));
                locations.append_value(points.symbol(e.location));
            }
            None => {
                reasons.append_null();
                locations.append_null();
            }
        }
    }
    [
        Arc::new(UInt32Array::from_iter(x.iter().map(|e| some(u64::from(e.tid)).map(|v| v as u32)))),
        Arc::new(UInt64Array::from_iter(x.iter().map(|e| some(e.cgroup)))),
        Arc::new(reasons.finish()),
        Arc::new(locations.finish()),
    ]
}

/// A lookup with one point, on ifindex 3 (for tests of the batch builders).
#[cfg(test)]
pub(crate) struct OnePoint(pub PointContext);

#[cfg(test)]
impl PointLookup for OnePoint {
    fn point(&self, _: usize, ifindex: u32) -> Option<&PointContext> {
        (ifindex == 3).then_some(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_has_every_column_and_formats_addresses() {
        let mut e =
            PacketEvent { ts_ns: 10, ifindex: 3, family: 4, hook: hook::TC_EGRESS, pkt_id: 9, ..Default::default() };
        e.saddr[..4].copy_from_slice(&[198, 18, 0, 1]);
        e.daddr[..4].copy_from_slice(&[198, 18, 0, 2]);
        let mut v6 = e;
        v6.family = 6;
        v6.ifindex = 4;
        v6.saddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
        let pts = OnePoint(PointContext { netns: 77, ifname: "ns1/veth0".into() });
        let b = to_batch("h1", &[(0, e), (0, v6)], None, None, &pts).unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.num_columns(), events_schema(false, false).fields().len());
        let s = |name: &str| {
            b.column_by_name(name).unwrap().as_any().downcast_ref::<arrow::array::StringArray>().unwrap().clone()
        };
        assert_eq!(s("saddr").value(0), "198.18.0.1");
        assert_eq!(s("saddr").value(1), "2001:db8::1");
        assert_eq!(s("ifname").value(0), "ns1/veth0");
        assert_eq!(s("ifname").value(1), "if4");
        assert_eq!(s("hook").value(0), "tc_egress");
    }
}
