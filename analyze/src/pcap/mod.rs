//! pcap and pcapng files as observation points (`netlat-analyze a.pcap b.pcapng`).
//!
//! Each file is read once ([`read`]), every packet parsed by the kernel programs' own parser
//! and identity hash ([`frame`] turns any supported link layer into Ethernet first), and
//! written as a netlat `events` table (and a `sync` table for netlat clock-sync probes seen
//! in the capture) into a temporary folder. From there on a pcap is analyzed exactly like a
//! netlat capture: one code path for matching, paths and percentiles.
//!
//! * Point: host = the file name without extension (or `--pcap-host FILE=HOST`), interface =
//!   the pcapng interface name (`if_name`; `ifN` without one), `if<index>` for `tcpdump -i
//!   any` cooked-v2 captures, `-` for a classic pcap; hook = `pcap`.
//! * Clock: a pcap holds wall-clock times of its host. Sync probes in the capture (netlat
//!   captures ran beside tcpdump) align it like any capture; else `--offset FILE=NS` states
//!   its offset; else it is taken as it is. [`Source::clock`] says which, per file.

pub mod frame;
pub mod read;
mod tables;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use capture_common::{hash, parse, probe};
use serde::Serialize;

use crate::input::{Inputs, Skipped};
use read::{Direction, Format};
pub use tables::TableError;

/// Hook name of pcap observation points.
pub const HOOK: &str = "pcap";

/// How pcap files are named and placed in time.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--pcap-host FILE=HOST`: host names instead of file stems.
    pub hosts: Vec<(PathBuf, String)>,
    /// `--offset FILE=NS`: the file's clock is NS ahead of the reference time base.
    pub offsets: Vec<(PathBuf, i64)>,
    /// UDP port of netlat's clock-sync probes (`0`: any port, by the probe header alone).
    pub sync_port: u16,
    /// VXLAN UDP port (as netlat-capture's `--vxlan-port`).
    pub vxlan_port: u16,
}

/// How a pcap file's timestamps were put on the common time base.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Clock {
    /// From netlat clock-sync probes found in the capture.
    Sync {
        /// Probe and reply timestamps found.
        stamps: u64,
    },
    /// From `--offset`.
    Stated {
        /// The stated offset, ns.
        offset_ns: i64,
    },
    /// Neither: the file's own clock.
    AsIs,
}

/// One pcap file and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    /// The file as given.
    pub file: String,
    /// Host name of its points.
    pub host: String,
    /// pcap or pcapng.
    pub format: &'static str,
    /// Packets in the file.
    pub packets: u64,
    /// Packets that became events.
    pub events: u64,
    /// Packets that are not IP (ARP, ...) or of a link type netlat does not read.
    pub not_ip: u64,
    /// IP packets the parser rejected.
    pub malformed: u64,
    /// The damage that stopped reading early, if any (the packets before it are used).
    pub error: Option<String>,
    /// How its timestamps were aligned.
    pub clock: Clock,
    /// Probe stamps whose direction could not be told (left out of alignment).
    pub sync_unresolved: u64,
}

impl Source {
    /// One line for the notes.
    pub fn note(&self) -> String {
        let clock = match &self.clock {
            Clock::Sync { stamps } => format!("clock aligned from {stamps} netlat sync-probe stamps in the capture"),
            Clock::Stated { offset_ns } => format!("clock offset stated with --offset: {offset_ns} ns"),
            Clock::AsIs => "no sync probes and no --offset: its own clock, used as it is".to_owned(),
        };
        format!(
            "pcap {} ({}, host {}): {} packets, {} events, {} not IP, {} malformed; {clock}",
            self.file, self.format, self.host, self.packets, self.events, self.not_ip, self.malformed
        )
    }
}

/// The converted pcaps; the temporary folder lives as long as this.
pub struct Loaded {
    /// Per pcap file, in the order given.
    pub sources: Vec<Source>,
    /// Converted file → the pcap it came from (for listings).
    pub origin: HashMap<PathBuf, PathBuf>,
    /// Hosts whose offset was stated (`--offset`): aligned by the user.
    pub stated: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Loaded {
    /// `used` with converted files replaced by the pcap they came from (once each).
    pub fn listing(&self, used: &[PathBuf]) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::with_capacity(used.len());
        for p in used {
            let p = self.origin.get(p).unwrap_or(p);
            if !out.contains(p) {
                out.push(p.clone());
            }
        }
        out
    }
}

/// One event row of a pcap.
pub(crate) struct Row {
    pub ts_ns: i64,
    pub iface: u32,
    pub info: parse::PacketInfo,
    pub pkt_id: u64,
    pub wire_len: u32,
    pub head: Vec<u8>,
}

