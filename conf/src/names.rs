//! Validated words from configuration files that end up on command lines,
//! in remote shell commands and in local file names: host names, user
//! names, addresses, interfaces and remote paths.
//!
//! Each type only accepts a small, shell-inert alphabet and never a leading
//! `-` (which `ssh`, `scp` or `sudo` would read as an option). Values are
//! checked while the YAML is parsed, so an error names the field, line and
//! column. Callers still quote every word they pass to a remote shell:
//! validation is the second line of defence, not the only one.

use std::{fmt, net::IpAddr};

use serde::Deserialize;

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

fn no_leading_dash(kind: &str, s: &str) -> Result<(), String> {
    if s.starts_with('-') {
        return Err(format!("{kind} {s:?} starts with '-' (it would be read as an option)"));
    }
    Ok(())
}

fn only(kind: &str, s: &str, allowed: impl Fn(char) -> bool, alphabet: &str) -> Result<(), String> {
    if let Some(c) = s.chars().find(|c| !allowed(*c)) {
        return Err(format!("{kind} {s:?} contains {c:?}; allowed: {alphabet}"));
    }
    Ok(())
}

/// Visits a string and checks it while the deserializer still knows where
/// it is (an error raised after deserializing loses field and line).
pub(crate) struct CheckedStr(pub &'static str, pub fn(&str) -> Result<(), String>);

impl serde::de::Visitor<'_> for CheckedStr {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a string ({})", self.0)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        (self.1)(v).map_err(E::custom)?;
        Ok(v.to_owned())
    }
}

macro_rules! word {
    ($(#[$m:meta])* $name:ident, $check:path) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(CheckedStr(stringify!($name), $check)).map(Self)
            }
        }

        impl $name {
            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                $check(&s)?;
                Ok(Self(s))
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::try_from(s.to_owned())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

word!(
    /// A host's name: the `host` column, `--host-name`, the local folder
    /// `out/NAME`. 1–64 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit.
    HostName,
    check_host_name
);
word!(
    /// A login name for ssh: 1–32 of `a-z A-Z 0-9 . _ -`, not starting with `-`.
    UserName,
    check_user_name
);
word!(
    /// What ssh connects to: an IP address, or a DNS name / ssh-config alias
    /// of `A-Z a-z 0-9 . _ -` (at most 253), not starting with `-`.
    Address,
    check_address
);
word!(
    /// An interface as `netlat-capture -i` takes it, `[NETNS/]IFACE`: the
    /// interface 1–15 of `A-Z a-z 0-9 . _ - @`, the namespace (a name under
    /// /run/netns, `pid:N`, or a file path) of `A-Z a-z 0-9 . _ - : /`.
    Interface,
    check_interface
);
word!(
    /// A folder on a remote host, absolute or relative to the login folder:
    /// `A-Z a-z 0-9 . _ - /`, no `..` component, not starting with `-`.
    RemotePath,
    check_remote_path
);

/// Checks a host name (see [`HostName`]).
pub fn check_host_name(s: &str) -> Result<(), String> {
    let kind = "host name";
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{kind} {s:?} must be 1 to 64 characters"));
    }
    only(kind, s, |c| alnum(c) || matches!(c, '.' | '_' | '-'), "letters, digits, '.', '_', '-'")?;
    if !s.starts_with(alnum) {
        return Err(format!("{kind} {s:?} must start with a letter or digit"));
    }
    Ok(())
}

/// Checks a user name (see [`UserName`]).
pub fn check_user_name(s: &str) -> Result<(), String> {
    let kind = "user name";
    no_leading_dash(kind, s)?;
    if s.is_empty() || s.len() > 32 {
        return Err(format!("{kind} {s:?} must be 1 to 32 characters"));
    }
    only(kind, s, |c| alnum(c) || matches!(c, '.' | '_' | '-'), "letters, digits, '.', '_', '-'")
}

/// Checks an address (see [`Address`]).
pub fn check_address(s: &str) -> Result<(), String> {
    let kind = "address";
    if s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{kind} {s:?} must be an IP address or a name of 1 to 253 characters"));
    }
    no_leading_dash(kind, s)?;
    only(kind, s, |c| alnum(c) || matches!(c, '.' | '_' | '-'), "an IP address, or letters, digits, '.', '_', '-'")
}

