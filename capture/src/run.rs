//! One capture run: load and attach, stream events from the kernel ring
//! buffers to the Parquet writer, stop on a signal or `--duration`, and
//! account for every selected packet.
//!
//! Threads: the calling thread polls the ring buffers and batches events;
//! a writer thread turns batches into Parquet. They are joined by a bounded
//! queue: when the writer falls behind, batches are dropped *and counted*
//! (`userspace_dropped`) rather than growing memory without bound.

use std::{
    collections::BTreeMap,
    io::IsTerminal as _,
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use capture_common::abi::{hook, CaptureConfig};
use parquet::file::metadata::KeyValue;
use sync::sim::SimClock;

use crate::{
    loader::{Hooks, LoadError, Points, Scope},
    meta::{HookCounts, RunMeta, SyncMeta},
    netns::{IfaceSpec, Netns},
    pipeline::{writer_thread, Batch, Reader, Rings, Tally, ToWriter, BATCH},
    priority::WriterPriority,
    ring::{RingConfig, RingError, RingWriter},
    schema::{self, SCHEMA_VERSION},
    sync_table,
    syncing::{SyncOptions, SyncRunner},
};

/// Longest an event waits in a partial batch.
const BATCH_AGE: Duration = Duration::from_millis(200);

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Interfaces to attach to.
    pub ifaces: Vec<IfaceSpec>,
    /// Hooks to attach.
    pub hooks: Hooks,
    /// Kernel-side configuration (filter, sampling, ports).
    pub kernel: CaptureConfig,
    /// Ring buffer bytes per namespace.
    pub ringbuf_bytes: u32,
    /// Output folder.
    pub dir: PathBuf,
    /// Rotate at this many bytes.
    pub file_bytes: u64,
    /// Rotate at this age.
    pub file_age: Duration,
    /// Keep at most this many files (0: all).
    pub max_files: u32,
    /// Flush rows as a row group, recoverable after a crash, at least this often.
    pub flush_every: Duration,
    /// How TC programs are attached.
    pub tc_attach: crate::loader::TcAttach,
    /// With `udp_recv`, attach UDP's ingress program (docs/probes.md); off, as where there
    /// is no cgroup v2, reads are not identified (a test aid).
    pub udp_ingress: bool,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Host name for files and the `host` column.
    pub host: String,
    /// Batches the writer queue holds before dropping.
    pub queue_batches: usize,
    /// Test aid: the writer sleeps this long after each events batch.
    pub writer_delay: Duration,
    /// The capture's nice value.
    pub nice: i32,
    /// The writer thread's nice value while it keeps up (see [`crate::priority`]).
    pub writer_nice: i32,
    /// Print the live status line (TTY) and the summary.
    pub quiet: bool,
    /// Touch this file once attached (for scripts).
    pub ready_file: Option<PathBuf>,
    /// Command line and effective settings, for the metadata.
    pub argv: Vec<String>,
    /// Effective configuration, for the metadata.
    pub config: BTreeMap<String, String>,
    /// Clock sync (`None`: off).
    pub sync: Option<SyncOptions>,
    /// Synthetic clock errors (a test aid); `ref_ns` is set at the start.
    pub sim_clock: Option<SimClock>,
    /// Probes of the `--layers` preset with their availability on this kernel (recorded
    /// in the metadata).
    pub probes: Vec<crate::probes::ProbeMeta>,
    /// The probes given as data (fentry, kprobe, other tracepoints) to load, by slot.
    pub funcs: crate::funcs::Plan,
}

