//! `${env:VAR}`, `${file:PATH}`, `${plainfile:PATH}` and `${age:FILE#KEY.PATH}` in string
//! values, resolved at load time.
//!
//! A missing variable or unreadable file is a problem at the value that asked for it,
//! never an empty string. `$${` writes a literal `${`. `${file:…}` paths are relative to
//! the file that names them, and a trailing newline of the file is dropped (token files
//! usually end with one). A file is read only inside the configuration's directories
//! (its own, its overlays') and the directories the user allows (`--allow-file-dir`,
//! [`FileRoots`]): a configuration must not be able to print `/etc/passwd` or a
//! neighbour's key into a plan. Its content is a secret (masked wherever shown) unless
//! the reference says `plainfile` (a CA certificate, say). `${age:…}` reads a value
//! from an age-encrypted YAML file relative to the configuration directory
//! ([`super::secrets`]). Secret values are remembered as secrets, and their nodes'
//! origins as ones that hold a secret.

use std::path::{Component, Path, PathBuf};

use super::limits::{MAX_REFERENCED_FILE_BYTES, ReadError, read_bounded, size};
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

/// Where `${file:…}` may read: the configuration's directories and those the user
/// allows, each as written (made absolute) and with its links resolved.
#[derive(Debug, Clone, Default)]
pub struct FileRoots {
    roots: Vec<PathBuf>,
}

impl FileRoots {
    pub fn new<'a>(directories: impl IntoIterator<Item = &'a Path>) -> Self {
        let mut roots = Vec::new();
        for directory in directories {
            let absolute = absolute(directory);
            if let Ok(canonical) = absolute.canonicalize() {
                roots.push(canonical);
            }
            roots.push(absolute);
        }
        FileRoots { roots }
    }

    fn contains(&self, path: &Path) -> bool {
        self.roots.iter().any(|root| path.starts_with(root))
    }

    /// The file `${file:PATH}` names from a file in `base_dir`, if it may be read: the
    /// path as written must be inside a root, and so must the file it reaches once
    /// links are followed (a link inside pointing out is refused).
    pub fn resolve(&self, base_dir: &Path, path: &str, written: &str) -> Result<PathBuf, Problem> {
        let named = absolute(&base_dir.join(path));
        let outside = || {
            Problem::error(
                "config::file-outside",
                format!("`{written}` reads outside the configuration"),
            )
            .label("outside the configuration's directories")
            .help("`${file:…}` reads files inside the configuration directory (relative to the YAML file that names them); to read from another directory, allow it with --allow-file-dir DIR (INFRAFLUX_ALLOW_FILE_DIRS, `:`-separated), e.g. /run/secrets")
        };
        if !self.contains(&named) {
            return Err(outside());
        }
        match named.canonicalize() {
            Ok(real) if self.contains(&real) => Ok(real),
            Ok(_) => Err(outside()),
            // Missing or unreadable: reported when it is read.
            Err(_) => Ok(named),
        }
    }
}

/// `path` made absolute (against the working directory) with `.` and `..` resolved as
/// written, without following links.
fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut out = PathBuf::new();
    for component in joined.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Interpolate every string in a tree in place; `base_dir` is the directory of its
/// file. `secrets` reads `${age:…}`, knows where `${file:…}` may read, and records every
/// secret value it hands out and the origin of every node that received one.
pub fn interpolate_with_secrets(
    node: &mut Node,
    base_dir: &Path,
    env: &dyn Variables,
    secrets: &mut SecretFiles<'_>,
    problems: &mut Problems,
) {
    interpolate_node(node, base_dir, env, secrets, problems);
}

