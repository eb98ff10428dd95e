//! The data packets' own stamps for the clock estimate ([`sync::traffic`]): every packet
//! seen leaving one host and arriving at another bounds their clocks' offset. The clock
//! alignment reads them (when there are two hosts or more), on each host's own clock, from
//! the points where packets leave (TC egress) and arrive (XDP, TC ingress).
//!
//! Large inputs are thinned by `pkt_id` (a hash of the packet, so a uniform sample kept
//! the same at every point) to about [`TARGET_ROWS`] events: the estimate needs the
//! fastest packets of each direction per millisecond, not every packet.

use std::path::PathBuf;

use polars::prelude::*;
use sync::{samples::Hook, traffic::Observation};

/// Events read, about, however large the input.
pub const TARGET_ROWS: u64 = 2_000_000;

/// Reads the stamps of `paths` (netlat events tables) taken on `hosts`, numbered as there
/// (other hosts' stamps are left out).
pub fn read(paths: &[PathBuf], hosts: &[String]) -> PolarsResult<Vec<Observation>> {
    let columns = ["pkt_id", "ts_ns", "host", "netns", "ifname", "hook"];
    let tables: Vec<LazyFrame> =
        paths.iter().map(|p| crate::matching::scan_columns(p, &columns)).collect::<PolarsResult<_>>()?;
    let total = crate::matching::row_count(&tables)?;
    let stride = total.div_ceil(TARGET_ROWS).max(1).next_power_of_two();
    let hooks = Hook::ALL.iter().map(|(_, n)| col("hook").eq(lit(*n))).reduce(Expr::or).expect("hooks");
    let mut out = Vec::new();
    let mut points: Vec<(String, u64, String, String)> = Vec::new();
    for t in tables {
        let df = t
            .select(columns.map(col))
            .filter(
                col("pkt_id")
                    .is_not_null()
                    .and(col("ts_ns").is_not_null())
                    .and(hooks.clone())
                    .and((col("pkt_id") % lit(stride)).eq(lit(0u64))),
            )
            .collect()?;
        let id = df.column("pkt_id")?.u64()?;
        let ts = df.column("ts_ns")?.i64()?;
        let host = df.column("host")?.str()?;
        let netns = df.column("netns")?.u64()?;
        let ifname = df.column("ifname")?.str()?;
        let hook = df.column("hook")?.str()?;
        for i in 0..df.height() {
            let (Some(pkt_id), Some(ts_ns), Some(h), Some(k)) =
                (id.get(i), ts.get(i), host.get(i), hook.get(i).and_then(Hook::from_name))
            else {
                continue;
            };
            let Some(host) = hosts.iter().position(|x| x == h) else { continue };
            let (ns, ifn, hk) =
                (netns.get(i).unwrap_or(0), ifname.get(i).unwrap_or_default(), hook.get(i).unwrap_or_default());
            // Few points: a scan beats hashing three strings per event.
            let point = match points.iter().position(|(a, b, c, d)| a == h && *b == ns && c == ifn && d == hk) {
                Some(p) => p as u32,
                None => {
                    points.push((h.to_owned(), ns, ifn.to_owned(), hk.to_owned()));
                    points.len() as u32 - 1
                }
            };
            out.push(Observation { pkt_id, host, point, egress: k == Hook::TcEgress, ts_ns });
        }
    }
    Ok(out)
}
