//! What runs on a host: the constant `sh` scripts and the steps built on
//! them (prepare the folder, install the binary, start the capture, list
//! its files). Configured values reach the scripts only as positional
//! arguments (`$1`, `$2`, ...), see [`super::ssh`].

use std::path::Path;

use conf::hosts::{Address, HostConf, RemotePath};

use super::{
    ssh::{run_retrying, Argv, Done, SshSetup, Target},
    HostError,
};

/// `$1` base folder, `$2` sha256 of the binary. Creates the folders and
/// reports the resolved folder, the machine, and whether the binary is
/// already there (content-addressed name, checked again by checksum).
pub const PREPARE: &str = r#"set -eu
umask 027
mkdir -p -- "$1/bin" "$1/runs"
cd -- "$1"
printf 'dir %s\n' "$(pwd -P)"
printf 'machine %s\n' "$(uname -m)"
printf 'kernel %s\n' "$(uname -r)"
b="bin/netlat-capture-$2"
if [ -x "$b" ] && [ "$(sha256sum < "$b")" = "$2  -" ]; then echo 'binary present'; else echo 'binary absent'; fi
"#;

/// `$1` uploaded file, `$2` final name, `$3` expected sha256. Installs the
/// binary only if the upload is complete; a broken one is removed.
pub const INSTALL: &str = r#"set -eu
umask 027
got=$(sha256sum < "$1")
if [ "$got" != "$3  -" ]; then
  rm -f -- "$1"
  echo "uploaded binary has sha256 ${got%% *}, expected $3 (copy cut short?)" >&2
  exit 1
fi
chmod 0750 -- "$1"
mv -f -- "$1" "$2"
"#;

/// `$1` run folder, then the capture's argv. The folder is setgid so that
/// files a root capture writes (mode 0640) belong to the login's group and
/// can be copied back without root; umask 027: nothing is world-readable.
pub const START: &str = r#"umask 027
mkdir -p -- "$1" && chmod 2750 -- "$1" || exit 97
shift
exec "$@"
"#;

/// `$1` run folder: `SIZE SHA256 NAME` per finished file (events, clock-sync
/// stamps, run metadata). Files still being written are hidden
/// (`.NAME.partial`) and not listed.
pub const LIST: &str = r#"cd -- "$1" || exit 3
for f in *.events.parquet *.sync.parquet *.meta.json; do
  [ -f "$f" ] || continue
  printf '%s %s %s\n' "$(($(wc -c < "$f")))" "$(sha256sum < "$f" | cut -d' ' -f1)" "$f"
done
"#;

/// `$1` run folder: removed once every file is home (`--remove-remote`).
pub const REMOVE: &str = r#"rm -rf -- "$1""#;

/// Every remote script by name (for `--dry-run`).
pub const SCRIPTS: [(&str, &str); 5] =
    [("PREPARE", PREPARE), ("INSTALL", INSTALL), ("START", START), ("LIST", LIST), ("REMOVE", REMOVE)];

/// A host's folder, as found by [`prepare`].
#[derive(Clone, Debug)]
pub struct Prepared {
    /// Absolute base folder.
    pub dir: RemotePath,
    /// `uname -m`.
    pub machine: String,
    /// `uname -r`.
    pub kernel: String,
    /// The binary with this checksum is installed already.
    pub binary_present: bool,
}

/// A finished file on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteFile {
    /// File name (checked: a plain name netlat-capture writes).
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// Lowercase hex sha256.
    pub sha256: String,
}

/// The ssh target of a configured host.
pub fn target(h: &HostConf) -> Target<'_> {
    Target { address: &h.address, port: h.port, user: h.user.as_ref() }
}

fn ssh_argv(ssh: &SshSetup, h: &HostConf, script: &str, args: &[&str]) -> Result<Argv, HostError> {
    ssh.ssh_script(&target(h), script, args).map_err(|e| HostError::Argument(e.to_string()))
}

fn run_ssh(what: &'static str, argv: &Argv, tries: u32) -> Result<Done, HostError> {
    let (d, n) =
        run_retrying(argv, tries, Done::ssh_failed_transiently).map_err(|e| HostError::Spawn { what, source: e })?;
    if d.ok() {
        Ok(d)
    } else if d.ssh_failed() {
        Err(HostError::Ssh { what, tries: n, reason: d.reason() })
    } else {
        Err(HostError::Remote { what, reason: d.reason() })
    }
}