fn interpolate_node(
    node: &mut Node,
    base_dir: &Path,
    env: &dyn Variables,
    secrets: &mut SecretFiles<'_>,
    problems: &mut Problems,
) {
    match &mut node.value {
        Value::String(text) if text.contains("${") => {
            let mut references = Vec::new();
            match expand_with(text, base_dir, env, secrets, &mut references) {
                Ok(expanded) => {
                    *text = expanded;
                    if !references.is_empty() {
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
    let mut secrets = SecretFiles::new(base_dir, env);
    expand_with(text, base_dir, env, &mut secrets, &mut Vec::new())
}

/// `text` with every `${…}` replaced; the secret references used (`age: FILE#KEY`,
/// `file: PATH`) go to `references`.
fn expand_with(
    text: &str,
    base_dir: &Path,
    env: &dyn Variables,
    secrets: &mut SecretFiles<'_>,
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
        match body.split_once(':') {
            Some(("age", reference)) => {
                out.push_str(&secrets.lookup(reference)?);
                references.push(format!("age: {reference}"));
            }
            Some((kind @ ("file" | "plainfile"), path)) => {
                let written = format!("${{{body}}}");
                let full = secrets.file_roots.resolve(base_dir, path, &written)?;
                let content = read_referenced(&full, &base_dir.join(path), path)?;
                if kind == "file" {
                    secrets.found.add_value(&content);
                    references.push(format!("file: {path}"));
                }
                out.push_str(&content);
            }
            _ => out.push_str(&resolve(body, env)?),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The content of a referenced file (`shown` as the user would write its path),
/// without its trailing newline.
fn read_referenced(full: &Path, shown: &Path, path: &str) -> Result<String, Problem> {
    let failed = |reason: String| {
        Problem::error(
            "config::missing-file",
            format!("cannot read `{}`: {reason}", shown.display()),
        )
        .label(format!("needs ${{file:{path}}}"))
        .help("file paths are relative to the YAML file that names them")
    };
    let bytes = read_bounded(full, MAX_REFERENCED_FILE_BYTES).map_err(|error| match error {
        ReadError::TooLarge(limit) => failed(format!(
            "it is larger than {} (a referenced file holds a token, a key or a certificate)",
            size(limit)
        )),
        other => failed(other.to_string()),
    })?;
    let content = String::from_utf8(bytes).map_err(|_| failed("it is not UTF-8 text".into()))?;
    Ok(content.strip_suffix('\n').unwrap_or(&content).to_string())
}

fn resolve(body: &str, env: &dyn Variables) -> Result<String, Problem> {
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
        _ => Err(Problem::error(
            "config::interpolation",
            format!("unknown interpolation `${{{body}}}`"),
        )
        .label("not `env:`, `file:`, `plainfile:` or `age:`")
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
            Some("age: secrets/dev.yaml#port")
        );
        assert!(!found.is_secret_origin(node.get("c").unwrap().origin));
        assert!(found.contains_secret("Grafana-Age-Secret-7f3a9c"));
    }

    #[test]
    fn file_references_read_only_inside_the_allowed_directories() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "root:x:0:0\n").unwrap();
        let config = tempfile::tempdir().unwrap();
        let defaults = config.path().join("defaults");
        std::fs::create_dir_all(&defaults).unwrap();
        std::fs::write(config.path().join("token"), "s3cret\n").unwrap();
        let roots = FileRoots::new([config.path()]);
        // Inside, `..` included, is fine.
        assert!(roots.resolve(&defaults, "../token", "x").is_ok());
        // Out by `..`, by an absolute path, and by a link inside pointing out.
        let escape = format!(
            "{}/passwd",
            "../".repeat(defaults.components().count())
                + outside.path().to_str().unwrap().trim_start_matches('/')
        );
        #[cfg(unix)]
        std::os::unix::fs::symlink(outside.path().join("passwd"), config.path().join("link"))
            .unwrap();
        for path in [
            escape.as_str(),
            outside.path().join("passwd").to_str().unwrap(),
            "../link",
        ] {
            let error = roots.resolve(&defaults, path, "${file:x}").unwrap_err();
            assert_eq!(error.code, "config::file-outside", "{path}");
            assert!(!error.message.contains("root:x"));
        }
        // Allowed explicitly, it reads.
        let allowed = FileRoots::new([config.path(), outside.path()]);
        assert!(
            allowed
                .resolve(
                    &defaults,
                    outside.path().join("passwd").to_str().unwrap(),
                    "x"
                )
                .is_ok()
        );
    }

    #[test]
    fn file_contents_are_secret_unless_plain() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let env = Fake(HashMap::new());
        let mut secrets = SecretFiles::new(dir.path(), &env);
        let mut references = Vec::new();
        let value = expand_with(
            "${file:token}",
            dir.path(),
            &env,
            &mut secrets,
            &mut references,
        )
        .unwrap();
        assert_eq!(value, "s3cret-token");
        assert_eq!(references, ["file: token"]);
        assert!(secrets.found.contains_secret("s3cret-token"));
        let mut references = Vec::new();
        let value = expand_with(
            "${plainfile:ca.pem}",
            dir.path(),
            &env,
            &mut secrets,
            &mut references,
        )
        .unwrap();
        assert_eq!(value, "-----BEGIN CERTIFICATE-----");
        assert!(references.is_empty());
        assert!(!secrets.found.contains_secret("CERTIFICATE"));
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