impl Options {
    /// Names of the hooks recorded: netlat's own, then the probes given as data.
    pub fn hook_names(&self) -> Vec<String> {
        self.hooks.names().into_iter().chain(self.funcs.probes.iter().map(|p| p.name.clone())).collect()
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Output folder unusable (checked before loading anything).
    #[error("output folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Kernel side.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Writing files.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Reading the ring buffer.
    #[error("polling the ring buffers: {0}")]
    Poll(std::io::Error),
    /// Clock sync could not start (e.g. its port is taken).
    #[error("{0}")]
    Sync(String),
}

/// What a finished run reports.
#[derive(Debug)]
pub struct Summary {
    /// Counters per hook name.
    pub counts: BTreeMap<String, HookCounts>,
    /// Finished files.
    pub files: Vec<PathBuf>,
    /// The metadata file.
    pub meta: PathBuf,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signals() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
    // A closed pipe (ssh gone) must not kill us before files are closed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

fn check_folder(dir: &PathBuf) -> Result<(), RunError> {
    let err = |source| RunError::Folder { path: dir.clone(), source };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".netlat-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(err)?;
    std::fs::remove_file(&probe).map_err(err)
}

/// `YYYYmmddTHHMMSSZ-<pid>` for now.
fn run_id() -> String {
    let secs = sync::clock::realtime_ns().div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z-{}", rem / 3600, rem / 60 % 60, rem % 60, std::process::id())
}

fn kv(opts: &Options, run_id: &str, table: &str) -> Vec<KeyValue> {
    let mut kv = vec![
        KeyValue::new("netlat.schema_version".into(), SCHEMA_VERSION.to_string()),
        KeyValue::new("netlat.table".into(), table.to_owned()),
        KeyValue::new("netlat.host".into(), opts.host.clone()),
        KeyValue::new("netlat.run_id".into(), run_id.to_owned()),
        KeyValue::new("netlat.clock".into(), "CLOCK_MONOTONIC".to_owned()),
    ];
    if let Some(sim) = &opts.sim_clock {
        kv.push(KeyValue::new("netlat.sim_clock".into(), serde_json::to_string(sim).expect("serializable")));
    }
    kv
}

/// Runs a capture to its end.
pub fn run(mut opts: Options) -> Result<Summary, RunError> {
    STOP.store(false, Ordering::SeqCst);
    check_folder(&opts.dir)?;
    // Files an earlier capture into this folder left open when it died
    // (those of captures still running are locked and left alone).
    match crate::recover::recover_dir(&opts.dir) {
        Ok(reports) => reports
            .iter()
            .filter(|r| !matches!(r.outcome, Ok(crate::recover::Outcome::InUse)))
            .for_each(|r| eprintln!("netlat-capture: {r}")),
        Err(e) => eprintln!("netlat-capture: warning: looking for unfinished files in {}: {e}", opts.dir.display()),
    }
    let run_id = run_id();
    let prefix = format!("{}-{run_id}", opts.host);
    opts.kernel.sync_port = opts.sync.as_ref().map_or(0, |s| s.port);

    // One scope per namespace, in order of first mention.
    let mut scopes: Vec<Scope> = Vec::new();
    for spec in &opts.ifaces {
        let ns = match &spec.netns {
            Some(name) => Netns::open(name).map_err(LoadError::from)?,
            None => Netns::current().map_err(LoadError::from)?,
        };
        ns.ifindex(&spec.iface).map_err(LoadError::from)?;
        let idx = match scopes.iter().position(|s| s.netns.inode == ns.inode) {
            Some(i) => i,
            None => {
                let scope = Scope::load(
                    ns,
                    &opts.kernel,
                    opts.ringbuf_bytes,
                    opts.hooks.tracepoints,
                    &opts.funcs,
                    opts.udp_ingress,
                )?;
                for w in &scope.warnings {
                    eprintln!("{w}");
                }
                scopes.push(scope);
                scopes.len() - 1
            }
        };
        scopes[idx].attach(spec, opts.hooks, opts.tc_attach)?;
    }

    // Timestamps are distorted from here on; the truth is kept in the metadata.
    if let Some(sim) = &mut opts.sim_clock {
        sim.ref_ns = sync::clock::monotonic_ns();
    }
    let sim = opts.sim_clock;
    let sim_mapping = |mut m: sync::clock::MonoToRealtime| {
        if let Some(sim) = &sim {
            let distorted = sim.apply(m.mono_ns);
            m.offset_ns -= distorted - m.mono_ns;
            m.mono_ns = distorted;
        }
        m
    };

    let mut sync_meta = SyncMeta::default();
    let mut prober = None;
    if let Some(so) = &opts.sync {
        sync_meta.port = so.port;
        sync_meta.netns = scopes[0].netns.name.clone();
        sync_meta.peers = so.peers.iter().map(ToString::to_string).collect();
        sync_meta.rate = so.rate;
        sync_meta.gap_us = so.gap.as_micros() as u64;
        // The run's end, as `--duration` will stop it (its clock starts just below).
        let so = &SyncOptions { end: opts.duration.map(|d| Instant::now() + d), ..so.clone() };
        match SyncRunner::start(so, &scopes[0].netns).map_err(RunError::Sync)? {
            Ok(p) => prober = Some(p),
            Err(why) => {
                eprintln!("netlat-capture: warning: clock-sync responder off: {why}");
                sync_meta.responder_error = Some(why);
            }
        }
    }
    install_signals();

    let mut meta = RunMeta {
        schema_version: SCHEMA_VERSION,
        netlat_version: env!("CARGO_PKG_VERSION").into(),
        status: "running".into(),
        error: None,
        host: opts.host.clone(),
        run_id: run_id.clone(),
        kernel: crate::meta::kernel_release(),
        argv: opts.argv.clone(),
        config: opts.config.clone(),
        interfaces: scopes.iter().flat_map(|s| s.ifaces.clone()).collect(),
        clock_source: "CLOCK_MONOTONIC (bpf_ktime_get_ns)".into(),
        clock_start: sim_mapping(sync::clock::mono_to_realtime(100)),
        clock_end: None,
        started_realtime_ns: sync::clock::realtime_ns(),
        ended_realtime_ns: None,
        counts: BTreeMap::new(),
        writer_urgent: 0,
        files: Vec::new(),
        files_deleted: Vec::new(),
        sync: sync_meta,
        sim_clock: opts.sim_clock,
        probes: std::mem::take(&mut opts.probes),
    };
    meta.store(&opts.dir, &prefix)?;

    let ring_cfg = |table: &'static str, max_files: u32| RingConfig {
        dir: opts.dir.clone(),
        prefix: prefix.clone(),
        table,
        max_bytes: opts.file_bytes,
        max_age: opts.file_age,
        max_files,
        flush_every: opts.flush_every,
    };
    // The hooks inside the stack add thread, cgroup and drop columns (packets there have
    // their socket's cgroup).
    let extra = opts.hooks.tracepoints != 0 || !opts.funcs.probes.is_empty();
    let rings = Rings {
        events: RingWriter::new(
            ring_cfg("events", opts.max_files),
            schema::events_schema(opts.kernel.snaplen > 0, extra),
            kv(&opts, &run_id, "events"),
        ),
        // Sync files are small and every one of them is needed to align the
        // events that are kept: the ring limit does not apply.
        sync: RingWriter::new(ring_cfg("sync", 0), sync_table::sync_schema(), kv(&opts, &run_id, "sync")),
    };
    let (tx, rx) = mpsc::sync_channel::<Batch>(opts.queue_batches.max(1));
    let tally = Arc::new(Tally::default());
    let writer = {
        let (host, points, tally, delay) =
            (opts.host.clone(), Points::of(&scopes, opts.funcs.hook_names()), tally.clone(), opts.writer_delay);
        let snap = opts.kernel.snaplen > 0;
        let prio = WriterPriority::new(opts.writer_nice, opts.nice, opts.queue_batches.max(1));
        // The ready line waits for the thread to run: by then it has its name and priority
        // (a busy host may not schedule a new thread for a while).
        let (started, running) = mpsc::sync_channel::<()>(1);
        let writer = std::thread::Builder::new()
            .name("netlat-writer".into())
            .spawn(move || {
                let mut prio = prio;
                prio.start();
                let _ = started.send(());
                writer_thread(rings, host, points, rx, tally, (delay, prio), (snap, extra))
            })
            .expect("spawn writer");
        let _ = running.recv();
        writer
    };

