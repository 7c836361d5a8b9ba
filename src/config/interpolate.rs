//! `${env:VAR}`, `${file:PATH}`, `${plainfile:PATH}` and `${age:FILE#KEY.PATH}` in string
//! values, resolved lazily.
//!
//! Reading the files only checks each reference ([`check_references`]): that it is
//! well formed and that a file it names may be read. Composing a selection resolves the
//! references of the selected pairs alone ([`resolve_references`]), so a dev run never
//! needs prod's token or prod's secret files, a value an overlay replaces is never
//! resolved, and `validate` ([`References::Defer`]) needs no secret at all: its checks
//! skip the values that wait on a reference.
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use super::limits::{MAX_REFERENCED_FILE_BYTES, ReadError, read_bounded, size};
use super::node::{KeyPath, Node, Value};
use super::secrets::{SecretFiles, SecretValues};
use crate::diag::{Problem, Problems, SourceMap};

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

/// Whether composing a selection resolves its references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum References {
    /// Resolve them (plan, apply, `config show`): a reference that cannot be resolved
    /// is an error.
    Resolve,
    /// Leave them as written and mark their values unchecked (`validate`, `diff-env`):
    /// no variable, file or secret is read.
    Defer,
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

/// One piece of a string value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Env(&'a str),
    File { path: &'a str, plain: bool },
    Age(&'a str),
}

/// What every reference form looks like, for help lines.
const FORMS: &str = "write `${env:NAME}`, `${file:PATH}`, `${plainfile:PATH}` or `${age:FILE#KEY}`; use `$${` for a literal `${`";

/// The pieces of `text`; a malformed reference is a problem (to be placed at its value).
fn parse(text: &str) -> Result<Vec<Part<'_>>, Problem> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            // `$${` is a literal `${`: keep the text before it and the `${`.
            parts.push(Part::Text(&rest[..start]));
            parts.push(Part::Text("${"));
            rest = tail;
            continue;
        }
        let Some(body_start) = after.strip_prefix("${") else {
            parts.push(Part::Text(&rest[..=start]));
            rest = &after[1..];
            continue;
        };
        parts.push(Part::Text(&rest[..start]));
        let Some(end) = body_start.find('}') else {
            return Err(
                Problem::error("config::interpolation", "unclosed `${` in value")
                    .label("no closing `}`")
                    .help(FORMS),
            );
        };
        let body = &body_start[..end];
        let part = match body.split_once(':') {
            Some(("env", name)) if !name.is_empty() => Part::Env(name),
            Some(("file", path)) if !path.is_empty() => Part::File { path, plain: false },
            Some(("plainfile", path)) if !path.is_empty() => Part::File { path, plain: true },
            Some(("age", reference)) => {
                if reference
                    .split_once('#')
                    .is_none_or(|(file, key)| file.is_empty() || key.is_empty())
                {
                    return Err(Problem::error(
                        "config::interpolation",
                        format!("`${{age:{reference}}}` names no key"),
                    )
                    .label("expected FILE#KEY.PATH")
                    .help("write `${age:secrets/prod.yaml#proxmox.token}`: a file relative to the configuration directory, `#`, and a dotted key path inside it"));
                }
                Part::Age(reference)
            }
            _ => {
                return Err(Problem::error(
                    "config::interpolation",
                    format!("unknown interpolation `${{{body}}}`"),
                )
                .label("not `env:`, `file:`, `plainfile:` or `age:` with a name")
                .help(FORMS));
            }
        };
        parts.push(part);
        rest = &body_start[end + 1..];
    }
    parts.push(Part::Text(rest));
    parts.retain(|p| *p != Part::Text(""));
    Ok(parts)
}

/// The load-time check of every reference in a file's tree (`base_dir` its directory):
/// well formed, and a file it names inside the roots. Nothing is read; the variables
/// named go to `names`.
pub fn check_references(
    node: &Node,
    base_dir: &Path,
    roots: &FileRoots,
    names: &mut BTreeSet<String>,
    problems: &mut Problems,
) {
    match &node.value {
        Value::String(text) if text.contains('$') => match parse(text) {
            Err(problem) => problems.push(problem.at(node.origin)),
            Ok(parts) => {
                for part in parts {
                    match part {
                        Part::Env(name) => {
                            names.insert(name.to_string());
                        }
                        Part::File { path, plain } => {
                            let written = written_file(path, plain);
                            if let Err(problem) = roots.resolve(base_dir, path, &written) {
                                problems.push(problem.at(node.origin));
                            }
                        }
                        Part::Text(_) | Part::Age(_) => {}
                    }
                }
            }
        },
        Value::List(items) => {
            for item in items {
                check_references(item, base_dir, roots, names, problems);
            }
        }
        Value::Map(map) => {
            for entry in map.values() {
                check_references(&entry.node, base_dir, roots, names, problems);
            }
        }
        _ => {}
    }
}

