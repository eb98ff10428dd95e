//! Parquet ring files with tcpdump's semantics: rotate by size (`-C`) and by
//! age (`-G`), keep at most N files (`-W`).
//!
//! A file is written as `.<name>.partial` and renamed to its final name only
//! after its footer is written and it is fsynced, and then the folder is
//! fsynced too: a crash or power loss can leave a `.partial` behind but never
//! a torn file under a finished name.
//!
//! A `.partial` stays recoverable: rows are flushed as a row group at least
//! every `flush_every`, and after each row group the footer the file would
//! have if it were closed now is stored next to it, atomically, as
//! `.<name>.footer` ([`crate::recover`] turns the pair into a complete file).
//! The writer holds an exclusive `flock` on the `.partial`, so recovery never
//! touches the file of a capture that is still running.

use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use crate::recover::{footer_path, Checkpoint};
use arrow::{datatypes::SchemaRef, record_batch::RecordBatch};
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, Encoding, ZstdLevel},
    errors::ParquetError,
    file::{
        metadata::KeyValue,
        properties::{EnabledStatistics, WriterProperties},
    },
    schema::types::ColumnPath,
};

/// Rows per row group: bounds the writer's memory (~100 B per buffered row).
const ROW_GROUP_ROWS: usize = 128 * 1024;

/// A ring file operation that failed; always names the file.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// Creating, writing, syncing or renaming a file failed.
    #[error("{path}: {what}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operation.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The Parquet encoder failed (a write error surfaces here too).
    #[error("{path}: writing Parquet: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ParquetError,
    },
    /// A batch of rows could not be built (a bug: the run stops with its files and
    /// metadata, rather than the writer thread panicking).
    #[error("building a batch of {rows} rows for the {table} files: {source}")]
    Batch {
        /// `events` or `sync`.
        table: &'static str,
        /// Rows in the batch.
        rows: usize,
        /// Why.
        source: arrow::error::ArrowError,
    },
}

/// Ring settings.
#[derive(Clone, Debug)]
pub struct RingConfig {
    /// Output folder.
    pub dir: PathBuf,
    /// File name prefix: `<host>-<run_id>`.
    pub prefix: String,
    /// Table name, the file name's second suffix: `events` or `sync`.
    pub table: &'static str,
    /// Rotate when a file reaches this many bytes.
    pub max_bytes: u64,
    /// Rotate when a file is this old.
    pub max_age: Duration,
    /// Keep at most this many finished files (0: all).
    pub max_files: u32,
    /// Flush buffered rows as a row group (and store the recovery footer) at
    /// least this often; zero: only when a row group is full.
    pub flush_every: Duration,
}

struct Open {
    tmp: PathBuf,
    fin: PathBuf,
    w: ArrowWriter<File>,
    opened: Instant,
    /// What the recovery footer needs besides the row groups.
    ckpt: Checkpoint,
    /// Row groups covered by the stored recovery footer.
    saved_groups: usize,
    /// Last row-group flush (or the file's opening).
    flushed: Instant,
}

/// Writes record batches into rotating Parquet files.
pub struct RingWriter {
    cfg: RingConfig,
    schema: SchemaRef,
    kv: Vec<KeyValue>,
    seq: u32,
    current: Option<Open>,
    finished: VecDeque<PathBuf>,
    /// Finished files removed to honour `max_files`.
    pub deleted: Vec<PathBuf>,
    /// Rows in finished files (including deleted ones).
    pub rows_finished: u64,
    rows_current: u64,
}

fn io_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> RingError + 'a {
    move |source| RingError::Io { path: path.to_owned(), what, source }
}

/// fsyncs a folder so a rename in it survives power loss.
pub fn sync_dir(dir: &Path) -> Result<(), RingError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "fsync folder"))
}

impl RingWriter {
    /// A writer for `schema`; `kv` goes into every file's footer. A batch may carry a string
    /// column of `schema` as a dictionary of strings ([`crate::schema::batch_schema`]): the
    /// file still has `schema`'s types.
    pub fn new(cfg: RingConfig, schema: SchemaRef, kv: Vec<KeyValue>) -> Self {
        Self {
            cfg,
            schema,
            kv,
            seq: 0,
            current: None,
            finished: VecDeque::new(),
            deleted: Vec::new(),
            rows_finished: 0,
            rows_current: 0,
        }
    }

    /// Finished files still on disk, oldest first.
    pub fn finished(&self) -> impl Iterator<Item = &PathBuf> {
        self.finished.iter()
    }

    /// Rows written so far, finished or in the open file.
    pub fn rows(&self) -> u64 {
        self.rows_finished + self.rows_current
    }

