//! `capture.yaml`: what `netlat-capture` selects and how it writes.
//!
//! Every field is optional; command-line flags override the file. The seed
//! tool's `sampling_info.yaml` (`size`, `interval`, ports) maps onto
//! `sampling` here, except that netlat samples packets by a consistent hash
//! (every host keeps the same packets), not by byte counts.
//!
//! ```yaml
//! filter: "udp and port 5001"   # tcpdump-like expression
//! sampling:
//!   one_in: 10                  # keep 1 packet in 10, the same ones on every host
//!   seed: 42
//!   ports: [5001, 80]           # keep only packets to/from these ports
//! output:
//!   file_size_mb: 64            # rotate at this size (tcpdump -C)
//!   rotate_seconds: 60          # ... or this age (tcpdump -G)
//!   max_files: 10               # keep at most this many per run (tcpdump -W)
//!   ringbuf_kb: 8192            # kernel ring buffer per namespace
//! vxlan_port: 4789
//! snaplen: 0                    # first bytes of each packet kept (<= 256; 0: none)
//! layers: wire                  # probe preset: wire | stack | socket | all (conf/probes.yaml)
//! sync:                         # clock-sync probes (the seed's ping_info.yaml)
//!   port: 7310                  # UDP port of the responder; 0 turns sync off
//!   peers: ["198.18.0.2", "198.18.0.3:7310"]   # ADDR or ADDR:PORT
//!   rate: 10                    # coded pairs per second per peer
//!   gap_us: 20                  # gap between the two probes of a pair
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::{from_yaml, read, ConfError};

/// Most ports in `sampling.ports` (the kernel's fixed table).
pub const MAX_PORTS: usize = 16;

/// Top level of `capture.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureConf {
    /// Filter expression (tcpdump-like).
    #[serde(default)]
    pub filter: Option<String>,
    /// Packet sampling.
    #[serde(default)]
    pub sampling: Sampling,
    /// Output files.
    #[serde(default)]
    pub output: Output,
    /// UDP port decapsulated as VXLAN; 0 disables.
    #[serde(default)]
    pub vxlan_port: Option<u16>,
    /// Bytes of each selected packet to keep in the events table (0, the default: none).
    #[serde(default)]
    pub snaplen: Option<u16>,
    /// Probe preset of `probes.yaml` (`--layers`).
    #[serde(default)]
    pub layers: Option<crate::probes::Preset>,
    /// Clock-sync probes.
    #[serde(default)]
    pub sync: Sync,
}

/// Clock-sync settings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// Responder port (and destination port of peers given without one);
    /// 0 turns clock sync off.
    #[serde(default)]
    pub port: Option<u16>,
    /// Peers to probe: `ADDR` or `ADDR:PORT` (IPv6 as `[ADDR]:PORT`).
    #[serde(default)]
    pub peers: Vec<String>,
    /// Coded pairs per second per peer.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Gap between the two probes of a pair, µs.
    #[serde(default)]
    pub gap_us: Option<u64>,
}

/// Parses a peer `ADDR`, `ADDR:PORT` or `[ADDR6]:PORT`; `port` fills in a
/// missing port.
pub fn parse_peer(text: &str, port: u16) -> Result<std::net::SocketAddr, String> {
    use std::net::{IpAddr, SocketAddr};
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    match text.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, port)),
        Err(_) => Err(format!("{text:?} is not an address (ADDR, ADDR:PORT or [ADDR6]:PORT)")),
    }
}

/// Default responder port.
pub const SYNC_PORT: u16 = 7310;

/// Consistent hash sampling plus the seed tool's port selection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Keep one packet in this many (1 = all).
    #[serde(default)]
    pub one_in: Option<u64>,
    /// Hash seed; must be the same on every host of a measurement.
    #[serde(default)]
    pub seed: Option<u64>,
    /// If non-empty, keep only packets whose source or destination port is listed.
    #[serde(default)]
    pub ports: Vec<u16>,
}

/// Parquet ring-file settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Output {
    /// Rotate when a file reaches this many MiB.
    #[serde(default)]
    pub file_size_mb: Option<u64>,
    /// Rotate when a file is this many seconds old.
    #[serde(default)]
    pub rotate_seconds: Option<u64>,
    /// Keep at most this many finished files per run (0 = no limit).
    #[serde(default)]
    pub max_files: Option<u32>,
    /// Kernel ring buffer size per namespace, KiB (power of two, >= 4).
    #[serde(default)]
    pub ringbuf_kb: Option<u32>,
}

