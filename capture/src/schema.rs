//! The `events` table: Arrow schema and conversion of kernel events.
//! docs/schema.md is the user-facing description; keep them in step.

use std::{
    collections::HashMap,
    net::{Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use arrow::{
    array::{
        ArrayBuilder, ArrayRef, BinaryArray, DictionaryArray, Int32Array, Int64Array, StringArray, StringBuilder,
        UInt16Array, UInt32Array, UInt64Array, UInt8Array,
    },
    datatypes::{DataType, Field, Int32Type, Schema, SchemaRef},
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
    /// Name of hook `h` (probes given as data name their slots at run time).
    fn hook_name(&self, h: usize) -> &str {
        hook::NAMES.get(h).copied().unwrap_or("unknown")
    }
}

/// The text columns of the `events` table (Utf8 in [`events_schema`]).
pub const TEXT_COLUMNS: [&str; 5] = ["host", "ifname", "hook", "saddr", "daddr"];

/// Columns written without min/max statistics: each row group holds their values' whole
/// spread (one host, the interfaces, hooks and addresses of the flows; CPU numbers,
/// lengths, flags; per-packet counters and hashes), so their statistics cannot prune a
/// row group, and computing them costs the writer a comparison per row and column.
/// `ts_ns`, `netns`, `proto` and the ports keep theirs.
pub const UNPRUNABLE: [&str; 18] = [
    "host",
    "ifname",
    "hook",
    "saddr",
    "daddr",
    "ifindex",
    "cpu",
    "family",
    "ip_id",
    "tcp_seq",
    "tcp_ack",
    "tcp_flags",
    "payload_len",
    "wire_len",
    "pkt_id",
    "flags",
    "vlan",
    "vni",
];

/// Schema of the batches [`to_batch`] builds: [`events_schema`] with the [`TEXT_COLUMNS`] as
/// dictionaries of strings (Int32 keys), since each holds a handful of distinct values per
/// batch: building them costs a key per row instead of a string copy. The files keep the
/// plain strings of [`events_schema`]: the ring writer is given that schema (which is also
/// the Arrow schema stored in the footer), and the Parquet writer takes a dictionary column
/// for a string column, writing the same STRING column it writes from a string array.
pub fn batch_schema(head: bool, extra: bool) -> SchemaRef {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let fields: Vec<_> = events_schema(head, extra)
        .fields()
        .iter()
        .map(|f| match TEXT_COLUMNS.contains(&f.name().as_str()) {
            true => Arc::new(f.as_ref().clone().with_data_type(dict.clone())),
            false => f.clone(),
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// Builds one record batch ([`batch_schema`]) from events tagged with their scope index.
pub fn to_batch(
    host: &str,
    events: &[(usize, PacketEvent)],
    heads: Option<&[Vec<u8>]>,
    extras: Option<&[Extra]>,
    points: &dyn PointLookup,
) -> Result<RecordBatch, ArrowError> {
    macro_rules! col {
        ($arr:ident, $e:expr) => {
            Arc::new($arr::from_iter_values(events.iter().map($e))) as ArrayRef
        };
    }
    let t = TextColumns::new(host, events, points)?;
    let columns: Vec<ArrayRef> = vec![
        col!(Int64Array, |(_, e)| e.ts_ns as i64),
        t.host,
        Arc::new(UInt64Array::from(t.netns)),
        t.ifname,
        col!(UInt32Array, |(_, e)| e.ifindex),
        t.hook,
        col!(UInt16Array, |(_, e)| e.cpu),
        col!(UInt8Array, |(_, e)| e.family),
        col!(UInt8Array, |(_, e)| e.proto),
        t.saddr,
        t.daddr,
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
    RecordBatch::try_new(batch_schema(heads.is_some(), extras.is_some()), columns)
}

/// The [`TEXT_COLUMNS`] of a batch as dictionary arrays, and `netns` (which comes with the
/// interface name). Each distinct value is looked up or formatted once per batch: an
/// observation point once per (scope, ifindex), an address once per distinct address, the
/// hook names not at all (the hook number is the key).
struct TextColumns {
    host: ArrayRef,
    ifname: ArrayRef,
    netns: Vec<u64>,
    hook: ArrayRef,
    saddr: ArrayRef,
    daddr: ArrayRef,
}

impl TextColumns {
    fn new(host: &str, events: &[(usize, PacketEvent)], points: &dyn PointLookup) -> Result<Self, ArrowError> {
        let n = events.len();
        // Keys count distinct values, at most one per row: with fewer rows than i32::MAX,
        // every `len() as i32` below is exact.
        if i32::try_from(n).is_err() {
            return Err(ArrowError::InvalidArgumentError(format!("{n} events in one batch")));
        }
        // (scope, ifindex) -> (ifname key, netns). The same name may get two keys (one per
        // namespace): the Parquet writer stores each distinct string once anyway.
        let mut point_keys: HashMap<(usize, u32), (i32, u64)> = HashMap::new();
        let mut ifnames = StringBuilder::new();
        // One table of addresses for both columns: a reply's source is the request's
        // destination. (family, saddr, daddr) -> (saddr key, daddr key) too, so a row costs
        // one lookup (none when the pair is the previous row's, as in a flow's run of events).
        let mut pair_keys = HashMap::new();
        let mut addr_keys: HashMap<(u8, [u8; 16]), i32> = HashMap::new();
        let mut addrs = StringBuilder::new();
        let mut addr_key = |family: u8, a: &[u8; 16]| {
            *addr_keys.entry((family, *a)).or_insert_with(|| {
                addrs.append_value(addr_string(family, a));
                (addrs.len() - 1) as i32
            })
        };
        let (mut if_k, mut netns, mut hook_k) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut src_k, mut dst_k) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let mut last_point = None;
        let mut last_pair = None;
        // Hook numbers past the known names share the last key, "unknown".
        let unknown = hook::NAMES.len() as i32;
        for (scope, e) in events {
            let point = (*scope, e.ifindex);
            let (k, ns) = match last_point {
                Some((p, v)) if p == point => v,
                _ => {
                    let v = *point_keys.entry(point).or_insert_with(|| {
                        let ns = match points.point(*scope, e.ifindex) {
                            Some(p) => {
                                ifnames.append_value(&p.ifname);
                                p.netns
                            }
                            None => {
                                ifnames.append_value(format!("if{}", e.ifindex));
                                0
                            }
                        };
                        ((ifnames.len() - 1) as i32, ns)
                    });
                    last_point = Some((point, v));
                    v
                }
            };
            if_k.push(k);
            netns.push(ns);
            hook_k.push(i32::from(e.hook).min(unknown));
            let pair = (e.family, e.saddr, e.daddr);
            let (s, d) = match last_pair {
                Some((p, v)) if p == pair => v,
                _ => {
                    let v = *pair_keys
                        .entry(pair)
                        .or_insert_with(|| (addr_key(e.family, &e.saddr), addr_key(e.family, &e.daddr)));
                    last_pair = Some((pair, v));
                    v
                }
            };
            src_k.push(s);
            dst_k.push(d);
        }
        let dict = |keys: Vec<i32>, values: ArrayRef| -> Result<ArrayRef, ArrowError> {
            // Every key was handed out by the builder of `values`: the check `try_new` makes
            // (a pass over the keys) cannot fail.
            debug_assert!(keys.iter().all(|k| (0..values.len() as i32).contains(k)));
            // SAFETY: as above, every key indexes `values`.
            Ok(Arc::new(unsafe { DictionaryArray::<Int32Type>::new_unchecked(Int32Array::from(keys), values) }))
        };
        let addrs: ArrayRef = Arc::new(addrs.finish());
        let hooks = StringArray::from_iter_values((0..hook::COUNT).map(|h| points.hook_name(h)).chain(["unknown"]));
        Ok(Self {
            host: dict(vec![0; n], Arc::new(StringArray::from(vec![host])))?,
            ifname: dict(if_k, Arc::new(ifnames.finish()))?,
            netns,
            hook: dict(hook_k, Arc::new(hooks))?,
            saddr: dict(src_k, addrs.clone())?,
            daddr: dict(dst_k, addrs)?,
        })
    }
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
    use crate::ring::tests::ring;
    use arrow::compute::cast;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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
            let c = cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
            c.as_any().downcast_ref::<StringArray>().unwrap().clone()
        };
        assert_eq!(s("saddr").value(0), "198.18.0.1");
        assert_eq!(s("saddr").value(1), "2001:db8::1");
        assert_eq!(s("ifname").value(0), "ns1/veth0");
        assert_eq!(s("ifname").value(1), "if4");
        assert_eq!(s("hook").value(0), "tc_egress");
    }

    /// Two scopes, a known and an unknown interface, known hooks and one past the names,
    /// IPv4 and IPv6, flows interleaved (and a pair's reverse).
    fn mixed_events() -> Vec<(usize, PacketEvent)> {
        (0..3000u64)
            .map(|i| {
                let k = i as usize;
                let mut e = PacketEvent {
                    ts_ns: 1000 + i,
                    pkt_id: 1 + i * 7919,
                    ifindex: [3, 3, 4][k % 3],
                    hook: [hook::XDP, hook::TC_EGRESS, hook::TC_INGRESS, 250][k % 4],
                    family: 4,
                    ..Default::default()
                };
                e.saddr[..4].copy_from_slice(&[198, 18, 0, (k % 5) as u8]);
                e.daddr[..4].copy_from_slice(&[198, 18, 0, (k % 7) as u8]);
                if k % 11 == 3 {
                    e.family = 6;
                    e.saddr = "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets();
                    e.daddr = "2001:db8::2".parse::<Ipv6Addr>().unwrap().octets();
                }
                (k % 2, e)
            })
            .collect()
    }

    #[test]
    fn dictionary_batches_write_the_files_string_batches_would() {
        let pts = OnePoint(PointContext { netns: 77, ifname: "ns1/veth0".into() });
        let dict = to_batch("h1", &mixed_events(), None, None, &pts).unwrap();
        // The same rows with plain string columns, as batches were built before.
        let plain = RecordBatch::try_new(
            events_schema(false, false),
            dict.columns()
                .iter()
                .map(|c| match c.data_type() {
                    DataType::Dictionary(..) => cast(c, &DataType::Utf8).unwrap(),
                    _ => c.clone(),
                })
                .collect(),
        )
        .unwrap();
        let written = |b: &RecordBatch| {
            let dir = tempfile::tempdir().unwrap();
            let mut r = ring(dir.path(), u64::MAX, 0);
            r.write(b).unwrap();
            r.write(b).unwrap();
            r.rotate().unwrap();
            let file = std::fs::File::open(r.finished().next().unwrap()).unwrap();
            let rd = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            let (md, schema) = (rd.metadata().clone(), rd.schema().clone());
            let batches: Vec<_> = rd.build().unwrap().map(Result::unwrap).collect();
            (md, schema, arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap())
        };
        let (d, p) = (written(&dict), written(&plain));
        // Readers see plain strings: the Parquet columns and the stored Arrow schema.
        assert_eq!(d.1.fields(), events_schema(false, false).fields());
        assert_eq!(format!("{:?}", d.0.file_metadata().schema()), format!("{:?}", p.0.file_metadata().schema()));
        // Same pages: sizes, encodings, statistics and offsets of every column chunk.
        assert_eq!(format!("{:?}", d.0.row_groups()), format!("{:?}", p.0.row_groups()));
        assert_eq!(d.2.columns(), p.2.columns());
        let twice = arrow::compute::concat_batches(&plain.schema(), &[plain.clone(), plain]).unwrap();
        assert_eq!(d.2.columns(), twice.columns());
    }
}
