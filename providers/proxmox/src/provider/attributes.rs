//! Reading typed inputs out of attribute maps, with diagnostics that name the attribute.

use infraflux_provider::{Attributes, Diagnostic, ErrorKind, ProviderError, Severity, is_unknown};
use serde_json::Value;

/// Problems found while reading inputs, collected rather than stopping at the first.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Diagnostic>);

impl Problems {
    pub fn add(&mut self, attribute: &str, summary: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Diagnostic {
            severity: Severity::Error,
            attribute: Some(attribute.to_string()),
            summary: summary.into(),
            detail: Some(detail.into()),
        });
    }

    pub fn into_error(self, operation: &str, address: &str) -> ProviderError {
        let text = self
            .0
            .iter()
            .map(|d| {
                let mut line =
                    format!("`{}`: {}", d.attribute.as_deref().unwrap_or("?"), d.summary);
                if let Some(detail) = &d.detail {
                    line.push_str(&format!(" ({detail})"));
                }
                line
            })
            .collect::<Vec<_>>()
            .join("; ");
        ProviderError::new(ErrorKind::InvalidInput, operation, address, text)
    }
}

/// A view over attributes that records what is missing or mistyped. Unknown values
/// are skipped silently when `allow_unknown` (validation before the engine resolved
/// references) and reported otherwise.
pub struct Reader<'a> {
    pub attributes: &'a Attributes,
    pub problems: Problems,
    pub allow_unknown: bool,
}

impl<'a> Reader<'a> {
    pub fn new(attributes: &'a Attributes, allow_unknown: bool) -> Self {
        Reader {
            attributes,
            problems: Problems::default(),
            allow_unknown,
        }
    }

    fn value(&mut self, name: &str, required: bool) -> Option<&'a Value> {
        match self.attributes.get(name) {
            Some(value) if is_unknown(value) => {
                if !self.allow_unknown {
                    self.problems.add(
                        name,
                        "value not known",
                        "the provider needs every input resolved before it acts",
                    );
                }
                None
            }
            Some(Value::Null) | None => {
                if required {
                    self.problems.add(name, "missing", format!("set `{name}`"));
                }
                None
            }
            Some(value) => Some(value),
        }
    }

    pub fn string(&mut self, name: &str) -> Option<String> {
        self.string_opt(name, true)
    }

    pub fn string_opt(&mut self, name: &str, required: bool) -> Option<String> {
        match self.value(name, required)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::String(_) => {
                self.problems.add(name, "empty", format!("set `{name}`"));
                None
            }
            other => {
                self.problems
                    .add(name, "expected a string", format!("got `{other}`"));
                None
            }
        }
    }

    pub fn integer(&mut self, name: &str, minimum: u64, maximum: u64) -> Option<u64> {
        self.integer_opt(name, minimum, maximum, true)
    }

    pub fn integer_opt(
        &mut self,
        name: &str,
        minimum: u64,
        maximum: u64,
        required: bool,
    ) -> Option<u64> {
        let value = self.value(name, required)?;
        match value.as_u64() {
            Some(n) if (minimum..=maximum).contains(&n) => Some(n),
            Some(n) => {
                self.problems.add(
                    name,
                    format!("{n} is out of range"),
                    format!("use a value from {minimum} to {maximum}"),
                );
                None
            }
            None => {
                self.problems
                    .add(name, "expected a whole number", format!("got `{value}`"));
                None
            }
        }
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        let value = self.value(name, true)?;
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.problems
                    .add(name, "expected true or false", format!("got `{other}`"));
                None
            }
        }
    }

    pub fn strings(&mut self, name: &str) -> Option<Vec<String>> {
        let value = self.value(name, false)?;
        match value {
            Value::Array(items) if items.iter().all(Value::is_string) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            ),
            other => {
                self.problems
                    .add(name, "expected a list of strings", format!("got `{other}`"));
                None
            }
        }
    }
}

/// An attribute as a string, when it is one.
pub fn text<'a>(attributes: &'a Attributes, name: &str) -> Option<&'a str> {
    attributes.get(name).and_then(Value::as_str)
}

pub fn number(attributes: &Attributes, name: &str) -> Option<u64> {
    attributes.get(name).and_then(Value::as_u64)
}
