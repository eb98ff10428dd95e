//! Synthetic capture files for the analyzer benchmark (issue 5): `netlat-lab gen-events`.
//!
//! Hosts `h00`, `h01`, … each write their own rotated `*.events.parquet` files, with the
//! capture's own schema ([`::capture::schema::events_schema`]), key-value metadata and
//! writer ([`::capture::ring::RingWriter`]: zstd, delta-encoded timestamps, 128k-row row
//! groups), so the analyzer sees what a real capture writes. All hosts share one clock.
//!
//! Traffic model. A pool of flows (5-tuple, source and destination host, path); packets
//! arrive as a Poisson process and pick a flow with a skew (a few heavy flows). A packet
//! traverses its flow's path of observation points, one event per point:
//!
//! * direct: `S:eth0:tc_egress → D:eth0:xdp → D:eth0:tc_ingress`;
//! * routed through a gateway G (the last two hosts): `S:eth0:tc_egress → G:eth0:xdp →
//!   G:eth0:tc_ingress → G:eth1:tc_egress → D:eth0:xdp → D:eth0:tc_ingress`;
//! * from a pod on an even host (its own namespace, `pod0/eth0`): `S:pod0/eth0:tc_egress →
//!   S:veth0:tc_ingress → S:eth0:tc_egress → D:eth0:xdp → D:eth0:tc_ingress`.
//!
//! Every hop's latency is lognormal around a median of its kind (the wire's median differs
//! per host pair) plus, rarely, an exponential tail; see [`HopKind`]. A packet may be lost
//! on a hop (wire and forwarding), so the points after it never see it. A small fraction of
//! packets is sent twice with identical content (a retransmission): the same `pkt_id` at
//! every point, which the analyzer must call ambiguous.
//!
//! Deterministic for a seed: every worker thread simulates the whole traffic from the seed
//! and writes only its share of the hosts. Each host's rows are written in timestamp order.
//! With `truth`, the generator also computes what the analysis must report, from the
//! injected latencies rather than from the files (see [`Truth`]).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use ::capture::{
    ring::{RingConfig, RingWriter},
    schema::{events_schema, SCHEMA_VERSION},
};
use anyhow::Context as _;
use arrow::{
    array::{ArrayRef, Int64Array, StringArray, UInt16Array, UInt32Array, UInt64Array, UInt8Array},
    record_batch::RecordBatch,
};
use parquet::file::metadata::KeyValue;
use serde::Serialize;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Output folder: one subfolder per host.
    pub out: PathBuf,
    /// Events (rows) to write in total; generation stops after the packet that reaches it.
    pub events: u64,
    /// Number of hosts (`h00`…); gateways and pods need at least 4.
    pub hosts: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// Rotate each host's file after this many rows.
    pub rows_per_file: u64,
    /// Packets per second, all flows together.
    pub rate: f64,
    /// Number of flows.
    pub flows: usize,
    /// Probability that a packet is lost on a wire hop (a quarter of it on a forwarding hop).
    pub loss: f64,
    /// Fraction of packets sent twice with identical content (ambiguous ids).
    pub dup: f64,
    /// Writer threads (each simulates the traffic and writes its share of the hosts).
    pub threads: usize,
    /// Also compute the expected analysis ([`Truth`]); keeps every latency in memory.
    pub truth: bool,
}

impl GenConfig {
    /// The benchmark's defaults for `events` events into `out`.
    pub fn new(out: PathBuf, events: u64) -> Self {
        Self {
            out,
            events,
            hosts: 10,
            seed: 1,
            rows_per_file: 250_000,
            rate: 200_000.0,
            flows: 5000,
            loss: 0.002,
            dup: 0.0005,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            truth: false,
        }
    }
}

/// What was generated.
#[derive(Clone, Debug)]
pub struct GenSummary {
    /// Rows written.
    pub events: u64,
    /// Packets sent (retransmitted copies not counted twice).
    pub packets: u64,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Their total size.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The expected analysis, with [`GenConfig::truth`].
    pub truth: Option<Truth>,
}

