//! SVG drawing shared by the chart kinds: document, title, legend, plot frame and axes.

use std::fmt::{self, Write as _};

use super::axis::{Axis, Tick};
use super::text::{escape, fit, width};
use super::{FONT_FAMILY, PALETTE};

/// Size of tick labels, legend and axis labels, px.
pub(crate) const FONT: f64 = 12.0;
/// Size of the chart title, px.
pub(crate) const TITLE_FONT: f64 = 15.0;
/// Outer margin, px.
pub(crate) const PAD: f64 = 10.0;
/// Height of a line of small text, px.
pub(crate) const LINE: f64 = 18.0;
const TEXT: &str = "#222222";
const AXIS: &str = "#444444";
const GRID: &str = "#e4e4e4";
/// Dash patterns that tell series apart once the palette repeats.
const DASHES: [&str; 4] = ["", "7 3", "2 2", "9 3 2 3"];

/// Colour and dash pattern of series `i`.
pub(crate) fn style(i: usize) -> (&'static str, &'static str) {
    (PALETTE[i % PALETTE.len()], DASHES[(i / PALETTE.len()) % DASHES.len()])
}

/// A coordinate for SVG: 0.1 px precision, no trailing `.0`, never NaN.
#[derive(Clone, Copy)]
pub(crate) struct N(pub f64);

impl fmt::Display for N {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = if self.0.is_finite() { (self.0.clamp(-1e6, 1e6) * 10.0).round() / 10.0 } else { 0.0 };
        if v == v.trunc() {
            write!(f, "{}", v as i64)
        } else {
            write!(f, "{v:.1}")
        }
    }
}

/// An SVG document being written.
pub(crate) struct Svg {
    out: String,
    /// Width in px.
    pub w: f64,
    /// Height in px.
    pub h: f64,
}

