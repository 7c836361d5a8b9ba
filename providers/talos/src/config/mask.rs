//! Plan-readable renderings: the machine config with every secret value replaced by a
//! marker, so the engine can diff two renderings without showing (or storing in a plan)
//! any secret. The marker carries a short SHA-256 fingerprint, so a changed secret still
//! shows as a changed line; the secrets masked here are high-entropy keys and tokens,
//! for which eight hex digits of a hash reveal nothing usable.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::to_yaml;
use crate::error::Result;

/// Map keys whose values are secret in Talos documents (and in common user patches:
/// registry credentials, WireGuard keys).
///
/// A change here reaches a recorded masked copy only when its config next changes: the
/// plan keeps the recorded copy of a config whose digest is unchanged (the provider's
/// `plan_machine_config`). A fix that masks more must also make that plan mask again
/// (e.g. for records written before it), or old copies keep what it now masks.
const SECRET_KEYS: &[&str] = &[
    "key",
    "token",
    "secret",
    "privateKey",
    "clusterSecret",
    "secretboxEncryptionSecret",
    "aescbcEncryptionSecret",
    "password",
    "auth",
    "identityToken",
    "bootstraptoken",
];

fn marker(value: &Value) -> Value {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let digest = Sha256::digest(text.as_bytes());
    Value::String(format!("(sensitive {})", &hex::encode(digest)[..8]))
}

/// A copy of `document` with secret values masked.
pub fn mask_secrets(document: &Value) -> Value {
    match document {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let secret = SECRET_KEYS.contains(&key.as_str())
                        && !value.is_null()
                        && value.as_str() != Some("");
                    let masked = if secret {
                        marker(value)
                    } else {
                        mask_secrets(value)
                    };
                    (key.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_secrets).collect()),
        other => other.clone(),
    }
}

/// The multi-document YAML of `documents` with secrets masked.
pub fn masked_yaml(documents: &[Value]) -> Result<String> {
    let masked: Vec<Value> = documents.iter().map(mask_secrets).collect();
    to_yaml(&masked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_with_a_fingerprint_and_other_values_kept() {
        let document = json!({
            "machine": {"token": "abcdef.0123456789abcdef", "ca": {"crt": "CRT", "key": "KEY"}, "type": "worker"},
            "cluster": {"ca": {"crt": "CRT", "key": ""}},
        });
        let masked = mask_secrets(&document);
        assert_eq!(masked["machine"]["type"], "worker");
        assert_eq!(masked["machine"]["ca"]["crt"], "CRT");
        assert_eq!(masked["cluster"]["ca"]["key"], "");
        let token = masked["machine"]["token"].as_str().unwrap();
        assert!(token.starts_with("(sensitive ") && !token.contains("abcdef."));
        let other = mask_secrets(&json!({"machine": {"token": "zzzzzz.0123456789abcdef"}}));
        assert_ne!(other["machine"]["token"], masked["machine"]["token"]);
    }
}
