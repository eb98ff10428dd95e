//! Rendering an [`Analysis`] as a table, CSV or JSON.
//!
//! Table and CSV give latencies in microseconds with three decimals (exact, since
//! nearest-rank percentiles are whole nanoseconds); JSON gives integer nanoseconds so that
//! nothing is lost for programs that consume it.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::clocks::Alignment;
use crate::drops::CaptureDrops;
use crate::input::Skipped;
use crate::matching::{Analysis, FlowPairStats, PairStats, PathStats, Unmatched, WindowStats};

/// Output format, chosen with `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people, followed by the unmatched/ambiguous summary.
    #[default]
    Table,
    /// Comma-separated values with a header row; the summary goes to stderr.
    Csv,
    /// One JSON object with pairs, unmatched, ambiguous and the files used and skipped.
    Json,
}

/// Everything that is reported: the analysis and which files it is based on.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Latency figures and id counts.
    pub analysis: &'a Analysis,
    /// Files that were read.
    pub used: &'a [PathBuf],
    /// Files that were left out, with reasons.
    pub skipped: &'a [Skipped],
    /// How clocks were aligned.
    pub alignment: &'a Alignment,
    /// What each capture selected but could not record.
    pub drops: &'a [CaptureDrops],
    /// The table `--format csv` writes.
    pub table: Table,
}

/// Column headers of a hop table (table and CSV outputs). `lost` counts packets that
/// reached `from` on their path and were never seen again; `bound_us` is the ± error bound
/// from clock alignment (0 within one host), or `unaligned`.
pub const HEADER: [&str; 13] = [
    "from", "to", "segment", "count", "lost", "min_us", "mean_us", "p50_us", "p90_us", "p99_us", "p99.9_us", "max_us",
    "bound_us",
];

/// Which table `--format csv` writes (table and JSON output have them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Table {
    /// Per ordered pair of observation points.
    #[default]
    Hops,
    /// Per path: end to end and each hop (column `hop`: 0-based, or `e2e`).
    Paths,
    /// Per flow and pair (needs `--by flow`).
    Flows,
    /// Per pair and time window (needs `--window`).
    Windows,
}

impl Report<'_> {
    /// Renders the report for standard output in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => {
                let a = self.analysis;
                let mut out = table(&a.pairs);
                if !a.paths.is_empty() {
                    out.push_str("\npaths:\n");
                    out.push_str(&paths_text(&a.paths));
                }
                if !a.flow_pairs.is_empty() {
                    out.push_str("\nper flow:\n");
                    let rows: Vec<Vec<String>> = a.flow_pairs.iter().map(flow_cells).collect();
                    out.push_str(&aligned(&header_with(&["flow"]), &rows, &[0, 1, 2, 3]));
                }
                if !a.windows.is_empty() {
                    out.push_str("\nover time:\n");
                    let rows: Vec<Vec<String>> = a.windows.iter().map(window_cells).collect();
                    out.push_str(&aligned(&header_with(&["start_s"]), &rows, &[1, 2, 3]));
                }
                out.push('\n');
                out.push_str(&self.summary());
                out
            }
            Format::Csv => csv(self.analysis, self.table),
            Format::Json => json(self),
        }
    }

    /// The unmatched and ambiguous counts as text lines (the table footer; printed on
    /// stderr for CSV, where it would break the format).
    pub fn summary(&self) -> String {
        let a = self.analysis;
        let total: u64 = a.unmatched.iter().map(|u| u.ids).sum();
        let mut out = format!("unmatched ids: {total}\n");
        let width = a.unmatched.iter().map(|u| u.point.len()).max().unwrap_or(0);
        for u in &a.unmatched {
            let _ = writeln!(out, "  {:<width$}  {}", u.point, u.ids);
        }
        let _ = writeln!(out, "ambiguous ids: {}", a.ambiguous);
        for n in &a.notes {
            let _ = writeln!(out, "note: {n}");
        }
        out.push_str(&drop_lines(self.drops));
        out.push_str(&crate::kernel_events::lines(&a.kernel));
        out.push_str(&clock_lines(self.alignment));
        out
    }
}

/// Report loss per hook, when any capture lost events; unmatched ids at a point downstream
/// of one with report loss may be ours, not the network's.
pub fn drop_lines(drops: &[CaptureDrops]) -> String {
    let lossy: Vec<&CaptureDrops> = drops.iter().filter(|d| d.lost() > 0).collect();
    if drops.is_empty() {
        return String::new();
    }
    if lossy.is_empty() {
        return "report loss: none (every packet the captures selected was recorded, so unmatched ids are packets that did not reach the next point)\n".into();
    }
    let mut out = String::from(
        "report loss (packets the captures selected but could not record: capture drops, not network loss):\n",
    );
    for d in lossy {
        let _ = write!(
            out,
            "  {}:{}  {} of {} (kernel ring buffer full {}, writer queue full {}",
            d.host,
            d.hook,
            d.lost(),
            d.selected + d.unidentified,
            d.ringbuf_full,
            d.userspace_dropped
        );
        if d.unidentified > 0 {
            let _ = write!(out, ", reads not identified {}", d.unidentified);
        }
        out.push_str(")\n");
    }
    out
}

