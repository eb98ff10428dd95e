//! A pcap's rows as netlat `events` and `sync` tables (docs/schema.md), so the rest of the
//! analyzer reads them like any capture.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use polars::io::parquet::write::KeyValueMetadata;
use polars::prelude::*;

use super::{read::Direction, FileData, HOOK};
use crate::input::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, TABLE_KEY};

/// Why a converted table could not be written.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The temporary folder could not be made.
    #[error("cannot create a temporary folder for converted pcaps: {0}")]
    TempDir(std::io::Error),
    /// Writing a table failed (full disk, ...).
    #[error("{path}: {source}")]
    Write {
        /// The table file.
        path: PathBuf,
        /// The error.
        source: PolarsError,
    },
}

fn addr(family: u8, a: &[u8; 16]) -> String {
    if family == 4 {
        Ipv4Addr::new(a[0], a[1], a[2], a[3]).to_string()
    } else {
        Ipv6Addr::from(*a).to_string()
    }
}

fn write(path: &Path, host: &str, table: &str, cols: Vec<Column>) -> Result<(), TableError> {
    let err = |source| TableError::Write { path: path.to_owned(), source };
    let mut df = DataFrame::new_infer_height(cols).map_err(err)?;
    let kv = KeyValueMetadata::from_static(vec![
        (SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_owned()),
        (TABLE_KEY.to_owned(), table.to_owned()),
        ("netlat.host".to_owned(), host.to_owned()),
        // pcap timestamps are the capturing host's wall clock.
        ("netlat.clock".to_owned(), "CLOCK_REALTIME".to_owned()),
    ]);
    let file = File::create(path).map_err(|e| err(e.into()))?;
    ParquetWriter::new(file).with_key_value_metadata(Some(kv)).finish(&mut df).map_err(err)?;
    Ok(())
}

/// Writes the events of one pcap.
pub fn write_events(path: &Path, host: &str, d: &FileData) -> Result<(), TableError> {
    let r = &d.rows;
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), r.iter().map($f).collect::<Vec<_>>())
        };
    }
    let cols = vec![
        col!("ts_ns", |x| x.ts_ns),
        col!("host", |_| host),
        col!("netns", |_| 0u64),
        col!("ifname", |x| d.ifnames[x.iface as usize].as_str()),
        col!("ifindex", |x| x.iface),
        col!("hook", |_| HOOK),
        col!("cpu", |_| 0u16),
        col!("family", |x| x.info.family),
        col!("proto", |x| x.info.proto),
        col!("saddr", |x| addr(x.info.family, &x.info.saddr)),
        col!("daddr", |x| addr(x.info.family, &x.info.daddr)),
        col!("sport", |x| x.info.sport),
        col!("dport", |x| x.info.dport),
        col!("ip_id", |x| x.info.ip_id),
        col!("tcp_seq", |x| x.info.seq),
        col!("tcp_ack", |x| x.info.ack),
        col!("tcp_flags", |x| x.info.tcp_flags),
        col!("payload_len", |x| x.info.payload_len),
        col!("wire_len", |x| x.wire_len),
        col!("pkt_id", |x| x.pkt_id),
        col!("flags", |x| x.info.flags),
        col!("vlan", |x| x.info.vlan),
        col!("vni", |x| x.info.vni),
        Column::new("head".into(), r.iter().map(|x| x.head.as_slice()).collect::<Vec<&[u8]>>()),
    ];
    write(path, host, "events", cols)
}

/// Writes the clock-sync probe stamps of one pcap whose direction is known: a sent stamp
/// is filed as `tc_egress`, a received one as `tc_ingress`, as netlat-capture files them.
pub fn write_sync(path: &Path, host: &str, d: &FileData) -> Result<(), TableError> {
    let r: Vec<_> = d.sync.iter().filter(|s| s.dir.is_some()).collect();
    macro_rules! col {
        ($name:literal, $f:expr) => {
            Column::new($name.into(), r.iter().map($f).collect::<Vec<_>>())
        };
    }
    let cols = vec![
        col!("ts_ns", |x| x.ts_ns),
        col!("host", |_| host),
        col!("netns", |_| 0u64),
        col!("ifname", |x| d.ifnames[x.iface as usize].as_str()),
        col!("hook", |x| if x.dir == Some(Direction::Out) { "tc_egress" } else { "tc_ingress" }),
        col!("kind", |x| capture_common::probe::kind::NAMES.get(x.header.kind as usize).copied().unwrap_or("?")),
        col!("session", |x| x.header.session),
        col!("seq", |x| x.header.seq),
        col!("idx", |x| x.header.idx),
        col!("saddr", |x| addr(x.info.family, &x.info.saddr)),
        col!("daddr", |x| addr(x.info.family, &x.info.daddr)),
        col!("sport", |x| x.info.sport),
        col!("dport", |x| x.info.dport),
        col!("cpu", |_| 0u16),
        col!("ifindex", |x| x.iface),
    ];
    write(path, host, "sync", cols)
}
