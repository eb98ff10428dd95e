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
use crate::matching::{Analysis, PairStats, Unmatched};

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
}

/// Column headers of the table and CSV outputs. `bound_us` is the ± error bound from clock
/// alignment (0 within one host), or `unaligned`.
pub const HEADER: [&str; 9] = ["from", "to", "count", "min_us", "p50_us", "p90_us", "p99_us", "max_us", "bound_us"];

impl Report<'_> {
    /// Renders the report for standard output in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => {
                let mut out = table(&self.analysis.pairs);
                out.push('\n');
                out.push_str(&self.summary());
                out
            }
            Format::Csv => csv(&self.analysis.pairs),
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
        out.push_str(&drop_lines(self.drops));
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
        let _ = writeln!(
            out,
            "  {}:{}  {} of {} (kernel ring buffer full {}, writer queue full {})",
            d.host,
            d.hook,
            d.lost(),
            d.selected,
            d.ringbuf_full,
            d.userspace_dropped
        );
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

fn cells(p: &PairStats) -> [String; 9] {
    [
        p.from.clone(),
        p.to.clone(),
        p.count.to_string(),
        micros(p.min_ns),
        micros(p.p50_ns),
        micros(p.p90_ns),
        micros(p.p99_ns),
        micros(p.max_ns),
        p.bound_ns.map_or_else(|| "unaligned".to_owned(), micros),
    ]
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
    let rows: Vec<Vec<String>> = pairs.iter().map(|p| cells(p).to_vec()).collect();
    let mut out = aligned(&HEADER, &rows, &[0, 1]);
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

fn csv(pairs: &[PairStats]) -> String {
    let mut out = HEADER.join(",");
    out.push('\n');
    for p in pairs {
        let row = cells(p);
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
    clocks: JsonClocks<'a>,
    report_loss: &'a [CaptureDrops],
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
        clocks: json_clocks(r.alignment),
        report_loss: r.drops,
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
        PairStats {
            from: from.into(),
            to: "h2:eth0:xdp".into(),
            count,
            min_ns: ns,
            p50_ns: ns,
            p90_ns: ns,
            p99_ns: ns,
            max_ns: ns,
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
        let pairs = [pair("h1:eth0:tc_egress", 12, 5000), pair("a,b", 3, 250)];
        let t = table(&pairs);
        assert_eq!(
            t,
            "from               to           count  min_us  p50_us  p90_us  p99_us  max_us   bound_us\n\
             h1:eth0:tc_egress  h2:eth0:xdp     12   5.000   5.000   5.000   5.000   5.000      1.500\n\
             a,b                h2:eth0:xdp      3   0.250   0.250   0.250   0.250   0.250  unaligned\n"
        );
        let c = csv(&pairs[1..]);
        assert_eq!(
            c,
            "from,to,count,min_us,p50_us,p90_us,p99_us,max_us,bound_us\n\"a,b\",h2:eth0:xdp,3,0.250,0.250,0.250,0.250,0.250,unaligned\n"
        );
    }
}
