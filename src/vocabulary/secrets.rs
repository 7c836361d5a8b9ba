//! The plaintext secrets of a configuration (values read from age-encrypted files), as a
//! set of strings: to tell whether a value holds one and to mask them in text. The
//! configuration collects them (`config::secrets::SecretValues`, which also knows where
//! they sit); the graph marks attributes holding one sensitive, the plan the attributes
//! a provider copied one into.

use std::collections::BTreeSet;
use std::fmt;

use super::sensitive::MASK;

/// A set of secret strings (never empty ones). Debug prints the count only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretStrings {
    values: BTreeSet<String>,
}

impl fmt::Debug for SecretStrings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (sensitive)", self.values.len())
    }
}

impl SecretStrings {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Remember a plaintext secret (empty strings protect nothing and are skipped).
    pub fn add_value(&mut self, value: &str) {
        if !value.is_empty() {
            self.values.insert(value.to_string());
        }
    }

    /// Add every secret of `other`.
    pub fn extend(&mut self, other: &SecretStrings) {
        self.values.extend(other.values.iter().cloned());
    }

    /// `text` with every secret in it replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        // Longest first: a secret that contains another is masked whole.
        let mut secrets: Vec<&String> = self.values.iter().collect();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for secret in secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), MASK);
            }
        }
        text
    }

    /// Whether `text` holds any secret.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.values
            .iter()
            .any(|secret| text.contains(secret.as_str()))
    }

    /// The secrets that occur in a JSON value.
    pub fn values_in(&self, value: &serde_json::Value) -> Vec<String> {
        let text = value.to_string();
        self.values
            .iter()
            .filter(|secret| {
                // Compare against the JSON text of the secret, escapes included.
                let quoted = serde_json::Value::String((*secret).clone()).to_string();
                text.contains(&quoted[1..quoted.len() - 1])
            })
            .cloned()
            .collect()
    }

    /// Whether any string (or object key) in a JSON value holds a secret.
    pub fn json_contains_secret(&self, value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(text) => self.contains_secret(text),
            serde_json::Value::Array(items) => items.iter().any(|i| self.json_contains_secret(i)),
            serde_json::Value::Object(map) => map
                .iter()
                .any(|(k, v)| self.contains_secret(k) || self.json_contains_secret(v)),
            _ => false,
        }
    }
}
