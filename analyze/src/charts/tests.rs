//! Whole-chart tests: every kind and edge case yields a well-formed SVG (parsed by usvg),
//! and PNGs decode with the right size and visible content.

use resvg::usvg;

use super::*;

fn lines(series: Vec<Series>, log_y: bool) -> Chart {
    Chart::Lines {
        title: "Latency over time".into(),
        x_label: "time (s)".into(),
        y_label: "latency (µs)".into(),
        series,
        log_y,
    }
}

fn cdf(series: Vec<(String, Vec<f64>)>, log_x: bool) -> Chart {
    Chart::Cdf { title: "Latency CDF per hop".into(), x_label: "latency (µs)".into(), series, log_x }
}

fn bars(categories: Vec<String>, layers: Vec<(String, Vec<f64>)>) -> Chart {
    Chart::StackedBars { title: "Breakdown per path".into(), value_label: "µs".into(), categories, layers }
}

/// Parses `svg` as usvg does for PNG output, so a malformed document fails here.
fn check(svg: &str, title: &str) {
    usvg::Tree::from_str(svg, &usvg::Options::default()).unwrap_or_else(|e| panic!("{e}:\n{svg}"));
    let t = text::escape(title);
    assert!(svg.contains(&format!("<title>{t}</title>")), "no <title>");
    assert!(svg.contains(&format!("class=\"chart-title\" font-weight=\"bold\">{t}</text>")), "no visible title");
    assert!(!svg.contains("NaN") && !svg.contains("inf"), "non-finite coordinate");
}

fn all_kinds() -> Vec<Chart> {
    let many: Vec<(f64, f64)> = (0..5000).map(|i| (i as f64 * 0.01, 10.0 + (i % 13) as f64)).collect();
    vec![
        lines(vec![Series::new("tc_egress → xdp", many.clone()), Series::new("one", vec![(3.0, 50.0)])], false),
        lines(vec![Series::new("log", many)], true),
        cdf(vec![("a".into(), vec![3.0, 1.0, 2.0]), ("b".into(), (1..3000).map(f64::from).collect())], true),
        bars(
            vec!["h1 → h2".into(), "h2 → h1".into()],
            vec![("stack".into(), vec![3.0, 4.0]), ("wire".into(), vec![10.0, 8.5])],
        ),
    ]
}

#[test]
fn every_kind_is_well_formed_and_deterministic() {
    for chart in all_kinds() {
        let s = svg(&chart, 800, 400);
        check(&s, chart.title());
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(s, svg(&chart, 800, 400));
        assert!(!inline_svg(&chart, 800, 400).contains("xmlns"));
    }
}

#[test]
fn names_are_escaped() {
    let evil = r#"h<1>&"x"'"#;
    let charts = [
        Chart::Lines {
            title: evil.into(),
            x_label: evil.into(),
            y_label: evil.into(),
            series: vec![Series::new(evil, vec![(0.0, 1.0)])],
            log_y: false,
        },
        Chart::Cdf { title: evil.into(), x_label: evil.into(), series: vec![(evil.into(), vec![1.0])], log_x: false },
        Chart::StackedBars {
            title: evil.into(),
            value_label: evil.into(),
            categories: vec![evil.into()],
            layers: vec![(evil.into(), vec![1.0])],
        },
    ];
    for chart in &charts {
        let s = svg(chart, 600, 300);
        check(&s, evil);
        assert!(!s.contains(evil));
        let control = Chart::Lines {
            title: "a\u{1}b".into(),
            x_label: String::new(),
            y_label: String::new(),
            series: vec![],
            log_y: false,
        };
        check(&svg(&control, 600, 300), "a\u{FFFD}b");
    }
}

#[test]
fn edge_cases_draw_without_panicking() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let cases = vec![
        lines(vec![], false),
        lines(vec![Series::new("empty", vec![])], true),
        lines(vec![Series::new("one", vec![(1.0, 1.0)])], false),
        lines(vec![Series::new("equal", vec![(1.0, 5.0); 10])], true),
        lines(vec![Series::new("bad", vec![(nan, 1.0), (1.0, inf), (-inf, 2.0)])], false),
        lines(vec![Series::new("negative", vec![(-5.0, -3.0), (5.0, -1.0)])], false),
        lines(vec![Series::new("only ≤ 0 on log", vec![(0.0, 0.0), (1.0, -1.0)])], true),
        lines(vec![Series::new("huge", vec![(0.0, -1e308), (1.0, 1e308), (f64::MAX, f64::MIN_POSITIVE)])], false),
        cdf(vec![], false),
        cdf(vec![("nan".into(), vec![nan, inf])], false),
        cdf(vec![("equal".into(), vec![7.0; 5000])], true),
        cdf(vec![("negative".into(), vec![-3.0, -1.0, 0.0, 2.0])], true),
        cdf(vec![("tiny".into(), vec![1e-300, 2e-300])], true),
        bars(vec![], vec![]),
        bars(vec!["a".into()], vec![]),
        bars(vec!["a".into(), "b".into()], vec![("l".into(), vec![nan])]),
        bars(
            vec!["neg".into(), "mixed".into()],
            vec![("x".into(), vec![-2.0, 3.0]), ("y".into(), vec![-1.0, -4.0, 99.0])],
        ),
        bars((0..500).map(|i| format!("path {i}")).collect(), vec![("l".into(), (0..500).map(f64::from).collect())]),
    ];
    for chart in &cases {
        for (w, h) in [(0, 0), (240, 160), (1200, 600)] {
            check(&svg(chart, w, h), chart.title());
        }
    }
    let s = svg(&lines(vec![], false), 1, 1);
    assert!(s.contains(&format!("width=\"{}\" height=\"{}\"", MIN_SIZE.0, MIN_SIZE.1)));
    assert!(s.contains("no data"));
}

