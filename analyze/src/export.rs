//! `netlat-analyze export --pcapng OUT`: the matched packets as a pcapng file for
//! Wireshark, one interface per observation point, each packet's hop latencies in its
//! comment.
//!
//! Every observation of a matched packet (a packet with at least one hop) becomes one
//! Enhanced Packet Block on its point's interface, at its aligned time, so Wireshark's
//! time column and `frame.time_delta` read across points like one capture. The bytes are the
//! packet's own when the capture kept them (pcap inputs; netlat-capture `--snaplen`);
//! otherwise a header-only frame rebuilt from the event's fields (addresses, ports, IP id,
//! TCP sequence, acknowledgment and flags), with the original length, so dissectors,
//! filters and `tcp.stream` work.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption, InterfaceTsResolution,
};
use pcap_file::pcapng::blocks::opt_common::CommonOption;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use polars::prelude::*;

use crate::matching::Analysis;

/// Why the export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Creating, writing or renaming the output.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The pcapng writer refused a block.
    #[error("{path}: {source}")]
    Pcap {
        /// The file.
        path: PathBuf,
        /// The error.
        source: pcap_file::pcapng::PcapNgWriteError,
    },
    /// Reading the packets' fields back from an input failed.
    #[error("{path}: {source}")]
    Read {
        /// The input file.
        path: PathBuf,
        /// The error.
        source: PolarsError,
    },
}

/// What was written.
#[derive(Debug, Default)]
pub struct Written {
    /// Packets (distinct `pkt_id`).
    pub packets: u64,
    /// Enhanced packet blocks (one per observation).
    pub blocks: u64,
    /// Blocks with the packet's captured bytes (the rest are rebuilt headers).
    pub with_bytes: u64,
}

/// One observation of a matched packet.
struct Obs {
    ts: i64,
    point: u32,
    pkt: u64,
}

/// The fields a frame is rebuilt from, or the captured bytes.
#[derive(Default, Clone)]
struct Fields {
    proto: u8,
    saddr: String,
    daddr: String,
    sport: u16,
    dport: u16,
    ip_id: u32,
    seq: u32,
    ack: u32,
    tcp_flags: u8,
    payload_len: u32,
    wire_len: u32,
    head: Option<Vec<u8>>,
}

const FIELD_COLUMNS: [&str; 15] = [
    "host",
    "netns",
    "ifname",
    "hook",
    "pkt_id",
    "proto",
    "saddr",
    "daddr",
    "sport",
    "dport",
    "ip_id",
    "tcp_seq",
    "tcp_ack",
    "tcp_flags",
    "payload_len",
];

/// Reads the fields of the wanted packets from one events file, keyed by (pkt_id, point).
fn read_fields(
    path: &Path,
    wanted: &HashSet<u64>,
    points: &HashMap<(String, u64, String, String), u32>,
    out: &mut HashMap<(u64, u32), Fields>,
) -> PolarsResult<()> {
    let schema = {
        let mut r = ParquetReader::new(File::open(path)?);
        r.schema()?
    };
    let mut cols: Vec<&str> = FIELD_COLUMNS.to_vec();
    cols.push("wire_len");
    let has_head = schema.get("head").is_some();
    if has_head {
        cols.push("head");
    }
    let df = crate::matching::scan_columns(path, &cols)?.collect()?;
    let s = |n: &str| df.column(n).and_then(|c| c.str().cloned());
    let (host, ifname, hook, saddr, daddr) = (s("host")?, s("ifname")?, s("hook")?, s("saddr")?, s("daddr")?);
    let netns = df.column("netns")?.u64()?.clone();
    let pkt = df.column("pkt_id")?.u64()?.clone();
    let u8c = |n: &str| df.column(n).and_then(|c| c.cast(&DataType::UInt8)).and_then(|c| c.u8().cloned());
    let u16c = |n: &str| df.column(n).and_then(|c| c.cast(&DataType::UInt16)).and_then(|c| c.u16().cloned());
    let u32c = |n: &str| df.column(n).and_then(|c| c.cast(&DataType::UInt32)).and_then(|c| c.u32().cloned());
    let (proto, flags) = (u8c("proto")?, u8c("tcp_flags")?);
    let (sport, dport) = (u16c("sport")?, u16c("dport")?);
    let (ip_id, seq, ack, plen, wlen) =
        (u32c("ip_id")?, u32c("tcp_seq")?, u32c("tcp_ack")?, u32c("payload_len")?, u32c("wire_len")?);
    let head = if has_head { Some(df.column("head")?.binary()?.clone()) } else { None };
    for i in 0..df.height() {
        let Some(id) = pkt.get(i) else { continue };
        if !wanted.contains(&id) {
            continue;
        }
        let key = (
            host.get(i).unwrap_or_default().to_owned(),
            netns.get(i).unwrap_or(0),
            ifname.get(i).unwrap_or_default().to_owned(),
            hook.get(i).unwrap_or_default().to_owned(),
        );
        let Some(&point) = points.get(&key) else { continue };
        out.insert(
            (id, point),
            Fields {
                proto: proto.get(i).unwrap_or(0),
                saddr: saddr.get(i).unwrap_or_default().to_owned(),
                daddr: daddr.get(i).unwrap_or_default().to_owned(),
                sport: sport.get(i).unwrap_or(0),
                dport: dport.get(i).unwrap_or(0),
                ip_id: ip_id.get(i).unwrap_or(0),
                seq: seq.get(i).unwrap_or(0),
                ack: ack.get(i).unwrap_or(0),
                tcp_flags: flags.get(i).unwrap_or(0),
                payload_len: plen.get(i).unwrap_or(0),
                wire_len: wlen.get(i).unwrap_or(0),
                head: head.as_ref().and_then(|h| h.get(i)).filter(|b| !b.is_empty()).map(<[u8]>::to_vec),
            },
        );
    }
    Ok(())
}

