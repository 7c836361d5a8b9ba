//! `infraflux secrets edit|encrypt|decrypt`: the round trip of an age-encrypted
//! configuration file (`config::secrets`).
//!
//! `edit` decrypts into a private temporary file (mode 0600 in a 0700 directory, on
//! `/dev/shm` where there is one, so the plaintext stays in memory), opens `$VISUAL` or
//! `$EDITOR`, checks the YAML when the editor exits (offering to open it again on an
//! error), encrypts to the recipients (`config::secrets_write`) and replaces the file
//! atomically. The temporary file is overwritten with zeros and removed on every path.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::SecretsFileArgs;
use crate::config::LayerKind;
use crate::config::node::{Node, Value};
use crate::config::schema::check_layer;
use crate::config::secrets::{
    Failure, SecretValues, decrypt_file, decryption_keys, is_encrypted_layer, parse_secret_yaml,
};
use crate::config::secrets_write::{recipients_for, write_encrypted};
use crate::config::{ProcessVariables, Variables};
use crate::diag::{Problems, Severity};
use crate::encryption::is_encrypted;
use crate::operation::diagnostic_text;

/// What a new secret file starts as.
const TEMPLATE: &str = "# Secrets for InfraFlux, encrypted with age when you close the editor.\n# Refer to a value from a layer file as ${age:<this file, relative to the config directory>#key.path}\n# e.g.\n# proxmox:\n#   token: root@pam!infraflux=...\n";

fn report(failure: Failure) -> miette::Report {
    diagnostic_text(failure.message, Some(failure.help))
}

pub fn edit(args: &SecretsFileArgs) -> miette::Result<ExitCode> {
    let mut stdin = std::io::stdin().lock();
    edit_with(&args.file, &ProcessVariables, &mut stdin)
}