/// The figures `netlat-analyze --same-clock --format json` must report for the generated
/// files, computed from the simulation: per hop of every packet that is not duplicated,
/// the latency that was injected. Same field names as the analyzer's JSON.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Truth {
    /// Per ordered pair of points.
    pub pairs: Vec<TruthPair>,
    /// Ids seen at one point only, per point.
    pub unmatched: Vec<TruthUnmatched>,
    /// Ids seen twice at one point (the retransmitted packets).
    pub ambiguous: u64,
    /// Rows.
    pub events: u64,
    /// Distinct ids.
    pub ids: u64,
}

/// Expected latency figures of one pair (nearest-rank percentiles), ns.
#[derive(Clone, Debug, Serialize)]
pub struct TruthPair {
    /// Earlier point, `host:ifname:hook`.
    pub from: String,
    /// Later point.
    pub to: String,
    /// Hops.
    pub count: u64,
    /// Smallest latency.
    pub min_ns: i64,
    /// Median.
    pub p50_ns: i64,
    /// 90th percentile.
    pub p90_ns: i64,
    /// 99th percentile.
    pub p99_ns: i64,
    /// Largest latency.
    pub max_ns: i64,
}

/// Expected unmatched count of one point.
#[derive(Clone, Debug, Serialize)]
pub struct TruthUnmatched {
    /// Point label.
    pub point: String,
    /// Ids seen there only.
    pub ids: u64,
}

/// Namespace inode of every host's own interfaces (the usual init_net inode).
const HOST_NETNS: u64 = 4_026_531_840;
/// Packets simulated between two flushes of the per-host buffers.
const WINDOW_PACKETS: u64 = 1 << 16;
/// Rows per record batch handed to the writer.
const BATCH_ROWS: usize = 1 << 16;
/// First timestamp, ns (CLOCK_MONOTONIC about 17 minutes after boot).
const T0_NS: i64 = 1_000_000_000_000;

/// Kinds of hop, each with its latency distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopKind {
    /// Host A's `tc_egress` to host B's `xdp`: median 15 µs + 1 µs·((3a + 7b) mod 13),
    /// σ 0.25, 1 % tail of mean 150 µs; lost with probability `loss`.
    Wire,
    /// `xdp` to `tc_ingress` of one interface: median 2.5 µs, σ 0.35, 0.5 % tail of 20 µs.
    Stack,
    /// A gateway's `eth0:tc_ingress` to `eth1:tc_egress`: median 7 µs, σ 0.4, 1 % tail of
    /// 40 µs; lost with probability `loss / 4`.
    Forward,
    /// A pod's `tc_egress` to the host side of its veth (`tc_ingress`): median 1.8 µs, σ 0.3,
    /// 0.2 % tail of 10 µs.
    Veth,
    /// The host side of a veth to `eth0:tc_egress`: median 5 µs, σ 0.4, 0.5 % tail of 30 µs.
    Route,
}

/// One hop's distribution: lognormal(median, σ) + Bernoulli(tail_p)·Exp(tail_mean), ns.
#[derive(Clone, Copy, Debug)]
struct Dist {
    median: f64,
    sigma: f64,
    tail_p: f64,
    tail_mean: f64,
    loss: f64,
}

impl HopKind {
    fn dist(self, from_host: usize, to_host: usize, loss: f64) -> Dist {
        let d = |median: f64, sigma, tail_p, tail_mean, loss| Dist { median, sigma, tail_p, tail_mean, loss };
        match self {
            Self::Wire => {
                d(15_000.0 + 1_000.0 * ((3 * from_host + 7 * to_host) % 13) as f64, 0.25, 0.01, 150_000.0, loss)
            }
            Self::Stack => d(2_500.0, 0.35, 0.005, 20_000.0, 0.0),
            Self::Forward => d(7_000.0, 0.4, 0.01, 40_000.0, loss / 4.0),
            Self::Veth => d(1_800.0, 0.3, 0.002, 10_000.0, 0.0),
            Self::Route => d(5_000.0, 0.4, 0.005, 30_000.0, 0.0),
        }
    }
}

/// An observation point.
#[derive(Clone, Debug)]
struct PointDef {
    host: usize,
    netns: u64,
    ifname: String,
    ifindex: u32,
    hook: &'static str,
}

impl PointDef {
    fn label(&self, hosts: &[String]) -> String {
        format!("{}:{}:{}", hosts[self.host], self.ifname, self.hook)
    }
}

