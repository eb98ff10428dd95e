//! Network namespaces: naming them on the command line and running code
//! inside them.
//!
//! `-i IFACE` is an interface of the capture's own namespace;
//! `-i NETNS/IFACE` one inside another namespace, where `NETNS` is a name
//! under `/run/netns` (as `ip netns` makes), `pid:PID` (a container's
//! process), or an absolute path to a namespace file. Attaching happens on
//! a short-lived thread that `setns`es into the namespace, so the capture
//! itself never leaves its own.

use std::{
    ffi::CString,
    fs::File,
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::PathBuf,
};

/// Errors about namespaces and interfaces.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened.
    #[error("network namespace {name:?} ({path}): {source}")]
    Open {
        /// Name as given.
        name: String,
        /// File tried.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `setns` failed.
    #[error("cannot enter network namespace {name:?}: {source}")]
    Enter {
        /// Name as given.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// No such interface in the namespace.
    #[error("no interface {iface:?} in network namespace {netns:?}")]
    NoInterface {
        /// Interface name.
        iface: String,
        /// Namespace name (`self` for the capture's own).
        netns: String,
    },
    /// Malformed `-i` argument.
    #[error("bad interface {0:?}: expected IFACE or NETNS/IFACE")]
    BadSpec(String),
}

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct Netns {
    /// Name as given (`self` for the capture's own namespace).
    pub name: String,
    /// Inode number: the namespace's identity in events and metadata.
    pub inode: u64,
    file: File,
    own: bool,
}

impl Netns {
    /// The namespace the capture runs in.
    pub fn current() -> Result<Self, NetnsError> {
        Self::open_path("self", PathBuf::from("/proc/self/ns/net"), true)
    }

    /// Opens a namespace by name (`/run/netns/NAME`), `pid:PID` or path.
    pub fn open(name: &str) -> Result<Self, NetnsError> {
        let path = if let Some(pid) = name.strip_prefix("pid:") {
            PathBuf::from(format!("/proc/{pid}/ns/net"))
        } else if name.starts_with('/') {
            PathBuf::from(name)
        } else {
            PathBuf::from("/run/netns").join(name)
        };
        let own = Self::current()?.inode;
        let mut ns = Self::open_path(name, path, false)?;
        ns.own = ns.inode == own;
        Ok(ns)
    }

    fn open_path(name: &str, path: PathBuf, own: bool) -> Result<Self, NetnsError> {
        let open = |path: &PathBuf| -> std::io::Result<(File, u64)> {
            let f = File::open(path)?;
            let ino = f.metadata()?.ino();
            Ok((f, ino))
        };
        let (file, inode) =
            open(&path).map_err(|source| NetnsError::Open { name: name.to_owned(), path: path.clone(), source })?;
        Ok(Self { name: name.to_owned(), inode, file, own })
    }

    /// True for the capture's own namespace.
    pub fn is_own(&self) -> bool {
        self.own
    }

    /// Runs `f` on a thread inside this namespace (directly, for our own).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T, NetnsError> {
        if self.own {
            return Ok(f());
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: setns on this thread only; the fd stays open for the call.
                if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(NetnsError::Enter { name: self.name.clone(), source: std::io::Error::last_os_error() });
                }
                Ok(f())
            })
            .join()
            .expect("netns thread panicked")
        })
    }

    /// Interface index of `iface` inside this namespace.
    pub fn ifindex(&self, iface: &str) -> Result<u32, NetnsError> {
        let c = CString::new(iface).map_err(|_| NetnsError::BadSpec(iface.to_owned()))?;
        // SAFETY: valid C string.
        let idx = self.run(|| unsafe { libc::if_nametoindex(c.as_ptr()) })?;
        if idx == 0 {
            return Err(NetnsError::NoInterface { iface: iface.to_owned(), netns: self.name.clone() });
        }
        Ok(idx)
    }

    /// Every interface of the namespace: (index, name).
    pub fn interfaces(&self) -> Result<Vec<(u32, String)>, NetnsError> {
        self.run(|| {
            let mut out = Vec::new();
            // SAFETY: if_nameindex returns an array ended by a zero entry, or NULL; freed below.
            unsafe {
                let list = libc::if_nameindex();
                if list.is_null() {
                    return out;
                }
                let mut p = list;
                while (*p).if_index != 0 && !(*p).if_name.is_null() {
                    let name = std::ffi::CStr::from_ptr((*p).if_name).to_string_lossy().into_owned();
                    out.push(((*p).if_index, name));
                    p = p.add(1);
                }
                libc::if_freenameindex(list);
            }
            out
        })
    }
}

/// One `-i` argument, split into namespace and interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceSpec {
    /// Namespace name, `None` for the capture's own.
    pub netns: Option<String>,
    /// Interface name.
    pub iface: String,
}

impl IfaceSpec {
    /// Parses `IFACE` or `NETNS/IFACE` (the interface is after the last `/`).
    pub fn parse(s: &str) -> Result<Self, NetnsError> {
        let (netns, iface) = match s.rsplit_once('/') {
            Some((ns, iface)) => (Some(ns.to_owned()), iface),
            None => (None, s),
        };
        // Linux interface names: 1..=15 bytes, no '/', no whitespace.
        if iface.is_empty() || iface.len() > 15 || iface.contains(char::is_whitespace) {
            return Err(NetnsError::BadSpec(s.to_owned()));
        }
        if netns.as_deref() == Some("") {
            return Err(NetnsError::BadSpec(s.to_owned()));
        }
        Ok(Self { netns, iface: iface.to_owned() })
    }

    /// The name written into the `ifname` column.
    pub fn display(&self) -> String {
        match &self.netns {
            Some(ns) => format!("{ns}/{}", self.iface),
            None => self.iface.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_specs() {
        assert_eq!(IfaceSpec::parse("eth0").unwrap(), IfaceSpec { netns: None, iface: "eth0".into() });
        let s = IfaceSpec::parse("ns1/veth0").unwrap();
        assert_eq!((s.netns.as_deref(), s.iface.as_str()), (Some("ns1"), "veth0"));
        let s = IfaceSpec::parse("/proc/1/ns/net/eth0").unwrap();
        assert_eq!(s.netns.as_deref(), Some("/proc/1/ns/net"));
        assert_eq!(IfaceSpec::parse("pid:42/eth0").unwrap().display(), "pid:42/eth0");
        for bad in ["", "ns/", "/", "a b", "waytoolonginterfacename"] {
            assert!(IfaceSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn own_namespace_runs_inline() {
        let ns = Netns::current().unwrap();
        assert!(ns.is_own());
        assert_eq!(ns.run(|| 5).unwrap(), 5);
        assert!(ns.ifindex("lo").unwrap() >= 1);
        assert!(matches!(ns.ifindex("nosuchif0"), Err(NetnsError::NoInterface { .. })));
    }
}
