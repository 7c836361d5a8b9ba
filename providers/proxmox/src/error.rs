//! Errors of the PVE API, classified into the contract's [`ErrorKind`]s.
//!
//! PVE reports most failures as HTTP 500 with a message, so the message decides:
//! - a missing VM or volume is `500 … does not exist` → [`ErrorKind::NotFound`];
//! - `VM is locked (backup)` and `can't lock file '…' - got timeout` → Transient: a
//!   backup, a migration or a concurrent task holds the lock and will let go;
//! - `400 Parameter verification failed.` with an `errors` map → InvalidInput, shown
//!   field by field;
//! - 401 → Permission (credentials), 403 → Permission with the missing privilege;
//! - 595/596 (the node the request was proxied to is unreachable), 502–504, time-outs
//!   and reset connections → Transient.
//!
//! Messages carry the method and the URL path (never credentials: they travel in
//! headers only) and PVE's own words.

use std::collections::BTreeMap;
use std::fmt;

use infraflux_provider::{ErrorKind, HttpContext, ProviderError};

/// A failed PVE API call (or a failed task, see [`crate::task`]).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub method: String,
    /// Full URL with query; it never holds secrets.
    pub url: String,
    /// `None` when no HTTP answer arrived (connect error, time-out, reset).
    pub status: Option<u16>,
    /// PVE's message (or the transport's), trimmed.
    pub message: String,
    /// PVE's per-parameter errors of a 400.
    pub field_errors: BTreeMap<String, String>,
    /// A truncated body, for the error's HTTP context. `None` for bodies that may hold
    /// secrets (the ticket endpoint).
    pub body: Option<String>,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl ApiError {
    /// An error from an HTTP answer.
    pub fn from_response(
        method: &str,
        url: &str,
        status: u16,
        reason: &str,
        body: &str,
        keep_body: bool,
    ) -> Self {
        let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let mut message = parsed
            .as_ref()
            .and_then(|v| v.get("message"))
            .and_then(|m| m.as_str())
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| reason.trim().to_string());
        if message.is_empty() {
            message = format!("HTTP {status}");
        }
        let field_errors: BTreeMap<String, String> = parsed
            .as_ref()
            .and_then(|v| v.get("errors"))
            .and_then(|e| e.as_object())
            .map(|map| {
                map.iter()
                    .map(|(k, v)| {
                        let text = v
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string());
                        (k.clone(), text.trim().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let kind = classify(Some(status), &message);
        let hint = hint(Some(status), &message);
        ApiError {
            kind,
            method: method.to_string(),
            url: url.to_string(),
            status: Some(status),
            message,
            field_errors,
            body: keep_body.then(|| ProviderError::truncate_body(body)),
            hint,
        }
    }

    /// An error without an HTTP answer (transport) or with an unusable one.
    pub fn other(kind: ErrorKind, method: &str, url: &str, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            method: method.to_string(),
            url: url.to_string(),
            status: None,
            message: message.into(),
            field_errors: BTreeMap::new(),
            body: None,
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// The message with per-field errors and the hint: what the user reads.
    pub fn detail(&self) -> String {
        let mut text = self.message.clone();
        for (field, problem) in &self.field_errors {
            text.push_str(&format!("\n  - {field}: {problem}"));
        }
        if let Some(hint) = &self.hint {
            text.push_str(&format!("\n  help: {hint}"));
        }
        text
    }

    pub fn http_context(&self) -> HttpContext {
        HttpContext {
            method: self.method.clone(),
            url: self.url.clone(),
            status: self.status,
            body: self.body.clone(),
        }
    }

    /// The contract's error for `operation` on the resource at `address`.
    pub fn into_provider(self, operation: &str, address: &str) -> ProviderError {
        let http = (!self.method.is_empty()).then(|| self.http_context());
        let error = ProviderError::new(self.kind, operation, address, self.detail());
        match http {
            Some(http) => error.with_http(http),
            None => error,
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {}", self.detail(), self.method, self.url)?;
        if let Some(status) = self.status {
            write!(f, " → {status}")?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ApiError {}

/// The kind of a PVE error, from the status and PVE's message.
pub fn classify(status: Option<u16>, message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    match status {
        None => ErrorKind::Transient,
        Some(401 | 403) => ErrorKind::Permission,
        Some(400) if lower.contains("already exists") => ErrorKind::Conflict,
        Some(400) => ErrorKind::InvalidInput,
        Some(408 | 429 | 502 | 503 | 504 | 595 | 596) => ErrorKind::Transient,
        Some(501) => ErrorKind::Other,
        Some(_) => classify_message(&lower),
    }
}

/// The kind of a PVE error message (of a 500, or of a task's exit status).
pub fn classify_message(message: &str) -> ErrorKind {
    let lower = message.to_ascii_lowercase();
    if (lower.contains("can't lock file") || lower.contains("cannot lock file"))
        && lower.contains("timeout")
        || lower.contains("vm is locked")
        || lower.contains("ct is locked")
        || lower.contains("no quorum")
        || lower.contains("got timeout")
        || lower.contains("connection timed out")
        || lower.contains("no route to host")
    {
        ErrorKind::Transient
    } else if lower.contains("already exists") || lower.contains("file changed by other user") {
        ErrorKind::Conflict
    } else if lower.contains("does not exist") || lower.contains("no such") {
        ErrorKind::NotFound
    } else if lower.contains("permission check failed") || lower.contains("permission denied") {
        ErrorKind::Permission
    } else if lower.contains("parameter verification failed")
        || lower.contains("is not configured for content-type")
        || lower.contains("does not support")
        || lower.contains("shrinking disks is not supported")
    {
        ErrorKind::InvalidInput
    } else {
        ErrorKind::Other
    }
}

/// `Permission check failed (/vms/100, VM.Allocate)` → (`/vms/100`, `VM.Allocate`).
pub fn missing_privilege(message: &str) -> Option<(String, String)> {
    let start = message.find("Permission check failed (")? + "Permission check failed (".len();
    let inner = &message[start..];
    let inner = &inner[..inner.find(')')?];
    let (path, privilege) = inner.split_once(',')?;
    let (path, privilege) = (path.trim(), privilege.trim());
    (path.starts_with('/') && !privilege.is_empty())
        .then(|| (path.to_string(), privilege.to_string()))
}

fn hint(status: Option<u16>, message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    match status {
        Some(401) => Some(
            "check the API token (USER@REALM!TOKENID=SECRET) or the user and password; a token must exist and not be expired".into(),
        ),
        Some(403) => Some(match missing_privilege(message) {
            Some((path, privilege)) => format!(
                "the API user lacks the privilege `{privilege}` on `{path}`: grant a role that has it (Datacenter → Permissions, or `pveum acl modify {path} --roles <role> --tokens <USER@REALM!TOKENID>`); a token with privilege separation needs its own ACL"
            ),
            None => "the API user lacks a privilege for this call: grant it under Datacenter → Permissions".into(),
        }),
        Some(595 | 596) => Some(
            "the node the request was proxied to is unreachable (offline, or cluster network trouble); retry when it is back".into(),
        ),
        _ if lower.contains("vm is locked") => Some(
            "another operation (backup, migration, snapshot) holds the VM; retry when it has finished, or clear a stale lock with `qm unlock <vmid>`".into(),
        ),
        _ if lower.contains("can't lock file") => Some(
            "a concurrent task holds the lock; InfraFlux runs one create/delete per node and storage, so another client is busy there — retry".into(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: u16, body: &str) -> ApiError {
        ApiError::from_response(
            "GET",
            "https://pve:8006/api2/json/nodes/pve1/qemu/100/config",
            status,
            "",
            body,
            true,
        )
    }

    #[test]
    fn a_missing_vm_is_not_found() {
        let e = error(
            500,
            r#"{"data":null,"message":"Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist\n"}"#,
        );
        assert_eq!(e.kind, ErrorKind::NotFound);
        assert_eq!(
            e.message,
            "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"
        );
    }

    #[test]
    fn locks_quorum_and_unreachable_nodes_are_transient() {
        for message in [
            "VM is locked (backup)",
            "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
            "cluster not ready - no quorum?",
        ] {
            let body = serde_json::json!({ "data": null, "message": message }).to_string();
            assert_eq!(error(500, &body).kind, ErrorKind::Transient, "{message}");
        }
        assert_eq!(error(595, "").kind, ErrorKind::Transient);
        assert_eq!(error(596, "").kind, ErrorKind::Transient);
        let locked = error(500, r#"{"message":"VM is locked (backup)\n"}"#);
        assert!(locked.detail().contains("qm unlock"));
    }

    #[test]
    fn parameter_errors_are_listed_field_by_field() {
        let e = error(
            400,
            r#"{"data":null,"message":"Parameter verification failed.\n","errors":{"cores":"type check ('integer') failed - got 'banana'\n","memory":"value must have a minimum value of 16"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(
            e.detail(),
            "Parameter verification failed.\n  - cores: type check ('integer') failed - got 'banana'\n  - memory: value must have a minimum value of 16"
        );
    }

    #[test]
    fn permission_errors_name_the_missing_privilege() {
        let e = error(
            403,
            r#"{"data":null,"message":"Permission check failed (/vms/100, VM.Allocate)\n"}"#,
        );
        assert_eq!(e.kind, ErrorKind::Permission);
        assert!(
            e.detail().contains("`VM.Allocate` on `/vms/100`"),
            "{}",
            e.detail()
        );
        assert_eq!(error(401, "").kind, ErrorKind::Permission);
        assert_eq!(
            missing_privilege("Permission check failed (something)"),
            None
        );
    }

    #[test]
    fn conflicts_and_others() {
        assert_eq!(
            classify_message("unable to create VM 100 - VM 100 already exists on node 'pve1'"),
            ErrorKind::Conflict
        );
        assert_eq!(classify_message("something broke"), ErrorKind::Other);
        assert_eq!(
            classify(Some(501), "Method not implemented"),
            ErrorKind::Other
        );
        assert_eq!(classify(None, "connection reset"), ErrorKind::Transient);
    }

    #[test]
    fn provider_errors_keep_the_request_and_drop_nothing_the_user_needs() {
        let e = error(500, r#"{"message":"VM 100 not running\n"}"#);
        let p = e.into_provider("update", "dev/w/proxmox_vm.cp-1");
        assert_eq!(p.http.as_ref().unwrap().status, Some(500));
        assert!(
            p.to_string()
                .starts_with("update dev/w/proxmox_vm.cp-1: VM 100 not running")
        );
    }
}
