//! Rows spilled to disk in buckets by packet identity, so that an analysis of any size
//! holds one bucket's rows at a time (24 bytes per event). `pkt_id` is a hash, so its low
//! bits spread packets evenly; every observation of a packet lands in the same bucket,
//! which can therefore be matched on its own.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::walk::Row;

const ROW_BYTES: usize = 24;

/// Why spilling failed.
#[derive(Debug, thiserror::Error)]
#[error("spill file {path}: {source} (choose another folder with --spill-dir)")]
pub struct SpillError {
    /// The file.
    pub path: PathBuf,
    /// The error.
    pub source: std::io::Error,
}

/// `k` bucket files in a temporary folder (removed on drop).
pub struct Spill {
    dir: tempfile::TempDir,
    writers: Vec<BufWriter<File>>,
}

impl Spill {
    /// Creates `k` empty buckets under `parent`.
    pub fn new(parent: &Path, k: usize) -> Result<Self, SpillError> {
        let err = |path: &Path| {
            let path = path.to_owned();
            move |source| SpillError { path, source }
        };
        let dir = tempfile::Builder::new().prefix("netlat-analyze-").tempdir_in(parent).map_err(err(parent))?;
        let mut writers = Vec::with_capacity(k);
        for b in 0..k {
            let path = Self::path_in(dir.path(), b);
            writers.push(BufWriter::with_capacity(256 << 10, File::create(&path).map_err(err(&path))?));
        }
        Ok(Self { dir, writers })
    }

    fn path_in(dir: &Path, bucket: usize) -> PathBuf {
        dir.join(format!("bucket-{bucket:05}.rows"))
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        self.writers.len()
    }

    /// Appends each row to its bucket.
    pub fn write(&mut self, rows: &[Row]) -> Result<(), SpillError> {
        let k = self.writers.len() as u64;
        for r in rows {
            let b = (r.pkt_id % k) as usize;
            let mut bytes = [0u8; ROW_BYTES];
            bytes[..8].copy_from_slice(&r.pkt_id.to_le_bytes());
            bytes[8..16].copy_from_slice(&r.ts.to_le_bytes());
            bytes[16..20].copy_from_slice(&r.point.to_le_bytes());
            bytes[20..].copy_from_slice(&r.flow.to_le_bytes());
            let path = Self::path_in(self.dir.path(), b);
            self.writers[b].write_all(&bytes).map_err(|source| SpillError { path, source })?;
        }
        Ok(())
    }

    /// Flushes every bucket (before reading).
    pub fn finish(&mut self) -> Result<(), SpillError> {
        for (b, w) in self.writers.iter_mut().enumerate() {
            let path = Self::path_in(self.dir.path(), b);
            w.flush().map_err(|source| SpillError { path, source })?;
        }
        Ok(())
    }

    /// The rows of `bucket`, in the order written.
    pub fn read(&self, bucket: usize) -> Result<Vec<Row>, SpillError> {
        let path = Self::path_in(self.dir.path(), bucket);
        let err = |source| SpillError { path: path.clone(), source };
        let file = File::open(&path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len() as usize;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut rows = Vec::with_capacity(len / ROW_BYTES);
        let mut bytes = [0u8; ROW_BYTES];
        for _ in 0..len / ROW_BYTES {
            reader.read_exact(&mut bytes).map_err(err)?;
            let word = |a: usize| u64::from_le_bytes(bytes[a..a + 8].try_into().expect("8 bytes"));
            let half = |a: usize| u32::from_le_bytes(bytes[a..a + 4].try_into().expect("4 bytes"));
            rows.push(Row { pkt_id: word(0), ts: word(8) as i64, point: half(16), flow: half(20) });
        }
        Ok(rows)
    }
}

/// Where the rows of an analysis live: all in memory (one bucket), or spilled to disk.
pub enum Store {
    /// Every row, sorted by [`Store::finish`].
    Memory(Vec<Row>, Growth),
    /// Buckets by packet identity.
    Disk(Spill),
}

/// What an in-memory store needs to move to disk when its rows outgrow the limit (TCP
/// byte mode makes a row per tracked position: many rows per event).
pub struct Growth {
    limit: usize,
    events: usize,
    total: usize,
    parent: PathBuf,
}

impl Store {
    /// Rows of `total` events up to `bucket_rows` stay in memory; more go to bucket files
    /// under `parent`, as many as hold `bucket_rows` each.
    pub fn new(total: usize, bucket_rows: usize, parent: &Path) -> Result<Self, SpillError> {
        let limit = bucket_rows.max(1);
        let buckets = total.div_ceil(limit).max(1);
        Ok(if buckets == 1 {
            Self::Memory(Vec::with_capacity(total), Growth { limit, events: 0, total, parent: parent.to_owned() })
        } else {
            Self::Disk(Spill::new(parent, buckets)?)
        })
    }

