//! `conf/lab/*.yaml`: named topologies of network namespaces for `netlat-lab`.
//!
//! One file per topology; `kind` chooses the shape and which other fields
//! apply. Every address is `ADDR/PREFIX` inside 198.18.0.0/15 (RFC 2544
//! benchmarking space): the lab never sends anywhere else.
//!
//! ```yaml
//! name: relay
//! description: two hosts routed through a router that delays every packet
//! kind: relay                 # veth | bridge | overlay | relay
//! hosts:                      # veth: 2; bridge: 2 to 16; relay: 2 (each with a gateway)
//!   - {name: a, addr: 198.18.1.1/24, gateway: 198.18.1.254}
//!   - {name: b, addr: 198.18.2.1/24, gateway: 198.18.2.254}
//! router: {name: r, delay_us: 1000}   # relay only: the user-space delay relay
//! # bridge only:  bridge: {name: host}                 (namespace holding br0)
//! # overlay only: vxlan: {vni: 42, port: 4789}
//! #               vms: [{name: vm1, underlay: 198.18.1.1/24, containers: [{name: c1, addr: ...}]}, ...]
//! ```

use std::{collections::BTreeSet, fmt, net::Ipv4Addr, path::Path};

use serde::Deserialize;

use crate::{from_yaml, read, ConfError};

/// Longest host, VM, bridge or router name: it ends up inside interface
/// names (`<name>p`, `to<name>`), which Linux limits to 15 bytes.
pub const MAX_NAME: usize = 8;

/// The shape of a topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// Two hosts joined by a veth pair.
    Veth,
    /// Hosts (containers) plugged into a Linux bridge in a namespace of its own (the host).
    Bridge,
    /// Containers on two VMs, bridged to a VXLAN tunnel over an underlay veth.
    Overlay,
    /// Two hosts routed through a router namespace whose user-space relay delays each packet.
    Relay,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Veth => "veth",
            Kind::Bridge => "bridge",
            Kind::Overlay => "overlay",
            Kind::Relay => "relay",
        })
    }
}

/// An IPv4 address with its prefix length, `198.18.0.1/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Prefix length, 1 to 32.
    pub prefix: u8,
}

impl Cidr {
    /// True when `other` lies in this address's subnet.
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
        u32::from(self.addr) & mask == u32::from(other) & mask
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("{s:?}: expected ADDR/PREFIX, e.g. 198.18.0.1/24"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("{a:?} is not an IPv4 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|p| (1..=32).contains(p)).ok_or(format!("prefix {p:?} is not 1 to 32"))?;
        Ok(Self { addr, prefix })
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A host (or container) of the topology.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Short name: `[a-z0-9]`, at most [`MAX_NAME`] bytes, starting with a letter.
    pub name: String,
    /// Its address on the lab network.
    pub addr: Cidr,
    /// Default gateway (relay: the router's address on this host's link).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
}

/// The bridge of a `bridge` topology.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    /// Name of the namespace holding `br0` (the container host).
    pub name: String,
}

/// A VM of an `overlay` topology.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Short name.
    pub name: String,
    /// Its address on the underlay.
    pub underlay: Cidr,
    /// Its own address on the overlay, on its bridge (optional): where its containers
    /// reach the VM itself, e.g. to exchange clock-sync probes with it.
    #[serde(default)]
    pub bridge_addr: Option<Cidr>,
    /// Its containers, bridged to the VXLAN tunnel.
    pub containers: Vec<HostSpec>,
}

/// The VXLAN tunnel of an `overlay` topology.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VxlanSpec {
    /// VXLAN network identifier, 1 to 16777215.
    pub vni: u32,
    /// UDP port.
    #[serde(default = "default_vxlan_port")]
    pub port: u16,
}

fn default_vxlan_port() -> u16 {
    4789
}

/// The router of a `relay` topology.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Short name.
    pub name: String,
    /// Delay the relay adds to every packet, µs (at most 1 s).
    pub delay_us: u64,
}

