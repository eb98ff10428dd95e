//! netlat's configuration files.
//!
//! All YAML goes through this crate (the only user of `serde_yaml_ng`, a
//! maintained fork of the archived `serde_yaml`), so the backend can change
//! in one place. Every error names the file and, where the parser knows it,
//! the field, line and column.
#![deny(missing_docs)]

pub mod capture;
pub mod hosts;
pub mod lab;
pub mod names;
pub mod probes;

use std::path::{Path, PathBuf};

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid YAML, or not the expected shape (unknown or mistyped field).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Parser message, with field, line and column.
        message: String,
    },
    /// Well-formed but out of range or inconsistent.
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted path of the field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Parses YAML text that claims to come from `path`.
pub(crate) fn from_yaml<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ConfError> {
    serde_yaml_ng::from_str(text).map_err(|e| ConfError::Syntax { path: path.to_owned(), message: e.to_string() })
}

/// Reads a file, naming it in the error.
pub(crate) fn read(path: &Path) -> Result<String, ConfError> {
    std::fs::read_to_string(path).map_err(|source| ConfError::Read { path: path.to_owned(), source })
}
