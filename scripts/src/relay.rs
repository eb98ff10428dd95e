//! A user-space delay relay: a TUN device in a router namespace whose
//! packets are held for a known delay and written back, so the router
//! forwards them that much later. The ground truth of the lab's experiments.
//!
//! One thread reads packets (stamping each with its due time), one writes
//! them back in order when due (sleeping most of the way, then spinning:
//! the delay is accurate to a few µs, plus the wake-up of the reader).
//! With no delay the reader writes each packet back itself, so a packet's
//! time in the relay is the injected delay plus the same fixed cost at
//! every delay (reader wake-up, read, write).

use std::{
    fs::File,
    io::{Read as _, Write as _},
    os::fd::{AsRawFd, FromRawFd},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::run_in;

/// Sleeps until 300 µs before `due`, then spins: a long sleep can wake
/// late by more than the 150 µs the traffic pacer allows for.
fn wait_until(due: Instant) {
    let margin = Duration::from_micros(300);
    let now = Instant::now();
    if due > now + margin {
        std::thread::sleep(due - now - margin);
    }
    while Instant::now() < due {
        std::hint::spin_loop();
    }
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;

/// A running relay; dropping it stops the threads and removes the device.
pub struct Relay {
    stop: Arc<AtomicBool>,
    delay_ns: Arc<AtomicU64>,
    packets: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

/// Creates TUN device `ifname` inside namespace `netns` (not yet up).
fn open_tun(netns: &str, ifname: &str) -> anyhow::Result<File> {
    anyhow::ensure!(ifname.len() < 16, "interface name {ifname:?} too long");
    let name = ifname.to_owned();
    let fd = run_in(netns, move || -> std::io::Result<File> {
        // SAFETY: plain open(2); the fd is owned by the File below.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor.
        let file = unsafe { File::from_raw_fd(fd) };
        #[repr(C)]
        struct IfReq {
            name: [u8; 16],
            flags: libc::c_short,
            pad: [u8; 22],
        }
        let mut req = IfReq { name: [0; 16], flags: IFF_TUN | IFF_NO_PI, pad: [0; 22] };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads and writes one ifreq.
        if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(file)
    })??;
    Ok(fd)
}

impl Relay {
    /// Creates `ifname` in `netns` and starts relaying with `delay`. The
    /// caller brings the device up and routes through it.
    pub fn start(netns: &str, ifname: &str, delay: Duration) -> anyhow::Result<Self> {
        let tun = open_tun(netns, ifname)?;
        let mut writer = tun.try_clone()?;
        let mut direct = tun.try_clone()?;
        let mut reader = tun;
        let stop = Arc::new(AtomicBool::new(false));
        let delay_ns = Arc::new(AtomicU64::new(delay.as_nanos() as u64));
        let packets = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
        let (stop_r, delay_r, count_r) = (stop.clone(), delay_ns.clone(), packets.clone());
        let read = std::thread::Builder::new().name("relay-read".into()).spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop_r.load(Ordering::Relaxed) {
                let mut pfd = libc::pollfd { fd: reader.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 100) } <= 0 {
                    continue;
                }
                match reader.read(&mut buf) {
                    // No delay: written back at once by this thread, so the
                    // path costs what it costs with a delay (where the
                    // writer's wake-up hides inside the delay).
                    Ok(n) if n > 0 && delay_r.load(Ordering::Relaxed) == 0 => {
                        let _ = direct.write(&buf[..n]).map(|_| count_r.fetch_add(1, Ordering::Relaxed));
                    }
                    Ok(n) if n > 0 => {
                        let due = Instant::now() + Duration::from_nanos(delay_r.load(Ordering::Relaxed));
                        if tx.send((due, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    _ => {}
                }
            }
        })?;
        let (stop_w, count) = (stop.clone(), packets.clone());
        let write = std::thread::Builder::new().name("relay-write".into()).spawn(move || {
            // Timers of this thread fire on time (the default slack is 50 µs).
            // SAFETY: prctl on the calling thread, no pointers.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
            while !stop_w.load(Ordering::Relaxed) {
                let Ok((due, pkt)) = rx.recv_timeout(Duration::from_millis(100)) else { continue };
                wait_until(due);
                if writer.write(&pkt).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
        })?;
        Ok(Self { stop, delay_ns, packets, threads: vec![read, write] })
    }

    /// Changes the delay of packets read from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ns.store(delay.as_nanos() as u64, Ordering::Relaxed);
    }

    /// The current delay.
    pub fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_ns.load(Ordering::Relaxed))
    }

    /// Packets relayed so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