/// A flow: fields shared by its packets and the path they take.
#[derive(Clone, Debug)]
struct Flow {
    /// (point, distribution of the hop into it); the first entry's distribution is unused.
    path: Vec<(u16, Dist)>,
    family: u8,
    proto: u8,
    saddr: Arc<str>,
    daddr: Arc<str>,
    sport: u16,
    dport: u16,
    ip_id0: u32,
    isn: u32,
    ack: u32,
    /// UDP datagram size (TCP packets vary per packet).
    size: u32,
    /// Receive-side-scaling hash: picks the CPU at each host.
    rss: u32,
    /// Packets sent so far.
    sent: u32,
}

/// xoshiro256++ seeded by splitmix64: small, fast, and the same everywhere.
#[derive(Clone)]
struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    mix64(*x)
}

/// splitmix64's finalizer: a bijection of u64 (so distinct inputs give distinct ids).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        Self { s: [splitmix(&mut x), splitmix(&mut x), splitmix(&mut x), splitmix(&mut x)], spare: None }
    }
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let r = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        r
    }
    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }
    fn exp(&mut self, mean: f64) -> f64 {
        -self.unit().ln() * mean
    }
    /// Standard normal (Box–Muller, both values used).
    fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare.take() {
            return z;
        }
        let (u, v) = (self.unit(), self.unit());
        let r = (-2.0 * u.ln()).sqrt();
        let (s, c) = (std::f64::consts::TAU * v).sin_cos();
        self.spare = Some(r * s);
        r * c
    }
    fn latency(&mut self, d: &Dist) -> i64 {
        let mut ns = d.median * (d.sigma * self.normal()).exp();
        if self.chance(d.tail_p) {
            ns += self.exp(d.tail_mean);
        }
        // At least 1 ns: a packet's observations are strictly ordered in time.
        (ns.round() as i64).max(1)
    }
}

/// The topology: points, flows, and the host names.
struct Model {
    hosts: Vec<String>,
    points: Vec<PointDef>,
    flows: Vec<Flow>,
}

