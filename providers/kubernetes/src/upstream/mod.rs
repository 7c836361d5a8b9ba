//! Upstream release files: the official manifests InfraFlux installs as they are
//! published, pinned by sha256, never copied into the project.
//!
//! A file is looked for, in this order:
//!
//! 1. the **offline mirror** (`--manifests DIR`, `INFRAFLUX_MANIFESTS`), laid out as
//!    `argo-cd-v3.5.1/install.yaml` and `argo-cd-v3.5.1/ha-install.yaml`. A mirror that is
//!    set is the only source: a file missing there is an error, not a download;
//! 2. the **cache** (`$XDG_CACHE_HOME/infraflux/manifests`, same layout), where every
//!    download is kept. A cached file whose digest is wrong is thrown away and fetched
//!    again (it is InfraFlux's own copy, not the user's);
//! 3. the **network**: the official release URL (or `<base>/argo-cd-v3.5.1/install.yaml`
//!    under `INFRAFLUX_MANIFESTS_URL`, an HTTP server over a mirror directory).
//!
//! Every read is checked against the pinned digest, so a file from any of them is the
//! release byte for byte. A wrong digest from the mirror or the network is an error that
//! names where the file came from, both digests and what to do.
//!
//! When no source has the file, the caller decides: an error that says how to provide it
//! ([`WhenUnavailable::Fail`], everywhere but the lab), or a simulated install
//! ([`WhenUnavailable::Simulate`], the lab only, said loudly): see [`Loaded::Simulated`].

mod download;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// One file of an upstream release, pinned by its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReleaseFile {
    /// The project's name as its release folder starts (`argo-cd`).
    pub project: &'static str,
    /// The release tag (`v3.5.1`).
    pub version: &'static str,
    /// The file's name in a mirror's release folder (`ha-install.yaml`).
    pub name: &'static str,
    /// The official URL of the release file.
    pub url: &'static str,
    /// sha256 of the file, hex.
    pub sha256: &'static str,
}

impl ReleaseFile {
    /// `argo-cd-v3.5.1/install.yaml`: where the file is in a mirror, the cache, and under
    /// a base URL.
    pub fn relative_path(&self) -> String {
        format!("{}-{}/{}", self.project, self.version, self.name)
    }
}

impl fmt::Display for ReleaseFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.project, self.version, self.name)
    }
}

/// ArgoCD's install manifests (`manifests/install.yaml`, and `manifests/ha/install.yaml`
/// for a highly available install), per release InfraFlux supports. The digests are of
/// the files at the release tag.
pub const ARGOCD: &[(ReleaseFile, ReleaseFile)] = &[(
    ReleaseFile {
        project: "argo-cd",
        version: "v3.5.1",
        name: "install.yaml",
        url: "https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml",
        sha256: "795a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3",
    },
    ReleaseFile {
        project: "argo-cd",
        version: "v3.5.1",
        name: "ha-install.yaml",
        url: "https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/ha/install.yaml",
        sha256: "1d7b6baa0769ff8a5757c61e2c677ae0939a15e86e149f64df6b12435db5c4b2",
    },
)];

/// The install manifest of ArgoCD `version` (`v3.5.1` or `3.5.1`), HA or not; `None` for a
/// release InfraFlux has no digest of.
pub fn argocd(version: &str, ha: bool) -> Option<&'static ReleaseFile> {
    let tag = format!("v{}", version.trim_start_matches('v'));
    ARGOCD
        .iter()
        .find(|(install, _)| install.version == tag)
        .map(|(install, ha_install)| if ha { ha_install } else { install })
}

/// The ArgoCD releases InfraFlux has digests of, for messages.
pub fn argocd_versions() -> Vec<&'static str> {
    ARGOCD.iter().map(|(install, _)| install.version).collect()
}

/// What to do when no source has a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenUnavailable {
    /// An error that says how to provide the file.
    #[default]
    Fail,
    /// Install a simulation instead (the lab, whose cluster is simulated too).
    Simulate,
}

/// Where release files come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The offline mirror; when set, the only source.
    pub mirror: Option<PathBuf>,
    /// Where downloads are kept; `None`: not kept.
    pub cache: Option<PathBuf>,
    /// A server laid out like a mirror, instead of the official release URLs.
    pub base_url: Option<String>,
    pub when_unavailable: WhenUnavailable,
}

