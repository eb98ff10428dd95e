//! PNG output: the chart's SVG rasterized by resvg with the embedded DejaVu Sans, so
//! that text renders the same on a machine without any font installed.

use std::sync::{Arc, OnceLock};

use resvg::{tiny_skia, usvg};

use super::{svg, Chart, ChartError, FONT_FAMILY, MAX_PNG_EDGE, MIN_SIZE};

/// DejaVu Sans 2.37 (license: analyze/assets/DejaVuSans.LICENSE).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// A font database holding only the embedded font, which also answers for the generic
/// families, so that system fonts never change the output.
fn fonts() -> Arc<usvg::fontdb::Database> {
    static DB: OnceLock<Arc<usvg::fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(FONT.to_vec());
        db.set_sans_serif_family(FONT_FAMILY);
        db.set_serif_family(FONT_FAMILY);
        db.set_monospace_family(FONT_FAMILY);
        Arc::new(db)
    })
    .clone()
}

/// The chart as a PNG of `width` × `height` pixels (each raised to [`MIN_SIZE`] like
/// [`svg`]): the same drawing as the SVG.
pub fn png(chart: &Chart, width: u32, height: u32) -> Result<Vec<u8>, ChartError> {
    png_scaled(chart, width, height, 1.0)
}

/// The chart laid out at `width` × `height` CSS pixels (raised to [`MIN_SIZE`]) and
/// rendered `scale` times larger, e.g. scale 3 for a 960 px wide chart printed 10 cm
/// wide at about 730 dpi, with text and lines in proportion.
pub fn png_scaled(chart: &Chart, width: u32, height: u32, scale: f32) -> Result<Vec<u8>, ChartError> {
    let (w, h) = (width.max(MIN_SIZE.0), height.max(MIN_SIZE.1));
    let (pw, ph) = (f64::from(w) * f64::from(scale), f64::from(h) * f64::from(scale));
    let max = f64::from(MAX_PNG_EDGE);
    if !(scale.is_finite() && pw >= 1.0 && ph >= 1.0 && pw <= max && ph <= max) {
        return Err(ChartError::Size { width: pw, height: ph });
    }
    let text = svg(chart, w, h);
    let options = usvg::Options { fontdb: fonts(), font_family: FONT_FAMILY.to_string(), ..usvg::Options::default() };
    let tree = usvg::Tree::from_str(&text, &options).map_err(|e| ChartError::Render(e.to_string()))?;
    let mut pixmap = tiny_skia::Pixmap::new(pw.round() as u32, ph.round() as u32)
        .ok_or(ChartError::Size { width: pw, height: ph })?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| ChartError::Encode(e.to_string()))
}

/// Number of font faces the renderer knows: the embedded one only.
#[cfg(test)]
pub(crate) fn font_faces() -> usize {
    fonts().len()
}