/// `edit`, with the environment and the answers to "open the editor again?" given.
pub fn edit_with(
    path: &Path,
    env: &dyn Variables,
    answers: &mut dyn BufRead,
) -> miette::Result<ExitCode> {
    let existing = path.exists();
    let original = if existing {
        decrypt_file(path, &decryption_keys(env))
            .map_err(report)?
            .expose()
            .clone()
    } else {
        TEMPLATE.to_string()
    };
    // Known before the editor opens: nobody should edit for nothing.
    let (encryption, source) = recipients_for(path, env).map_err(report)?;
    let scratch = Scratch::new(path, &original)?;
    #[cfg(unix)]
    let _signals = SignalsGoToTheEditor::install();
    let editor = env
        .var("VISUAL")
        .or_else(|| env.var("EDITOR"))
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "vi".to_string());
    let edited = loop {
        run_editor(&editor, &scratch.path)?;
        let text = std::fs::read_to_string(&scratch.path).map_err(|e| {
            diagnostic_text(
                format!("cannot read the edited file back: {e}"),
                Some(format!("`{}` was left unchanged", path.display())),
            )
        })?;
        match check(&text, path) {
            Ok(()) => break text,
            Err(failure) => {
                eprintln!("error: {}", failure.message);
                eprint!("Open the editor again? [Y/n] ");
                let _ = std::io::stderr().flush();
                let mut answer = String::new();
                let read = answers.read_line(&mut answer).unwrap_or(0);
                let answer = answer.trim().to_ascii_lowercase();
                if read == 0 || !(answer.is_empty() || answer == "y" || answer == "yes") {
                    return Err(diagnostic_text(
                        format!(
                            "{}; `{}` was left unchanged",
                            failure.message,
                            path.display()
                        ),
                        Some("run `infraflux secrets edit` again and fix the YAML".into()),
                    ));
                }
            }
        }
    };
    if existing && edited == original {
        eprintln!("no changes; `{}` left as it was", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    write_encrypted(path, edited.as_bytes(), &encryption).map_err(report)?;
    eprintln!(
        "encrypted `{}` to the recipients of {source}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn encrypt(args: &SecretsFileArgs) -> miette::Result<ExitCode> {
    let path = &args.file;
    let bytes = std::fs::read(path).map_err(|e| {
        diagnostic_text(
            format!("cannot read `{}`: {e}", path.display()),
            Some(
                "pass a plaintext YAML file; `infraflux secrets edit FILE` creates a new one"
                    .into(),
            ),
        )
    })?;
    if is_encrypted(&bytes) {
        return Err(diagnostic_text(
            format!("`{}` is already encrypted", path.display()),
            Some("change it with `infraflux secrets edit`".into()),
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        diagnostic_text(
            format!("`{}` is not UTF-8 text", path.display()),
            Some("a secret file holds YAML".into()),
        )
    })?;
    check(&text, path).map_err(report)?;
    let (encryption, source) = recipients_for(path, &ProcessVariables).map_err(report)?;
    write_encrypted(path, text.as_bytes(), &encryption).map_err(report)?;
    eprintln!(
        "encrypted `{}` to the recipients of {source}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn decrypt(args: &SecretsFileArgs) -> miette::Result<ExitCode> {
    let plain = decrypt_file(&args.file, &decryption_keys(&ProcessVariables)).map_err(report)?;
    // Asked for explicitly: the one place plaintext goes to stdout.
    print!("{}", plain.expose());
    Ok(ExitCode::SUCCESS)
}

/// A secret file holds one YAML mapping (or nothing yet); an encrypted layer
/// (`environments/prod.age.yaml`) also follows its layer's format.
fn check(text: &str, path: &Path) -> Result<(), Failure> {
    let node = parse_secret_yaml(text, &path.display().to_string())?;
    match node.value {
        Value::Map(_) | Value::Null => check_layer_format(&node, text, path),
        _ => Err(Failure {
            code: "secrets::not-a-mapping",
            message: format!(
                "`{}` must hold a mapping of `key: value` lines, found {}",
                path.display(),
                node.kind_name()
            ),
            help: "write `key: value` lines at the top level".into(),
        }),
    }
}

fn check_layer_format(node: &Node, text: &str, path: &Path) -> Result<(), Failure> {
    let kind = path
        .parent()
        .and_then(|dir| dir.file_name())
        .and_then(|name| name.to_str())
        .and_then(LayerKind::parse);
    let Some(kind) = kind.filter(|_| is_encrypted_layer(path)) else {
        return Ok(());
    };
    let mut problems = Problems::new();
    check_layer(kind, node, text, &mut problems);
    // A check may quote a value: every value of the file is a secret.
    let mut secrets = SecretValues::default();
    secrets.add_file(node.origin.file, node);
    secrets.redact_problems(&mut problems);
    let errors: Vec<String> = problems
        .sorted()
        .into_iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| {
            let at = p
                .origin
                .map(|o| format!("line {}, column {}: ", o.line, o.column))
                .unwrap_or_default();
            let help = p
                .help
                .as_deref()
                .map(|h| format!(" ({h})"))
                .unwrap_or_default();
            format!("{at}{}{help}", p.message)
        })
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    Err(Failure {
        code: "secrets::layer-format",
        message: format!(
            "`{}` is not a valid {} layer: {}",
            path.display(),
            kind.noun(),
            errors.join("; ")
        ),
        help:
            "fix it with `infraflux secrets edit`; `infraflux config schema` describes the format"
                .into(),
    })
}

fn run_editor(editor: &str, file: &Path) -> miette::Result<()> {
    // Through the shell, so `EDITOR="code --wait"` works as it does for git.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("infraflux-secrets-edit")
        .arg(file)
        .status()
        .map_err(|e| {
            diagnostic_text(
                format!("cannot start the editor `{editor}`: {e}"),
                Some("set VISUAL or EDITOR to your editor's command".into()),
            )
        })?;
    if !status.success() {
        return Err(diagnostic_text(
            format!("the editor `{editor}` exited with {status}; nothing was changed"),
            Some("save and quit the editor normally to keep the changes".into()),
        ));
    }
    Ok(())
}

/// While the plaintext copy exists, Ctrl-C, a closed terminal or a `kill` must not end
/// this process before it wipes the copy: such signals are caught (and left to the
/// editor, which gets them too); an editor that exits on one leaves the file unchanged.
/// tokio's handlers replace the default "terminate" for the rest of the process, which
/// ends right after the edit.
#[cfg(unix)]
struct SignalsGoToTheEditor {
    _runtime: Option<tokio::runtime::Runtime>,
    _signals: Vec<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
impl SignalsGoToTheEditor {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return SignalsGoToTheEditor {
                _runtime: None,
                _signals: Vec::new(),
            };
        };
        let signals = runtime.block_on(async {
            [
                SignalKind::interrupt(),
                SignalKind::hangup(),
                SignalKind::terminate(),
            ]
            .into_iter()
            .filter_map(|kind| signal(kind).ok())
            .collect()
        });
        SignalsGoToTheEditor {
            _runtime: Some(runtime),
            _signals: signals,
        }
    }
}

/// The plaintext copy the editor works on, wiped when dropped.
struct Scratch {
    directory: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    fn new(target: &Path, text: &str) -> miette::Result<Scratch> {
        let failed = |e: std::io::Error| {
            diagnostic_text(
                format!("cannot create a private temporary file: {e}"),
                Some("set TMPDIR to a writable directory".into()),
            )
        };
        // tmpfs when available: the plaintext then never reaches a disk.
        let shm = Path::new("/dev/shm");
        let base = if shm.is_dir() && tempfile::tempdir_in(shm).is_ok() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let directory = tempfile::Builder::new()
            .prefix("infraflux-secrets-")
            .tempdir_in(base)
            .map_err(failed)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(directory.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(failed)?;
        }
        // Keep the name's extension so the editor highlights YAML.
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
            .unwrap_or("secrets.yaml");
        let path = directory.path().join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)?;
        Ok(Scratch { directory, path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Overwrite before removing (editors may have left backups beside it: the whole
        // directory goes, and every file in it is wiped first).
        if let Ok(entries) = std::fs::read_dir(self.directory.path()) {
            for entry in entries.flatten() {
                let path = entry.path();
                if let Ok(length) = std::fs::metadata(&path).map(|m| m.len())
                    && let Ok(mut file) = std::fs::OpenOptions::new().write(true).open(&path)
                {
                    let _ = file.write_all(&vec![0u8; length as usize]);
                    let _ = file.sync_all();
                }
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}