/// The clock table in one line per host, and every note.
pub fn clock_lines(al: &Alignment) -> String {
    let mut out = String::new();
    if let Some(r) = &al.result {
        if let Some(reference) = &r.reference {
            let _ = writeln!(out, "clocks (reference {reference}):");
            for h in r.hosts.iter().filter(|h| !h.reference && h.map.is_some()) {
                let _ = writeln!(
                    out,
                    "  {}: offset {:+.9} s, drift {:+.3} ppm, bound ±{} us, {} of {} samples",
                    h.host,
                    h.offset_ns / 1e9,
                    h.drift_ppm,
                    micros(h.bound_ns.round() as i64),
                    h.samples_used,
                    h.samples
                );
            }
        }
    }
    for n in &al.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

/// Nanoseconds as microseconds with three decimals, using integer arithmetic so that the
/// text is exact.
pub fn micros(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let abs = ns.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

fn cells(p: &PairStats) -> Vec<String> {
    let st = &p.stats;
    let us = |ns: i64| if st.count == 0 { "-".to_owned() } else { micros(ns) };
    vec![
        p.from.clone(),
        p.to.clone(),
        p.segment.clone(),
        st.count.to_string(),
        p.lost.to_string(),
        us(st.min_ns),
        us(st.mean_ns),
        us(st.p50_ns),
        us(st.p90_ns),
        us(st.p99_ns),
        us(st.p999_ns),
        us(st.max_ns),
        p.bound_ns.map_or_else(|| "unaligned".to_owned(), micros),
    ]
}

fn header_with(first: &[&'static str]) -> Vec<&'static str> {
    first.iter().chain(HEADER.iter()).copied().collect()
}

fn flow_cells(f: &FlowPairStats) -> Vec<String> {
    let mut row = vec![f.flow.clone()];
    row.extend(cells(&f.pair));
    row
}

fn window_cells(w: &WindowStats) -> Vec<String> {
    let mut row = vec![seconds(w.start_ns)];
    row.extend(cells(&w.pair));
    row
}

/// Nanoseconds as seconds with 3 decimals (exact: integer arithmetic).
fn seconds(ns: i64) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let ms = ns.unsigned_abs() / 1_000_000;
    format!("{sign}{}.{:03}", ms / 1000, ms % 1000)
}

/// Rows of the paths table: each hop (`hop` 0-based), then `e2e`.
fn path_rows(p: &PathStats) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = p
        .hops
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut row = vec![p.name.clone(), i.to_string()];
            row.extend(cells(h));
            row
        })
        .collect();
    let mut row = vec![p.name.clone(), "e2e".into()];
    row.extend(cells(&p.end_to_end_pair()));
    rows.push(row);
    rows
}

/// What follows a path's packet counts when `n` of them crossed hosts out of order.
pub fn crossed_note(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(
            " ({n} seen out of the path's order across hosts: a hand-over between hosts at once, or clocks aligned only within their bound; such hops are negative)"
        ),
    }
}

