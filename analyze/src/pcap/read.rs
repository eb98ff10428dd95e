//! Streaming pcap and pcapng reading with byte offsets, so a damaged file is reported as
//! "FILE: ... at byte N" and the packets before the damage are still used.
//!
//! Files are read in chunks (never whole into memory) and handed to pcap-file's slice
//! parsers, which say how much they consumed: the file offset of every record is known.

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use pcap_file::pcap::{PcapParseError, PcapParser};
use pcap_file::pcapng::{blocks::enhanced_packet::EnhancedPacketOption, Block, PcapNgParseError, PcapNgParser};
use pcap_file::DataLink;

/// Which container a file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap (`tcpdump -w`), micro- or nanosecond timestamps.
    Pcap,
    /// pcapng (`dumpcap`, `tshark -w`, Wireshark).
    PcapNg,
}

/// Tells pcap and pcapng files by their first four bytes.
pub fn sniff(path: &Path) -> Option<Format> {
    let mut magic = [0u8; 4];
    File::open(path).ok()?.read_exact(&mut magic).ok()?;
    match u32::from_le_bytes(magic) {
        0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1 => Some(Format::Pcap),
        0x0a0d_0d0a => Some(Format::PcapNg),
        _ => None,
    }
}

/// Which way a packet crossed the capturing interface, when the file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received.
    In,
    /// Sent.
    Out,
}

/// One captured packet, as the file gives it.
pub struct Packet<'a> {
    /// Interface: index into [`Reader::interfaces`].
    pub iface: usize,
    /// Capture time (the capturing host's wall clock), ns since the epoch.
    pub ts_ns: i64,
    /// Bytes captured, starting with the link-layer header of `interfaces[iface].link`.
    pub data: &'a [u8],
    /// Length on the wire.
    pub orig_len: u32,
    /// From pcapng `epb_flags`, if present.
    pub dir: Option<Direction>,
    /// File offset of the record.
    pub offset: u64,
}

/// An interface of the file: one observation point.
#[derive(Clone, Debug)]
pub struct Interface {
    /// pcapng `if_name`, if the file gives one.
    pub name: Option<String>,
    /// Link-layer type of its packets.
    pub link: DataLink,
}

/// Why a file could not be read (in full).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed.
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    /// The file header is not a pcap or pcapng header.
    #[error("not a pcap or pcapng file: {0}")]
    Header(String),
    /// The file ends inside a record (a capture killed mid-write, or a cut copy).
    #[error("truncated at byte {offset}: the record there needs {needed} bytes, {present} present")]
    Truncated {
        /// Offset of the incomplete record.
        offset: u64,
        /// Bytes the record needs.
        needed: usize,
        /// Bytes left in the file.
        present: usize,
    },
    /// A record that cannot be parsed.
    #[error("malformed record at byte {offset}: {reason}")]
    Malformed {
        /// Offset of the record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
}

const CHUNK: usize = 1 << 20;

/// A file read in chunks; `buf[start..]` is what has not been consumed yet.
struct Chunks {
    file: File,
    buf: Vec<u8>,
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl Chunks {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self { file: File::open(path)?, buf: Vec::new(), start: 0, base: 0, eof: false })
    }

    fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Reads at least `want` more bytes unless the file ends; false at the end.
    fn more(&mut self, want: usize) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.buf.drain(..self.start);
        self.base += self.start as u64;
        self.start = 0;
        let target = self.buf.len() + want.max(CHUNK);
        while self.buf.len() < target {
            let old = self.buf.len();
            self.buf.resize(target, 0);
            let n = self.file.read(&mut self.buf[old..])?;
            self.buf.truncate(old + n);
            if n == 0 {
                self.eof = true;
                break;
            }
        }
        Ok(!self.eof || !self.buf.is_empty())
    }
}

impl Chunks {
    /// After a parser asked for `needed` bytes at `offset`: reads more. True to parse
    /// again, false at a clean end of file; an error if the file ends inside the record.
    fn refill(&mut self, needed: usize, offset: u64) -> Result<bool, ReadError> {
        if self.more(needed)? && !(self.eof && self.buf.len() - self.start < needed) {
            return Ok(true);
        }
        let present = self.buf.len() - self.start;
        if present == 0 {
            return Ok(false);
        }
        Err(ReadError::Truncated { offset, needed, present })
    }
}