/// Name of the installed binary for a checksum.
pub fn binary_name(sha: &str) -> String {
    format!("netlat-capture-{sha}")
}

/// The argv of [`prepare`] (for `--dry-run`).
pub fn prepare_argv(ssh: &SshSetup, h: &HostConf, base: &RemotePath, sha: &str) -> Result<Argv, HostError> {
    ssh_argv(ssh, h, PREPARE, &[base.as_str(), sha])
}

/// Creates the host's folders and looks for an installed binary.
pub fn prepare(ssh: &SshSetup, h: &HostConf, base: &RemotePath, sha: &str, tries: u32) -> Result<Prepared, HostError> {
    let d = run_ssh("connecting and preparing the folder", &prepare_argv(ssh, h, base, sha)?, tries)?;
    let field =
        |k: &str| d.stdout.lines().find_map(|l| l.strip_prefix(k).and_then(|r| r.strip_prefix(' '))).map(str::to_owned);
    let bad = |line: String| HostError::BadReply { what: "preparing the folder", line };
    let dir = field("dir").ok_or_else(|| bad(d.stdout.clone()))?;
    let dir: RemotePath = dir.parse().map_err(|e: String| HostError::Remote {
        what: "preparing the folder",
        reason: format!("the folder resolves to a path netlat does not use: {e}"),
    })?;
    let machine = field("machine").unwrap_or_default();
    if machine != "x86_64" {
        return Err(HostError::Remote {
            what: "checking the machine",
            reason: format!("machine is {machine:?}; netlat-capture is built for x86_64"),
        });
    }
    Ok(Prepared {
        dir,
        machine,
        kernel: field("kernel").unwrap_or_default(),
        binary_present: d.stdout.lines().any(|l| l == "binary present"),
    })
}

/// Copies the binary as a hidden partial file and installs it only if its
/// checksum matches, retrying a cut copy up to `tries` times.
pub fn upload(
    ssh: &SshSetup,
    h: &HostConf,
    local: &Path,
    dir: &RemotePath,
    sha: &str,
    tries: u32,
) -> Result<(), HostError> {
    let (partial, fin) = upload_paths(dir, sha)?;
    let copy = ssh.scp_to(&target(h), local, partial.as_str());
    let install = ssh_argv(ssh, h, INSTALL, &[partial.as_str(), fin.as_str(), sha])?;
    let mut last = String::new();
    for n in 1..=tries {
        if n > 1 {
            std::thread::sleep(std::time::Duration::from_secs(1 << (n - 2).min(4)));
        }
        let d = super::ssh::run(&copy).map_err(|e| HostError::Spawn { what: "scp", source: e })?;
        if !d.ok() {
            last = format!("scp: {}", d.reason());
            continue;
        }
        match run_ssh("installing the binary", &install, 1) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(HostError::Copy { what: "copying netlat-capture".into(), tries, reason: last })
}

/// Partial and final remote names of the binary.
pub fn upload_paths(dir: &RemotePath, sha: &str) -> Result<(RemotePath, RemotePath), HostError> {
    let bin = dir.join("bin").map_err(HostError::Argument)?;
    let partial = bin.join(&format!(".{}.partial", binary_name(sha))).map_err(HostError::Argument)?;
    let fin = bin.join(&binary_name(sha)).map_err(HostError::Argument)?;
    Ok((partial, fin))
}

/// The install step's argv (for `--dry-run`).
pub fn install_argv(ssh: &SshSetup, h: &HostConf, dir: &RemotePath, sha: &str) -> Result<Argv, HostError> {
    let (partial, fin) = upload_paths(dir, sha)?;
    ssh_argv(ssh, h, INSTALL, &[partial.as_str(), fin.as_str(), sha])
}

/// Everything a capture command needs.
#[derive(Clone, Debug)]
pub struct CaptureSpec<'a> {
    /// Installed binary (absolute).
    pub bin: &'a str,
    /// Run folder (absolute).
    pub run_dir: &'a str,
    /// The host.
    pub host: &'a HostConf,
    /// `--duration`, seconds.
    pub duration: f64,
    /// `--sync-peer` addresses (empty: no clock sync flags).
    pub sync_peers: Vec<&'a Address>,
    /// `--sync-port`.
    pub sync_port: Option<u16>,
    /// More netlat-capture options, before the filter.
    pub extra: &'a [String],
    /// Filter expression.
    pub filter: Option<&'a str>,
}

