//! `netlat-analyze report`: one self-contained HTML page (and PNGs for papers) with the
//! tables and the charts: latency over time per hop, CDF per hop, per-hop breakdown of
//! each path, clock-sync error bound over time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::charts::{self, Chart, Page, Section, Series, Table};
use crate::clocks::Alignment;
use crate::matching::Analysis;
use crate::report::{self, Report};

/// Chart size in the page and in PNGs, CSS pixels.
pub const WIDTH: u32 = 960;
/// See [`WIDTH`].
pub const HEIGHT: u32 = 420;

/// Titles of the charts, as they appear in the page (tests look for them).
pub const TITLES: [&str; 4] = [
    "Latency over time per hop",
    "CDF of latency per hop",
    "Per-hop breakdown of each path (mean)",
    "Clock-sync error bound over time",
];

fn hop_name(from: &str, to: &str) -> String {
    format!("{from} → {to}")
}

/// The charts of `a` (needs the hop rows: [`crate::walk::Detail::hop_rows`]).
pub fn charts(a: &Analysis, alignment: &Alignment) -> Vec<Chart> {
    // Per hop: (seconds since the first event, µs), in time order.
    let mut per_hop: BTreeMap<(u32, u32), Vec<(f64, f64)>> = BTreeMap::new();
    let r = &a.rows;
    for i in 0..r.latency.len() {
        let t = (r.ts[i] - a.t0_ns) as f64 / 1e9;
        per_hop.entry((r.from[i], r.to[i])).or_default().push((t, r.latency[i] as f64 / 1e3));
    }
    let label = |p: u32| a.points[p as usize].label.as_str();
    let mut over_time = Vec::new();
    let mut cdf = Vec::new();
    for ((f, t), mut pts) in per_hop {
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        cdf.push((hop_name(label(f), label(t)), pts.iter().map(|p| p.1).collect()));
        over_time.push(Series { name: hop_name(label(f), label(t)), points: pts });
    }

    let max_hops = a.paths.iter().map(|p| p.hops.len()).max().unwrap_or(0);
    let layers = (0..max_hops)
        .map(|h| {
            let values = a.paths.iter().map(|p| p.hops.get(h).map_or(0.0, |x| x.stats.mean_ns as f64 / 1e3)).collect();
            let segments: Vec<&str> =
                a.paths.iter().filter_map(|p| p.hops.get(h)).map(|x| x.segment.as_str()).collect();
            let same = segments.windows(2).all(|w| w[0] == w[1]);
            let name = match segments.first() {
                Some(s) if same => format!("hop {h} ({s})"),
                _ => format!("hop {h}"),
            };
            (name, values)
        })
        .collect();

    let mut bounds = Vec::new();
    for h in alignment.result.iter().flat_map(|r| &r.hosts).filter(|h| !h.reference) {
        if let Some(map) = &h.map {
            let points = map
                .knots
                .iter()
                .map(|k| ((map.to_reference(k.t_ns) - a.t0_ns) as f64 / 1e9, k.bound_ns / 1e3))
                .collect();
            bounds.push(Series { name: h.host.clone(), points });
        }
    }

    vec![
        Chart::Lines {
            title: TITLES[0].into(),
            x_label: "time since the first event (s)".into(),
            y_label: "one-way latency (µs)".into(),
            series: over_time,
            log_y: true,
        },
        Chart::Cdf { title: TITLES[1].into(), x_label: "one-way latency (µs)".into(), series: cdf, log_x: true },
        Chart::StackedBars {
            title: TITLES[2].into(),
            value_label: "mean latency (µs)".into(),
            categories: a.paths.iter().map(|p| p.name.clone()).collect(),
            layers,
        },
        Chart::Lines {
            title: TITLES[3].into(),
            x_label: "time since the first event (s)".into(),
            y_label: "± bound (µs)".into(),
            series: bounds,
            log_y: false,
        },
    ]
}

