//! `netlat-analyze sync`: the clock table (host, offset, drift, bound,
//! samples), the pairs behind it, and what could not be aligned.

use std::fmt::Write as _;

use serde::Serialize;

use crate::clocks::Alignment;
use crate::report::{aligned, micros, Format};

/// Column headers of the clock table (table and CSV).
pub const HEADER: [&str; 7] = ["host", "offset_s", "drift_ppm", "bound_us", "samples_used", "samples", "via"];

fn rows(al: &Alignment) -> Vec<[String; 7]> {
    let Some(r) = &al.result else { return Vec::new() };
    r.hosts
        .iter()
        .map(|h| {
            let aligned = h.map.is_some();
            [
                if h.reference { format!("{} (reference)", h.host) } else { h.host.clone() },
                if aligned { format!("{:+.9}", h.offset_ns / 1e9) } else { "not aligned".into() },
                if aligned { format!("{:+.3}", h.drift_ppm) } else { "-".into() },
                if aligned { micros(h.bound_ns.round() as i64) } else { "-".into() },
                h.samples_used.to_string(),
                h.samples.to_string(),
                if h.via.is_empty() { "-".into() } else { h.via.join(">") },
            ]
        })
        .collect()
}

fn table(al: &Alignment) -> String {
    let rows: Vec<Vec<String>> = rows(al).into_iter().map(Vec::from).collect();
    let mut out = if rows.is_empty() { String::new() } else { aligned(&HEADER, &rows, &[0, 6]) };
    if let Some(r) = &al.result {
        if !r.edges.is_empty() {
            out.push_str("\npairs (offset of b against a):\n");
        }
        for e in &r.edges {
            let f = &e.fit;
            let band = f.windows.iter().map(|w| w.center_bound_ns).fold(f64::INFINITY, f64::min);
            let _ = writeln!(
                out,
                "  {} - {}: {} windows, {} exchanges, {} of {} samples, narrowest bound ±{} us, loop residual {} us{}",
                e.a,
                e.b,
                f.windows.len(),
                f.exchanges,
                f.used,
                f.samples,
                micros(band.round() as i64),
                micros(e.loop_residual_ns.round() as i64),
                if f.windows.iter().all(|w| w.consistent) {
                    ""
                } else {
                    ", SOME WINDOWS INCONSISTENT (samples break the model)"
                }
            );
            for s in &f.steps {
                let _ = writeln!(
                    out,
                    "    clock step of {} us at {} ns ({}'s clock)",
                    micros(s.size_ns.round() as i64),
                    s.at_ns,
                    e.b
                );
            }
        }
        if r.inconsistent_times > 0 {
            let _ = writeln!(
                out,
                "  loops did not close at {} evaluation times (pairs place a clock step at different probes); each host follows its own best pair there",
                r.inconsistent_times
            );
        }
        let m = &r.messages;
        let _ = writeln!(
            out,
            "\nmessages: {} seen, {} complete, {} pure, {} impure (gap changed in flight), {} unpaired, {} not seen arriving, {} not seen leaving, {} ambiguous, {} forwarded by a capturing host",
            m.messages, m.complete, m.pure, m.impure, m.unpaired, m.unreceived, m.unsent, m.ambiguous, m.forwarded
        );
        let t = &r.traffic;
        let _ = writeln!(
            out,
            "traffic: {} packets seen on two hosts or more, {} one-way samples ({} kept, the fastest per ms), {} ambiguous",
            t.packets, t.samples, t.kept, t.ambiguous
        );
    }
    for n in &al.notes {
        let _ = writeln!(out, "note: {n}");
    }
    out
}

fn csv(al: &Alignment) -> String {
    let mut out = HEADER.join(",") + "\n";
    for r in rows(al) {
        out.push_str(&r.join(","));
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct Json<'a> {
    same_clock: bool,
    result: Option<&'a sync::network::SyncResult>,
    notes: &'a [String],
}

/// Renders the clock report.
pub fn render(al: &Alignment, format: Format) -> String {
    match format {
        Format::Table => table(al),
        Format::Csv => csv(al),
        Format::Json => {
            let doc = Json { same_clock: al.same_clock, result: al.result.as_ref(), notes: &al.notes };
            serde_json::to_string_pretty(&doc).expect("serializes") + "\n"
        }
    }
}

/// The notes alone (stderr for CSV).
pub fn notes(al: &Alignment) -> String {
    al.notes.iter().map(|n| format!("note: {n}\n")).collect()
}
