//! Topologies of network namespaces; removed when dropped.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicU32, Ordering},
};

use xshell::{cmd, Shell};

/// A host of the lab: a network namespace with one interface.
#[derive(Clone, Debug)]
pub struct Host {
    /// Namespace name (under /run/netns).
    pub netns: String,
    /// Its interface towards the lab.
    pub iface: String,
    /// Its address.
    pub addr: Ipv4Addr,
}

/// A running topology. Dropping it deletes its namespaces (and with them
/// their interfaces), also when a test panics.
pub struct Lab {
    /// The hosts.
    pub hosts: Vec<Host>,
    namespaces: Vec<String>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Next topology number of this process (namespace names `nl<pid>x<n><host>`).
pub(crate) fn next_seq() -> u32 {
    SEQ.fetch_add(1, Ordering::SeqCst)
}

/// Prefix shared by every namespace of this process.
pub fn prefix() -> String {
    format!("nl{}x", std::process::id())
}

fn new_netns(sh: &Shell, ns: &str, lab: &mut Lab) -> anyhow::Result<()> {
    cmd!(sh, "ip netns add {ns}").quiet().run()?;
    lab.namespaces.push(ns.to_owned());
    cmd!(sh, "ip -n {ns} link set lo up").quiet().run()?;
    // No IPv6 autoconfiguration chatter (DAD, MLD from `::`): such
    // packets are identical from every host and only blur results.
    for key in ["all", "default"] {
        let set = format!("net.ipv6.conf.{key}.disable_ipv6=1");
        cmd!(sh, "ip netns exec {ns} sysctl -qw {set}").quiet().run()?;
    }
    Ok(())
}

impl Lab {
    /// Hosts named `names` (at most 200) on one switch: each host's `veth0`
    /// is plugged into a bridge in a namespace of its own, host `i` has
    /// address 198.18.0.(i+1)/24.
    pub fn star(names: &[&str]) -> anyhow::Result<Self> {
        anyhow::ensure!(!names.is_empty() && names.len() <= 200, "1 to 200 hosts");
        let sh = Shell::new()?;
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let mut lab = Self { hosts: Vec::new(), namespaces: Vec::new() };
        let sw = format!("{}{n}sw", prefix());
        new_netns(&sh, &sw, &mut lab)?;
        cmd!(sh, "ip -n {sw} link add br0 type bridge").quiet().run()?;
        cmd!(sh, "ip -n {sw} link set br0 up").quiet().run()?;
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{}{n}{name}", prefix());
            new_netns(&sh, &ns, &mut lab)?;
            let port = format!("p{i}");
            cmd!(sh, "ip link add veth0 netns {ns} type veth peer name {port} netns {sw}").quiet().run()?;
            cmd!(sh, "ip -n {sw} link set {port} master br0").quiet().run()?;
            cmd!(sh, "ip -n {sw} link set {port} up").quiet().run()?;
            let ip = Ipv4Addr::new(198, 18, 0, i as u8 + 1);
            let cidr = format!("{ip}/24");
            cmd!(sh, "ip -n {ns} addr add {cidr} dev veth0").quiet().run()?;
            cmd!(sh, "ip -n {ns} link set veth0 up").quiet().run()?;
            lab.hosts.push(Host { netns: ns, iface: "veth0".into(), addr: ip });
        }
        Ok(lab)
    }

    /// Two hosts `a` (198.18.0.1) and `b` (198.18.0.2) joined by a veth
    /// pair, each end named `veth0` inside its namespace.
    pub fn two_hosts() -> anyhow::Result<Self> {
        let sh = Shell::new()?;
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let (a, b) = (format!("{}{n}a", prefix()), format!("{}{n}b", prefix()));
        let mut lab = Self { hosts: Vec::new(), namespaces: Vec::new() };
        for ns in [&a, &b] {
            new_netns(&sh, ns, &mut lab)?;
        }
        cmd!(sh, "ip link add veth0 netns {a} type veth peer name veth0 netns {b}").quiet().run()?;
        for (ns, ip) in [(&a, Ipv4Addr::new(198, 18, 0, 1)), (&b, Ipv4Addr::new(198, 18, 0, 2))] {
            let cidr = format!("{ip}/24");
            cmd!(sh, "ip -n {ns} addr add {cidr} dev veth0").quiet().run()?;
            cmd!(sh, "ip -n {ns} link set veth0 up").quiet().run()?;
            lab.hosts.push(Host { netns: ns.clone(), iface: "veth0".into(), addr: ip });
        }
        Ok(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(sh) = Shell::new() {
            for ns in self.namespaces.drain(..).rev() {
                let _ = cmd!(sh, "ip netns del {ns}").quiet().ignore_status().run();
            }
        }
    }
}

/// Deletes lab namespaces left by processes that no longer exist (a run
/// killed with SIGKILL cannot clean up after itself).
pub fn cleanup_stale() -> anyhow::Result<Vec<String>> {
    let sh = Shell::new()?;
    let list = cmd!(sh, "ip netns list").quiet().read()?;
    let mut removed = Vec::new();
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("nl") else { continue };
        let Some((pid, _)) = rest.split_once('x') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            cmd!(sh, "ip netns del {name}").quiet().ignore_status().run()?;
            removed.push(name.to_owned());
        }
    }
    Ok(removed)
}
