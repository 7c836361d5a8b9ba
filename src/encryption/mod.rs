//! Encryption at rest with [age](https://age-encryption.org), for state, saved plans and
//! configuration secrets (`config::secrets`), as OpenTofu's `internal/encryption`: its own
//! module, not inside state, so that each of them can use it without the others.
//!
//! An encrypted state file is an ASCII-armored age file whose plaintext is the normal
//! checksummed JSON envelope of `state::format`, so `age -d -i key.txt prod.json`
//! prints the plain state. Files are encrypted either to X25519 recipients (`age1…`,
//! any number: each one's identity decrypts) or to a passphrase (scrypt); age does not
//! mix the two in one file.
//!
//! Loading tells an encrypted file by its header (armored or binary age); a plaintext
//! file still loads, and the next write encrypts it (the migration path).
//!
//! Key material never reaches a message: identities and passphrases are
//! [`Sensitive`], and errors name the file and the setting, never the key.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::str::FromStr;

use age::secrecy::SecretString;

use crate::vocabulary::Sensitive;

/// Comma-separated age X25519 recipients (`age1…`) state is encrypted to.
pub const RECIPIENTS_VAR: &str = "INFRAFLUX_STATE_RECIPIENTS";
/// A file of age identities (`AGE-SECRET-KEY-1…`, as `age-keygen` writes) that decrypt state.
pub const IDENTITY_FILE_VAR: &str = "INFRAFLUX_STATE_IDENTITY_FILE";
/// An age identity itself (`AGE-SECRET-KEY-1…`).
pub const IDENTITY_VAR: &str = "INFRAFLUX_STATE_IDENTITY";
/// Passphrase mode (scrypt): encrypt and decrypt with this passphrase.
pub const PASSPHRASE_VAR: &str = "INFRAFLUX_STATE_PASSPHRASE";

/// The first line of an ASCII-armored age file.
pub const ARMOR_HEADER: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
/// The start of a binary age file.
pub const BINARY_HEADER: &str = "age-encryption.org/";

/// Why something cannot be encrypted or decrypted. The messages are those of the state
/// errors they become (`state::Error` converts each), naming the file and the setting,
/// never the key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "state file `{path}` is encrypted, and no {} is configured to decrypt it",
        if *passphrase { "passphrase" } else { "age identity" }
    )]
    NoKey {
        path: String,
        /// The file is encrypted to a passphrase (else to X25519 recipients).
        passphrase: bool,
    },
    #[error(
        "state file `{path}` cannot be decrypted: {}",
        if *passphrase { "the configured passphrase is wrong" } else { "it is encrypted to other keys than the configured identities" }
    )]
    WrongKey { path: String, passphrase: bool },
    #[error("state encryption is misconfigured: {reason}")]
    Config { reason: String },
    #[error("state file `{path}` is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{0}")]
    Other(String),
}

/// Where an age identity (`AGE-SECRET-KEY-1…`) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A file as `age-keygen` writes it: one identity per line, `#` comments.
    File(PathBuf),
    /// The identity text itself (e.g. from an environment variable).
    Key(Sensitive<String>),
}

/// How state is encrypted and decrypted. Debug shows no key material.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Encryption {
    /// Public keys (`age1…`) every write is encrypted to. Empty: the public keys of
    /// [`Encryption::identities`] (or the passphrase, when one is set).
    pub recipients: Vec<String>,
    /// Identities that decrypt state written to X25519 recipients.
    pub identities: Vec<IdentitySource>,
    /// Passphrase mode: encrypt to (and decrypt with) this passphrase.
    pub passphrase: Option<Sensitive<String>>,
}

/// Whether file contents are an age file (armored or binary), judged by the header.
pub fn is_encrypted(bytes: &[u8]) -> bool {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    bytes.starts_with(ARMOR_HEADER.as_bytes()) || bytes.starts_with(BINARY_HEADER.as_bytes())
}

/// Stored bytes as plaintext: decrypted with `encryption` when they are an age file,
/// as they are otherwise (a plaintext document still loads). Without `encryption`, an
/// encrypted file is a [`Error::NoKey`] naming `shown`.
pub fn open(
    encryption: Option<&Encryption>,
    bytes: Vec<u8>,
    shown: &str,
) -> Result<Vec<u8>, Error> {
    if !is_encrypted(&bytes) {
        return Ok(bytes);
    }
    match encryption {
        Some(encryption) => encryption.decrypt(&bytes, shown),
        // The header says whether it needs a passphrase or an identity.
        None => Encryption::default().decrypt(&bytes, shown),
    }
}