/// One probe stamp of a pcap, before its direction is known.
pub(crate) struct SyncRow {
    pub ts_ns: i64,
    pub iface: u32,
    pub info: parse::PacketInfo,
    pub header: probe::Header,
    pub dir: Option<Direction>,
}

/// Bytes of each packet kept for `export --pcapng` (the link-layer and protocol headers).
pub const HEAD_BYTES: usize = 256;

/// What one file yielded.
pub(crate) struct FileData {
    pub ifnames: Vec<String>,
    pub rows: Vec<Row>,
    pub sync: Vec<SyncRow>,
}

fn stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for ext in [".pcapng", ".pcap", ".cap"] {
        if let Some(s) = name.strip_suffix(ext) {
            if !s.is_empty() {
                return s.to_owned();
            }
        }
    }
    name
}

fn same_file(a: &Path, b: &Path) -> bool {
    a == b || std::fs::canonicalize(a).ok().is_some_and(|x| std::fs::canonicalize(b).ok() == Some(x))
}

/// Reads one file into rows; `src` gets the counts and any damage.
fn read_file(path: &Path, format: Format, opts: &Options, offset: i64, src: &mut Source) -> FileData {
    let mut rows = Vec::new();
    let mut sync = Vec::new();
    // Points: (interface, cooked-v2 ifindex) → index into ifnames.
    let mut points: HashMap<(usize, Option<u32>), u32> = HashMap::new();
    let mut ifnames: Vec<String> = Vec::new();
    let mut info = parse::PacketInfo::default();
    let result = read::read(path, format, &mut |ifaces, pkt| {
        src.packets += 1;
        let Some(iface) = ifaces.get(pkt.iface) else {
            src.malformed += 1;
            return;
        };
        let Some((eth, link_dir)) = frame::ethernet(iface.link, pkt.data) else {
            src.not_ip += 1;
            return;
        };
        let ifindex = frame::sll2_ifindex(iface.link, pkt.data);
        let next = ifnames.len() as u32;
        let point = *points.entry((pkt.iface, ifindex)).or_insert_with(|| {
            ifnames.push(match (&iface.name, ifindex, format) {
                (Some(n), _, _) => n.clone(),
                (None, Some(i), _) => format!("if{i}"),
                (None, None, Format::PcapNg) => format!("if{}", pkt.iface),
                (None, None, Format::Pcap) => "-".to_owned(),
            });
            next
        });
        // The length on the wire, in the Ethernet framing `eth` has: a capture cut at its
        // snap length still parses to the whole packet's lengths and identity.
        let wire_len = (pkt.orig_len as usize + eth.len()).saturating_sub(pkt.data.len()) as u32;
        let buf = parse::CutBuf { bytes: &eth, len: wire_len.max(eth.len() as u32) };
        match parse::parse(&buf, opts.vxlan_port, &mut info) {
            Ok(()) => {}
            Err(parse::ParseError::NotIp) => return src.not_ip += 1,
            Err(_) => return src.malformed += 1,
        }
        let ts_ns = pkt.ts_ns - offset;
        // Inside VXLAN too, as netlat-capture does.
        if info.proto == parse::IPPROTO_UDP
            && (opts.sync_port == 0 || info.sport == opts.sync_port || info.dport == opts.sync_port)
        {
            let header = <[u8; probe::HEADER_LEN]>::try_from(
                eth.get(info.payload_off as usize..info.payload_off as usize + probe::HEADER_LEN).unwrap_or(&[]),
            )
            .ok()
            .and_then(|b| probe::Header::decode(&b));
            if let Some(header) = header {
                sync.push(SyncRow { ts_ns, iface: point, info, header, dir: pkt.dir.or(link_dir) });
                return;
            }
        }
        let pkt_id = hash::packet_id(&info, &hash::id_payload(&buf, &info));
        let head = eth[..eth.len().min(HEAD_BYTES)].to_vec();
        rows.push(Row { ts_ns, iface: point, info, pkt_id, wire_len, head });
        src.events += 1;
    });
    if let Err((_, e)) = result {
        src.error = Some(e.to_string());
    }
    FileData { ifnames, rows, sync }
}