#[test]
fn many_series_repeat_colours_with_dashes_and_fold_the_legend() {
    let series = (0..60).map(|i| Series::new(format!("series {i}"), vec![(0.0, i as f64), (1.0, i as f64)])).collect();
    let s = svg(&lines(series, false), 800, 400);
    check(&s, "Latency over time");
    assert!(s.contains("stroke-dasharray"));
    assert!(s.contains(" more</text>"), "legend rows beyond 40% of the height are folded");
}

#[test]
fn huge_inputs_give_small_svg() {
    let n = 2_000_000;
    let points: Vec<(f64, f64)> = (0..n).map(|i| (i as f64 * 1e-3, 20.0 + (i % 101) as f64 * 0.1)).collect();
    let values: Vec<f64> = points.iter().map(|p| p.1).collect();
    for chart in [
        lines(vec![Series::new("a", points.clone()), Series::new("b", points)], true),
        cdf(vec![("a".into(), values)], true),
    ] {
        let s = svg(&chart, 1200, 600);
        check(&s, chart.title());
        assert!(s.len() < 120_000, "{} bytes", s.len());
    }
}

#[test]
fn bars_stack_per_layer_and_total() {
    let s = svg(&bars(vec!["p".into()], vec![("a".into(), vec![2.0]), ("b".into(), vec![3.0])]), 800, 300);
    assert!(s.contains("<title>p: a: 2</title>") && s.contains("<title>p: b: 3</title>"));
    assert!(s.contains(">5</text>"), "total at the bar's end");
    assert!(s.contains(&format!("fill=\"{}\"", PALETTE[1])));
}

/// RGBA pixels and size of a PNG.
fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    assert_eq!(info.color_type, png::ColorType::Rgba);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

/// Pixels darker than light grey within rows `rows` (the grid is lighter).
fn dark_pixels(w: u32, rgba: &[u8], rows: std::ops::Range<u32>) -> usize {
    rgba.chunks_exact(4)
        .enumerate()
        .filter(|(i, _)| rows.contains(&(*i as u32 / w)))
        .filter(|(_, p)| p[0] < 160 && p[1] < 160 && p[2] < 160)
        .count()
}

#[test]
fn png_has_the_size_and_visible_content() {
    for chart in all_kinds() {
        let bytes = png(&chart, 640, 320).expect("png");
        let (w, h, rgba) = decode(&bytes);
        assert_eq!((w, h), (640, 320));
        let non_white = rgba.chunks_exact(4).filter(|p| p[..3] != [255, 255, 255]).count();
        assert!(non_white > (w * h / 50) as usize, "{}: {non_white} non-white pixels", chart.title());
        // The first series' colour is drawn.
        let c = PALETTE[0];
        let rgb = [&c[1..3], &c[3..5], &c[5..7]].map(|h| u8::from_str_radix(h, 16).unwrap());
        assert!(rgba.chunks_exact(4).any(|p| p[..3] == rgb), "{}: no {c} pixel", chart.title());
    }
    let (w, h, _) = decode(&png_scaled(&all_kinds()[0], 300, 200, 2.0).expect("png"));
    assert_eq!((w, h), (600, 400));
}

#[test]
fn png_text_renders_with_the_embedded_font() {
    let titled = |title: &str| Chart::Lines {
        title: title.into(),
        x_label: String::new(),
        y_label: String::new(),
        series: vec![],
        log_y: false,
    };
    let (w, _, with) = decode(&png(&titled("Latency over time per layer"), 600, 300).unwrap());
    let (_, _, without) = decode(&png(&titled(""), 600, 300).unwrap());
    // The title strip (y < 27, above the top tick label) has glyphs only with a title.
    let (a, b) = (dark_pixels(w, &with, 0..27), dark_pixels(w, &without, 0..27));
    assert!(a > 300 && b == 0, "title pixels: {a} with, {b} without");
    assert_eq!(super::raster::font_faces(), 1);
}

#[test]
fn png_rejects_bad_sizes() {
    let chart = &all_kinds()[0];
    assert!(matches!(png_scaled(chart, 800, 400, 0.0), Err(ChartError::Size { .. })));
    assert!(matches!(png_scaled(chart, 800, 400, f32::NAN), Err(ChartError::Size { .. })));
    assert!(matches!(png_scaled(chart, 20_000, 400, 1.0), Err(ChartError::Size { .. })));
    let e = png_scaled(chart, 800, 400, 100.0).unwrap_err().to_string();
    assert!(e.contains("80000×40000"), "{e}");
}
