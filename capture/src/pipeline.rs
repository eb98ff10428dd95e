//! The path of events from the kernel to the disk: a reader drains the
//! kernel ring buffers of every namespace into batches, and a writer thread
//! turns them into Parquet. They are joined by a bounded queue: when the
//! writer falls behind, batches are dropped *and counted* rather than
//! growing memory without bound.

use std::sync::{
    atomic::{AtomicU64, AtomicUsize, Ordering},
    mpsc::{self, RecvTimeoutError, TrySendError},
    Arc,
};
use std::time::Duration;

use capture_common::abi::{hook, DropEvent, PacketEvent, PacketHead, SockEvent, StackEvent, SyncStamp};
use sync::sim::SimClock;

use crate::{
    loader::{Points, Scope},
    priority::WriterPriority,
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
    /// Batches handed to the writer and not yet taken (the queue's fill).
    pub queued: AtomicUsize,
    /// Times the writer turned urgent ([`WriterPriority::update`]).
    pub writer_urgent: AtomicU64,
}

/// What the reader hands the writer.
pub enum Batch {
    /// Packet events, tagged with their scope; with `--snaplen` each one's first bytes, and
    /// with the socket and drop hooks each one's [`schema::Extra`] (empty otherwise).
    Events(Vec<(usize, PacketEvent)>, Vec<Vec<u8>>, Vec<schema::Extra>),
    /// Sync stamps, tagged with their scope.
    Sync(Vec<(usize, SyncStamp)>),
}

