//! `probes.yaml`: the catalog of probe points inside a host, as data.
//!
//! Each probe is one place in the kernel's packet path where a timestamp can
//! be taken: a tracepoint, an fentry/fexit or kprobe on a kernel function,
//! or today's XDP and TC hooks. `netlat-capture --layers PRESET` picks a
//! nested subset (wire ⊂ stack ⊂ socket ⊂ all); `--list-probes` shows which
//! the running kernel allows. The seed tool's `function_info.yaml` (function
//! name, which argument is the skb) maps onto `kind: kprobe`/`fentry`,
//! `target` and `arg` here.
//!
//! ```yaml
//! probes:
//!   - name: net_dev_queue        # unique, [a-z0-9_]
//!     layer: qdisc               # socket | tcp | ip | qdisc | driver | wire | sched | drop
//!     dir: send                  # send | recv | none
//!     kind: tracepoint           # tracepoint | fentry | fexit | kprobe | kretprobe | xdp | tc
//!     target: net:net_dev_queue  # SYSTEM:EVENT, a kernel function, or xdp / tc_ingress / tc_egress
//!     arg: {skb: 0}              # which argument is the packet or socket (optional)
//!     presets: [stack, socket, all]
//!     note: entering the device layer, before the qdisc   # optional
//! ```

use std::{fmt, path::Path, str::FromStr};

use serde::Deserialize;

use crate::{from_yaml, read, ConfError};

/// The catalog shipped with netlat (`conf/probes.yaml`), built into the binary.
pub const BUILTIN: &str = include_str!("../probes.yaml");
/// Name the built-in catalog's errors carry.
pub const BUILTIN_PATH: &str = "conf/probes.yaml";

macro_rules! names {
    ($(#[$doc:meta])* $ty:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $ty { $($(#[$vdoc])* $variant,)* }

        impl $ty {
            /// Every value, in declaration order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant,)*];

            /// The name used in YAML and on the command line.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text,)* }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names! {
    /// Layer of the stack a probe point belongs to.
    Layer {
        /// Socket calls (send/recv system calls, wakeups of readers).
        Socket = "socket",
        /// TCP.
        Tcp = "tcp",
        /// IP and the core receive path.
        Ip = "ip",
        /// Device queueing (qdisc).
        Qdisc = "qdisc",
        /// The driver (start of transmit, NAPI receive).
        Driver = "driver",
        /// Closest to the wire: XDP and TC.
        Wire = "wire",
        /// The scheduler (wakeups and switches of the application).
        Sched = "sched",
        /// Packet drops.
        Drop = "drop",
    }
}

names! {
    /// Direction of the packets a probe sees.
    Dir {
        /// Outgoing.
        Send = "send",
        /// Incoming.
        Recv = "recv",
        /// Both or neither (drops, scheduler).
        None = "none",
    }
}

names! {
    /// How a probe attaches.
    Kind {
        /// A kernel tracepoint (`tp_btf` where the kernel has BTF for it, else raw).
        Tracepoint = "tracepoint",
        /// BPF trampoline at function entry.
        Fentry = "fentry",
        /// BPF trampoline at function exit.
        Fexit = "fexit",
        /// kprobe at function entry.
        Kprobe = "kprobe",
        /// kprobe at function return.
        Kretprobe = "kretprobe",
        /// XDP on an interface.
        Xdp = "xdp",
        /// TC clsact on an interface.
        Tc = "tc",
    }
}

names! {
    /// `--layers` presets; each contains the previous one.
    Preset {
        /// XDP and TC only (netlat-capture's hooks).
        Wire = "wire",
        /// Plus tracepoints of the TCP, IP, qdisc and driver layers.
        Stack = "stack",
        /// Plus the socket layer.
        Socket = "socket",
        /// Everything: the scheduler, drops, fentry/kprobe extras.
        All = "all",
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Preset::ALL.iter().copied().find(|p| p.as_str() == s).ok_or_else(|| {
            let known: Vec<_> = Preset::ALL.iter().map(|p| p.as_str()).collect();
            format!("unknown preset {s:?} (known: {})", known.join(", "))
        })
    }
}

/// Which argument of the probed function or tracepoint is the packet or socket.
/// Written `{skb: 2}`: a one-key map (serde_yaml_ng would want `!skb 2` for an enum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "ArgMap")]
pub enum Arg {
    /// `struct sk_buff *` at this index.
    Skb(u8),
    /// `struct sk_buff **` at this index (`__netif_receive_skb_core`).
    Pskb(u8),
    /// `struct sock *` at this index.
    Sock(u8),
    /// `struct socket *` at this index (its `sk` is the sock).
    Socket(u8),
    /// A `void *` that carries the skb (virtio-net's buffer token in `virtqueue_add_outbuf`).
    SkbToken(u8),
}

/// The YAML shape of [`Arg`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgMap {
    skb: Option<u8>,
    pskb: Option<u8>,
    sock: Option<u8>,
    socket: Option<u8>,
    skb_token: Option<u8>,
}

impl TryFrom<ArgMap> for Arg {
    type Error = String;

    fn try_from(m: ArgMap) -> Result<Self, String> {
        let all = [
            m.skb.map(Arg::Skb),
            m.pskb.map(Arg::Pskb),
            m.sock.map(Arg::Sock),
            m.socket.map(Arg::Socket),
            m.skb_token.map(Arg::SkbToken),
        ];
        let mut given = all.into_iter().flatten();
        match (given.next(), given.next()) {
            (Some(a), None) => Ok(a),
            _ => Err("arg: exactly one of skb, pskb, sock, socket, skb_token, e.g. {skb: 0}".into()),
        }
    }
}

impl Arg {
    /// The argument index.
    pub fn index(self) -> u8 {
        match self {
            Arg::Skb(i) | Arg::Pskb(i) | Arg::Sock(i) | Arg::Socket(i) | Arg::SkbToken(i) => i,
        }
    }
}

impl fmt::Display for Arg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Arg::Skb(_) => "skb",
            Arg::Pskb(_) => "pskb",
            Arg::Sock(_) => "sock",
            Arg::Socket(_) => "socket",
            Arg::SkbToken(_) => "skb_token",
        };
        write!(f, "{what}:{}", self.index())
    }
}

