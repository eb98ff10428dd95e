//! Finding netlat's binaries next to the running one.
//!
//! `cargo test --workspace` builds every package's binaries into the same
//! profile folder before it runs any test, so a test binary in
//! `target/<profile>/deps/` finds them one level up.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Path of the workspace binary `name` (e.g. `netlat-capture`).
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe folder").to_path_buf();
    let test = dir.ends_with("deps");
    if test {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} not built (run `cargo build --release --workspace`)", p.display());
    if test {
        fresh(&p);
    }
    p
}

/// Fails a test whose binary is older than a file it was built from (its dep-info,
/// `<binary>.d`, as cargo wrote it: files, and folders such as the eBPF crate, whose every
/// file counts): `cargo test -p lab` rebuilds the tests, not the binaries they run, so the
/// old binary would be tested (it happened: an old capture's counters looked like a bug).
fn fresh(bin: &Path) {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else { return };
    let Ok(info) = std::fs::read_to_string(bin.with_extension("d")) else { return };
    let Some((_, deps)) = info.split_once(": ") else { return };
    for dep in deps.split_whitespace().map(Path::new) {
        if let Some(newer) = newer_file(dep, built) {
            panic!(
                "{} is older than {}: run `cargo build --release --workspace` before the tests",
                bin.display(),
                newer.display()
            );
        }
    }
}

/// `path`, or a file under it if it is a folder (target folders left out), changed after
/// `t`.
fn newer_file(path: &Path, t: SystemTime) -> Option<PathBuf> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().is_ok_and(|m| m > t).then(|| path.to_owned());
    }
    std::fs::read_dir(path).ok()?.flatten().filter(|e| e.file_name() != "target").find_map(|e| newer_file(&e.path(), t))
}
