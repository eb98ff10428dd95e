//! Finding capture files and deciding which of them are usable.
//!
//! Every path the user names is expanded (directories recursively) into candidate files,
//! and each candidate is checked cheaply by reading only its Parquet footer: the
//! `netlat.schema_version` key-value metadata and the types of the columns the analysis
//! reads. A file that fails any check is not fatal: it is reported as [`Skipped`] with the
//! reason, and the analysis goes on with the rest.
//!
//! The version key is required, not merely checked when present: every file the capture
//! writes carries it (docs/schema.md), and a Parquet file that happens to have columns of
//! the same names but no key is more likely foreign than compatible.

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use polars::prelude::*;
use serde::Serialize;

/// File-name suffix of an events file; directories are searched for it.
pub const EVENTS_SUFFIX: &str = ".events.parquet";
/// File-name suffix of a clock-sync table; directories are searched for it too.
pub const SYNC_SUFFIX: &str = ".sync.parquet";
/// Key-value metadata key naming the table (`events` or `sync`).
pub const TABLE_KEY: &str = "netlat.table";
/// Suffix of a file still being written by the capture (renamed when complete).
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of the run-metadata record written next to the events files.
pub const META_SUFFIX: &str = ".meta.json";
/// Key-value metadata key carrying the file layout version.
pub const SCHEMA_VERSION_KEY: &str = "netlat.schema_version";
/// The only layout version this analyzer understands.
pub const SCHEMA_VERSION: &str = "1";

/// Kind of a column's Arrow type, as far as the analysis cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Arrow `Int64`.
    Int64,
    /// Arrow `UInt64`.
    UInt64,
    /// Arrow `UInt8`.
    UInt8,
    /// Arrow `UInt16`.
    UInt16,
    /// Any Arrow string type (`Utf8`, `LargeUtf8`, `Utf8View`): all read as polars `String`.
    Text,
}

impl ColumnKind {
    fn accepts(self, dtype: &ArrowDataType) -> bool {
        match self {
            Self::Int64 => matches!(dtype, ArrowDataType::Int64),
            Self::UInt64 => matches!(dtype, ArrowDataType::UInt64),
            Self::UInt8 => matches!(dtype, ArrowDataType::UInt8),
            Self::UInt16 => matches!(dtype, ArrowDataType::UInt16),
            Self::Text => matches!(dtype, ArrowDataType::Utf8 | ArrowDataType::LargeUtf8 | ArrowDataType::Utf8View),
        }
    }
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Int64 => "Int64",
            Self::UInt64 => "UInt64",
            Self::UInt8 => "UInt8",
            Self::UInt16 => "UInt16",
            Self::Text => "Utf8",
        })
    }
}

/// Columns of the `events` table (docs/schema.md) that the analysis reads, with their types.
/// Other columns are neither read nor checked, so additive schema changes do not break us.
pub const REQUIRED_COLUMNS: [(&str, ColumnKind); 12] = [
    ("ts_ns", ColumnKind::Int64),
    ("host", ColumnKind::Text),
    ("netns", ColumnKind::UInt64),
    ("ifname", ColumnKind::Text),
    ("hook", ColumnKind::Text),
    ("pkt_id", ColumnKind::UInt64),
    // The flow of each packet: paths, per-flow figures and `--filter`.
    ("family", ColumnKind::UInt8),
    ("proto", ColumnKind::UInt8),
    ("saddr", ColumnKind::Text),
    ("daddr", ColumnKind::Text),
    ("sport", ColumnKind::UInt16),
    ("dport", ColumnKind::UInt16),
];

/// Columns of the `sync` table that clock alignment reads.
pub const SYNC_COLUMNS: [(&str, ColumnKind); 8] = [
    ("ts_ns", ColumnKind::Int64),
    ("host", ColumnKind::Text),
    ("hook", ColumnKind::Text),
    ("kind", ColumnKind::Text),
    ("session", ColumnKind::UInt64),
    ("seq", ColumnKind::UInt64),
    ("idx", ColumnKind::UInt8),
    ("daddr", ColumnKind::Text),
];

/// Which netlat table a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Packet events.
    Events,
    /// Clock-sync probe stamps.
    Sync,
}

