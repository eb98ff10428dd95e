//! Bringing a host's files home, each verified by size and sha256.
//!
//! A file is copied to `.NAME.partial` next to its final name, checked
//! against the size and checksum the host reported, and only then renamed.
//! A cut or corrupted copy is deleted and tried again (a bounded number of
//! times); a file already at home with the right checksum is not copied
//! again, and a good file is never replaced by a broken one.

use std::{
    collections::BTreeMap,
    fs::File,
    io::Read as _,
    path::{Path, PathBuf},
    time::Duration,
};

use conf::hosts::HostConf;
use sha2::{Digest as _, Sha256};

use super::{
    remote::{self, target, RemoteFile},
    ssh::{self, SshSetup},
    state::FileRecord,
    HostError,
};

/// Lowercase hex sha256 of a file.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `path` holds exactly `want`.
pub fn matches(path: &Path, want: &RemoteFile) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == want.size) && sha256_file(path).is_ok_and(|s| s == want.sha256)
}

/// What pulling one host did.
#[derive(Debug, Default)]
pub struct Pulled {
    /// Files the host listed.
    pub listed: usize,
    /// Copied now and verified.
    pub fetched: usize,
    /// At home and verified already (a resumed run).
    pub already: usize,
    /// Bytes copied now.
    pub bytes: u64,
    /// Files that could not be brought home, with the reason.
    pub failed: Vec<(String, String)>,
    /// Every verified file.
    pub verified: BTreeMap<String, FileRecord>,
}

/// The hidden temporary name of `name` in `dir`.
pub fn partial_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.partial"))
}

/// Lists the host's finished files and brings each home into `local`
/// (absolute). `progress(done, total)` is called after each file.
pub fn pull_host(
    ssh: &SshSetup,
    h: &HostConf,
    run_dir: &str,
    local: &Path,
    tries: u32,
    progress: &dyn Fn(usize, usize, &str),
) -> Result<Pulled, HostError> {
    let files = remote::list(ssh, h, run_dir, tries)?;
    std::fs::create_dir_all(local).map_err(|e| HostError::Local { path: local.to_owned(), source: e })?;
    let mut p = Pulled { listed: files.len(), ..Default::default() };
    for (i, f) in files.iter().enumerate() {
        let fin = local.join(&f.name);
        if matches(&fin, f) {
            p.already += 1;
        } else {
            match fetch(ssh, h, run_dir, local, f, tries) {
                Ok(()) => {
                    p.fetched += 1;
                    p.bytes += f.size;
                }
                Err(reason) => {
                    p.failed.push((f.name.clone(), reason));
                    progress(i + 1, files.len(), &f.name);
                    continue;
                }
            }
        }
        p.verified.insert(f.name.clone(), FileRecord { size: f.size, sha256: f.sha256.clone() });
        progress(i + 1, files.len(), &f.name);
    }
    Ok(p)
}

/// Copies one file via its partial name, verifies, renames; up to `tries` times.
fn fetch(ssh: &SshSetup, h: &HostConf, run_dir: &str, local: &Path, f: &RemoteFile, tries: u32) -> Result<(), String> {
    let partial = partial_path(local, &f.name);
    let argv = ssh.scp_from(&target(h), &format!("{run_dir}/{}", f.name), &partial);
    let mut last = String::new();
    for n in 1..=tries {
        if n > 1 {
            std::thread::sleep(Duration::from_secs(1 << (n - 2).min(4)));
        }
        let _ = std::fs::remove_file(&partial);
        match ssh::run(&argv) {
            Err(e) => return Err(format!("cannot run scp: {e}")),
            Ok(d) if !d.ok() => last = format!("scp: {}", d.reason()),
            Ok(_) => match verify_and_install(&partial, &local.join(&f.name), f) {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            },
        }
        let _ = std::fs::remove_file(&partial);
    }
    Err(format!("not copied intact in {tries} tries; last: {last}"))
}

/// Checks `partial` against `want` and renames it to `fin` (fsynced).
fn verify_and_install(partial: &Path, fin: &Path, want: &RemoteFile) -> Result<(), String> {
    let size = std::fs::metadata(partial).map(|m| m.len()).map_err(|e| format!("{}: {e}", partial.display()))?;
    if size != want.size {
        return Err(format!("copy has {size} bytes, the host has {}", want.size));
    }
    let sha = sha256_file(partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    if sha != want.sha256 {
        return Err(format!("copy has sha256 {sha}, the host has {}", want.sha256));
    }
    File::open(partial).and_then(|f| f.sync_all()).map_err(|e| format!("{}: fsync: {e}", partial.display()))?;
    std::fs::rename(partial, fin).map_err(|e| format!("{}: rename: {e}", fin.display()))?;
    if let Some(dir) = fin.parent() {
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn a_broken_copy_never_replaces_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let (partial, fin) = (dir.path().join(".f.partial"), dir.path().join("f"));
        std::fs::write(&fin, b"good").unwrap();
        std::fs::write(&partial, b"goo").unwrap();
        let want = RemoteFile { name: "f".into(), size: 4, sha256: sha256_file(&fin).unwrap() };
        let e = verify_and_install(&partial, &fin, &want).unwrap_err();
        assert!(e.contains("copy has 3 bytes, the host has 4"), "{e}");
        std::fs::write(&partial, b"bad!").unwrap();
        let e = verify_and_install(&partial, &fin, &want).unwrap_err();
        assert!(e.contains("copy has sha256"), "{e}");
        assert_eq!(std::fs::read(&fin).unwrap(), b"good");
        std::fs::write(&partial, b"good").unwrap();
        verify_and_install(&partial, &fin, &want).unwrap();
        assert!(!partial.exists());
        assert!(matches(&fin, &want));
    }
}
