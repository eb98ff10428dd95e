//! The three chart kinds drawn on top of [`super::draw`].

use std::fmt::Write as _;

use super::axis::fmt_value;
use super::data::{cdf, clean_points, downsample, MAX_COLUMNS};
use super::draw::{self, Plot, Svg, Swatch, FONT, N, PAD};
use super::text::{escape, fit, width};
use super::{Chart, Series, MIN_SIZE};

/// Series with at most this many points also get a dot per point.
const DOTS_UP_TO: usize = 50;

/// Draws `chart` as SVG of `width` × `height` (raised to [`MIN_SIZE`]).
pub(crate) fn render(chart: &Chart, width: u32, height: u32, standalone: bool) -> String {
    let w = f64::from(width.max(MIN_SIZE.0));
    let h = f64::from(height.max(MIN_SIZE.1));
    let mut svg = Svg::open(chart.title(), w, h, standalone);
    match chart {
        Chart::Lines { x_label, y_label, series, log_y, .. } => lines(&mut svg, x_label, y_label, series, *log_y),
        Chart::Cdf { x_label, series, log_x, .. } => cdfs(&mut svg, x_label, series, *log_x),
        Chart::StackedBars { value_label, categories, layers, .. } => bars(&mut svg, value_label, categories, layers),
    }
    svg.finish()
}

/// Smallest and largest of `values`, or `None` when empty.
fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
    })
}

/// The default range of an axis without data.
fn no_data_range(log: bool) -> (f64, f64) {
    if log {
        (1.0, 10.0)
    } else {
        (0.0, 1.0)
    }
}

/// A polyline through data points in series `i`'s style, plus dots for sparse series.
fn polyline(svg: &mut Svg, p: &Plot, points: &[(f64, f64)], i: usize, dots: bool) {
    let (color, dash) = draw::style(i);
    let mut coords = String::with_capacity(points.len() * 12);
    let mut last = (String::new(), String::new());
    for &(x, y) in points {
        let xy = (N(p.px(x)).to_string(), N(p.py(y)).to_string());
        // Consecutive points on the same 0.1 px add nothing.
        if xy != last {
            let _ = write!(coords, "{},{} ", xy.0, xy.1);
            last = xy;
        }
    }
    let dash = if dash.is_empty() { String::new() } else { format!(" stroke-dasharray=\"{dash}\"") };
    svg.raw(format_args!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.8\" stroke-linejoin=\"round\"{dash} points=\"{}\"/>\n",
        coords.trim_end()
    ));
    if dots || points.len() == 1 {
        for &(x, y) in points {
            svg.raw(format_args!("<circle cx=\"{}\" cy=\"{}\" r=\"2.8\" fill=\"{color}\"/>\n", N(p.px(x)), N(p.py(y))));
        }
    }
}

fn lines(svg: &mut Svg, x_label: &str, y_label: &str, series: &[Series], log_y: bool) {
    let cleaned: Vec<Vec<(f64, f64)>> = series.iter().map(|s| clean_points(&s.points, log_y)).collect();
    let items: Vec<(&str, Swatch)> =
        series.iter().enumerate().map(|(i, s)| (s.name.as_str(), Swatch::Line(i))).collect();
    let top = draw::legend(svg, &items);
    let xr = range(cleaned.iter().flat_map(|c| c.iter().map(|p| p.0)));
    let yr = range(cleaned.iter().flat_map(|c| c.iter().map(|p| p.1)));
    let (x, y) = match (xr, yr) {
        (Some(x), Some(y)) => (x, y),
        _ => (no_data_range(false), no_data_range(log_y)),
    };
    let p = draw::xy_plot(svg, top, (x.0, x.1, false), (y.0, y.1, log_y));
    draw::xy_axes(svg, &p, x_label, y_label);
    let columns = (p.w as usize).clamp(1, MAX_COLUMNS);
    for (i, points) in cleaned.iter().enumerate() {
        if !points.is_empty() {
            let drawn = downsample(points, x.0, x.1, columns);
            polyline(svg, &p, &drawn, i, points.len() <= DOTS_UP_TO);
        }
    }
    if xr.is_none() {
        svg.note(&p, if log_y { "no data (no value > 0 for the log axis)" } else { "no data" });
    }
}

