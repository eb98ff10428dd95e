//! Named topologies from `conf/lab/*.yaml` ([`conf::lab`]), built out of
//! network namespaces and removed when dropped (and on SIGINT/SIGTERM
//! through [`crate::teardown`]).
//!
//! Namespaces are named `nl<pid>x<n><name>` (`<name>` from the file), the
//! pattern `netlat-lab cleanup` and `.ci/run` remove when left behind.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _};
use conf::lab::{Kind, Topology};

use crate::{relay::Relay, teardown, topo};

/// A host of a running topology (an endpoint of its traffic).
#[derive(Clone, Debug)]
pub struct Node {
    /// Name in the topology file.
    pub name: String,
    /// Its namespace (under /run/netns).
    pub netns: String,
    /// Its interface towards the lab.
    pub iface: String,
    /// Its address.
    pub addr: Ipv4Addr,
}

/// A running topology.
pub struct Running {
    /// What was built.
    pub topology: Topology,
    /// The endpoints, in file order.
    pub hosts: Vec<Node>,
    /// Every namespace by its name in the file (hosts, bridge, VMs, router).
    pub namespaces: Vec<(String, String)>,
    relay: Option<Relay>,
}

/// Folders searched for topology files: `conf/lab` under the working
/// directory, then the source tree's.
fn dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("conf/lab"), Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/lab")]
}

/// The file of topology `name` (or `name` itself when it is a file).
pub fn find(name: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(name);
    if p.is_file() {
        return Ok(p.to_owned());
    }
    for d in dirs() {
        let f = d.join(format!("{name}.yaml"));
        if f.is_file() {
            return Ok(f);
        }
    }
    bail!("no topology {name:?} (looked for {name}.yaml in conf/lab; `netlat-lab topologies` lists them)")
}

/// Every topology file of the first `conf/lab` folder found, sorted.
pub fn list() -> anyhow::Result<Vec<PathBuf>> {
    let dir = dirs().into_iter().find(|d| d.is_dir()).context("no conf/lab folder")?;
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    Ok(v)
}

