//! The capture's parts measured on their own, for `netlat-lab bench-capture` (issue 7):
//! each packet program run by the kernel's test runs (`BPF_PROG_TEST_RUN`) on frames of the
//! flood's shape, and the writer (Arrow batches and the rotating Parquet writer) on one
//! thread. Apart from the traffic they tell where a flood's overhead goes.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;

use crate::benchcapture::dir_bytes;

/// Events per batch, as the capture hands them to its writer.
const BATCH_EVENTS: usize = capture::pipeline::BATCH;

/// The capture's writer alone, on one thread: `events` synthetic events (a flood's shape:
/// one flow, three hooks, 1 µs apart, random identities) turned into Arrow batches of the
/// capture's size and written through its rotating Parquet writer with its default
/// settings. Returns (events per second of thread CPU time, bytes per event on disk).
pub fn writer_rate(dir: &Path, events: u64) -> anyhow::Result<(f64, f64)> {
    use capture::{
        loader::Points,
        ring::{RingConfig, RingWriter},
        schema::{events_schema, to_batch, PointContext},
    };
    use capture_common::abi::PacketEvent;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let cfg = RingConfig {
        dir: dir.to_owned(),
        prefix: "bench-run".into(),
        table: "events",
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(3600),
        max_files: 0,
        flush_every: Duration::from_secs(5),
    };
    let kv = vec![parquet::file::metadata::KeyValue::new("netlat.schema_version".into(), "1".to_owned())];
    let mut ring = RingWriter::new(cfg, events_schema(false, false), kv);
    let points = Points::from_tables(vec![[(2u32, PointContext { netns: 4026531840, ifname: "veth0".into() })]
        .into_iter()
        .collect()]);
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut batch = Vec::with_capacity(BATCH_EVENTS);
    let cpu = || {
        // SAFETY: getrusage on this thread with a valid out pointer.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    };
    let start = cpu();
    let mut saddr = [0u8; 16];
    saddr[..4].copy_from_slice(&[198, 18, 0, 1]);
    let mut daddr = saddr;
    daddr[3] = 2;
    for i in 0..events {
        // One identity per packet, seen at its three hooks.
        if i % 3 == 0 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
        let pkt = i / 3;
        batch.push((
            0,
            PacketEvent {
                ts_ns: 1_000_000_000 + pkt * 1000 + (i % 3) * 300,
                pkt_id: x | 1,
                saddr,
                daddr,
                payload_len: 64,
                wire_len: 106,
                ifindex: 2,
                ip_id: pkt as u32 & 0xFFFF,
                sport: 40000,
                dport: 9,
                hook: (i % 3) as u8,
                family: 4,
                proto: 17,
                ..Default::default()
            },
        ));
        if batch.len() == BATCH_EVENTS {
            ring.write(&to_batch("bench", &batch, None, None, &points)?)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        ring.write(&to_batch("bench", &batch, None, None, &points)?)?;
    }
    ring.rotate()?;
    let secs = cpu() - start;
    let bytes = dir_bytes(dir);
    let _ = std::fs::remove_dir_all(dir);
    Ok((events as f64 / secs, bytes as f64 / events as f64))
}

/// Frames the per-hook test runs use: `n` UDP datagrams 198.18.0.1:40000 → 198.18.0.2:9
/// with `payload` bytes each, told apart by their first payload bytes (so 1-in-N sampling
/// keeps about 1 in N of them, as it does for a flood).
fn test_frames(n: usize, payload: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut f = vec![0u8; 14 + 20 + 8 + payload];
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            let ip = &mut f[14..34];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + 8 + payload) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&(i as u16).to_be_bytes());
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[198, 18, 0, 1]);
            ip[16..20].copy_from_slice(&[198, 18, 0, 2]);
            let udp = &mut f[34..42];
            udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
            udp[2..4].copy_from_slice(&9u16.to_be_bytes());
            udp[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
            f[42..]
                .iter_mut()
                .enumerate()
                .for_each(|(k, b)| *b = (k as u64 ^ (i as u64).wrapping_mul(0x9E37_79B9)) as u8);
            f
        })
        .collect()
}

/// Per-hook cost from the kernel's own test runs (`BPF_PROG_TEST_RUN`): each packet program
/// run `runs` times in all over 64 distinct frames of the flood's size, under each
/// configuration: every packet written, 1 in `sample` written, and none selected by the
/// filter (parse and filter only). Returns rows (program, [ns per configuration]).
pub fn hook_test_runs(size: usize, sample: u64, runs: u32) -> anyhow::Result<Vec<(String, [f64; 3])>> {
    use capture::{loader::Scope, netns::Netns, testrun::test_run};
    use capture_common::{abi::CaptureConfig, hash::threshold_one_in};
    let frames = test_frames(64, size);
    let mut configs = [CaptureConfig::default(), CaptureConfig::default(), CaptureConfig::default()];
    configs[1].sample_threshold = threshold_one_in(sample);
    configs[2].filter = capture::filter::compile("udp port 1").context("filter")?;
    let names = ["netlat_xdp", "netlat_tc_in", "netlat_tc_out"];
    let mut rows: Vec<(String, [f64; 3])> = names.iter().map(|n| ((*n).to_owned(), [0.0; 3])).collect();
    for (c, cfg) in configs.iter().enumerate() {
        let mut scope = Scope::load(Netns::current()?, cfg, 64 << 20, 0, &Default::default(), true)?;
        for (row, name) in rows.iter_mut().zip(names) {
            let per = (runs / frames.len() as u32).max(1);
            let mut ns = 0.0;
            for f in &frames {
                let fd = scope.program_fd(name).with_context(|| format!("program {name}"))?;
                ns += f64::from(test_run(fd, f, per).with_context(|| format!("test run of {name}"))?.ns_per_run);
                // Empty the ring after each frame's runs, as the capture keeps it nearly
                // empty: past an eighth full every event would force a wakeup of user space.
                scope.ring.drain(usize::MAX, |_| {});
            }
            row.1[c] = ns / frames.len() as f64;
        }
    }
    Ok(rows)
}

/// [`hook_test_runs`] as a markdown table.
pub fn hook_test_table(size: usize, sample: u64) -> anyhow::Result<String> {
    const RUNS: u32 = 1 << 20;
    let rows = hook_test_runs(size, sample, RUNS)?;
    let mut md = format!(
        "\nPer-packet cost of each hook on its own (BPF_PROG_TEST_RUN, {RUNS} runs over 64 frames of {size} B payload, mean ns per run):\n\n"
    );
    let _ = writeln!(md, "| program | every packet | 1 in {sample} | none selected (filter) |");
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for (name, ns) in rows {
        let _ = writeln!(md, "| {name} | {:.0} | {:.0} | {:.0} |", ns[0], ns[1], ns[2]);
    }
    Ok(md)
}
