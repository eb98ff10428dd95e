//! Report loss: packets a capture selected but could not record (kernel ring
//! buffer full, writer queue full), from the run-metadata records. A packet
//! missing downstream is network loss only where the downstream capture
//! recorded everything it selected; these counts tell the two apart.

use std::path::PathBuf;

use serde::Serialize;

/// Events one hook of one capture could not record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CaptureDrops {
    /// Capturing host.
    pub host: String,
    /// Hook name.
    pub hook: String,
    /// Packets selected by filter and sampling.
    pub selected: u64,
    /// Lost because the kernel ring buffer was full.
    pub ringbuf_full: u64,
    /// Lost because the writer queue was full.
    pub userspace_dropped: u64,
    /// Not recorded because the capture could not identify them (`udp_recv`: datagrams
    /// read that no row was written for).
    pub unidentified: u64,
}

impl CaptureDrops {
    /// All events lost at this hook.
    pub fn lost(&self) -> u64 {
        self.ringbuf_full + self.userspace_dropped + self.unidentified
    }
}

/// Per host and hook, from `metas` (unreadable records are ignored here: the
/// clock alignment already reports them).
pub fn read(metas: &[PathBuf]) -> Vec<CaptureDrops> {
    let mut out = Vec::new();
    for v in metas.iter().filter_map(|m| crate::input::read_meta(m).ok()) {
        let host = v["host"].as_str().unwrap_or("?");
        for (hook, c) in v["counts"].as_object().into_iter().flatten() {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            out.push(CaptureDrops {
                host: host.to_owned(),
                hook: hook.clone(),
                selected: n("selected"),
                ringbuf_full: n("ringbuf_full"),
                userspace_dropped: n("userspace_dropped"),
                unidentified: n("unidentified"),
            });
        }
    }
    out.sort_by(|a, b| (&a.host, &a.hook).cmp(&(&b.host, &b.hook)));
    out
}
