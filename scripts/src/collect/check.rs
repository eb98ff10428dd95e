//! Checking a host's pulled files: every event (and clock-sync) file is
//! readable Parquet of its netlat table for that host, the run-metadata
//! record says the run finished, every file it lists is there, and its
//! counts match the rows.

use std::{collections::BTreeSet, fs::File, path::Path};

use parquet::file::reader::{FileReader as _, SerializedFileReader};

/// What a host's folder holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFiles {
    /// Event files.
    pub files: usize,
    /// Rows in them.
    pub rows: u64,
    /// Bytes of event files.
    pub bytes: u64,
    /// Problems found (empty: all good).
    pub problems: Vec<String>,
}

/// Checks the files in `dir` for host `host`.
pub fn check_host(dir: &Path, host: &str) -> HostFiles {
    let mut out = HostFiles::default();
    let mut names = BTreeSet::new();
    let mut metas = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            out.problems.push(format!("{}: {e}", dir.display()));
            return out;
        }
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".events.parquet") && !name.starts_with('.') {
            match table_rows(&path, host, "events") {
                Ok(rows) => {
                    out.files += 1;
                    out.rows += rows;
                    out.bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                    names.insert(name);
                }
                Err(e) => out.problems.push(format!("{name}: {e}")),
            }
        } else if name.ends_with(".sync.parquet") && !name.starts_with('.') {
            // Clock-sync stamps (netlat-capture with --sync-peer): readable, from this host.
            match table_rows(&path, host, "sync") {
                Ok(_) => {
                    names.insert(name);
                }
                Err(e) => out.problems.push(format!("{name}: {e}")),
            }
        } else if name.ends_with(".meta.json") && !name.starts_with('.') {
            metas.push(path);
        }
    }
    match metas.as_slice() {
        [] => out.problems.push("no run-metadata record (*.meta.json)".into()),
        [meta] => {
            if let Err(e) = check_meta(meta, host, &names, out.rows) {
                out.problems.push(e);
            }
        }
        _ => out.problems.push(format!("{} run-metadata records; one capture per run expected", metas.len())),
    }
    out
}

/// Rows of one Parquet file of netlat table `table`, after checking it belongs to `host`.
fn table_rows(path: &Path, host: &str, table: &str) -> Result<u64, String> {
    let f = File::open(path).map_err(|e| e.to_string())?;
    let r = SerializedFileReader::new(f).map_err(|e| format!("not readable Parquet: {e}"))?;
    let meta = r.metadata().file_metadata();
    let kv = |k: &str| {
        meta.key_value_metadata()
            .and_then(|v| v.iter().find(|e| e.key == k).and_then(|e| e.value.clone()))
            .unwrap_or_default()
    };
    if kv("netlat.table") != table {
        return Err(format!("not a netlat {table} file (key netlat.table)"));
    }
    let h = kv("netlat.host");
    if h != host {
        return Err(format!("written by host {h:?}, expected {host:?}"));
    }
    Ok(meta.num_rows() as u64)
}

fn check_meta(path: &Path, host: &str, names: &BTreeSet<String>, rows: u64) -> Result<(), String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{name}: {e}"))?;
    let status = v["status"].as_str().unwrap_or("");
    if status != "finished" {
        let err = v["error"].as_str().map(|e| format!(": {e}")).unwrap_or_default();
        return Err(format!("{name}: the capture did not finish (status {status:?}{err})"));
    }
    if v["host"].as_str() != Some(host) {
        return Err(format!("{name}: host {:?}, expected {host:?}", v["host"]));
    }
    // Event files, and clock-sync files where the capture writes them.
    let listed: BTreeSet<String> = [&v["files"], &v["sync"]["files"]]
        .into_iter()
        .filter_map(|l| l.as_array())
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    let missing: Vec<&String> = listed.difference(names).collect();
    if !missing.is_empty() {
        return Err(format!("{name}: lists files that are not here: {missing:?}"));
    }
    let written: u64 =
        v["counts"].as_object().into_iter().flatten().map(|(_, c)| c["written"].as_u64().unwrap_or(0)).sum();
    let deleted = v["files_deleted"].as_array().is_some_and(|d| !d.is_empty());
    if !deleted && written != rows {
        return Err(format!("{name}: {written} events written, {rows} rows in the files"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_record_and_unfinished_runs_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        let r = check_host(dir.path(), "a");
        assert_eq!(r.problems, ["no run-metadata record (*.meta.json)"]);
        std::fs::write(dir.path().join("a-r.meta.json"), r#"{"status":"running","host":"a","files":[]}"#).unwrap();
        let r = check_host(dir.path(), "a");
        assert!(r.problems[0].contains("did not finish (status \"running\")"), "{:?}", r.problems);
        std::fs::write(
            dir.path().join("a-r.meta.json"),
            r#"{"status":"finished","host":"a","files":["a-r-00001.events.parquet"],"counts":{}}"#,
        )
        .unwrap();
        let r = check_host(dir.path(), "a");
        assert!(r.problems[0].contains("lists files that are not here"), "{:?}", r.problems);
        std::fs::write(
            dir.path().join("a-r.meta.json"),
            r#"{"status":"finished","host":"a","files":[],"sync":{"files":["a-r-00001.sync.parquet"]}}"#,
        )
        .unwrap();
        let r = check_host(dir.path(), "a");
        assert!(r.problems[0].contains("a-r-00001.sync.parquet"), "sync files are expected too: {:?}", r.problems);
        std::fs::write(dir.path().join("a-r-00001.events.parquet"), b"PAR1 not really").unwrap();
        let r = check_host(dir.path(), "a");
        assert!(r.problems.iter().any(|p| p.contains("not readable Parquet")), "{:?}", r.problems);
    }
}
