//! Age-encrypted secrets in the configuration, through the binary: `${age:…}` and
//! `*.age.yaml` layers load with the key and fail with a diagnostic naming the file
//! without it; `infraflux secrets edit|encrypt|decrypt` round-trip a file.
//!
//! The fixtures under tests/fixtures/secrets are encrypted to a TEST-ONLY identity that
//! is committed on purpose (tests/fixtures/secrets/TEST-ONLY-age-identity.txt).

mod support;

use std::path::{Path, PathBuf};

use support::{Run, RunExt, TestContext, copy_dir};

const GRAFANA: &str = "Grafana-Age-Secret-7f3a9c";
const LAYER: &str = "Layer-Age-Secret-91c4e0";

fn fixtures() -> PathBuf {
    support::fixtures().join("secrets")
}

fn identity() -> PathBuf {
    fixtures().join("TEST-ONLY-age-identity.txt")
}

/// The shipped example plus the fixture's encrypted files, with `dev.yaml` referring to
/// a secret; none of the caller's key variables.
fn project() -> TestContext {
    let project = TestContext::with_example().token(Some("root@pam!ci=x"));
    copy_dir(&fixtures().join("config"), &project.config_dir());
    let dev = project.config_file("environments/dev.yaml");
    let mut text = std::fs::read_to_string(&dev).unwrap();
    text.push_str(
        "platform:\n  monitoring:\n    values:\n      grafana:\n        adminPassword: ${age:secrets/dev.yaml#grafana.admin_password}\n",
    );
    std::fs::write(dev, text).unwrap();
    project
}

fn assert_no_plaintext(output: &Run) {
    for secret in [GRAFANA, LAYER] {
        assert!(
            !output.stdout.contains(secret) && !output.stderr.contains(secret),
            "{}\n{}",
            output.stdout,
            output.stderr
        );
    }
}

#[test]
fn secrets_load_with_the_key_and_show_masked_with_their_provenance() {
    let dir = project();
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["validate", "--env", "dev"])
        .run();
    assert!(output.code == 0, "{}", output.stderr);
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args([
            "config",
            "show",
            "--env",
            "dev",
            "--cluster",
            "workload",
            "--provenance",
        ])
        .run();
    assert!(output.code == 0, "{}", output.stderr);
    assert_no_plaintext(&output);
    let line = |key: &str| {
        output
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no `{key}` in\n{}", output.stdout))
            .to_string()
    };
    let password = line("adminPassword:");
    let shared = line("sharedSecret:");
    let _filters = dir.filters();
    insta::assert_snapshot!("show_secret_lines", format!("{password}\n{shared}"));
}

/// A command that resolves dev/workload's secrets (`validate` reads none).
const RESOLVE: [&str; 6] = ["config", "show", "--env", "dev", "--cluster", "workload"];

#[test]
fn the_state_identity_is_the_fallback_key() {
    let dir = project();
    let output = dir
        .command()
        .env("INFRAFLUX_STATE_IDENTITY_FILE", identity())
        .args(RESOLVE)
        .run();
    assert!(output.code == 0, "{}", output.stderr);
}

#[test]
fn without_a_key_each_encrypted_file_is_a_diagnostic_naming_it() {
    let dir = project();
    // validate needs no secret (README "Interpolation").
    let output = dir.command().args(["validate", "--env", "dev"]).run();
    assert!(output.code == 0, "{}", output.stderr);
    let output = dir.command().args(RESOLVE).run();
    assert!(output.code != 0);
    assert_no_plaintext(&output);
    let err = &output.stderr;
    // The referencing file and line, the layer file itself, and the variable to set.
    let _filters = dir.filters();
    insta::assert_snapshot!("show_without_a_key_stderr", err);
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_wrong_key_is_a_diagnostic_with_the_way_out() {
    let dir = project();
    let other = dir.path().join("other-key.txt");
    let status = std::process::Command::new("age-keygen")
        .arg("-o")
        .arg(&other)
        .output();
    if status.is_err() {
        // Without the age CLI, write a key through the library instead.
        use age::secrecy::ExposeSecret;
        let identity = age::x25519::Identity::generate();
        std::fs::write(&other, identity.to_string().expose_secret()).unwrap();
    }
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", &other)
        .args(["validate", "--env", "dev"])
        .run();
    assert!(output.code != 0);
    let _filters = dir.filters();
    insta::assert_snapshot!("validate_with_a_wrong_key_stderr", output.stderr);
    assert_no_plaintext(&output);
}

#[test]
fn a_missing_file_a_missing_key_and_a_damaged_file_are_diagnostics() {
    let dir = project();
    let dev = dir.path().join("config/environments/dev.yaml");
    let mut text = std::fs::read_to_string(&dev).unwrap();
    text = text.replace(
        "grafana.admin_password",
        "grafana.no_such_key}\n        other: ${age:secrets/missing.yaml#a}\n        third: ${age:secrets/damaged.yaml#a",
    );
    std::fs::write(&dev, text).unwrap();
    std::fs::write(
        dir.path().join("config/secrets/damaged.yaml"),
        "-----BEGIN AGE ENCRYPTED FILE-----\nnot base64 at all\n-----END AGE ENCRYPTED FILE-----\n",
    )
    .unwrap();
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(RESOLVE)
        .run();
    assert!(output.code != 0);
    let err = &output.stderr;
    let _filters = dir.filters();
    insta::assert_snapshot!("show_missing_and_damaged_secrets_stderr", err);
    assert_no_plaintext(&output);
}

#[test]
fn a_problem_inside_an_encrypted_layer_names_its_line_but_never_quotes_it() {
    let dir = project();
    let layer = dir.path().join("config/environments/dev.age.yaml");
    let plain = "platform:\n  cert_manager:\n    verison: Layer-Age-Secret-91c4e0\n";
    let public = std::fs::read_to_string(fixtures().join("config/.age-recipients")).unwrap();
    let public = public.lines().find(|l| l.starts_with("age1")).unwrap();
    let encryption = infraflux::state::Encryption {
        recipients: vec![public.to_string()],
        ..Default::default()
    };
    std::fs::write(&layer, encryption.encrypt(plain.as_bytes()).unwrap()).unwrap();
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["validate", "--env", "dev"])
        .run();
    assert!(output.code != 0);
    let _filters = dir.filters();
    insta::assert_snapshot!(
        "validate_problem_in_an_encrypted_layer_stderr",
        output.stderr
    );
    assert_no_plaintext(&output);
}