fn written_file(path: &str, plain: bool) -> String {
    if plain {
        format!("${{plainfile:{path}}}")
    } else {
        format!("${{file:{path}}}")
    }
}

/// What resolving references needs, captured when the files are read and shared by
/// every composition of the run: the values of the variables the files name, where
/// files may be read, and the age keys; with caches so each file is read and each
/// secret file decrypted once however many pairs use it. Debug shows no value.
#[derive(Default)]
pub struct ReferenceContext {
    variables: BTreeMap<String, Option<String>>,
    pub file_roots: FileRoots,
    age: Mutex<SecretFiles>,
    /// Contents of referenced files by resolved path, or why they could not be read.
    files: Mutex<HashMap<PathBuf, Result<String, String>>>,
}

impl std::fmt::Debug for ReferenceContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceContext")
            .field("variables", &self.variables.keys().collect::<Vec<_>>())
            .field("file_roots", &self.file_roots)
            .finish_non_exhaustive()
    }
}

impl ReferenceContext {
    /// `names`: the variables the files name (read now, resolved when used).
    pub fn new(
        names: BTreeSet<String>,
        env: &dyn Variables,
        file_roots: FileRoots,
        age: SecretFiles,
    ) -> Self {
        ReferenceContext {
            variables: names
                .into_iter()
                .map(|n| {
                    let value = env.var(&n);
                    (n, value)
                })
                .collect(),
            file_roots,
            age: Mutex::new(age),
            files: Mutex::new(HashMap::new()),
        }
    }

    /// The content of a referenced file (`shown` as the user wrote its path), read once.
    fn file(&self, full: &Path, shown: &Path, path: &str, plain: bool) -> Result<String, Problem> {
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let content = files
            .entry(full.to_path_buf())
            .or_insert_with(|| read_referenced(full))
            .clone();
        content.map_err(|reason| {
            Problem::error(
                "config::missing-file",
                format!("cannot read `{}`: {reason}", shown.display()),
            )
            .label(format!("needs {}", written_file(path, plain)))
            .help("file paths are relative to the YAML file that names them")
        })
    }
}

/// The content of a referenced file without its trailing newline, or why it cannot be
/// read.
fn read_referenced(full: &Path) -> Result<String, String> {
    let bytes = read_bounded(full, MAX_REFERENCED_FILE_BYTES).map_err(|error| match error {
        ReadError::TooLarge(limit) => format!(
            "it is larger than {} (a referenced file holds a token, a key or a certificate)",
            size(limit)
        ),
        other => other.to_string(),
    })?;
    let content = String::from_utf8(bytes).map_err(|_| "it is not UTF-8 text".to_string())?;
    Ok(content.strip_suffix('\n').unwrap_or(&content).to_string())
}

/// Resolve (or, deferring, mark) the references of one composed tree. Secret values
/// go to `found`; problems are placed at the value that holds the reference. Returns
/// the paths of the values left unresolved: checks of them are skipped (they wait for
/// a reference, or follow from a problem already reported).
pub fn resolve_references(
    node: &mut Node,
    context: &ReferenceContext,
    sources: &SourceMap,
    mode: References,
    found: &mut SecretValues,
    problems: &mut Problems,
) -> Vec<KeyPath> {
    let mut unresolved = Vec::new();
    let mut walk = Walk {
        context,
        sources,
        mode,
        found,
        problems,
        unresolved: &mut unresolved,
    };
    walk.node(node, &mut KeyPath::root());
    unresolved
}

struct Walk<'a> {
    context: &'a ReferenceContext,
    sources: &'a SourceMap,
    mode: References,
    found: &'a mut SecretValues,
    problems: &'a mut Problems,
    unresolved: &'a mut Vec<KeyPath>,
}

