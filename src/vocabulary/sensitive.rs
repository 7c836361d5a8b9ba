//! A wrapper for secrets: it prints as `(sensitive)` in Debug, Display and serialization,
//! so a secret cannot reach a log line, a plan or an error message by accident. The value
//! is reachable only through [`Sensitive::expose`], which names the intent.

use std::fmt;

/// What every output (plans, state views, `config show`, logs) prints in place of a
/// secret. One constant, so a reader or a grep test looks for one string.
pub const MASK: &str = "(sensitive)";

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    pub fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The secret itself, for the one place that must send it (an auth header, a file
    /// written 0600).
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl<T> serde::Serialize for Sensitive<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(MASK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let token = Sensitive::new("root@pam!ci=abc".to_string());
        assert_eq!(format!("{token} {token:?}"), "(sensitive) (sensitive)");
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"(sensitive)\"");
        assert_eq!(token.expose(), "root@pam!ci=abc");
    }
}