    let names: Vec<String> = scopes.iter().flat_map(|s| s.ifaces.iter().map(|i| i.ifname.clone())).collect();
    eprintln!(
        "netlat-capture: ready: {} on {} ({}), writing {}/{prefix}-*.events.parquet",
        run_id,
        names.join(", "),
        opts.hook_names().join(", "),
        opts.dir.display()
    );
    if let Some(f) = &opts.ready_file {
        let _ = std::fs::write(f, format!("{run_id}\n"));
    }

    let mut out = ToWriter::new(tx, &tally.queued);
    let mut reader = Reader {
        events: Vec::with_capacity(BATCH),
        heads: Vec::new(),
        snap: opts.kernel.snaplen > 0,
        extras: Vec::new(),
        extra,
        stamps: Vec::new(),
        sim,
    };
    let take_events = |r: &mut Reader| {
        Batch::Events(
            std::mem::replace(&mut r.events, Vec::with_capacity(BATCH)),
            std::mem::take(&mut r.heads),
            std::mem::take(&mut r.extras),
        )
    };
    let take_stamps = |r: &mut Reader| Batch::Sync(std::mem::take(&mut r.stamps));
    let mut batch_started = Instant::now();
    let start = Instant::now();
    let live = !opts.quiet && std::io::stderr().is_terminal();
    let mut last_live = (Instant::now(), 0u64);
    let mut poll_err = None;
    let mut writer_alive = true;
    while !STOP.load(Ordering::SeqCst) && writer_alive {
        if opts.duration.is_some_and(|d| start.elapsed() >= d) {
            break;
        }
        let mut fds: Vec<libc::pollfd> = scopes
            .iter()
            .flat_map(|s| [s.ring.as_raw_fd(), s.sync_ring.as_raw_fd()])
            .map(|fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 })
            .collect();
        // SAFETY: fds is a valid array of pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 100) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                poll_err = Some(e);
                break;
            }
        }
        loop {
            reader.drain(&mut scopes);
            if reader.events.len() >= BATCH {
                batch_started = Instant::now();
                writer_alive = out.send(take_events(&mut reader), false);
            } else {
                break;
            }
        }
        if batch_started.elapsed() >= BATCH_AGE {
            batch_started = Instant::now();
            writer_alive &= out.send(take_events(&mut reader), false);
            writer_alive &= out.send(take_stamps(&mut reader), false);
        }
        if live && last_live.0.elapsed() >= Duration::from_secs(1) {
            let written: u64 = tally.written.iter().map(|a| a.load(Ordering::Relaxed)).sum();
            let kernel: u64 =
                scopes.iter().filter_map(|s| s.counts().ok()).flat_map(|c| c.into_iter().map(|h| h.ringbuf_full)).sum();
            let rate = (written - last_live.1) as f64 / last_live.0.elapsed().as_secs_f64();
            eprint!(
                "\r\x1b[Knetlat-capture: {:>6.0}s  {rate:>10.0} events/s  {written} written  {} files  {} sync stamps  drops: {kernel} kernel, {} user",
                start.elapsed().as_secs_f64(),
                tally.files.load(Ordering::Relaxed),
                tally.sync_written.load(Ordering::Relaxed),
                out.lost.events.iter().sum::<u64>()
            );
            last_live = (Instant::now(), written);
        }
    }
    if live {
        eprintln!();
    }

    // Stop probing, then detach so no new events arrive, give in-flight
    // programs a moment, then drain what is left: the counters are final.
    let prober_stats = prober.and_then(SyncRunner::finish);
    std::thread::sleep(Duration::from_millis(20));
    for s in &mut scopes {
        s.detach();
    }
    std::thread::sleep(Duration::from_millis(50));
    while reader.drain(&mut scopes) > 0 {
        if reader.events.len() >= BATCH {
            out.send(take_events(&mut reader), true);
        }
    }
    out.send(take_events(&mut reader), true);
    out.send(take_stamps(&mut reader), true);
    let lost = out.close();
    let (rings, write_result) = writer.join().expect("writer thread panicked");

    let mut counts = BTreeMap::new();
    let mut per_hook = vec![HookCounts::default(); hook::COUNT];
    for s in &scopes {
        for (h, c) in s.counts()?.into_iter().enumerate() {
            let t = &mut per_hook[h];
            t.seen += c.seen;
            t.selected += c.selected;
            t.submitted += c.submitted;
            t.ringbuf_full += c.ringbuf_full;
            t.not_ip += c.not_ip;
            t.malformed += c.malformed;
            t.sync += c.sync;
            t.sync_lost += c.sync_lost;
            t.unidentified += c.unidentified;
        }
    }
    let names = opts.funcs.hook_names();
    let used = opts.funcs.mask();
    for (h, mut c) in per_hook.into_iter().enumerate() {
        // Slots not in use are left out.
        if hook::is_func(h as u8) && used & 1 << h == 0 {
            continue;
        }
        c.userspace_dropped = lost.events[h];
        c.written = tally.written[h].load(Ordering::Relaxed);
        counts.insert(names[h].clone(), c);
    }
    let files: Vec<PathBuf> = rings.events.finished().cloned().collect();
    let name = |p: &PathBuf| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    meta.files = files.iter().map(name).collect();
    meta.files_deleted = rings.events.deleted.iter().map(name).collect();
    meta.sync.files = rings.sync.finished().map(name).collect();
    meta.sync.stamps_written = tally.sync_written.load(Ordering::Relaxed);
    meta.writer_urgent = tally.writer_urgent.load(Ordering::Relaxed);
    meta.sync.stamps_dropped = lost.stamps;
    meta.sync.prober = prober_stats;
    meta.counts = counts.clone();
    meta.clock_end = Some(sim_mapping(sync::clock::mono_to_realtime(100)));
    meta.ended_realtime_ns = Some(sync::clock::realtime_ns());
    let failure = match (&write_result, &poll_err) {
        (Err(e), _) => Some(e.to_string()),
        (_, Some(e)) => Some(format!("polling the ring buffers: {e}")),
        _ => None,
    };
    meta.status = if failure.is_some() { "failed" } else { "finished" }.into();
    meta.error = failure;
    // The metadata must be stored even after a write error (it may still fit).
    let stored = meta.store(&opts.dir, &prefix);
    write_result?;
    if let Some(e) = poll_err {
        return Err(RunError::Poll(e));
    }
    stored?;
    Ok(Summary { counts, files, meta: RunMeta::path(&opts.dir, &prefix) })
}
