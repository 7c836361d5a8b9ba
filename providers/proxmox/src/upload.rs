//! The SSH fallback for images (`proxmox.image_upload.method: ssh`): for PVE older than
//! 8.4 (no `download-url` with `content=import`) and for air-gapped clusters that cannot
//! reach the Image Factory.
//!
//! One upload: connect, check the node's host key against a known_hosts file or a pinned
//! fingerprint (an unknown key is refused, never trusted on first use), log in with a
//! private key, write the image over SFTP to a hidden temporary name in the storage's
//! import directory while hashing it, have the node compute the SHA-256 of what it
//! received, and only when both agree rename it to its final name. Any failure on the
//! way removes the temporary file, so the final name only ever holds a complete, checked
//! image (PVE lists every file in the import directory as a volume).
//!
//! libssh2 is blocking: [`upload`] runs the whole exchange on tokio's blocking pool.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use ssh2::{CheckResult, HashType, KnownHostFileKind, OpenFlags, OpenType, Session};

/// How the node's host key is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// An OpenSSH `known_hosts` file that lists the node (by the name or address
    /// connected to; `[host]:port` for a port other than 22).
    KnownHosts(PathBuf),
    /// The key's SHA-256 fingerprint as `ssh-keygen -l` prints it: `SHA256:<base64>`.
    Fingerprint(String),
}

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// An unencrypted private key (OpenSSH or PEM format).
    pub private_key_file: PathBuf,
    pub host_key: HostKeyCheck,
    /// For connecting and for each read or write on the connection.
    pub timeout: Duration,
}

/// What to upload.
pub struct Upload {
    /// The image's bytes.
    pub source: Box<dyn Read + Send>,
    /// Directory on the node, e.g. `/var/lib/vz/import`.
    pub directory: String,
    /// Final file name, e.g. `talos-v1.13.9-ce4c9805-nocloud-amd64.raw`.
    pub filename: String,
    /// Lower-case hex SHA-256 the image must have, when known in advance.
    pub expected_sha256: Option<String>,
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot connect to {address} over SSH")]
    Connect {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("SSH handshake with {address} failed")]
    Handshake {
        address: String,
        #[source]
        source: ssh2::Error,
    },
    #[error(
        "the host key of {address} ({fingerprint}) is not in {known_hosts}; refusing to trust an unknown key\n  help: check the fingerprint on the node (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then add the key with `ssh-keyscan -p {port} {host} >> {known_hosts}` or pin it as `proxmox.image_upload.host_key_fingerprint`"
    )]
    UnknownHostKey {
        address: String,
        host: String,
        port: u16,
        fingerprint: String,
        known_hosts: String,
    },
    #[error(
        "the host key of {address} ({fingerprint}) does not match {expected}: the node's key changed or this is not the node\n  help: if the node was reinstalled, verify its new fingerprint on the console and update {expected}; otherwise do not connect"
    )]
    HostKeyMismatch {
        address: String,
        fingerprint: String,
        /// Where the expected key comes from (never a secret).
        expected: String,
    },
    #[error("cannot read the known_hosts file {path}")]
    KnownHosts {
        path: String,
        #[source]
        source: ssh2::Error,
    },
    #[error(
        "SSH login as `{user}` on {address} with the key {key_file} failed\n  help: add the public key to ~{user}/.ssh/authorized_keys on the node; the key must not need a passphrase"
    )]
    Authentication {
        user: String,
        address: String,
        key_file: String,
        #[source]
        source: ssh2::Error,
    },
    #[error("reading the image to upload failed after {bytes} bytes")]
    Source {
        bytes: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("SFTP {operation} `{path}` on {address} failed")]
    Sftp {
        operation: &'static str,
        path: String,
        address: String,
        #[source]
        source: SftpCause,
    },
    #[error(
        "the image's SHA-256 is {found}, not the expected {expected}; nothing was kept under `{path}`"
    )]
    Checksum {
        path: String,
        expected: String,
        found: String,
    },
    #[error("`{command}` on {address} failed: {detail}")]
    Remote {
        command: String,
        address: String,
        detail: String,
    },
    #[error("the SSH upload stopped unexpectedly: {0}")]
    Internal(String),
}

