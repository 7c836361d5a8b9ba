//! Secrets in the configuration, encrypted with [age](https://age-encryption.org), in the
//! spirit of SOPS: the files stay in the repository, only holders of a key read them.
//!
//! Two forms, both ASCII-armored age files whose plaintext is YAML:
//! - `${age:secrets/prod.yaml#proxmox.token}` in any string value: the file (relative to
//!   the configuration directory) is decrypted and the value at the dotted key path
//!   inside it is substituted;
//! - a whole layer `<name>.age.yaml` beside `<name>.yaml` (any layer directory): it is
//!   decrypted and merged as part of that layer, after the plain file.
//!
//! Decryption happens in memory at load time with the identities of
//! [`IDENTITY_FILE_VAR`] / [`IDENTITY_VAR`], or, when neither is set, the state's
//! (`INFRAFLUX_STATE_IDENTITY_FILE` / `INFRAFLUX_STATE_IDENTITY`); the key loading is the
//! state encryption's ([`crate::encryption::Encryption`]).
//!
//! Every value read from an age file is a secret ([`SecretValues`]): `config show` masks
//! it, the graph marks the attributes it reaches sensitive, so plans, saved plans' views
//! and `state show` print `(sensitive)`. Provenance names the place, never the value:
//! `environments/prod.yaml:4 (age: secrets/prod.yaml#proxmox.token)` for a reference, the
//! file and line for a value of an encrypted layer. Diagnostics about an encrypted layer
//! name its lines but quote its text masked ([`crate::diag::SourceMap::add_secret`]).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::interpolate::Variables;
use super::node::{KeyPath, Node, Value};
use super::yaml::parse_file;
use crate::diag::{FileId, Origin, Problem, SourceMap};
use crate::encryption::{self, Encryption, IdentitySource, is_encrypted};
use crate::vocabulary::{SecretStrings, Sensitive};

/// A file of age identities (`AGE-SECRET-KEY-1…`) that decrypt configuration secrets.
pub const IDENTITY_FILE_VAR: &str = "INFRAFLUX_AGE_IDENTITY_FILE";
/// An age identity itself.
pub const IDENTITY_VAR: &str = "INFRAFLUX_AGE_IDENTITY";
/// Comma-separated public keys (`age1…`) `secrets edit` encrypts to.
pub const RECIPIENTS_VAR: &str = "INFRAFLUX_AGE_RECIPIENTS";
/// The recipients file kept with the configuration (one `age1…` per line, `#`
/// comments), found in the secret file's directory or the nearest one above it.
pub const RECIPIENTS_FILE: &str = ".age-recipients";

/// What a secret prints as.
pub const MASK: &str = crate::vocabulary::MASK;

/// The state's identity variables, the fallback key source.
use crate::encryption::{
    IDENTITY_FILE_VAR as STATE_IDENTITY_FILE_VAR, IDENTITY_VAR as STATE_IDENTITY_VAR,
};

/// Whether a layer file is an encrypted layer (`prod.age.yaml`, `prod.age.yml`).
pub fn is_encrypted_layer(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|stem| stem.ends_with(".age"))
}

/// The layer an encrypted layer file belongs to: `prod.age.yaml` → `prod`.
pub fn encrypted_layer_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    stem.strip_suffix(".age").unwrap_or(stem).to_string()
}

/// The identities that decrypt configuration secrets: this feature's variables, else the
/// state's. Empty when none is set.
pub fn decryption_keys(env: &dyn Variables) -> Encryption {
    let get = |name: &str| env.var(name).filter(|v| !v.trim().is_empty());
    let sources = |file_var: &str, key_var: &str| {
        let mut identities = Vec::new();
        if let Some(path) = get(file_var) {
            identities.push(IdentitySource::File(path.into()));
        }
        if let Some(key) = get(key_var) {
            identities.push(IdentitySource::Key(Sensitive::new(key)));
        }
        identities
    };
    let mut identities = sources(IDENTITY_FILE_VAR, IDENTITY_VAR);
    if identities.is_empty() {
        identities = sources(STATE_IDENTITY_FILE_VAR, STATE_IDENTITY_VAR);
    }
    Encryption {
        identities,
        ..Encryption::default()
    }
}

/// Why a secret file could not be read: never its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    pub help: String,
}

impl Failure {
    pub fn into_problem(self) -> Problem {
        Problem::error(self.code, self.message).help(self.help)
    }
}

const KEY_HELP: &str = "set INFRAFLUX_AGE_IDENTITY_FILE to an age identity file (`age-keygen -o key.txt`) whose public key the file is encrypted to, or INFRAFLUX_AGE_IDENTITY to the key itself (when both are unset, INFRAFLUX_STATE_IDENTITY_FILE / INFRAFLUX_STATE_IDENTITY are used)";