/// Why a file is not used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path does not exist or cannot be opened or listed.
    #[error("cannot read: {0}")]
    Unreadable(#[from] std::io::Error),
    /// A `*.partial` file: the capture is still writing it, or died (then
    /// `netlat-capture recover` finishes it).
    #[error("incomplete file still being written by the capture, or left by one that died (*{PARTIAL_SUFFIX}; `netlat-capture recover DIR` finishes it)")]
    Partial,
    /// A `*.meta.json` run-metadata record, not an events table.
    #[error("run metadata, not an events file (*{META_SUFFIX})")]
    RunMetadata,
    /// Not a file or directory (a socket, a FIFO, ...).
    #[error("not a regular file or directory")]
    NotAFile,
    /// The path cannot be handed to polars (it only takes UTF-8 paths).
    #[error("path is not valid UTF-8")]
    NonUtf8Path,
    /// The footer cannot be parsed: not Parquet, truncated, or corrupt.
    #[error("not a readable Parquet file (truncated or corrupt?): {0}")]
    NotParquet(String),
    /// A Parquet file without the netlat version key: written by something else.
    #[error("no `{SCHEMA_VERSION_KEY}` key-value metadata: not a netlat capture file")]
    NotNetlat,
    /// A netlat file of a layout version this analyzer does not know.
    #[error("`{SCHEMA_VERSION_KEY}` is {found:?}, this analyzer reads version {SCHEMA_VERSION}")]
    SchemaVersion {
        /// The version found in the file.
        found: String,
    },
    /// A required column is absent.
    #[error("missing column `{0}`")]
    MissingColumn(&'static str),
    /// A required column has an unexpected type.
    #[error("column `{name}` has type {found}, expected {expected}")]
    ColumnType {
        /// Column name.
        name: &'static str,
        /// Arrow type found in the file.
        found: String,
        /// Type the analysis needs.
        expected: ColumnKind,
    },
    /// A glob pattern that matched no file.
    #[error("pattern matched no file")]
    NoMatch,
    /// The footer was fine but reading the data failed (corrupt pages).
    #[error("data cannot be read: {0}")]
    Data(String),
    /// The Parquet reader (polars) panicked on this file: malformed beyond what it checks.
    #[error("malformed Parquet file (the reader gave up: {0})")]
    ReaderPanic(String),
}

/// The run-metadata record (`*.meta.json`) at `path`, parsed; the reason it could not be
/// read otherwise. The clock alignment, the report-loss lines and the TCP sampling stride
/// all read these records.
pub fn read_meta(path: &Path) -> Result<serde_json::Value, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a run-metadata record: {e}"))
}

/// Runs `f`, which reads a file with polars, turning a panic inside it (polars
/// asserts on some malformed files) into the panic's message. The file-reading
/// boundary of the analyzer: one bad file is skipped, never the end of the run.
pub fn guard<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_owned())
    })
}

/// A file left out of the analysis, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The path as found (as given, or joined under a given directory).
    pub file: String,
    /// Human-readable reason.
    pub reason: String,
}

impl Skipped {
    /// Records `path` as skipped because of `err`.
    pub fn new(path: &Path, err: &InputError) -> Self {
        Self { file: path.display().to_string(), reason: err.to_string() }
    }
}

/// The outcome of discovery: usable files and skipped ones, both in a stable order.
#[derive(Debug, Default)]
pub struct Inputs {
    /// Files that passed validation, in the order found (arguments order, then sorted
    /// directory entries).
    pub used: Vec<PathBuf>,
    /// Files that were rejected.
    pub skipped: Vec<Skipped>,
    /// Clock-sync tables that passed validation.
    pub sync: Vec<PathBuf>,
    /// Run-metadata records (`*.meta.json`): what each capture's prober saw.
    pub meta: Vec<PathBuf>,
    /// pcap and pcapng files, converted by [`crate::pcap::load`].
    pub pcaps: Vec<(PathBuf, crate::pcap::read::Format)>,
}