/// An SFTP failure: libssh2's, or an I/O error while streaming.
#[derive(Debug, thiserror::Error)]
pub enum SftpCause {
    #[error(transparent)]
    Ssh(#[from] ssh2::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `'text'` for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `SHA256:<base64 without padding>`, as OpenSSH prints fingerprints.
fn fingerprint(session: &Session) -> String {
    session
        .host_key_hash(HashType::Sha256)
        .map(|hash| {
            format!(
                "SHA256:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(hash)
            )
        })
        .unwrap_or_else(|| "no host key".into())
}

/// Upload on the blocking pool; see the module docs.
pub async fn upload(target: SshTarget, upload: Upload) -> Result<Uploaded, UploadError> {
    tokio::task::spawn_blocking(move || upload_blocking(&target, upload))
        .await
        .map_err(|e| UploadError::Internal(e.to_string()))?
}

/// A connected, host-verified, logged-in session.
fn connect(target: &SshTarget) -> Result<Session, UploadError> {
    let address = format!("{}:{}", target.host, target.port);
    let connect_error = |source| UploadError::Connect {
        address: address.clone(),
        source,
    };
    let socket = address
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| {
            connect_error(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name resolves to no address",
            ))
        })?;
    let stream = TcpStream::connect_timeout(&socket, target.timeout).map_err(connect_error)?;
    stream
        .set_read_timeout(Some(target.timeout))
        .and_then(|()| stream.set_write_timeout(Some(target.timeout)))
        .map_err(connect_error)?;
    let mut session = Session::new().map_err(|source| UploadError::Handshake {
        address: address.clone(),
        source,
    })?;
    session.set_timeout(u32::try_from(target.timeout.as_millis()).unwrap_or(u32::MAX));
    session.set_tcp_stream(stream);
    session
        .handshake()
        .map_err(|source| UploadError::Handshake {
            address: address.clone(),
            source,
        })?;
    verify_host_key(&session, target, &address)?;
    session
        .userauth_pubkey_file(&target.user, None, &target.private_key_file, None)
        .map_err(|source| UploadError::Authentication {
            user: target.user.clone(),
            address: address.clone(),
            key_file: target.private_key_file.display().to_string(),
            source,
        })?;
    Ok(session)
}

fn verify_host_key(
    session: &Session,
    target: &SshTarget,
    address: &str,
) -> Result<(), UploadError> {
    let found = fingerprint(session);
    match &target.host_key {
        HostKeyCheck::Fingerprint(expected) => {
            // OpenSSH prints the base64 without padding; accept it either way.
            if expected.trim_end_matches('=') == found {
                Ok(())
            } else {
                Err(UploadError::HostKeyMismatch {
                    address: address.into(),
                    fingerprint: found,
                    expected: format!("the pinned fingerprint {expected}"),
                })
            }
        }
        HostKeyCheck::KnownHosts(path) => {
            let (key, _) = session
                .host_key()
                .ok_or_else(|| UploadError::Internal(format!("{address} presented no host key")))?;
            let mut known = session
                .known_hosts()
                .map_err(|source| UploadError::KnownHosts {
                    path: path.display().to_string(),
                    source,
                })?;
            known
                .read_file(path, KnownHostFileKind::OpenSSH)
                .map_err(|source| UploadError::KnownHosts {
                    path: path.display().to_string(),
                    source,
                })?;
            match known.check_port(&target.host, target.port, key) {
                CheckResult::Match => Ok(()),
                CheckResult::Mismatch => Err(UploadError::HostKeyMismatch {
                    address: address.into(),
                    fingerprint: found,
                    expected: format!("the key listed in {}", path.display()),
                }),
                CheckResult::NotFound | CheckResult::Failure => Err(UploadError::UnknownHostKey {
                    address: address.into(),
                    host: target.host.clone(),
                    port: target.port,
                    fingerprint: found,
                    known_hosts: path.display().to_string(),
                }),
            }
        }
    }
}

/// Run `command` on the node; its standard output, or why it failed.
fn run(session: &Session, command: &str, address: &str) -> Result<String, UploadError> {
    let remote = |detail: String| UploadError::Remote {
        command: command.into(),
        address: address.into(),
        detail,
    };
    let mut channel = session
        .channel_session()
        .map_err(|e| remote(e.to_string()))?;
    channel.exec(command).map_err(|e| remote(e.to_string()))?;
    let mut output = String::new();
    channel
        .read_to_string(&mut output)
        .map_err(|e| remote(e.to_string()))?;
    let mut errors = String::new();
    let _ = channel.stderr().read_to_string(&mut errors);
    channel.wait_close().map_err(|e| remote(e.to_string()))?;
    match channel.exit_status().map_err(|e| remote(e.to_string()))? {
        0 => Ok(output),
        status => Err(remote(format!(
            "exit status {status}: {}",
            errors.trim().chars().take(500).collect::<String>()
        ))),
    }
}

