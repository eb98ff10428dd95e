//! The analyzer speed benchmark (issue 5): `netlat-lab bench-analyze`.
//!
//! For each size, synthetic captures of 10 hosts ([`crate::genevents`]) are analyzed by
//! `netlat-analyze --same-clock --format json` and by the same query in DuckDB
//! (`scripts/duckdb_latency.py`), alternately, each as its own process from a warm page
//! cache. Wall time, peak RSS (`ru_maxrss` from `wait4`) and CPU time of every run are
//! recorded; the median run is reported. Both tools must report the same figures for every
//! pair of points, the same unmatched counts per point and the same ambiguous count, or the
//! benchmark fails.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use crate::{bins, genevents};

/// The DuckDB side, run with `python3 -c`.
pub const DUCKDB_SCRIPT: &str = include_str!("../duckdb_latency.py");

/// Datasets up to this size are analyzed `runs` times per tool; larger ones once.
const REPEAT_UP_TO: u64 = 10_000_000;

/// What to run.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Events per dataset.
    pub sizes: Vec<u64>,
    /// Runs per tool (median reported) for datasets up to 10M events.
    pub runs: usize,
    /// Work folder.
    pub dir: PathBuf,
    /// Keep the datasets.
    pub keep: bool,
    /// Python interpreter with the duckdb module.
    pub python: String,
}

/// `10M`, `1.5k`, `100000` → a count.
pub fn parse_count(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1e3),
        Some((i, 'm' | 'M')) => (&s[..i], 1e6),
        Some((i, 'g' | 'G')) => (&s[..i], 1e9),
        _ => (s, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| format!("not a count: {s:?} (e.g. 1000000, 3M, 500k)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("not a positive count: {s:?}"));
    }
    Ok((v * mult).round() as u64)
}

/// One process run.
#[derive(Clone, Debug)]
pub struct Measured {
    /// Wall time.
    pub wall: Duration,
    /// Peak resident set size, bytes.
    pub max_rss: u64,
    /// User + system CPU time.
    pub cpu: Duration,
    /// Standard output.
    pub stdout: String,
}

/// The DuckDB script's own time for its queries (`timings_s.total`), without the start of
/// Python and the import of duckdb.
fn query_time(stdout: &str) -> Option<Duration> {
    let v: Value = serde_json::from_str(stdout).ok()?;
    v.pointer("/timings_s/total").and_then(Value::as_f64).map(Duration::from_secs_f64)
}

/// Runs `cmd` to its end and measures it (wall clock, and the child's `rusage` from `wait4`).
pub fn measure(mut cmd: Command) -> anyhow::Result<Measured> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).map(|_| s)
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).map(|_| s)
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child, which std has not reaped.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let wall = start.elapsed();
    if r < 0 {
        bail!("wait4 {cmd:?}: {}", std::io::Error::last_os_error());
    }
    let stdout = out.join().expect("reader").context("reading stdout")?;
    let stderr = err.join().expect("reader").context("reading stderr")?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{cmd:?} failed (wait status {status:#x}):\n{stderr}");
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Measured { wall, max_rss: ru.ru_maxrss as u64 * 1024, cpu: tv(ru.ru_utime) + tv(ru.ru_stime), stdout })
}

/// The figures both tools must agree on, from their JSON: per pair (count, min, p50, p90,
/// p99, max), unmatched ids per point, ambiguous ids, events and ids. Other fields (those
/// the analyzer may add later) are not compared.
#[derive(Debug, PartialEq, Eq)]
pub struct Figures {
    /// (from, to) → [count, min, p50, p90, p99, max].
    pub pairs: BTreeMap<(String, String), [i64; 6]>,
    /// point → unmatched ids.
    pub unmatched: BTreeMap<String, i64>,
    /// Ambiguous ids.
    pub ambiguous: i64,
    /// Rows read.
    pub events: i64,
    /// Distinct ids.
    pub ids: i64,
}