/// The plaintext of an age-encrypted configuration file. `shown` names it in messages.
pub fn decrypt_file(path: &Path, keys: &Encryption) -> Result<Sensitive<String>, Failure> {
    use super::limits::{MAX_ENCRYPTED_FILE_BYTES, ReadError, read_bounded, size};
    let shown = path.display().to_string();
    let bytes = read_bounded(path, MAX_ENCRYPTED_FILE_BYTES).map_err(|error| match error {
        ReadError::Io(error) if error.kind() == std::io::ErrorKind::NotFound => Failure {
                code: "config::secret-file-missing",
                message: format!("secret file `{shown}` not found"),
                help: format!(
                    "create it with `infraflux secrets edit {shown}` (encrypted to INFRAFLUX_AGE_RECIPIENTS or a .age-recipients file), or fix the path: it is relative to the configuration directory"
                ),
        },
        ReadError::TooLarge(limit) => Failure {
            code: "config::file-too-large",
            message: format!("secret file `{shown}` is larger than {}", size(limit)),
            help: "a secret file holds a few values; keep large data out of the configuration".into(),
        },
        other => Failure {
            code: "config::secret-file-unreadable",
            message: format!("cannot read secret file `{shown}`: {other}"),
            help: "check that it is a readable file".into(),
        },
    })?;
    if !is_encrypted(&bytes) {
        return Err(Failure {
            code: "config::secret-not-encrypted",
            message: format!("secret file `{shown}` is not age-encrypted"),
            help: format!(
                "encrypt it with `infraflux secrets encrypt {shown}`; a plaintext secret does not belong in the repository"
            ),
        });
    }
    let plain = keys.decrypt(&bytes, &shown).map_err(|error| match error {
        encryption::Error::NoKey {
            passphrase: true, ..
        }
        | encryption::Error::WrongKey {
            passphrase: true, ..
        } => Failure {
            code: "config::secret-wrong-key",
            message: format!(
                "cannot decrypt `{shown}`: it is encrypted to a passphrase, which configuration secrets do not use"
            ),
            help: format!(
                "encrypt it to age keys instead: `age -d` it with the passphrase, then `infraflux secrets encrypt {shown}`"
            ),
        },
        encryption::Error::NoKey { .. } => Failure {
            code: "config::secret-no-key",
            message: format!("cannot decrypt `{shown}`: no age identity is set"),
            help: KEY_HELP.into(),
        },
        encryption::Error::WrongKey { .. } => Failure {
            code: "config::secret-wrong-key",
            message: format!(
                "cannot decrypt `{shown}`: none of the configured age identities is one of its recipients"
            ),
            help: "use an identity whose public key (`age-keygen -y key.txt`) the file was encrypted to; whoever can decrypt it can add yours to .age-recipients and run `infraflux secrets edit` to re-encrypt it".into(),
        },
        encryption::Error::Config { reason } => Failure {
            code: "config::secret-key-invalid",
            message: format!("cannot decrypt `{shown}`: {reason}"),
            help: KEY_HELP.into(),
        },
        encryption::Error::Corrupt { reason, .. } => Failure {
            code: "config::secret-file-corrupt",
            message: format!("secret file `{shown}` is damaged: {reason}"),
            help: "restore it from version control; `infraflux secrets edit` writes a new one".into(),
        },
        other => Failure {
            code: "config::secret-file-corrupt",
            message: format!("cannot decrypt `{shown}`: {other}"),
            help: "restore it from version control".into(),
        },
    })?;
    String::from_utf8(plain)
        .map(Sensitive::new)
        .map_err(|_| Failure {
            code: "config::secret-file-corrupt",
            message: format!("the decrypted contents of `{shown}` are not UTF-8 text"),
            help: "a secret file holds YAML; rewrite it with `infraflux secrets edit`".into(),
        })
}

/// Parse decrypted YAML without keeping it in the configuration's source map (so no
/// diagnostic can quote it); a syntax error is reported by line and column only.
pub fn parse_secret_yaml(text: &str, shown: &str) -> Result<Node, Failure> {
    let mut private = SourceMap::new();
    let id = private.add(shown, text.to_string());
    parse_file(id, private.get(id)).map_err(|problem| {
        let at = problem
            .origin
            .map(|o| format!(" at line {}, column {}", o.line, o.column))
            .unwrap_or_default();
        Failure {
            code: "config::secret-file-yaml",
            message: format!(
                "secret file `{shown}` is not valid YAML{at}: {}",
                problem.message
            ),
            help: format!("fix it with `infraflux secrets edit {shown}`"),
        }
    })
}

/// Every value read from an age source, and where such values sit in the configuration.
/// Debug prints counts only.
#[derive(Clone, Default)]
pub struct SecretValues {
    /// The plaintext strings (never empty): an attribute value containing one is secret.
    values: SecretStrings,
    /// Encrypted layer files: every value they hold is secret.
    files: HashSet<FileId>,
    /// Values interpolated from `${age:…}`, by their origin: the references they used.
    references: HashMap<Origin, String>,
}

