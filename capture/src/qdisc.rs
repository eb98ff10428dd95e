//! Removing the `clsact` qdisc the capture added for netlink TC attachment
//! (kernels before 6.6, or `--tc-netlink`). aya adds the qdisc but has no call
//! to delete it, so this sends the one netlink request `tc qdisc del dev X
//! clsact` sends.

use std::io;

const RTM_DELQDISC: u16 = 37;
const NLMSG_ERROR: u16 = 2;
const TCA_KIND: u16 = 1;
/// `TC_H_MAKE(TC_H_CLSACT, 0)`: the clsact qdisc's handle.
const CLSACT_HANDLE: u32 = 0xFFFF_0000;
/// `TC_H_CLSACT`: its parent.
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;

/// The request: `nlmsghdr`, `tcmsg`, and a `TCA_KIND` attribute "clsact".
fn request(ifindex: u32) -> Vec<u8> {
    let kind = b"clsact\0";
    let attr_len = 4 + kind.len();
    let total = 16 + 20 + attr_len.next_multiple_of(4);
    let mut m = Vec::with_capacity(total);
    m.extend_from_slice(&(total as u32).to_ne_bytes());
    m.extend_from_slice(&RTM_DELQDISC.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]); // family, padding
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    m.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // info
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&TCA_KIND.to_ne_bytes());
    m.extend_from_slice(kind);
    m.resize(total, 0);
    m
}

/// Deletes the `clsact` qdisc of interface `ifindex` in the calling thread's
/// network namespace (with every filter still on it).
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    // SAFETY: plain socket(2); the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let result = (|| {
        let req = request(ifindex);
        // SAFETY: the buffer is valid for its length.
        if unsafe { libc::send(fd, req.as_ptr().cast(), req.len(), 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: as above.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            if n < 20 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink reply"));
            }
            let ty = u16::from_ne_bytes([buf[4], buf[5]]);
            if ty != NLMSG_ERROR {
                continue;
            }
            let err = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            return if err == 0 { Ok(()) } else { Err(io::Error::from_raw_os_error(-err)) };
        }
    })();
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_is_what_tc_sends() {
        let r = super::request(7);
        assert_eq!(r.len(), 48);
        assert_eq!(u32::from_ne_bytes(r[0..4].try_into().unwrap()), 48);
        assert_eq!(i32::from_ne_bytes(r[20..24].try_into().unwrap()), 7);
        assert_eq!(&r[40..47], b"clsact\0");
    }
}
