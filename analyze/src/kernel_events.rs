//! What the kernel reported besides latencies: packets it dropped (`kfree_skb` rows, with
//! the drop reason and the function that dropped them) and TCP retransmissions
//! (`tcp_retransmit` rows). These rows are not observation points of a path: the
//! matching leaves them out ([`EXCLUDED_HOOKS`]) and they are counted here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use polars::prelude::*;
use serde::Serialize;

use crate::flows::{Flow, Selection};

/// Hooks counted here instead of matched.
pub const EXCLUDED_HOOKS: [&str; 2] = ["kfree_skb", "tcp_retransmit"];

/// Packets one host's kernel dropped for one reason at one place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelDrop {
    /// Capturing host.
    pub host: String,
    /// Drop reason (`NETFILTER_DROP`, `NO_SOCKET`, ...).
    pub reason: String,
    /// Function that dropped them (`function+0xoffset`).
    pub location: String,
    /// Flow of the packets, as text.
    pub flow: String,
    /// Packets.
    pub packets: u64,
}

/// The retransmissions of one flow on one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retransmits {
    /// Capturing host.
    pub host: String,
    /// The flow, as text.
    pub flow: String,
    /// Segments (skbs) sent again.
    pub segments: u64,
    /// Bytes sent again.
    pub bytes: u64,
}

/// Drops and retransmissions in scope, sorted by host, then count descending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelEvents {
    /// `kfree_skb` rows by host, reason, location and flow.
    pub drops: Vec<KernelDrop>,
    /// `tcp_retransmit` rows by host and flow.
    pub retransmits: Vec<Retransmits>,
}

const COLUMNS: [&str; 11] = [
    "host",
    "hook",
    "family",
    "proto",
    "saddr",
    "daddr",
    "sport",
    "dport",
    "payload_len",
    "drop_reason",
    "drop_location",
];

/// Reads the drop and retransmission rows of `files` that `selection` keeps (by host and
/// flow). Files without these columns (captures below `--layers all`) have none.
pub fn read(files: &[PathBuf], selection: &Selection) -> PolarsResult<KernelEvents> {
    let mut drops: BTreeMap<(String, String, String, String), u64> = BTreeMap::new();
    let mut retrans: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for f in files {
        let path = f.to_str().ok_or_else(|| polars_err!(ComputeError: "path is not valid UTF-8: {}", f.display()))?;
        let mut lf =
            LazyFrame::scan_parquet(PlRefPath::from(path), ScanArgsParquet { glob: false, ..Default::default() })?;
        let schema = lf.collect_schema()?;
        if !COLUMNS.iter().all(|c| schema.contains(c)) {
            continue;
        }
        let df = lf
            .select(
                COLUMNS
                    .map(|c| col(c).cast(if c == "hook" { DataType::String } else { schema.get(c).unwrap().clone() })),
            )
            .filter(col("hook").eq(lit(EXCLUDED_HOOKS[0])).or(col("hook").eq(lit(EXCLUDED_HOOKS[1]))))
            .collect()?;
        let s = |n: &str| -> PolarsResult<StringChunked> { Ok(df.column(n)?.cast(&DataType::String)?.str()?.clone()) };
        let (host, hook, saddr, daddr, reason, location) =
            (s("host")?, s("hook")?, s("saddr")?, s("daddr")?, s("drop_reason")?, s("drop_location")?);
        let u = |n: &str| -> PolarsResult<UInt64Chunked> { Ok(df.column(n)?.cast(&DataType::UInt64)?.u64()?.clone()) };
        let (family, proto, sport, dport, len) =
            (u("family")?, u("proto")?, u("sport")?, u("dport")?, u("payload_len")?);
        for i in 0..df.height() {
            let host = host.get(i).unwrap_or_default().to_owned();
            let flow = Flow {
                family: family.get(i).unwrap_or(0) as u8,
                proto: proto.get(i).unwrap_or(0) as u8,
                saddr: saddr.get(i).unwrap_or_default().to_owned(),
                daddr: daddr.get(i).unwrap_or_default().to_owned(),
                sport: sport.get(i).unwrap_or(0) as u16,
                dport: dport.get(i).unwrap_or(0) as u16,
            };
            if !selection.host(&host) || !selection.flow(&flow) {
                continue;
            }
            if hook.get(i) == Some("kfree_skb") {
                let key = (
                    host,
                    reason.get(i).unwrap_or("?").to_owned(),
                    location.get(i).unwrap_or("?").to_owned(),
                    flow.to_string(),
                );
                *drops.entry(key).or_default() += 1;
            } else {
                let r = retrans.entry((host, flow.to_string())).or_default();
                r.0 += 1;
                r.1 += len.get(i).unwrap_or(0);
            }
        }
    }
    let mut out = KernelEvents {
        drops: drops
            .into_iter()
            .map(|((host, reason, location, flow), packets)| KernelDrop { host, reason, location, flow, packets })
            .collect(),
        retransmits: retrans
            .into_iter()
            .map(|((host, flow), (segments, bytes))| Retransmits { host, flow, segments, bytes })
            .collect(),
    };
    out.drops.sort_by(|a, b| (&a.host, b.packets).cmp(&(&b.host, a.packets)));
    out.retransmits.sort_by(|a, b| (&a.host, b.segments).cmp(&(&b.host, a.segments)));
    Ok(out)
}

/// The text lines of the table output (nothing when there is nothing to say).
pub fn lines(k: &KernelEvents) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if !k.drops.is_empty() {
        out.push_str("kernel drops (kfree_skb: host, reason, where, flow, packets):\n");
        for d in &k.drops {
            let _ = writeln!(out, "  {}  {}  at {}  {}  {}", d.host, d.reason, d.location, d.flow, d.packets);
        }
    }
    if !k.retransmits.is_empty() {
        out.push_str("tcp retransmissions (host, flow, segments, bytes):\n");
        for r in &k.retransmits {
            let _ = writeln!(out, "  {}  {}  {}  {}", r.host, r.flow, r.segments, r.bytes);
        }
    }
    out
}
