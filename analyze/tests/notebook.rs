//! examples/analysis.ipynb runs headless on the Parquet outputs of real captures
//! (testdata/sync-3h) and its checks pass: the per-hop rows give the summary's figures.
//! Python, polars, matplotlib and nbclient come from scripts/bootstrap; without them this
//! test fails (it never skips).

use std::path::Path;
use std::process::Command;

#[test]
fn issue5_notebook_runs_on_testdata() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results");
    let status = Command::new(env!("CARGO_BIN_EXE_netlat-analyze"))
        .arg(root.join("testdata/sync-3h"))
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let script = "\
import sys, nbformat, nbclient
nb = nbformat.read(sys.argv[1], as_version=4)
nbclient.NotebookClient(nb, timeout=300, kernel_name='python3').execute()
outs = [o.get('text', '') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', [])]
print(''.join(outs))
";
    let run = Command::new("python3")
        .args(["-c", script])
        .arg(root.join("examples/analysis.ipynb"))
        .env("NETLAT_OUT", &out)
        .output()
        .expect("python3 (run scripts/bootstrap)");
    let (stdout, stderr) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "notebook failed (missing packages? run scripts/bootstrap):\n{stderr}\n{stdout}");
    assert!(stdout.contains("1200 hop rows; 6 pairs; 3 paths"), "{stdout}");
    assert!(stdout.contains("checked 6 pairs"), "{stdout}");
    for png in ["latency_over_time.png", "cdf_per_hop.png", "breakdown_per_path.png"] {
        let len = std::fs::metadata(out.join(png)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "{png}: {len} bytes");
    }
}