fn upload_blocking(target: &SshTarget, upload: Upload) -> Result<Uploaded, UploadError> {
    let address = format!("{}:{}", target.host, target.port);
    let session = connect(target)?;
    let sftp = session.sftp().map_err(|source| UploadError::Sftp {
        operation: "start",
        path: upload.directory.clone(),
        address: address.clone(),
        source: source.into(),
    })?;
    let directory = upload.directory.trim_end_matches('/');
    let final_path = format!("{directory}/{}", upload.filename);
    // Hidden and unique: PVE does not list dot files as volumes, and two runs never
    // write the same temporary file.
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let temporary = format!(
        "{directory}/.{}.infraflux-{}-{nonce}.part",
        upload.filename,
        std::process::id()
    );
    let sftp_error = |operation: &'static str, path: &str, source: SftpCause| UploadError::Sftp {
        operation,
        path: path.to_string(),
        address: address.clone(),
        source,
    };
    let result = (|| {
        let (bytes, local_sha256) = {
            let mut file = sftp
                .open_mode(
                    Path::new(&temporary),
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE,
                    0o600,
                    OpenType::File,
                )
                .map_err(|e| sftp_error("create", &temporary, e.into()))?;
            let copied = copy_hashing(upload.source, &mut file).map_err(|e| {
                e.into_upload_error(|io| sftp_error("write", &temporary, io.into()))
            })?;
            file.fsync()
                .or_else(|e| {
                    // Not every SFTP server has the fsync extension; close still flushes.
                    if e.code() == ssh2::ErrorCode::SFTP(8) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| sftp_error("sync", &temporary, e.into()))?;
            copied
        };
        if let Some(expected) = &upload.expected_sha256
            && *expected != local_sha256
        {
            return Err(UploadError::Checksum {
                path: final_path.clone(),
                expected: expected.clone(),
                found: local_sha256,
            });
        }
        // What the node stored, hashed by the node.
        let command = format!("sha256sum -- {}", shell_quote(&temporary));
        let output = run(&session, &command, &address)?;
        let remote_sha256 = output.split_whitespace().next().unwrap_or_default();
        if remote_sha256 != local_sha256 {
            return Err(UploadError::Checksum {
                path: final_path.clone(),
                expected: local_sha256,
                found: remote_sha256.to_string(),
            });
        }
        sftp.rename(
            Path::new(&temporary),
            Path::new(&final_path),
            Some(
                ssh2::RenameFlags::OVERWRITE
                    | ssh2::RenameFlags::ATOMIC
                    | ssh2::RenameFlags::NATIVE,
            ),
        )
        .map_err(|e| sftp_error("rename", &temporary, e.into()))?;
        Ok(Uploaded {
            path: final_path.clone(),
            bytes,
            sha256: local_sha256,
        })
    })();
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        if sftp.unlink(Path::new(&temporary)).is_err() {
            tracing::warn!(%address, path = %temporary, "could not remove the partial upload");
        }
    }
    result
}

/// Why a copy stopped: the source or the destination.
enum CopyError {
    Source { bytes: u64, source: std::io::Error },
    Destination(std::io::Error),
}

impl CopyError {
    fn into_upload_error(
        self,
        destination: impl FnOnce(std::io::Error) -> UploadError,
    ) -> UploadError {
        match self {
            CopyError::Source { bytes, source } => UploadError::Source { bytes, source },
            CopyError::Destination(e) => destination(e),
        }
    }
}

/// Copy everything, returning the byte count and lower-case hex SHA-256.
fn copy_hashing(
    mut source: impl Read,
    destination: &mut impl Write,
) -> Result<(u64, String), CopyError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    loop {
        let read = match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(CopyError::Source { bytes, source }),
        };
        hasher.update(&buffer[..read]);
        destination
            .write_all(&buffer[..read])
            .map_err(CopyError::Destination)?;
        bytes += read as u64;
    }
    destination.flush().map_err(CopyError::Destination)?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// The SHA-256 (lower-case hex) of a local file, on the blocking pool.
pub async fn sha256_file(path: PathBuf) -> std::io::Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut file, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_quotes() {
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
    }

    #[test]
    fn copying_hashes_what_it_writes() {
        let mut out = Vec::new();
        let (bytes, sha) = match copy_hashing(&b"abc"[..], &mut out) {
            Ok(done) => done,
            Err(_) => panic!("copy failed"),
        };
        assert_eq!(bytes, 3);
        assert_eq!(out, b"abc");
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