/// The variable naming the offline mirror.
pub const MIRROR_VAR: &str = "INFRAFLUX_MANIFESTS";
/// The variable naming a server laid out like a mirror.
pub const BASE_URL_VAR: &str = "INFRAFLUX_MANIFESTS_URL";

/// `$XDG_CACHE_HOME/infraflux/manifests`, else `$HOME/.cache/infraflux/manifests` (the XDG
/// default); `None` without either.
pub fn default_cache(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let base = match xdg_cache_home.filter(|dir| !dir.is_empty()) {
        // The XDG specification ignores relative paths.
        Some(dir) if Path::new(&dir).is_absolute() => PathBuf::from(dir),
        _ => PathBuf::from(home.filter(|dir| !dir.is_empty())?).join(".cache"),
    };
    Some(base.join("infraflux").join("manifests"))
}

/// A release file as read: its documents, or a simulation in its place.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// Every document of the file, as Kubernetes reads them.
    Upstream(Arc<Vec<Value>>),
    /// No source had the file and the caller allowed a simulation: the install renders
    /// only InfraFlux's own objects and the (simulated) cluster plays the rest. `reason`
    /// says why the file was not there.
    Simulated { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{file} from {location} has sha256 {found}, but InfraFlux pins {expected}")]
    Digest {
        file: ReleaseFile,
        /// The URL or the path it was read from.
        location: String,
        /// Whether `location` is a mirror file (else a download).
        in_mirror: bool,
        expected: &'static str,
        found: String,
    },
    #[error("{file} is not in the manifest mirror: {} does not exist", path.display())]
    NotInMirror { file: ReleaseFile, path: PathBuf },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} is not available: it is not in the cache{} and downloading {url} failed: {reason}", cache.as_ref().map(|c| format!(" ({})", c.display())).unwrap_or_default())]
    Unavailable {
        file: ReleaseFile,
        url: String,
        cache: Option<PathBuf>,
        reason: String,
    },
    #[error("{file} is not Kubernetes YAML: {reason}")]
    Parse { file: ReleaseFile, reason: String },
}

impl Error {
    /// What to do about it.
    pub fn help(&self) -> String {
        match self {
            Error::Digest {
                file,
                in_mirror: true,
                expected,
                location,
                ..
            } => format!(
                "replace {location} with the official file {} (its sha256 is {expected}), or leave --manifests unset to download it",
                file.url
            ),
            Error::Digest { file, expected, .. } => format!(
                "the file served is not the release InfraFlux pins (a proxy rewriting it, or a moved tag): on a trusted machine, download {} and check that its sha256 is {expected}, then pass a folder holding it as {} with --manifests DIR (or {MIRROR_VAR})",
                file.url,
                file.relative_path()
            ),
            Error::NotInMirror { file, .. } => format!(
                "put the official {} (sha256 {}) in the mirror as {}, or leave --manifests unset to download it",
                file.url,
                file.sha256,
                file.relative_path()
            ),
            Error::Read { .. } => "check the file's permissions".into(),
            Error::Unavailable { file, .. } => format!(
                "allow HTTPS to {} once (the file is then cached), or pass an offline mirror with --manifests DIR (or {MIRROR_VAR}) holding {} (sha256 {})",
                host(file.url),
                file.relative_path(),
                file.sha256
            ),
            Error::Parse { .. } => {
                "the file matched its digest, so this is a bug in InfraFlux's YAML reader: please report it".into()
            }
        }
    }
}

fn host(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or(url)
}

/// sha256 of `bytes`, hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Documents by the digest of the file they were parsed from.
type Parsed = HashMap<&'static str, Arc<Vec<Value>>>;

/// Parsed files by digest: a 2 MB manifest is read on every render, parsed once.
fn parsed() -> &'static Mutex<Parsed> {
    static PARSED: OnceLock<Mutex<Parsed>> = OnceLock::new();
    PARSED.get_or_init(Default::default)
}

/// One per release file (`Sources::load`): its lock, held while the file is read,
/// checked and parsed, so a slow download of one never holds up another; and the last
/// download of it that failed, which the callers that waited for it share.
#[derive(Default)]
struct FileLoad {
    /// Downloads that failed so far.
    failures: AtomicU64,
    /// The lock, and the last failed download: its number among the failures, its URL
    /// and why.
    failed: tokio::sync::Mutex<Option<(u64, String, String)>>,
}