/// The whole page.
pub fn page(rep: &Report<'_>, charts: Vec<Chart>) -> Page {
    let a = rep.analysis;
    let mut charts = charts.into_iter();
    let mut next = |n: usize| charts.by_ref().take(n).collect::<Vec<_>>();
    let mut intro = format!(
        "{} events, {} packets from {} files ({} skipped); {} ambiguous, {} unmatched.",
        a.events,
        a.ids,
        rep.used.len(),
        rep.skipped.len(),
        a.ambiguous,
        a.unmatched.iter().map(|u| u.ids).sum::<u64>()
    );
    if a.paths.is_empty() {
        intro.push_str(" No packet was seen at two points.");
    }
    let mut path_paragraphs = Vec::new();
    for p in &a.paths {
        path_paragraphs.push(format!(
            "{}: {} — {} packets: {} complete, {} lost, {} off path{}.",
            p.name,
            p.flows.join("; "),
            p.packets,
            p.complete,
            p.lost,
            p.off_path,
            report::crossed_note(p.crossed)
        ));
    }
    let notes: Vec<String> = report::clock_lines(rep.alignment)
        .lines()
        .chain(report::drop_lines(rep.drops).lines())
        .chain(a.notes.iter().map(String::as_str))
        .map(str::to_owned)
        .collect();
    Page {
        title: "netlat report".into(),
        sections: vec![
            Section { heading: "Summary".into(), paragraphs: vec![intro], table: None, charts: vec![] },
            Section {
                heading: "Hops".into(),
                paragraphs: vec!["Per ordered pair of observation points; latencies in µs, nearest-rank percentiles; bound_us is the ± error bound from clock alignment.".into()],
                table: Some(table(a, report::Table::Hops)),
                charts: next(2),
            },
            Section { heading: "Paths".into(), paragraphs: path_paragraphs, table: Some(table(a, report::Table::Paths)), charts: next(1) },
            Section { heading: "Clocks and loss".into(), paragraphs: notes, table: None, charts: next(1) },
        ],
    }
}

/// One of the report's tables, cell for cell as the text output prints it.
fn table(a: &Analysis, which: report::Table) -> Table {
    let (header, rows) = report::table_cells(a, which);
    Table { header: header.into_iter().map(str::to_owned).collect(), rows }
}

/// A file name for a chart: its title in lower case, words joined by `-`.
pub fn slug(title: &str) -> String {
    let mut out = String::new();
    for w in title.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&w.to_ascii_lowercase());
    }
    out
}

/// Why the report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Drawing a PNG failed.
    #[error("{path}: {source}")]
    Png {
        /// The file.
        path: PathBuf,
        /// The error.
        source: charts::ChartError,
    },
}

/// Writes `html` to `path` and, with `png_dir`, each chart as PNG there. Returns the files.
pub fn write(rep: &Report<'_>, path: &Path, png_dir: Option<&Path>) -> Result<Vec<PathBuf>, ReportError> {
    let all = charts(rep.analysis, rep.alignment);
    let mut written = Vec::new();
    if let Some(dir) = png_dir {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.to_owned(), source })?;
        for c in &all {
            let file = dir.join(format!("{}.png", slug(c.title())));
            let bytes =
                charts::png(c, WIDTH, HEIGHT).map_err(|source| ReportError::Png { path: file.clone(), source })?;
            std::fs::write(&file, bytes).map_err(|source| ReportError::Io { path: file.clone(), source })?;
            written.push(file);
        }
    }
    let html = charts::html(&page(rep, all));
    let tmp = path.with_extension("html.partial");
    let io = |source| ReportError::Io { path: path.to_owned(), source };
    std::fs::write(&tmp, html).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    written.push(path.to_owned());
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("CDF of latency per hop"), "cdf-of-latency-per-hop");
        assert_eq!(slug("Per-hop breakdown of each path (mean)"), "per-hop-breakdown-of-each-path-mean");
    }
}