fn paths_text(paths: &[PathStats]) -> String {
    let mut out = String::new();
    for p in paths {
        let more = if p.flows.len() > 1 { format!(" (+{} more)", p.flows.len() - 1) } else { String::new() };
        let crossed = crossed_note(p.crossed);
        let _ = writeln!(
            out,
            "{}: {}{more}; {} packets: {} complete, {} lost, {} off path{crossed}",
            p.name,
            p.flows.first().map_or("", String::as_str),
            p.packets,
            p.complete,
            p.lost,
            p.off_path
        );
        let rows: Vec<Vec<String>> = path_rows(p).into_iter().map(|mut r| r.split_off(1)).collect();
        let table = aligned(&header_with(&["hop"]), &rows, &[1, 2, 3]);
        for line in table.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Aligned columns: the columns in `left` left-aligned, the others right-aligned, two
/// spaces between columns, no trailing spaces.
pub fn aligned(header: &[&str], rows: &[Vec<String>], left: &[usize]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |row: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, cell) in row.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if left.contains(&i) {
                s.push_str(cell);
                s.extend(std::iter::repeat_n(' ', pad));
            } else {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(cell);
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn table(pairs: &[PairStats]) -> String {
    let rows: Vec<Vec<String>> = pairs.iter().map(cells).collect();
    let mut out = aligned(&HEADER, &rows, &[0, 1, 2]);
    if rows.is_empty() {
        out.push_str("(no packet was seen at two points)\n");
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The header and the cells of one table, as table and CSV output print them.
pub fn table_cells(a: &Analysis, which: Table) -> (Vec<&'static str>, Vec<Vec<String>>) {
    match which {
        Table::Hops => (HEADER.to_vec(), a.pairs.iter().map(cells).collect()),
        Table::Paths => (header_with(&["path", "hop"]), a.paths.iter().flat_map(path_rows).collect()),
        Table::Flows => (header_with(&["flow"]), a.flow_pairs.iter().map(flow_cells).collect()),
        Table::Windows => (header_with(&["start_s"]), a.windows.iter().map(window_cells).collect()),
    }
}

fn csv(a: &Analysis, which: Table) -> String {
    let (header, rows) = table_cells(a, which);
    let mut out = header.join(",");
    out.push('\n');
    for row in rows {
        out.push_str(&row.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct JsonFiles<'a> {
    used: Vec<String>,
    skipped: &'a [Skipped],
}

#[derive(Serialize)]
struct JsonClock {
    host: String,
    reference: bool,
    aligned: bool,
    offset_ns: f64,
    drift_ppm: f64,
    bound_ns: f64,
    samples_used: usize,
    samples: usize,
    problem: Option<String>,
}

#[derive(Serialize)]
struct JsonClocks<'a> {
    same_clock: bool,
    reference: Option<&'a str>,
    hosts: Vec<JsonClock>,
    notes: &'a [String],
}

fn json_clocks(al: &Alignment) -> JsonClocks<'_> {
    let hosts = al
        .result
        .iter()
        .flat_map(|r| &r.hosts)
        .map(|h| JsonClock {
            host: h.host.clone(),
            reference: h.reference,
            aligned: h.map.is_some(),
            offset_ns: h.offset_ns,
            drift_ppm: h.drift_ppm,
            bound_ns: h.bound_ns,
            samples_used: h.samples_used,
            samples: h.samples,
            problem: h.problem.clone(),
        })
        .collect();
    JsonClocks {
        same_clock: al.same_clock,
        reference: al.result.as_ref().and_then(|r| r.reference.as_deref()),
        hosts,
        notes: &al.notes,
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    pairs: &'a [PairStats],
    paths: &'a [PathStats],
    flows: &'a [FlowPairStats],
    windows: &'a [WindowStats],
    notes: &'a [String],
    clocks: JsonClocks<'a>,
    report_loss: &'a [CaptureDrops],
    kernel_drops: &'a [crate::kernel_events::KernelDrop],
    retransmits: &'a [crate::kernel_events::Retransmits],
    tcp_stride: Option<u32>,
    unmatched: &'a [Unmatched],
    ambiguous: u64,
    events: u64,
    ids: u64,
    percentile_method: &'static str,
    files: JsonFiles<'a>,
}

fn json(r: &Report<'_>) -> String {
    let a = r.analysis;
    let doc = JsonReport {
        pairs: &a.pairs,
        paths: &a.paths,
        flows: &a.flow_pairs,
        windows: &a.windows,
        notes: &a.notes,
        clocks: json_clocks(r.alignment),
        report_loss: r.drops,
        kernel_drops: &a.kernel.drops,
        retransmits: &a.kernel.retransmits,
        tcp_stride: a.tcp_stride,
        unmatched: &a.unmatched,
        ambiguous: a.ambiguous,
        events: a.events,
        ids: a.ids,
        percentile_method: "nearest-rank",
        files: JsonFiles { used: r.used.iter().map(|p| p.display().to_string()).collect(), skipped: r.skipped },
    };
    let mut out = serde_json::to_string_pretty(&doc).expect("report serializes");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(from: &str, count: u64, ns: i64) -> PairStats {
        let stats = crate::stats::Stats::of_sorted(&vec![ns; count as usize]).unwrap();
        PairStats {
            from: from.into(),
            to: "h2:eth0:xdp".into(),
            segment: "network".into(),
            lost: count / 3,
            stats,
            bound_ns: (count != 3).then_some(1500),
        }
    }

    #[test]
    fn micros_is_exact() {
        assert_eq!(micros(0), "0.000");
        assert_eq!(micros(1), "0.001");
        assert_eq!(micros(1_234_567), "1234.567");
        assert_eq!(micros(-1500), "-1.500");
    }

    #[test]
    fn table_aligns_and_csv_quotes() {
        let pairs = vec![pair("h1:eth0:tc_egress", 12, 5000), pair("a,b", 3, 250)];
        let t = table(&pairs);
        assert_eq!(
            t,
            "from               to           segment  count  lost  min_us  mean_us  p50_us  p90_us  p99_us  p99.9_us  max_us   bound_us\n\
             h1:eth0:tc_egress  h2:eth0:xdp  network     12     4   5.000    5.000   5.000   5.000   5.000     5.000   5.000      1.500\n\
             a,b                h2:eth0:xdp  network      3     1   0.250    0.250   0.250   0.250   0.250     0.250   0.250  unaligned\n"
        );
        let a = Analysis { pairs: pairs[1..].to_vec(), ..Default::default() };
        assert_eq!(
            csv(&a, Table::Hops),
            "from,to,segment,count,lost,min_us,mean_us,p50_us,p90_us,p99_us,p99.9_us,max_us,bound_us\n\
             \"a,b\",h2:eth0:xdp,network,3,1,0.250,0.250,0.250,0.250,0.250,0.250,0.250,unaligned\n"
        );
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(0), "0.000");
        assert_eq!(seconds(1_500_000_000), "1.500");
        assert_eq!(seconds(-1_000_000), "-0.001");
    }
}