/// Path of the ready file in a run folder.
pub fn ready_file(run_dir: &str) -> String {
    format!("{run_dir}/.ready")
}

/// The remote capture as argv words (run folder first, for [`START`]).
pub fn capture_words(s: &CaptureSpec) -> Vec<String> {
    let mut w: Vec<String> = vec![s.run_dir.into()];
    if s.host.use_sudo() {
        w.extend(["sudo".into(), "-n".into(), "--".into()]);
    }
    w.push(s.bin.into());
    w.extend(["-w".into(), s.run_dir.into(), "--ready-file".into(), ready_file(s.run_dir)]);
    w.extend(["--host-name".into(), s.host.name.to_string(), "--duration".into(), s.duration.to_string(), "-q".into()]);
    for i in &s.host.interfaces {
        w.extend(["-i".into(), i.to_string()]);
    }
    for p in &s.sync_peers {
        w.extend(["--sync-peer".into(), p.to_string()]);
    }
    if let (false, Some(port)) = (s.sync_peers.is_empty(), s.sync_port) {
        w.extend(["--sync-port".into(), port.to_string()]);
    }
    w.extend(s.extra.iter().cloned());
    if let Some(f) = s.filter {
        w.push(f.into());
    }
    w
}

/// ssh argv that starts the capture and stays until it ends.
pub fn capture_argv(ssh: &SshSetup, s: &CaptureSpec) -> Result<Argv, HostError> {
    let words = capture_words(s);
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    ssh_argv(ssh, s.host, START, &refs)
}

/// The listing step's argv.
pub fn list_argv(ssh: &SshSetup, h: &HostConf, run_dir: &str) -> Result<Argv, HostError> {
    ssh_argv(ssh, h, LIST, &[run_dir])
}

/// Finished files in `run_dir` with their sizes and checksums.
pub fn list(ssh: &SshSetup, h: &HostConf, run_dir: &str, tries: u32) -> Result<Vec<RemoteFile>, HostError> {
    let d = run_ssh("listing the capture files", &list_argv(ssh, h, run_dir)?, tries)?;
    d.stdout.lines().filter(|l| !l.is_empty()).map(parse_listing).collect()
}

/// One `SIZE SHA256 NAME` line. The host is not trusted: names must be
/// plain file names of the kinds netlat-capture writes.
pub fn parse_listing(line: &str) -> Result<RemoteFile, HostError> {
    let bad = || HostError::BadReply { what: "listing the capture files", line: line.to_owned() };
    let mut it = line.splitn(3, ' ');
    let size = it.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let sha256 = it.next().filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).ok_or_else(bad)?;
    let name = it.next().ok_or_else(bad)?;
    let plain = name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && [".events.parquet", ".sync.parquet", ".meta.json"].iter().any(|k| name.ends_with(k));
    if !plain || name.len() > 200 {
        return Err(bad());
    }
    Ok(RemoteFile { name: name.to_owned(), size, sha256: sha256.to_ascii_lowercase() })
}

