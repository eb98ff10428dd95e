//! Finishing the files a capture was writing when it died (SIGKILL, crash,
//! power loss, a full disk).
//!
//! While a file is open the writer flushes its rows as row groups (when a row
//! group is full, and at least every `--flush-seconds`), and after each one
//! stores next to the `.<name>.partial` a *recovery footer*, `.<name>.footer`:
//! the Parquet footer the file would have if it were closed at that moment,
//! and the length of the file it describes. It is replaced atomically
//! (temporary file, fsync, rename) after the data it describes was fsynced,
//! so it never describes bytes that are not on disk; its cost is one footer
//! per row group.
//!
//! [`recover_dir`] turns each leftover `.partial` that no running capture
//! holds (the writer keeps an exclusive `flock` on it) into a complete file
//! named `<name>-recovered.<table>.parquet` (never overwriting anything): the
//! bytes of every complete row group the footer names and that are all
//! present, followed by that footer, with the key `netlat.recovered_from`
//! added. This is done in place (the incomplete tail cut, the footer
//! appended, under the `.partial` name), so it needs no room for a copy, and
//! the result is read back in full before it is linked to its new name. A
//! `.partial` with nothing to recover (no row group was finished, or the file
//! was cut before the first one ended) is removed with a warning naming it
//! and the bytes dropped. The run's `*.meta.json` is then updated: status
//! `interrupted` (if it still said `running`), `files` and `sync.files` as on
//! disk, and `recovered` / `recovery_removed` entries.
//!
//! Sidecar layout (little endian): magic `NLFOOTR1`, `data_end` u64 (bytes
//! of the `.partial` the footer covers), footer length u64, FNV-1a 64 of
//! `data_end` and the footer, then the footer (Thrift `FileMetaData`, its
//! 4-byte length, `PAR1`).