/// Expands `paths` into candidate files and validates each one.
///
/// Directories are walked recursively for `*.events.parquet`, `*.sync.parquet` and
/// `*.meta.json` (the last only for what the captures' probers saw); files given explicitly are
/// taken whatever their name, except `*.partial` and `*.meta.json`. A file reached twice
/// (given twice, or also inside a given directory) is used once: reading it twice would
/// make every packet in it ambiguous.
pub fn discover(paths: &[PathBuf]) -> Inputs {
    let mut inputs = Inputs::default();
    let mut seen = HashSet::new();
    for path in expand_globs(paths, &mut inputs.skipped) {
        let path = &path;
        match fs::metadata(path) {
            Err(e) => inputs.skipped.push(Skipped::new(path, &e.into())),
            Ok(md) if md.is_dir() => walk(path, &mut inputs, &mut seen),
            Ok(md) if md.is_file() && path.to_string_lossy().ends_with(META_SUFFIX) => inputs.meta.push(path.clone()),
            Ok(md) if md.is_file() => {
                if let Err(e) = check_name(path) {
                    inputs.skipped.push(Skipped::new(path, &e));
                } else if let Some(format) = crate::pcap::read::sniff(path) {
                    take_pcap(path.clone(), format, &mut inputs, &mut seen);
                } else {
                    consider(path.clone(), &mut inputs, &mut seen);
                }
            }
            Ok(_) => inputs.skipped.push(Skipped::new(path, &InputError::NotAFile)),
        }
    }
    inputs
}

/// Quoted glob patterns (`'out/*/*.parquet'`, for shells that do not expand them, or too
/// many files for one command line) are expanded here, in sorted order; a path that exists
/// is taken literally even if it contains `*` or `[`. A pattern that matches nothing, or
/// is malformed, is reported as skipped.
fn expand_globs(paths: &[PathBuf], skipped: &mut Vec<Skipped>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for path in paths {
        let text = path.to_string_lossy();
        if path.exists() || !text.contains(['*', '?', '[']) {
            out.push(path.clone());
            continue;
        }
        match glob::glob(&text) {
            Ok(matches) => {
                let mut found: Vec<PathBuf> = matches.filter_map(Result::ok).collect();
                if found.is_empty() {
                    skipped.push(Skipped { file: text.into_owned(), reason: InputError::NoMatch.to_string() });
                }
                found.sort();
                out.extend(found);
            }
            Err(e) => skipped.push(Skipped { file: text.into_owned(), reason: format!("bad pattern: {e}") }),
        }
    }
    out
}

/// Rejects names that are never events tables even when given explicitly.
fn check_name(path: &Path) -> Result<(), InputError> {
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    if name.ends_with(PARTIAL_SUFFIX) {
        Err(InputError::Partial)
    } else if name.ends_with(META_SUFFIX) {
        Err(InputError::RunMetadata)
    } else {
        Ok(())
    }
}

/// Recursively collects `*.events.parquet` under `dir`, in sorted order so that output
/// (and the order of warnings) does not depend on the file system.
fn walk(dir: &Path, inputs: &mut Inputs, seen: &mut HashSet<PathBuf>) {
    let entries = match fs::read_dir(dir) {
        Ok(rd) => rd.collect::<Result<Vec<_>, _>>(),
        Err(e) => Err(e),
    };
    let mut entries = match entries {
        Ok(v) => v,
        Err(e) => return inputs.skipped.push(Skipped::new(dir, &e.into())),
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // `file_type` does not follow symlinks: symlinked directories are not descended
        // into (no cycles), symlinked files are followed below.
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            walk(&path, inputs, seen);
            continue;
        }
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(META_SUFFIX) && !name.starts_with('.') {
            inputs.meta.push(path);
            continue;
        }
        if PCAP_SUFFIXES.iter().any(|s| name.ends_with(s)) && !name.starts_with('.') {
            match crate::pcap::read::sniff(&path) {
                Some(format) => take_pcap(path, format, inputs, seen),
                None => inputs.skipped.push(Skipped {
                    file: path.display().to_string(),
                    reason: "named like a capture but not a pcap or pcapng file (bad magic number)".into(),
                }),
            }
            continue;
        }
        if !name.ends_with(EVENTS_SUFFIX) && !name.ends_with(SYNC_SUFFIX) {
            // Includes `.x.events.parquet.partial` and `*.meta.json`: silently ignored
            // here, since they are expected next to the events files.
            continue;
        }
        if ft.is_symlink() && !fs::metadata(&path).map(|m| m.is_file()).unwrap_or(false) {
            inputs.skipped.push(Skipped::new(&path, &InputError::NotAFile));
            continue;
        }
        consider(path, inputs, seen);
    }
}

/// File-name suffixes of pcap captures looked for in directories (given files are told by
/// their magic number, whatever their name).
pub const PCAP_SUFFIXES: [&str; 3] = [".pcap", ".pcapng", ".cap"];