/// Checks an interface (see [`Interface`]).
pub fn check_interface(s: &str) -> Result<(), String> {
    let kind = "interface";
    no_leading_dash(kind, s)?;
    let (ns, iface) = match s.rsplit_once('/') {
        Some((ns, iface)) => (Some(ns), iface),
        None => (None, s),
    };
    if iface.is_empty() || iface.len() > 15 {
        return Err(format!("{kind} {s:?}: the interface name must be 1 to 15 characters"));
    }
    only(kind, iface, |c| alnum(c) || matches!(c, '.' | '_' | '-' | '@'), "letters, digits, '.', '_', '-', '@'")?;
    if let Some(ns) = ns {
        if ns.is_empty() || ns.split('/').any(|c| c == "..") {
            return Err(format!("{kind} {s:?}: bad namespace part before '/'"));
        }
        only(
            kind,
            ns,
            |c| alnum(c) || matches!(c, '.' | '_' | '-' | ':' | '/'),
            "letters, digits, '.', '_', '-', ':', '/'",
        )?;
    }
    Ok(())
}

/// Checks a remote path (see [`RemotePath`]).
pub fn check_remote_path(s: &str) -> Result<(), String> {
    let kind = "remote path";
    if s.is_empty() || s.len() > 200 {
        return Err(format!("{kind} {s:?} must be 1 to 200 characters"));
    }
    no_leading_dash(kind, s)?;
    only(kind, s, |c| alnum(c) || matches!(c, '.' | '_' | '-' | '/'), "letters, digits, '.', '_', '-', '/'")?;
    if s.split('/').any(|c| c == "..") {
        return Err(format!("{kind} {s:?} must not contain '..'"));
    }
    Ok(())
}

impl RemotePath {
    /// `self/child`, `child` being a checked single component.
    pub fn join(&self, child: &str) -> Result<RemotePath, String> {
        if child.contains('/') || child == "." || child == ".." {
            return Err(format!("remote path component {child:?} is not a single name"));
        }
        RemotePath::try_from(format!("{}/{child}", self.0.trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &[&str] = &[
        "x; touch /tmp/pwned",
        "$(touch /tmp/pwned)",
        "`id`",
        "a b",
        "a'b",
        "a\"b",
        "-oProxyCommand=sh",
        "a\nb",
        "a|b",
        "a&b",
        "a>b",
        "a*",
        "~root",
        "",
    ];

    #[test]
    fn hostile_values_are_rejected_everywhere() {
        for h in HOSTILE {
            assert!(check_host_name(h).is_err(), "host name {h:?}");
            assert!(check_user_name(h).is_err(), "user {h:?}");
            assert!(check_address(h).is_err(), "address {h:?}");
            assert!(check_interface(h).is_err(), "interface {h:?}");
            assert!(check_remote_path(h).is_err(), "path {h:?}");
        }
    }

    #[test]
    fn ordinary_values_pass() {
        for h in ["node1", "web-01.example", "a", "A_b.c"] {
            check_host_name(h).unwrap();
        }
        assert!(check_host_name("-a").is_err());
        assert!(check_host_name(".hidden").is_err());
        assert!(check_host_name(&"a".repeat(65)).is_err());
        for u in ["root", "sonic", "svc.netlat", "a_b-c"] {
            check_user_name(u).unwrap();
        }
        for a in ["198.18.0.1", "::1", "fe80::1", "node1.lab", "my_alias"] {
            check_address(a).unwrap();
        }
        for i in ["eth0", "ns1/veth0", "pid:42/eth0", "/proc/1/ns/net/eth0", "br0.100", "veth@x"] {
            check_interface(i).unwrap();
        }
        for bad in ["ns/", "/", "waytoolonginterfacename", "../x/eth0"] {
            assert!(check_interface(bad).is_err(), "{bad}");
        }
        for p in ["netlat", "/var/tmp/netlat", "a/b/c", "./x"] {
            check_remote_path(p).unwrap();
        }
        assert!(check_remote_path("a/../b").is_err());
    }

    #[test]
    fn join_checks_the_component() {
        let p: RemotePath = "/var/tmp/netlat/".parse().unwrap();
        assert_eq!(p.join("run1").unwrap().as_str(), "/var/tmp/netlat/run1");
        assert!(p.join("..").is_err());
        assert!(p.join("a/b").is_err());
        assert!(p.join("a b").is_err());
    }
}
