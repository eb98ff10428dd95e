//! Builds the eBPF object (capture-ebpf) with the pinned nightly and
//! bpf-linker, for `include_bytes_aligned!` in the loader.
//! `AYA_BUILD_SKIP=1` skips it (docs, clippy on machines without the
//! toolchain); the loader then refuses to start.
use anyhow::{anyhow, Context as _};

/// Must match scripts/bootstrap.
const NIGHTLY: &str = "nightly-2026-05-19";

fn main() -> anyhow::Result<()> {
    // Cargo shares this script's output between checkouts using one target folder (the
    // scripts' default) and reruns it only when the files it named last time change, which
    // may be another checkout's: the object would be that checkout's. scripts/test and
    // .ci/run name the checkout here, so a change of checkout reruns it.
    println!("cargo:rerun-if-env-changed=NETLAT_CHECKOUT");
    let meta = cargo_metadata::MetadataCommand::new().no_deps().exec().context("MetadataCommand::exec")?;
    let pkg = meta
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "capture-ebpf")
        .ok_or_else(|| anyhow!("capture-ebpf package not found"))?;
    let root = pkg.manifest_path.parent().ok_or_else(|| anyhow!("no parent"))?.to_owned();
    let skip = std::env::var_os("AYA_BUILD_SKIP").is_some_and(|v| v == "1" || v == "true");
    if skip {
        // Leave an empty object so include_bytes_aligned! compiles.
        let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("netlat");
        std::fs::write(out, b"")?;
    }
    aya_build::build_ebpf(
        [aya_build::Package { name: "capture-ebpf", root_dir: root.as_str(), ..Default::default() }],
        aya_build::Toolchain::Custom(NIGHTLY),
    )?;
    let obj = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("netlat");
    check_no_panic_paths(&obj)
}

/// A panic path in kernel code (say, a bounds check LLVM could not prove
/// away) ends the program with an endless loop; the verifier rejects it at
/// load time with "last insn is not an exit or jmp". Catch it here, naming
/// the culprit, instead of on the first `netlat-capture` run.
fn check_no_panic_paths(obj: &std::path::Path) -> anyhow::Result<()> {
    use object::{Object as _, ObjectSymbol as _};
    let data = std::fs::read(obj).with_context(|| format!("reading {}", obj.display()))?;
    if data.is_empty() {
        return Ok(()); // AYA_BUILD_SKIP
    }
    let file = object::File::parse(&*data).with_context(|| format!("parsing {}", obj.display()))?;
    let panics: Vec<&str> = file.symbols().filter_map(|s| s.name().ok()).filter(|n| n.contains("panic")).collect();
    anyhow::ensure!(
        panics.is_empty(),
        "the eBPF object {} contains panic paths the verifier will reject: {}; \
         use iterators or `get` instead of indexing in kernel code",
        obj.display(),
        panics.join(", ")
    );
    Ok(())
}
