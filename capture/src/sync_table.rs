//! The `sync` table: one row per clock-sync probe timestamp taken on this
//! host (docs/schema.md). The analyzer joins the tables of all hosts by
//! `(session, seq, idx, kind)` to get the four timestamps of each exchange.

use std::sync::Arc;

use arrow::{
    array::{ArrayRef, Int64Array, StringArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array},
    datatypes::{DataType, Field, Schema, SchemaRef},
    error::ArrowError,
    record_batch::RecordBatch,
};
use capture_common::{
    abi::{hook, SyncStamp},
    probe::kind,
};

use crate::schema::{addr_string, PointLookup};

/// Arrow schema of the `sync` table.
pub fn sync_schema() -> SchemaRef {
    use DataType::*;
    let f = |name: &str, t: DataType| Field::new(name, t, false);
    Arc::new(Schema::new(vec![
        f("ts_ns", Int64),
        f("host", Utf8),
        f("netns", UInt64),
        f("ifname", Utf8),
        f("hook", Utf8),
        f("kind", Utf8),
        f("session", UInt64),
        f("seq", UInt64),
        f("idx", UInt8),
        f("saddr", Utf8),
        f("daddr", Utf8),
        f("sport", UInt16),
        f("dport", UInt16),
        f("cpu", UInt16),
        f("ifindex", UInt32),
    ]))
}

/// Builds one record batch from stamps tagged with their scope index.
pub fn to_sync_batch(
    host: &str,
    stamps: &[(usize, SyncStamp)],
    points: &dyn PointLookup,
) -> Result<RecordBatch, ArrowError> {
    let point = |(scope, s): &(usize, SyncStamp)| points.point(*scope, s.ifindex);
    let strings = |f: &dyn Fn(&(usize, SyncStamp)) -> String| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(stamps.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(stamps.iter().map(|(_, s)| s.ts_ns as i64))),
        strings(&|_| host.to_owned()),
        Arc::new(UInt64Array::from_iter_values(stamps.iter().map(|e| point(e).map_or(0, |p| p.netns)))),
        strings(&|e| point(e).map_or_else(|| format!("if{}", e.1.ifindex), |p| p.ifname.clone())),
        strings(&|(_, s)| hook::NAMES.get(usize::from(s.hook)).copied().unwrap_or("unknown").to_owned()),
        strings(&|(_, s)| kind::NAMES.get(usize::from(s.kind)).copied().unwrap_or("unknown").to_owned()),
        Arc::new(UInt64Array::from_iter_values(stamps.iter().map(|(_, s)| s.session))),
        Arc::new(UInt64Array::from_iter_values(stamps.iter().map(|(_, s)| s.seq))),
        Arc::new(UInt8Array::from_iter_values(stamps.iter().map(|(_, s)| s.idx))),
        strings(&|(_, s)| addr_string(s.family, &s.saddr)),
        strings(&|(_, s)| addr_string(s.family, &s.daddr)),
        Arc::new(UInt16Array::from_iter_values(stamps.iter().map(|(_, s)| s.sport))),
        Arc::new(UInt16Array::from_iter_values(stamps.iter().map(|(_, s)| s.dport))),
        Arc::new(UInt16Array::from_iter_values(stamps.iter().map(|(_, s)| s.cpu))),
        Arc::new(UInt32Array::from_iter_values(stamps.iter().map(|(_, s)| s.ifindex))),
    ];
    RecordBatch::try_new(sync_schema(), columns)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{OnePoint, PointContext};

    #[test]
    fn batch_names_hook_kind_and_point() {
        let mut s = SyncStamp {
            ts_ns: 5,
            session: 7,
            seq: 9,
            ifindex: 3,
            hook: hook::XDP,
            family: 4,
            kind: 1,
            idx: 1,
            ..Default::default()
        };
        s.saddr[..4].copy_from_slice(&[198, 18, 0, 2]);
        let pts = OnePoint(PointContext { netns: 11, ifname: "veth0".into() });
        let b = to_sync_batch("b", &[(0, s)], &pts).unwrap();
        assert_eq!(b.num_columns(), sync_schema().fields().len());
        let col =
            |n: &str| b.column_by_name(n).unwrap().as_any().downcast_ref::<StringArray>().unwrap().value(0).to_owned();
        assert_eq!(
            (col("hook"), col("kind"), col("ifname"), col("saddr")),
            ("xdp".into(), "reply".into(), "veth0".into(), "198.18.0.2".into())
        );
    }
}
