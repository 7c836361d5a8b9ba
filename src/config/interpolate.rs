//! `${env:VAR}`, `${file:PATH}` and `${age:FILE#KEY.PATH}` in string values, resolved at
//! load time.
//!
//! A missing variable or unreadable file is a problem at the value that asked for it,
//! never an empty string. `$${` writes a literal `${`. `${file:…}` paths are relative to
//! the file that names them, and a trailing newline of the file is dropped (token files
//! usually end with one). `${age:…}` reads a value from an age-encrypted YAML file
//! relative to the configuration directory ([`super::secrets`]); the value is
//! remembered as a secret, and its node's origin as one that holds a secret.

use std::path::Path;

use super::node::{Node, Value};
use super::secrets::SecretFiles;
use crate::diag::{Problem, Problems};

/// The environment variables `${env:…}` reads (not an `Environment` of the model: dev,
/// staging, prod); tests substitute their own.
pub trait Variables {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessVariables;

impl Variables for ProcessVariables {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Interpolate every string in a tree in place; `base_dir` is the directory of its file.
/// `${age:…}` is refused here (nothing would remember its value as a secret): the layer
/// loader uses [`interpolate_with_secrets`].
pub fn interpolate(node: &mut Node, base_dir: &Path, env: &dyn Variables, problems: &mut Problems) {
    interpolate_node(node, base_dir, env, &mut None, problems);
}

/// [`interpolate`], with `${age:…}` read through `secrets` (which records every value it
/// hands out and the origin of every node that received one).
pub fn interpolate_with_secrets(
    node: &mut Node,
    base_dir: &Path,
    env: &dyn Variables,
    secrets: &mut SecretFiles<'_>,
    problems: &mut Problems,
) {
    interpolate_node(node, base_dir, env, &mut Some(secrets), problems);
}

fn interpolate_node(
    node: &mut Node,
    base_dir: &Path,
    env: &dyn Variables,
    secrets: &mut Option<&mut SecretFiles<'_>>,
    problems: &mut Problems,
) {
    match &mut node.value {
        Value::String(text) if text.contains("${") => {
            let mut references = Vec::new();
            match expand_with(text, base_dir, env, secrets, &mut references) {
                Ok(expanded) => {
                    *text = expanded;
                    if let Some(secrets) = secrets.as_deref_mut()
                        && !references.is_empty()
                    {
                        secrets
                            .found
                            .add_reference(node.origin, references.join(", "));
                    }
                }
                Err(problem) => problems.push(problem.at(node.origin)),
            }
        }
        Value::List(items) => {
            for item in items {
                interpolate_node(item, base_dir, env, secrets, problems);
            }
        }
        Value::Map(map) => {
            for entry in map.values_mut() {
                interpolate_node(&mut entry.node, base_dir, env, secrets, problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
fn expand(text: &str, base_dir: &Path, env: &dyn Variables) -> Result<String, Problem> {
    expand_with(text, base_dir, env, &mut None, &mut Vec::new())
}

/// `text` with every `${…}` replaced; the bodies of `${age:…}` used go to `references`.
fn expand_with(
    text: &str,
    base_dir: &Path,
    env: &dyn Variables,
    secrets: &mut Option<&mut SecretFiles<'_>>,
    references: &mut Vec<String>,
) -> Result<String, Problem> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            out.push('$');
            rest = &after[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(
                Problem::error("config::interpolation", "unclosed `${` in value")
                    .label("no closing `}`")
                    .help("write `${env:NAME}`, `${file:PATH}` or `${age:FILE#KEY}`; use `$${` for a literal `${`"),
            );
        };
        let body = &body_start[..end];
        match body.strip_prefix("age:") {
            Some(reference) => {
                let Some(secrets) = secrets.as_deref_mut() else {
                    return Err(Problem::error(
                        "config::interpolation",
                        "`${age:…}` is not available in this file",
                    )
                    .label("encrypted values are read in layer files only")
                    .help("move the reference into a layer file (defaults/, templates/, environments/, clusters/)"));
                };
                out.push_str(&secrets.lookup(reference)?);
                references.push(reference.to_string());
            }
            None => out.push_str(&resolve(body, base_dir, env)?),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve(body: &str, base_dir: &Path, env: &dyn Variables) -> Result<String, Problem> {
    match body.split_once(':') {
        Some(("env", name)) => env.var(name).ok_or_else(|| {
            Problem::error(
                "config::missing-env",
                format!("environment variable `{name}` is not set"),
            )
            .label(format!("needs ${{env:{name}}}"))
            .help(format!(
                "export {name}=… before running infraflux, or replace the reference with a value"
            ))
        }),
        Some(("file", path)) => {
            let full = base_dir.join(path);
            std::fs::read_to_string(&full)
                .map(|content| content.strip_suffix('\n').unwrap_or(&content).to_string())
                .map_err(|error| {
                    Problem::error(
                        "config::missing-file",
                        format!("cannot read `{}`: {error}", full.display()),
                    )
                    .label(format!("needs ${{file:{path}}}"))
                    .help("file paths are relative to the YAML file that names them")
                })
        }
        _ => Err(Problem::error(
            "config::interpolation",
            format!("unknown interpolation `${{{body}}}`"),
        )
        .label("not `env:`, `file:` or `age:`")
        .help("write `${env:NAME}`, `${file:PATH}` or `${age:FILE#KEY}`; use `$${` for a literal `${`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<&'static str, &'static str>);
    impl Variables for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    #[test]
    fn expands_env_and_file_references() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let env = Fake(HashMap::from([("USER_NAME", "root@pam")]));
        assert_eq!(
            expand("${env:USER_NAME}!ci=${file:token}", dir.path(), &env).unwrap(),
            "root@pam!ci=s3cret"
        );
        assert_eq!(
            expand("cost: $5 $${literal}", dir.path(), &env).unwrap(),
            "cost: $5 ${literal}"
        );
    }

    #[test]
    fn age_references_read_the_encrypted_file_and_are_remembered_as_secrets() {
        use crate::config::secrets::IDENTITY_FILE_VAR;
        use crate::diag::SourceMap;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/secrets");
        let identity = fixtures.join("TEST-ONLY-age-identity.txt");
        let identity: &'static str = Box::leak(identity.display().to_string().into_boxed_str());
        let env = Fake(HashMap::from([(IDENTITY_FILE_VAR, identity)]));
        let mut sources = SourceMap::new();
        let id = sources.add(
            "dev.yaml",
            "a: ${age:secrets/dev.yaml#grafana.admin_password}\nb: x-${age:secrets/dev.yaml#port}\nc: plain\n".to_string(),
        );
        let mut node = crate::config::yaml::parse_file(id, sources.get(id)).unwrap();
        let mut secrets = SecretFiles::new(&fixtures.join("config"), &env);
        let mut problems = Problems::new();
        interpolate_with_secrets(&mut node, Path::new("."), &env, &mut secrets, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            node.get("a").unwrap().as_str(),
            Some("Grafana-Age-Secret-7f3a9c")
        );
        assert_eq!(node.get("b").unwrap().as_str(), Some("x-6443"));
        let found = &secrets.found;
        assert!(found.is_secret_origin(node.get("a").unwrap().origin));
        assert_eq!(
            found.reference(node.get("b").unwrap().origin),
            Some("secrets/dev.yaml#port")
        );
        assert!(!found.is_secret_origin(node.get("c").unwrap().origin));
        assert!(found.contains_secret("Grafana-Age-Secret-7f3a9c"));

        // Without a place to remember the value, `${age:}` is refused, not read.
        let error = expand("${age:secrets/dev.yaml#port}", Path::new("."), &env).unwrap_err();
        assert!(error.message.contains("not available"), "{}", error.message);
    }

    #[test]
    fn a_missing_variable_is_an_error_never_empty() {
        let env = Fake(HashMap::new());
        let error = expand("${env:NOPE}", Path::new("."), &env).unwrap_err();
        assert_eq!(error.message, "environment variable `NOPE` is not set");
        let error = expand("${vault:x}", Path::new("."), &env).unwrap_err();
        assert_eq!(error.code, "config::interpolation");
    }
}