impl Svg {
    /// Opens the document: root element, `<title>`, white background, visible title.
    pub fn open(title: &str, w: f64, h: f64, standalone: bool) -> Svg {
        let mut svg = Svg { out: String::with_capacity(16 * 1024), w, h };
        let xmlns = if standalone { r#" xmlns="http://www.w3.org/2000/svg""# } else { "" };
        svg.raw(format_args!(
            "<svg{xmlns} class=\"netlat-chart\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"'{FONT_FAMILY}', Verdana, sans-serif\" font-size=\"{FONT}\" fill=\"{TEXT}\" role=\"img\">\n\
             <title>{t}</title>\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n",
            w = N(w),
            h = N(h),
            t = escape(title),
        ));
        let shown = fit(title, TITLE_FONT, w - 2.0 * PAD);
        svg.text(w / 2.0, PAD + TITLE_FONT, &shown, TITLE_FONT, "middle", r#" class="chart-title" font-weight="bold""#);
        svg
    }

    /// Appends raw markup.
    pub fn raw(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.out.write_fmt(args);
    }

    /// Text with its baseline at `y`; `anchor` is start, middle or end.
    pub fn text(&mut self, x: f64, y: f64, s: &str, size: f64, anchor: &str, extra: &str) {
        self.raw(format_args!(
            "<text x=\"{}\" y=\"{}\" font-size=\"{size}\" text-anchor=\"{anchor}\"{extra}>{}</text>\n",
            N(x),
            N(y),
            escape(s)
        ));
    }

    /// A straight line.
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str, extra: &str) {
        self.raw(format_args!(
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{stroke}\"{extra}/>\n",
            N(x1),
            N(y1),
            N(x2),
            N(y2)
        ));
    }

    /// Centred grey note in the plot area, e.g. "no data".
    pub fn note(&mut self, plot: &Plot, s: &str) {
        self.text(plot.x + plot.w / 2.0, plot.y + plot.h / 2.0, s, FONT, "middle", r##" fill="#777777""##);
    }

    /// Closes the document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// How a legend entry shows its series.
#[derive(Clone, Copy)]
pub(crate) enum Swatch {
    /// A line segment in the style of series `i`.
    Line(usize),
    /// A filled square in the colour of series `i`.
    Box(usize),
}

/// Draws the legend in centred rows under the title, dropping rows beyond about 40% of
/// the height (with a "+N more" note); returns the y where the plot may start.
pub(crate) fn legend(svg: &mut Svg, items: &[(&str, Swatch)]) -> f64 {
    let top = PAD + TITLE_FONT + 8.0;
    if items.is_empty() {
        return top;
    }
    let max_w = svg.w - 2.0 * PAD;
    let max_rows = (((svg.h * 0.4) / LINE).floor() as usize).max(1);
    // (text, width) per item, wrapped into rows.
    let mut rows: Vec<Vec<(String, Swatch, f64)>> = vec![Vec::new()];
    let mut row_w = 0.0;
    for &(name, swatch) in items {
        let name = fit(name, FONT, max_w - 40.0);
        let item_w = 27.0 + width(&name, FONT) + 14.0;
        if row_w + item_w > max_w && !rows.last().is_some_and(Vec::is_empty) {
            rows.push(Vec::new());
            row_w = 0.0;
        }
        row_w += item_w;
        rows.last_mut().expect("one row").push((name, swatch, item_w));
    }
    let hidden: usize = rows.iter().skip(max_rows).map(Vec::len).sum();
    rows.truncate(max_rows);
    let mut y = top;
    let n_rows = rows.len();
    for (r, row) in rows.iter().enumerate() {
        let mut x = PAD + (max_w - row.iter().map(|i| i.2).sum::<f64>()) / 2.0;
        let mid = y + LINE / 2.0;
        for (name, swatch, item_w) in row {
            match *swatch {
                Swatch::Line(i) => {
                    let (color, dash) = style(i);
                    let dash = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
                    svg.line(x, mid, x + 22.0, mid, color, &format!(r#" stroke-width="2.5"{dash}"#));
                }
                Swatch::Box(i) => svg.raw(format_args!(
                    "<rect x=\"{}\" y=\"{}\" width=\"16\" height=\"12\" fill=\"{}\"/>\n",
                    N(x + 3.0),
                    N(mid - 6.0),
                    style(i).0
                )),
            }
            svg.text(x + 27.0, mid + FONT * 0.35, name, FONT, "start", "");
            x += item_w;
        }
        if r + 1 == n_rows && hidden > 0 {
            svg.text(x, mid + FONT * 0.35, &format!("+{hidden} more"), FONT, "start", r##" fill="#777777""##);
        }
        y += LINE;
    }
    y + 4.0
}

/// The plot area and its axes.
pub(crate) struct Plot {
    /// Left edge, px.
    pub x: f64,
    /// Top edge, px.
    pub y: f64,
    /// Width, px.
    pub w: f64,
    /// Height, px.
    pub h: f64,
    /// Horizontal axis.
    pub xa: Axis,
    /// Vertical axis (unused by bar charts).
    pub ya: Axis,
}

impl Plot {
    /// Horizontal pixel of data value `v`.
    pub fn px(&self, v: f64) -> f64 {
        self.x + self.xa.frac(v) * self.w
    }

    /// Vertical pixel of data value `v`.
    pub fn py(&self, v: f64) -> f64 {
        self.y + self.h - self.ya.frac(v) * self.h
    }
}

/// An axis over `lo..=hi` with about `target` labels.
pub(crate) fn make_axis(lo: f64, hi: f64, log: bool, target: f64) -> Axis {
    let target = target.max(2.0) as usize;
    if log {
        Axis::log(lo, hi, target)
    } else {
        Axis::linear(lo, hi, target)
    }
}

/// Space under the plot: tick labels and the axis label.
pub(crate) const BOTTOM: f64 = PAD + 2.0 * LINE + 6.0;

/// The plot area of an x/y chart below `top`, with axes over the given data ranges.
pub(crate) fn xy_plot(svg: &Svg, top: f64, x: (f64, f64, bool), y: (f64, f64, bool)) -> Plot {
    let bottom = svg.h - BOTTOM;
    let h = (bottom - top).max(20.0);
    let ya = make_axis(y.0, y.1, y.2, h / 45.0);
    let label_w = ya.ticks.iter().filter_map(|t| t.label.as_deref()).map(|l| width(l, FONT)).fold(0.0, f64::max);
    let left = PAD + LINE + label_w + 8.0;
    let w = (svg.w - left - 24.0).max(20.0);
    let xa = make_axis(x.0, x.1, x.2, w / 90.0);
    Plot { x: left, y: bottom - h, w, h, xa, ya }
}

/// Grid, frame, ticks and labels of an x/y chart.
pub(crate) fn xy_axes(svg: &mut Svg, p: &Plot, x_label: &str, y_label: &str) {
    grid(svg, p, true);
    svg.raw(format_args!(
        "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"{AXIS}\"/>\n",
        N(p.x),
        N(p.y),
        N(p.w),
        N(p.h)
    ));
    x_ticks(svg, p);
    // y ticks and labels, skipping labels that would overlap the previous one.
    let mut last_y = f64::INFINITY;
    for t in &p.ya.ticks {
        let y = p.py(t.value);
        let len = if t.label.is_some() { 5.0 } else { 3.0 };
        svg.line(p.x - len, y, p.x, y, AXIS, "");
        if let Some(l) = &t.label {
            if last_y - y >= FONT + 2.0 {
                svg.text(p.x - 7.0, y + FONT * 0.35, l, FONT, "end", "");
                last_y = y;
            }
        }
    }
    let cy = p.y + p.h / 2.0;
    let shown = fit(y_label, FONT, p.h);
    svg.text(
        PAD + FONT,
        cy,
        &shown,
        FONT,
        "middle",
        &format!(r#" transform="rotate(-90 {} {})""#, N(PAD + FONT), N(cy)),
    );
    axis_label(svg, p, x_label);
}

/// Light grid lines at the labelled ticks (vertical ones; horizontal too when `both`),
/// and a darker line at 0 on linear axes that span it.
pub(crate) fn grid(svg: &mut Svg, p: &Plot, both: bool) {
    let major = |t: &&Tick| t.label.is_some();
    for t in p.xa.ticks.iter().filter(major) {
        let x = p.px(t.value);
        let color = if t.value == 0.0 && !p.xa.log { "#999999" } else { GRID };
        svg.line(x, p.y, x, p.y + p.h, color, "");
    }
    if both {
        for t in p.ya.ticks.iter().filter(major) {
            let y = p.py(t.value);
            let color = if t.value == 0.0 && !p.ya.log { "#999999" } else { GRID };
            svg.line(p.x, y, p.x + p.w, y, color, "");
        }
    }
}

/// Ticks and labels under the plot, skipping labels that would overlap.
pub(crate) fn x_ticks(svg: &mut Svg, p: &Plot) {
    let bottom = p.y + p.h;
    let mut last_right = f64::NEG_INFINITY;
    for t in &p.xa.ticks {
        let x = p.px(t.value);
        let len = if t.label.is_some() { 5.0 } else { 3.0 };
        svg.line(x, bottom, x, bottom + len, AXIS, "");
        if let Some(l) = &t.label {
            let half = width(l, FONT) / 2.0;
            if x - half >= last_right + 6.0 {
                svg.text(x, bottom + 6.0 + FONT, l, FONT, "middle", "");
                last_right = x + half;
            }
        }
    }
}

/// The label under the x axis.
pub(crate) fn axis_label(svg: &mut Svg, p: &Plot, label: &str) {
    let shown = fit(label, FONT, p.w);
    svg.text(p.x + p.w / 2.0, p.y + p.h + 6.0 + FONT + LINE, &shown, FONT, "middle", "");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_are_compact_and_finite() {
        assert_eq!(N(12.0).to_string(), "12");
        assert_eq!(N(12.34).to_string(), "12.3");
        assert_eq!(N(-0.01).to_string(), "0");
        assert_eq!(N(f64::NAN).to_string(), "0");
        assert_eq!(N(1e300).to_string(), "1000000");
    }

    #[test]
    fn styles_repeat_colours_with_dashes() {
        assert_eq!(style(0), (PALETTE[0], ""));
        assert_eq!(style(8), (PALETTE[0], DASHES[1]));
        assert_ne!(style(1).0, style(0).0);
    }
}
