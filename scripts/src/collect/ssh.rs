//! ssh and scp command lines, and running them.
//!
//! Programs run without a local shell (xshell passes each argument as is).
//! The one string a shell parses is the remote command ssh sends: it is
//! always `sh -c SCRIPT sh ARG...` with every word single-quoted, the
//! script a constant of this crate and every configured value a separate
//! positional argument. Host names, users and paths from YAML never become
//! part of a script's text.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use conf::hosts::{Address, UserName};
use xshell::Shell;

use super::quote::{sh_join, NulInArgument};

/// A program and its arguments.
pub type Argv = Vec<OsString>;

/// How to reach hosts: the ssh and scp programs and common options.
#[derive(Clone, Debug)]
pub struct SshSetup {
    /// The ssh program.
    pub ssh: PathBuf,
    /// The scp program.
    pub scp: PathBuf,
    /// `-F FILE`; default: ssh's own (~/.ssh/config).
    pub config: Option<PathBuf>,
    /// Seconds to wait for a connection.
    pub connect_timeout: u32,
    /// `StrictHostKeyChecking=accept-new` instead of `yes`: learn keys of
    /// hosts not yet in known_hosts, still refuse changed ones.
    pub accept_new_host_keys: bool,
}

/// One host as ssh sees it.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// Address, DNS name or ssh-config alias.
    pub address: &'a Address,
    /// Port.
    pub port: u16,
    /// Login, if not ssh's default.
    pub user: Option<&'a UserName>,
}

/// What a finished command left.
#[derive(Debug)]
pub struct Done {
    /// Exit code; None when killed by a signal.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Done {
    /// Exited with 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// ssh's own failure (cannot connect, connection lost, host key),
    /// as opposed to the remote command's exit code.
    pub fn ssh_failed(&self) -> bool {
        self.code == Some(255)
    }

    /// An ssh failure worth another try: not a refused host key or login,
    /// which no retry can fix.
    pub fn ssh_failed_transiently(&self) -> bool {
        const FINAL: [&str; 4] = [
            "Host key verification failed",
            "REMOTE HOST IDENTIFICATION HAS CHANGED",
            "Permission denied",
            "No matching host key type",
        ];
        self.ssh_failed() && !FINAL.iter().any(|f| self.stderr.contains(f))
    }

    /// The last non-empty line of stderr, or the exit status: for reports.
    pub fn reason(&self) -> String {
        let last = self.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty());
        match (last, self.code) {
            (Some(l), _) => l.to_owned(),
            (None, Some(c)) => format!("exit code {c}"),
            (None, None) => "killed by a signal".into(),
        }
    }
}

