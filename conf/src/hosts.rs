//! `hosts.yaml`: the machines of a measurement, how to reach them, where to
//! capture, and how they relate.
//!
//! It replaces the seed tool's `connect_info.yaml` (`address`, `port`,
//! `username`, `hostname`, `novm`/`isvm`/`iscontainer`, `eth`,
//! `other_address`). `netlat-collect` uses the connection fields and the
//! interfaces; the analyzer uses names, roles, addresses and `paths`.
//!
//! ```yaml
//! sync: true                  # pass --sync-peer (the other hosts' addresses) to every capture
//! sync_port: 9123             # optional --sync-port
//! remote_dir: netlat          # default folder on each host (relative: to the login folder)
//! hosts:
//!   - name: node1             # host column, --host-name, out/node1/
//!     address: 198.18.0.1     # ssh target: IP, DNS name or ~/.ssh/config alias
//!     port: 22                # default 22
//!     user: netlat            # default: ssh's (config or local user)
//!     role: bare_metal        # or {vm_on: node1}, {container_on: node1}
//!     interfaces: [eth0]      # [NETNS/]IFACE, as netlat-capture -i
//!     other_addresses: [198.18.5.1]
//!     sudo: true              # run the capture with `sudo -n` (default: unless user is root)
//!     capture: true           # false: topology only, nothing is run there
//!     remote_dir: /var/tmp/netlat   # overrides the top-level one
//! paths:                      # observation points in the order packets pass them
//!   - name: node1-to-node2
//!     points: [node1:eth0, node2:eth0:xdp]
//! ```
//!
//! No passwords: ssh authenticates with keys and the user's ssh config.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
    path::Path,
};

use serde::Deserialize;

pub use crate::names::{Address, HostName, Interface, RemotePath, UserName};
use crate::{from_yaml, read, ConfError};

/// Hooks an observation point may name.
pub const HOOKS: [&str; 3] = ["xdp", "tc_ingress", "tc_egress"];

/// Top level of `hosts.yaml`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsConf {
    /// Give every capture the other hosts as clock-sync peers (default: yes).
    #[serde(default = "yes")]
    pub sync: bool,
    /// Port of the clock-sync probes (`--sync-port`); netlat-capture's default if absent.
    #[serde(default)]
    pub sync_port: Option<u16>,
    /// Default folder on every host for the binary and the runs.
    #[serde(default = "default_remote_dir")]
    pub remote_dir: RemotePath,
    /// The hosts, in the order they are reported.
    pub hosts: Vec<HostConf>,
    /// Observation points along paths, in the order packets pass them.
    #[serde(default)]
    pub paths: Vec<PathConf>,
}

fn default_remote_dir() -> RemotePath {
    "netlat".parse().expect("valid default")
}

fn default_port() -> u16 {
    22
}

fn yes() -> bool {
    true
}

/// One host.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConf {
    /// Name in files, reports and `out/NAME`.
    pub name: HostName,
    /// What ssh connects to.
    pub address: Address,
    /// ssh port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// ssh login; absent: whatever ssh's configuration says.
    #[serde(default)]
    pub user: Option<UserName>,
    /// Bare metal, or a VM / container on another listed host.
    #[serde(default)]
    pub role: Role,
    /// Where to capture, `[NETNS/]IFACE`.
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    /// The host's other addresses (for matching paths; not used by ssh).
    #[serde(default)]
    pub other_addresses: Vec<IpAddr>,
    /// Run the capture through `sudo -n`; default: unless `user` is root.
    #[serde(default)]
    pub sudo: Option<bool>,
    /// False: the host is only described (topology), nothing runs there.
    #[serde(default = "yes")]
    pub capture: bool,
    /// Folder on this host; default: the top-level `remote_dir`.
    #[serde(default)]
    pub remote_dir: Option<RemotePath>,
}

/// Where a host runs. In YAML: `bare_metal`, `{vm_on: HOST}` or
/// `{container_on: HOST}` (also as tags, `!vm_on HOST`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Its own machine (the seed's `novm`).
    #[default]
    BareMetal,
    /// A virtual machine on the named host (the seed's `isvm`).
    VmOn(HostName),
    /// A container on the named host (the seed's `iscontainer`).
    ContainerOn(HostName),
}