impl Model {
    fn new(cfg: &GenConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(cfg.hosts >= 2 && cfg.hosts <= 100, "--hosts must be 2..=100");
        anyhow::ensure!(cfg.flows >= 1, "--flows must be at least 1");
        let hosts: Vec<String> = (0..cfg.hosts).map(|h| format!("h{h:02}")).collect();
        let mut points = Vec::new();
        let mut add = |p: PointDef| {
            points.push(p);
            (points.len() - 1) as u16
        };
        let gateways: Vec<usize> = if cfg.hosts >= 4 { vec![cfg.hosts - 2, cfg.hosts - 1] } else { vec![] };
        let pods = cfg.hosts >= 4;
        struct HostPoints {
            egress: u16,
            xdp: u16,
            ingress: u16,
            eth1_egress: Option<u16>,
            pod: Option<(u16, u16)>,
        }
        let mut hp = Vec::new();
        for h in 0..cfg.hosts {
            let p = |ifname: &str, ifindex, hook| PointDef {
                host: h,
                netns: HOST_NETNS,
                ifname: ifname.to_owned(),
                ifindex,
                hook,
            };
            let egress = add(p("eth0", 2, "tc_egress"));
            let xdp = add(p("eth0", 2, "xdp"));
            let ingress = add(p("eth0", 2, "tc_ingress"));
            let eth1_egress = gateways.contains(&h).then(|| add(p("eth1", 3, "tc_egress")));
            let pod = (pods && h % 2 == 0 && !gateways.contains(&h)).then(|| {
                let pod = add(PointDef {
                    host: h,
                    netns: HOST_NETNS + 1000 + h as u64,
                    ifname: "pod0/eth0".into(),
                    ifindex: 2,
                    hook: "tc_egress",
                });
                (pod, add(p("veth0", 10, "tc_ingress")))
            });
            hp.push(HostPoints { egress, xdp, ingress, eth1_egress, pod });
        }
        let mut rng = Rng::new(cfg.seed ^ 0x0F10_F10F_10F1_0F10);
        let mut flows = Vec::with_capacity(cfg.flows);
        for _ in 0..cfg.flows {
            let s = rng.below(cfg.hosts as u64) as usize;
            let d = (s + 1 + rng.below(cfg.hosts as u64 - 1) as usize) % cfg.hosts;
            let dist = |k: HopKind, a: usize, b: usize| k.dist(a, b, cfg.loss);
            let r = rng.unit();
            let mut path = Vec::new();
            let from_pod = hp[s].pod.filter(|_| r < 0.2);
            if let Some((pod, veth)) = from_pod {
                path.push((pod, dist(HopKind::Veth, s, s)));
                path.push((veth, dist(HopKind::Veth, s, s)));
                path.push((hp[s].egress, dist(HopKind::Route, s, s)));
            } else {
                path.push((hp[s].egress, dist(HopKind::Wire, s, s)));
            }
            let routed =
                from_pod.is_none() && r < 0.5 && !gateways.is_empty() && ![s, d].iter().any(|h| gateways.contains(h));
            let mut prev = s;
            if routed {
                let g = gateways[(s + d) % gateways.len()];
                path.push((hp[g].xdp, dist(HopKind::Wire, s, g)));
                path.push((hp[g].ingress, dist(HopKind::Stack, g, g)));
                path.push((hp[g].eth1_egress.expect("gateway"), dist(HopKind::Forward, g, g)));
                prev = g;
            }
            path.push((hp[d].xdp, dist(HopKind::Wire, prev, d)));
            path.push((hp[d].ingress, dist(HopKind::Stack, d, d)));
            let family = if rng.chance(0.1) { 6 } else { 4 };
            let proto = match rng.below(20) {
                0 => 1,
                1..=5 => 17,
                _ => 6,
            };
            let addr = |h: usize, pod: bool| -> Arc<str> {
                match (family, pod) {
                    (4, false) => format!("10.0.0.{}", h + 1),
                    (4, true) => format!("10.1.{h}.2"),
                    (_, false) => format!("fd00::{:x}", h + 1),
                    (_, true) => format!("fd01:{h:x}::2"),
                }
                .into()
            };
            let (sport, dport) = match proto {
                1 => (8 << 8, rng.below(65536) as u16),
                _ => (32768 + rng.below(28232) as u16, [80, 443, 53, 5001, 6379][rng.below(5) as usize]),
            };
            flows.push(Flow {
                path,
                family,
                proto,
                saddr: addr(s, from_pod.is_some()),
                daddr: addr(d, false),
                sport,
                dport,
                ip_id0: rng.next_u64() as u32,
                isn: rng.next_u64() as u32,
                ack: rng.next_u64() as u32,
                size: [64, 200, 512, 1200][rng.below(4) as usize],
                rss: rng.next_u64() as u32,
                sent: 0,
            });
        }
        Ok(Self { hosts, points, flows })
    }
}

/// One row before it becomes columns: the rest is derived from the flow and packet number.
#[derive(Clone, Copy)]
struct Ev {
    ts: i64,
    pkt_id: u64,
    flow: u32,
    seq: u32,
    point: u16,
}

/// Per-packet columns derived from (flow, packet number, id).
struct PacketFields {
    ip_id: u32,
    tcp_seq: u32,
    tcp_ack: u32,
    tcp_flags: u8,
    payload_len: u32,
    wire_len: u32,
}

fn packet_fields(f: &Flow, seq: u32, pkt_id: u64) -> PacketFields {
    let h = mix64(pkt_id);
    let payload_len = match f.proto {
        6 if seq == 0 => 0,
        6 if h % 10 < 7 => 1448,
        6 => (h >> 8) as u32 % 1449,
        17 => f.size,
        _ => 56,
    };
    let l4 = match f.proto {
        6 => 32,
        _ => 8,
    };
    let l3 = if f.family == 4 { 20 } else { 40 };
    let (tcp_seq, tcp_ack, tcp_flags) = match f.proto {
        6 if seq == 0 => (f.isn, 0, 0x02),
        6 => (f.isn.wrapping_add(1).wrapping_add(seq.wrapping_mul(1448)), f.ack, 0x18),
        1 => (seq, 0, 0),
        _ => (0, 0, 0),
    };
    PacketFields {
        ip_id: if f.family == 4 { f.ip_id0.wrapping_add(seq) & 0xFFFF } else { f.ip_id0 & 0xF_FFFF },
        tcp_seq,
        tcp_ack,
        tcp_flags,
        payload_len,
        wire_len: 14 + l3 + l4 + payload_len,
    }
}