impl From<Output> for Done {
    fn from(o: Output) -> Self {
        Done {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl SshSetup {
    /// Options for both ssh and scp. Host-key checking stays on; BatchMode
    /// makes ssh fail instead of asking for a password or a passphrase.
    fn common(&self) -> Argv {
        let mut v: Argv = Vec::new();
        if let Some(f) = &self.config {
            v.push("-F".into());
            v.push(f.into());
        }
        let strict = if self.accept_new_host_keys { "accept-new" } else { "yes" };
        for o in [
            "BatchMode=yes".to_owned(),
            format!("StrictHostKeyChecking={strict}"),
            format!("ConnectTimeout={}", self.connect_timeout),
            // A host that stops answering is noticed within ~15 s.
            "ServerAliveInterval=5".to_owned(),
            "ServerAliveCountMax=3".to_owned(),
        ] {
            v.push("-o".into());
            v.push(o.into());
        }
        v
    }

    /// `ssh ... -- HOST 'sh' '-c' 'SCRIPT' 'sh' 'ARG'...`: runs a constant
    /// `script` with `args` as `$1`, `$2`, ... under the remote `sh`.
    pub fn ssh_script(&self, t: &Target, script: &str, args: &[&str]) -> Result<Argv, NulInArgument> {
        let mut words = vec!["sh", "-c", script, "sh"];
        words.extend_from_slice(args);
        let line = sh_join(&words)?;
        let mut v: Argv = vec![self.ssh.clone().into()];
        v.extend(self.common());
        v.extend(["-n".into(), "-T".into(), "-p".into(), t.port.to_string().into()]);
        if let Some(u) = t.user {
            v.extend(["-l".into(), u.as_str().into()]);
        }
        // `--`: nothing after it is an option, whatever the address says.
        v.extend(["--".into(), t.address.as_str().into(), line.into()]);
        Ok(v)
    }

    fn scp_base(&self, t: &Target) -> Argv {
        let mut v: Argv = vec![self.scp.clone().into()];
        v.extend(self.common());
        v.extend(["-q".into(), "-P".into(), t.port.to_string().into()]);
        if let Some(u) = t.user {
            // As an option, not `user@host:`, so nothing is parsed out of it.
            v.extend(["-o".into(), format!("User={u}").into()]);
        }
        v.push("--".into());
        v
    }

    /// `HOST:PATH` for scp; IPv6 addresses in brackets.
    fn remote_spec(t: &Target, path: &str) -> OsString {
        let a = t.address.as_str();
        if a.contains(':') {
            format!("[{a}]:{path}").into()
        } else {
            format!("{a}:{path}").into()
        }
    }

    /// Copies local `src` (absolute, so scp never reads it as `host:path`) to `dst` on the host.
    pub fn scp_to(&self, t: &Target, src: &Path, dst: &str) -> Argv {
        assert!(src.is_absolute(), "scp source {} must be absolute", src.display());
        let mut v = self.scp_base(t);
        v.extend([src.into(), Self::remote_spec(t, dst)]);
        v
    }

    /// Copies `src` on the host to local `dst` (absolute).
    pub fn scp_from(&self, t: &Target, src: &str, dst: &Path) -> Argv {
        assert!(dst.is_absolute(), "scp destination {} must be absolute", dst.display());
        let mut v = self.scp_base(t);
        v.extend([Self::remote_spec(t, src), dst.into()]);
        v
    }
}

/// Runs `argv` to completion, no shell, stdin empty.
pub fn run(argv: &Argv) -> std::io::Result<Done> {
    let sh = Shell::new().map_err(std::io::Error::other)?;
    let cmd = sh.cmd(&argv[0]).args(&argv[1..]).quiet().ignore_status();
    let out = std::process::Command::from(cmd).stdin(std::process::Stdio::null()).output()?;
    Ok(out.into())
}

/// Runs `argv` up to `tries` times while `retry` says the failure is
/// worth another try, waiting 1 s, 2 s, 4 s... between tries.
pub fn run_retrying(argv: &Argv, tries: u32, retry: impl Fn(&Done) -> bool) -> std::io::Result<(Done, u32)> {
    let mut n = 1;
    loop {
        let d = run(argv)?;
        if d.ok() || n >= tries || !retry(&d) {
            return Ok((d, n));
        }
        std::thread::sleep(Duration::from_secs(1 << (n - 1).min(4)));
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::quote::display;

    fn setup() -> SshSetup {
        SshSetup {
            ssh: "ssh".into(),
            scp: "scp".into(),
            config: Some("/t/ssh_config".into()),
            connect_timeout: 7,
            accept_new_host_keys: false,
        }
    }

    #[test]
    fn ssh_line_keeps_values_out_of_the_script() {
        let addr: Address = "198.18.1.1".parse().unwrap();
        let user: UserName = "netlat".parse().unwrap();
        let t = Target { address: &addr, port: 2222, user: Some(&user) };
        let argv = setup().ssh_script(&t, "echo \"$1\"", &["x; touch /tmp/p", "it's"]).unwrap();
        let shown = display(&argv);
        assert!(
            shown.starts_with(
                "ssh -F /t/ssh_config -o BatchMode=yes -o StrictHostKeyChecking=yes -o ConnectTimeout=7 \
                 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 -n -T -p 2222 -l netlat -- 198.18.1.1 '"
            ),
            "{shown}"
        );
        // The remote line itself, as the remote shell sees it:
        let line = argv.last().unwrap().to_str().unwrap();
        assert_eq!(line, r#"'sh' '-c' 'echo "$1"' 'sh' 'x; touch /tmp/p' 'it'\''s'"#);
    }

    #[test]
    fn scp_passes_user_as_option_and_brackets_ipv6() {
        let addr: Address = "fd00::1".parse().unwrap();
        let user: UserName = "root".parse().unwrap();
        let t = Target { address: &addr, port: 22, user: Some(&user) };
        let mut s = setup();
        s.accept_new_host_keys = true;
        let argv = s.scp_from(&t, "/r/f.parquet", Path::new("/l/.f.parquet.partial"));
        let shown = display(&argv);
        assert!(shown.contains("StrictHostKeyChecking=accept-new"), "{shown}");
        assert!(shown.ends_with("-q -P 22 -o User=root -- '[fd00::1]:/r/f.parquet' /l/.f.parquet.partial"), "{shown}");
    }

    #[test]
    #[should_panic(expected = "must be absolute")]
    fn relative_local_paths_are_refused() {
        let addr: Address = "h".parse().unwrap();
        let t = Target { address: &addr, port: 22, user: None };
        setup().scp_to(&t, Path::new("a:b"), "/x");
    }

    #[test]
    fn retries_are_bounded() {
        let argv: Argv = vec!["false".into()];
        let t = std::time::Instant::now();
        let (d, n) = run_retrying(&argv, 2, |_| true).unwrap();
        assert_eq!((d.code, n), (Some(1), 2));
        assert!(t.elapsed() >= Duration::from_secs(1));
        let (_, n) = run_retrying(&argv, 5, |_| false).unwrap();
        assert_eq!(n, 1);
    }
}
