//! Grouped bar charts as standalone SVG (no fonts or libraries needed to
//! view them; any browser or image viewer draws them).

use std::fmt::Write as _;

/// One series of bars: a value per category (NaN: no bar).
pub struct Series {
    /// Legend text.
    pub name: String,
    /// One value per category.
    pub values: Vec<f64>,
}

/// A horizontal band drawn behind the bars (an accepted range).
pub struct Band {
    /// Lower edge.
    pub lo: f64,
    /// Upper edge.
    pub hi: f64,
    /// Legend text.
    pub label: String,
}

const COLOURS: [&str; 4] = ["#4878a8", "#e0803a", "#5a9e5a", "#b04a5a"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Grouped bars: one group per category, one bar per series; a log10 y
/// axis when `log` (values must then be positive).
pub fn bars(title: &str, y_label: &str, cats: &[String], series: &[Series], log: bool, band: Option<&Band>) -> String {
    let (w, h, left, right, top, bottom) = (900.0, 500.0, 150.0, 20.0, 50.0, 150.0);
    let vals = series.iter().flat_map(|s| s.values.iter().copied()).filter(|v| v.is_finite());
    let vals: Vec<f64> = vals.chain(band.iter().flat_map(|b| [b.lo, b.hi])).collect();
    let max = vals.iter().copied().fold(f64::MIN, f64::max).max(1e-9);
    let min = vals.iter().copied().fold(f64::MAX, f64::min);
    let (y0, y1) = if log {
        let lo = min.max(1e-3).log10().floor();
        (lo, max.log10().ceil().max(lo + 1.0))
    } else {
        (min.min(0.0), nice(max * 1.05))
    };
    let plot_h = h - top - bottom;
    let y = |v: f64| {
        let v = if log { v.max(10f64.powf(y0)).log10() } else { v };
        top + plot_h * (1.0 - (v - y0) / (y1 - y0))
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>
<text transform="translate({} {}) rotate(-90)" text-anchor="middle">{}</text>
"#,
        w / 2.0,
        esc(title),
        left - 60.0,
        top + plot_h / 2.0,
        esc(y_label)
    );
    if let Some(b) = band {
        let _ = writeln!(
            s,
            r##"<rect x="{left}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#d8ecd8"/>"##,
            y(b.hi),
            w - left - right,
            (y(b.lo) - y(b.hi)).max(1.0)
        );
    }
    // Axis ticks: decades on a log axis, five steps on a linear one.
    let ticks: Vec<f64> = if log {
        (y0 as i32..=y1 as i32).map(|e| 10f64.powi(e)).collect()
    } else {
        (0..=5).map(|i| y0 + (y1 - y0) * f64::from(i) / 5.0).collect()
    };
    for t in ticks {
        let ty = y(t);
        let label = if t >= 100.0 || t == 0.0 { format!("{t:.0}") } else { format!("{t}") };
        let _ = writeln!(
            s,
            r##"<line x1="{left}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            w - right,
            left - 6.0,
            ty + 4.0
        );
    }
    let group = (w - left - right) / cats.len().max(1) as f64;
    let bar = group * 0.8 / series.len().max(1) as f64;
    for (i, c) in cats.iter().enumerate() {
        let gx = left + group * i as f64 + group * 0.1;
        for (k, se) in series.iter().enumerate() {
            let v = se.values.get(i).copied().unwrap_or(f64::NAN);
            if !v.is_finite() {
                continue;
            }
            let (top_y, base) = (y(v), y(if log { 10f64.powf(y0) } else { 0.0 }));
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {v:.1}</title></rect>"#,
                gx + bar * k as f64,
                top_y.min(base),
                bar * 0.95,
                (base - top_y).abs().max(0.5),
                COLOURS[k % COLOURS.len()],
                esc(&se.name)
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10">{}</text>"#,
                gx + bar * (k as f64 + 0.5),
                top_y.min(base) - 3.0,
                fmt_num(v)
            );
        }
        let (lx, ly) = (gx + group * 0.5, h - bottom + 16.0);
        let _ = writeln!(
            s,
            r#"<text transform="translate({lx:.1} {ly:.1}) rotate(-20)" text-anchor="end" font-size="11">{}</text>"#,
            esc(c)
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{left}" x2="{left}" y1="{top}" y2="{}" stroke="black"/><line x1="{left}" x2="{}" y1="{}" y2="{}" stroke="black"/>"#,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom
    );
    let mut lx = left + 10.0;
    for (k, se) in series.iter().enumerate() {
        let c = COLOURS[k % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="34" width="12" height="12" fill="{c}"/><text x="{}" y="44">{}</text>"#,
            lx + 16.0,
            esc(&se.name)
        );
        lx += 30.0 + 7.0 * se.name.len() as f64;
    }
    if let Some(b) = band {
        let _ = writeln!(
            s,
            r##"<rect x="{lx}" y="34" width="12" height="12" fill="#d8ecd8"/><text x="{}" y="44">{}</text>"##,
            lx + 16.0,
            esc(&b.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The smallest of 1, 2, 5 times a power of ten that is at least `v`.
fn nice(v: f64) -> f64 {
    let e = 10f64.powf(v.max(1e-9).log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * e).find(|x| *x >= v).unwrap_or(10.0 * e)
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice(0.7), 1.0);
        assert_eq!(nice(64.0), 100.0);
        assert_eq!(nice(1357.0), 2000.0);
        assert_eq!(nice(4000.0), 5000.0);
    }

    #[test]
    fn chart_is_one_svg_with_a_bar_per_value() {
        let cats = vec!["a <1>".to_string(), "b".to_string()];
        let s = [
            Series { name: "x".into(), values: vec![1.0, f64::NAN] },
            Series { name: "y".into(), values: vec![10.0, 1000.0] },
        ];
        let svg = bars("t & u", "µs", &cats, &s, true, None);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 3, "NaN draws no bar");
        assert!(svg.contains("a &lt;1&gt;") && svg.contains("t &amp; u"));
    }
}
