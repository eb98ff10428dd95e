//! The run-metadata record (`<host>-<run_id>.meta.json`), rewritten
//! atomically at start and at exit, so a collector can always read a
//! complete record and see whether the run ended cleanly.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
};

use serde::Serialize;
use sync::clock::MonoToRealtime;

use crate::ring::{sync_dir, RingError};

/// One attached interface.
#[derive(Clone, Debug, Serialize)]
pub struct IfaceMeta {
    /// As written in the `ifname` column.
    pub ifname: String,
    /// Namespace name (`self` for the capture's own).
    pub netns: String,
    /// Namespace inode.
    pub netns_inode: u64,
    /// Interface index inside its namespace.
    pub ifindex: u32,
    /// Hooks attached.
    pub hooks: Vec<String>,
}

/// Counters of one hook, summed over CPUs and namespaces.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct HookCounts {
    /// Packets the hook ran on.
    pub seen: u64,
    /// Packets that passed filter and sampling.
    pub selected: u64,
    /// Events the kernel put into the ring buffer.
    pub submitted: u64,
    /// Selected packets lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Events read but dropped in user space (writer queue full).
    pub userspace_dropped: u64,
    /// Events in Parquet files.
    pub written: u64,
    /// Non-IP frames.
    pub not_ip: u64,
    /// Frames whose headers could not be parsed.
    pub malformed: u64,
    /// netlat sync probes (kept out of the events).
    pub sync: u64,
    /// Sync probe stamps lost because the sync ring buffer was full.
    pub sync_lost: u64,
    /// Datagrams an application read that got no row here (`udp_recv`: not identified at
    /// the read, whatever their port, as their identity is unknown). Not part of
    /// `selected`; a row missing for this reason is the capture's loss, not the network's.
    pub unidentified: u64,
}

/// Clock sync in this run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SyncMeta {
    /// Responder port (0: sync off).
    pub port: u16,
    /// Namespace the prober and responder ran in.
    pub netns: String,
    /// Peers probed.
    pub peers: Vec<String>,
    /// Coded pairs per second per peer.
    pub rate: f64,
    /// Gap inside a pair, µs.
    pub gap_us: u64,
    /// Stamps in `sync` files.
    pub stamps_written: u64,
    /// Stamps read but dropped in user space (writer queue full).
    pub stamps_dropped: u64,
    /// Why the responder could not run, if it could not.
    pub responder_error: Option<String>,
    /// The prober's and responder's own counts.
    pub prober: Option<sync::prober::ProberStats>,
    /// Finished sync files on disk.
    pub files: Vec<String>,
}

/// The record.
#[derive(Clone, Debug, Serialize)]
pub struct RunMeta {
    /// Layout version of the capture files.
    pub schema_version: u32,
    /// netlat-capture version.
    pub netlat_version: String,
    /// `running`, `finished` or `failed`.
    pub status: String,
    /// Error that ended the run, if any.
    pub error: Option<String>,
    /// Host name (the `host` column).
    pub host: String,
    /// Run id (in every file name).
    pub run_id: String,
    /// `uname -r` / `uname -v`.
    pub kernel: String,
    /// Command line.
    pub argv: Vec<String>,
    /// Effective configuration.
    pub config: BTreeMap<String, String>,
    /// Attached interfaces.
    pub interfaces: Vec<IfaceMeta>,
    /// Clock of `ts_ns`.
    pub clock_source: String,
    /// MONOTONIC → REALTIME mapping at start.
    pub clock_start: MonoToRealtime,
    /// ... and at the end (a difference means the wall clock was stepped).
    pub clock_end: Option<MonoToRealtime>,
    /// CLOCK_REALTIME at start / end, ns.
    pub started_realtime_ns: i64,
    /// CLOCK_REALTIME at the end, ns.
    pub ended_realtime_ns: Option<i64>,
    /// Per hook name.
    pub counts: BTreeMap<String, HookCounts>,
    /// Times the writer thread went back to the capture's priority because its queue
    /// had backed up (see `--writer-nice`): how often the host's work held it up.
    pub writer_urgent: u64,
    /// Finished event files on disk (names, oldest first).
    pub files: Vec<String>,
    /// Files removed by the `max_files` ring limit.
    pub files_deleted: Vec<String>,
    /// Clock sync.
    pub sync: SyncMeta,
    /// Synthetic clock errors applied to every timestamp (a test aid);
    /// `ref_ns` is the true CLOCK_MONOTONIC at the start.
    pub sim_clock: Option<sync::sim::SimClock>,
    /// Probes of the `--layers` preset (`config.layers`), each with whether
    /// this kernel allows it and how, or why not.
    pub probes: Vec<crate::probes::ProbeMeta>,
}

impl RunMeta {
    /// Path of the record for `prefix` in `dir`.
    pub fn path(dir: &Path, prefix: &str) -> PathBuf {
        dir.join(format!("{prefix}.meta.json"))
    }

    /// Writes the record atomically (temp file, fsync, rename, fsync folder).
    pub fn store(&self, dir: &Path, prefix: &str) -> Result<(), RingError> {
        let path = Self::path(dir, prefix);
        let tmp = dir.join(format!(".{prefix}.meta.json.partial"));
        let io = |what: &'static str, p: &Path| {
            let p = p.to_owned();
            move |source| RingError::Io { path: p, what, source }
        };
        let json = serde_json::to_vec_pretty(self).expect("serializable");
        let mut f = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(&json).and_then(|()| f.write_all(b"\n")).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename", &path))?;
        sync_dir(dir)
    }
}

/// `uname -r` and `-v` of the running kernel.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let s = |f: &[libc::c_char]| {
        let b: Vec<u8> = f.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect();
        String::from_utf8_lossy(&b).into_owned()
    };
    format!("{} {}", s(&u.release), s(&u.version))
}

/// The system host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buffer and length match.
    if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