impl Batch {
    fn is_empty(&self) -> bool {
        match self {
            Batch::Events(v, _, _) => v.is_empty(),
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
/// closes both rings. `(snap, extra)`: the files have the `head` and the extra columns;
/// `delay`: a test aid, a sleep after each events batch; `prio` was started (the thread
/// is at its relaxed value).
pub fn writer_thread(
    mut rings: Rings,
    host: String,
    points: Points,
    rx: mpsc::Receiver<Batch>,
    tally: Arc<Tally>,
    (delay, mut prio): (Duration, WriterPriority),
    (snap, extra): (bool, bool),
) -> (Rings, Result<(), RingError>) {
    let result =
        (|| loop {
            tally.files.store(rings.events.finished().count() as u64, Ordering::Relaxed);
            let got = rx.recv_timeout(Duration::from_millis(100));
            if got.is_ok() && prio.update(&tally.queued) {
                tally.writer_urgent.fetch_add(1, Ordering::Relaxed);
            }
            match got {
                Ok(Batch::Events(events, heads, extras)) => {
                    let heads = snap.then_some(heads.as_slice());
                    let extras = extra.then_some(extras.as_slice());
                    let batch = schema::to_batch(&host, &events, heads, extras, &points)
                        .map_err(|source| RingError::Batch { table: "events", rows: events.len(), source })?;
                    rings.events.write(&batch)?;
                    for (_, e) in &events {
                        tally.written[usize::from(e.hook).min(hook::COUNT - 1)].fetch_add(1, Ordering::Relaxed);
                    }
                    if !delay.is_zero() {
                        std::thread::sleep(delay);
                    }
                }
                Ok(Batch::Sync(stamps)) => {
                    let batch = sync_table::to_sync_batch(&host, &stamps, &points)
                        .map_err(|source| RingError::Batch { table: "sync", rows: stamps.len(), source })?;
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
    /// With `--snaplen`: the first bytes of each packet of `events` (none for the rows
    /// that are not packets the hook saw: socket, drop and scheduler rows).
    pub heads: Vec<Vec<u8>>,
    /// Whether `heads` is kept.
    pub snap: bool,
    /// With the socket and drop hooks: what each event of `events` adds.
    pub extras: Vec<schema::Extra>,
    /// Whether `extras` is kept.
    pub extra: bool,
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
            let sim = self.sim.as_ref();
            let stamps = &mut self.stamps;
            s.sync_ring.drain(usize::MAX, |item| {
                if item.len() >= std::mem::size_of::<SyncStamp>() {
                    // SAFETY: the kernel wrote a whole SyncStamp; unaligned read.
                    let mut st = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<SyncStamp>()) };
                    if let Some(sim) = sim {
                        st.ts_ns = sim.apply(st.ts_ns as i64) as u64;
                    }
                    stamps.push((i, st));
                }
            });
            let room = BATCH.saturating_sub(self.events.len());
            let (events, heads, extras) = (&mut self.events, &mut self.heads, &mut self.extras);
            let (keep_heads, keep_extra) = (self.snap, self.extra);
            s.ring.drain(room, |item| {
                let Some((mut e, head, extra)) = decode(item) else { return };
                if let Some(sim) = sim {
                    e.ts_ns = sim.apply(e.ts_ns as i64) as u64;
                }
                events.push((i, e));
                // One per event, empty where the record has no bytes (one value per row: a
                // shorter column failed the batch and stopped the writer).
                if keep_heads {
                    heads.push(head.unwrap_or_default());
                }
                if keep_extra {
                    extras.push(extra);
                }
                n += 1;
            });
        }
        n
    }
}

/// One ring record as an event (all kinds are written as rows of the events table), with
/// its first bytes (`--snaplen`) and extras. The kernel writes five record types, told
/// apart by their length.
fn decode(item: &[u8]) -> Option<(PacketEvent, Option<Vec<u8>>, schema::Extra)> {
    use std::mem::size_of;
    // SAFETY (each read): the record has exactly the type's length; unaligned reads.
    match item.len() {
        n if n == size_of::<PacketEvent>() => {
            Some((unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) }, None, schema::Extra::default()))
        }
        n if n == size_of::<PacketHead>() => {
            let h: PacketHead = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let head = h.data[..(h.len as usize).min(h.data.len())].to_vec();
            Some((h.event, Some(head), schema::Extra { cgroup: h.cgroup, ..Default::default() }))
        }
        n if n == size_of::<StackEvent>() => {
            let s: StackEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            Some((s.event, None, schema::Extra { cgroup: s.cgroup, ..Default::default() }))
        }
        n if n == size_of::<DropEvent>() => {
            let d: DropEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            let extra =
                schema::Extra { reason: Some(d.reason), location: d.location, cgroup: d.cgroup, ..Default::default() };
            Some((d.event, None, extra))
        }
        n if n == size_of::<SockEvent>() => {
            let s: SockEvent = unsafe { std::ptr::read_unaligned(item.as_ptr().cast()) };
            Some((sock_event(&s), None, schema::Extra { tid: s.tid, cgroup: s.cgroup, ..Default::default() }))
        }
        _ => None,
    }
}

/// A socket event as an events-table row: its byte range in `tcp_seq` and `payload_len`,
/// and a `pkt_id` made from the flow and the range (never 0).
fn sock_event(s: &SockEvent) -> PacketEvent {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut mix = |v: u64| h = (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(29);
    s.saddr.chunks(8).chain(s.daddr.chunks(8)).for_each(|c| mix(u64::from_le_bytes(c.try_into().expect("8"))));
    mix(u64::from(s.sport) << 16 | u64::from(s.dport));
    mix(u64::from(s.seq) << 32 | u64::from(s.len));
    mix(u64::from(s.hook));
    PacketEvent {
        ts_ns: s.ts_ns,
        pkt_id: h.max(1),
        saddr: s.saddr,
        daddr: s.daddr,
        seq: s.seq,
        payload_len: s.len,
        ifindex: s.ifindex,
        cpu: s.cpu,
        sport: s.sport,
        dport: s.dport,
        hook: s.hook,
        family: s.family,
        proto: s.proto,
        ..Default::default()
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

/// The reader's end of the writer's queue: the channel, the count of batches in it (the
/// writer's priority follows it, `crate::priority`) and what never reached the writer.
pub struct ToWriter<'a> {
    tx: mpsc::SyncSender<Batch>,
    queued: &'a AtomicUsize,
    /// Batches' contents that did not reach the writer.
    pub lost: Lost,
}

impl<'a> ToWriter<'a> {
    /// The sending end `tx`, counting its batches in `queued`.
    pub fn new(tx: mpsc::SyncSender<Batch>, queued: &'a AtomicUsize) -> Self {
        Self { tx, queued, lost: Lost::default() }
    }

    /// Hands a batch to the writer, waiting for room if `block`. Batches that do not reach
    /// it are counted in `lost`, never just lost: a full queue, or a writer that stopped on
    /// an error. Returns false once the writer is gone.
    pub fn send(&mut self, batch: Batch, block: bool) -> bool {
        if batch.is_empty() {
            return true;
        }
        // Counted before the send: the writer may take the batch before `send` returns.
        self.queued.fetch_add(1, Ordering::Relaxed);
        let sent = if block {
            self.tx.send(batch).map_err(|e| TrySendError::Disconnected(e.0))
        } else {
            self.tx.try_send(batch)
        };
        if sent.is_err() {
            self.queued.fetch_sub(1, Ordering::Relaxed);
        }
        let (back, alive) = match sent {
            Ok(()) => return true,
            Err(TrySendError::Full(b)) => (b, true),
            Err(TrySendError::Disconnected(b)) => (b, false),
        };
        match back {
            Batch::Events(v, _, _) => {
                v.iter().for_each(|(_, e)| self.lost.events[usize::from(e.hook).min(hook::COUNT - 1)] += 1)
            }
            Batch::Sync(v) => self.lost.stamps += v.len() as u64,
        }
        alive
    }

    /// Closes the queue (the writer ends once it has written what is in it) and returns
    /// what did not reach the writer.
    pub fn close(self) -> Lost {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        loader::Points,
        ring::{RingConfig, RingWriter},
    };

    /// A batch the writer cannot build (here a `head` column shorter than the rows, as the
    /// reader once made) ends the writer with an error naming it, after the batches before
    /// it were written: the run fails with its error (and metadata) instead of the writer
    /// thread panicking.
    #[test]
    fn a_batch_that_cannot_be_built_ends_the_writer_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |table: &'static str| RingConfig {
            dir: dir.path().to_owned(),
            prefix: "t".into(),
            table,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(3600),
            max_files: 0,
            flush_every: Duration::from_secs(5),
        };
        let rings = Rings {
            events: RingWriter::new(cfg("events"), schema::events_schema(true, false), Vec::new()),
            sync: RingWriter::new(cfg("sync"), crate::sync_table::sync_schema(), Vec::new()),
        };
        let (tx, rx) = mpsc::sync_channel(4);
        let ev = |hook| (0, PacketEvent { hook, ts_ns: 1, ..Default::default() });
        tx.send(Batch::Events(vec![ev(hook::XDP)], vec![vec![0; 14]], Vec::new())).unwrap();
        tx.send(Batch::Events(vec![ev(hook::XDP), ev(hook::XDP)], vec![vec![0; 14]], Vec::new())).unwrap();
        drop(tx);
        let tally = Arc::new(Tally::default());
        let (_, result) = writer_thread(
            rings,
            "h".into(),
            Points::from_tables(Vec::new()),
            rx,
            tally.clone(),
            (Duration::ZERO, WriterPriority::new(0, 0, 4)),
            (true, false),
        );
        let err = result.unwrap_err();
        assert!(matches!(err, RingError::Batch { table: "events", rows: 2, .. }), "{err}");
        assert!(err.to_string().starts_with("building a batch of 2 rows for the events files: "), "{err}");
        assert_eq!(tally.written[usize::from(hook::XDP)].load(Ordering::Relaxed), 1);
    }

    /// What does not reach the writer is counted by hook (events) or as stamps, and the
    /// queue's count covers only the batches in it: a full queue, then a writer gone.
    #[test]
    fn batches_that_do_not_reach_the_writer_are_counted() {
        let (tx, rx) = mpsc::sync_channel(1);
        let queued = AtomicUsize::new(0);
        let mut out = ToWriter::new(tx, &queued);
        let ev = |hook| (0, PacketEvent { hook, ts_ns: 1, ..Default::default() });
        let events = |v| Batch::Events(v, Vec::new(), Vec::new());
        assert!(out.send(events(Vec::new()), false), "an empty batch is not sent");
        assert!(out.send(events(vec![ev(hook::XDP)]), false));
        assert_eq!(queued.load(Ordering::Relaxed), 1);
        // Full: counted, the writer still there.
        assert!(out.send(events(vec![ev(hook::XDP), ev(hook::TC_INGRESS)]), false));
        assert!(out.send(Batch::Sync(vec![Default::default(); 3]), false));
        assert_eq!(queued.load(Ordering::Relaxed), 1);
        drop(rx);
        // Gone: counted, and said.
        assert!(!out.send(events(vec![ev(hook::TC_EGRESS)]), true));
        assert_eq!(queued.load(Ordering::Relaxed), 1);
        let lost = out.close();
        assert_eq!(lost.events[usize::from(hook::XDP)], 1);
        assert_eq!(lost.events[usize::from(hook::TC_INGRESS)], 1);
        assert_eq!(lost.events[usize::from(hook::TC_EGRESS)], 1);
        assert_eq!(lost.events.iter().sum::<u64>(), 3);
        assert_eq!(lost.stamps, 3);
    }
}
