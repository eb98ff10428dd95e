//! Headless Chromium for tests: the screenshot pixels and the DOM of a local HTML file.
//!
//! ```ignore
//! mod common;
//! let page = common::chromium::render(&path_to_html);
//! assert!(page.dom.contains("Latency over time"));
//! assert!(page.non_white_fraction() > 0.05);
//! assert!(page.count_colour("#0072B2", 8) > 100);
//! ```
//!
//! Chromium is Debian's `chromium` package, installed by `scripts/bootstrap`; when it is
//! missing the calling test fails (it never skips). Each run gets a fresh profile
//! directory, and no network: the flags turn off background requests, and the page is a
//! `file://` URL. With `NETLAT_TEST_SCREENSHOTS=DIR` in the environment the screenshots
//! are also kept in DIR, named after the HTML file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The browser binary (Debian package `chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Default window size, CSS pixels (one device pixel each).
pub const WINDOW: (u32, u32) = (1200, 2400);

/// How long one Chromium run may take.
const TIMEOUT: Duration = Duration::from_secs(120);

/// What Chromium showed: the screenshot of the window and the DOM after loading.
pub struct Rendered {
    /// Screenshot width, px.
    pub width: u32,
    /// Screenshot height, px.
    pub height: u32,
    /// Screenshot pixels, RGB, row by row.
    pub rgb: Vec<u8>,
    /// The serialized DOM (`--dump-dom`).
    pub dom: String,
}

impl Rendered {
    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = 3 * (y as usize * self.width as usize + x as usize);
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Share of pixels that are not white, 0..=1.
    pub fn non_white_fraction(&self) -> f64 {
        let n = self.rgb.chunks_exact(3).filter(|p| *p != [255, 255, 255]).count();
        n as f64 / (self.width as f64 * self.height as f64).max(1.0)
    }

    /// Number of pixels within `tolerance` (per channel) of the colour `hex` (`#rrggbb`).
    pub fn count_colour(&self, hex: &str, tolerance: u8) -> usize {
        let want = parse_hex(hex);
        self.rgb.chunks_exact(3).filter(|p| p.iter().zip(want).all(|(&a, b)| a.abs_diff(b) <= tolerance)).count()
    }

    /// Number of distinct colours in the screenshot.
    pub fn distinct_colours(&self) -> usize {
        let mut seen: Vec<[u8; 3]> = self.rgb.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }
}

/// `#rrggbb` as bytes.
pub fn parse_hex(hex: &str) -> [u8; 3] {
    let h = hex.trim_start_matches('#');
    assert_eq!(h.len(), 6, "colour {hex:?} is not #rrggbb");
    [0, 2, 4].map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or_else(|_| panic!("bad colour {hex:?}")))
}

/// Opens `html` in headless Chromium with the default [`WINDOW`]: screenshot and DOM.
/// Panics (failing the test) when Chromium is missing or fails.
pub fn render(html: &Path) -> Rendered {
    render_with(html, WINDOW)
}

/// [`render`] with a window of `size` (width, height) CSS pixels.
pub fn render_with(html: &Path, size: (u32, u32)) -> Rendered {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} not found: this test needs headless Chromium; run scripts/bootstrap (as root), \
         which installs Debian's chromium package"
    );
    let html = html.canonicalize().unwrap_or_else(|e| panic!("{}: {e}", html.display()));
    let url = file_url(&html);
    let work = tempfile::tempdir().expect("temp dir");
    let shot = work.path().join("screenshot.png");

    let window = format!("--window-size={},{}", size.0, size.1);
    run(work.path(), "screenshot", &[&format!("--screenshot={}", shot.display()), &window, "--hide-scrollbars", &url]);
    let bytes = fs::read(&shot).unwrap_or_else(|e| panic!("chromium wrote no screenshot {}: {e}", shot.display()));
    keep_screenshot(&html, &bytes);
    let (width, height, rgb) = decode_png(&bytes);

    let dom_out = run(work.path(), "dom", &["--dump-dom", &url]);
    let dom = fs::read_to_string(&dom_out).expect("DOM dump");
    assert!(dom.contains("<html"), "chromium dumped no DOM for {url}: {dom:?}");
    Rendered { width, height, rgb, dom }
}

/// With `NETLAT_TEST_SCREENSHOTS=DIR` set, keeps the screenshot as `DIR/<page name>.png`
/// for a person to look at.
fn keep_screenshot(html: &Path, png: &[u8]) {
    if let Some(dir) = std::env::var_os("NETLAT_TEST_SCREENSHOTS") {
        let name = html.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let path = Path::new(&dir).join(format!("{name}.png"));
        fs::create_dir_all(&dir)
            .and_then(|()| fs::write(&path, png))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!("screenshot kept: {}", path.display());
    }
}

/// `file://` URL of an absolute path, with the characters URLs reserve escaped.
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => url.push(b as char),
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url
}

/// Runs Chromium once with a fresh profile under `work`; returns the file holding its
/// standard output. Output goes to files, not pipes: helper processes that outlive the
/// browser could hold pipes open.
fn run(work: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let profile = work.join(format!("profile-{name}"));
    fs::create_dir_all(&profile).expect("profile dir");
    let (out_path, err_path) = (work.join(format!("{name}.out")), work.join(format!("{name}.err")));
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--force-device-scale-factor=1",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .stdin(Stdio::null())
    .stdout(File::create(&out_path).expect("stdout file"))
    .stderr(File::create(&err_path).expect("stderr file"));
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}; run scripts/bootstrap"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for chromium") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium ({name}) still running after {TIMEOUT:?}; stderr:\n{}", read_lossy(&err_path));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium ({name}) failed with {status}; stderr:\n{}", read_lossy(&err_path));
    out_path
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// A PNG as (width, height, RGB bytes), whatever its colour type.
fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("screenshot PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("screenshot size")];
    let info = reader.next_frame(&mut buf).expect("screenshot PNG data");
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        png::ColorType::Grayscale => buf.iter().flat_map(|&g| [g, g, g]).collect(),
        png::ColorType::GrayscaleAlpha => buf.chunks_exact(2).flat_map(|p| [p[0], p[0], p[0]]).collect(),
        png::ColorType::Indexed => unreachable!("EXPAND turns palettes into RGB"),
    };
    (info.width, info.height, rgb)
}