use std::{
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Seek, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use arrow::datatypes::SchemaRef;
use parquet::{
    arrow::{
        add_encoded_arrow_schema_to_metadata, arrow_reader::ParquetRecordBatchReaderBuilder, ArrowSchemaConverter,
    },
    errors::ParquetError,
    file::{
        metadata::{
            FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader,
            ParquetMetaDataWriter, RowGroupMetaData,
        },
        properties::WriterProperties,
    },
    schema::types::SchemaDescPtr,
};

use crate::ring::sync_dir;

/// Suffix of a file still being written.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Suffix of its recovery footer (replacing `.partial`).
pub const FOOTER_SUFFIX: &str = ".footer";
/// Key added to a recovered file's metadata: the `.partial` it came from.
pub const RECOVERED_KEY: &str = "netlat.recovered_from";
const MAGIC: &[u8; 8] = b"NLFOOTR1";
const HEADER: usize = 32;

/// `.<name>.footer` for `.<name>.partial`.
pub fn footer_path(partial: &Path) -> PathBuf {
    let name = partial.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let base = name.strip_suffix(PARTIAL_SUFFIX).unwrap_or(&name);
    partial.with_file_name(format!("{base}{FOOTER_SUFFIX}"))
}

fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in parts.iter().flat_map(|p| p.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the recovery footer of one open file needs besides its row groups.
pub struct Checkpoint {
    /// Where the footer is stored.
    pub path: PathBuf,
    descr: SchemaDescPtr,
    kv: Option<Vec<KeyValue>>,
    created_by: String,
    version: i32,
}

impl Checkpoint {
    /// The footer for files written by `ArrowWriter` with `schema` and `props`
    /// (the same schema conversion and key-value metadata, Arrow schema included).
    pub fn new(schema: &SchemaRef, props: &WriterProperties, path: PathBuf) -> Result<Self, ParquetError> {
        let descr = ArrowSchemaConverter::new().with_coerce_types(props.coerce_types()).convert(schema)?;
        let mut with_arrow = props.clone();
        add_encoded_arrow_schema_to_metadata(schema, &mut with_arrow);
        Ok(Self {
            path,
            descr: Arc::new(descr),
            kv: with_arrow.key_value_metadata().cloned(),
            created_by: props.created_by().to_owned(),
            version: props.writer_version().as_num(),
        })
    }

    /// Stores the footer describing `groups`, which end at byte `data_end`
    /// (already durable), replacing the previous one atomically.
    pub fn store(&self, data_end: u64, groups: &[RowGroupMetaData]) -> io::Result<()> {
        let rows = groups.iter().map(RowGroupMetaData::num_rows).sum();
        let fmd = FileMetaData::new(
            self.version,
            rows,
            Some(self.created_by.clone()),
            self.kv.clone(),
            self.descr.clone(),
            None,
        );
        let md = ParquetMetaDataBuilder::new(fmd).set_row_groups(groups.to_vec()).build();
        let footer = footer_bytes(&md).map_err(io::Error::other)?;
        let mut buf = Vec::with_capacity(HEADER + footer.len());
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&data_end.to_le_bytes());
        buf.extend_from_slice(&(footer.len() as u64).to_le_bytes());
        buf.extend_from_slice(&fnv1a(&[&data_end.to_le_bytes(), &footer]).to_le_bytes());
        buf.extend_from_slice(&footer);
        let tmp = tmp_path(&self.path);
        let mut f = File::create(&tmp)?;
        f.write_all(&buf)?;
        f.sync_data()?;
        fs::rename(&tmp, &self.path)
    }
}

fn tmp_path(footer: &Path) -> PathBuf {
    let mut s = footer.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn footer_bytes(md: &ParquetMetaData) -> Result<Vec<u8>, ParquetError> {
    let mut out = Vec::new();
    ParquetMetaDataWriter::new(&mut out, md).finish()?;
    Ok(out)
}

/// `(data_end, metadata)` from a stored recovery footer.
fn read_footer(path: &Path) -> Result<(u64, ParquetMetaData), String> {
    let b = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err("no row group was finished (no recovery footer)".into())
        }
        Err(e) => return Err(format!("recovery footer {}: {e}", path.display())),
    };
    let bad = |why: &str| format!("recovery footer {} is unusable: {why}", path.display());
    if b.len() < HEADER || &b[..8] != MAGIC {
        return Err(bad("not a netlat recovery footer"));
    }
    let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    let (data_end, len, sum) = (u(8), u(16), u(24));
    if len != (b.len() - HEADER) as u64 || len < 8 {
        return Err(bad("truncated"));
    }
    let footer = &b[HEADER..];
    if fnv1a(&[&data_end.to_le_bytes(), footer]) != sum {
        return Err(bad("checksum mismatch"));
    }
    let md = ParquetMetaDataReader::decode_metadata(&footer[..footer.len() - 8]).map_err(|e| bad(&e.to_string()))?;
    Ok((data_end, md))
}

/// What became of one `.partial`.
#[derive(Debug)]
pub enum Outcome {
    /// A complete file now holds its complete row groups.
    Recovered {
        /// The new file.
        file: PathBuf,
        /// Rows in it.
        rows: u64,
        /// Row groups in it.
        row_groups: usize,
        /// Bytes of the `.partial` after the last complete row group, dropped.
        bytes_dropped: u64,
    },
    /// Nothing was recoverable: the `.partial` was removed.
    Removed {
        /// Its size.
        bytes: u64,
        /// Why nothing could be kept.
        why: String,
    },
    /// A running capture is writing it: left alone.
    InUse,
}

/// One `.partial` and what became of it (`Err`: an I/O error, left in place).
#[derive(Debug)]
pub struct Report {
    /// The `.partial`.
    pub partial: PathBuf,
    /// What happened.
    pub outcome: Result<Outcome, String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.partial.display();
        match &self.outcome {
            Ok(Outcome::Recovered { file, rows, row_groups, bytes_dropped }) => write!(
                f,
                "recovered {}: {rows} rows in {row_groups} row groups from {p} ({bytes_dropped} bytes after the last complete row group dropped)",
                file.display()
            ),
            Ok(Outcome::Removed { bytes, why }) => {
                write!(f, "warning: removed {p}: nothing recoverable ({why}); {bytes} bytes dropped")
            }
            Ok(Outcome::InUse) => write!(f, "{p} is being written by a running capture: left alone"),
            Err(e) => write!(f, "warning: could not recover {p}: {e}"),
        }
    }
}