/// Collects the truth while simulating (worker 0 only).
#[derive(Default)]
struct TruthAcc {
    latencies: HashMap<(u16, u16), Vec<i64>>,
    unmatched: HashMap<u16, u64>,
    ambiguous: u64,
    ids: u64,
}

/// Simulates the traffic; `emit` gets every event, in packet order (not time order).
struct Sim<'a> {
    cfg: &'a GenConfig,
    model: Model,
    rng: Rng,
    t: f64,
    packets: u64,
    events: u64,
    truth: Option<TruthAcc>,
}

impl<'a> Sim<'a> {
    fn new(cfg: &'a GenConfig, truth: bool) -> anyhow::Result<Self> {
        Ok(Self {
            cfg,
            model: Model::new(cfg)?,
            rng: Rng::new(cfg.seed),
            t: T0_NS as f64,
            packets: 0,
            events: 0,
            truth: truth.then(TruthAcc::default),
        })
    }

    fn done(&self) -> bool {
        self.events >= self.cfg.events
    }

    /// One traversal of `flow`'s path starting at `t`: the (point, ts) observed, until lost.
    fn traverse(&mut self, flow: usize, t: i64) -> Vec<(u16, i64)> {
        let path = &self.model.flows[flow].path;
        let mut out = Vec::with_capacity(path.len());
        let mut ts = t;
        for (i, (point, dist)) in path.iter().enumerate() {
            if i > 0 {
                if self.rng.chance(dist.loss) {
                    break;
                }
                ts += self.rng.latency(dist);
            }
            out.push((*point, ts));
        }
        out
    }

    /// Sends one packet (and maybe its identical retransmission); returns the send time.
    fn packet(&mut self, mut emit: impl FnMut(Ev)) -> i64 {
        self.t += self.rng.exp(1e9 / self.cfg.rate);
        let t = self.t as i64;
        // Skewed choice: u² puts most packets on the first flows.
        let u = self.rng.unit();
        let flow = ((u * u) * self.model.flows.len() as f64) as usize;
        let seq = self.model.flows[flow].sent;
        self.model.flows[flow].sent = seq.wrapping_add(1);
        self.packets += 1;
        // Counter + seed in the high bits, through a bijection: distinct and never 0.
        let pkt_id = mix64((self.cfg.seed << 40) + self.packets);
        let first = self.traverse(flow, t);
        let dup = self.rng.chance(self.cfg.dup);
        let second = if dup {
            let resend = t + 200_000 + self.rng.below(800_000) as i64;
            self.traverse(flow, resend)
        } else {
            Vec::new()
        };
        for &(point, ts) in first.iter().chain(&second) {
            emit(Ev { ts, pkt_id, flow: flow as u32, seq, point });
        }
        self.events += (first.len() + second.len()) as u64;
        if let Some(acc) = &mut self.truth {
            acc.ids += 1;
            if dup {
                acc.ambiguous += 1;
            } else if first.len() == 1 {
                *acc.unmatched.entry(first[0].0).or_default() += 1;
            } else {
                for w in first.windows(2) {
                    acc.latencies.entry((w[0].0, w[1].0)).or_default().push(w[1].1 - w[0].1);
                }
            }
        }
        t
    }

    fn truth(&mut self) -> Option<Truth> {
        let acc = self.truth.take()?;
        let label = |p: u16| self.model.points[p as usize].label(&self.model.hosts);
        let rank = |v: &[i64], pct: usize| v[(v.len() * pct).div_ceil(100) - 1];
        let mut pairs: Vec<TruthPair> = acc
            .latencies
            .into_iter()
            .map(|((a, b), mut v)| {
                v.sort_unstable();
                TruthPair {
                    from: label(a),
                    to: label(b),
                    count: v.len() as u64,
                    min_ns: v[0],
                    p50_ns: rank(&v, 50),
                    p90_ns: rank(&v, 90),
                    p99_ns: rank(&v, 99),
                    max_ns: v[v.len() - 1],
                }
            })
            .collect();
        pairs.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.from.cmp(&b.from)).then_with(|| a.to.cmp(&b.to)));
        let mut unmatched: Vec<TruthUnmatched> =
            acc.unmatched.into_iter().map(|(p, ids)| TruthUnmatched { point: label(p), ids }).collect();
        unmatched.sort_by(|a, b| b.ids.cmp(&a.ids).then_with(|| a.point.cmp(&b.point)));
        Some(Truth { pairs, unmatched, ambiguous: acc.ambiguous, events: self.events, ids: acc.ids })
    }
}