fn take_pcap(path: PathBuf, format: crate::pcap::read::Format, inputs: &mut Inputs, seen: &mut HashSet<PathBuf>) {
    let key = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    if seen.insert(key) {
        inputs.pcaps.push((path, format));
    }
}

/// Validates one candidate (once per real file) and files it as used or skipped.
fn consider(path: PathBuf, inputs: &mut Inputs, seen: &mut HashSet<PathBuf>) {
    let key = fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    if !seen.insert(key) {
        return;
    }
    match validate(&path) {
        Ok(Table::Events) => inputs.used.push(path),
        Ok(Table::Sync) => inputs.sync.push(path),
        Err(e) => inputs.skipped.push(Skipped::new(&path, &e)),
    }
}

/// Checks that `path` is a netlat events or sync file this analyzer can read, from its
/// footer only, and says which.
pub fn validate(path: &Path) -> Result<Table, InputError> {
    guard(|| validate_footer(path)).unwrap_or_else(|m| Err(InputError::ReaderPanic(m)))
}

fn validate_footer(path: &Path) -> Result<Table, InputError> {
    path.to_str().ok_or(InputError::NonUtf8Path)?;
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut reader = ParquetReader::new(file);
    let metadata = reader.get_metadata().map_err(|e| InputError::NotParquet(e.to_string()))?;
    // polars takes the footer's byte ranges on trust (an out-of-range one can
    // read past the file: found by fuzzing, issue 9): check them first.
    for (i, rg) in metadata.row_groups.iter().enumerate() {
        for r in std::iter::once(rg.full_byte_range()).chain(rg.byte_ranges_iter()) {
            if r.start > r.end || r.end > len {
                return Err(InputError::NotParquet(format!(
                    "row group {i} names bytes {}..{} of a {len}-byte file (truncated or corrupt footer)",
                    r.start, r.end
                )));
            }
        }
    }
    let version = metadata
        .key_value_metadata
        .iter()
        .flatten()
        .find(|kv| kv.key == SCHEMA_VERSION_KEY)
        .ok_or(InputError::NotNetlat)?
        .value
        .clone()
        .unwrap_or_default();
    if version.trim() != SCHEMA_VERSION {
        return Err(InputError::SchemaVersion { found: version });
    }
    let table = match metadata.key_value_metadata.iter().flatten().find(|kv| kv.key == TABLE_KEY) {
        Some(kv) if kv.value.as_deref() == Some("sync") => Table::Sync,
        _ => Table::Events,
    };
    let schema = reader.schema().map_err(|e| InputError::NotParquet(e.to_string()))?;
    let required: &[(&'static str, ColumnKind)] = match table {
        Table::Events => &REQUIRED_COLUMNS,
        Table::Sync => &SYNC_COLUMNS,
    };
    for &(name, kind) in required {
        let field = schema.get(name).ok_or(InputError::MissingColumn(name))?;
        if !kind.accepts(&field.dtype) {
            return Err(InputError::ColumnType { name, found: format!("{:?}", field.dtype), expected: kind });
        }
    }
    Ok(table)
}

/// Reads the required columns of `path` in full, to find a file whose footer is intact
/// but whose data is not. Only used after the combined query failed, so the common path
/// reads every file once.
pub fn probe(path: &Path) -> Result<(), InputError> {
    guard(|| {
        let lf = crate::matching::scan_file(path).map_err(|e| InputError::Data(e.to_string()))?;
        lf.collect().map(drop).map_err(|e| InputError::Data(e.to_string()))
    })
    .unwrap_or_else(|m| Err(InputError::ReaderPanic(m)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_and_meta_names_are_rejected() {
        assert!(matches!(check_name(Path::new("a/.h-1.events.parquet.partial")), Err(InputError::Partial)));
        assert!(matches!(check_name(Path::new("h-run.meta.json")), Err(InputError::RunMetadata)));
        assert!(check_name(Path::new("x.parquet")).is_ok());
    }

    #[test]
    fn missing_path_is_skipped_with_reason() {
        let inputs = discover(&[PathBuf::from("/nonexistent/netlat-test")]);
        assert!(inputs.used.is_empty());
        assert_eq!(inputs.skipped.len(), 1);
        assert!(inputs.skipped[0].reason.starts_with("cannot read"), "{:?}", inputs.skipped);
    }
}