/// Converts `inputs.pcaps` into netlat tables, adding them to `inputs.used` and
/// `inputs.sync`. A file that cannot be read at all is moved to `inputs.skipped`; damage
/// later in a file is a warning in its [`Source::error`].
pub fn load(inputs: &mut Inputs, opts: &Options) -> Result<Loaded, TableError> {
    let mut loaded = Loaded { sources: Vec::new(), origin: HashMap::new(), stated: Vec::new(), _dir: None };
    if inputs.pcaps.is_empty() {
        return Ok(loaded);
    }
    let dir = tempfile::Builder::new().prefix("netlat-pcap-").tempdir().map_err(TableError::TempDir)?;
    let mut data = Vec::new();
    for (path, format) in std::mem::take(&mut inputs.pcaps) {
        let host =
            opts.hosts.iter().find(|(f, _)| same_file(f, &path)).map(|(_, h)| h.clone()).unwrap_or_else(|| stem(&path));
        let offset = opts.offsets.iter().find(|(f, _)| same_file(f, &path)).map(|(_, o)| *o);
        let mut src = Source {
            file: path.display().to_string(),
            host,
            format: match format {
                Format::Pcap => "pcap",
                Format::PcapNg => "pcapng",
            },
            packets: 0,
            events: 0,
            not_ip: 0,
            malformed: 0,
            error: None,
            clock: offset.map_or(Clock::AsIs, |offset_ns| Clock::Stated { offset_ns }),
            sync_unresolved: 0,
        };
        let d = read_file(&path, format, opts, offset.unwrap_or(0), &mut src);
        if src.packets == 0 {
            if let Some(e) = &src.error {
                inputs.skipped.push(Skipped { file: src.file.clone(), reason: e.clone() });
                continue;
            }
        }
        data.push((path, src, d));
    }
    let unresolved = resolve_directions(&mut data);
    for (i, (path, mut src, d)) in data.into_iter().enumerate() {
        src.sync_unresolved = unresolved[i];
        let stamps = d.sync.iter().filter(|s| s.dir.is_some()).count() as u64;
        if stamps > 0 && !matches!(src.clock, Clock::Stated { .. }) {
            src.clock = Clock::Sync { stamps };
        }
        let base = dir.path().join(format!("{i:04}-{}", src.host));
        let events = base.with_extension("events.parquet");
        tables::write_events(&events, &src.host, &d)?;
        loaded.origin.insert(events.clone(), path.clone());
        inputs.used.push(events);
        if stamps > 0 && matches!(src.clock, Clock::Sync { .. }) {
            let sync = base.with_extension("sync.parquet");
            tables::write_sync(&sync, &src.host, &d)?;
            loaded.origin.insert(sync.clone(), path.clone());
            inputs.sync.push(sync);
        }
        if matches!(src.clock, Clock::Stated { .. }) {
            loaded.stated.push(src.host.clone());
        }
        loaded.sources.push(src);
    }
    loaded._dir = Some(dir);
    Ok(loaded)
}

/// Tells sent from received probe stamps where the file did not say.
///
/// Two captures that both saw a probe and its reply: the prober's saw them further apart
/// (its gap is the round trip, the responder's only its turnaround). So of the two
/// files, the one with the larger reply − probe gap sent the probe and received the
/// reply. Returns, per file, the stamps that stayed unknown.
fn resolve_directions(data: &mut [(PathBuf, Source, FileData)]) -> Vec<u64> {
    // (session, seq, idx) → per file: (probe ts, reply ts).
    type Key = (u64, u64, u8);
    /// A file, and its probe and reply stamps of one exchange.
    type Sighting = (usize, Option<i64>, Option<i64>);
    let mut seen: BTreeMap<Key, Vec<Sighting>> = BTreeMap::new();
    for (f, (_, _, d)) in data.iter().enumerate() {
        for s in d.sync.iter().filter(|s| s.dir.is_none()) {
            let key = (s.header.session, s.header.seq, s.header.idx);
            let v = seen.entry(key).or_default();
            let slot = match v.iter().position(|e| e.0 == f) {
                Some(i) => i,
                None => {
                    v.push((f, None, None));
                    v.len() - 1
                }
            };
            if s.header.kind == probe::kind::PROBE {
                v[slot].1 = Some(s.ts_ns);
            } else {
                v[slot].2 = Some(s.ts_ns);
            }
        }
    }
    // (file, key) → this file's stamps of the exchange are the prober's.
    let mut prober: HashMap<(usize, Key), bool> = HashMap::new();
    for (key, v) in &seen {
        let gaps: Vec<(usize, i64)> = v.iter().filter_map(|(f, p, r)| Some((*f, (*r)? - (*p)?))).collect();
        if let [(a, ga), (b, gb)] = gaps[..] {
            if ga != gb {
                prober.insert((a, *key), ga > gb);
                prober.insert((b, *key), gb > ga);
            }
        }
    }
    let mut unresolved = vec![0; data.len()];
    for (f, (_, _, d)) in data.iter_mut().enumerate() {
        for s in d.sync.iter_mut().filter(|s| s.dir.is_none()) {
            let key = (s.header.session, s.header.seq, s.header.idx);
            match prober.get(&(f, key)) {
                Some(&is_prober) => {
                    let sent = is_prober == (s.header.kind == probe::kind::PROBE);
                    s.dir = Some(if sent { Direction::Out } else { Direction::In });
                }
                None => unresolved[f] += 1,
            }
        }
    }
    unresolved
}
