//! Provider errors: what failed (operation, resource), how to classify it (retry or
//! not), and for HTTP APIs the request that failed — never with secrets in it.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object does not exist.
    NotFound,
    /// Worth retrying: a lock, a timeout, an unreachable node, a reset connection.
    Transient,
    /// Authentication or authorization failed.
    Permission,
    /// The request was rejected as invalid; retrying will not help.
    InvalidInput,
    /// The object exists already, or changed underneath us.
    Conflict,
    /// The operation was cancelled (e.g. Ctrl-C).
    Cancelled,
    Other,
}

impl ErrorKind {
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient)
    }
}

/// The HTTP exchange behind an error. The URL carries no credentials and the body is
/// truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpContext {
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// `create`, `read`, `plan`… or a provider-specific step (`wait for task`).
    pub operation: String,
    pub address: String,
    pub message: String,
    pub http: Option<HttpContext>,
    /// What the user can do about it, when the provider knows better than the engine's
    /// generic advice (shown as the diagnostic's `help:`).
    pub help: Option<String>,
}

impl ProviderError {
    pub fn new(
        kind: ErrorKind,
        operation: impl Into<String>,
        address: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ProviderError {
            kind,
            operation: operation.into(),
            address: address.into(),
            message: message.into(),
            http: None,
            help: None,
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_http(mut self, http: HttpContext) -> Self {
        self.http = Some(http);
        self
    }

    pub const BODY_LIMIT: usize = 512;

    /// Truncate a response body for an error message.
    pub fn truncate_body(body: &str) -> String {
        if body.len() <= Self::BODY_LIMIT {
            return body.to_string();
        }
        let mut end = Self::BODY_LIMIT;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &body[..end], body.len())
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.operation, self.address, self.message)?;
        if let Some(http) = &self.http {
            write!(f, " ({} {}", http.method, http.url)?;
            if let Some(status) = http.status {
                write!(f, " → {status}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_address_and_request() {
        let error = ProviderError::new(
            ErrorKind::Permission,
            "create",
            "dev/w/proxmox_vm.cp-1",
            "permission denied - VM.Allocate",
        )
        .with_http(HttpContext {
            method: "POST".into(),
            url: "https://pve:8006/api2/json/nodes/pve1/qemu".into(),
            status: Some(403),
            body: None,
        });
        assert_eq!(
            error.to_string(),
            "create dev/w/proxmox_vm.cp-1: permission denied - VM.Allocate (POST https://pve:8006/api2/json/nodes/pve1/qemu → 403)"
        );
        assert!(!error.kind.is_retryable());
    }

    #[test]
    fn long_bodies_are_truncated_on_a_char_boundary() {
        let body = "é".repeat(600);
        let truncated = ProviderError::truncate_body(&body);
        assert!(truncated.len() < 600);
        assert!(truncated.ends_with("(1200 bytes)"));
    }
}
