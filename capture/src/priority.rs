//! The writer thread's scheduling priority.
//!
//! The writer compresses a batch of 16k events at a time (~2.5 ms of CPU on
//! the project machine). At the priority of the host's own work those bursts
//! delayed sockperf's replies (p99.9 +33% to +115% in BENCHMARKS.md), so while
//! the writer keeps up it runs at a *relaxed* nice value, 10 above the
//! capture's by default: the host's work preempts it, and the queue in front
//! of it absorbs the wait. Under CPU contention a relaxed writer gets a tenth
//! of a busy task's share and falls behind; once its queue is a quarter full
//! it goes back to the capture's own (*urgent*) value, so that what it holds is
//! written rather than dropped, and relaxes again once the queue is drained.

use std::sync::atomic::{AtomicUsize, Ordering};

/// This thread's nice value (0 if it cannot be read).
pub fn own_nice() -> i32 {
    // getpriority may return -1 as a value: errno tells an error apart.
    // SAFETY: errno is thread-local; getpriority on this thread, no pointers.
    unsafe {
        *libc::__errno_location() = 0;
        let n = libc::getpriority(libc::PRIO_PROCESS as _, 0);
        if *libc::__errno_location() == 0 {
            n
        } else {
            0
        }
    }
}

/// Sets the nice value of the calling thread (threads it starts later inherit it).
pub fn set_own_nice(n: i32) -> std::io::Result<()> {
    // SAFETY: setpriority on this thread (who 0 is the calling thread); no pointers.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS as _, 0, n) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The writer's nice values and its queue's fill.
#[derive(Debug)]
pub struct WriterPriority {
    /// While the writer keeps up.
    relaxed: i32,
    /// While its queue is backed up (the capture's own value).
    urgent: i32,
    /// Queue depth, in batches, at which the writer turns urgent.
    high: usize,
    /// The value in force (`None` before [`WriterPriority::start`]).
    current: Option<i32>,
    /// Whether a failure was already reported.
    warned: bool,
}

impl WriterPriority {
    /// For a queue of `capacity` batches.
    pub fn new(relaxed: i32, urgent: i32, capacity: usize) -> Self {
        Self { relaxed, urgent, high: (capacity / 4).max(1), current: None, warned: false }
    }

    /// Call on the writer thread before it writes: sets the relaxed value.
    pub fn start(&mut self) {
        self.set(self.relaxed);
    }

    /// The value to use when the writer found `depth` batches in its queue (the
    /// one it takes included), from the one in force: urgent from a quarter of the
    /// queue up, relaxed again once it finds only the one it takes (in between it
    /// stays, so that it does not flap).
    pub fn wanted(&self, depth: usize) -> i32 {
        let now = self.current.unwrap_or(self.relaxed);
        if depth >= self.high {
            self.urgent
        } else if depth <= 1 {
            self.relaxed
        } else {
            now
        }
    }

    /// Call on taking a batch off the queue: takes it off the count of `queued`
    /// batches and sets the value for the fill found; true if the writer turned
    /// urgent (counted in the run's record).
    pub fn update(&mut self, queued: &AtomicUsize) -> bool {
        // Saturating: a batch sent past the count (unit tests) must not wrap it.
        let found = queued.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |q| Some(q.saturating_sub(1)));
        let want = self.wanted(found.unwrap_or(0));
        if self.current == Some(want) {
            return false;
        }
        self.set(want);
        want == self.urgent && self.urgent != self.relaxed
    }

    fn set(&mut self, n: i32) {
        // Recorded even if refused, so it is not retried per batch; raising the priority
        // back needs CAP_SYS_NICE (or RLIMIT_NICE), which a capture loading eBPF as root has.
        self.current = Some(n);
        if let Err(e) = set_own_nice(n) {
            if !self.warned {
                self.warned = true;
                eprintln!("netlat-capture: writer thread at nice {n}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgent_from_a_quarter_of_the_queue_relaxed_again_when_drained() {
        let mut p = WriterPriority::new(10, 0, 64);
        p.current = Some(10);
        assert_eq!(p.wanted(1), 10);
        assert_eq!(p.wanted(15), 10);
        assert_eq!(p.wanted(16), 0);
        p.current = Some(0);
        // Between the marks the value in force stays.
        assert_eq!(p.wanted(8), 0);
        assert_eq!(p.wanted(2), 0);
        assert_eq!(p.wanted(1), 10);
        // A queue of one batch (a test aid) is full whenever the writer finds a batch.
        let q = WriterPriority::new(10, 0, 1);
        assert_eq!(q.wanted(1), 0);
    }

    #[test]
    fn the_thread_takes_the_values() {
        // Runs on its own thread so the test harness's threads keep their value.
        std::thread::spawn(|| {
            let base = own_nice();
            let relaxed = (base + 5).min(19);
            let mut p = WriterPriority::new(relaxed, base, 16);
            p.start();
            assert_eq!(own_nice(), relaxed);
            let queued = AtomicUsize::new(3);
            assert!(!p.update(&queued));
            assert_eq!(queued.load(Ordering::Relaxed), 2, "the batch taken is off the count");
            assert_eq!(own_nice(), relaxed, "below the mark");
            queued.store(4, Ordering::Relaxed);
            assert!(p.update(&queued), "turned urgent");
            queued.store(4, Ordering::Relaxed);
            assert!(!p.update(&queued), "already urgent");
            assert_eq!(p.current, Some(base));
            // Back to the base value needs CAP_SYS_NICE: the tests run as root in CI.
            // SAFETY: geteuid has no arguments.
            if unsafe { libc::geteuid() } == 0 {
                assert_eq!(own_nice(), base);
            }
        })
        .join()
        .unwrap();
    }
}
