//! ICMP echo (ping) from inside a namespace, without the `ping` tool.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::netns::run_in;

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one ICMP echo request from namespace `ns` to `dst` (raw socket:
/// needs root) and returns the round-trip time of its reply, or an error
/// after `timeout`.
pub fn ping(ns: &str, dst: Ipv4Addr, timeout: Duration) -> std::io::Result<Duration> {
    let fd = run_in(ns, || {
        // SAFETY: plain socket(2); the fd is owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fresh valid fd.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    })??;
    let sock = std::net::UdpSocket::from(fd); // only for its timeout and recv helpers
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let id = (std::process::id() as u16) ^ 0x6e6c;
    let mut req = [8u8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1, b'n', b'e', b't', b'l', b'a', b't', 0, 0];
    let c = checksum(&req);
    req[2..4].copy_from_slice(&c.to_be_bytes());
    let sa = SocketAddrV4::new(dst, 0);
    let t = Instant::now();
    sock.send_to(&req, sa)?;
    let mut buf = [0u8; 1500];
    while t.elapsed() < timeout {
        let Ok((n, from)) = sock.recv_from(&mut buf) else { continue };
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let icmp = &buf[ihl.min(n)..n];
        if from.ip() == std::net::IpAddr::V4(dst) && icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == req[4..6] {
            return Ok(t.elapsed());
        }
    }
    let _ = sock.as_raw_fd();
    Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no echo reply from {dst} in {timeout:?}")))
}