/// Recovers every leftover `.*.parquet.partial` in `dir` that no running
/// capture holds, removes stale recovery footers, and updates the affected
/// runs' metadata records.
pub fn recover_dir(dir: &Path) -> io::Result<Vec<Report>> {
    let mut names: Vec<String> =
        fs::read_dir(dir)?.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let mut reports = Vec::new();
    for n in &names {
        if n.starts_with('.') && n.ends_with(&format!(".parquet{PARTIAL_SUFFIX}")) {
            let partial = dir.join(n);
            let outcome = recover_file(&partial);
            if !matches!(outcome, Err(ref e) if e.contains("No such file")) {
                reports.push(Report { partial, outcome });
            }
        }
    }
    // Footers (and their temporary files) whose `.partial` is gone: the file
    // was finished, or recovered, before they were removed. While a
    // `.partial` exists, only its recovery touches them.
    for n in &names {
        let base = n.strip_suffix(".tmp").unwrap_or(n).strip_suffix(FOOTER_SUFFIX);
        if let Some(base) = base.filter(|b| n.starts_with('.') && b.ends_with(".parquet")) {
            if !dir.join(format!("{base}{PARTIAL_SUFFIX}")).exists() {
                let _ = fs::remove_file(dir.join(n));
            }
        }
    }
    update_metas(dir, &reports);
    Ok(reports)
}

/// `<stem>` and `.<table>.parquet` of a capture file name.
fn split_name(name: &str) -> (&str, &str) {
    for suffix in [".events.parquet", ".sync.parquet", ".parquet"] {
        if let Some(stem) = name.strip_suffix(suffix) {
            return (stem, suffix);
        }
    }
    (name, "")
}

/// Recovers one `.partial` (see the module documentation).
pub fn recover_file(partial: &Path) -> Result<Outcome, String> {
    let io = |what: &str, p: &Path| {
        let s = format!("{what} {}", p.display());
        move |e: io::Error| format!("{s}: {e}")
    };
    let mut file = OpenOptions::new().read(true).write(true).open(partial).map_err(io("open", partial))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(Outcome::InUse);
        }
        // No flock on this file system: go on (the capture is assumed dead).
    }
    let len = file.metadata().map_err(io("stat", partial))?.len();
    let dir = partial.parent().unwrap_or(Path::new("."));
    let footer = footer_path(partial);
    let name = partial.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let final_name = name.strip_prefix('.').unwrap_or(&name).strip_suffix(PARTIAL_SUFFIX).unwrap_or(&name).to_owned();

    let plan = plan(&file, len, &footer, &name);
    let removed = |why: String| -> Result<Outcome, String> {
        remove_all(partial, &footer)?;
        sync_dir(dir).map_err(|e| e.to_string())?;
        Ok(Outcome::Removed { bytes: len, why })
    };
    let (keep, footer_bytes, rows, row_groups) = match plan {
        Ok(p) => p,
        Err(why) => return removed(why),
    };
    // Finished in place, still under its `.partial` name: the incomplete
    // tail is cut and the footer appended, which needs no room for a copy
    // (a full disk) and is repeatable: the recovery footer stays until the
    // end, so an interrupted recovery starts again from the same row groups.
    let written = (|| -> io::Result<()> {
        file.set_len(keep)?;
        file.seek(io::SeekFrom::Start(keep))?;
        file.write_all(&footer_bytes)?;
        file.sync_all()
    })();
    written.map_err(io("finish", partial))?;
    if let Err(e) = read_all(partial, rows) {
        return removed(format!("the row groups named by the recovery footer do not decode: {e}"));
    }
    let (stem, suffix) = split_name(&final_name);
    let mut target = None;
    for i in 1..1000 {
        let n = if i == 1 { format!("{stem}-recovered{suffix}") } else { format!("{stem}-recovered-{i}{suffix}") };
        let p = dir.join(n);
        // A hard link never replaces an existing file.
        match fs::hard_link(partial, &p) {
            Ok(()) => {
                target = Some(p);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("link", &p)(e)),
        }
    }
    let target = target.ok_or_else(|| format!("no free name for the file recovered from {}", partial.display()))?;
    sync_dir(dir).map_err(|e| e.to_string())?;
    remove_all(partial, &footer)?;
    sync_dir(dir).map_err(|e| e.to_string())?;
    Ok(Outcome::Recovered { file: target, rows, row_groups, bytes_dropped: len.saturating_sub(keep) })
}

