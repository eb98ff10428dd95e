//! The self-contained HTML report page.

use std::fmt::Write as _;

use super::text::escape;
use super::{inline_svg, Page, Section, Table, HTML_CHART_HEIGHT, HTML_CHART_WIDTH};

/// The page's style sheet: readable on screen, charts kept whole when printed.
const CSS: &str = "\
body{font-family:'DejaVu Sans',Verdana,Arial,sans-serif;color:#222;background:#fff;\
max-width:1200px;margin:24px auto;padding:0 16px;line-height:1.45}
h1{font-size:1.6em;margin:0 0 .6em}
h2{font-size:1.25em;margin:2em 0 .6em;padding-bottom:.2em;border-bottom:1px solid #ccc}
nav ul{margin:.2em 0;padding-left:1.4em}
nav a{color:#0060a0;text-decoration:none}
table{border-collapse:collapse;margin:1em 0;font-size:.8em;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .6em;vertical-align:top}
th{background:#f2f2f2;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:1.2em 0;break-inside:avoid}
svg.netlat-chart{display:block;max-width:100%;height:auto}
";

/// The page as one self-contained HTML document: inline CSS and inline `<svg>` charts of
/// [`HTML_CHART_WIDTH`] × [`HTML_CHART_HEIGHT`], no scripts, no external URLs. With more
/// than one section a table of contents links to them (`#section-N`).
pub fn html(page: &Page) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let title = escape(&page.title);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<h1>{title}</h1>\n"
    );
    if page.sections.len() > 1 {
        out.push_str("<nav>\n<ul>\n");
        for (i, s) in page.sections.iter().enumerate() {
            let _ = writeln!(out, "<li><a href=\"#section-{}\">{}</a></li>", i + 1, escape(&s.heading));
        }
        out.push_str("</ul>\n</nav>\n");
    }
    for (i, s) in page.sections.iter().enumerate() {
        section(&mut out, i + 1, s);
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn section(out: &mut String, number: usize, s: &Section) {
    let _ = writeln!(out, "<section id=\"section-{number}\">\n<h2>{}</h2>", escape(&s.heading));
    for p in &s.paragraphs {
        let _ = writeln!(out, "<p>{}</p>", escape(p));
    }
    if let Some(t) = &s.table {
        table(out, t);
    }
    for chart in &s.charts {
        out.push_str("<figure>\n");
        out.push_str(&inline_svg(chart, HTML_CHART_WIDTH, HTML_CHART_HEIGHT));
        out.push_str("</figure>\n");
    }
    out.push_str("</section>\n");
}

fn table(out: &mut String, t: &Table) {
    out.push_str("<table>\n");
    if !t.header.is_empty() {
        out.push_str("<thead><tr>");
        for h in &t.header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr></thead>\n");
    }
    out.push_str("<tbody>\n");
    for row in &t.rows {
        out.push_str("<tr>");
        for cell in row {
            let class = if is_number(cell) { " class=\"num\"" } else { "" };
            let _ = write!(out, "<td{class}>{}</td>", escape(cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A number, possibly with a leading `±` or a trailing `%`: right-aligned in tables.
fn is_number(cell: &str) -> bool {
    let c = cell.trim();
    let c = c.strip_prefix('±').unwrap_or(c);
    let c = c.strip_suffix('%').unwrap_or(c);
    !c.is_empty() && c.trim().parse::<f64>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::{Chart, Series};
    use super::*;

    fn page() -> Page {
        Page {
            title: "netlat <report> & \"more\"".into(),
            sections: vec![
                Section {
                    heading: "Latency <per> hop".into(),
                    paragraphs: vec!["a & b".into()],
                    table: Some(Table {
                        header: vec!["path".into(), "p50_us".into()],
                        rows: vec![vec!["h1<eth0> → h2".into(), "12.5".into()], vec!["x".into()]],
                    }),
                    charts: vec![Chart::Lines {
                        title: "Latency over time".into(),
                        x_label: "s".into(),
                        y_label: "µs".into(),
                        series: vec![Series::new("a", vec![(0.0, 1.0), (1.0, 2.0)])],
                        log_y: false,
                    }],
                },
                Section { heading: "Empty".into(), ..Section::default() },
            ],
        }
    }

    #[test]
    fn page_is_self_contained_and_escaped() {
        let h = html(&page());
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(h.contains("<title>netlat &lt;report&gt; &amp; &quot;more&quot;</title>"));
        assert!(h.contains("<h2>Latency &lt;per&gt; hop</h2>"));
        assert!(h.contains("<td>h1&lt;eth0&gt; → h2</td><td class=\"num\">12.5</td>"));
        assert!(h.contains("<title>Latency over time</title>"));
        assert!(h.contains("href=\"#section-2\""));
        for bad in ["<script", "http:", "https:", "src=", "url(", "@import"] {
            assert!(!h.contains(bad), "{bad}");
        }
        assert_eq!(h, html(&page()), "deterministic");
        assert_eq!(h.matches("<svg").count(), 1);
    }

    #[test]
    fn numbers_are_recognized() {
        for n in ["12", " -3.5 ", "±0.25", "99.9%", "1e6"] {
            assert!(is_number(n), "{n}");
        }
        for s in ["", "h1", "unaligned", "±", "12 µs"] {
            assert!(!is_number(s), "{s}");
        }
    }

    #[test]
    fn empty_page_is_valid() {
        let h = html(&Page::default());
        assert!(h.contains("<title></title>") && h.ends_with("</html>\n"));
        assert!(!h.contains("<nav>"));
    }
}
