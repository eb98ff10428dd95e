//! Charts and the HTML report page: plain data in, SVG / HTML text or PNG bytes out.
//!
//! This module knows nothing of captures or polars; the `report` subcommand turns an
//! analysis into [`Chart`]s and a [`Page`] and calls [`html`], [`svg`] or [`png`].
//!
//! # The charts
//!
//! * [`Chart::Lines`], e.g. latency over time per layer or hop (x = seconds since the
//!   start, y = µs), or clock-sync quality (one series per host: the alignment's error
//!   bound over time, usually with `log_y`). Points are drawn in x order, joined by lines;
//!   sparse series (≤ 50 points) also get a dot per point so that single points show.
//!   A series of more than 2 points per pixel column is downsampled to the minimum and
//!   the maximum of each column (at most 1000 columns, so ≤ 2000 drawn points): the
//!   envelope, and so every spike, stays visible, and a million-point series costs a
//!   few kB of SVG instead of tens of MB.
//! * [`Chart::Cdf`], one empirical CDF per hop. Values are sorted and drawn as the exact
//!   step function up to 1000 values. Above that the curve is drawn through the
//!   nearest-rank values of a grid of ranks (every 1/1000 of the values, plus the
//!   p99.9, p99.99, … tail ranks the sample has, plus the minimum and the exact maximum):
//!   each drawn corner is exactly a nearest-rank percentile, as the analyzer's tables
//!   report them, and the curve is never more than 1/1000 off vertically. `log_x` spreads
//!   out tails of latencies that span decades.
//! * [`Chart::StackedBars`], per-layer breakdown per path: one horizontal bar per
//!   category (path), one stacked segment per layer. Bars are horizontal because path
//!   names are long and read best left of the bar; the total is written at the bar's end.
//!   Negative values (clock misalignment can make a layer's share negative) stack
//!   leftwards from zero instead of hiding inside the positive stack.
//!
//! # Why these choices
//!
//! * Axes use "nice" ticks: steps of 1, 2 or 5 × 10ⁿ on linear axes, tick labels computed
//!   from integers (no `0.30000000000000004`); log axes have ticks at decades, with minor
//!   ticks at 2..9 × 10ⁿ, labelled at 2 and 5 when the axis spans few decades.
//! * Colours are the Okabe–Ito palette (distinguishable with the common colour-vision
//!   deficiencies and in greyscale print, yellow left out as it vanishes on white); past
//!   eight series colours repeat with a dash pattern.
//! * Text is DejaVu Sans. The PNG renderer embeds that font, so PNGs render the same on a
//!   machine without any font installed; browsers use the installed copy or fall back to
//!   their sans-serif.
//! * Output is deterministic (same data, same bytes: no hash maps, no clocks) and every
//!   piece of text is escaped, since host and interface names may contain `<&"`.
//!   Non-finite values are dropped, and so are values ≤ 0 on a log axis.
//! * The HTML page is one self-contained file: inline CSS, inline `<svg>`, no scripts and
//!   no external URLs, so it can be mailed or archived as it is. Each `<svg>` has a
//!   `<title>` (the chart title, shown as tooltip and read by screen readers) and the
//!   same title as visible text.

mod axis;
mod data;
mod draw;
mod html;
mod kinds;
mod raster;
#[cfg(test)]
mod tests;
mod text;

pub use html::html;
pub use raster::{png, png_scaled};
pub use text::escape;

/// The series colours, in order (Okabe–Ito without yellow, plus a dark wine red).
/// Series `i` uses `PALETTE[i % 8]`, with a dash pattern from the ninth series on.
pub const PALETTE: [&str; 8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#882255"];

/// The font family of all chart text; the PNG renderer embeds this font.
pub const FONT_FAMILY: &str = "DejaVu Sans";

/// Width in CSS pixels of the charts [`html`] embeds (they shrink with a narrow window).
pub const HTML_CHART_WIDTH: u32 = 960;

/// Height in CSS pixels of the charts [`html`] embeds.
pub const HTML_CHART_HEIGHT: u32 = 440;

/// Smallest chart size [`svg`] draws; smaller requests are raised to it.
pub const MIN_SIZE: (u32, u32) = (240, 160);

/// Largest PNG edge in pixels [`png_scaled`] produces.
pub const MAX_PNG_EDGE: u32 = 16_384;

/// One named line of a [`Chart::Lines`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points, in any order; non-finite ones are dropped.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series { name: name.into(), points }
    }
}

