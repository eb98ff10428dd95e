//! The HTML report page in a real browser: a page with every chart kind and a table is
//! opened in headless Chromium; the chart titles must be in the DOM, and the screenshot
//! must show the charts (plenty of non-white pixels, several palette colours).

mod common;

use analyze::charts::{self, Chart, Page, Section, Series, Table, PALETTE};

/// Latency-like samples: a base per series, a slow wave, and a spike every 10 000 points.
fn latency(n: usize, base: f64) -> Vec<(f64, f64)> {
    (0..n)
        .map(|i| {
            let t = i as f64 * 1e-4;
            let spike = if i % 10_000 == 5_000 { 200.0 } else { 0.0 };
            (t, base + 3.0 * (t * 2.0).sin() + (i % 17) as f64 * 0.2 + spike)
        })
        .collect()
}

fn page() -> Page {
    let layers = ["tc_egress → xdp", "xdp → tc_ingress", "tc_ingress → socket"];
    let over_time = Chart::Lines {
        title: "Latency over time per layer".into(),
        x_label: "time since start (s)".into(),
        y_label: "latency (µs)".into(),
        series: layers
            .iter()
            .enumerate()
            .map(|(i, l)| Series::new(*l, latency(100_000, 20.0 + 15.0 * i as f64)))
            .collect(),
        log_y: false,
    };
    let cdf = Chart::Cdf {
        title: "Latency CDF per hop".into(),
        x_label: "latency (µs)".into(),
        series: layers
            .iter()
            .enumerate()
            .map(|(i, l)| (l.to_string(), latency(50_000, 10.0 * (i + 1) as f64).into_iter().map(|p| p.1).collect()))
            .collect(),
        log_x: true,
    };
    let paths = ["h1 eth0 → h2 eth0", "h2 eth0 → h1 eth0", "h1 <b>lo</b> & \"x\" → h3"];
    let breakdown = Chart::StackedBars {
        title: "Per-layer breakdown per path".into(),
        value_label: "median latency (µs)".into(),
        categories: paths.iter().map(|p| p.to_string()).collect(),
        layers: vec![
            ("sender stack".into(), vec![12.0, 14.5, 3.0]),
            ("wire".into(), vec![40.0, 38.0, 0.5]),
            ("receiver stack".into(), vec![9.0, 11.0, 2.0]),
            ("socket".into(), vec![4.0, 6.0, 1.0]),
        ],
    };
    let sync = Chart::Lines {
        title: "Clock-sync quality".into(),
        x_label: "time since start (s)".into(),
        y_label: "error bound (µs)".into(),
        series: vec![
            Series::new("h2 vs h1", (0..60).map(|i| (i as f64, 5.0 + (i % 5) as f64)).collect()),
            Series::new("h3 vs h1", (0..60).map(|i| (i as f64, 50.0 + (i % 7) as f64 * 10.0)).collect()),
        ],
        log_y: true,
    };
    Page {
        title: "netlat report".into(),
        sections: vec![
            Section {
                heading: "Per-layer breakdown".into(),
                paragraphs: vec!["Median latency per layer for each path.".into()],
                table: Some(Table {
                    header: vec!["path".into(), "p50_us".into(), "p99_us".into()],
                    rows: paths.iter().map(|p| vec![p.to_string(), "65.000".into(), "±1.5".into()]).collect(),
                }),
                charts: vec![breakdown],
            },
            Section {
                heading: "Latency".into(),
                paragraphs: vec!["Each hop over time and as a distribution.".into()],
                table: None,
                charts: vec![over_time, cdf],
            },
            Section { heading: "Clock sync".into(), paragraphs: vec![], table: None, charts: vec![sync] },
        ],
    }
}

#[test]
fn report_page_renders_in_chromium() {
    let page = page();
    let html = charts::html(&page);
    assert!(html.len() < 400_000, "page is {} bytes", html.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.html");
    std::fs::write(&path, &html).unwrap();

    let shown = common::chromium::render(&path);

    for title in [
        "netlat report",
        "Latency over time per layer",
        "Latency CDF per hop",
        "Per-layer breakdown per path",
        "Clock-sync quality",
    ] {
        assert!(shown.dom.contains(title), "{title:?} missing from the DOM");
    }
    assert_eq!(shown.dom.matches("<svg").count(), 4, "four charts");
    // The host name with markup stays text: no <b> element appears.
    assert!(!shown.dom.contains("<b>"), "markup in a name was not escaped");
    assert!(shown.dom.contains("&lt;b&gt;lo&lt;/b&gt;"));

    assert_eq!((shown.width, shown.height), common::chromium::WINDOW);
    let non_white = shown.non_white_fraction();
    assert!(non_white > 0.05, "screenshot nearly blank: {:.1}% non-white", 100.0 * non_white);
    let present: Vec<&str> = PALETTE.iter().copied().filter(|c| shown.count_colour(c, 10) >= 50).collect();
    assert!(present.len() >= 4, "palette colours on screen: {present:?}");
    assert!(shown.distinct_colours() > 20, "anti-aliased text and lines give many colours");
}
