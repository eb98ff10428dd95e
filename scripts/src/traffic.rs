//! Traffic with known content and timing.
//!
//! UDP payloads start with a big-endian sequence number, so each datagram
//! has its own packet identity and tests can tell exactly which ones were
//! seen where.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::netns::run_in;

/// Sends `count` UDP datagrams of `size` bytes (>= 8) from namespace `ns` to
/// `dst`, paced at `rate` per second (0: as fast as possible). Datagram `i`
/// carries `i` in its first 8 bytes. Returns the send duration.
pub fn udp_send(ns: &str, dst: SocketAddrV4, count: u64, rate: u64, size: usize) -> std::io::Result<Duration> {
    let sock = run_in(ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    sock.connect(dst)?;
    send_numbered(count, rate, size, pace_until, |buf| until_sent(|| sock.send(buf)))
}

/// [`udp_send`] from a sender that paces itself by busy-waiting, never sleeping: one core
/// at 100 %, as many real senders (DPDK-style, spin-polling) are.
pub fn udp_send_spinning(ns: &str, dst: SocketAddrV4, count: u64, rate: u64, size: usize) -> std::io::Result<Duration> {
    let sock = run_in(ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    sock.connect(dst)?;
    let spin = |due: Instant| {
        while Instant::now() < due {
            std::hint::spin_loop();
        }
    };
    send_numbered(count, rate, size, spin, |buf| until_sent(|| sock.send(buf)))
}

/// Busy loops on every CPU until dropped: the load of a busy machine.
pub struct BusyLoops {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl BusyLoops {
    /// One spinning thread per CPU.
    pub fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends `count` numbered datagrams of `size` bytes (>= 8) through `send`,
/// paced at `rate` per second (0: as fast as possible): datagram `i` carries
/// `i` in its first 8 bytes. Returns the send duration.
fn send_numbered(
    count: u64,
    rate: u64,
    size: usize,
    pace: impl Fn(Instant),
    mut send: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<Duration> {
    let mut buf = vec![0xA5u8; size.max(8)];
    let start = Instant::now();
    for i in 0..count {
        // rate 0: no pacing.
        if let Some(ns) = (i * 1_000_000_000).checked_div(rate) {
            pace(start + Duration::from_nanos(ns));
        }
        buf[..8].copy_from_slice(&i.to_be_bytes());
        send(&buf)?;
    }
    Ok(start.elapsed())
}

/// Retries `send` while the socket buffer is full: waits for the qdisc to
/// drain, never skips a datagram.
fn until_sent(mut send: impl FnMut() -> std::io::Result<usize>) -> std::io::Result<()> {
    loop {
        match send() {
            Ok(_) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sleeps most of the way, then spins: sleep alone overshoots by ~60 µs.
fn pace_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        let left = due - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(150));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// A UDP receiver in a namespace that records the sequence numbers it got.
pub struct UdpSink {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<std::io::Result<BTreeSet<u64>>>>,
}

impl UdpSink {
    /// Binds `addr` in namespace `ns` and starts receiving.
    pub fn start(ns: &str, addr: SocketAddrV4) -> std::io::Result<Self> {
        let sock = run_in(ns, || UdpSocket::bind(addr))??;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut got = BTreeSet::new();
            let mut buf = [0u8; 65536];
            while !stop2.load(Ordering::SeqCst) {
                match sock.recv(&mut buf) {
                    Ok(n) if n >= 8 => {
                        got.insert(u64::from_be_bytes(buf[..8].try_into().expect("8 bytes")));
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        });
        Ok(Self { stop, handle: Some(handle) })
    }

    /// Stops after a short grace period and returns what arrived.
    pub fn finish(mut self) -> std::io::Result<BTreeSet<u64>> {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().expect("running").join().expect("sink panicked")
    }
}

impl Drop for UdpSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// TCP request/response: the client in `client_ns` connects to a server it
/// starts in `server_ns` at `addr`, sends `count` messages of `size` bytes
/// with TCP_NODELAY, waits for each echo, and returns each round-trip time
/// as the client measured it.
pub fn tcp_ping_pong(
    client_ns: &str,
    server_ns: &str,
    addr: SocketAddrV4,
    count: usize,
    size: usize,
) -> std::io::Result<Vec<Duration>> {
    let listener = run_in(server_ns, || TcpListener::bind(addr))??;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = vec![0u8; size];
        loop {
            match s.read_exact(&mut buf) {
                Ok(()) => s.write_all(&buf)?,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    });
    let mut c = run_in(client_ns, || TcpStream::connect(addr))??;
    c.set_nodelay(true)?;
    let mut msg = vec![0x5Au8; size];
    let mut back = vec![0u8; size];
    let mut rtts = Vec::with_capacity(count);
    for i in 0..count {
        msg[..8.min(size)].copy_from_slice(&(i as u64).to_be_bytes()[..8.min(size)]);
        let t = Instant::now();
        c.write_all(&msg)?;
        c.read_exact(&mut back)?;
        rtts.push(t.elapsed());
        // Space the exchanges so segments are never coalesced.
        std::thread::sleep(Duration::from_micros(500));
    }
    drop(c);
    server.join().expect("server panicked")?;
    Ok(rtts)
}

/// Sends `count` UDP datagrams of `size` bytes (>= 8) from namespace `ns`
/// to each of `dsts` in turn (datagram `i` to every destination, then
/// `i + 1`), paced at `rate` rounds per second (0: as fast as possible).
/// The socket is not connected, so destinations without a receiver (ICMP
/// port unreachable) do not stop it. Returns the send duration.
pub fn udp_send_all(ns: &str, dsts: &[SocketAddrV4], count: u64, rate: u64, size: usize) -> std::io::Result<Duration> {
    let sock = run_in(ns, || UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))??;
    send_numbered(count, rate, size, pace_until, |buf| {
        dsts.iter().try_for_each(|dst| until_sent(|| sock.send_to(buf, dst)))
    })
}
