//! Clock alignment: reads the captures' `sync` tables, runs the `sync`
//! crate's estimator, and says plainly which hosts could not be aligned
//! and why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use sync::{
    map::Piecewise,
    network::{estimate, SyncResult},
    samples::{Hook, Stamp},
};

use crate::input::{Skipped, SYNC_COLUMNS};

/// The clock alignment of one analysis.
#[derive(Debug, Clone)]
pub struct Alignment {
    /// The estimate (`None` when there was nothing to estimate from).
    pub result: Option<SyncResult>,
    /// True when the user declared that all captures share one clock.
    pub same_clock: bool,
    /// Statements about hosts that could not be aligned, and why.
    pub notes: Vec<String>,
    /// Hosts whose clock offset against the reference time base the user stated (pcap
    /// `--offset`): their timestamps are already shifted onto it, and the statement is
    /// trusted (bound 0).
    pub stated: Vec<String>,
}

impl Alignment {
    /// All captures share one clock: timestamps are used as they are.
    pub fn same_clock() -> Self {
        Self { result: None, same_clock: true, notes: Vec::new(), stated: Vec::new() }
    }

    /// The map of `host` into the reference time base: `None` means the
    /// host's timestamps are used as they are.
    pub fn map(&self, host: &str) -> Option<&Piecewise> {
        if self.same_clock || self.is_stated(host) {
            return None;
        }
        self.result.as_ref()?.map(host)
    }

    /// Error bound of `host`'s aligned timestamps, ns; `None` when the host
    /// is not aligned to the others.
    pub fn bound(&self, host: &str) -> Option<f64> {
        if self.same_clock || self.is_stated(host) {
            return Some(0.0);
        }
        let r = self.result.as_ref()?;
        let h = r.hosts.iter().find(|h| h.host == host)?;
        h.map.as_ref().map(|_| h.bound_ns)
    }

    fn is_stated(&self, host: &str) -> bool {
        self.stated.iter().any(|h| h == host)
    }

    /// Bound of a latency between two hosts (0 on one host); `None` when
    /// the two are not in one time base.
    pub fn pair_bound(&self, a: &str, b: &str) -> Option<f64> {
        if a == b {
            return Some(0.0);
        }
        let hosts = self.bound(a)? + self.bound(b)?;
        let direct = self.result.as_ref().filter(|_| !self.is_stated(a) && !self.is_stated(b));
        Some(direct.and_then(|r| r.pair_bound(a, b)).map_or(hosts, |d| d.min(hosts)))
    }
}

/// The stamps of one sync table; host names not yet in `hosts` are added.
fn read_stamps(path: &Path, hosts: &mut Vec<String>) -> PolarsResult<Vec<Stamp>> {
    let mut out = Vec::new();
    let df = crate::matching::scan_columns(path, &SYNC_COLUMNS.map(|(n, _)| n))?.collect()?;
    let ts = df.column("ts_ns")?.i64()?;
    let host = df.column("host")?.str()?;
    let hook = df.column("hook")?.str()?;
    let kind = df.column("kind")?.str()?;
    let session = df.column("session")?.u64()?;
    let seq = df.column("seq")?.u64()?;
    let idx = df.column("idx")?.u8()?;
    let daddr = df.column("daddr")?.str()?;
    for i in 0..df.height() {
        let (Some(h), Some(hk), Some(k)) = (host.get(i), hook.get(i).and_then(Hook::from_name), kind.get(i)) else {
            continue;
        };
        let kind = match k {
            "probe" => 0,
            "reply" => 1,
            _ => continue,
        };
        let host = match hosts.iter().position(|x| x == h) {
            Some(i) => i,
            None => {
                hosts.push(h.to_owned());
                hosts.len() - 1
            }
        };
        out.push(Stamp {
            host,
            ts_ns: ts.get(i).unwrap_or(0),
            hook: hk,
            kind,
            idx: idx.get(i).unwrap_or(0),
            session: session.get(i).unwrap_or(0),
            seq: seq.get(i).unwrap_or(0),
            daddr: daddr.get(i).unwrap_or_default().to_owned(),
        });
    }
    Ok(out)
}

/// What the run-metadata records say about probing: peers that never
/// replied and responders that could not run. Returns the notes and the
/// `(host, peer address)` pairs already explained.
fn prober_notes(metas: &[PathBuf], skipped: &mut Vec<Skipped>) -> (Vec<String>, Vec<(String, String)>) {
    let mut notes = Vec::new();
    let mut silent = Vec::new();
    for path in metas {
        let v = match crate::input::read_meta(path) {
            Ok(v) => v,
            Err(e) => {
                skipped.push(Skipped { file: path.display().to_string(), reason: e });
                continue;
            }
        };
        let host = v["host"].as_str().unwrap_or("?").to_owned();
        if let Some(e) = v["sync"]["responder_error"].as_str() {
            notes.push(format!("host {host} could not answer sync probes: {e}"));
        }
        for p in v["sync"]["prober"]["peers"].as_array().into_iter().flatten() {
            let (sent, replies) = (p["pairs_sent"].as_u64().unwrap_or(0), p["replies"].as_u64().unwrap_or(0));
            let addr = p["addr"].as_str().unwrap_or("?").to_owned();
            if sent > 0 && replies == 0 {
                let why = p["last_error"].as_str().map(|e| format!(" (last send error: {e})")).unwrap_or_default();
                notes.push(format!(
                    "host {host} sent {sent} probe pairs to {addr} and got no reply{why}: that peer is down, not running netlat-capture, or unreachable"
                ));
                silent.push((host.clone(), addr));
            }
        }
    }
    (notes, silent)
}

