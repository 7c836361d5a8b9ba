//! Saved plans (`plan --out FILE`, `apply FILE`): the [`Plan`] as JSON, written
//! atomically and readable by its owner only (a plan holds attribute values, secrets
//! among them, as Terraform's plan files do).
//!
//! A saved plan is applied only to the state and configuration it was made from: the
//! same lineage, the same serial, the same configuration digest. Anything else is
//! refused with the reason, because applying it would act on a world the plan did not
//! look at.

use std::path::{Path, PathBuf};

use super::{FORMAT_VERSION, Plan};
use crate::state::StateDocument;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot {action} saved plan `{path}`")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a saved plan: {reason}")]
    Format { path: PathBuf, reason: String },
    /// A plan made only to be shown ([`super::PlanOptions::complete`]), without its
    /// configuration's digest and its no-ops' attributes: saved, it could never be
    /// applied. A bug of the caller, never the user's.
    #[error(
        "cannot save the plan to `{path}`: it was made only to be shown, without its configuration's digest"
    )]
    Incomplete { path: PathBuf },
    #[error(
        "saved plan `{path}` has format version {found}; this InfraFlux reads version {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("the saved plan is for environment `{plan}`, not `{requested}`")]
    Environment { plan: String, requested: String },
    #[error(
        "the saved plan is stale: it was made for another state (lineage {plan}, the state's is {state})"
    )]
    Lineage { plan: uuid::Uuid, state: uuid::Uuid },
    #[error(
        "the saved plan is stale: the state changed since it was made (serial {plan}, now {state})"
    )]
    Serial { plan: u64, state: u64 },
    #[error("the saved plan is stale: the configuration changed since it was made")]
    Configuration,
    #[error("cannot {action} saved plan `{path}`")]
    Encryption {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: crate::encryption::Error,
    },
}

impl Error {
    /// What to do about it.
    pub fn help(&self) -> Option<&'static str> {
        match self {
            Error::Lineage { .. } | Error::Serial { .. } | Error::Configuration => Some(
                "run `infraflux plan --out FILE` again, review the new plan and apply that one",
            ),
            Error::Incomplete { .. } => Some("run `infraflux plan --out FILE` again"),
            Error::Version { .. } | Error::Format { .. } => {
                Some("make the plan again with this version of InfraFlux")
            }
            Error::Environment { .. } => Some("pass the plan's environment with --env"),
            Error::Io { .. } => None,
            Error::Encryption { .. } => Some(
                "a saved plan is encrypted like the state: set the state's key (INFRAFLUX_STATE_IDENTITY_FILE, INFRAFLUX_STATE_IDENTITY or INFRAFLUX_STATE_PASSPHRASE) as for `infraflux state show`",
            ),
        }
    }
}

pub fn save(plan: &Plan, path: &Path) -> Result<(), Error> {
    save_encrypted(plan, path, None)
}

/// [`save`], encrypted with the state's encryption when there is one (a plan holds the
/// same secrets as state), so a plan file is never plaintext where state is not.
pub fn save_encrypted(
    plan: &Plan,
    path: &Path,
    encryption: Option<&crate::encryption::Encryption>,
) -> Result<(), Error> {
    // Saved, it could never be applied (it would show as a changed configuration). A
    // complete plan always has its digest.
    if plan.config_digest.is_empty() {
        return Err(Error::Incomplete {
            path: path.to_path_buf(),
        });
    }
    let io = |action, source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let mut text = serde_json::to_string_pretty(plan)
        .expect("plans serialize")
        .into_bytes();
    if let Some(encryption) = encryption {
        text = encryption
            .encrypt(&text)
            .map_err(|source| Error::Encryption {
                action: "encrypt",
                path: path.to_path_buf(),
                source,
            })?;
    }
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temporary = directory.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("plan")
    ));
    crate::private_file::write(&temporary, &text).map_err(|e| io("write", e))?;
    std::fs::rename(&temporary, path).map_err(|e| io("write", e))
}

pub fn load(path: &Path) -> Result<Plan, Error> {
    load_encrypted(path, None)
}

/// [`load`] a plan that may be encrypted ([`save_encrypted`]).
pub fn load_encrypted(
    path: &Path,
    encryption: Option<&crate::encryption::Encryption>,
) -> Result<Plan, Error> {
    let mut bytes = std::fs::read(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    if crate::encryption::is_encrypted(&bytes) {
        let shown = path.display().to_string();
        bytes = encryption
            .cloned()
            .unwrap_or_default()
            .decrypt(&bytes, &shown)
            .map_err(|source| Error::Encryption {
                action: "decrypt",
                path: path.to_path_buf(),
                source,
            })?;
    }
    let text = String::from_utf8(bytes).map_err(|_| Error::Format {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let found = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| Error::Format {
            path: path.to_path_buf(),
            reason: "no format_version".into(),
        })?;
    if found != u64::from(FORMAT_VERSION) {
        return Err(Error::Version {
            path: path.to_path_buf(),
            found: u32::try_from(found).unwrap_or(u32::MAX),
        });
    }
    serde_json::from_value(value).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Refuse a plan that was not made from `state` and `config_digest`.
pub fn check(plan: &Plan, state: &StateDocument, config_digest: &str) -> Result<(), Error> {
    if plan.environment != state.environment {
        return Err(Error::Environment {
            plan: plan.environment.clone(),
            requested: state.environment.clone(),
        });
    }
    if plan.lineage != state.lineage {
        return Err(Error::Lineage {
            plan: plan.lineage,
            state: state.lineage,
        });
    }
    if plan.serial != state.serial {
        return Err(Error::Serial {
            plan: plan.serial,
            state: state.serial,
        });
    }
    if plan.config_digest != config_digest {
        return Err(Error::Configuration);
    }
    Ok(())
}