/// `netlat.mono_to_realtime_ns` of the first file that has it: added to every time so the
/// export shows wall-clock dates (one constant for all points, so no latency changes).
fn wall_offset(files: &[PathBuf]) -> i64 {
    files
        .iter()
        .find_map(|f| {
            let md = ParquetReader::new(File::open(f).ok()?).get_metadata().ok()?.clone();
            let kv = md
                .key_value_metadata
                .as_ref()?
                .iter()
                .find(|kv| kv.key == "netlat.mono_to_realtime_ns")?
                .value
                .clone()?;
            kv.trim().parse().ok()
        })
        .unwrap_or(0)
}

fn comment(a: &Analysis, hops: &[(u32, u32, i64)]) -> String {
    let mut s = String::from("netlat:");
    for (i, (f, t, lat)) in hops.iter().enumerate() {
        let sep = if i == 0 { " " } else { "; " };
        let (f, t) = (&a.points[*f as usize].label, &a.points[*t as usize].label);
        s.push_str(&format!("{sep}{f} -> {t} {:.3} us", *lat as f64 / 1000.0));
    }
    s
}

/// Writes `out` (through a temporary name and a rename).
pub fn write(out: &Path, a: &Analysis, files: &[PathBuf]) -> Result<Written, ExportError> {
    let r = &a.rows;
    let mut hops: HashMap<u64, Vec<(u32, u32, i64)>> = HashMap::new();
    let mut obs: Vec<Obs> = Vec::new();
    let mut seen: HashSet<(u64, u32)> = HashSet::new();
    for i in 0..r.pkt_id.len() {
        let (id, from, to, ts, lat) = (r.pkt_id[i], r.from[i], r.to[i], r.ts[i], r.latency[i]);
        hops.entry(id).or_default().push((from, to, lat));
        for (p, t) in [(from, ts), (to, ts + lat)] {
            if seen.insert((id, p)) {
                obs.push(Obs { ts: t, point: p, pkt: id });
            }
        }
    }
    obs.sort_by_key(|o| (o.ts, o.point));
    let wanted: HashSet<u64> = hops.keys().copied().collect();
    let points: HashMap<(String, u64, String, String), u32> = a
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| ((p.host.clone(), p.netns, p.ifname.clone(), p.hook.clone()), i as u32))
        .collect();
    let mut fields = HashMap::new();
    for f in files {
        crate::input::guard(|| read_fields(f, &wanted, &points, &mut fields))
            .unwrap_or_else(|m| Err(PolarsError::ComputeError(m.into())))
            .map_err(|source| ExportError::Read { path: f.clone(), source })?;
    }
    let wall = wall_offset(files);

    let tmp =
        out.with_file_name(format!(".{}.partial", out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ExportError::Io { path, source }
    };
    let pcap = |source| ExportError::Pcap { path: out.to_owned(), source };
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut w = PcapNgWriter::new(BufWriter::new(file)).map_err(pcap)?;
    for p in &a.points {
        let mut idb = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0);
        idb.options = vec![
            InterfaceDescriptionOption::IfName(p.label.clone().into()),
            InterfaceDescriptionOption::IfDescription(
                format!(
                    "netlat observation point: host {}, interface {}, hook {}, netns {}",
                    p.host, p.ifname, p.hook, p.netns
                )
                .into(),
            ),
            InterfaceDescriptionOption::IfTsResol(InterfaceTsResolution::NANO),
        ];
        w.write_pcapng_block(idb).map_err(pcap)?;
    }
    let mut written = Written { packets: wanted.len() as u64, ..Default::default() };
    for o in &obs {
        let f = fields.get(&(o.pkt, o.point)).cloned().unwrap_or_default();
        let (data, orig) = match &f.head {
            Some(h) => {
                written.with_bytes += 1;
                (h.clone(), f.wire_len.max(h.len() as u32))
            }
            None => {
                let d = rebuild(&f);
                let orig = f.wire_len.max(d.len() as u32);
                (d, orig)
            }
        };
        let ts = (o.ts + wall).max(0) as u64;
        let mut epb = EnhancedPacketBlock {
            interface_id: o.point,
            timestamp: Duration::from_nanos(ts),
            original_len: orig,
            data: data.into(),
            options: vec![EnhancedPacketOption::Common(CommonOption::Comment(comment(a, &hops[&o.pkt]).into()))],
        };
        if f.head.is_none() {
            epb.options.push(EnhancedPacketOption::Common(CommonOption::Comment(
                "netlat: headers rebuilt from the event (the capture kept no packet bytes)".into(),
            )));
        }
        w.write_pcapng_block(epb).map_err(pcap)?;
        written.blocks += 1;
    }
    let buf = w.into_inner();
    let file = buf.into_inner().map_err(|e| ExportError::Io { path: tmp.clone(), source: e.into_error() })?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(written)
}

mod rebuild;
use rebuild::rebuild;