impl CaptureConf {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        Self::parse(path, &read(path)?)
    }

    /// Parses and validates YAML text attributed to `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfError> {
        // An empty file is a valid, empty configuration.
        let conf: Self = if text.trim().is_empty() { Self::default() } else { from_yaml(path, text)? };
        conf.validate(path)?;
        Ok(conf)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfError> {
        let bad = |field: &str, message: String| ConfError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            message,
        };
        if self.sampling.one_in == Some(0) {
            return Err(bad("sampling.one_in", "must be at least 1 (1 keeps every packet)".into()));
        }
        if self.sampling.ports.len() > MAX_PORTS {
            return Err(bad(
                "sampling.ports",
                format!("{} ports listed; the kernel table holds {MAX_PORTS}", self.sampling.ports.len()),
            ));
        }
        if self.output.file_size_mb == Some(0) {
            return Err(bad("output.file_size_mb", "must be at least 1".into()));
        }
        if self.output.rotate_seconds == Some(0) {
            return Err(bad("output.rotate_seconds", "must be at least 1".into()));
        }
        if let Some(kb) = self.output.ringbuf_kb {
            if kb < 4 || !kb.is_power_of_two() {
                return Err(bad("output.ringbuf_kb", format!("{kb} is not a power of two >= 4")));
            }
        }
        for (i, p) in self.sync.peers.iter().enumerate() {
            parse_peer(p, SYNC_PORT).map_err(|m| bad(&format!("sync.peers[{i}]"), m))?;
        }
        if let Some(r) = self.sync.rate {
            if !(r > 0.0 && r <= 10_000.0) {
                return Err(bad("sync.rate", format!("{r} pairs/s is outside (0, 10000]")));
            }
        }
        if self.sync.gap_us.is_some_and(|g| g > 100_000) {
            return Err(bad("sync.gap_us", "must be at most 100000 µs".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CaptureConf, ConfError> {
        CaptureConf::parse(Path::new("conf/capture.yaml"), text)
    }

    #[test]
    fn full_file_parses() {
        let c = parse(
            "filter: udp and port 5001\nsampling:\n  one_in: 10\n  seed: 7\n  ports: [5001, 80]\n\
             output:\n  file_size_mb: 64\n  rotate_seconds: 30\n  max_files: 4\n  ringbuf_kb: 4096\nvxlan_port: 8472\n",
        )
        .unwrap();
        assert_eq!(c.filter.as_deref(), Some("udp and port 5001"));
        assert_eq!(c.sampling.one_in, Some(10));
        assert_eq!(c.sampling.ports, vec![5001, 80]);
        assert_eq!(c.output.max_files, Some(4));
        assert_eq!(c.vxlan_port, Some(8472));
    }

    #[test]
    fn sync_section_parses_and_checks_peers() {
        let c = parse(
            "sync:\n  port: 7400\n  peers: [198.18.0.2, \"198.18.0.3:7500\", \"[2001:db8::1]:7310\"]\n  rate: 20\n",
        )
        .unwrap();
        assert_eq!(c.sync.port, Some(7400));
        assert_eq!(parse_peer(&c.sync.peers[0], 7400).unwrap().to_string(), "198.18.0.2:7400");
        assert_eq!(parse_peer(&c.sync.peers[1], 7400).unwrap().to_string(), "198.18.0.3:7500");
        assert_eq!(parse_peer(&c.sync.peers[2], 7400).unwrap().to_string(), "[2001:db8::1]:7310");
        let e = parse("sync:\n  peers: [198.18.0.2, hostb]\n").unwrap_err().to_string();
        assert!(e.contains("sync.peers[1]") && e.contains("hostb"), "{e}");
        let e = parse("sync:\n  rate: 0\n").unwrap_err().to_string();
        assert!(e.contains("sync.rate"), "{e}");
    }

    #[test]
    fn layers_preset_is_checked() {
        assert_eq!(parse("layers: socket\n").unwrap().layers, Some(crate::probes::Preset::Socket));
        let e = parse("layers: tcp\n").unwrap_err().to_string();
        assert!(e.contains("unknown variant `tcp`") && e.contains("stack"), "{e}");
    }

    #[test]
    fn empty_file_is_default() {
        assert_eq!(parse("").unwrap(), CaptureConf::default());
    }

    #[test]
    fn unknown_field_is_named_with_file_and_line() {
        let e = parse("sampling:\n  rate: 3\n").unwrap_err().to_string();
        assert!(e.starts_with("conf/capture.yaml: "), "{e}");
        assert!(e.contains("unknown field `rate`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn malformed_yaml_is_reported() {
        let e = parse("sampling: [1, 2\n").unwrap_err().to_string();
        assert!(e.starts_with("conf/capture.yaml: "), "{e}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let e = parse("sampling:\n  one_in: lots\n").unwrap_err().to_string();
        assert!(e.contains("one_in") || e.contains("invalid type"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let e = parse("sampling:\n  one_in: 0\n").unwrap_err().to_string();
        assert_eq!(e, "conf/capture.yaml: field `sampling.one_in`: must be at least 1 (1 keeps every packet)");
        let e = parse("output:\n  ringbuf_kb: 1000\n").unwrap_err().to_string();
        assert!(e.contains("output.ringbuf_kb"), "{e}");
        let ports: Vec<String> = (0..17).map(|p| p.to_string()).collect();
        let e = parse(&format!("sampling:\n  ports: [{}]\n", ports.join(","))).unwrap_err().to_string();
        assert!(e.contains("sampling.ports"), "{e}");
    }

    #[test]
    fn missing_file_names_it() {
        let e = CaptureConf::load(Path::new("/nonexistent/capture.yaml")).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/capture.yaml: cannot read"), "{e}");
    }
}