fn config_error(reason: impl Into<String>) -> Error {
    Error::Config {
        reason: reason.into(),
    }
}

impl Encryption {
    /// Whether anything is configured at all.
    pub fn is_empty(&self) -> bool {
        self.recipients.is_empty() && self.identities.is_empty() && self.passphrase.is_none()
    }

    /// The X25519 identities, read from their files or text.
    pub fn identities(&self) -> Result<Vec<age::x25519::Identity>, Error> {
        let mut identities = Vec::new();
        for source in &self.identities {
            match source {
                IdentitySource::File(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        config_error(format!(
                            "cannot read the age identity file `{}`: {e}",
                            path.display()
                        ))
                    })?;
                    identities.extend(parse_identities(&text, &format!("`{}`", path.display()))?);
                }
                IdentitySource::Key(text) => {
                    identities.extend(parse_identities(text.expose(), "the identity text")?);
                }
            }
        }
        Ok(identities)
    }

    /// Who a write is encrypted to.
    fn recipients(&self) -> Result<Vec<Box<dyn age::Recipient + Send>>, Error> {
        if let Some(passphrase) = &self.passphrase {
            if !self.recipients.is_empty() {
                return Err(config_error(
                    "both recipients and a passphrase are set; age encrypts a file to one or the other",
                ));
            }
            return Ok(vec![Box::new(age::scrypt::Recipient::new(secret(
                passphrase,
            )))]);
        }
        let mut recipients: Vec<Box<dyn age::Recipient + Send>> = Vec::new();
        if self.recipients.is_empty() {
            for identity in self.identities()? {
                recipients.push(Box::new(identity.to_public()));
            }
        } else {
            for (number, text) in self.recipients.iter().enumerate() {
                let text = text.trim();
                let recipient = age::x25519::Recipient::from_str(text).map_err(|_| {
                    // Shown only when it looks public: a secret key pasted here is not echoed.
                    let shown = if text.starts_with("age1") {
                        format!("`{text}`")
                    } else {
                        format!("recipient {}", number + 1)
                    };
                    config_error(format!(
                        "{shown} is not an age X25519 recipient (a public key `age1…`, as `age-keygen -y` prints)"
                    ))
                })?;
                recipients.push(Box::new(recipient));
            }
        }
        if recipients.is_empty() {
            return Err(config_error("no recipient, identity or passphrase is set"));
        }
        Ok(recipients)
    }

    /// `plain` as an ASCII-armored age file, to every recipient.
    pub fn encrypt(&self, plain: &[u8]) -> Result<Vec<u8>, Error> {
        let recipients = self.recipients()?;
        let encryptor = age::Encryptor::with_recipients(recipients.iter().map(|r| r.as_ref() as _))
            .map_err(|e| config_error(format!("cannot encrypt the state: {e}")))?;
        let failed = |e: std::io::Error| Error::Other(format!("cannot encrypt the state: {e}"));
        let armored = age::armor::ArmoredWriter::wrap_output(
            Vec::with_capacity(plain.len() * 2),
            age::armor::Format::AsciiArmor,
        )
        .map_err(failed)?;
        let mut writer = encryptor.wrap_output(armored).map_err(failed)?;
        writer.write_all(plain).map_err(failed)?;
        writer
            .finish()
            .and_then(|armored| armored.finish())
            .map_err(failed)
    }

    /// The plaintext of an age file (armored or binary); `path` names it in errors.
    pub fn decrypt(&self, bytes: &[u8], path: &str) -> Result<Vec<u8>, Error> {
        let damaged = |reason: String| Error::Corrupt {
            path: path.to_string(),
            reason,
        };
        let reader = age::armor::ArmoredReader::new(bytes);
        let decryptor = age::Decryptor::new_buffered(reader)
            .map_err(|e| damaged(format!("its age header cannot be read: {e}")))?;
        let passphrase = decryptor.is_scrypt();
        let no_key = || Error::NoKey {
            path: path.to_string(),
            passphrase,
        };
        let wrong_key = || Error::WrongKey {
            path: path.to_string(),
            passphrase,
        };
        let result = if passphrase {
            let Some(secret_text) = &self.passphrase else {
                return Err(no_key());
            };
            let identity = age::scrypt::Identity::new(secret(secret_text));
            decryptor.decrypt(std::iter::once(&identity as &dyn age::Identity))
        } else {
            let identities = self.identities()?;
            if identities.is_empty() {
                return Err(no_key());
            }
            decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        };
        let mut reader = match result {
            Ok(reader) => reader,
            Err(age::DecryptError::NoMatchingKeys) => return Err(wrong_key()),
            Err(age::DecryptError::DecryptionFailed) if passphrase => return Err(wrong_key()),
            Err(e) => return Err(damaged(format!("it cannot be decrypted: {e}"))),
        };
        let mut plain = Vec::with_capacity(bytes.len());
        reader
            .read_to_end(&mut plain)
            .map_err(|e| damaged(format!("its encrypted contents are damaged: {e}")))?;
        Ok(plain)
    }
}

