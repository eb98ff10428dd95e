//! The path of events from the kernel to the disk: a reader drains the
//! kernel ring buffers of every namespace into batches, and a writer thread
//! turns them into Parquet. They are joined by a bounded queue: when the
//! writer falls behind, batches are dropped *and counted* rather than
//! growing memory without bound.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    mpsc::{self, RecvTimeoutError, TrySendError},
    Arc,
};
use std::time::Duration;

use capture_common::abi::{hook, PacketEvent, PacketHead, SyncStamp};
use sync::sim::SimClock;

use crate::{
    loader::{Points, Scope},
    ring::{RingError, RingWriter},
    schema, sync_table,
};

/// Events per batch handed to the writer.
pub const BATCH: usize = 16 * 1024;

/// Shared between the reader and the writer thread.
#[derive(Default)]
pub struct Tally {
    /// Events written, per hook.
    pub written: [AtomicU64; hook::COUNT],
    /// Sync stamps written.
    pub sync_written: AtomicU64,
    /// Finished files on disk, for the live line.
    pub files: AtomicU64,
}

/// What the reader hands the writer.
pub enum Batch {
    /// Packet events, tagged with their scope, and with `--snaplen` each one's first bytes
    /// (empty otherwise).
    Events(Vec<(usize, PacketEvent)>, Vec<Vec<u8>>),
    /// Sync stamps, tagged with their scope.
    Sync(Vec<(usize, SyncStamp)>),
}

impl Batch {
    fn is_empty(&self) -> bool {
        match self {
            Batch::Events(v, _) => v.is_empty(),
            Batch::Sync(v) => v.is_empty(),
        }
    }
}

/// The event ring and the sync ring.
pub struct Rings {
    /// The events ring.
    pub events: RingWriter,
    /// The sync ring.
    pub sync: RingWriter,
}

/// The writer thread's body: writes batches until the queue closes, then
/// closes both rings.
pub fn writer_thread(
    mut rings: Rings,
    host: String,
    points: Points,
    rx: mpsc::Receiver<Batch>,
    tally: Arc<Tally>,
    delay: Duration,
    snap: bool,
) -> (Rings, Result<(), RingError>) {
    let result = (|| loop {
        tally.files.store(rings.events.finished().count() as u64, Ordering::Relaxed);
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Batch::Events(events, heads)) => {
                let heads = snap.then_some(heads.as_slice());
                let batch = schema::to_batch(&host, &events, heads, &points).expect("schema matches builder");
                rings.events.write(&batch)?;
                for (_, e) in &events {
                    tally.written[usize::from(e.hook).min(hook::COUNT - 1)].fetch_add(1, Ordering::Relaxed);
                }
                if !delay.is_zero() {
                    std::thread::sleep(delay);
                }
            }
            Ok(Batch::Sync(stamps)) => {
                let batch = sync_table::to_sync_batch(&host, &stamps, &points).expect("schema matches builder");
                rings.sync.write(&batch)?;
                tally.sync_written.fetch_add(stamps.len() as u64, Ordering::Relaxed);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                rings.events.rotate()?;
                return rings.sync.rotate();
            }
        }
        rings.events.tick()?;
        rings.sync.tick()?;
    })();
    if result.is_err() {
        rings.events.abandon();
        rings.sync.abandon();
    }
    (rings, result)
}

/// Reads both ring buffers of every scope into batches, applying the
/// synthetic clock if any.
pub struct Reader {
    /// The batch of events being filled.
    pub events: Vec<(usize, PacketEvent)>,
    /// With `--snaplen`: the first bytes of each packet of `events`.
    pub heads: Vec<Vec<u8>>,
    /// The batch of sync stamps being filled.
    pub stamps: Vec<(usize, SyncStamp)>,
    /// Synthetic clock applied to every timestamp (a test aid).
    pub sim: Option<SimClock>,
}

impl Reader {
    /// Reads what the kernel has, up to a full batch of events; returns
    /// the number of events read.
    pub fn drain(&mut self, scopes: &mut [Scope]) -> usize {
        let mut n = 0;
        for (i, s) in scopes.iter_mut().enumerate() {
            while let Some(item) = s.sync_ring.next() {
                if item.len() >= std::mem::size_of::<SyncStamp>() {
                    // SAFETY: the kernel wrote a whole SyncStamp; unaligned read.
                    let mut st = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SyncStamp>()) };
                    if let Some(sim) = &self.sim {
                        st.ts_ns = sim.apply(st.ts_ns as i64) as u64;
                    }
                    self.stamps.push((i, st));
                }
            }
            while let Some(item) = s.ring.next() {
                if item.len() >= std::mem::size_of::<PacketHead>() {
                    // SAFETY: the kernel wrote a whole PacketHead (`--snaplen`); unaligned read.
                    let mut h = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PacketHead>()) };
                    if let Some(sim) = &self.sim {
                        h.event.ts_ns = sim.apply(h.event.ts_ns as i64) as u64;
                    }
                    self.events.push((i, h.event));
                    self.heads.push(h.data[..(h.len as usize).min(h.data.len())].to_vec());
                    n += 1;
                } else if item.len() >= std::mem::size_of::<PacketEvent>() {
                    // SAFETY: the kernel wrote a whole PacketEvent; unaligned read.
                    let mut e = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<PacketEvent>()) };
                    if let Some(sim) = &self.sim {
                        e.ts_ns = sim.apply(e.ts_ns as i64) as u64;
                    }
                    self.events.push((i, e));
                    n += 1;
                }
                if self.events.len() >= BATCH {
                    break;
                }
            }
        }
        n
    }
}

/// Drops handed to the writer: per hook for events, and sync stamps.
#[derive(Default)]
pub struct Lost {
    /// Events, per hook.
    pub events: [u64; hook::COUNT],
    /// Sync stamps.
    pub stamps: u64,
}

/// Hands a batch to the writer. Batches that do not reach it are counted,
/// never just lost: a full queue, or a writer that stopped on an error.
/// Returns false once the writer is gone.
pub fn send(tx: &mpsc::SyncSender<Batch>, batch: Batch, lost: &mut Lost, block: bool) -> bool {
    if batch.is_empty() {
        return true;
    }
    let sent = if block { tx.send(batch).map_err(|e| TrySendError::Disconnected(e.0)) } else { tx.try_send(batch) };
    let (back, alive) = match sent {
        Ok(()) => return true,
        Err(TrySendError::Full(b)) => (b, true),
        Err(TrySendError::Disconnected(b)) => (b, false),
    };
    match back {
        Batch::Events(v, _) => v.iter().for_each(|(_, e)| lost.events[usize::from(e.hook).min(hook::COUNT - 1)] += 1),
        Batch::Sync(v) => lost.stamps += v.len() as u64,
    }
    alive
}
