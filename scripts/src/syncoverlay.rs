//! The clock-sync benchmark on multi-hop topologies, every cross-host hop the analyzer
//! prints compared packet by packet with the truth ([`crate::truth`]):
//!
//! * [`Shape::Overlay`], vNetTracer's own (`conf/lab/overlay.yaml`): containers c1, c2 on
//!   "VMs" vm1, vm2 that bridge them to a VXLAN tunnel over an underlay veth. Four captures
//!   (`c1:eth0`, `vm1:{c1p,eth0}`, `vm2:{c2p,eth0}`, `c2:eth0`); sync probes c1↔vm1,
//!   c1↔c2, vm1↔vm2 (underlay), c2↔vm2; an iperf3 TCP flow c1 → c2 beside a paced UDP flow
//!   c1 → c2.
//! * [`Shape::Chain`]: a, r, b routed (`conf/lab/relay.yaml`, its relay at no added delay).
//!   Three captures (`a:eth0`, `r:{toa,tob}`, `b:eth0`); probes a↔r, r↔b, a↔b; UDP a → b,
//!   and an iperf3 TCP flow from a to r itself: load on one side of the router only.
//!
//! Each capture has its own `--sim-clock`; a busy loop on every CPU with `load`.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context as _};
use conf::lab::Topology;

use crate::{
    capture::{finish_all, start_all, Start},
    netns::spawn_in,
    syncbench::END_MARGIN_S,
    topology::{self, Running},
    traffic,
    truth::{self, Truth},
};

/// Which topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Containers on two VMs over VXLAN.
    Overlay,
    /// Two hosts routed through a third.
    Chain,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct OverlayConfig {
    /// The topology.
    pub shape: Shape,
    /// Output folder (captures in OUT/HOST).
    pub out: PathBuf,
    /// Seconds of traffic.
    pub duration: f64,
    /// UDP datagrams per second along the topology.
    pub rate: u64,
    /// iperf3's target rate, Mbit/s (0: no iperf3 flow).
    pub tcp_mbps: u32,
    /// `--sim-clock` of each capture, in the order of the shape's hosts (empty: the true
    /// clock; missing: the true clock).
    pub clocks: Vec<String>,
    /// A busy loop on every CPU while the captures run.
    pub load: bool,
}

impl Default for OverlayConfig {
    fn default() -> Self {
        Self {
            shape: Shape::Overlay,
            out: PathBuf::from("out/syncbench-overlay"),
            duration: 10.0,
            rate: 500,
            tcp_mbps: 20,
            clocks: vec![
                String::new(),
                "offset=0.3s,drift=20ppm".into(),
                "offset=-0.4s,drift=-30ppm".into(),
                "offset=0.2s,drift=45ppm".into(),
            ],
            load: false,
        }
    }
}

/// One capture of the plan.
struct Station {
    host: &'static str,
    netns: String,
    ifaces: Vec<&'static str>,
    peers: Vec<String>,
}

/// The captures and traffic of a shape: stations, UDP (from, to), iperf3 (client
/// namespace, server namespace, server address).
struct Plan {
    stations: Vec<Station>,
    udp: (String, String, std::net::Ipv4Addr),
    tcp: (String, String, String),
}