impl fmt::Debug for SecretValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretValues")
            .field("values", &format_args!("{} (sensitive)", self.values.len()))
            .field("files", &self.files.len())
            .field("references", &self.references.len())
            .finish()
    }
}

impl SecretValues {
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.files.is_empty()
    }

    /// The plaintext secrets alone, as later stages need them (the model carries them).
    pub fn strings(&self) -> &SecretStrings {
        &self.values
    }

    /// Remember a plaintext secret (empty strings protect nothing and are skipped).
    pub fn add_value(&mut self, value: &str) {
        self.values.add_value(value);
    }

    /// Remember an encrypted layer and every string it holds.
    pub fn add_file(&mut self, file: FileId, node: &Node) {
        self.files.insert(file);
        self.add_strings(node);
    }

    fn add_strings(&mut self, node: &Node) {
        match &node.value {
            Value::String(text) => self.add_value(text),
            Value::List(items) => items.iter().for_each(|item| self.add_strings(item)),
            Value::Map(map) => map.values().for_each(|e| self.add_strings(&e.node)),
            _ => {}
        }
    }

    /// Remember a value interpolated from `references` (`age: secrets/prod.yaml#a.b`,
    /// `file: token`).
    pub fn add_reference(&mut self, origin: Origin, references: String) {
        self.references.insert(origin, references);
    }

    /// Add everything `other` knows.
    pub fn extend(&mut self, other: &SecretValues) {
        self.values.extend(&other.values);
        self.files.extend(other.files.iter().copied());
        self.references
            .extend(other.references.iter().map(|(o, r)| (*o, r.clone())));
    }

    /// Whether the value at `origin` came from an age source.
    pub fn is_secret_origin(&self, origin: Origin) -> bool {
        self.files.contains(&origin.file) || self.references.contains_key(&origin)
    }

    /// The `${age:…}` references a value was read from, for provenance.
    pub fn reference(&self, origin: Origin) -> Option<&str> {
        self.references.get(&origin).map(String::as_str)
    }

    /// `text` with every secret in it replaced by `(sensitive)`.
    pub fn redact(&self, text: &str) -> String {
        self.values.redact(text)
    }

    /// Mask secrets a check quoted in a problem.
    pub fn redact_problems(&self, problems: &mut crate::diag::Problems) {
        if !self.values.is_empty() {
            problems.map_text(|text| self.redact(text));
        }
    }

    /// Whether `text` holds any secret.
    pub fn contains_secret(&self, text: &str) -> bool {
        self.values.contains_secret(text)
    }

    /// The secrets that occur in a JSON value.
    pub fn values_in(&self, value: &serde_json::Value) -> Vec<String> {
        self.values.values_in(value)
    }

    /// Whether any string (or object key) in a JSON value holds a secret.
    pub fn json_contains_secret(&self, value: &serde_json::Value) -> bool {
        self.values.json_contains_secret(value)
    }
}

/// Decrypts the secret files a run needs, each once. The keys are taken from the
/// variables when the configuration is read; nothing is decrypted until asked. Debug
/// prints counts only (the documents are plaintext secrets).
pub struct SecretFiles {
    root: PathBuf,
    keys: Encryption,
    /// Parsed `${age:}` files by path.
    documents: HashMap<PathBuf, Result<Node, Failure>>,
    /// Values of the encrypted layers read so far.
    pub found: SecretValues,
}

impl fmt::Debug for SecretFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFiles")
            .field("root", &self.root)
            .field("documents", &self.documents.len())
            .field("found", &self.found)
            .finish_non_exhaustive()
    }
}

impl Default for SecretFiles {
    fn default() -> Self {
        SecretFiles {
            root: PathBuf::from("."),
            keys: Encryption::default(),
            documents: HashMap::new(),
            found: SecretValues::default(),
        }
    }
}

impl SecretFiles {
    /// `root`: the configuration directory `${age:}` paths are relative to.
    pub fn new(root: &Path, env: &dyn Variables) -> Self {
        SecretFiles {
            root: root.to_path_buf(),
            keys: decryption_keys(env),
            documents: HashMap::new(),
            found: SecretValues::default(),
        }
    }

    /// An encrypted layer's plaintext.
    pub fn decrypt_layer(&self, path: &Path) -> Result<Sensitive<String>, Failure> {
        decrypt_file(path, &self.keys)
    }