/// One host's output: buffered rows and its ring of files.
struct HostOut {
    host: usize,
    pending: Vec<Ev>,
    ring: RingWriter,
    rows_in_file: u64,
}

/// Generates the dataset described by `cfg`.
pub fn generate(cfg: &GenConfig) -> anyhow::Result<GenSummary> {
    let started = Instant::now();
    anyhow::ensure!(cfg.rows_per_file > 0, "rows per file must be positive");
    anyhow::ensure!(cfg.rate > 0.0, "rate must be positive");
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let threads = cfg.threads.clamp(1, cfg.hosts);
    let results: Vec<anyhow::Result<WorkerOut>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads).map(|w| s.spawn(move || worker(cfg, w, threads))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("generator thread panicked"))))
            .collect()
    });
    let mut summary =
        GenSummary { events: 0, packets: 0, files: Vec::new(), bytes: 0, elapsed: Duration::ZERO, truth: None };
    for r in results {
        let (files, truth, events, packets) = r?;
        summary.files.extend(files);
        summary.truth = summary.truth.or(truth);
        (summary.events, summary.packets) = (events, packets);
    }
    summary.files.sort();
    summary.bytes = summary.files.iter().map(|f| std::fs::metadata(f).map_or(0, |m| m.len())).sum();
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// A worker's files, the truth (worker 0), events and packets simulated.
type WorkerOut = (Vec<PathBuf>, Option<Truth>, u64, u64);

/// Simulates everything, writes hosts `w, w + n, …`.
fn worker(cfg: &GenConfig, w: usize, n: usize) -> anyhow::Result<WorkerOut> {
    let mut sim = Sim::new(cfg, cfg.truth && w == 0)?;
    let run_id = format!("20260101T000000Z-{}", cfg.seed);
    let mut outs: Vec<Option<HostOut>> = (0..cfg.hosts).map(|_| None).collect();
    for h in (w..cfg.hosts).step_by(n) {
        let name = &sim.model.hosts[h];
        let dir = cfg.out.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let kv = vec![
            KeyValue::new("netlat.schema_version".into(), SCHEMA_VERSION.to_string()),
            KeyValue::new("netlat.table".into(), "events".to_owned()),
            KeyValue::new("netlat.host".into(), name.clone()),
            KeyValue::new("netlat.run_id".into(), run_id.clone()),
            KeyValue::new("netlat.clock".into(), "CLOCK_MONOTONIC".to_owned()),
            KeyValue::new("netlat.synthetic".into(), format!("netlat-lab gen-events --seed {}", cfg.seed)),
        ];
        let ring = RingWriter::new(
            RingConfig {
                dir,
                prefix: format!("{name}-{run_id}"),
                table: "events",
                max_bytes: u64::MAX,
                max_age: Duration::MAX,
                max_files: 0,
                // One row group per file: no periodic flush (the data is written at once).
                flush_every: Duration::ZERO,
            },
            events_schema(false, false),
            kv,
        );
        outs[h] = Some(HostOut { host: h, pending: Vec::new(), ring, rows_in_file: 0 });
    }
    let mut files = Vec::new();
    while !sim.done() {
        let cut = run_window(&mut sim, &mut outs);
        for out in outs.iter_mut().flatten() {
            flush(&sim.model, out, cut, cfg.rows_per_file)?;
        }
    }
    for out in outs.iter_mut().flatten() {
        flush(&sim.model, out, i64::MAX, cfg.rows_per_file)?;
        out.ring.rotate()?;
        files.extend(out.ring.finished().cloned());
    }
    let truth = sim.truth();
    Ok((files, truth, sim.events, sim.packets))
}