fn remove_all(partial: &Path, footer: &Path) -> Result<(), String> {
    for p in [tmp_path(footer), footer.to_owned()] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(format!("remove {}: {e}", p.display())),
            _ => {}
        }
    }
    fs::remove_file(partial).map_err(|e| format!("remove {}: {e}", partial.display()))
}

/// What to keep: bytes to copy from the `.partial`, the footer to append,
/// rows and row groups; `Err`: why nothing can be kept.
fn plan(file: &File, len: u64, footer: &Path, name: &str) -> Result<(u64, Vec<u8>, u64, usize), String> {
    // Closed but not renamed (killed between the two): it is whole already.
    if let Ok(md) = ParquetMetaDataReader::new().parse_and_finish(file) {
        let rows = md.row_groups().iter().map(|g| g.num_rows() as u64).sum();
        return Ok((len, Vec::new(), rows, md.num_row_groups()));
    }
    let (data_end, md) = read_footer(footer)?;
    let limit = data_end.min(len);
    let mut kept = Vec::new();
    let mut end = 4u64;
    for g in md.row_groups() {
        let g_end =
            g.columns().iter().map(|c| c.byte_range()).map(|(s, l)| s.saturating_add(l)).max().unwrap_or(u64::MAX);
        if g_end > limit || g.num_rows() <= 0 {
            break;
        }
        end = end.max(g_end);
        kept.push(g.clone());
    }
    if kept.is_empty() {
        return Err(if md.num_row_groups() == 0 {
            "no row group was finished".into()
        } else {
            format!("the file ends at byte {len}, before its first row group does")
        });
    }
    let fm = md.file_metadata();
    let mut kv = fm.key_value_metadata().cloned().unwrap_or_default();
    kv.retain(|k| k.key != RECOVERED_KEY);
    kv.push(KeyValue::new(RECOVERED_KEY.to_owned(), name.to_owned()));
    let rows: i64 = kept.iter().map(RowGroupMetaData::num_rows).sum();
    let n = kept.len();
    let fmd = FileMetaData::new(
        fm.version(),
        rows,
        fm.created_by().map(str::to_owned),
        Some(kv),
        fm.schema_descr_ptr(),
        None,
    );
    let md = ParquetMetaDataBuilder::new(fmd).set_row_groups(kept).build();
    let bytes = footer_bytes(&md).map_err(|e| format!("encoding the footer: {e}"))?;
    Ok((end, bytes, rows as u64, n))
}

/// Reads every row of `path`; the count must be `rows`.
fn read_all(path: &Path, rows: u64) -> Result<(), String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let r =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| e.to_string())?.build().map_err(|e| e.to_string())?;
    let mut n = 0u64;
    for b in r {
        n += b.map_err(|e| e.to_string())?.num_rows() as u64;
    }
    if n != rows {
        return Err(format!("{n} rows read, {rows} expected"));
    }
    Ok(())
}

/// `<host>-<run_id>` of a capture file stem `<host>-<run_id>-<seq>`.
fn run_prefix(stem: &str) -> Option<&str> {
    let (prefix, seq) = stem.rsplit_once('-')?;
    (seq.len() >= 5 && seq.bytes().all(|b| b.is_ascii_digit())).then_some(prefix)
}