/// An editor script: runs `body` with the file as `$1`.
fn editor(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

#[test]
fn secrets_edit_creates_reencrypts_and_wipes_its_temporary_file() {
    let dir = project();
    let work = dir.path();
    let file = work.join("config/secrets/new.yaml");
    // Record where the plaintext was and how it was protected, then write new content.
    let script = editor(
        work,
        "editor.sh",
        &format!(
            "echo \"$1\" > {seen}\nstat -c '%a' \"$1\" >> {seen}\nstat -c '%a' \"$(dirname \"$1\")\" >> {seen}\nprintf 'db:\\n  password: Edited-Secret-0a1b\\n' > \"$1\"",
            seen = work.join("seen.txt").display()
        ),
    );
    let output = dir
        .command()
        .env("EDITOR", &script)
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "edit", "config/secrets/new.yaml"])
        .run();
    assert!(output.code == 0, "{}", output.stderr);
    let _filters = dir.filters();
    insta::assert_snapshot!("edit_new_file_stderr", output.stderr);
    let sealed = std::fs::read_to_string(&file).unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!sealed.contains("Edited-Secret-0a1b"));
    let seen = std::fs::read_to_string(work.join("seen.txt")).unwrap();
    let mut lines = seen.lines();
    let temporary = PathBuf::from(lines.next().unwrap());
    assert_eq!(lines.next(), Some("600"), "{seen}");
    assert_eq!(lines.next(), Some("700"), "{seen}");
    assert!(!temporary.exists(), "the plaintext copy is removed");
    assert!(!temporary.parent().unwrap().exists());

    // The round trip: decrypt prints what the editor wrote; the edit sees it.
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "decrypt", "config/secrets/new.yaml"])
        .run();
    assert!(output.code == 0, "{}", output.stderr);
    assert_eq!(output.stdout, "db:\n  password: Edited-Secret-0a1b\n");
    // Interop: the `age` tool reads what `secrets edit` wrote (the fixtures themselves
    // were written by it).
    match std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity())
        .arg(&file)
        .output()
    {
        Ok(age) => assert_eq!(
            String::from_utf8(age.stdout).unwrap(),
            "db:\n  password: Edited-Secret-0a1b\n",
            "{}",
            String::from_utf8_lossy(&age.stderr)
        ),
        Err(error) if std::env::var_os("INFRAFLUX_REQUIRE_AGE").is_some() => {
            panic!("cannot run `age` ({error}), and INFRAFLUX_REQUIRE_AGE is set")
        }
        Err(error) => eprintln!("skipped: the age CLI check: cannot run `age`: {error}"),
    }
    let script = editor(work, "append.sh", "printf 'extra: 1\\n' >> \"$1\"");
    let output = dir
        .command()
        .env("VISUAL", &script)
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "edit", "config/secrets/new.yaml"])
        .run();
    assert!(output.code == 0, "{}", output.stderr);
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "decrypt", "config/secrets/new.yaml"])
        .run();
    assert_eq!(
        output.stdout,
        "db:\n  password: Edited-Secret-0a1b\nextra: 1\n"
    );
}