    fn props(&self) -> WriterProperties {
        // Note: the recovery footer is built from the same properties (Checkpoint::new).
        let mut kv = self.kv.clone();
        let m = sync::clock::mono_to_realtime(20);
        kv.push(KeyValue::new("netlat.mono_to_realtime_ns".into(), m.offset_ns.to_string()));
        let builder = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("valid level")))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_key_value_metadata(Some(kv))
            // Numbers without dictionaries: the encoder interns every row's value (a hash
            // lookup per row and column, a fifth of the writer's time), and zstd finds the
            // repeats of the few values most columns hold as well (6% more bytes on disk,
            // 35% more events per second; BENCHMARKS.md).
            .set_dictionary_enabled(false)
            // Timestamps grow steadily: delta encoding.
            .set_column_encoding(ColumnPath::from("ts_ns"), Encoding::DELTA_BINARY_PACKED);
        // The text columns keep their dictionaries (a string per row otherwise).
        let builder = (crate::schema::TEXT_COLUMNS.iter())
            .fold(builder, |b, c| b.set_column_dictionary_enabled(ColumnPath::from(*c), true));
        (crate::schema::UNPRUNABLE.iter())
            .fold(builder, |b, c| b.set_column_statistics_enabled(ColumnPath::from(*c), EnabledStatistics::None))
            .build()
    }

    fn open(&mut self) -> Result<&mut Open, RingError> {
        if self.current.is_none() {
            self.seq += 1;
            let name = format!("{}-{:05}.{}.parquet", self.cfg.prefix, self.seq, self.cfg.table);
            let fin = self.cfg.dir.join(&name);
            let tmp = self.cfg.dir.join(format!(".{name}.partial"));
            // create_new: never overwrite anything, even after a restart.
            let file = OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(io_err(&tmp, "create"))?;
            // Held until the file is closed or the process dies: `recover`
            // leaves a locked `.partial` alone. Best effort (some file systems
            // have no flock).
            // SAFETY: flock on a file descriptor we own.
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) };
            let props = self.props();
            let ckpt = Checkpoint::new(&self.schema, &props, footer_path(&tmp))
                .map_err(|source| RingError::Parquet { path: tmp.clone(), source })?;
            let w = ArrowWriter::try_new(file, self.schema.clone(), Some(props))
                .map_err(|source| RingError::Parquet { path: tmp.clone(), source })?;
            let now = Instant::now();
            self.current = Some(Open { tmp, fin, w, opened: now, ckpt, saved_groups: 0, flushed: now });
        }
        Ok(self.current.as_mut().expect("just opened"))
    }

    /// Appends a batch, rotating afterwards if the file is full.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), RingError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let max = self.cfg.max_bytes;
        let open = self.open()?;
        open.w.write(batch).map_err(|source| RingError::Parquet { path: open.tmp.clone(), source })?;
        let size = open.w.bytes_written() as u64 + open.w.in_progress_size() as u64;
        if open.w.flushed_row_groups().len() > open.saved_groups {
            // A full row group went out: make it recoverable.
            open.flushed = Instant::now();
            Self::checkpoint(open)?;
        }
        self.rows_current += batch.num_rows() as u64;
        if size >= max {
            self.rotate()?;
        }
        Ok(())
    }

    /// Rotates the open file if it is older than the age limit; otherwise
    /// flushes rows buffered longer than `flush_every` as a row group.
    pub fn tick(&mut self) -> Result<(), RingError> {
        let flush_every = self.cfg.flush_every;
        match &mut self.current {
            Some(o) if o.opened.elapsed() >= self.cfg.max_age => self.rotate(),
            Some(o) if !flush_every.is_zero() && o.flushed.elapsed() >= flush_every => {
                o.flushed = Instant::now();
                if o.w.in_progress_rows() > 0 {
                    o.w.flush().map_err(|source| RingError::Parquet { path: o.tmp.clone(), source })?;
                    Self::checkpoint(o)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Makes the row groups written so far durable and stores the footer
    /// that covers them (`.<name>.footer`, replaced atomically).
    fn checkpoint(o: &mut Open) -> Result<(), RingError> {
        o.w.sync().map_err(io_err(&o.tmp, "write"))?;
        // The data first: the footer must never describe bytes a power
        // loss could take back.
        o.w.inner().sync_data().map_err(io_err(&o.tmp, "fsync"))?;
        let data_end = o.w.bytes_written() as u64;
        let groups = o.w.flushed_row_groups();
        o.ckpt.store(data_end, groups).map_err(|source| RingError::Io {
            path: o.ckpt.path.clone(),
            what: "store recovery footer",
            source,
        })?;
        o.saved_groups = groups.len();
        Ok(())
    }

    /// Closes the open file (if any): footer, fsync, rename, fsync folder,
    /// then enforces `max_files`.
    pub fn rotate(&mut self) -> Result<(), RingError> {
        let Some(Open { tmp, fin, w, ckpt, .. }) = self.current.take() else { return Ok(()) };
        w.close().map_err(|source| RingError::Parquet { path: tmp.clone(), source })?;
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err(&tmp, "fsync"))?;
        std::fs::rename(&tmp, &fin).map_err(io_err(&fin, "rename"))?;
        sync_dir(&self.cfg.dir)?;
        // Only after the rename: until then the footer may still be needed.
        // A footer left behind by a crash here is removed by `recover`.
        match std::fs::remove_file(&ckpt.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&ckpt.path, "remove")(e)),
            _ => {}
        }
        self.rows_finished += std::mem::take(&mut self.rows_current);
        self.finished.push_back(fin);
        while self.cfg.max_files > 0 && self.finished.len() > self.cfg.max_files as usize {
            let old = self.finished.pop_front().expect("non-empty");
            std::fs::remove_file(&old).map_err(io_err(&old, "remove old ring file"))?;
            self.deleted.push(old);
        }
        Ok(())
    }

    /// Abandons the open file after an error: it stays as `.partial` (never
    /// under a finished name), with its recovery footer, for `recover`.
    pub fn abandon(&mut self) -> Option<PathBuf> {
        self.current.take().map(|o| o.tmp)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::{events_schema, to_batch, PointContext, PointLookup};
    use capture_common::abi::PacketEvent;

    /// No interface context: events tests that only count rows (also recovery's tests).
    pub(crate) struct NoPoints;
    impl PointLookup for NoPoints {
        fn point(&self, _: usize, _: u32) -> Option<&PointContext> {
            None
        }
    }

    fn batch(n: usize, start: u64) -> RecordBatch {
        let evs: Vec<_> = (0..n as u64)
            .map(|i| (0, PacketEvent { ts_ns: start + i, pkt_id: 1 + start + i, family: 4, ..Default::default() }))
            .collect();
        to_batch("h", &evs, None, None, &NoPoints).unwrap()
    }

    /// An events ring in `dir`, files named `h-run-…`.
    pub(crate) fn ring(dir: &Path, max_bytes: u64, max_files: u32) -> RingWriter {
        let cfg = RingConfig {
            dir: dir.to_owned(),
            prefix: "h-run".into(),
            table: "events",
            max_bytes,
            max_age: Duration::from_secs(3600),
            max_files,
            flush_every: Duration::ZERO,
        };
        RingWriter::new(
            cfg,
            events_schema(false, false),
            vec![KeyValue::new("netlat.schema_version".into(), "1".to_owned())],
        )
    }

    fn rows_in(path: &Path) -> usize {
        let f = File::open(path).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f).unwrap().build().unwrap();
        r.map(|b| b.unwrap().num_rows()).sum()
    }

    #[test]
    fn rotates_by_size_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ring(dir.path(), 1, 0);
        for i in 0..5 {
            r.write(&batch(1000, i * 1000)).unwrap();
        }
        r.rotate().unwrap();
        let files: Vec<_> = r.finished().cloned().collect();
        assert_eq!(files.len(), 5);
        assert_eq!(files.iter().map(|f| rows_in(f)).sum::<usize>(), 5000);
        assert_eq!(r.rows(), 5000);
        assert!(files[0].ends_with("h-run-00001.events.parquet"));
        // no partial files remain
        let partial = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".partial"));
        assert_eq!(partial.count(), 0);
    }

    #[test]
    fn max_files_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ring(dir.path(), 1, 2);
        for i in 0..4 {
            r.write(&batch(10, i * 10)).unwrap();
        }
        let names: Vec<_> = r.finished().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["h-run-00003.events.parquet", "h-run-00004.events.parquet"]);
        assert_eq!(r.deleted.len(), 2);
        assert!(!r.deleted[0].exists());
    }

    #[test]
    fn open_file_is_partial_until_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = ring(dir.path(), u64::MAX, 0);
        r.write(&batch(10, 0)).unwrap();
        assert!(dir.path().join(".h-run-00001.events.parquet.partial").exists());
        assert!(!dir.path().join("h-run-00001.events.parquet").exists());
        r.rotate().unwrap();
        assert_eq!(rows_in(&dir.path().join("h-run-00001.events.parquet")), 10);
    }

    #[test]
    fn never_overwrites_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".h-run-00001.events.parquet.partial"), b"keep").unwrap();
        let mut r = ring(dir.path(), u64::MAX, 0);
        let e = r.write(&batch(1, 0)).unwrap_err().to_string();
        assert!(e.contains(".h-run-00001.events.parquet.partial: create"), "{e}");
    }
}