/// A chart: what to draw, independent of the output format.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// Lines through `(x, y)` points, one per series, e.g. latency over time per layer or
    /// hop (x = seconds since start, y = µs), or clock-sync error bound over time per host.
    Lines {
        /// Chart title (also the SVG `<title>`).
        title: String,
        /// Label under the x axis, with the unit.
        x_label: String,
        /// Label of the y axis, with the unit.
        y_label: String,
        /// The lines; colours follow [`PALETTE`] in this order.
        series: Vec<Series>,
        /// Logarithmic y axis (points with y ≤ 0 are then dropped).
        log_y: bool,
    },
    /// Empirical cumulative distribution functions, one per `(name, raw values)` pair;
    /// values need not be sorted. The y axis is the fraction of values ≤ x, 0 to 1.
    Cdf {
        /// Chart title (also the SVG `<title>`).
        title: String,
        /// Label under the x axis, with the unit.
        x_label: String,
        /// `(legend text, values)` per curve.
        series: Vec<(String, Vec<f64>)>,
        /// Logarithmic x axis. Values ≤ 0 still count in the fractions, but are not drawn:
        /// the curve starts at the fraction of values ≤ its first drawn value.
        log_x: bool,
    },
    /// Horizontal stacked bars: one bar per category, one segment per layer, e.g. the
    /// per-layer latency breakdown per path.
    StackedBars {
        /// Chart title (also the SVG `<title>`).
        title: String,
        /// Label of the value axis (horizontal, under the bars), with the unit.
        value_label: String,
        /// Bar names, top to bottom.
        categories: Vec<String>,
        /// `(legend text, one value per category)` per layer, stacked left to right in
        /// this order. Missing or non-finite values count as 0; extra values are ignored.
        layers: Vec<(String, Vec<f64>)>,
    },
}

impl Chart {
    /// The chart's title.
    pub fn title(&self) -> &str {
        match self {
            Chart::Lines { title, .. } | Chart::Cdf { title, .. } | Chart::StackedBars { title, .. } => title,
        }
    }
}

/// A report page for [`html`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// Page title (`<title>` and the top heading).
    pub title: String,
    /// Sections, in order; a table of contents links them when there are several.
    pub sections: Vec<Section>,
}

/// One section of a [`Page`]: heading, then paragraphs, table and charts in that order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Section {
    /// Section heading.
    pub heading: String,
    /// Plain-text paragraphs (escaped; no markup).
    pub paragraphs: Vec<String>,
    /// An optional table.
    pub table: Option<Table>,
    /// Charts, each drawn [`HTML_CHART_WIDTH`] × [`HTML_CHART_HEIGHT`].
    pub charts: Vec<Chart>,
}

/// A plain-text table; cells that parse as numbers are right-aligned.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Column headers.
    pub header: Vec<String>,
    /// Rows of cells; rows may be shorter or longer than the header.
    pub rows: Vec<Vec<String>>,
}

/// Why a chart could not be turned into a PNG.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// The requested PNG size is zero, not finite or larger than [`MAX_PNG_EDGE`].
    #[error("PNG size {width}×{height} px is out of range (1..={max} px per edge)", max = MAX_PNG_EDGE)]
    Size {
        /// Requested width in pixels (after scaling).
        width: f64,
        /// Requested height in pixels (after scaling).
        height: f64,
    },
    /// The SVG renderer rejected the chart's SVG (a bug in this module).
    #[error("rendering the chart failed: {0}")]
    Render(String),
    /// PNG encoding failed.
    #[error("encoding the PNG failed: {0}")]
    Encode(String),
}

/// The chart as a standalone SVG document of `width` × `height` pixels (at least
/// [`MIN_SIZE`]), with an `xmlns` so that it can be written to a `.svg` file.
pub fn svg(chart: &Chart, width: u32, height: u32) -> String {
    kinds::render(chart, width, height, true)
}

/// The chart as an `<svg>` element to embed in HTML (no `xmlns`, which HTML does not need).
pub(crate) fn inline_svg(chart: &Chart, width: u32, height: u32) -> String {
    kinds::render(chart, width, height, false)
}
