//! A lab of ssh hosts for netlat-collect's tests: a hub namespace with a
//! bridge (198.18.1.254/24, where the collector runs) and one namespace per
//! host (198.18.1.1, .2, ... on `eth0`), each running its own OpenSSH
//! server on its address. Host keys, the client key, `known_hosts` and an
//! ssh configuration are made in a temporary folder; nothing outside it is
//! read or changed, and host-key checking stays on.
//!
//! Dropping the lab kills every process in its namespaces (the sshd
//! servers and whatever they started) and deletes the namespaces, also when
//! a test panics.

use std::{
    fmt::Write as _,
    net::{Ipv4Addr, SocketAddrV4, TcpStream},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use xshell::{cmd, Shell};

use crate::{netns::run_in, topo::prefix};

/// The OpenSSH server binary (Debian's openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";

/// One host of the lab.
#[derive(Clone, Debug)]
pub struct SshHost {
    /// Its name in hosts.yaml.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    /// Its address (sshd listens on port 22 there).
    pub addr: Ipv4Addr,
    /// Its interface towards the hub.
    pub iface: String,
    /// Its folder for netlat's files (the hosts share this machine's disk).
    pub remote_dir: PathBuf,
}

/// The running lab.
pub struct SshLab {
    /// Temporary folder: keys, configurations, logs, the hosts' folders.
    pub dir: PathBuf,
    /// Namespace of the collector (with the bridge).
    pub hub: String,
    /// The hosts.
    pub hosts: Vec<SshHost>,
    sshd: Vec<Option<Child>>,
    namespaces: Vec<String>,
    _tmp: tempfile::TempDir,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl SshLab {
    /// Builds the hub and one host per name (addresses 198.18.1.1, .2, ...),
    /// each with sshd running and accepting connections.
    pub fn start(names: &[&str]) -> anyhow::Result<Self> {
        if !Path::new(SSHD).exists() {
            bail!("{SSHD} not found (apt-get install openssh-server; scripts/bootstrap does)");
        }
        let sh = Shell::new()?;
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let tmp = tempfile::Builder::new().prefix("netlat-sshlab-").tempdir()?;
        let dir = tmp.path().to_owned();
        let hub = format!("{}s{n}hub", prefix());
        let mut lab = SshLab {
            dir: dir.clone(),
            hub: hub.clone(),
            hosts: Vec::new(),
            sshd: Vec::new(),
            namespaces: Vec::new(),
            _tmp: tmp,
        };
        lab.add_netns(&sh, &hub)?;
        cmd!(sh, "ip -n {hub} link add br0 type bridge").quiet().run()?;
        cmd!(sh, "ip -n {hub} addr add 198.18.1.254/24 dev br0").quiet().run()?;
        cmd!(sh, "ip -n {hub} link set br0 up").quiet().run()?;
        for (i, name) in names.iter().enumerate() {
            let ns = format!("{}s{n}{name}", prefix());
            lab.add_netns(&sh, &ns)?;
            let addr = Ipv4Addr::new(198, 18, 1, i as u8 + 1);
            let peer = format!("v{name}");
            cmd!(sh, "ip link add eth0 netns {ns} type veth peer name {peer} netns {hub}").quiet().run()?;
            cmd!(sh, "ip -n {hub} link set {peer} master br0 up").quiet().run()?;
            let cidr = format!("{addr}/24");
            cmd!(sh, "ip -n {ns} addr add {cidr} dev eth0").quiet().run()?;
            cmd!(sh, "ip -n {ns} link set eth0 up").quiet().run()?;
            let remote_dir = dir.join(format!("remote-{name}"));
            lab.hosts.push(SshHost { name: name.to_string(), netns: ns, addr, iface: "eth0".into(), remote_dir });
        }
        lab.make_keys(&sh)?;
        // sshd's privilege-separation folder.
        std::fs::create_dir_all("/run/sshd")?;
        for i in 0..lab.hosts.len() {
            let child = lab.spawn_sshd(i)?;
            lab.sshd.push(Some(child));
        }
        for i in 0..lab.hosts.len() {
            lab.wait_listening(i)?;
        }
        Ok(lab)
    }

    fn add_netns(&mut self, sh: &Shell, ns: &str) -> anyhow::Result<()> {
        cmd!(sh, "ip netns add {ns}").quiet().run()?;
        self.namespaces.push(ns.to_owned());
        cmd!(sh, "ip -n {ns} link set lo up").quiet().run()?;
        for key in ["all", "default"] {
            let set = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            cmd!(sh, "ip netns exec {ns} sysctl -qw {set}").quiet().run()?;
        }
        Ok(())
    }

    fn make_keys(&self, sh: &Shell) -> anyhow::Result<()> {
        let d = &self.dir;
        let client = d.join("client_key");
        cmd!(sh, "ssh-keygen -q -t ed25519 -N '' -C netlat-test-client -f {client}").quiet().run()?;
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))?;
        let mut known = String::new();
        for h in &self.hosts {
            let key = d.join(format!("host_{}_key", h.name));
            cmd!(sh, "ssh-keygen -q -t ed25519 -N '' -C netlat-test-host -f {key}").quiet().run()?;
            let public = std::fs::read_to_string(d.join(format!("host_{}_key.pub", h.name)))?;
            let mut parts = public.split_whitespace();
            let (kind, blob) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            writeln!(known, "{} {kind} {blob}", h.addr)?;
            let config = format!(
                "ListenAddress {addr}\nPort 22\nHostKey {key}\nPidFile none\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPubkeyAuthentication yes\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPrintMotd no\n\
                 Subsystem sftp internal-sftp\nLogLevel VERBOSE\n",
                addr = h.addr,
                key = key.display(),
                d = d.display()
            );
            std::fs::write(d.join(format!("sshd_{}.conf", h.name)), config)?;
        }
        std::fs::write(d.join("known_hosts"), known)?;
        let config = format!(
            "Host *\n  User root\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  \
             UserKnownHostsFile {d}/known_hosts\n  GlobalKnownHostsFile /dev/null\n  \
             PasswordAuthentication no\n  KbdInteractiveAuthentication no\n  LogLevel ERROR\n",
            d = d.display()
        );
        std::fs::write(self.ssh_config(), config)?;
        Ok(())
    }

    fn spawn_sshd(&self, i: usize) -> anyhow::Result<Child> {
        let h = &self.hosts[i];
        let conf = self.dir.join(format!("sshd_{}.conf", h.name));
        let log = std::fs::File::create(self.dir.join(format!("sshd_{}.log", h.name)))?;
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &h.netns, SSHD, "-D", "-e", "-f"]).arg(&conf);
        c.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // SAFETY: prctl only; if the test process dies, so does the server.
        unsafe {
            c.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.spawn().with_context(|| format!("starting sshd for {}", h.name))
    }

    fn wait_listening(&mut self, i: usize) -> anyhow::Result<()> {
        let addr = SocketAddrV4::new(self.hosts[i].addr, 22);
        let t = Instant::now();
        loop {
            let up =
                run_in(&self.hub, || TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok())?;
            if up {
                return Ok(());
            }
            if let Some(Some(c)) = self.sshd.get_mut(i) {
                if let Some(status) = c.try_wait()? {
                    bail!("sshd for {} exited ({status}): {}", self.hosts[i].name, self.sshd_log(i));
                }
            }
            if t.elapsed() > Duration::from_secs(10) {
                bail!("sshd for {} not listening on {addr} after 10 s: {}", self.hosts[i].name, self.sshd_log(i));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What host `i`'s sshd logged.
    pub fn sshd_log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("sshd_{}.log", self.hosts[i].name))).unwrap_or_default()
    }

    /// The ssh configuration the collector uses (`ssh -F`).
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// A hosts.yaml for the lab: every host as root on its `eth0`, with
    /// its own remote folder.
    pub fn hosts_yaml(&self) -> String {
        let mut s = String::from("# written by lab::sshlab\nhosts:\n");
        for h in &self.hosts {
            let _ = write!(
                s,
                "  - name: {}\n    address: {}\n    user: root\n    interfaces: [{}]\n    remote_dir: {}\n",
                h.name,
                h.addr,
                h.iface,
                h.remote_dir.display()
            );
        }
        s
    }

    /// Stops host `i` as a crash would: kills every process in its
    /// namespace (sshd, its sessions, a running capture). Nothing answers
    /// on its address afterwards.
    pub fn stop_host(&mut self, i: usize) -> anyhow::Result<()> {
        kill_all_in(&self.hosts[i].netns)?;
        if let Some(mut c) = self.sshd[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// A command run in the hub namespace (where the collector runs).
    pub fn in_hub(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.hub]).arg(program);
        c
    }
}

/// SIGKILLs the processes in namespace `ns` (by pid, as `ip netns pids` lists them).
fn kill_all_in(ns: &str) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    for _ in 0..5 {
        let pids = cmd!(sh, "ip netns pids {ns}").quiet().ignore_status().read()?;
        let pids: Vec<i32> = pids.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if pids.is_empty() {
            return Ok(());
        }
        for p in pids {
            // SAFETY: plain kill(2) of a process in the lab's own namespace.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

impl Drop for SshLab {
    fn drop(&mut self) {
        for c in self.sshd.iter_mut().filter_map(Option::take) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = kill_all_in(ns);
        }
        if let Ok(sh) = Shell::new() {
            for ns in self.namespaces.drain(..).rev() {
                let _ = cmd!(sh, "ip netns del {ns}").quiet().ignore_status().run();
            }
        }
    }
}
