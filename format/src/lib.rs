//! The one definition of a qtrace trace.
//!
//! A trace is a directory of standard Parquet files that DuckDB, pandas and
//! Spark read as they are, with a JSON manifest at its root:
//!
//! - [`schema`]: the tables, their columns, types and encodings;
//! - [`layout`]: where each table's part files live;
//! - [`manifest`]: what was recorded and how the run ended;
//! - [`writer`]: writes a table partition as sealed part files, and
//!   [`blocks_writer`] the encoder of the one table that must keep up with QEMU;
//! - [`reader`]: opens a trace and scans its tables in parallel, reading
//!   only sealed parts whose size and checksum match the manifest, and
//!   [`verify`], which checks a whole trace against its manifest;
//! - [`elf`]: the facts of an ELF file that the `modules` table records,
//!   and [`symbols`], which turns a trace's addresses into symbol names
//!   offline through that table and the files on disk.
//!
//! Users' documentation of the tables, with DuckDB and pandas examples, is
//! `format/README.md`.

use std::path::{Path, PathBuf};

pub mod block_stream;
pub mod blocks_writer;
pub mod elf;
pub mod errno;
pub mod layout;
pub mod manifest;
pub mod mem_writer;
mod pages;
pub mod reader;
pub mod schema;
pub mod symbols;
pub mod syscall_names;
pub mod verify;
pub mod writer;

pub use layout::PartPath;
pub use manifest::{Manifest, TriggerHit, VcpuTotals, Window, WindowRange};
pub use reader::{scan, RowGroup, RowGroups, Trace};
pub use schema::{BlockCount, BlockInfo, InsnInfo, Module, ModuleKind, Syscall, Table};

/// What went wrong, and with which file.
///
/// Every variant prints its whole story on its own, and none has a
/// [`std::error::Error::source`]: the I/O error of [`Error::Io`] is part of
/// its message, so that `{:#}` of an `anyhow` chain does not repeat it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// Deliberately not named `source`, which thiserror would also
        /// report as the cause.
        error: std::io::Error,
    },
    #[error("{path}: not a qtrace trace ({why})")]
    NotATrace { path: PathBuf, why: String },
    #[error("{path}: listed in the manifest but missing")]
    Missing { path: PathBuf },
    #[error("{path}: corrupt: {why}")]
    Corrupt { path: PathBuf, why: String },
    #[error("column `{column}` is not {expected}")]
    Schema { column: String, expected: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: &Path, error: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            error,
        }
    }

    pub fn parquet(path: &Path, e: parquet::errors::ParquetError) -> Error {
        match e {
            parquet::errors::ParquetError::External(inner) => {
                match inner.downcast::<std::io::Error>() {
                    Ok(io) => Error::io(path, *io),
                    Err(other) => Error::corrupt(path, other.to_string()),
                }
            }
            other => Error::corrupt(path, other.to_string()),
        }
    }

    pub fn corrupt(path: &Path, why: impl Into<String>) -> Error {
        Error::Corrupt {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }

    pub fn not_a_trace(path: &Path, why: impl Into<String>) -> Error {
        Error::NotATrace {
            path: path.to_path_buf(),
            why: why.into(),
        }
    }

    pub fn schema(column: &str, expected: &str) -> Error {
        Error::Schema {
            column: column.to_string(),
            expected: expected.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_print_their_cause_once() {
        let e = Error::io(
            Path::new("/t/manifest.json"),
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        assert_eq!(e.to_string(), "/t/manifest.json: gone");
        // The cause is in the message, so it must not also be the source,
        // or `{:#}` and error reporters print it twice.
        assert!(std::error::Error::source(&e).is_none());
    }
}
