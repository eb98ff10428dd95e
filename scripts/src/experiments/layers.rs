//! Experiments b and c: where the time goes inside the hosts, with the socket and
//! scheduler layers (`--layers all`, TCP followed per byte).
//!
//! * b, send buffer (the seed tool's finding on LAN, LTE and WiFi): a bulk TCP flow a -> b
//!   through a shaped link (a token bucket on a's veth0) next to a request/response flow.
//!   The bulk flow's bytes spend most of their end-to-end time in the sender's socket
//!   layer (`sock_send -> tc_egress`: waiting for room in the window and the queue).
//! * c, CPU contention (vNetTracer's hypervisor case): the receiving thread shares a CPU
//!   with a CPU-bound task of higher priority. The request/response p99.9 grows many-fold,
//!   and the layer that grows is the scheduler's (`sched_wakeup -> sched_switch`), not the
//!   network's.

use std::{
    fmt::Write as _,
    io::{Read, Write},
    net::{SocketAddrV4, TcpListener, TcpStream},
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::{cell, stop, svg, Dirs, Hop};
use crate::{bins, capture::Capture, netns::run_in, topology::Running};

/// Shaping of the bulk experiment's link.
pub const TBF: &str = "rate 50mbit burst 32kb latency 20ms";

/// `netlat-capture --layers all` in `netns` on veth0 as `host`.
fn capture(netns: &str, dir: &Path, host: &str, filter: &str) -> anyhow::Result<Capture> {
    let args = ["-q", "--host-name", host, "--sync-port", "0", "--layers", "all", "-i", "veth0", filter];
    Capture::start(Some(netns), dir, &args)
}

/// The analyzer's path for `filter` (one flow direction): its hops in order, end to end
/// last (`from -> to` of the path's ends).
fn path(dirs: &[&Path], filter: &str, stride: u32) -> anyhow::Result<Vec<Hop>> {
    let out = Command::new(bins::path("netlat-analyze"))
        .args(dirs)
        .args(["--same-clock", "--format", "csv", "--table", "paths", "--filter", filter])
        .args(["--tcp-stride", &stride.to_string()])
        .output()?;
    if !out.status.success() {
        bail!("netlat-analyze failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // The paths table is the hops table with `path` and `hop` in front.
    let mut lines = text.lines();
    let head = lines.next().context("empty paths table")?;
    let cut = head.find("from,").context("no `from` column")?;
    let first_path = text.lines().nth(1).map(|l| l.split(',').next().unwrap_or("").to_owned());
    let hops: String = std::iter::once(&head[cut..])
        .chain(lines.filter(|l| first_path.as_deref().is_some_and(|p| l.starts_with(&format!("{p},")))).map(|l| {
            // Skip `path,hop,` (two fields; path names have no commas).
            let mut f = l.splitn(3, ',');
            f.next();
            f.next();
            f.next().unwrap_or("")
        }))
        .map(|l| format!("{l}\n"))
        .collect();
    super::parse_hops(&hops)
}

/// Short name `host:hook` of a point `host:ifname:hook`.
fn short(p: &str) -> String {
    format!("{}:{}", p.split(':').next().unwrap_or(""), p.rsplit(':').next().unwrap_or(""))
}

/// A TCP server on `addr` in `netns` answering each `size`-byte request with one byte; the
/// serving thread runs `setup` first (CPU affinity, priority).
fn serve(netns: &str, addr: SocketAddrV4, size: usize, setup: fn()) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let listener = run_in(netns, || TcpListener::bind(addr))??;
    Ok(std::thread::spawn(move || {
        setup();
        let Ok((mut s, _)) = listener.accept() else { return };
        let _ = s.set_nodelay(true);
        let mut buf = vec![0u8; size];
        while s.read_exact(&mut buf).is_ok() {
            if s.write_all(&[1]).is_err() {
                return;
            }
        }
    }))
}

/// `n` requests of `size` bytes from `netns` to `addr`, `gap` apart.
fn requests(netns: &str, addr: SocketAddrV4, n: usize, size: usize, gap: Duration) -> anyhow::Result<()> {
    let mut c = run_in(netns, || TcpStream::connect(addr))??;
    c.set_nodelay(true)?;
    let msg = vec![0x5a; size];
    let mut ack = [0u8; 1];
    for _ in 0..n {
        c.write_all(&msg)?;
        c.read_exact(&mut ack)?;
        std::thread::sleep(gap);
    }
    Ok(())
}

fn table(md: &mut String, title: &str, hops: &[Hop]) {
    let _ =
        writeln!(md, "\n{title}\n\n| layer | count | p50 µs | p99 µs | p99.9 µs | max µs |\n|---|---|---|---|---|---|");
    for h in hops {
        let (from, to) = (short(&h.from), short(&h.to));
        let _ = writeln!(
            md,
            "| `{from} -> {to}` | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            h.count, h.p50, h.p99, h.p999, h.max
        );
    }
}

fn csv(out: &mut String, case: &str, hops: &[Hop]) {
    for h in hops {
        let _ = writeln!(
            out,
            "{case},{},{},{},{},{},{},{},{}",
            short(&h.from),
            short(&h.to),
            h.count,
            cell(h.min),
            cell(h.p50),
            cell(h.p99),
            cell(h.p999),
            cell(h.max)
        );
    }
}

/// Experiment b: `seconds` of bulk transfer next to request/response.
pub fn send_buffer(results: &Path, work: &Path, seconds: u64) -> anyhow::Result<()> {
    let dirs = Dirs::new(results, work, "send-buffer")?;
    let lab = Running::up_named("two-hosts")?;
    let (a, b) = (lab.host("a")?, lab.host("b")?);
    let mut tc = vec!["-n", &a.netns, "qdisc", "add", "dev", "veth0", "root", "tbf"];
    tc.extend(TBF.split_whitespace());
    anyhow::ensure!(Command::new("tc").args(&tc).status()?.success(), "tc {tc:?} failed");
    let filter = "tcp and (port 5201 or port 5202)";
    let caps = vec![
        capture(&a.netns, &dirs.work.join("a"), "a", filter)?,
        capture(&b.netns, &dirs.work.join("b"), "b", filter)?,
    ];
    let bulk = SocketAddrV4::new(b.addr, 5201);
    let listener = run_in(&b.netns, || TcpListener::bind(bulk))??;
    let sink = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?;
        Ok(got.len())
    });
    let rr = SocketAddrV4::new(b.addr, 5202);
    let server = serve(&b.netns, rr, 100, || {})?;
    let mut c = run_in(&a.netns, || TcpStream::connect(bulk))??;
    let a_ns = a.netns.clone();
    let rr_client = std::thread::spawn(move || requests(&a_ns, rr, 1000, 100, Duration::from_millis(2)));
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut sent = 0usize;
    while Instant::now() < end {
        c.write_all(&[0x33; 65536])?;
        sent += 65536;
    }
    drop(c);
    let got = sink.join().expect("sink")?;
    rr_client.join().expect("client")?;
    server.join().expect("server");
    stop(caps)?;
    drop(lab);
    anyhow::ensure!(got == sent, "bulk: {sent} bytes sent, {got} received");
    let ab = [dirs.work.join("a"), dirs.work.join("b")];
    let ab: Vec<&Path> = ab.iter().map(|p| p.as_path()).collect();
    let bulk_hops = path(&ab, "tcp and dst port 5201", 1024)?;
    let rr_hops = path(&ab, "tcp and dst port 5202", 1024)?;
    let mut out = String::from("flow,from,to,count,min_us,p50_us,p99_us,p99.9_us,max_us\n");
    csv(&mut out, "bulk", &bulk_hops);
    csv(&mut out, "request-response", &rr_hops);
    dirs.write("layers.csv", &out)?;
    let mut md = format!(
        "Send buffer: {sent} bytes of bulk TCP a -> b in {seconds} s through veth0 shaped by tbf ({TBF}), next to \
         1000 requests of 100 bytes (2 ms apart). Per tracked byte (1 in 1024), median and p99 per layer.\n"
    );
    table(&mut md, "Bulk flow:", &bulk_hops);
    table(&mut md, "Request/response flow:", &rr_hops);
    let layers = &bulk_hops[..bulk_hops.len().saturating_sub(1)];
    let e2e = bulk_hops.last().context("no bulk path")?;
    let top = layers.iter().max_by(|x, y| x.p50.total_cmp(&y.p50)).context("no bulk layers")?;
    let share = top.p50 / e2e.p50;
    let _ = writeln!(
        md,
        "\nLargest layer of the bulk flow: `{} -> {}`, median {:.0} µs of {:.0} µs end to end ({:.0}%).",
        short(&top.from),
        short(&top.to),
        top.p50,
        e2e.p50,
        share * 100.0
    );
    dirs.write("table.md", &md)?;
    let cats: Vec<String> = layers.iter().map(|h| format!("{} -> {}", short(&h.from), short(&h.to))).collect();
    let series = [svg::Series { name: "bulk p50".into(), values: layers.iter().map(|h| h.p50).collect() }];
    dirs.write(
        "layers.svg",
        &svg::bars("Send buffer: bulk flow, median per layer", "µs (log)", &cats, &series, true, None),
    )?;
    print!("{md}");
    if (short(&top.from), short(&top.to)) != ("a:sock_send".into(), "a:tc_egress".into()) || share < 0.5 {
        bail!(
            "send buffer not found dominant: largest layer `{} -> {}` at {:.0}% of end to end",
            top.from,
            top.to,
            share * 100.0
        );
    }
    Ok(())
}