fn cdfs(svg: &mut Svg, x_label: &str, series: &[(String, Vec<f64>)], log_x: bool) {
    let curves: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|(_, values)| {
            let (mut c, _) = cdf(values);
            if log_x {
                c.retain(|p| p.0 > 0.0);
            }
            c
        })
        .collect();
    let items: Vec<(&str, Swatch)> = series.iter().enumerate().map(|(i, s)| (s.0.as_str(), Swatch::Line(i))).collect();
    let top = draw::legend(svg, &items);
    let xr = range(curves.iter().flat_map(|c| c.iter().map(|p| p.0)));
    let x = xr.unwrap_or(no_data_range(log_x));
    let p = draw::xy_plot(svg, top, (x.0, x.1, log_x), (0.0, 1.0, false));
    draw::xy_axes(svg, &p, x_label, "fraction ≤ x");
    for (i, c) in curves.iter().enumerate() {
        if !c.is_empty() {
            polyline(svg, &p, c, i, false);
        }
    }
    if xr.is_none() {
        svg.note(&p, if log_x { "no data (no value > 0 for the log axis)" } else { "no data" });
    }
}

fn bars(svg: &mut Svg, value_label: &str, categories: &[String], layers: &[(String, Vec<f64>)]) {
    let value = |l: usize, c: usize| layers[l].1.get(c).copied().filter(|v| v.is_finite()).unwrap_or(0.0);
    let n = categories.len();
    // (sum of positive, sum of negative) segments per bar.
    let sums: Vec<(f64, f64)> = (0..n)
        .map(|c| {
            (0..layers.len())
                .map(|l| value(l, c))
                .fold((0.0, 0.0), |(p, m), v| if v > 0.0 { (p + v, m) } else { (p, m + v) })
        })
        .collect();
    let totals: Vec<String> = sums.iter().map(|s| fmt_value(s.0 + s.1)).collect();
    let items: Vec<(&str, Swatch)> = layers.iter().enumerate().map(|(i, l)| (l.0.as_str(), Swatch::Box(i))).collect();
    let top = draw::legend(svg, &items);

    let lo = sums.iter().map(|s| s.1).fold(0.0, f64::min);
    let hi = sums.iter().map(|s| s.0).fold(0.0, f64::max);
    let (lo, hi) = if lo == hi { (0.0, 1.0) } else { (lo, hi) };
    let label_w = categories.iter().map(|c| width(c, FONT)).fold(0.0, f64::max).min(svg.w * 0.35);
    let total_w = totals.iter().map(|t| width(t, FONT)).fold(0.0, f64::max);
    let left = PAD + label_w + 8.0;
    let w = (svg.w - left - PAD - total_w - 8.0).max(20.0);
    let bottom = svg.h - draw::BOTTOM;
    let h = (bottom - top).max(20.0);
    let xa = draw::make_axis(lo, hi, false, w / 90.0);
    let p = Plot { x: left, y: bottom - h, w, h, xa, ya: draw::make_axis(0.0, 1.0, false, 2.0) };

    draw::grid(svg, &p, false);
    draw::x_ticks(svg, &p);
    draw::axis_label(svg, &p, value_label);
    svg.line(p.x, p.y + p.h, p.x + p.w, p.y + p.h, "#444444", "");
    if n == 0 {
        svg.note(&p, "no data");
        return;
    }
    let band = h / n as f64;
    let thick = (band * 0.7).min(48.0);
    let label_every = (FONT / band).ceil().max(1.0) as usize;
    for (c, name) in categories.iter().enumerate() {
        let mid = p.y + band * (c as f64 + 0.5);
        let (y0, text_y) = (mid - thick / 2.0, mid + FONT * 0.35);
        if c % label_every == 0 {
            svg.text(left - 6.0, text_y, &fit(name, FONT, label_w), FONT, "end", "");
        }
        let (mut pos, mut neg) = (0.0, 0.0);
        for (l, (layer, _)) in layers.iter().enumerate() {
            let v = value(l, c);
            let (a, b) = match v {
                v if v > 0.0 => (pos, pos + v),
                v if v < 0.0 => (neg + v, neg),
                _ => continue,
            };
            if v > 0.0 {
                pos += v;
            } else {
                neg += v;
            }
            let (x0, x1) = (p.px(a), p.px(b));
            svg.raw(format_args!(
                "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{}: {}: {}</title></rect>\n",
                N(x0),
                N(y0),
                N((x1 - x0).max(0.0)),
                N(thick),
                draw::style(l).0,
                escape(name),
                escape(layer),
                fmt_value(v)
            ));
        }
        if band >= FONT && c % label_every == 0 {
            svg.text(p.px(pos) + 4.0, text_y, &totals[c], FONT, "start", "");
        }
    }
    // The zero line over the bars.
    if p.xa.lo < 0.0 {
        let x0 = p.px(0.0);
        svg.line(x0, p.y, x0, p.y + p.h, "#444444", "");
    }
}
