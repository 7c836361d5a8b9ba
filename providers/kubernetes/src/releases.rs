//! The upstream release files a resource installs (ArgoCD's install manifest), as read
//! for one render: [`release_files`] names them without I/O (validation), and
//! [`Releases::load`] reads them from the provider's [`Sources`] (plan, apply, refresh,
//! the ready signal, `--render`).

use std::collections::BTreeMap;

use infraflux_provider::{Attributes, ErrorKind};

use crate::inputs::{InputError, PlatformInputs};
use crate::provider::PLATFORM;
use crate::upstream::{self, Loaded, ReleaseFile, Sources};

/// The upstream release files a resource installs (ArgoCD's install manifest), checked
/// without reading them: a release with no pinned digest is refused here.
pub fn release_files(
    kind: &str,
    attributes: &Attributes,
) -> Result<Vec<&'static ReleaseFile>, InputError> {
    match kind {
        PLATFORM => Ok(PlatformInputs::parse(attributes)?
            .release_file()?
            .into_iter()
            .collect()),
        _ => Ok(Vec::new()),
    }
}

/// Release files as read, by file.
#[derive(Debug, Clone, Default)]
pub struct Releases(BTreeMap<&'static str, Loaded>);

impl Releases {
    pub fn insert(&mut self, file: &'static ReleaseFile, loaded: Loaded) {
        self.0.insert(file.sha256, loaded);
    }

    pub fn get(&self, file: &ReleaseFile) -> Option<&Loaded> {
        self.0.get(file.sha256)
    }

    /// These and `other`'s.
    pub fn extend(&mut self, other: Releases) {
        self.0.extend(other.0);
    }

    /// Read what `kind` with `attributes` installs from `sources`.
    pub async fn load(
        sources: &Sources,
        kind: &str,
        attributes: &Attributes,
    ) -> Result<Releases, LoadError> {
        let mut releases = Releases::default();
        for file in release_files(kind, attributes)? {
            releases.insert(file, sources.load(file).await?);
        }
        Ok(releases)
    }

    /// Whether one of them is simulated, and why.
    pub fn simulated(&self) -> Option<&str> {
        self.0.values().find_map(|loaded| match loaded {
            Loaded::Simulated { reason } => Some(reason.as_str()),
            Loaded::Upstream(_) => None,
        })
    }
}

/// Why a resource's release files could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Upstream(#[from] upstream::Error),
}

impl LoadError {
    pub fn help(&self) -> Option<String> {
        match self {
            LoadError::Input(_) => None,
            LoadError::Upstream(error) => Some(error.help()),
        }
    }

    pub(crate) fn kind(&self) -> ErrorKind {
        match self {
            LoadError::Input(_) | LoadError::Upstream(upstream::Error::NotInMirror { .. }) => {
                ErrorKind::InvalidInput
            }
            LoadError::Upstream(_) => ErrorKind::Other,
        }
    }
}