/// One topology file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Name (`netlat-lab up NAME`).
    pub name: String,
    /// One line for `netlat-lab topologies`.
    #[serde(default)]
    pub description: String,
    /// The shape.
    pub kind: Kind,
    /// Hosts (veth, bridge, relay).
    #[serde(default)]
    pub hosts: Vec<HostSpec>,
    /// The bridge (bridge only).
    #[serde(default)]
    pub bridge: Option<BridgeSpec>,
    /// The VMs (overlay only, exactly 2).
    #[serde(default)]
    pub vms: Vec<VmSpec>,
    /// The tunnel (overlay only).
    #[serde(default)]
    pub vxlan: Option<VxlanSpec>,
    /// The router (relay only).
    #[serde(default)]
    pub router: Option<RouterSpec>,
}

/// The benchmarking block every lab address must lie in.
const LAB_NET: Cidr = Cidr { addr: Ipv4Addr::new(198, 18, 0, 0), prefix: 15 };

impl Topology {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        Self::parse(path, &read(path)?)
    }

    /// Parses and validates YAML text attributed to `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfError> {
        let t: Self = from_yaml(path, text)?;
        t.validate(path)?;
        Ok(t)
    }

    /// Every host the topology's traffic runs between (containers of every VM for overlay).
    pub fn endpoints(&self) -> Vec<&HostSpec> {
        match self.kind {
            Kind::Overlay => self.vms.iter().flat_map(|v| &v.containers).collect(),
            _ => self.hosts.iter().collect(),
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfError> {
        let bad = |field: &str, message: String| ConfError::Invalid {
            path: path.to_owned(),
            field: field.to_owned(),
            message: format!("{message} (kind {})", self.kind),
        };
        let mut names = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        let mut name = |field: &str, n: &str| -> Result<(), ConfError> {
            name_ok(n).map_err(|m| bad(field, m))?;
            if !names.insert(n.to_owned()) {
                return Err(bad(field, format!("name {n:?} is used twice")));
            }
            Ok(())
        };
        if self.name.is_empty() {
            return Err(bad("name", "is empty".into()));
        }
        let unused = |field: &str, set: bool| {
            if set {
                Err(bad(field, "does not apply to this kind".into()))
            } else {
                Ok(())
            }
        };
        let mut addr = |field: &str, c: &Cidr| -> Result<(), ConfError> {
            if !LAB_NET.contains(c.addr) || c.prefix < LAB_NET.prefix {
                return Err(bad(field, format!("{c} is outside the lab block {LAB_NET}")));
            }
            if !addrs.insert(c.addr) {
                return Err(bad(field, format!("address {} is used twice", c.addr)));
            }
            Ok(())
        };
        let (lo, hi) = match self.kind {
            Kind::Veth | Kind::Relay => (2, 2),
            Kind::Bridge => (2, 16),
            Kind::Overlay => (0, 0),
        };
        if !(lo..=hi).contains(&self.hosts.len()) {
            let want = if lo == hi { format!("exactly {lo}") } else { format!("{lo} to {hi}") };
            return Err(bad("hosts", format!("lists {} hosts, needs {want}", self.hosts.len())));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            name(&format!("hosts[{i}].name"), &h.name)?;
            addr(&format!("hosts[{i}].addr"), &h.addr)?;
            match (self.kind, h.gateway) {
                (Kind::Relay, None) => return Err(bad(&format!("hosts[{i}].gateway"), "is required".into())),
                (Kind::Relay, Some(g)) if !h.addr.contains(g) || g == h.addr.addr => {
                    return Err(bad(
                        &format!("hosts[{i}].gateway"),
                        format!("{g} is not another address of {}", h.addr),
                    ));
                }
                (Kind::Relay, Some(_)) => {}
                (_, g) => unused(&format!("hosts[{i}].gateway"), g.is_some())?,
            }
        }
        unused("bridge", self.kind != Kind::Bridge && self.bridge.is_some())?;
        unused("vms", self.kind != Kind::Overlay && !self.vms.is_empty())?;
        unused("vxlan", self.kind != Kind::Overlay && self.vxlan.is_some())?;
        unused("router", self.kind != Kind::Relay && self.router.is_some())?;
        match self.kind {
            Kind::Veth => self.same_subnet(&bad, "hosts", self.hosts.iter().cloned())?,
            Kind::Bridge => {
                let b = self.bridge.as_ref().ok_or_else(|| bad("bridge", "is required".into()))?;
                name("bridge.name", &b.name)?;
                self.same_subnet(&bad, "hosts", self.hosts.iter().cloned())?;
            }
            Kind::Relay => {
                let r = self.router.as_ref().ok_or_else(|| bad("router", "is required".into()))?;
                name("router.name", &r.name)?;
                if r.delay_us > 1_000_000 {
                    return Err(bad("router.delay_us", format!("{} µs is more than 1 s", r.delay_us)));
                }
                let (a, b) = (&self.hosts[0].addr, &self.hosts[1].addr);
                if a.contains(b.addr) || b.contains(a.addr) {
                    return Err(bad(
                        "hosts[1].addr",
                        format!("{b} shares a subnet with {a}: traffic would bypass the router"),
                    ));
                }
            }
            Kind::Overlay => {
                let x = self.vxlan.as_ref().ok_or_else(|| bad("vxlan", "is required".into()))?;
                if !(1..=0xFF_FFFF).contains(&x.vni) {
                    return Err(bad("vxlan.vni", format!("{} is not 1 to 16777215", x.vni)));
                }
                if x.port == 0 {
                    return Err(bad("vxlan.port", "must be 1 to 65535".into()));
                }
                if self.vms.len() != 2 {
                    return Err(bad("vms", format!("lists {} VMs, needs exactly 2", self.vms.len())));
                }
                for (i, vm) in self.vms.iter().enumerate() {
                    name(&format!("vms[{i}].name"), &vm.name)?;
                    addr(&format!("vms[{i}].underlay"), &vm.underlay)?;
                    if let Some(b) = &vm.bridge_addr {
                        addr(&format!("vms[{i}].bridge_addr"), b)?;
                        if !vm.containers.first().is_some_and(|c| c.addr.contains(b.addr)) {
                            return Err(bad(&format!("vms[{i}].bridge_addr"), "not in the containers' subnet".into()));
                        }
                    }
                    if vm.containers.is_empty() || vm.containers.len() > 8 {
                        return Err(bad(&format!("vms[{i}].containers"), "needs 1 to 8 containers".into()));
                    }
                    for (j, c) in vm.containers.iter().enumerate() {
                        name(&format!("vms[{i}].containers[{j}].name"), &c.name)?;
                        addr(&format!("vms[{i}].containers[{j}].addr"), &c.addr)?;
                        unused(&format!("vms[{i}].containers[{j}].gateway"), c.gateway.is_some())?;
                    }
                }
                self.same_subnet(
                    &bad,
                    "vms",
                    self.vms.iter().map(|v| HostSpec { name: v.name.clone(), addr: v.underlay, gateway: None }),
                )?;
                self.same_subnet(&bad, "vms[1].containers", self.endpoints().into_iter().cloned())?;
                if self.vms[0].underlay.contains(self.vms[0].containers[0].addr.addr) {
                    return Err(bad("vms[0].containers[0].addr", "overlay and underlay share a subnet".into()));
                }
            }
        }
        Ok(())
    }

    fn same_subnet(
        &self,
        bad: &dyn Fn(&str, String) -> ConfError,
        field: &str,
        mut hosts: impl Iterator<Item = HostSpec>,
    ) -> Result<(), ConfError> {
        let Some(first) = hosts.next() else { return Ok(()) };
        for h in hosts {
            if h.addr.prefix != first.addr.prefix || !first.addr.contains(h.addr.addr) {
                let msg = format!("{} ({}) is not in the subnet of {} ({})", h.name, h.addr, first.name, first.addr);
                return Err(bad(field, msg));
            }
        }
        Ok(())
    }
}

fn name_ok(n: &str) -> Result<(), String> {
    let ok = !n.is_empty()
        && n.len() <= MAX_NAME
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(format!("{n:?} must be 1 to {MAX_NAME} of [a-z0-9], starting with a letter"))
    }
}

#[cfg(test)]
#[path = "lab_tests.rs"]
mod tests;
