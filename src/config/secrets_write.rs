//! Writing age-encrypted configuration files (`infraflux secrets edit|encrypt`): who a
//! file is encrypted to, and an atomic write of the encrypted bytes.
//!
//! Recipients, first found wins (as SOPS keeps its rules with the repository, the usual
//! place is a `.age-recipients` file in the configuration directory):
//! 1. `INFRAFLUX_AGE_RECIPIENTS` (comma-separated `age1…`);
//! 2. the nearest `.age-recipients` file, from the secret file's directory upwards
//!    (one `age1…` per line, `#` comments; the format `age -R` reads);
//! 3. `INFRAFLUX_STATE_RECIPIENTS`;
//! 4. the public keys of the decryption identities ([`super::secrets::decryption_keys`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::interpolate::Variables;
use super::secrets::{Failure, RECIPIENTS_FILE, RECIPIENTS_VAR, decryption_keys};
use crate::encryption::Encryption;

use crate::encryption::RECIPIENTS_VAR as STATE_RECIPIENTS_VAR;

/// The encryption for writing `file`, and where its recipients came from (for the
/// message after a write).
pub fn recipients_for(file: &Path, env: &dyn Variables) -> Result<(Encryption, String), Failure> {
    let list = |text: &str, separator: char| -> Vec<String> {
        text.split(separator)
            .map(|line| line.split('#').next().unwrap_or_default().trim())
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect()
    };
    let from_var = |name: &str| {
        env.var(name)
            .map(|v| list(&v, ','))
            .filter(|r| !r.is_empty())
    };
    let encryption = |recipients| Encryption {
        recipients,
        ..Encryption::default()
    };
    if let Some(recipients) = from_var(RECIPIENTS_VAR) {
        return Ok((encryption(recipients), RECIPIENTS_VAR.to_string()));
    }
    if let Some(path) = recipients_file(file) {
        let text = std::fs::read_to_string(&path).map_err(|e| Failure {
            code: "secrets::recipients",
            message: format!("cannot read `{}`: {e}", path.display()),
            help: "it lists the public keys (`age1…`) secret files are encrypted to, one per line"
                .into(),
        })?;
        let recipients = list(&text, '\n');
        if recipients.is_empty() {
            return Err(Failure {
                code: "secrets::recipients",
                message: format!("`{}` lists no recipient", path.display()),
                help: "add the public keys (`age-keygen -y key.txt`) of everyone who may read the secrets, one per line".into(),
            });
        }
        return Ok((encryption(recipients), path.display().to_string()));
    }
    if let Some(recipients) = from_var(STATE_RECIPIENTS_VAR) {
        return Ok((encryption(recipients), STATE_RECIPIENTS_VAR.to_string()));
    }
    let keys = decryption_keys(env);
    if keys.identities.is_empty() {
        return Err(Failure {
            code: "secrets::no-recipients",
            message: format!("no recipients to encrypt `{}` to", file.display()),
            help: format!(
                "create an age key with `age-keygen -o key.txt`, put its public key (`age-keygen -y key.txt`) in {RECIPIENTS_FILE} in the configuration directory (or set {RECIPIENTS_VAR}), and set INFRAFLUX_AGE_IDENTITY_FILE=key.txt to read the secrets"
            ),
        });
    }
    Ok((keys, "the public key of your identity".to_string()))
}

/// The nearest `.age-recipients` at or above the file's directory.
fn recipients_file(file: &Path) -> Option<PathBuf> {
    let parent = file.parent().filter(|p| !p.as_os_str().is_empty());
    let start = std::path::absolute(parent.unwrap_or(Path::new("."))).ok()?;
    start
        .ancestors()
        .map(|dir| dir.join(RECIPIENTS_FILE))
        .find(|candidate| candidate.is_file())
}

/// Encrypt `plain` to `encryption`'s recipients and replace `path` atomically: a
/// temporary file beside it, flushed to disk, renamed over it; a reader sees the old file
/// or the new one, never half of one.
pub fn write_encrypted(path: &Path, plain: &[u8], encryption: &Encryption) -> Result<(), Failure> {
    let failed = |what: &str, error: &dyn std::fmt::Display| Failure {
        code: "secrets::write",
        message: format!("cannot {what} `{}`: {error}", path.display()),
        help: "check the recipients and that the directory is writable".into(),
    };
    let sealed = encryption
        .encrypt(plain)
        .map_err(|e| failed("encrypt", &e))?;
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(directory).map_err(|e| failed("write", &e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("secret");
    let temporary = directory.join(format!(".{name}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&sealed)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself is durable once the directory is synced.
        if let Ok(dir) = std::fs::File::open(directory) {
            let _ = dir.sync_all();
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        failed("write", &e)
    })
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
    fn the_nearest_recipients_file_is_used_below_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("config/secrets");
        std::fs::create_dir_all(&secrets).unwrap();
        std::fs::write(
            dir.path().join("config").join(RECIPIENTS_FILE),
            "# team\nage1aaa # alice\n\nage1bbb\n",
        )
        .unwrap();
        let file = secrets.join("prod.yaml");
        let (encryption, source) = recipients_for(&file, &Vars(HashMap::new())).unwrap();
        assert_eq!(encryption.recipients, vec!["age1aaa", "age1bbb"]);
        assert!(source.ends_with(RECIPIENTS_FILE), "{source}");
        let vars = Vars(HashMap::from([(RECIPIENTS_VAR, "age1ccc, ".to_string())]));
        let (encryption, source) = recipients_for(&file, &vars).unwrap();
        assert_eq!(encryption.recipients, vec!["age1ccc"]);
        assert_eq!(source, RECIPIENTS_VAR);
    }

    #[test]
    fn without_any_key_the_error_says_how_to_make_one() {
        let dir = tempfile::tempdir().unwrap();
        let error = recipients_for(&dir.path().join("s.yaml"), &Vars(HashMap::new())).unwrap_err();
        assert_eq!(error.code, "secrets::no-recipients");
        assert!(error.help.contains("age-keygen"), "{}", error.help);
    }
}
