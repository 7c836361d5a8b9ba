//! Checking a request's parameters the way PVE does: every parameter must be in the
//! endpoint's schema ([`super::schema`]), required ones must be there, and values must
//! pass their type check. Problems come back as PVE's 400 `Parameter verification
//! failed.` with one message per field, in PVE's wording.

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ParamType {
    fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// `cores`, or `net[n]` for `net0`, `net1`, ….
    pub name: &'static str,
    pub kind: ParamType,
    pub required: bool,
}

impl Param {
    pub const fn new(name: &'static str, kind: ParamType, required: bool) -> Self {
        Param {
            name,
            kind,
            required,
        }
    }

    fn matches(&self, key: &str) -> bool {
        match self.name.strip_suffix("[n]") {
            Some(prefix) => key
                .strip_prefix(prefix)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
            None => self.name == key,
        }
    }
}

/// The parameters of one request (path, query and form together), by name.
pub type Values = BTreeMap<String, String>;

/// Per-field messages of a 400.
pub type FieldErrors = BTreeMap<String, String>;

/// PVE's boolean spellings.
pub fn parse_boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The type of `key` for an endpoint, when the schema has it.
pub fn type_of(params: &[Param], key: &str) -> Option<ParamType> {
    params.iter().find(|p| p.matches(key)).map(|p| p.kind)
}

/// Check `values` against an endpoint's parameters.
pub fn verify(params: &[Param], values: &Values) -> Result<(), FieldErrors> {
    let mut errors = FieldErrors::new();
    for (key, value) in values {
        match params.iter().find(|p| p.matches(key)) {
            None => {
                errors.insert(
                    key.clone(),
                    "property is not defined in schema and the schema does not allow additional properties".into(),
                );
            }
            Some(param) => {
                let ok = match param.kind {
                    ParamType::String => true,
                    ParamType::Integer => value.parse::<i64>().is_ok(),
                    ParamType::Number => value.parse::<f64>().is_ok(),
                    ParamType::Boolean => parse_boolean(value).is_some(),
                };
                if !ok {
                    errors.insert(
                        key.clone(),
                        format!(
                            "type check ('{}') failed - got '{value}'",
                            param.kind.name()
                        ),
                    );
                }
            }
        }
    }
    for param in params.iter().filter(|p| p.required) {
        if !values.contains_key(param.name) {
            errors.insert(
                param.name.to_string(),
                "property is missing and it is not optional".into(),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[Param] = &[
        Param::new("vmid", ParamType::Integer, true),
        Param::new("node", ParamType::String, true),
        Param::new("net[n]", ParamType::String, false),
        Param::new("onboot", ParamType::Boolean, false),
    ];

    fn values(pairs: &[(&str, &str)]) -> Values {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn unknown_mistyped_and_missing_parameters_are_named_in_pves_words() {
        let errors = verify(
            PARAMS,
            &values(&[("vmid", "banana"), ("net", "x"), ("onboot", "maybe")]),
        )
        .unwrap_err();
        assert_eq!(
            errors["vmid"],
            "type check ('integer') failed - got 'banana'"
        );
        assert!(errors["net"].starts_with("property is not defined in schema"));
        assert_eq!(
            errors["onboot"],
            "type check ('boolean') failed - got 'maybe'"
        );
        assert_eq!(errors["node"], "property is missing and it is not optional");
    }

    #[test]
    fn indexed_names_and_pve_booleans_pass() {
        let ok = values(&[
            ("vmid", "100"),
            ("node", "pve1"),
            ("net0", "virtio,bridge=vmbr0"),
            ("net12", "virtio"),
            ("onboot", "yes"),
        ]);
        assert_eq!(verify(PARAMS, &ok), Ok(()));
        assert_eq!(type_of(PARAMS, "net3"), Some(ParamType::String));
        assert_eq!(type_of(PARAMS, "netx"), None);
    }
}