const ROLES: &[&str] = &["bare_metal", "vm_on", "container_on"];

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, EnumAccess, MapAccess, VariantAccess, Visitor};
        struct V;
        fn make<E: de::Error>(kind: &str, host: Option<String>) -> Result<Role, E> {
            let parent = |h: Option<String>| -> Result<HostName, E> {
                h.ok_or_else(|| E::custom(format!("role `{kind}` needs a host name")))?.parse().map_err(E::custom)
            };
            match kind {
                "bare_metal" if host.is_none() => Ok(Role::BareMetal),
                "bare_metal" => Err(E::custom("role `bare_metal` takes no host")),
                "vm_on" => Ok(Role::VmOn(parent(host)?)),
                "container_on" => Ok(Role::ContainerOn(parent(host)?)),
                other => Err(E::unknown_variant(other, ROLES)),
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Role;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`bare_metal`, `{vm_on: HOST}` or `{container_on: HOST}`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Role, E> {
                make(v, None)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Role, A::Error> {
                let Some((k, v)) = m.next_entry::<String, String>()? else {
                    return Err(de::Error::custom("empty role; expected `{vm_on: HOST}` or `{container_on: HOST}`"));
                };
                if m.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom("a role names one of vm_on or container_on, not several"));
                }
                if k == "bare_metal" {
                    return Err(de::Error::custom("write `role: bare_metal`, without a host"));
                }
                make(&k, Some(v))
            }
            fn visit_enum<A: EnumAccess<'de>>(self, e: A) -> Result<Role, A::Error> {
                let (k, v): (String, _) = e.variant()?;
                if k == "bare_metal" {
                    v.unit_variant()?;
                    return Ok(Role::BareMetal);
                }
                make(&k, Some(v.newtype_variant::<String>()?))
            }
        }
        d.deserialize_any(V)
    }
}

impl Role {
    /// The host this one runs on, if any.
    pub fn parent(&self) -> Option<&HostName> {
        match self {
            Role::BareMetal => None,
            Role::VmOn(h) | Role::ContainerOn(h) => Some(h),
        }
    }
}

/// A path through the network as a list of observation points.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathConf {
    /// Its name in reports.
    pub name: HostName,
    /// `HOST:IFACE[:HOOK]`, in the order packets pass them.
    pub points: Vec<Point>,
}

/// An observation point, `HOST:IFACE[:HOOK]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Point {
    /// The host.
    pub host: HostName,
    /// One of its interfaces.
    pub iface: Interface,
    /// One hook, or every hook on the interface.
    pub hook: Option<String>,
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        fn check(s: &str) -> Result<(), String> {
            Point::try_from(s.to_owned()).map(|_| ())
        }
        let s = d.deserialize_str(crate::names::CheckedStr("observation point", check))?;
        Ok(Point::try_from(s).expect("checked"))
    }
}

impl TryFrom<String> for Point {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let (host, rest) =
            s.split_once(':').ok_or_else(|| format!("observation point {s:?} is not HOST:IFACE[:HOOK]"))?;
        let (iface, hook) = match rest.rsplit_once(':') {
            Some((i, h)) if HOOKS.contains(&h) => (i, Some(h.to_owned())),
            _ => (rest, None),
        };
        Ok(Point { host: host.parse()?, iface: iface.parse()?, hook })
    }
}

impl HostConf {
    /// Whether the capture runs through `sudo -n`.
    pub fn use_sudo(&self) -> bool {
        self.sudo.unwrap_or_else(|| self.user.as_ref().is_none_or(|u| u.as_str() != "root"))
    }
}