/// Runs a command, failing with its stderr.
fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| args[0].to_owned())?;
    if !out.status.success() {
        bail!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// `ip ARGS` with ARGS split on spaces.
fn ip(args: &str) -> anyhow::Result<()> {
    let mut v = vec!["ip"];
    v.extend(args.split_whitespace());
    sh(&v)
}

/// `sysctl -qw KEY=VALUE...` inside `ns`.
fn sysctl(ns: &str, settings: &[&str]) -> anyhow::Result<()> {
    let mut v = vec!["ip", "netns", "exec", ns, "sysctl", "-qw"];
    v.extend(settings);
    sh(&v)
}

impl Running {
    /// Builds `t`. On error everything built so far is removed.
    pub fn up(t: &Topology) -> anyhow::Result<Self> {
        let mut r = Self { topology: t.clone(), hosts: Vec::new(), namespaces: Vec::new(), relay: None };
        let n = topo::next_seq();
        match t.kind {
            Kind::Veth => r.veth(n)?,
            Kind::Bridge => r.bridge(n)?,
            Kind::Overlay => r.overlay(n)?,
            Kind::Relay => r.relay_topo(n)?,
        }
        Ok(r)
    }

    /// Loads topology `name` (see [`find`]) and builds it.
    pub fn up_named(name: &str) -> anyhow::Result<Self> {
        Self::up(&Topology::load(&find(name)?)?)
    }

    /// The endpoint called `name`.
    pub fn host(&self, name: &str) -> anyhow::Result<&Node> {
        self.hosts.iter().find(|h| h.name == name).with_context(|| format!("no host {name:?}"))
    }

    /// The namespace of `name` (a host, the bridge, a VM or the router).
    pub fn netns(&self, name: &str) -> anyhow::Result<&str> {
        let found = self.namespaces.iter().find(|(n, _)| n == name);
        found.map(|(_, ns)| ns.as_str()).with_context(|| format!("no namespace {name:?}"))
    }

    /// The delay relay (relay topologies).
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_ref()
    }

    fn add_netns(&mut self, n: u32, name: &str) -> anyhow::Result<String> {
        let ns = format!("{}{n}{name}", topo::prefix());
        ip(&format!("netns add {ns}"))?;
        teardown::track_netns(&ns);
        self.namespaces.push((name.to_owned(), ns.clone()));
        ip(&format!("-n {ns} link set lo up"))?;
        // No IPv6 chatter (DAD, MLD): identical packets from every host blur results.
        sysctl(&ns, &["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])?;
        Ok(ns)
    }

    fn add_host(&mut self, ns: &str, name: &str, iface: &str, cidr: &conf::lab::Cidr) -> anyhow::Result<()> {
        ip(&format!("-n {ns} addr add {cidr} dev {iface}"))?;
        ip(&format!("-n {ns} link set {iface} up"))?;
        let node = Node { name: name.into(), netns: ns.into(), iface: iface.into(), addr: cidr.addr };
        self.hosts.push(node);
        Ok(())
    }

    fn veth(&mut self, n: u32) -> anyhow::Result<()> {
        let t = self.topology.clone();
        let a = self.add_netns(n, &t.hosts[0].name)?;
        let b = self.add_netns(n, &t.hosts[1].name)?;
        ip(&format!("link add veth0 netns {a} type veth peer name veth0 netns {b}"))?;
        self.add_host(&a, &t.hosts[0].name, "veth0", &t.hosts[0].addr)?;
        self.add_host(&b, &t.hosts[1].name, "veth0", &t.hosts[1].addr)
    }

    /// Plugs a new host namespace's `eth0` into `br0` of `sw` as port `<name>p`.
    fn plug(&mut self, n: u32, sw: &str, h: &conf::lab::HostSpec, mtu: u32) -> anyhow::Result<()> {
        let ns = self.add_netns(n, &h.name)?;
        let port = format!("{}p", h.name);
        ip(&format!("link add eth0 netns {ns} mtu {mtu} type veth peer name {port} netns {sw} mtu {mtu}"))?;
        ip(&format!("-n {sw} link set {port} master br0"))?;
        ip(&format!("-n {sw} link set {port} up"))?;
        self.add_host(&ns, &h.name, "eth0", &h.addr)
    }

    fn new_bridge(sw: &str) -> anyhow::Result<()> {
        ip(&format!("-n {sw} link add br0 type bridge"))?;
        ip(&format!("-n {sw} link set br0 up"))
    }

    fn bridge(&mut self, n: u32) -> anyhow::Result<()> {
        let t = self.topology.clone();
        let sw = self.add_netns(n, &t.bridge.as_ref().expect("validated").name)?;
        Self::new_bridge(&sw)?;
        for h in &t.hosts {
            self.plug(n, &sw, h, 1500)?;
        }
        Ok(())
    }

    fn overlay(&mut self, n: u32) -> anyhow::Result<()> {
        let t = self.topology.clone();
        let x = t.vxlan.as_ref().expect("validated");
        let (v1, v2) = (&t.vms[0], &t.vms[1]);
        let ns1 = self.add_netns(n, &v1.name)?;
        let ns2 = self.add_netns(n, &v2.name)?;
        ip(&format!("link add eth0 netns {ns1} type veth peer name eth0 netns {ns2}"))?;
        for (ns, me, peer) in [(&ns1, v1, v2), (&ns2, v2, v1)] {
            ip(&format!("-n {ns} addr add {} dev eth0", me.underlay))?;
            ip(&format!("-n {ns} link set eth0 up"))?;
            let (local, remote) = (me.underlay.addr, peer.underlay.addr);
            let vx = format!("-n {ns} link add vxlan0 type vxlan id {} local {local} remote {remote}", x.vni);
            ip(&format!("{vx} dstport {} dev eth0", x.port))?;
            Self::new_bridge(ns)?;
            if let Some(b) = &me.bridge_addr {
                ip(&format!("-n {ns} addr add {b} dev br0"))?;
            }
            ip(&format!("-n {ns} link set vxlan0 master br0"))?;
            ip(&format!("-n {ns} link set vxlan0 up"))?;
            // VXLAN over IPv4 adds 50 bytes: the containers' MTU leaves room.
            for c in &me.containers {
                self.plug(n, ns, c, 1450)?;
            }
        }
        Ok(())
    }

    fn relay_topo(&mut self, n: u32) -> anyhow::Result<()> {
        let t = self.topology.clone();
        let spec = t.router.as_ref().expect("validated");
        let r = self.add_netns(n, &spec.name)?;
        sysctl(
            &r,
            &[
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.default.send_redirects=0",
            ],
        )?;
        self.relay = Some(Relay::start(&r, "tun0", Duration::from_micros(spec.delay_us))?);
        ip(&format!("-n {r} link set tun0 up"))?;
        ip(&format!("-n {r} route add default dev tun0 table 100"))?;
        for h in &t.hosts {
            let ns = self.add_netns(n, &h.name)?;
            let port = format!("to{}", h.name);
            let gw = h.gateway.expect("validated");
            ip(&format!("link add eth0 netns {ns} type veth peer name {port} netns {r}"))?;
            ip(&format!("-n {r} addr add {gw}/{} dev {port}", h.addr.prefix))?;
            ip(&format!("-n {r} link set {port} up"))?;
            // Everything a host sends goes through the relay; what the relay
            // writes back arrives on tun0 and takes the main table.
            ip(&format!("-n {r} rule add iif {port} lookup 100"))?;
            self.add_host(&ns, &h.name, "eth0", &h.addr)?;
            ip(&format!("-n {ns} route add default via {gw}"))?;
        }
        Ok(())
    }

    /// One line per namespace: what it is, its name, interface and address.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (name, ns) in &self.namespaces {
            match self.hosts.iter().find(|h| &h.name == name) {
                Some(h) => s += &format!("host {name}: netns {ns} {} {}\n", h.iface, h.addr),
                None => s += &format!("{name}: netns {ns}\n"),
            }
        }
        if let Some(r) = &self.relay {
            s += &format!("relay: tun0, delay {} µs each way\n", r.delay().as_micros());
        }
        s
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.relay = None;
        for (_, ns) in self.namespaces.drain(..).rev() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            teardown::untrack_netns(&ns);
        }
    }
}