impl Figures {
    /// Extracts the compared fields of an analyzer-shaped JSON document.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let v: Value = serde_json::from_str(text).context("parsing JSON")?;
        let int = |v: &Value, k: &str| v.get(k).and_then(Value::as_i64).with_context(|| format!("no integer `{k}`"));
        let str_ = |v: &Value, k: &str| {
            v.get(k).and_then(Value::as_str).map(str::to_owned).with_context(|| format!("no string `{k}`"))
        };
        let mut pairs = BTreeMap::new();
        for p in v.get("pairs").and_then(Value::as_array).context("no `pairs`")? {
            let figs = [
                int(p, "count")?,
                int(p, "min_ns")?,
                int(p, "p50_ns")?,
                int(p, "p90_ns")?,
                int(p, "p99_ns")?,
                int(p, "max_ns")?,
            ];
            if pairs.insert((str_(p, "from")?, str_(p, "to")?), figs).is_some() {
                bail!("pair {} → {} reported twice", str_(p, "from")?, str_(p, "to")?);
            }
        }
        let mut unmatched = BTreeMap::new();
        for u in v.get("unmatched").and_then(Value::as_array).context("no `unmatched`")? {
            unmatched.insert(str_(u, "point")?, int(u, "ids")?);
        }
        Ok(Self {
            pairs,
            unmatched,
            ambiguous: int(&v, "ambiguous")?,
            events: int(&v, "events")?,
            ids: int(&v, "ids")?,
        })
    }

    /// Differences from `other`, one line each (empty when equal).
    pub fn diff(&self, other: &Self, me: &str, them: &str) -> Vec<String> {
        let mut out = Vec::new();
        const F: [&str; 6] = ["count", "min", "p50", "p90", "p99", "max"];
        for (k, a) in &self.pairs {
            match other.pairs.get(k) {
                None => out.push(format!("{} → {}: only in {me}", k.0, k.1)),
                Some(b) if a != b => {
                    let d: Vec<String> =
                        (0..6).filter(|&i| a[i] != b[i]).map(|i| format!("{} {} vs {}", F[i], a[i], b[i])).collect();
                    out.push(format!("{} → {}: {me} vs {them}: {}", k.0, k.1, d.join(", ")));
                }
                Some(_) => {}
            }
        }
        out.extend(
            other
                .pairs
                .keys()
                .filter(|k| !self.pairs.contains_key(k))
                .map(|k| format!("{} → {}: only in {them}", k.0, k.1)),
        );
        if self.unmatched != other.unmatched {
            out.push(format!("unmatched: {me} {:?} vs {them} {:?}", self.unmatched, other.unmatched));
        }
        for (name, a, b) in [
            ("ambiguous", self.ambiguous, other.ambiguous),
            ("events", self.events, other.events),
            ("ids", self.ids, other.ids),
        ] {
            if a != b {
                out.push(format!("{name}: {me} {a} vs {them} {b}"));
            }
        }
        out
    }
}

/// Median run of one tool on one dataset.
#[derive(Clone, Debug)]
pub struct ToolResult {
    /// Median wall time.
    pub wall: Duration,
    /// Largest peak RSS over the runs, bytes.
    pub max_rss: u64,
    /// Median CPU time.
    pub cpu: Duration,
    /// All wall times.
    pub walls: Vec<Duration>,
    /// Median time of the queries alone (DuckDB: without Python's start and import).
    pub query: Option<Duration>,
}

/// One dataset's results.
#[derive(Clone, Debug)]
pub struct SizeResult {
    /// Events in the dataset.
    pub events: u64,
    /// Files and bytes on disk.
    pub files: usize,
    /// Bytes on disk.
    pub bytes: u64,
    /// Generation time.
    pub gen: Duration,
    /// Pairs of points reported.
    pub pairs: usize,
    /// netlat-analyze.
    pub netlat: ToolResult,
    /// DuckDB.
    pub duckdb: ToolResult,
}

fn summarize(runs: &[Measured]) -> ToolResult {
    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }
    ToolResult {
        wall: median(runs.iter().map(|m| m.wall).collect()),
        max_rss: runs.iter().map(|m| m.max_rss).max().unwrap_or(0),
        cpu: median(runs.iter().map(|m| m.cpu).collect()),
        walls: runs.iter().map(|m| m.wall).collect(),
        query: runs.iter().map(|m| query_time(&m.stdout)).collect::<Option<Vec<_>>>().map(median),
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Reads every file once so both tools start from the page cache.
fn warm(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut r = std::fs::File::open(f)?;
        while r.read(&mut buf)? > 0 {}
    }
    Ok(())
}