/// Aligns the clocks of `event_hosts` (and any other host in the sync
/// tables), from the sync tables and the data packets of `events`. Unreadable sync files
/// are moved to `skipped`; `metas` (run metadata) name peers that never replied.
pub fn align(
    event_hosts: &BTreeSet<String>,
    sync_files: &mut Vec<PathBuf>,
    metas: &[PathBuf],
    skipped: &mut Vec<Skipped>,
    clock: &crate::ClockOptions,
    events: &[PathBuf],
) -> Alignment {
    let (cfg, reference, same_clock, stated) =
        (&clock.estimator, clock.reference.as_deref(), clock.same_clock, clock.stated.as_slice());
    // Hosts with a stated offset are aligned by the user: not estimated, not reported.
    let mut hosts: Vec<String> = event_hosts.iter().filter(|h| !stated.contains(h)).cloned().collect();
    let mut stamps = Vec::new();
    let (mut notes, explained) = prober_notes(metas, skipped);
    if same_clock {
        // The sync tables are not read at all: nothing of them is used.
        notes.push("--same-clock: all captures are taken to share one clock; sync data is not used".into());
        return Alignment { result: None, same_clock, notes, stated: stated.to_vec() };
    }
    let mut good = Vec::new();
    for f in sync_files.drain(..) {
        let mut h = hosts.clone();
        let read = crate::input::guard(|| read_stamps(&f, &mut h))
            .unwrap_or_else(|m| Err(PolarsError::ComputeError(format!("reader panicked: {m}").into())));
        match read {
            Ok(s) => {
                hosts = h;
                stamps.extend(s);
                good.push(f);
            }
            Err(e) => {
                skipped.push(Skipped { file: f.display().to_string(), reason: format!("data cannot be read: {e}") })
            }
        }
    }
    *sync_files = good;
    let silent = |notes: &mut Vec<String>, silent: Vec<(String, String, u64)>| {
        for (host, dest, n) in silent {
            // Already named from the prober's own counts (`ADDR:PORT`).
            if explained.iter().any(|(h, a)| {
                *h == host && a.rsplit_once(':').is_some_and(|(ip, _)| ip.trim_matches(['[', ']']) == dest)
            }) {
                continue;
            }
            notes.push(format!(
                "host {host} sent {n} sync probes to {dest} that no capture saw arrive: that peer is down, not running netlat-capture, or its capture files are missing"
            ));
        }
    };
    if hosts.len() <= 1 {
        if let (Some(h), true) = (hosts.first(), stated.is_empty()) {
            notes.push(format!("one host ({h}): every latency is on its own clock, nothing to align"));
        }
        let quiet = sync::samples::silent_peers(&stamps, hosts.len());
        silent(&mut notes, quiet.into_iter().map(|(h, d, n)| (hosts[h].clone(), d, n)).collect());
        return Alignment { result: None, same_clock: false, notes, stated: stated.to_vec() };
    }
    // The data packets of `events` on these hosts (read only when there is something to
    // align: a pass over every events file).
    let mut traffic = crate::input::guard(|| crate::traffic::read(events, &hosts))
        .unwrap_or_else(|m| Err(PolarsError::ComputeError(format!("reader panicked: {m}").into())))
        .unwrap_or_else(|e| {
            notes.push(format!("the data packets could not be read for the clock estimate: {e}"));
            Vec::new()
        });
    let result = estimate(&hosts, &stamps, &mut traffic, cfg, reference);
    if let Some(r) = reference {
        if !hosts.iter().any(|h| h == r) {
            notes.push(format!("--reference {r}: no such host (hosts: {})", hosts.join(", ")));
        }
    }
    if stamps.is_empty() {
        notes.push(format!(
            "hosts {} could not be aligned: no clock-sync data (no *.sync.parquet files, or captures ran with --sync-port 0); cross-host latencies use each host's own clock and are only right if the clocks agree (hosts on one machine: pass --same-clock)",
            hosts.join(", ")
        ));
    } else {
        for h in &result.hosts {
            if let Some(p) = &h.problem {
                notes.push(format!("host {} could not be aligned: {p}; its latencies to other hosts use its own clock and are marked unaligned", h.host));
            }
        }
    }
    for (a, b) in &result.contradicted {
        notes.push(format!(
            "hosts {a} and {b}: the data packets between them contradict their sync probes (a host that forwards packets but captured only the interface they leave by looks like their origin); they are aligned by the probes alone"
        ));
    }
    silent(&mut notes, result.silent.clone());
    Alignment { result: Some(result), same_clock: false, notes, stated: stated.to_vec() }
}
