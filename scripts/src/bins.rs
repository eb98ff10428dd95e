//! Finding netlat's binaries next to the running one.
//!
//! `cargo test --workspace` builds every package's binaries into the same
//! profile folder before it runs any test, so a test binary in
//! `target/<profile>/deps/` finds them one level up.

use std::path::PathBuf;

/// Path of the workspace binary `name` (e.g. `netlat-capture`).
pub fn path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe folder").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} not built (run `cargo build --release --workspace`)", p.display());
    p
}