impl HostsConf {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        Self::parse(path, &read(path)?)
    }

    /// Parses and validates YAML text attributed to `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfError> {
        let conf: Self = from_yaml(path, text)?;
        conf.validate(path, text)?;
        Ok(conf)
    }

    /// The hosts where captures run.
    pub fn capture_hosts(&self) -> impl Iterator<Item = &HostConf> {
        self.hosts.iter().filter(|h| h.capture)
    }

    /// Folder on `host` for netlat's files.
    pub fn remote_dir<'a>(&'a self, host: &'a HostConf) -> &'a RemotePath {
        host.remote_dir.as_ref().unwrap_or(&self.remote_dir)
    }

    /// Clock-sync peers of `host`: the other capturing hosts' addresses.
    pub fn sync_peers(&self, host: &HostConf) -> Vec<&Address> {
        self.capture_hosts().filter(|h| h.name != host.name).map(|h| &h.address).collect()
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfError> {
        // `line`: where to point the reader, found by `locate`.
        let bad = |field: String, message: String, line: Option<usize>| {
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            ConfError::Invalid { path: path.to_owned(), field, message: format!("{message}{at}") }
        };
        if self.hosts.is_empty() {
            return Err(bad("hosts".into(), "lists no host".into(), locate(text, &["hosts"], "", 0)));
        }
        let mut by_name: BTreeMap<&HostName, &HostConf> = BTreeMap::new();
        for (i, h) in self.hosts.iter().enumerate() {
            let name = h.name.as_str();
            if by_name.insert(&h.name, h).is_some() {
                let msg = format!("host name {name:?} is used twice");
                return Err(bad(format!("hosts[{i}].name"), msg, locate(text, &["name"], name, 1)));
            }
            let entry = locate(text, &["name"], name, 0);
            if h.port == 0 {
                return Err(bad(format!("hosts[{i}].port"), "must be 1 to 65535".into(), entry));
            }
            if h.capture && h.interfaces.is_empty() {
                let msg = format!("host {name:?} captures but lists no interface (or set `capture: false`)");
                return Err(bad(format!("hosts[{i}].interfaces"), msg, entry));
            }
            let mut seen = BTreeSet::new();
            for (j, iface) in h.interfaces.iter().enumerate() {
                if !seen.insert(iface) {
                    let msg = format!("host {name:?} lists interface {:?} twice", iface.as_str());
                    return Err(bad(format!("hosts[{i}].interfaces[{j}]"), msg, entry));
                }
            }
        }
        if self.capture_hosts().next().is_none() {
            let msg = "no host has `capture: true`".into();
            return Err(bad("hosts".into(), msg, locate(text, &["hosts"], "", 0)));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            // Roles must name listed hosts and must not loop.
            let mut cur = h;
            let mut chain = vec![h.name.as_str()];
            while let Some(parent) = cur.role.parent() {
                let line = locate(text, &["role", "vm_on", "container_on"], parent.as_str(), 0);
                let Some(p) = by_name.get(parent) else {
                    let msg = format!("names host {:?}, which is not listed", parent.as_str());
                    return Err(bad(format!("hosts[{i}].role"), msg, line));
                };
                if chain.contains(&parent.as_str()) {
                    let msg = format!("roles form a loop: {} -> {}", chain.join(" -> "), parent);
                    return Err(bad(format!("hosts[{i}].role"), msg, line));
                }
                chain.push(parent.as_str());
                cur = p;
            }
        }
        let mut names = BTreeSet::new();
        for (i, p) in self.paths.iter().enumerate() {
            let entry = locate(text, &["name"], p.name.as_str(), 0);
            if !names.insert(&p.name) {
                let msg = format!("path name {:?} is used twice", p.name.as_str());
                return Err(bad(format!("paths[{i}].name"), msg, locate(text, &["name"], p.name.as_str(), 1)));
            }
            if p.points.len() < 2 {
                return Err(bad(format!("paths[{i}].points"), "needs at least two points".into(), entry));
            }
            for (j, pt) in p.points.iter().enumerate() {
                let field = format!("paths[{i}].points[{j}]");
                let line = locate(text, &[], &format!("{}:{}", pt.host, pt.iface), 0);
                let Some(h) = by_name.get(&pt.host) else {
                    let msg = format!("names host {:?}, which is not listed", pt.host.as_str());
                    return Err(bad(field, msg, line));
                };
                if !h.interfaces.contains(&pt.iface) {
                    let msg = format!("host {:?} lists no interface {:?}", pt.host.as_str(), pt.iface.as_str());
                    return Err(bad(field, msg, line));
                }
            }
        }
        Ok(())
    }
}