/// Brings the run-metadata records of the runs whose files were recovered
/// or removed up to date. Best effort: a record that cannot be read or
/// written is left as it was.
fn update_metas(dir: &Path, reports: &[Report]) {
    let mut by_run: std::collections::BTreeMap<String, Vec<&Report>> = Default::default();
    for r in reports {
        if !matches!(r.outcome, Ok(Outcome::Recovered { .. } | Outcome::Removed { .. })) {
            continue;
        }
        let name = r.partial.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let fin = name.trim_start_matches('.').strip_suffix(PARTIAL_SUFFIX).unwrap_or(&name).to_owned();
        if let Some(prefix) = run_prefix(split_name(&fin).0) {
            by_run.entry(prefix.to_owned()).or_default().push(r);
        }
    }
    for (prefix, reports) in by_run {
        let path = dir.join(format!("{prefix}.meta.json"));
        let Ok(mut v) =
            fs::read(&path).map_err(drop).and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).map_err(drop))
        else {
            continue;
        };
        if !v.is_object() {
            continue;
        }
        if v["status"] == "running" {
            v["status"] = "interrupted".into();
            v["error"] = "the capture ended without closing its files (killed or crashed); its open files were recovered by `netlat-capture recover`".into();
        }
        let on_disk = |suffix: &str| -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(suffix) && n.strip_prefix(&prefix).is_some_and(|r| r.starts_with('-')))
                .collect();
            names.sort();
            names
        };
        v["files"] = on_disk(".events.parquet").into();
        if v["sync"].is_object() {
            v["sync"]["files"] = on_disk(".sync.parquet").into();
        }
        for r in reports {
            let from = r.partial.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let (key, entry) = match &r.outcome {
                Ok(Outcome::Recovered { file, rows, row_groups, bytes_dropped }) => (
                    "recovered",
                    serde_json::json!({
                        "from": from,
                        "file": file.file_name().map(|n| n.to_string_lossy().into_owned()),
                        "rows": rows,
                        "row_groups": row_groups,
                        "bytes_dropped": bytes_dropped,
                    }),
                ),
                Ok(Outcome::Removed { bytes, why }) => {
                    ("recovery_removed", serde_json::json!({ "file": from, "bytes": bytes, "reason": why }))
                }
                _ => continue,
            };
            if !v[key].is_array() {
                v[key] = serde_json::Value::Array(Vec::new());
            }
            v[key].as_array_mut().expect("array").push(entry);
        }
        let tmp = dir.join(format!(".{prefix}.meta.json{PARTIAL_SUFFIX}"));
        let json = serde_json::to_vec_pretty(&v).expect("serializable");
        let stored = (|| -> io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if stored.is_ok() {
            let _ = sync_dir(dir);
        } else {
            let _ = fs::remove_file(&tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::tests::NoPoints;
    use crate::ring::{RingConfig, RingWriter};
    use crate::schema::{events_schema, to_batch};
    use capture_common::abi::PacketEvent;
    use std::time::Duration;

    fn batch(n: usize, start: u64) -> arrow::record_batch::RecordBatch {
        let evs: Vec<_> = (0..n as u64)
            .map(|i| {
                (
                    0,
                    PacketEvent {
                        ts_ns: start + i,
                        pkt_id: 1 + start + i,
                        family: 4,
                        sport: i as u16,
                        ..Default::default()
                    },
                )
            })
            .collect();
        to_batch("h", &evs, None, None, &NoPoints).unwrap()
    }

    fn ring(dir: &Path, flush_every: Duration) -> RingWriter {
        let cfg = RingConfig {
            dir: dir.to_owned(),
            prefix: "h-20260101T000000Z-1".into(),
            table: "events",
            max_bytes: u64::MAX,
            max_age: Duration::from_secs(3600),
            max_files: 0,
            flush_every,
        };
        let kv = vec![
            KeyValue::new("netlat.schema_version".into(), "1".to_owned()),
            KeyValue::new("netlat.table".into(), "events".to_owned()),
        ];
        RingWriter::new(cfg, events_schema(false, false), kv)
    }

    const PARTIAL: &str = ".h-20260101T000000Z-1-00001.events.parquet.partial";
    const FOOTER: &str = ".h-20260101T000000Z-1-00001.events.parquet.footer";
    const RECOVERED: &str = "h-20260101T000000Z-1-00001-recovered.events.parquet";

    /// A `.partial` with `groups` flushed row groups of `per` rows each and
    /// some unflushed rows, as a killed capture leaves it (the writer is
    /// leaked so nothing closes the file).
    fn killed_partial(dir: &Path, groups: usize, per: usize) -> (Vec<u8>, Vec<u8>) {
        let mut r = ring(dir, Duration::from_nanos(1));
        for g in 0..groups {
            r.write(&batch(per, (g * per) as u64)).unwrap();
            std::thread::sleep(Duration::from_millis(1));
            r.tick().unwrap();
        }
        r.write(&batch(7, 1_000_000)).unwrap();
        std::mem::forget(r);
        (fs::read(dir.join(PARTIAL)).unwrap(), fs::read(dir.join(FOOTER)).unwrap())
    }

    fn rows_and_kv(path: &Path) -> (u64, Vec<KeyValue>) {
        let f = File::open(path).unwrap();
        let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
        let kv = b.metadata().file_metadata().key_value_metadata().cloned().unwrap_or_default();
        assert_eq!(b.schema().fields().len(), events_schema(false, false).fields().len());
        let n = b.build().unwrap().map(|x| x.unwrap().num_rows() as u64).sum();
        (n, kv)
    }

    #[test]
    fn issue9_recovers_every_flushed_row_group() {
        let dir = tempfile::tempdir().unwrap();
        let (partial, _) = killed_partial(dir.path(), 3, 1000);
        // A locked file (the writer's flock is held while it lives) is left alone.
        let reports = recover_dir(dir.path()).unwrap();
        assert!(matches!(reports[0].outcome, Ok(Outcome::InUse)), "{reports:?}");
        // Once the writer's descriptor is gone, as after SIGKILL:
        drop_locks(dir.path());
        let reports = recover_dir(dir.path()).unwrap();
        assert_eq!(reports.len(), 1);
        let Ok(Outcome::Recovered { file, rows, row_groups, bytes_dropped }) = &reports[0].outcome else {
            panic!("{reports:?}")
        };
        assert_eq!((*rows, *row_groups), (3000, 3));
        assert!(*bytes_dropped < partial.len() as u64);
        assert_eq!(file.file_name().unwrap(), RECOVERED);
        let (n, kv) = rows_and_kv(file);
        assert_eq!(n, 3000);
        assert!(kv.iter().any(|k| k.key == "netlat.schema_version" && k.value.as_deref() == Some("1")));
        assert!(kv.iter().any(|k| k.key == RECOVERED_KEY && k.value.as_deref() == Some(PARTIAL)));
        assert!(kv.iter().any(|k| k.key == "ARROW:schema"));
        assert!(!dir.path().join(PARTIAL).exists() && !dir.path().join(FOOTER).exists());
        assert!(reports[0].to_string().contains("3000 rows in 3 row groups"), "{}", reports[0]);
    }

    /// Copies a file without its lock (flock belongs to the open file description).
    fn drop_locks(dir: &Path) {
        let p = dir.join(PARTIAL);
        let b = fs::read(&p).unwrap();
        fs::remove_file(&p).unwrap();
        fs::write(&p, b).unwrap();
    }

    #[test]
    fn issue9_recovery_of_a_file_cut_at_any_offset() {
        let src = tempfile::tempdir().unwrap();
        let (partial, footer) = killed_partial(src.path(), 4, 300);
        let (_, md) = {
            fs::write(src.path().join("f"), &footer).unwrap();
            read_footer(&src.path().join("f")).unwrap()
        };
        let ends: Vec<u64> = md
            .row_groups()
            .iter()
            .map(|g| g.columns().iter().map(|c| c.byte_range().0 + c.byte_range().1).max().unwrap())
            .collect();
        let mut offsets: Vec<usize> = (0..partial.len()).step_by(97).collect();
        offsets.extend(ends.iter().flat_map(|&e| [e as usize - 1, e as usize, e as usize + 1]));
        offsets.push(partial.len());
        for cut in offsets.into_iter().filter(|&c| c <= partial.len()) {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(PARTIAL), &partial[..cut]).unwrap();
            fs::write(dir.path().join(FOOTER), &footer).unwrap();
            let reports = recover_dir(dir.path()).unwrap();
            let complete = ends.iter().filter(|&&e| e <= cut as u64).count();
            match &reports[0].outcome {
                Ok(Outcome::Recovered { file, rows, row_groups, .. }) => {
                    assert_eq!((*row_groups, *rows), (complete, complete as u64 * 300), "cut {cut}");
                    assert_eq!(rows_and_kv(file).0, *rows, "cut {cut}");
                }
                Ok(Outcome::Removed { bytes, why }) => {
                    assert_eq!(complete, 0, "cut {cut}: {why}");
                    assert_eq!(*bytes, cut as u64);
                    assert!(reports[0].to_string().contains(PARTIAL), "{}", reports[0]);
                }
                other => panic!("cut {cut}: {other:?}"),
            }
            let left: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert!(left.len() <= 1 && left.iter().all(|n| n.to_string_lossy() == RECOVERED), "cut {cut}: {left:?}");
        }
    }

    #[test]
    fn issue9_corrupt_or_missing_footer_removes_with_a_warning() {
        for footer in [None, Some(b"NLFOOTR1 garbage".to_vec()), Some(vec![0u8; 100])] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(PARTIAL), b"PAR1 some bytes").unwrap();
            if let Some(f) = &footer {
                fs::write(dir.path().join(FOOTER), f).unwrap();
            }
            let reports = recover_dir(dir.path()).unwrap();
            assert!(matches!(reports[0].outcome, Ok(Outcome::Removed { bytes: 15, .. })), "{reports:?}");
            let msg = reports[0].to_string();
            assert!(msg.starts_with("warning: removed") && msg.contains(PARTIAL) && msg.contains("15 bytes"), "{msg}");
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn issue9_never_overwrites_and_updates_the_run_metadata() {
        let dir = tempfile::tempdir().unwrap();
        killed_partial(dir.path(), 2, 100);
        drop_locks(dir.path());
        fs::write(dir.path().join(RECOVERED), b"keep").unwrap();
        fs::write(
            dir.path().join("h-20260101T000000Z-1.meta.json"),
            br#"{"status":"running","files":[],"sync":{"files":[]}}"#,
        )
        .unwrap();
        let reports = recover_dir(dir.path()).unwrap();
        let Ok(Outcome::Recovered { file, .. }) = &reports[0].outcome else { panic!("{reports:?}") };
        assert_eq!(file.file_name().unwrap(), "h-20260101T000000Z-1-00001-recovered-2.events.parquet");
        assert_eq!(fs::read(dir.path().join(RECOVERED)).unwrap(), b"keep");
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("h-20260101T000000Z-1.meta.json")).unwrap()).unwrap();
        assert_eq!(meta["status"], "interrupted");
        assert_eq!(meta["recovered"][0]["rows"], 200);
        assert_eq!(meta["files"].as_array().unwrap().len(), 2, "{meta}");
    }

    #[test]
    fn issue9_an_interrupted_recovery_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        killed_partial(dir.path(), 2, 100);
        drop_locks(dir.path());
        // As a recovery stopped after cutting the tail and writing half its footer leaves it.
        let mut f = OpenOptions::new().append(true).open(dir.path().join(PARTIAL)).unwrap();
        f.write_all(&[0x5a; 100]).unwrap();
        drop(f);
        let reports = recover_dir(dir.path()).unwrap();
        assert!(
            matches!(reports[0].outcome, Ok(Outcome::Recovered { rows: 200, row_groups: 2, bytes_dropped: 100, .. })),
            "{reports:?}"
        );
        assert_eq!(rows_and_kv(&dir.path().join(RECOVERED)).0, 200);
    }

    #[test]
    fn a_file_closed_but_not_renamed_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ring(dir.path(), Duration::ZERO);
        r.write(&batch(50, 0)).unwrap();
        r.rotate().unwrap();
        let fin = dir.path().join("h-20260101T000000Z-1-00001.events.parquet");
        fs::rename(&fin, dir.path().join(PARTIAL)).unwrap();
        let reports = recover_dir(dir.path()).unwrap();
        assert!(matches!(reports[0].outcome, Ok(Outcome::Recovered { rows: 50, bytes_dropped: 0, .. })), "{reports:?}");
    }
}