/// Simulates up to [`WINDOW_PACKETS`] packets into the owned hosts' buffers; returns the
/// time before which every host's buffered rows are final (no later packet is earlier).
fn run_window(sim: &mut Sim<'_>, outs: &mut [Option<HostOut>]) -> i64 {
    let host_of: Vec<usize> = sim.model.points.iter().map(|p| p.host).collect();
    for _ in 0..WINDOW_PACKETS {
        if sim.done() {
            return i64::MAX;
        }
        sim.packet(|ev| {
            if let Some(out) = &mut outs[host_of[ev.point as usize]] {
                out.pending.push(ev);
            }
        });
    }
    // The next packet is sent after `sim.t`, and every event is at or after its send time.
    sim.t as i64
}

/// Writes the buffered rows of `out` earlier than `cut`, in time order.
fn flush(model: &Model, out: &mut HostOut, cut: i64, rows_per_file: u64) -> anyhow::Result<()> {
    out.pending.sort_unstable_by_key(|e| (e.ts, e.point, e.pkt_id));
    let n = out.pending.partition_point(|e| e.ts < cut);
    let mut done = 0;
    while done < n {
        let room = (rows_per_file - out.rows_in_file) as usize;
        let take = (n - done).min(BATCH_ROWS).min(room);
        let batch = to_batch(model, out.host, &out.pending[done..done + take])?;
        out.ring.write(&batch)?;
        done += take;
        out.rows_in_file += take as u64;
        if out.rows_in_file == rows_per_file {
            out.ring.rotate()?;
            out.rows_in_file = 0;
        }
    }
    out.pending.drain(..n);
    Ok(())
}

fn to_batch(model: &Model, host: usize, evs: &[Ev]) -> anyhow::Result<RecordBatch> {
    let point = |e: &Ev| &model.points[e.point as usize];
    let flow = |e: &Ev| &model.flows[e.flow as usize];
    let fields: Vec<PacketFields> = evs.iter().map(|e| packet_fields(flow(e), e.seq, e.pkt_id)).collect();
    let host_name = model.hosts[host].as_str();
    macro_rules! num {
        ($arr:ident, $f:expr) => {
            Arc::new($arr::from_iter_values(evs.iter().zip(&fields).map($f))) as ArrayRef
        };
    }
    fn text<'a>(evs: &'a [Ev], f: impl Fn(&'a Ev) -> &'a str) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(evs.iter().map(f)))
    }
    let columns: Vec<ArrayRef> = vec![
        num!(Int64Array, |(e, _)| e.ts),
        text(evs, |_| host_name),
        num!(UInt64Array, |(e, _)| point(e).netns),
        text(evs, |e| point(e).ifname.as_str()),
        num!(UInt32Array, |(e, _)| point(e).ifindex),
        text(evs, |e| point(e).hook),
        num!(UInt16Array, |(e, _)| ((flow(e).rss as usize + host * 3) % 8) as u16),
        num!(UInt8Array, |(e, _)| flow(e).family),
        num!(UInt8Array, |(e, _)| flow(e).proto),
        text(evs, |e| &flow(e).saddr),
        text(evs, |e| &flow(e).daddr),
        num!(UInt16Array, |(e, _)| flow(e).sport),
        num!(UInt16Array, |(e, _)| flow(e).dport),
        num!(UInt32Array, |(_, p)| p.ip_id),
        num!(UInt32Array, |(_, p)| p.tcp_seq),
        num!(UInt32Array, |(_, p)| p.tcp_ack),
        num!(UInt8Array, |(_, p)| p.tcp_flags),
        num!(UInt32Array, |(_, p)| p.payload_len),
        num!(UInt32Array, |(_, p)| p.wire_len),
        num!(UInt64Array, |(e, _)| e.pkt_id),
        num!(UInt8Array, |_| 0),
        num!(UInt16Array, |_| 0),
        num!(UInt32Array, |_| 0),
    ];
    Ok(RecordBatch::try_new(events_schema(false, false), columns)?)
}

/// Writes `truth` as JSON next to the host folders (`OUT/truth.json`).
pub fn write_truth(out: &Path, truth: &Truth) -> anyhow::Result<PathBuf> {
    let path = out.join("truth.json");
    std::fs::write(&path, serde_json::to_string_pretty(truth)? + "\n")?;
    Ok(path)
}
