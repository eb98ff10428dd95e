//! `netlat-lab topologies | check | up | run`: the named topologies of
//! `conf/lab/` from the command line.

use std::{
    io::Write as _,
    os::unix::process::ExitStatusExt as _,
    process::{Command, ExitStatus},
    time::Duration,
};

use anyhow::{bail, Context as _};
use conf::lab::Topology;

use crate::{netns::is_root, teardown, topo, topology, topology::Running};

/// Lists the topology files: name, kind, description.
pub fn topologies() -> anyhow::Result<()> {
    for p in topology::list()? {
        match Topology::load(&p) {
            Ok(t) => println!("{:<10} {:<8} {}", t.name, t.kind.to_string(), t.description),
            Err(e) => println!("{:<10} INVALID  {e}", p.file_stem().unwrap_or_default().to_string_lossy()),
        }
    }
    Ok(())
}

/// Validates every topology file and looks for the tools the lab uses.
/// Fails on an invalid file or a missing tool.
pub fn check() -> anyhow::Result<()> {
    let mut bad = 0;
    for p in topology::list()? {
        match Topology::load(&p) {
            Ok(t) => println!("ok       {} ({}, {} hosts)", p.display(), t.kind, t.endpoints().len()),
            Err(e) => {
                bad += 1;
                println!("INVALID  {e}");
            }
        }
    }
    for (tool, args) in [("ip", "-V"), ("tc", "-V"), ("iperf3", "--version")] {
        match Command::new(tool).arg(args).output() {
            Ok(_) => println!("ok       {tool}"),
            Err(e) => {
                bad += 1;
                println!("MISSING  {tool}: {e}");
            }
        }
    }
    let tun = std::path::Path::new("/dev/net/tun").exists();
    println!("{}  /dev/net/tun (relay topology)", if tun { "ok     " } else { "MISSING" });
    println!("{}  root", if is_root() { "ok     " } else { "NO     " });
    if !tun {
        bad += 1;
    }
    if bad > 0 {
        bail!("{bad} problem(s)");
    }
    Ok(())
}

fn start(name: &str, delay_us: Option<u64>) -> anyhow::Result<Running> {
    if !is_root() {
        bail!("the lab needs root (network namespaces)");
    }
    topo::cleanup_stale()?;
    let mut t = Topology::load(&topology::find(name)?)?;
    if let Some(d) = delay_us {
        let r = t.router.as_mut().with_context(|| format!("--delay-us: topology {} has no relay", t.name))?;
        anyhow::ensure!(d <= 1_000_000, "--delay-us: {d} µs is more than 1 s");
        r.delay_us = d;
    }
    teardown::catch_signals();
    Running::up(&t).with_context(|| format!("building topology {}", t.name))
}

/// Builds the topology, prints its namespaces and `ready`, and tears it
/// down on SIGINT, SIGTERM or SIGHUP.
pub fn up(name: &str, delay_us: Option<u64>) -> anyhow::Result<()> {
    let lab = start(name, delay_us)?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", lab.describe())?;
    writeln!(out, "ready (Ctrl-C or SIGTERM tears it down)")?;
    out.flush()?;
    drop(out);
    while teardown::signalled().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(lab);
    eprintln!("netlat-lab: torn down");
    Ok(())
}

/// Environment variable naming `what` of `name`: `NETLAT_LAB_<NAME>_<WHAT>`.
pub fn env_name(name: &str, what: &str) -> String {
    format!("NETLAT_LAB_{}_{what}", name.to_ascii_uppercase())
}

/// Builds the topology, runs `cmd` with `NETLAT_LAB_<NAME>_NS` (every
/// namespace) and `NETLAT_LAB_<HOST>_ADDR` set, and tears it down when the
/// command ends or a signal arrives (the command gets SIGTERM). Returns the
/// command's exit code (128 + signal when killed).
pub fn run(name: &str, delay_us: Option<u64>, cmd: &[String]) -> anyhow::Result<i32> {
    let (prog, args) = cmd.split_first().context("no command after --")?;
    let lab = start(name, delay_us)?;
    eprint!("{}", lab.describe());
    let mut c = Command::new(prog);
    c.args(args);
    for (n, ns) in &lab.namespaces {
        c.env(env_name(n, "NS"), ns);
    }
    for h in &lab.hosts {
        c.env(env_name(&h.name, "ADDR"), h.addr.to_string()).env(env_name(&h.name, "IFACE"), &h.iface);
    }
    let mut child = c.spawn().with_context(|| format!("starting {prog}"))?;
    let status: ExitStatus = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if teardown::signalled().is_some() {
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(lab);
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
