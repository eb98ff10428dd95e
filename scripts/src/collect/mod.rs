//! `netlat-collect`: deploy, run and collect over SSH.
//!
//! For every host of `hosts.yaml` that captures: copy the static
//! `netlat-capture` with scp (once: its name carries its sha256), start it
//! over ssh (`sudo -n` where needed) for `--duration` on the host's
//! interfaces, wait until every capture printed its ready line, run an
//! optional traffic command, pull the Parquet files into `OUT/HOST/` (each
//! verified by size and sha256), check them, and run `netlat-analyze`.
//!
//! * [`quote`]: the single-quote escaper for the remote command line;
//! * [`ssh`]: ssh/scp command lines with host-key checking on;
//! * [`remote`]: the constant remote scripts and their steps;
//! * [`capture`]: one host's capture, from connecting to its end;
//! * [`pull`]: verified copies home; [`check`]: what the files hold;
//! * [`state`]: the run record that makes a rerun resume;
//! * [`run`]: the whole job and its report; [`dry`]: `--dry-run`;
//! * [`progress`]: a bar per host.

pub mod capture;
pub mod check;
pub mod dry;
pub mod progress;
pub mod pull;
pub mod quote;
pub mod remote;
pub mod run;
pub mod ssh;
pub mod state;

use std::{io::Read as _, path::PathBuf, time::Duration};

pub use run::{collect, HostReport, Report};

/// Everything a collection needs (the command line, parsed).
#[derive(Clone, Debug)]
pub struct Options {
    /// hosts.yaml.
    pub hosts_file: PathBuf,
    /// Output folder (`OUT/HOST/`, `OUT/collect.json`).
    pub out: PathBuf,
    /// Capture duration, seconds.
    pub duration: f64,
    /// The netlat-capture to copy (static).
    pub capture_bin: PathBuf,
    /// ssh/scp programs and options.
    pub ssh: ssh::SshSetup,
    /// Command run with `sh -c` once every capture is ready.
    pub traffic: Option<String>,
    /// Capture filter expression.
    pub filter: Option<String>,
    /// More netlat-capture options.
    pub capture_args: Vec<String>,
    /// Tries per ssh/scp step (connect, copy, list, pull).
    pub tries: u32,
    /// How long a capture may take to attach its hooks.
    pub ready_timeout: Duration,
    /// How long past `--duration` a capture may take to end.
    pub grace: Duration,
    /// netlat-analyze to run on the result (None: skip).
    pub analyze: Option<PathBuf>,
    /// Remove each host's remote run folder once its files are home.
    pub remove_remote: bool,
    /// Print the commands instead of running them.
    pub dry_run: bool,
}

/// A problem that stops the whole collection before any host is
/// contacted (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// hosts.yaml is unusable.
    #[error(transparent)]
    Conf(#[from] conf::ConfError),
    /// A command-line value is unusable.
    #[error("{0}")]
    Usage(String),
    /// The binary to copy is unusable.
    #[error("{path}: {message}", path = path.display())]
    Binary {
        /// The binary.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The output folder is unusable.
    #[error("{path}: {source}", path = path.display())]
    Out {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The run record is unusable.
    #[error(transparent)]
    State(#[from] state::StateError),
}

/// Why one host's step failed; reported, the other hosts go on.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A local program could not be started.
    #[error("{what}: cannot run: {source}")]
    Spawn {
        /// The step.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// ssh itself failed (unreachable, refused, host key, connection lost).
    #[error("{what}: ssh failed ({tries} {}): {reason}", if *tries == 1 { "try" } else { "tries" })]
    Ssh {
        /// The step.
        what: &'static str,
        /// Tries made.
        tries: u32,
        /// ssh's last word.
        reason: String,
    },
    /// The remote command failed.
    #[error("{what}: {reason}")]
    Remote {
        /// The step.
        what: &'static str,
        /// Its last word.
        reason: String,
    },
    /// The host answered something this tool does not understand.
    #[error("{what}: unexpected reply {line:?}")]
    BadReply {
        /// The step.
        what: &'static str,
        /// The reply.
        line: String,
    },
    /// A copy did not arrive intact.
    #[error("{what}: not copied intact in {tries} tries; last: {reason}")]
    Copy {
        /// What was copied.
        what: String,
        /// Tries made.
        tries: u32,
        /// The last failure.
        reason: String,
    },
    /// A value cannot be passed on a command line.
    #[error("{0}")]
    Argument(String),
    /// A local file or folder.
    #[error("{path}: {source}", path = path.display())]
    Local {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// The local binary: its bytes' sha256, size, and whether it is static.
#[derive(Clone, Debug)]
pub struct LocalBinary {
    /// Absolute path.
    pub path: PathBuf,
    /// Lowercase hex sha256.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// No ELF interpreter (runs without the host's libc).
    pub is_static: bool,
}

impl LocalBinary {
    /// Looks at `path`.
    pub fn inspect(path: &std::path::Path) -> Result<Self, CollectError> {
        let bad = |message: String| CollectError::Binary { path: path.to_owned(), message };
        let path = std::fs::canonicalize(path)
            .map_err(|e| bad(format!("{e} (build it with scripts/build-static, or pass --capture-bin)")))?;
        let size = std::fs::metadata(&path).map_err(|e| bad(e.to_string()))?.len();
        let sha256 = pull::sha256_file(&path).map_err(|e| bad(e.to_string()))?;
        let mut head = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(1 << 16).read_to_end(&mut head))
            .map_err(|e| bad(e.to_string()))?;
        let is_static = elf_is_static(&head).ok_or_else(|| bad("not an x86_64 ELF executable".into()))?;
        Ok(LocalBinary { path, sha256, size, is_static })
    }
}

/// Some(true) if the ELF64 little-endian x86_64 image in `b` has no
/// PT_INTERP program header (no dynamic loader), None if not such an image.
pub fn elf_is_static(b: &[u8]) -> Option<bool> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]]));
    let u32_at = |o: usize| b.get(o..o + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")));
    let u64_at = |o: usize| b.get(o..o + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")));
    // Magic, 64-bit, little-endian, EM_X86_64 (62).
    if b.get(..6)? != b"\x7fELF\x02\x01" || u16_at(0x12)? != 62 {
        return None;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20)? as usize, u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    for i in 0..phnum {
        // PT_INTERP = 3
        if u32_at(phoff + i * phentsize)? == 3 {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_interpreter_is_found() {
        let sh = std::fs::read("/bin/sh").unwrap();
        assert_eq!(elf_is_static(&sh), Some(false), "/bin/sh is dynamic");
        assert_eq!(elf_is_static(b"#!/bin/sh\n"), None);
        let b = LocalBinary::inspect(std::path::Path::new("/bin/sh")).unwrap();
        assert!(!b.is_static && b.sha256.len() == 64 && b.path.is_absolute());
        let e = LocalBinary::inspect(std::path::Path::new("/nonexistent/netlat-capture")).unwrap_err().to_string();
        assert!(e.contains("scripts/build-static"), "{e}");
    }
}