fn loading(file: &ReleaseFile) -> Arc<FileLoad> {
    type Loads = HashMap<&'static str, Arc<FileLoad>>;
    static LOADING: OnceLock<Mutex<Loads>> = OnceLock::new();
    LOADING
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(file.sha256)
        .or_default()
        .clone()
}

/// A file as it was when its digest was checked: path, length and modification time.
type Stamp = (PathBuf, u64, std::time::SystemTime);

/// Mirror and cache files whose digest this process checked, with the digest they
/// matched: a plan of 3,000 clusters asks for ArgoCD's 2 MB manifest 3,000 times, and
/// reading and hashing it each time cost seconds. A file changed since (another length or
/// modification time) is read and checked again.
fn verified() -> &'static Mutex<HashMap<Stamp, &'static str>> {
    static VERIFIED: OnceLock<Mutex<HashMap<Stamp, &'static str>>> = OnceLock::new();
    VERIFIED.get_or_init(Default::default)
}

/// `path`'s stamp, when it is a file whose metadata can be read. Read here, not on the
/// runtime's blocking threads: it is one `stat` of a local file, asked for each resource
/// a plan renders, and the trip to another thread and back cost more than the call.
fn stamp(path: &Path) -> Option<Stamp> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((
        path.to_path_buf(),
        metadata.len(),
        metadata.modified().ok()?,
    ))
}

/// The documents of `file` when `stamp` is a file already checked against its digest
/// and parsed in this process.
fn already_verified(file: &ReleaseFile, stamp: &Option<Stamp>) -> Option<Arc<Vec<Value>>> {
    let stamp = stamp.as_ref()?;
    let matched = *verified()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(stamp)?;
    if matched != file.sha256 {
        return None;
    }
    parsed()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(file.sha256)
        .cloned()
}

fn remember_verified(file: &ReleaseFile, stamp: Option<Stamp>) {
    if let Some(stamp) = stamp {
        verified()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stamp, file.sha256);
    }
}

/// Downloads that failed in this process, by URL, with why (only where a simulation
/// stands in: elsewhere the failure ends the run).
fn unreachable() -> &'static Mutex<HashMap<String, String>> {
    static UNREACHABLE: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    UNREACHABLE.get_or_init(Default::default)
}

/// The documents of `bytes`, which have `file`'s digest.
fn documents(file: &ReleaseFile, bytes: &[u8]) -> Result<Arc<Vec<Value>>, Error> {
    if let Some(documents) = parsed()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(file.sha256)
    {
        return Ok(documents.clone());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Parse {
        file: *file,
        reason: e.to_string(),
    })?;
    let documents =
        crate::render::kubernetes_yaml::documents(text).map_err(|reason| Error::Parse {
            file: *file,
            reason,
        })?;
    let documents = Arc::new(documents);
    parsed()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(file.sha256, documents.clone());
    Ok(documents)
}

impl Sources {
    /// What the process's environment names: the mirror ([`MIRROR_VAR`]), a server laid
    /// out like one ([`BASE_URL_VAR`]) and the XDG cache; a simulation never.
    pub fn from_environment() -> Sources {
        let var = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        Sources {
            mirror: var(MIRROR_VAR).map(PathBuf::from),
            cache: default_cache(var("XDG_CACHE_HOME"), var("HOME")),
            base_url: var(BASE_URL_VAR).and_then(|url| url.into_string().ok()),
            when_unavailable: WhenUnavailable::Fail,
        }
    }

    /// The documents of `file` when it is where this process checked and parsed it
    /// before, unchanged since.
    fn already_loaded(&self, file: &ReleaseFile) -> Option<Arc<Vec<Value>>> {
        let path = match &self.mirror {
            Some(mirror) => mirror.join(file.relative_path()),
            None => self.cache.as_ref()?.join(file.relative_path()),
        };
        already_verified(file, &stamp(&path))
    }

