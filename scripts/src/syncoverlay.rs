//! The clock-sync benchmark on vNetTracer's own topology (`conf/lab/overlay.yaml`):
//! containers c1, c2 on "VMs" vm1, vm2 that bridge them to a VXLAN tunnel over an underlay
//! veth. Four captures (`c1:eth0`, `vm1:{c1p,eth0}`, `vm2:{c2p,eth0}`, `c2:eth0`), each
//! with its own `--sim-clock`; sync probes c1↔vm1, c1↔c2, vm1↔vm2 (underlay), c2↔vm2; an
//! iperf3 TCP flow c1 → c2 beside a paced UDP flow c1 → c2. Every cross-host hop the
//! analyzer prints is then compared, packet by packet, with the truth ([`crate::truth`]).

use std::{path::PathBuf, process::Child, time::Duration};

use anyhow::{bail, Context as _};

use crate::{
    capture::Capture,
    topology::Running,
    traffic,
    truth::{self, Truth},
};

/// What to run.
#[derive(Clone, Debug)]
pub struct OverlayConfig {
    /// Output folder (captures in OUT/HOST).
    pub out: PathBuf,
    /// Seconds of traffic.
    pub duration: f64,
    /// UDP datagrams per second, c1 → c2.
    pub rate: u64,
    /// iperf3's target rate, Mbit/s (0: no iperf3 flow).
    pub tcp_mbps: u32,
    /// `--sim-clock` of c1, vm1, vm2, c2 (empty: the true clock).
    pub clocks: [String; 4],
    /// A busy loop on every CPU while the captures run.
    pub load: bool,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("out/syncbench-overlay"),
            duration: 10.0,
            rate: 500,
            tcp_mbps: 20,
            clocks: [
                String::new(),
                "offset=0.3s,drift=20ppm".into(),
                "offset=-0.4s,drift=-30ppm".into(),
                "offset=0.2s,drift=45ppm".into(),
            ],
            load: false,
        }
    }
}

/// Starts `args` inside `netns`, output discarded, tracked for teardown.
fn spawn_in(netns: &str, args: &[&str]) -> anyhow::Result<Child> {
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", netns])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting {args:?}"))?;
    crate::teardown::track_child(child.id());
    Ok(child)
}

/// Builds the overlay, captures, sends, and compares with the truth.
pub fn run(cfg: &OverlayConfig) -> anyhow::Result<Truth> {
    if cfg.out.exists() {
        std::fs::remove_dir_all(&cfg.out)?;
    }
    let lab = Running::up_named("overlay")?;
    let vms = &lab.topology.vms;
    let bridge =
        |i: usize| vms[i].bridge_addr.map(|b| b.addr.to_string()).context("overlay.yaml: the VMs need bridge_addr");
    let (vm1_br, vm2_br) = (bridge(0)?, bridge(1)?);
    let (c1, c2) = (lab.host("c1")?.clone(), lab.host("c2")?.clone());
    let vm2_under = vms[1].underlay.addr.to_string();
    let c2_addr = c2.addr.to_string();
    // (host, namespace, interfaces, peers)
    let plan: [(&str, &str, Vec<&str>, Vec<&str>); 4] = [
        ("c1", &c1.netns, vec!["eth0"], vec![&vm1_br, &c2_addr]),
        ("vm1", lab.netns("vm1")?, vec!["c1p", "eth0"], vec![&vm2_under]),
        ("vm2", lab.netns("vm2")?, vec!["c2p", "eth0"], vec![]),
        ("c2", &c2.netns, vec!["eth0"], vec![&vm2_br]),
    ];
    let load = cfg.load.then(traffic::BusyLoops::start);
    // Started together: each probes its peers from its start.
    let caps: Vec<anyhow::Result<Capture>> = std::thread::scope(|s| {
        let handles: Vec<_> = plan
            .iter()
            .zip(&cfg.clocks)
            .map(|((host, ns, ifaces, peers), sim)| {
                let dir = cfg.out.join(host);
                s.spawn(move || {
                    let mut args: Vec<&str> = vec!["--host-name", host, "-q"];
                    for i in ifaces {
                        args.extend(["-i", i]);
                    }
                    for p in peers {
                        args.extend(["--sync-peer", p]);
                    }
                    if !sim.is_empty() {
                        args.extend(["--sim-clock", sim]);
                    }
                    Capture::start(Some(ns), &dir, &args)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("capture start panicked")).collect()
    });
    let caps: Vec<Capture> = caps.into_iter().collect::<anyhow::Result<_>>()?;
    std::thread::sleep(Duration::from_secs(1));
    let mut procs = Vec::new();
    if cfg.tcp_mbps > 0 {
        procs.push(spawn_in(&c2.netns, &["iperf3", "-s", "-1", "-B", &c2_addr])?);
        std::thread::sleep(Duration::from_millis(500));
        let (secs, rate) = (format!("{}", cfg.duration.ceil() as u64), format!("{}M", cfg.tcp_mbps));
        procs.push(spawn_in(&c1.netns, &["iperf3", "-c", &c2_addr, "-b", &rate, "-t", &secs])?);
    }
    let dst = std::net::SocketAddrV4::new(c2.addr, 6001);
    let sink = traffic::UdpSink::start(&c2.netns, dst)?;
    traffic::udp_send(&c1.netns, dst, (cfg.duration * cfg.rate as f64) as u64, cfg.rate, 64)?;
    sink.finish()?;
    for mut p in procs {
        let status = p.wait()?;
        crate::teardown::untrack_child(p.id());
        if !status.success() {
            bail!("iperf3 failed ({status}): is iperf3 installed?");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    for (cap, (host, ..)) in caps.into_iter().zip(&plan) {
        let f = cap.stop()?;
        if f.code != Some(0) {
            bail!("capture on {host} failed ({:?}): {}", f.code, f.stderr);
        }
    }
    drop(load);
    drop(lab);
    truth::check(&cfg.out, &[])
}
