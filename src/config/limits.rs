//! How much input one configuration may be, and reading files within that.
//!
//! A configuration is a few dozen small files; nothing in the pipeline streams, so
//! without bounds a careless or hostile input (a 50 MB values file, a layer that is a
//! link to `/dev/zero` or a FIFO) costs tens of seconds and gigabytes, or never ends.
//! Every bound is far above real use and is reported where it is reached, like any
//! other problem. The YAML reader bounds nesting and values ([`super::yaml`]).

use std::io::Read;
use std::path::Path;

/// The largest layer file. Helm keeps a release (its values included) in one
/// Kubernetes Secret, at most 1 MiB; no configuration file needs more.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The largest encrypted layer file: its plaintext is bounded like any layer, and ASCII
/// armor makes the file about a third larger.
pub const MAX_ENCRYPTED_FILE_BYTES: u64 = 2 * MAX_FILE_BYTES;

/// All layer files of a configuration together (main directory, overlays and
/// decrypted parts).
pub const MAX_TOTAL_BYTES: u64 = 16 * MAX_FILE_BYTES;

/// A file `${file:…}` reads: a token, a key, a certificate.
pub const MAX_REFERENCED_FILE_BYTES: u64 = MAX_FILE_BYTES;

/// Why a file was not read.
#[derive(Debug)]
pub enum ReadError {
    /// A directory, a device, a FIFO: reading it may never end.
    NotAFile(&'static str),
    /// Larger than the limit (the limit, in bytes).
    TooLarge(u64),
    Io(std::io::Error),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::NotAFile(kind) => write!(f, "it is {kind}, not a regular file"),
            ReadError::TooLarge(limit) => write!(f, "it is larger than {}", size(*limit)),
            ReadError::Io(error) => write!(f, "{error}"),
        }
    }
}

/// `1 MiB`, `16 MiB`, `512 KiB`.
pub fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// The bytes of a regular file (links followed) of at most `limit` bytes. The limit
/// holds while reading, not only by the size the file claims, so a file that grows (or
/// lies) is still cut off.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let metadata = std::fs::metadata(path).map_err(ReadError::Io)?;
    if !metadata.is_file() {
        return Err(ReadError::NotAFile(kind_of(&metadata)));
    }
    if metadata.len() > limit {
        return Err(ReadError::TooLarge(limit));
    }
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > limit {
        return Err(ReadError::TooLarge(limit));
    }
    Ok(bytes)
}

fn kind_of(metadata: &std::fs::Metadata) -> &'static str {
    if metadata.is_dir() {
        return "a directory";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = metadata.file_type();
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    "not a regular file"
}

/// The bytes the layer files of one configuration may still take.
#[derive(Debug, Clone)]
pub struct SizeBudget {
    left: u64,
}

impl SizeBudget {
    pub fn new() -> Self {
        SizeBudget {
            left: MAX_TOTAL_BYTES,
        }
    }

    /// Take `bytes`; false (and nothing taken) when they do not fit.
    pub fn take(&mut self, bytes: u64) -> bool {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }

    /// The most one file may still be: the per-file limit or what is left.
    pub fn file_limit(&self, per_file: u64) -> u64 {
        per_file.min(self.left)
    }
}

impl Default for SizeBudget {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_read_up_to_their_limit_and_only_if_regular() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.yaml");
        std::fs::write(&path, "x: 1\n").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"x: 1\n");
        assert!(matches!(
            read_bounded(&path, 4),
            Err(ReadError::TooLarge(4))
        ));
        assert!(matches!(
            read_bounded(dir.path(), 100),
            Err(ReadError::NotAFile("a directory"))
        ));
        #[cfg(unix)]
        {
            // A link to a device that never ends is refused, not read.
            let link = dir.path().join("zero.yaml");
            std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
            assert!(matches!(
                read_bounded(&link, 100),
                Err(ReadError::NotAFile("a device"))
            ));
        }
        assert_eq!(size(MAX_FILE_BYTES), "1 MiB");
        assert_eq!(size(MAX_TOTAL_BYTES), "16 MiB");
    }
}