/// Reads every packet of `path` in file order, calling `each` for each. Returns the
/// interfaces, and the error that stopped reading early, if any: the packets before it
/// were delivered.
pub fn read(
    path: &Path,
    format: Format,
    each: &mut dyn FnMut(&[Interface], Packet<'_>),
) -> Result<Vec<Interface>, (Vec<Interface>, ReadError)> {
    let mut ch = Chunks::open(path).map_err(|e| (Vec::new(), e.into()))?;
    ch.more(CHUNK).map_err(|e| (Vec::new(), e.into()))?;
    match format {
        Format::Pcap => read_pcap(&mut ch, each),
        Format::PcapNg => read_pcapng(&mut ch, each),
    }
}

fn read_pcap(
    ch: &mut Chunks,
    each: &mut dyn FnMut(&[Interface], Packet<'_>),
) -> Result<Vec<Interface>, (Vec<Interface>, ReadError)> {
    let avail = &ch.buf[ch.start..];
    let (used, parser) = match PcapParser::new(avail) {
        Ok((rem, p)) => (avail.len() - rem.len(), p),
        Err(e) => return Err((Vec::new(), ReadError::Header(e.to_string()))),
    };
    ch.start += used;
    let ifaces = vec![Interface { name: None, link: parser.header().datalink }];
    loop {
        let offset = ch.offset();
        let avail = &ch.buf[ch.start..];
        if avail.is_empty() && ch.eof {
            return Ok(ifaces);
        }
        match parser.next_packet(avail) {
            Ok((rem, pkt)) => {
                let used = avail.len() - rem.len();
                let ts = pkt.timestamp();
                let ts_ns =
                    (ts.as_secs() as i64).saturating_mul(1_000_000_000).saturating_add(i64::from(ts.subsec_nanos()));
                each(
                    &ifaces,
                    Packet { iface: 0, ts_ns, data: pkt.data(), orig_len: pkt.orig_len(), dir: None, offset },
                );
                ch.start += used;
            }
            Err(PcapParseError::IncompleteBuffer(needed, _)) => {
                // A record longer than the snap length is damage, not a short read (its
                // length field would otherwise have us read the rest of the file first).
                let snaplen = parser.header().snaplen.max(262_144) as usize;
                if needed > 16 + snaplen {
                    let reason = format!("record of {needed} bytes, more than the snap length {snaplen} allows");
                    return Err((ifaces, ReadError::Malformed { offset, reason }));
                }
                match ch.refill(needed, offset) {
                    Ok(true) => {}
                    Ok(false) => return Ok(ifaces),
                    Err(e) => return Err((ifaces, e)),
                }
            }
            Err(e) => return Err((ifaces, ReadError::Malformed { offset, reason: e.to_string() })),
        }
    }
}

fn read_pcapng(
    ch: &mut Chunks,
    each: &mut dyn FnMut(&[Interface], Packet<'_>),
) -> Result<Vec<Interface>, (Vec<Interface>, ReadError)> {
    let avail = &ch.buf[ch.start..];
    let (used, mut parser) = match PcapNgParser::new(avail) {
        Ok((rem, p)) => (avail.len() - rem.len(), p),
        Err(e) => return Err((Vec::new(), ReadError::Header(e.to_string()))),
    };
    ch.start += used;
    // Interfaces of every section, in order; `section_base` is where the current section's
    // interface 0 is (a new section header starts a new interface list).
    let mut ifaces: Vec<Interface> = Vec::new();
    let mut section_base = 0;
    loop {
        let offset = ch.offset();
        let avail = &ch.buf[ch.start..];
        if avail.is_empty() && ch.eof {
            return Ok(ifaces);
        }
        match parser.next_block(avail) {
            Ok((rem, block)) => {
                let used = avail.len() - rem.len();
                match block {
                    Block::SectionHeader(_) => section_base = ifaces.len(),
                    Block::InterfaceDescription(idb) => {
                        let name = idb.options.iter().find_map(|o| match o {
                            pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption::IfName(n) => {
                                Some(n.to_string())
                            }
                            _ => None,
                        });
                        ifaces.push(Interface { name, link: idb.linktype });
                    }
                    Block::EnhancedPacket(epb) => {
                        let dir = epb.options.iter().find_map(|o| match o {
                            EnhancedPacketOption::Flags(f) => match f & 3 {
                                1 => Some(Direction::In),
                                2 => Some(Direction::Out),
                                _ => None,
                            },
                            _ => None,
                        });
                        let ts = epb.timestamp;
                        let ts_ns = (ts.as_secs() as i64)
                            .saturating_mul(1_000_000_000)
                            .saturating_add(i64::from(ts.subsec_nanos()));
                        let data: &Cow<'_, [u8]> = &epb.data;
                        let iface = section_base + epb.interface_id as usize;
                        each(&ifaces, Packet { iface, ts_ns, data, orig_len: epb.original_len, dir, offset });
                    }
                    Block::SimplePacket(spb) => {
                        // No timestamp: of no use for latency. Counted by the caller as skipped.
                        let _ = spb;
                    }
                    _ => {}
                }
                ch.start += used;
            }
            Err(PcapNgParseError::IncompleteBuffer(needed, _)) => match ch.refill(needed, offset) {
                Ok(true) => {}
                Ok(false) => return Ok(ifaces),
                Err(e) => return Err((ifaces, e)),
            },
            Err(e) => return Err((ifaces, ReadError::Malformed { offset, reason: e.to_string() })),
        }
    }
}