    /// The URL `file` is downloaded from.
    pub fn url(&self, file: &ReleaseFile) -> String {
        match &self.base_url {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), file.relative_path()),
            None => file.url.to_string(),
        }
    }

    /// Read `file` from the mirror, the cache or the network, checked against its
    /// digest.
    pub async fn load(&self, file: &ReleaseFile) -> Result<Loaded, Error> {
        if let Some(documents) = self.already_loaded(file) {
            return Ok(Loaded::Upstream(documents));
        }
        // A file is read, checked and parsed by one caller at a time: a plan on several
        // threads asks for the same files at once, and each thread read, hashed and
        // parsed a copy of its own (ArgoCD's manifest is 2 MB of YAML).
        let load = loading(file);
        let failed_before = load.failures.load(Ordering::SeqCst);
        let mut failed = load.failed.lock().await;
        // Another caller may have loaded it while this one waited.
        if let Some(documents) = self.already_loaded(file) {
            return Ok(Loaded::Upstream(documents));
        }
        if let Some(mirror) = &self.mirror {
            let path = mirror.join(file.relative_path());
            let stamp = stamp(&path);
            let bytes = match tokio::fs::read(&path).await {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::NotInMirror { file: *file, path });
                }
                Err(source) => return Err(Error::Read { path, source }),
            };
            check(file, &bytes, path.display().to_string(), true)?;
            let documents = documents(file, &bytes)?;
            remember_verified(file, stamp);
            return Ok(Loaded::Upstream(documents));
        }
        let cached = self.cache.as_ref().map(|c| c.join(file.relative_path()));
        let cached_stamp = match &cached {
            Some(path) => stamp(path),
            None => None,
        };
        if let Some(path) = &cached
            && let Ok(bytes) = tokio::fs::read(path).await
        {
            if sha256(&bytes) == file.sha256 {
                let documents = documents(file, &bytes)?;
                remember_verified(file, cached_stamp);
                return Ok(Loaded::Upstream(documents));
            }
            tracing::warn!(
                path = %path.display(),
                "the cached {file} does not match its sha256 {}; downloading it again",
                file.sha256
            );
            let _ = tokio::fs::remove_file(path).await;
        }
        let url = self.url(file);
        if self.when_unavailable == WhenUnavailable::Simulate
            && let Some(reason) = unreachable()
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&url)
        {
            // Tried once in this process already: a network that drops packets would
            // otherwise cost its timeout on every render.
            return Ok(Loaded::Simulated {
                reason: reason.clone(),
            });
        }
        // A download of the same URL that failed while this caller waited is its
        // answer too: callers that asked at once share one attempt (each may wait
        // minutes). One that failed before it asked is tried again.
        if self.when_unavailable == WhenUnavailable::Fail
            && let Some((failure, tried, reason)) = failed.as_ref()
            && *failure > failed_before
            && *tried == url
        {
            return Err(Error::Unavailable {
                file: *file,
                url,
                cache: self.cache.clone(),
                reason: reason.clone(),
            });
        }
        let bytes = match download::get(&url).await {
            Ok(bytes) => bytes,
            Err(reason) => {
                return match self.when_unavailable {
                    WhenUnavailable::Fail => {
                        let failure = load.failures.fetch_add(1, Ordering::SeqCst) + 1;
                        *failed = Some((failure, url.clone(), reason.clone()));
                        Err(Error::Unavailable {
                            file: *file,
                            url,
                            cache: self.cache.clone(),
                            reason,
                        })
                    }
                    WhenUnavailable::Simulate => {
                        let reason = format!(
                            "{file} is in no mirror, not in the cache, and downloading {url} failed: {reason}"
                        );
                        unreachable()
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(url, reason.clone());
                        Ok(Loaded::Simulated { reason })
                    }
                };
            }
        };
        check(file, &bytes, url, false)?;
        if let Some(path) = &cached
            && let Err(error) = store(path, &bytes).await
        {
            tracing::warn!(path = %path.display(), "cannot cache {file}: {error}");
        }
        Ok(Loaded::Upstream(documents(file, &bytes)?))
    }
}

fn check(file: &ReleaseFile, bytes: &[u8], location: String, in_mirror: bool) -> Result<(), Error> {
    let found = sha256(bytes);
    if found == file.sha256 {
        Ok(())
    } else {
        Err(Error::Digest {
            file: *file,
            location,
            in_mirror,
            expected: file.sha256,
            found,
        })
    }
}

/// Write `bytes` to `path` whole or not at all: a temporary file beside it, renamed (two
/// runs downloading at once each rename a complete file).
async fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(dir).await?;
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let temporary = dir.join(format!(
        ".{}.{}-{}.partial",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id(),
        WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    tokio::fs::write(&temporary, bytes).await?;
    tokio::fs::rename(&temporary, path).await
}

// For the workspace's tests (this crate's and its integration tests): where the release
// files beside the workspace are. Not part of the provider's behaviour.
#[doc(hidden)]
pub mod testing;
#[cfg(test)]
mod tests;
