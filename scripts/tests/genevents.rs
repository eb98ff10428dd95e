//! Keeps the benchmark's synthetic captures honest (issue 5): `netlat-analyze` must report
//! exactly the latencies the generator injected, and the files must look like a capture's.
//! No root needed.

use std::{fs::File, path::Path, process::Command};

use lab::{
    benchanalyze::{Figures, DUCKDB_SCRIPT},
    bins,
    genevents::{generate, GenConfig},
};
use parquet::file::reader::{FileReader, SerializedFileReader};

fn config(out: &Path) -> GenConfig {
    let mut cfg = GenConfig::new(out.to_owned(), 40_000);
    cfg.seed = 7;
    cfg.rows_per_file = 1500;
    // More loss and retransmissions than the benchmark, so that a small dataset has plenty
    // of unmatched and ambiguous ids.
    cfg.loss = 0.02;
    cfg.dup = 0.01;
    cfg.truth = true;
    cfg
}

#[test]
fn analyzer_reports_exactly_the_injected_latencies() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cap");
    let mut cfg = config(&out);
    cfg.threads = 2;
    let gen = generate(&cfg).unwrap();
    let truth = gen.truth.clone().unwrap();
    assert!(gen.events >= 40_000 && gen.events < 40_010, "{}", gen.events);
    assert!(truth.ambiguous > 50, "{}", truth.ambiguous);
    assert!(truth.unmatched.iter().map(|u| u.ids).sum::<u64>() > 50, "{:?}", truth.unmatched);
    assert!(truth.pairs.len() > 100, "{}", truth.pairs.len());

    // The capture's layout: per host a folder of rotated files with the netlat metadata.
    for h in 0..10 {
        let host = format!("h{h:02}");
        let files: Vec<_> = std::fs::read_dir(out.join(&host)).unwrap().map(|e| e.unwrap().path()).collect();
        assert!(files.len() >= 2, "{host}: {files:?}");
        for f in files {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(&format!("{host}-")) && name.ends_with(".events.parquet"), "{name}");
            let r = SerializedFileReader::new(File::open(&f).unwrap()).unwrap();
            let md = r.metadata().file_metadata();
            assert!(md.num_rows() as u64 <= cfg.rows_per_file);
            let kv: Vec<(String, String)> = md
                .key_value_metadata()
                .unwrap()
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
                .collect();
            for (k, v) in [("netlat.schema_version", "1"), ("netlat.table", "events"), ("netlat.host", host.as_str())] {
                assert!(kv.contains(&(k.to_owned(), v.to_owned())), "{name}: {k} in {kv:?}");
            }
            let schema = parquet::arrow::parquet_to_arrow_schema(md.schema_descr(), md.key_value_metadata()).unwrap();
            assert_eq!(schema.fields(), capture::schema::events_schema(false, false).fields(), "{name}");
        }
    }

    // The analyzer finds exactly what was injected.
    let json = Command::new(bins::path("netlat-analyze"))
        .args(["--same-clock", "--format", "json"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let analyzed = Figures::from_json(&String::from_utf8(json.stdout).unwrap()).unwrap();
    let expected = Figures::from_json(&serde_json::to_string(&truth).unwrap()).unwrap();
    let diff = analyzed.diff(&expected, "netlat-analyze", "injected");
    assert!(diff.is_empty(), "{}", diff.join("\n"));

    // The injected distributions are the documented ones (xdp → tc_ingress: median 2.5 µs).
    let stack: Vec<_> = truth.pairs.iter().filter(|p| p.from.ends_with(":eth0:xdp") && p.count > 500).collect();
    assert!(!stack.is_empty());
    for p in stack {
        assert!((2_250..2_750).contains(&p.p50_ns), "{p:?}");
    }

    // Deterministic: one writer thread gives the same data as two.
    let out1 = tmp.path().join("cap1");
    let mut cfg1 = config(&out1);
    cfg1.threads = 1;
    let again = generate(&cfg1).unwrap();
    assert_eq!(serde_json::to_string(&again.truth).unwrap(), serde_json::to_string(&gen.truth).unwrap());

    // The benchmark's DuckDB query agrees too (skipped without python3 + duckdb).
    let ok = Command::new("python3").args(["-c", "import duckdb"]).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED DuckDB check (python3 + duckdb from scripts/bootstrap)");
        return;
    }
    let d = Command::new("python3").arg("-c").arg(DUCKDB_SCRIPT).arg("--check").arg(&out).output().unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let duck = Figures::from_json(&String::from_utf8(d.stdout).unwrap()).unwrap();
    let diff = duck.diff(&expected, "DuckDB", "injected");
    assert!(diff.is_empty(), "{}", diff.join("\n"));
}