/// Removes a run folder on the host.
pub fn remove(ssh: &SshSetup, h: &HostConf, run_dir: &str, tries: u32) -> Result<(), HostError> {
    run_ssh("removing the remote run folder", &ssh_argv(ssh, h, REMOVE, &[run_dir])?, tries).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conf::hosts::HostsConf;

    fn conf() -> HostsConf {
        HostsConf::parse(
            Path::new("hosts.yaml"),
            "sync: true\nsync_port: 9\nhosts:\n  - name: a\n    address: 198.18.1.1\n    user: netlat\n    interfaces: [eth0, ns1/veth0]\n  \
             - name: b\n    address: 198.18.1.2\n    user: root\n    interfaces: [eth0]\n",
        )
        .unwrap()
    }

    #[test]
    fn capture_command_has_interfaces_sudo_peers_and_filter_last() {
        let c = conf();
        let extra = vec!["--sample".to_owned(), "10".to_owned()];
        let spec = CaptureSpec {
            bin: "/h/netlat/bin/netlat-capture-abc",
            run_dir: "/h/netlat/runs/r1",
            host: &c.hosts[0],
            duration: 2.5,
            sync_peers: c.sync_peers(&c.hosts[0]),
            sync_port: c.sync_port,
            extra: &extra,
            filter: Some("udp and port 5001"),
        };
        assert_eq!(
            capture_words(&spec).join(" "),
            "/h/netlat/runs/r1 sudo -n -- /h/netlat/bin/netlat-capture-abc -w /h/netlat/runs/r1 \
             --ready-file /h/netlat/runs/r1/.ready --host-name a --duration 2.5 -q -i eth0 -i ns1/veth0 \
             --sync-peer 198.18.1.2 --sync-port 9 --sample 10 udp and port 5001"
        );
        let root = CaptureSpec { host: &c.hosts[1], sync_peers: vec![], filter: None, extra: &[], ..spec };
        let w = capture_words(&root);
        assert_eq!(w[1], "/h/netlat/bin/netlat-capture-abc", "root needs no sudo");
        assert!(!w.iter().any(|x| x.starts_with("--sync")), "{w:?}");
    }

    #[test]
    fn scripts_run_under_a_real_sh() {
        // The scripts are plain POSIX sh: run them here on a temp folder.
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base dir");
        let sh = |script: &str, args: &[&str]| {
            std::process::Command::new("sh").arg("-c").arg(script).arg("sh").args(args).output().unwrap()
        };
        let sha = "0".repeat(64);
        let out = sh(PREPARE, &[base.to_str().unwrap(), &sha]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        assert!(text.contains("machine x86_64") && text.contains("binary absent"), "{text}");
        assert!(base.join("bin").is_dir() && base.join("runs").is_dir());

        let run = base.join("runs/r1");
        let run_s = run.to_str().unwrap();
        let out =
            sh(START, &[run_s, "sh", "-c", "echo data > \"$0/x.events.parquet\"; touch \"$0/.p.partial\"", run_s]);
        assert!(out.status.success(), "{out:?}");
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&run).unwrap().permissions().mode() & 0o7777, 0o2750);
        assert_eq!(std::fs::metadata(run.join("x.events.parquet")).unwrap().permissions().mode() & 0o777, 0o640);

        let out = sh(LIST, &[run_s]);
        let files: Vec<RemoteFile> =
            String::from_utf8_lossy(&out.stdout).lines().map(|l| parse_listing(l).unwrap()).collect();
        assert_eq!(files.len(), 1, "partial files are not listed");
        assert_eq!(files[0].name, "x.events.parquet");
        assert_eq!(files[0].size, 5);
        assert_eq!(files[0].sha256, super::super::pull::sha256_file(&run.join("x.events.parquet")).unwrap());

        // INSTALL refuses a file whose checksum differs, and removes it.
        let up = base.join("bin/.up");
        std::fs::write(&up, b"cut").unwrap();
        let out = sh(INSTALL, &[up.to_str().unwrap(), base.join("bin/final").to_str().unwrap(), &sha]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("copy cut short"));
        assert!(!up.exists() && !base.join("bin/final").exists());
    }

    #[test]
    fn hostile_listings_are_refused() {
        let sha = "a".repeat(64);
        parse_listing(&format!("12 {sha} h-r-00001.events.parquet")).unwrap();
        parse_listing(&format!("12 {sha} h-r-00001.sync.parquet")).unwrap();
        for name in
            ["../x.events.parquet", ".hidden.meta.json", "a b.meta.json", "x.sh", "-x.meta.json", "a/b.meta.json"]
        {
            assert!(parse_listing(&format!("12 {sha} {name}")).is_err(), "{name}");
        }
        assert!(parse_listing("12 nothex x.meta.json").is_err());
        assert!(parse_listing(&format!("-1 {sha} x.meta.json")).is_err());
    }
}
