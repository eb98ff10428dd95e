//! Shared by capture's integration tests.

/// Whether a kernel test can run (as root). In CI (`CI` set) a test that cannot run fails
/// instead of skipping (the project rule, as `scripts::testing::kernel_test`).
pub fn kernel_test(name: &str) -> bool {
    // SAFETY: no arguments, cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var("CI").is_err(), "{name}: kernel tests must run as root in CI");
    eprintln!("SKIPPED {name}: needs root (run scripts/test as root)");
    false
}