    /// The value of `file#key.path` (the body of `${age:…}`), as text: a secret the
    /// caller records.
    pub fn lookup(&mut self, reference: &str) -> Result<String, Problem> {
        let Some((file, key)) = reference
            .split_once('#')
            .filter(|(f, k)| !f.is_empty() && !k.is_empty())
        else {
            return Err(Problem::error(
                "config::interpolation",
                format!("`${{age:{reference}}}` names no key"),
            )
            .label("expected FILE#KEY.PATH")
            .help("write `${age:secrets/prod.yaml#proxmox.token}`: a file relative to the configuration directory, `#`, and a dotted key path inside it"));
        };
        let path = self.root.join(file);
        if !self.documents.contains_key(&path) {
            let shown = path.display().to_string();
            let document = self
                .decrypt_layer(&path)
                .and_then(|plain| parse_secret_yaml(plain.expose(), &shown));
            self.documents.insert(path.clone(), document);
        }
        let label = format!("needs ${{age:{reference}}}");
        let document = match &self.documents[&path] {
            Ok(document) => document,
            Err(failure) => return Err(failure.clone().into_problem().label(label)),
        };
        let found = document.lookup(&KeyPath::parse(key)).ok_or_else(|| {
            Problem::error(
                "config::secret-key-missing",
                format!("secret file `{}` has no key `{key}`", path.display()),
            )
            .label(label.clone())
            .help(format!(
                "add `{key}` with `infraflux secrets edit {}`, or fix the key path (dotted, e.g. `proxmox.token`)",
                path.display()
            ))
        })?;
        let text = match &found.value {
            Value::String(text) => text.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::List(_) | Value::Map(_) => {
                return Err(Problem::error(
                    "config::secret-not-scalar",
                    format!(
                        "`{key}` in secret file `{}` is {}, not a single value",
                        path.display(),
                        found.kind_name()
                    ),
                )
                .label(label)
                .help("point the key path at a string, number or boolean"));
            }
        };
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Vars(HashMap<&'static str, String>);
    impl Variables for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
    }

    #[test]
    fn encrypted_layer_names_drop_the_age_suffix() {
        assert!(is_encrypted_layer(Path::new("environments/prod.age.yaml")));
        assert!(is_encrypted_layer(Path::new("environments/prod.age.yml")));
        assert!(!is_encrypted_layer(Path::new("environments/prod.yaml")));
        assert_eq!(
            encrypted_layer_name(Path::new("environments/prod.age.yaml")),
            "prod"
        );
    }

    #[test]
    fn the_own_identity_variables_win_over_the_state_ones() {
        let vars = Vars(HashMap::from([
            (STATE_IDENTITY_FILE_VAR, "state.txt".to_string()),
            (IDENTITY_FILE_VAR, "config.txt".to_string()),
        ]));
        assert_eq!(
            decryption_keys(&vars).identities,
            vec![IdentitySource::File("config.txt".into())]
        );
        let vars = Vars(HashMap::from([(
            STATE_IDENTITY_FILE_VAR,
            "state.txt".to_string(),
        )]));
        assert_eq!(
            decryption_keys(&vars).identities,
            vec![IdentitySource::File("state.txt".into())]
        );
    }

    #[test]
    fn each_way_a_file_cannot_be_read_has_its_own_code_and_never_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Encryption::default();
        let plain = dir.path().join("plain.yaml");
        std::fs::write(&plain, "token: plain-secret-1\n").unwrap();
        let passphrase = dir.path().join("passphrase.yaml");
        let sealed = Encryption {
            passphrase: Some(Sensitive::new("pw".into())),
            ..Encryption::default()
        }
        .encrypt(b"token: sealed-secret-2\n")
        .unwrap();
        std::fs::write(&passphrase, sealed).unwrap();
        for (path, code) in [
            (
                dir.path().join("missing.yaml"),
                "config::secret-file-missing",
            ),
            (plain, "config::secret-not-encrypted"),
            (passphrase, "config::secret-wrong-key"),
        ] {
            let failure = decrypt_file(&path, &keys).unwrap_err();
            assert_eq!(failure.code, code, "{failure:?}");
            assert!(failure.message.contains(&path.display().to_string()));
            let text = format!("{failure:?}");
            assert!(
                !text.contains("secret-1") && !text.contains("secret-2"),
                "{text}"
            );
        }
        let failure = parse_secret_yaml("a: [x\n", "s.yaml").unwrap_err();
        assert_eq!(failure.code, "config::secret-file-yaml");
        assert!(failure.message.contains("at line"), "{}", failure.message);
    }

    #[test]
    fn secret_values_match_inside_strings_and_json_and_never_print() {
        let mut secrets = SecretValues::default();
        secrets.add_value("hunter2");
        secrets.add_value("");
        assert!(secrets.contains_secret("https://u:hunter2@git"));
        assert!(!secrets.contains_secret("anything else"));
        assert!(secrets.json_contains_secret(&serde_json::json!({"a": [{"b": "xhunter2"}]})));
        assert!(!format!("{secrets:?}").contains("hunter2"));
    }
}