fn plan(shape: Shape, lab: &Running) -> anyhow::Result<Plan> {
    let ns = |n: &str| lab.netns(n).map(str::to_owned);
    Ok(match shape {
        Shape::Overlay => {
            let vms = &lab.topology.vms;
            let bridge = |i: usize| {
                vms[i].bridge_addr.map(|b| b.addr.to_string()).context("overlay.yaml: the VMs need bridge_addr")
            };
            let (c1, c2) = (lab.host("c1")?, lab.host("c2")?);
            let st = |host, netns: String, ifaces, peers| Station { host, netns, ifaces, peers };
            Plan {
                stations: vec![
                    st("c1", c1.netns.clone(), vec!["eth0"], vec![bridge(0)?, c2.addr.to_string()]),
                    st("vm1", ns("vm1")?, vec!["c1p", "eth0"], vec![vms[1].underlay.addr.to_string()]),
                    st("vm2", ns("vm2")?, vec!["c2p", "eth0"], vec![]),
                    st("c2", c2.netns.clone(), vec!["eth0"], vec![bridge(1)?]),
                ],
                udp: (c1.netns.clone(), c2.netns.clone(), c2.addr),
                tcp: (c1.netns.clone(), c2.netns.clone(), c2.addr.to_string()),
            }
        }
        Shape::Chain => {
            let (a, b) = (lab.host("a")?, lab.host("b")?);
            let gw = |h: &str| -> anyhow::Result<String> {
                let spec = lab.topology.hosts.iter().find(|x| x.name == h).context("relay.yaml host")?;
                Ok(spec.gateway.context("relay.yaml: hosts need a gateway")?.to_string())
            };
            let (ra, rb) = (gw("a")?, gw("b")?);
            Plan {
                stations: vec![
                    Station {
                        host: "a",
                        netns: a.netns.clone(),
                        ifaces: vec!["eth0"],
                        peers: vec![ra.clone(), b.addr.to_string()],
                    },
                    Station { host: "r", netns: ns("r")?, ifaces: vec!["toa", "tob"], peers: vec![b.addr.to_string()] },
                    Station { host: "b", netns: b.netns.clone(), ifaces: vec!["eth0"], peers: vec![rb] },
                ],
                udp: (a.netns.clone(), b.netns.clone(), b.addr),
                tcp: (a.netns.clone(), ns("r")?, ra),
            }
        }
    })
}

/// Builds the topology, captures, sends, and compares with the truth.
pub fn run(cfg: &OverlayConfig) -> anyhow::Result<Truth> {
    if cfg.out.exists() {
        std::fs::remove_dir_all(&cfg.out)?;
    }
    let mut t = Topology::load(&topology::find(match cfg.shape {
        Shape::Overlay => "overlay",
        Shape::Chain => "relay",
    })?)?;
    if let Some(r) = t.router.as_mut() {
        // The router forwards through the relay as fast as it can.
        r.delay_us = 0;
    }
    let lab = Running::up(&t)?;
    let plan = plan(cfg.shape, &lab)?;
    let load = cfg.load.then(traffic::BusyLoops::start);
    // Started together (each probes its peers from its start), each ending by itself at
    // its --duration, after the traffic (which starts a second or so after they are ready).
    let duration = (cfg.duration + END_MARGIN_S + 1.0).to_string();
    let starts: Vec<Start> = plan
        .stations
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let mut args: Vec<String> =
                ["--host-name", st.host, "-q", "--duration", &duration].map(String::from).into();
            for i in &st.ifaces {
                args.extend(["-i".to_owned(), (*i).to_owned()]);
            }
            for p in &st.peers {
                args.extend(["--sync-peer".to_owned(), p.clone()]);
            }
            let sim = cfg.clocks.get(i).cloned().unwrap_or_default();
            if !sim.is_empty() {
                args.extend(["--sim-clock".to_owned(), sim]);
            }
            Start { netns: Some(st.netns.clone()), dir: cfg.out.join(st.host), args }
        })
        .collect();
    let caps = start_all(&starts)?;
    std::thread::sleep(Duration::from_secs(1));
    let mut procs = Vec::new();
    if cfg.tcp_mbps > 0 {
        let (client, server, addr) = &plan.tcp;
        procs.push(spawn_in(server, &["iperf3", "-s", "-1", "-B", addr])?);
        std::thread::sleep(Duration::from_millis(500));
        let (secs, rate) = (format!("{}", cfg.duration.ceil() as u64), format!("{}M", cfg.tcp_mbps));
        procs.push(spawn_in(client, &["iperf3", "-c", addr, "-b", &rate, "-t", &secs])?);
    }
    let (from, to, addr) = &plan.udp;
    let dst = std::net::SocketAddrV4::new(*addr, 6001);
    let sink = traffic::UdpSink::start(to, dst)?;
    traffic::udp_send(from, dst, (cfg.duration * cfg.rate as f64) as u64, cfg.rate, 64)?;
    sink.finish()?;
    for mut p in procs {
        let status = p.wait()?;
        crate::teardown::untrack_child(p.id());
        if !status.success() {
            bail!("iperf3 failed ({status}): is iperf3 installed?");
        }
    }
    let names: Vec<&str> = plan.stations.iter().map(|st| st.host).collect();
    finish_all(caps, &names, Duration::from_secs_f64(END_MARGIN_S + 12.0))?;
    drop(load);
    drop(lab);
    truth::check(&cfg.out, &[])
}