impl Walk<'_> {
    fn node(&mut self, node: &mut Node, path: &mut KeyPath) {
        let origin = node.origin;
        match &mut node.value {
            Value::String(text) if text.contains('$') => match self.string(text, origin) {
                Ok(Some(resolved)) => *text = resolved,
                // Deferred: the value stays as written, and unchecked.
                Ok(None) => self.unresolved.push(path.clone()),
                Err(problem) => {
                    self.problems.push(problem.at(origin));
                    self.unresolved.push(path.clone());
                }
            },
            Value::List(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    path.push(super::node::Segment::Index(i));
                    self.node(item, path);
                    path.pop();
                }
            }
            Value::Map(map) => {
                for (key, entry) in map.iter_mut() {
                    path.push(super::node::Segment::Key(key.clone()));
                    self.node(&mut entry.node, path);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The resolved text, `None` when deferred.
    fn string(
        &mut self,
        text: &str,
        origin: crate::diag::Origin,
    ) -> Result<Option<String>, Problem> {
        let parts = parse(text)?;
        let literal = parts.iter().all(|p| matches!(p, Part::Text(_)));
        if !literal && self.mode == References::Defer {
            return Ok(None);
        }
        let base_dir = self
            .sources
            .path(origin.file)
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let mut out = String::with_capacity(text.len());
        let mut secret = Vec::new();
        for part in parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Env(name) => match self.context.variables.get(name) {
                    Some(Some(value)) => out.push_str(value),
                    _ => {
                        return Err(Problem::error(
                            "config::missing-env",
                            format!("environment variable `{name}` is not set"),
                        )
                        .label(format!("needs ${{env:{name}}}"))
                        .help(format!(
                            "export {name}=… before running infraflux, or replace the reference with a value"
                        )));
                    }
                },
                Part::File { path, plain } => {
                    let written = written_file(path, plain);
                    let full = self.context.file_roots.resolve(&base_dir, path, &written)?;
                    let content = self
                        .context
                        .file(&full, &base_dir.join(path), path, plain)?;
                    if !plain {
                        self.found.add_value(&content);
                        secret.push(format!("file: {path}"));
                    }
                    out.push_str(&content);
                }
                Part::Age(reference) => {
                    let mut age = self.context.age.lock().unwrap_or_else(|e| e.into_inner());
                    let value = age.lookup(reference)?;
                    self.found.add_value(&value);
                    secret.push(format!("age: {reference}"));
                    out.push_str(&value);
                }
            }
        }
        if !secret.is_empty() {
            self.found.add_reference(origin, secret.join(", "));
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(HashMap<&'static str, String>);
    impl Variables for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    /// One value `text` in a file under `dir`, resolved (or deferred).
    fn resolve_in(
        dir: &Path,
        text: &str,
        env: &Fake,
        mode: References,
    ) -> (Node, SecretValues, Vec<KeyPath>, Vec<Problem>) {
        let mut sources = SourceMap::new();
        let id = sources.add(dir.join("f.yaml"), format!("v: {text:?}\n"));
        let mut node = crate::config::yaml::parse_file(id, sources.get(id)).unwrap();
        let mut names = BTreeSet::new();
        let roots = FileRoots::new([dir]);
        let mut problems = Problems::new();
        check_references(&node, dir, &roots, &mut names, &mut problems);
        let context = ReferenceContext::new(names, env, roots, SecretFiles::new(dir, env));
        let mut found = SecretValues::default();
        let unresolved = resolve_references(
            &mut node,
            &context,
            &sources,
            mode,
            &mut found,
            &mut problems,
        );
        (node, found, unresolved, problems.into_iter().collect())
    }

    fn value(node: &Node) -> &str {
        node.get("v").unwrap().as_str().unwrap()
    }

    #[test]
    fn expands_env_and_file_references() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let env = Fake(HashMap::from([("USER_NAME", "root@pam".to_string())]));
        let (node, found, unresolved, problems) = resolve_in(
            dir.path(),
            "${env:USER_NAME}!ci=${file:token}",
            &env,
            References::Resolve,
        );
        assert!(problems.is_empty() && unresolved.is_empty(), "{problems:?}");
        assert_eq!(value(&node), "root@pam!ci=s3cret");
        assert!(found.contains_secret("s3cret"));
        let origin = node.get("v").unwrap().origin;
        assert_eq!(found.reference(origin), Some("file: token"));
        let (node, ..) = resolve_in(
            dir.path(),
            "cost: $5 $${literal}",
            &env,
            References::Resolve,
        );
        assert_eq!(value(&node), "cost: $5 ${literal}");
    }

    #[test]
    fn deferring_reads_nothing_and_marks_the_value_unchecked() {
        let dir = tempfile::tempdir().unwrap();
        let env = Fake(HashMap::new());
        let (node, found, unresolved, problems) = resolve_in(
            dir.path(),
            "${env:PROD_TOKEN}-${file:missing}",
            &env,
            References::Defer,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(value(&node), "${env:PROD_TOKEN}-${file:missing}");
        assert_eq!(unresolved, [KeyPath::parse("v")]);
        assert!(found.is_empty());
        // A literal `$${` is still unescaped, and checked.
        let (node, _, unresolved, _) = resolve_in(dir.path(), "a $${b}", &env, References::Defer);
        assert_eq!(value(&node), "a ${b}");
        assert!(unresolved.is_empty());
    }

    #[test]
    fn age_references_read_the_encrypted_file_and_are_remembered_as_secrets() {
        use crate::config::secrets::IDENTITY_FILE_VAR;
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/secrets");
        let identity = fixtures.join("TEST-ONLY-age-identity.txt");
        let env = Fake(HashMap::from([(
            IDENTITY_FILE_VAR,
            identity.display().to_string(),
        )]));
        let mut sources = SourceMap::new();
        let id = sources.add(
            "dev.yaml",
            "a: ${age:secrets/dev.yaml#grafana.admin_password}\nb: x-${age:secrets/dev.yaml#port}\nc: plain\n".to_string(),
        );
        let mut node = crate::config::yaml::parse_file(id, sources.get(id)).unwrap();
        let root = fixtures.join("config");
        let context = ReferenceContext::new(
            BTreeSet::new(),
            &env,
            FileRoots::new([root.as_path()]),
            SecretFiles::new(&root, &env),
        );
        let mut found = SecretValues::default();
        let mut problems = Problems::new();
        resolve_references(
            &mut node,
            &context,
            &sources,
            References::Resolve,
            &mut found,
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            node.get("a").unwrap().as_str(),
            Some("Grafana-Age-Secret-7f3a9c")
        );
        assert_eq!(node.get("b").unwrap().as_str(), Some("x-6443"));
        assert!(found.is_secret_origin(node.get("a").unwrap().origin));
        assert_eq!(
            found.reference(node.get("b").unwrap().origin),
            Some("age: secrets/dev.yaml#port")
        );
        assert!(!found.is_secret_origin(node.get("c").unwrap().origin));
        assert!(found.contains_secret("Grafana-Age-Secret-7f3a9c"));
    }

    #[test]
    fn a_reference_that_cannot_be_resolved_is_an_error_at_its_value_never_empty() {
        let dir = tempfile::tempdir().unwrap();
        let env = Fake(HashMap::new());
        for (text, code) in [
            ("${env:NOPE}", "config::missing-env"),
            ("${file:missing}", "config::missing-file"),
            ("${vault:x}", "config::interpolation"),
            ("${env:}", "config::interpolation"),
            ("${age:secrets/x.yaml}", "config::interpolation"),
            ("${env:X", "config::interpolation"),
        ] {
            let (node, _, unresolved, problems) =
                resolve_in(dir.path(), text, &env, References::Resolve);
            assert_eq!(problems[0].code, code, "{text}: {problems:?}");
            assert_eq!(problems[0].origin.unwrap().line, 1);
            assert_eq!(value(&node), text, "left as written");
            assert_eq!(unresolved, [KeyPath::parse("v")]);
        }
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
        // The load-time check reports it at its value, reading nothing.
        let env = Fake(HashMap::new());
        let (_, _, _, problems) = resolve_in(
            config.path(),
            &format!("${{file:{escape}}}"),
            &env,
            References::Defer,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].code, "config::file-outside");
    }

    #[test]
    fn file_contents_are_secret_unless_plain() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
        let env = Fake(HashMap::new());
        let (node, found, _, problems) =
            resolve_in(dir.path(), "${plainfile:ca.pem}", &env, References::Resolve);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(value(&node), "-----BEGIN CERTIFICATE-----");
        assert!(found.is_empty());
    }
}