/// One probe point.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Probe {
    /// Unique name (`[a-z0-9_]+`).
    pub name: String,
    /// Layer it belongs to.
    pub layer: Layer,
    /// Direction of the packets it sees.
    pub dir: Dir,
    /// How it attaches.
    pub kind: Kind,
    /// `SYSTEM:EVENT` (tracepoint), a kernel function (fentry, fexit, kprobe,
    /// kretprobe), `xdp`, or `tc_ingress` / `tc_egress`.
    pub target: String,
    /// Which argument is the skb or sock.
    #[serde(default)]
    pub arg: Option<Arg>,
    /// Presets that include it.
    pub presets: Vec<Preset>,
    /// What it measures, for people.
    #[serde(default)]
    pub note: Option<String>,
}

impl Probe {
    /// Whether `preset` includes this probe.
    pub fn in_preset(&self, preset: Preset) -> bool {
        self.presets.contains(&preset)
    }

    /// `SYSTEM` and `EVENT` of a tracepoint target.
    pub fn tracepoint(&self) -> Option<(&str, &str)> {
        (self.kind == Kind::Tracepoint).then(|| self.target.split_once(':')).flatten()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    probes: Vec<Probe>,
}

/// The probe catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Catalog {
    /// Every probe, in file order.
    pub probes: Vec<Probe>,
}

impl Catalog {
    /// The catalog built into the binary.
    pub fn builtin() -> Self {
        Self::parse(Path::new(BUILTIN_PATH), BUILTIN).expect("the built-in catalog is valid (tested)")
    }

    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        Self::parse(path, &read(path)?)
    }

    /// Parses and validates YAML text attributed to `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfError> {
        let file: File = from_yaml(path, text)?;
        let catalog = Catalog { probes: file.probes };
        catalog.validate(path)?;
        Ok(catalog)
    }

    /// The probe named `name`.
    pub fn get(&self, name: &str) -> Option<&Probe> {
        self.probes.iter().find(|p| p.name == name)
    }

    /// Probes of `preset`, in file order.
    pub fn preset(&self, preset: Preset) -> impl Iterator<Item = &Probe> {
        self.probes.iter().filter(move |p| p.in_preset(preset))
    }

    fn validate(&self, path: &Path) -> Result<(), ConfError> {
        let mut names = std::collections::HashSet::new();
        for (i, p) in self.probes.iter().enumerate() {
            let bad = |field: &str, message: String| ConfError::Invalid {
                path: path.to_owned(),
                field: format!("probes[{i}].{field}"),
                message,
            };
            if p.name.is_empty() || !p.name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
                return Err(bad("name", format!("{:?} must be non-empty [a-z0-9_]", p.name)));
            }
            if !names.insert(p.name.as_str()) {
                return Err(bad("name", format!("{:?} is used twice", p.name)));
            }
            validate_target(p).map_err(|m| bad("target", m))?;
            let hook = matches!(p.kind, Kind::Xdp | Kind::Tc);
            if hook != (p.layer == Layer::Wire) {
                return Err(bad("layer", format!("{}: layer wire is for the xdp and tc kinds only", p.name)));
            }
            if let Some(arg) = p.arg {
                // x86_64 passes six arguments in registers (kprobes read them from pt_regs);
                // BPF trampolines and tracepoints take up to twelve.
                let max = match p.kind {
                    Kind::Xdp | Kind::Tc => return Err(bad("arg", format!("{}: xdp and tc take no arg", p.name))),
                    Kind::Kprobe | Kind::Kretprobe => 5,
                    _ => 11,
                };
                if arg.index() > max {
                    return Err(bad("arg", format!("{}: argument {} is past the last usable ({max})", p.name, arg)));
                }
            }
            if p.presets.is_empty() {
                return Err(bad("presets", format!("{}: empty (every probe belongs at least to all)", p.name)));
            }
            // Presets nest: a probe in one is in every larger one.
            let smallest = p.presets.iter().min().copied().unwrap_or(Preset::All);
            if let Some(missing) = Preset::ALL.iter().find(|q| **q >= smallest && !p.in_preset(**q)) {
                return Err(bad(
                    "presets",
                    format!(
                        "{}: presets nest (wire ⊂ stack ⊂ socket ⊂ all): in {smallest} but not in {missing}",
                        p.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

fn validate_target(p: &Probe) -> Result<(), String> {
    let t = p.target.as_str();
    let ok = match p.kind {
        Kind::Tracepoint => t.split_once(':').is_some_and(|(s, e)| is_ident(s) && is_ident(e)),
        // Kernel functions may carry a compiler suffix (`.isra.0`).
        Kind::Fentry | Kind::Fexit | Kind::Kprobe | Kind::Kretprobe => is_ident(t),
        Kind::Xdp => t == "xdp",
        Kind::Tc => t == "tc_ingress" || t == "tc_egress",
    };
    if ok {
        return Ok(());
    }
    let want = match p.kind {
        Kind::Tracepoint => "SYSTEM:EVENT, e.g. net:net_dev_queue",
        Kind::Xdp => "xdp",
        Kind::Tc => "tc_ingress or tc_egress",
        _ => "a kernel function name",
    };
    Err(format!("{}: {t:?} is not {want}", p.name))
}

#[cfg(test)]
#[path = "probes_tests.rs"]
mod tests;