#[test]
fn secrets_edit_reopens_on_invalid_yaml_or_leaves_the_file_unchanged() {
    let dir = project();
    let work = dir.path();
    let file = work.join("config/secrets/dev.yaml");
    let before = std::fs::read(&file).unwrap();
    let broken = editor(work, "broken.sh", "printf 'a: [unclosed\\n' > \"$1\"");
    // No answer (end of input): abort, file untouched.
    let output = dir
        .command()
        .env("EDITOR", &broken)
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "edit", "config/secrets/dev.yaml"])
        .write_stdin("")
        .run();
    assert!(output.code != 0);
    let _filters = dir.filters();
    insta::assert_snapshot!("edit_invalid_yaml_unanswered_stderr", output.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), before);
    assert_no_plaintext(&output);

    // Broken the first time, fixed the second: answer yes, and it is saved.
    let count = work.join("count");
    let twice = editor(
        work,
        "twice.sh",
        &format!(
            "if [ -e {count} ]; then printf 'fixed: true\\n' > \"$1\"; else touch {count}; printf 'a: [unclosed\\n' > \"$1\"; fi",
            count = count.display()
        ),
    );
    let output = dir
        .command()
        .env("EDITOR", &twice)
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "edit", "config/secrets/dev.yaml"])
        .write_stdin("y\n")
        .run();
    assert!(output.code == 0, "{}", output.stderr);
    insta::assert_snapshot!("edit_invalid_yaml_then_fixed_stderr", output.stderr);
    let output = dir
        .command()
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "decrypt", "config/secrets/dev.yaml"])
        .run();
    assert_eq!(output.stdout, "fixed: true\n");

    // An editor that fails changes nothing.
    let after = std::fs::read(&file).unwrap();
    let failing = editor(work, "fail.sh", "printf 'x: 1\\n' > \"$1\"\nexit 3");
    let output = dir
        .command()
        .env("EDITOR", &failing)
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "edit", "config/secrets/dev.yaml"])
        .run();
    assert!(output.code != 0);
    insta::assert_snapshot!("edit_failing_editor_stderr", output.stderr);
    assert_eq!(std::fs::read(&file).unwrap(), after);
}

#[test]
fn secrets_edit_checks_an_encrypted_layer_against_its_format() {
    let dir = project();
    let work = dir.path();
    let file = work.join("config/environments/dev.age.yaml");
    let before = std::fs::read(&file).unwrap();
    let typo = editor(
        work,
        "typo.sh",
        "printf 'platform:\n  cert_manager:\n    verison: Typo-Secret-44\n' > \"$1\"",
    );
    let output = dir
        .command()
        .env("EDITOR", &typo)
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "edit", "config/environments/dev.age.yaml"])
        .run();
    assert!(output.code != 0);
    let _filters = dir.filters();
    insta::assert_snapshot!("edit_encrypted_layer_typo_stderr", output.stderr);
    assert!(
        !output.stderr.contains("Typo-Secret-44"),
        "{}",
        output.stderr
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn an_interrupt_during_the_edit_still_wipes_the_plaintext_copy() {
    let dir = project();
    let work = dir.path();
    // The editor writes, then interrupts infraflux (its parent, or the shell's) as a
    // Ctrl-C on the terminal would, and exits as editors do on one.
    let script = editor(
        work,
        "interrupt.sh",
        &format!(
            "echo \"$1\" > {seen}\nprintf 'x: Interrupted-Secret-9\\n' > \"$1\"\np=$PPID\nwhile [ \"$(ps -o comm= -p $p)\" != infraflux ]; do p=$(ps -o ppid= -p $p | tr -d ' '); done\nkill -INT $p\nsleep 0.2\nexit 130",
            seen = work.join("seen.txt").display()
        ),
    );
    let file = work.join("config/secrets/dev.yaml");
    let before = std::fs::read(&file).unwrap();
    let output = dir
        .command()
        .env("EDITOR", &script)
        .env("INFRAFLUX_AGE_IDENTITY_FILE", identity())
        .args(["secrets", "edit", "config/secrets/dev.yaml"])
        .run();
    assert!(output.code != 0);
    assert!(
        output.stderr.contains("nothing was changed"),
        "{}",
        output.stderr
    );
    assert_eq!(std::fs::read(&file).unwrap(), before);
    let seen = std::fs::read_to_string(work.join("seen.txt")).unwrap();
    let temporary = PathBuf::from(seen.trim());
    assert!(!temporary.exists(), "the plaintext copy is wiped");
}

#[test]
fn secrets_encrypt_seals_a_plaintext_file_in_place() {
    let dir = project();
    let work = dir.path();
    let file = work.join("config/secrets/plain.yaml");
    std::fs::write(&file, "token: Plain-Then-Sealed-22\n").unwrap();
    let output = dir
        .command()
        .args(["secrets", "encrypt", "config/secrets/plain.yaml"])
        .run();
    assert!(output.code == 0, "{}", output.stderr);
    let sealed = std::fs::read_to_string(&file).unwrap();
    assert!(sealed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!sealed.contains("Plain-Then-Sealed-22"));
    let output = dir
        .command()
        .args(["secrets", "encrypt", "config/secrets/plain.yaml"])
        .run();
    assert!(output.code != 0);
    let _filters = dir.filters();
    insta::assert_snapshot!("encrypt_twice_stderr", output.stderr);
}
