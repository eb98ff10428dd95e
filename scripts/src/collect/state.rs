//! The run record, `OUT/collect.json`: which run this folder holds, where
//! each host's files are, what happened to each capture, and which files
//! arrived intact. It is rewritten atomically after every change, so a
//! rerun (after a crash, a cut connection, an unreachable host) resumes
//! the same run instead of starting a new one.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};

/// File name of the record inside the output folder.
pub const FILE: &str = "collect.json";
/// Layout version of the record.
pub const VERSION: u32 = 1;

/// The whole record.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunRecord {
    /// Layout version.
    pub version: u32,
    /// Run id (also the remote run folder's name).
    pub run_id: String,
    /// When the captures were started, Unix seconds.
    pub started_unix: u64,
    /// Capture duration, seconds.
    pub duration_s: f64,
    /// Per host, by name.
    pub hosts: BTreeMap<String, HostRecord>,
}

/// What happened on one host.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    /// State of its capture.
    pub capture: CaptureState,
    /// The run folder on the host, once known.
    pub remote_run: Option<String>,
    /// When its capture was started, Unix seconds.
    #[serde(default)]
    pub started_unix: Option<u64>,
    /// Capture exit code, once ended.
    pub exit_code: Option<i32>,
    /// Why the host is missing or incomplete.
    pub reason: Option<String>,
    /// Files verified at home: name → size and sha256.
    pub files: BTreeMap<String, FileRecord>,
    /// Every file is home and checked; a rerun leaves the host alone.
    pub complete: bool,
}

/// A capture's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptureState {
    /// Not yet tried.
    #[default]
    Pending,
    /// Never ran (unreachable host, failed copy, refused start): nothing to collect.
    NotStarted,
    /// Started (and maybe ready); its end was not seen.
    Started,
    /// Ended; `exit_code` says how.
    Ended,
}

/// A verified file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

impl RunRecord {
    /// A new run for `hosts`, started now.
    pub fn new(run_id: String, duration_s: f64, hosts: impl IntoIterator<Item = String>) -> Self {
        RunRecord {
            version: VERSION,
            run_id,
            started_unix: now_unix(),
            duration_s,
            hosts: hosts.into_iter().map(|h| (h, HostRecord::default())).collect(),
        }
    }

    /// Path of the record in `out`.
    pub fn path(out: &Path) -> PathBuf {
        out.join(FILE)
    }

    /// The record in `out`, if there is one.
    pub fn load(out: &Path) -> Result<Option<Self>, StateError> {
        let path = Self::path(out);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let r: Self = serde_json::from_str(&text)
            .map_err(|e| StateError::Format { path: path.clone(), message: e.to_string() })?;
        if r.version != VERSION {
            return Err(StateError::Format {
                path,
                message: format!("version {} (this tool reads {VERSION})", r.version),
            });
        }
        Ok(Some(r))
    }

    /// Writes the record atomically (temporary file, fsync, rename).
    pub fn save(&self, out: &Path) -> Result<(), StateError> {
        let path = Self::path(out);
        let tmp = out.join(format!(".{FILE}.partial"));
        let io = |source| StateError::Io { path: tmp.clone(), source };
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(serde_json::to_string_pretty(self).expect("serializable").as_bytes()).map_err(io)?;
        f.write_all(b"\n").map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(|source| StateError::Io { path: path.clone(), source })
    }
}

/// The record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// I/O.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Not a record this tool wrote.
    #[error("{path}: not a netlat-collect record: {message}", path = path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Seconds since the epoch.
pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A run id: UTC time and process id, `20260519T101112Z-4242`; sortable,
/// and a plain file name.
pub fn new_run_id() -> String {
    let secs = now_unix();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{}", rem / 3600, rem / 60 % 60, rem % 60, std::process::id())
}

/// Gregorian date of a day number since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(20_592), (2026, 5, 19));
        let id = new_run_id();
        assert!(id.len() > 17 && id.as_bytes()[8] == b'T', "{id}");
        conf::names::check_host_name(&id).unwrap();
    }

    #[test]
    fn round_trip_and_atomic_save() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunRecord::load(dir.path()).unwrap(), None);
        let mut r = RunRecord::new("r1".into(), 5.0, ["a".to_owned(), "b".to_owned()]);
        let a = r.hosts.get_mut("a").unwrap();
        a.capture = CaptureState::Ended;
        a.exit_code = Some(0);
        a.files.insert("x.meta.json".into(), FileRecord { size: 3, sha256: "ab".into() });
        r.save(dir.path()).unwrap();
        assert_eq!(RunRecord::load(dir.path()).unwrap(), Some(r));
        assert!(!dir.path().join(".collect.json.partial").exists());
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains("\"capture\": \"ended\""), "{text}");
        std::fs::write(dir.path().join(FILE), "{\"version\": 9}").unwrap();
        let e = RunRecord::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("collect.json: not a netlat-collect record"), "{e}");
    }
}
