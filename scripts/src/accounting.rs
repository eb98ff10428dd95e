//! Reading a capture's accounting back from its run-metadata record.

use std::{fmt, path::Path};

/// One hook's counters from a `*.meta.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HookLine {
    /// Hook name.
    pub hook: String,
    /// Packets that passed filter and sampling.
    pub selected: u64,
    /// Rows in Parquet files.
    pub written: u64,
    /// Lost to a full kernel ring buffer.
    pub ringbuf_full: u64,
    /// Lost to a full writer queue.
    pub userspace_dropped: u64,
}

impl HookLine {
    /// Selected packets that are neither written nor counted as dropped.
    pub fn unexplained(&self) -> u64 {
        self.selected.abs_diff(self.written + self.ringbuf_full + self.userspace_dropped)
    }
}

impl fmt::Display for HookLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: selected {} written {} ringbuf_full {} userspace_dropped {} unexplained {}",
            self.hook,
            self.selected,
            self.written,
            self.ringbuf_full,
            self.userspace_dropped,
            self.unexplained()
        )
    }
}

/// Counters of the (single) run recorded in `dir`.
pub fn read(dir: &Path) -> anyhow::Result<Vec<HookLine>> {
    let meta = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".meta.json"))
        .ok_or_else(|| anyhow::anyhow!("{}: no *.meta.json", dir.display()))?;
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta)?)?;
    let status = v["status"].as_str().unwrap_or("");
    anyhow::ensure!(status == "finished", "{}: run status {status:?}", meta.display());
    let counts = v["counts"].as_object().ok_or_else(|| anyhow::anyhow!("{}: no counts", meta.display()))?;
    Ok(counts
        .iter()
        .map(|(hook, c)| {
            let n = |k: &str| c[k].as_u64().unwrap_or(0);
            HookLine {
                hook: hook.clone(),
                selected: n("selected"),
                written: n("written"),
                ringbuf_full: n("ringbuf_full"),
                userspace_dropped: n("userspace_dropped"),
            }
        })
        .collect())
}