/// Runs the benchmark; returns the report (Markdown tables).
pub fn run(cfg: &BenchConfig) -> anyhow::Result<String> {
    let analyze = bins::path("netlat-analyze");
    let v = Command::new(&cfg.python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .with_context(|| format!("running {}", cfg.python))?;
    if !v.status.success() {
        bail!(
            "{} cannot import duckdb (scripts/bootstrap installs it): {}",
            cfg.python,
            String::from_utf8_lossy(&v.stderr)
        );
    }
    let duckdb_version = String::from_utf8_lossy(&v.stdout).trim().to_owned();
    // The script's nearest-rank check, once, outside the timed runs.
    let c = Command::new(&cfg.python).arg("-c").arg(DUCKDB_SCRIPT).arg("--check").output()?;
    if !c.status.success() {
        bail!("the DuckDB query fails its nearest-rank check: {}", String::from_utf8_lossy(&c.stderr));
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load_start = loadavg();
    std::fs::create_dir_all(&cfg.dir).with_context(|| format!("creating {}", cfg.dir.display()))?;
    let mut results = Vec::new();
    for &events in &cfg.sizes {
        let data = cfg.dir.join(format!("e{events}"));
        if data.exists() {
            std::fs::remove_dir_all(&data).with_context(|| format!("clearing {}", data.display()))?;
        }
        if room_for(&cfg.dir, events) == Some(false) {
            bail!("{} has no room for {events} events (about 20 bytes each)", cfg.dir.display());
        }
        let gen = genevents::generate(&genevents::GenConfig::new(data.clone(), events))?;
        eprintln!(
            "bench-analyze: {events} events: generated {} files, {:.0} MiB, in {:.1} s (load {})",
            gen.files.len(),
            gen.bytes as f64 / 1048576.0,
            gen.elapsed.as_secs_f64(),
            loadavg()
        );
        warm(&gen.files)?;
        let tmp = cfg.dir.join("duckdb.tmp");
        let runs = if events <= REPEAT_UP_TO { cfg.runs.max(1) } else { 1 };
        let (mut n_runs, mut d_runs) = (Vec::new(), Vec::new());
        let mut reference: Option<Figures> = None;
        for i in 0..runs {
            let mut n = Command::new(&analyze);
            n.args(["--same-clock", "--format", "json"]).arg(&data);
            let n = measure(n)?;
            let mut d = Command::new(&cfg.python);
            d.arg("-c").arg(DUCKDB_SCRIPT).arg("--timings").arg("--temp-dir").arg(&tmp).arg(&data);
            let d = measure(d)?;
            eprintln!(
                "bench-analyze:   run {}: netlat {:.2} s {:.0} MiB, duckdb {:.2} s {:.0} MiB (load {})",
                i + 1,
                n.wall.as_secs_f64(),
                n.max_rss as f64 / 1048576.0,
                d.wall.as_secs_f64(),
                d.max_rss as f64 / 1048576.0,
                loadavg()
            );
            let (nf, df) = (Figures::from_json(&n.stdout)?, Figures::from_json(&d.stdout)?);
            let diff = nf.diff(&df, "netlat", "duckdb");
            if !diff.is_empty() {
                bail!("{events} events: netlat-analyze and DuckDB disagree:\n  {}", diff.join("\n  "));
            }
            if nf.events != gen.events as i64 {
                bail!("{events} events: the analysis read {} events, the generator wrote {}", nf.events, gen.events);
            }
            if let Some(r) = &reference {
                let diff = r.diff(&nf, "run 1", "this run");
                anyhow::ensure!(diff.is_empty(), "results differ between runs: {diff:?}");
            }
            reference.get_or_insert(nf);
            n_runs.push(n);
            d_runs.push(d);
        }
        let pairs = reference.as_ref().map_or(0, |r| r.pairs.len());
        results.push(SizeResult {
            events: gen.events,
            files: gen.files.len(),
            bytes: gen.bytes,
            gen: gen.elapsed,
            pairs,
            netlat: summarize(&n_runs),
            duckdb: summarize(&d_runs),
        });
        if !cfg.keep {
            std::fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if !cfg.keep {
        let _ = std::fs::remove_dir(&cfg.dir);
    }
    let mut report = format!(
        "{cpus} CPUs; DuckDB {duckdb_version} (default threads); load average {load_start} at start, {} at end\n\
         (figures equal between netlat-analyze and DuckDB on every dataset)\n\n",
        loadavg()
    );
    report.push_str(&markdown(&results));
    Ok(report)
}

/// The results table and the growth table.
pub fn markdown(results: &[SizeResult]) -> String {
    let mut s = String::from(
        "| events | files | size | tool | seconds | events/s | peak RSS | CPU s | time netlat/duckdb | RSS netlat/duckdb |\n\
         |---:|---:|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mib = |b: u64| format!("{:.0} MiB", b as f64 / 1048576.0);
    for r in results {
        for (name, t) in [("netlat-analyze", &r.netlat), ("DuckDB", &r.duckdb)] {
            let secs = t.wall.as_secs_f64();
            let ratio = |a: f64, b: f64| format!("{:.2}", a / b);
            let (tr, mr) = if name == "DuckDB" {
                (String::new(), String::new())
            } else {
                (
                    ratio(r.netlat.wall.as_secs_f64(), r.duckdb.wall.as_secs_f64()),
                    ratio(r.netlat.max_rss as f64, r.duckdb.max_rss as f64),
                )
            };
            let query = t.query.map(|q| format!(" ({:.2})", q.as_secs_f64())).unwrap_or_default();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {name} | {secs:.2}{query} | {:.2} M | {} | {:.2} | {tr} | {mr} |",
                group(r.events),
                r.files,
                mib(r.bytes),
                r.events as f64 / secs / 1e6,
                mib(t.max_rss),
                t.cpu.as_secs_f64(),
            );
        }
    }
    s.push_str(
        "\nseconds: median wall time of the process (DuckDB in brackets: its queries alone, without Python's \
         start and `import duckdb`); peak RSS: largest of the runs; CPU: user + system, median.\n",
    );
    s.push_str(
        "\nGrowth between consecutive sizes (time ratio ÷ events ratio = cost per event ratio; 1.00 is linear):\n\n",
    );
    s.push_str(
        "| events | × events | netlat × time | netlat cost/event | netlat × RSS | DuckDB × time | DuckDB cost/event | DuckDB × RSS |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for w in results.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let ev = b.events as f64 / a.events as f64;
        let t = |x: &ToolResult, y: &ToolResult| y.wall.as_secs_f64() / x.wall.as_secs_f64();
        let m = |x: &ToolResult, y: &ToolResult| y.max_rss as f64 / x.max_rss as f64;
        let _ = writeln!(
            s,
            "| {} → {} | {ev:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            group(a.events),
            group(b.events),
            t(&a.netlat, &b.netlat),
            t(&a.netlat, &b.netlat) / ev,
            m(&a.netlat, &b.netlat),
            t(&a.duckdb, &b.duckdb),
            t(&a.duckdb, &b.duckdb) / ev,
            m(&a.duckdb, &b.duckdb),
        );
    }
    s.push_str("\nAll runs (wall s), generation time and pairs reported:\n\n");
    for r in results {
        let list =
            |t: &ToolResult| t.walls.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(", ");
        let _ = writeln!(
            s,
            "* {} events: netlat [{}], DuckDB [{}]; generated in {:.1} s; {} pairs",
            group(r.events),
            list(&r.netlat),
            list(&r.duckdb),
            r.gen.as_secs_f64(),
            r.pairs
        );
    }
    s
}

/// 1234567 → "1,234,567".
fn group(n: u64) -> String {
    let digits: Vec<char> = n.to_string().chars().collect();
    digits.rchunks(3).rev().map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join(",")
}

/// Whether `dir` has room for `events` events (about 20 bytes each on disk).
pub fn room_for(dir: &Path, events: u64) -> Option<bool> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs is plain data and `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64 > events * 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse() {
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert_eq!(parse_count("1.5k"), Ok(1500));
        assert_eq!(parse_count("123"), Ok(123));
        assert!(parse_count("x").is_err());
        assert!(parse_count("0").is_err());
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group(1), "1");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(100_000_000), "100,000,000");
    }
}