    /// Adds the rows `fill` appends to the vector it is given (it returns how many events
    /// they stand for), and returns what `look` says of them (before they may leave
    /// memory). An in-memory store whose rows pass the limit moves to disk, in as many
    /// buckets as the rows of all `total` events need at the rate of rows per event so far.
    pub fn add<T, E: From<SpillError>>(
        &mut self,
        fill: impl FnOnce(&mut Vec<Row>) -> Result<usize, E>,
        look: impl FnOnce(&[Row]) -> T,
    ) -> Result<T, E> {
        match self {
            Self::Memory(all, g) => {
                let start = all.len();
                g.events += fill(all)?;
                let seen = look(&all[start..]);
                if all.len() > g.limit {
                    let rows = all.len() as f64 * g.total.max(g.events) as f64 / g.events.max(1) as f64;
                    let buckets = ((rows / g.limit as f64).ceil() as usize).max(2);
                    let mut spill = Spill::new(&g.parent, buckets)?;
                    spill.write(all)?;
                    *self = Self::Disk(spill);
                }
                Ok(seen)
            }
            Self::Disk(spill) => {
                let mut rows = Vec::new();
                fill(&mut rows)?;
                let seen = look(&rows);
                spill.write(&rows)?;
                Ok(seen)
            }
        }
    }

    /// Ends adding: sorts the rows in memory, or flushes the buckets.
    pub fn finish(&mut self) -> Result<(), SpillError> {
        match self {
            Self::Memory(all, _) => {
                all.par_sort_unstable();
                Ok(())
            }
            Self::Disk(spill) => spill.finish(),
        }
    }

    /// Number of buckets.
    pub fn buckets(&self) -> usize {
        match self {
            Self::Memory(..) => 1,
            Self::Disk(spill) => spill.buckets(),
        }
    }

    /// One pass over every bucket, sorted by (`pkt_id`, time, point): `pass` gives each
    /// bucket's result and `merge` folds them (a single bucket is returned as it is).
    /// Spilled buckets are read and sorted anew on every pass.
    pub fn fold<T>(&self, mut pass: impl FnMut(&[Row]) -> T, merge: impl Fn(&mut T, T)) -> Result<T, SpillError> {
        match self {
            Self::Memory(all, _) => Ok(pass(all)),
            Self::Disk(spill) => {
                let mut acc: Option<T> = None;
                for b in 0..spill.buckets() {
                    let mut rows = spill.read(b)?;
                    rows.par_sort_unstable();
                    let part = pass(&rows);
                    match &mut acc {
                        Some(acc) => merge(acc, part),
                        None => acc = Some(part),
                    }
                }
                Ok(acc.expect("a spill has at least two buckets"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_in_memory_moves_to_disk_when_its_rows_outgrow_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        // 10 events expected, limit 100 rows: in memory; then 5 events make 50 rows each.
        let mut s = Store::new(10, 100, tmp.path()).unwrap();
        assert_eq!(s.buckets(), 1);
        let row = |i: u64| Row { pkt_id: i, ts: 0, point: 0, flow: 0 };
        let fill = |from: u64, n: u64| {
            move |rows: &mut Vec<Row>| -> Result<usize, SpillError> {
                rows.extend((from..from + n).map(row));
                Ok(5)
            }
        };
        let n = s.add(fill(0, 250), |r| r.len()).unwrap();
        assert_eq!(n, 250);
        // 250 rows for 5 of 10 events: 500 expected, 5 buckets of 100.
        assert_eq!(s.buckets(), 5);
        s.add(fill(250, 250), |r| r.len()).unwrap();
        s.finish().unwrap();
        let all = s.fold(|r| r.len(), |a, b| *a += b).unwrap();
        assert_eq!(all, 500);
    }

    #[test]
    fn rows_come_back_in_their_bucket() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Spill::new(tmp.path(), 3).unwrap();
        let rows: Vec<Row> =
            (0..100u64).map(|i| Row { pkt_id: i * 7, ts: -(i as i64), point: i as u32, flow: u32::MAX }).collect();
        s.write(&rows[..50]).unwrap();
        s.write(&rows[50..]).unwrap();
        s.finish().unwrap();
        let mut back: Vec<Row> = (0..3).flat_map(|b| s.read(b).unwrap()).collect();
        assert!(s.read(0).unwrap().iter().all(|r| r.pkt_id % 3 == 0));
        back.sort();
        let mut want = rows;
        want.sort();
        assert_eq!(back, want);
        let dir = s.dir.path().to_owned();
        drop(s);
        assert!(!dir.exists());
    }
}
