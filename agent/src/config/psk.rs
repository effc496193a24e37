//! Pre-shared key files: one key per file, mode 0600 (or stricter).
//!
//! `validate` checks them with [`read_psk`] and drops the contents at once;
//! the IKE code reads them with the same function when it needs the key, so
//! both agree on what the key is. Nothing here ever prints a key.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Shortest key accepted, in bytes (after the trailing newline is removed).
pub const PSK_MIN_BYTES: usize = 8;
/// Longest file accepted: one key, not a dump of something else.
pub const PSK_MAX_BYTES: u64 = 4096;

/// Why a PSK file cannot be used. Messages name the file, never its contents.
#[derive(Debug, thiserror::Error)]
pub enum PskError {
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file (it is a {kind})", .path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} is readable by group or others (mode {mode:04o}); run chmod 600 {}",
        .path.display(), .path.display()
    )]
    Permissive { path: PathBuf, mode: u32 },
    #[error("{} is {len} bytes; a PSK file holds one key of at most {PSK_MAX_BYTES} bytes", .path.display())]
    TooLarge { path: PathBuf, len: u64 },
    #[error("{} is empty", .0.display())]
    Empty(PathBuf),
    #[error(
        "{}: the key is only {len} bytes; at least {PSK_MIN_BYTES} are required \
         (a trailing newline does not count)",
        .path.display()
    )]
    TooShort { path: PathBuf, len: usize },
}

fn kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_fifo() {
        "FIFO"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

fn io_error(path: &Path, source: std::io::Error) -> PskError {
    if source.kind() == std::io::ErrorKind::NotFound {
        PskError::NotFound(path.to_path_buf())
    } else {
        PskError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Read the key in `path`: the file's bytes minus one trailing `"\n"` or
/// `"\r\n"`. Refuses files that are not regular, are readable by group or
/// others, are larger than [`PSK_MAX_BYTES`], or hold fewer than
/// [`PSK_MIN_BYTES`] bytes of key.
pub fn read_psk(path: &Path) -> Result<Vec<u8>, PskError> {
    // stat first: opening a FIFO for reading would block until a writer came.
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(PskError::NotRegular {
            path: path.to_path_buf(),
            kind: kind(&meta.file_type()),
        });
    }
    // O_NONBLOCK in case the path was swapped for a FIFO since; the checks
    // below use the opened file's metadata, so they judge what is read.
    let mut file: File = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(PskError::NotRegular {
            path: path.to_path_buf(),
            kind: kind(&meta.file_type()),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o044 != 0 {
        return Err(PskError::Permissive {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > PSK_MAX_BYTES {
        return Err(PskError::TooLarge {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut key = Vec::new();
    file.by_ref()
        .take(PSK_MAX_BYTES + 1)
        .read_to_end(&mut key)
        .map_err(|e| io_error(path, e))?;
    if key.len() as u64 > PSK_MAX_BYTES {
        return Err(PskError::TooLarge {
            path: path.to_path_buf(),
            len: key.len() as u64,
        });
    }
    if key.ends_with(b"\r\n") {
        key.truncate(key.len() - 2);
    } else if key.ends_with(b"\n") {
        key.truncate(key.len() - 1);
    }
    if key.is_empty() {
        return Err(PskError::Empty(path.to_path_buf()));
    }
    if key.len() < PSK_MIN_BYTES {
        return Err(PskError::TooShort {
            path: path.to_path_buf(),
            len: key.len(),
        });
    }
    Ok(key)
}