/// CPU 1 and nice `nice` for the calling thread.
fn pin(nice: i32) {
    // SAFETY: a zeroed cpu_set_t is valid; sched_setaffinity(0) is the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
}

fn reader() {
    pin(10);
}

/// One run of experiment c: request/response to a reader pinned to CPU 1, with `hog` a
/// CPU-bound thread of higher priority on the same CPU.
fn contention_run(dir: &Path, n: usize, hog: bool) -> anyhow::Result<Vec<Hop>> {
    let lab = Running::up_named("two-hosts")?;
    let (a, b) = (lab.host("a")?, lab.host("b")?);
    let filter = "tcp and port 5203";
    let caps = vec![capture(&a.netns, &dir.join("a"), "a", filter)?, capture(&b.netns, &dir.join("b"), "b", filter)?];
    let stop_hog = Arc::new(AtomicBool::new(false));
    let hog_thread = hog.then(|| {
        let stop = stop_hog.clone();
        std::thread::spawn(move || {
            pin(0);
            let mut x = 0u64;
            while !stop.load(Ordering::Relaxed) {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        })
    });
    let addr = SocketAddrV4::new(b.addr, 5203);
    let server = serve(&b.netns, addr, 100, reader)?;
    let result = requests(&a.netns, addr, n, 100, Duration::from_millis(1));
    stop_hog.store(true, Ordering::Relaxed);
    if let Some(h) = hog_thread {
        h.join().expect("hog");
    }
    server.join().expect("server");
    stop(caps)?;
    drop(lab);
    result?;
    path(&[&dir.join("a"), &dir.join("b")], "tcp and dst port 5203", 4)
}

/// Experiment c: `n` requests without and with a competing CPU-bound task.
pub fn cpu_contention(results: &Path, work: &Path, n: usize) -> anyhow::Result<()> {
    let dirs = Dirs::new(results, work, "cpu-contention")?;
    let idle = contention_run(&dirs.work.join("idle"), n, false)?;
    let busy = contention_run(&dirs.work.join("busy"), n, true)?;
    let mut out = String::from("case,from,to,count,min_us,p50_us,p99_us,p99.9_us,max_us\n");
    csv(&mut out, "alone", &idle);
    csv(&mut out, "cpu-bound task on the reader's CPU", &busy);
    dirs.write("layers.csv", &out)?;
    let mut md = format!(
        "CPU contention: {n} requests of 100 bytes a -> b (1 ms apart), the reading thread pinned to CPU 1 at nice 10, \
         alone and next to a CPU-bound thread pinned to CPU 1 at nice 0. Per tracked byte (1 in 4).\n"
    );
    table(&mut md, "Alone:", &idle);
    table(&mut md, "With the CPU-bound task:", &busy);
    let (e_idle, e_busy) = (idle.last().context("no path")?, busy.last().context("no path")?);
    let growth = e_busy.p999 / e_idle.p999;
    let layers: Vec<(&Hop, Option<&Hop>)> =
        busy[..busy.len() - 1].iter().map(|h| (h, idle.iter().find(|i| i.from == h.from && i.to == h.to))).collect();
    let grown = |(h, i): &(&Hop, Option<&Hop>)| h.p999 - i.map_or(0.0, |i| i.p999);
    let (top, _) = layers.iter().max_by(|x, y| grown(x).total_cmp(&grown(y))).context("no layers")?;
    let _ = writeln!(
        md,
        "\nEnd to end p99.9 {:.1} µs alone -> {:.1} µs with the CPU-bound task ({growth:.0}x); the layer that grew most: `{} -> {}` (p99.9 {:.1} µs).",
        e_idle.p999,
        e_busy.p999,
        short(&top.from),
        short(&top.to),
        top.p999
    );
    dirs.write("table.md", &md)?;
    let cats: Vec<String> = layers.iter().map(|(h, _)| format!("{} -> {}", short(&h.from), short(&h.to))).collect();
    let series = [
        svg::Series {
            name: "alone p99.9".into(),
            values: layers.iter().map(|(_, i)| i.map_or(f64::NAN, |i| i.p999)).collect(),
        },
        svg::Series { name: "CPU-bound task p99.9".into(), values: layers.iter().map(|(h, _)| h.p999).collect() },
    ];
    dirs.write("layers.svg", &svg::bars("CPU contention: p99.9 per layer", "µs (log)", &cats, &series, true, None))?;
    print!("{md}");
    if growth < 5.0 || !short(&top.from).contains("sched") && !short(&top.to).contains("sched") {
        bail!("contention not attributed: e2e p99 grew {growth:.1}x, most in `{} -> {}`", top.from, top.to);
    }
    Ok(())
}