/// 1-based number of the `nth` (0-based) line that starts with one of
/// `keys` (any line if none) and mentions `value` as a word (any line if
/// empty), ignoring comments and list dashes. The parser knows lines only
/// for its own errors; this points at the culprit of a cross-field one.
fn locate(text: &str, keys: &[&str], value: &str, nth: usize) -> Option<usize> {
    let word = |c: char| c.is_ascii_alphanumeric() || "._-:/@".contains(c);
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.split(" #").next().unwrap_or("").trim_start();
            let l = l.trim_start_matches("- ").trim_start();
            let key_ok = keys.is_empty() || keys.iter().any(|k| l.starts_with(&format!("{k}:")));
            let value_ok = value.is_empty()
                || l.split(|c: char| !word(c))
                    .any(|t| t == value || t.strip_prefix(value).is_some_and(|r| r.starts_with(':')));
            !l.starts_with('#') && key_ok && value_ok
        })
        .nth(nth)
        .map(|(i, _)| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostsConf, ConfError> {
        HostsConf::parse(Path::new("conf/hosts.yaml"), text)
    }

    const GOOD: &str = "\
sync: true
sync_port: 9123
hosts:
  - name: hv1
    address: 198.18.0.1
    user: root
    interfaces: [eth0, pid:42/eth0]
  - name: vm1
    address: vm1.lab
    port: 2222
    user: netlat
    role: {vm_on: hv1}
    interfaces: [ens3]
    other_addresses: [198.18.5.1]
    remote_dir: /var/tmp/netlat
  - name: c1
    address: 198.18.0.3
    role:
      container_on: vm1
    capture: false
paths:
  - name: hv-to-vm
    points: [hv1:eth0, vm1:ens3:xdp]
";

    #[test]
    fn full_file_parses() {
        let c = parse(GOOD).unwrap();
        assert!(c.sync);
        assert_eq!(c.sync_port, Some(9123));
        assert_eq!(c.remote_dir.as_str(), "netlat");
        assert_eq!(c.hosts.len(), 3);
        let (hv, vm, ct) = (&c.hosts[0], &c.hosts[1], &c.hosts[2]);
        assert_eq!(hv.port, 22);
        assert!(!hv.use_sudo(), "root needs no sudo");
        assert!(vm.use_sudo());
        assert_eq!(vm.role, Role::VmOn("hv1".parse().unwrap()));
        assert_eq!(ct.role, Role::ContainerOn("vm1".parse().unwrap()));
        assert_eq!(c.remote_dir(vm).as_str(), "/var/tmp/netlat");
        assert_eq!(c.remote_dir(hv).as_str(), "netlat");
        assert_eq!(c.capture_hosts().count(), 2);
        let peers: Vec<&str> = c.sync_peers(hv).iter().map(|a| a.as_str()).collect();
        assert_eq!(peers, ["vm1.lab"]);
        assert_eq!(c.paths[0].points[1].hook.as_deref(), Some("xdp"));
        assert_eq!(c.paths[0].points[1].iface.as_str(), "ens3");
    }

    #[test]
    fn the_repository_example_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("hosts.yaml");
        let c = HostsConf::load(&p).unwrap();
        assert!(c.sync, "clock sync is on in the example");
        assert!(c.hosts.len() >= 2);
    }

    #[test]
    fn hostile_host_name_is_rejected_with_field_and_line() {
        let e = parse("hosts:\n  - name: \"x; touch /tmp/pwned\"\n    address: 198.18.0.1\n    interfaces: [eth0]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("conf/hosts.yaml: "), "{e}");
        assert!(e.contains("hosts[0].name"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("contains ';'"), "{e}");
    }

    #[test]
    fn hostile_values_are_rejected_in_every_field() {
        let base = |field: &str, value: &str| {
            let mut h = BTreeMap::from([
                ("name", "a".to_owned()),
                ("address", "198.18.0.1".to_owned()),
                ("user", "root".to_owned()),
                ("interfaces", "[eth0]".to_owned()),
                ("remote_dir", "netlat".to_owned()),
            ]);
            h.insert(field, value.to_owned());
            let body: String = h.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect();
            format!("hosts:\n  - {}", body.trim_start())
        };
        for (field, value) in [
            ("name", "'-rf'"),
            ("name", "'$(reboot)'"),
            ("user", "'-oProxyCommand=touch /tmp/pwned'"),
            ("user", "'a b'"),
            ("address", "'-oProxyCommand=x'"),
            ("address", "'h;id'"),
            ("interfaces", "['eth0; id']"),
            ("interfaces", "['-x']"),
            ("remote_dir", "'/tmp/$(id)'"),
            ("remote_dir", "'../../etc'"),
            ("remote_dir", "\"a'b\""),
        ] {
            let text = base(field, value);
            let e = parse(&text).unwrap_err().to_string();
            assert!(e.contains(field), "{field}={value}: {e}\n{text}");
            assert!(e.contains("line "), "{field}={value}: {e}");
        }
    }

    #[test]
    fn unknown_fields_and_passwords_are_refused() {
        let e = parse("hosts:\n  - name: a\n    address: h\n    password: hunter2\n    interfaces: [eth0]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `password`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = parse("hostz: []\n").unwrap_err().to_string();
        assert!(e.contains("unknown field `hostz`"), "{e}");
    }

    #[test]
    fn cross_field_errors_name_field_and_line() {
        let two = "hosts:\n  - name: a\n    address: h1\n    interfaces: [eth0]\n  - name: a\n    address: h2\n    interfaces: [eth0]\n";
        let e = parse(two).unwrap_err().to_string();
        assert_eq!(e, "conf/hosts.yaml: field `hosts[1].name`: host name \"a\" is used twice (line 5)");

        let e = parse("hosts:\n  - name: a\n    address: h\n    role: {vm_on: nothere}\n    interfaces: [eth0]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hosts[0].role") && e.contains("nothere") && e.contains("line 4"), "{e}");

        let loop_ = "hosts:\n  - name: a\n    address: h\n    role: {vm_on: b}\n    interfaces: [eth0]\n  \
                     - name: b\n    address: h\n    role: {container_on: a}\n    interfaces: [eth0]\n";
        let e = parse(loop_).unwrap_err().to_string();
        assert!(e.contains("loop"), "{e}");

        let e = parse("hosts:\n  - name: a\n    address: h\n").unwrap_err().to_string();
        assert!(e.contains("hosts[0].interfaces"), "{e}");

        let e = parse("hosts: []\n").unwrap_err().to_string();
        assert!(e.contains("lists no host"), "{e}");

        let p = "hosts:\n  - name: a\n    address: h\n    interfaces: [eth0]\npaths:\n  - name: p\n    points: [a:eth0, a:eth9]\n";
        let e = parse(p).unwrap_err().to_string();
        assert!(e.contains("paths[0].points[1]") && e.contains("eth9") && e.contains("line 7"), "{e}");
        let p = "hosts:\n  - name: a\n    address: h\n    interfaces: [eth0]\npaths:\n  - name: p\n    points:\n      - a:eth0\n      - 'a;b'\n";
        let e = parse(p).unwrap_err().to_string();
        assert!(e.contains("paths[0].points[1]") && e.contains("line 9"), "{e}");
    }

    #[test]
    fn roles_parse_in_both_spellings() {
        for role in ["{vm_on: h}", "\n      vm_on: h", "!vm_on h"] {
            let t = format!(
                "hosts:\n  - name: h\n    address: a\n    interfaces: [e]\n  - name: v\n    address: b\n    role: {role}\n    interfaces: [e]\n"
            );
            assert_eq!(parse(&t).unwrap().hosts[1].role, Role::VmOn("h".parse().unwrap()), "{role}");
        }
        let e = parse("hosts:\n  - name: h\n    address: a\n    role: cloud\n    interfaces: [e]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hosts[0].role") && e.contains("line 4"), "{e}");
        assert!(e.contains("unknown variant `cloud`"), "{e}");
    }
}