fn secret(passphrase: &Sensitive<String>) -> SecretString {
    SecretString::from(passphrase.expose().clone())
}

/// The identities in age identity file text: one per line, blank lines and `#` comments
/// skipped. A bad line is reported by number, never by content.
fn parse_identities(text: &str, source: &str) -> Result<Vec<age::x25519::Identity>, Error> {
    let mut identities = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let identity = age::x25519::Identity::from_str(line).map_err(|_| {
            config_error(format!(
                "line {} of {source} is not an age X25519 identity (`AGE-SECRET-KEY-1…`, as `age-keygen` writes)",
                number + 1
            ))
        })?;
        identities.push(identity);
    }
    if identities.is_empty() {
        return Err(config_error(format!("{source} holds no age identity")));
    }
    Ok(identities)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    /// A new identity: (secret key text, public key).
    pub(crate) fn keypair() -> (String, String) {
        let identity = age::x25519::Identity::generate();
        (
            identity.to_string().expose_secret().to_string(),
            identity.to_public().to_string(),
        )
    }

    pub(crate) fn with_key(key: &str) -> Encryption {
        Encryption {
            identities: vec![IdentitySource::Key(Sensitive::new(key.to_string()))],
            ..Encryption::default()
        }
    }

    #[test]
    fn encrypted_output_is_armored_and_round_trips() {
        let (key, _) = keypair();
        let encryption = with_key(&key);
        let sealed = encryption.encrypt(b"{\"a\": 1}\n").unwrap();
        assert!(sealed.starts_with(ARMOR_HEADER.as_bytes()));
        assert!(is_encrypted(&sealed));
        assert!(!is_encrypted(b"{\"a\": 1}"));
        assert_eq!(encryption.decrypt(&sealed, "f").unwrap(), b"{\"a\": 1}\n");
    }

    #[test]
    fn debug_shows_no_key_material() {
        let (key, _) = keypair();
        let mut encryption = with_key(&key);
        encryption.passphrase = Some(Sensitive::new("correct horse".to_string()));
        let shown = format!("{encryption:?}");
        assert!(!shown.contains("AGE-SECRET-KEY"), "{shown}");
        assert!(!shown.contains("correct horse"), "{shown}");
        assert!(shown.contains("(sensitive)"), "{shown}");
    }

    #[test]
    fn bad_keys_are_named_by_position_not_content() {
        let encryption = with_key("# comment\nAGE-SECRET-KEY-1NOTAKEY\n");
        let error = encryption.encrypt(b"x").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("line 2 of the identity text"), "{text}");
        assert!(!text.contains("NOTAKEY"), "{text}");
        let encryption = Encryption {
            recipients: vec!["age1bogus".to_string()],
            ..Encryption::default()
        };
        let error = encryption.encrypt(b"x").unwrap_err();
        assert!(matches!(error, Error::Config { .. }), "{error}");
        assert!(error.to_string().contains("`age1bogus`"), "{error}");
        let (secret_key, _) = keypair();
        let encryption = Encryption {
            recipients: vec![secret_key.clone()],
            ..Encryption::default()
        };
        let error = encryption.encrypt(b"x").unwrap_err().to_string();
        assert!(error.contains("recipient 1 is not"), "{error}");
        assert!(!error.contains(&secret_key), "{error}");
        let (_, public) = keypair();
        let encryption = Encryption {
            recipients: vec![public],
            passphrase: Some(Sensitive::new("pw".to_string())),
            ..Encryption::default()
        };
        assert!(matches!(
            encryption.encrypt(b"x"),
            Err(Error::Config { .. })
        ));
    }
}
