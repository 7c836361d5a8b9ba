//! Hostile and careless input (issue 16): the regression corpus in
//! `tests/fixtures/hostile/`, and the cases too large to keep as files.
//!
//! Each corpus case is a directory: `config/` holds files written over a copy of the
//! bundled example, `overlay/` (optional) an overlay the case may pass as
//! `{case}/overlay`, and `case.yaml` says why the case exists, what to run and what must
//! come out:
//!
//! ```yaml
//! why: what went wrong before
//! args: [plan, --env, dev, --refresh=false]   # default: [validate, --json]
//! remove: [clusters/edge.yaml]                # example files to delete
//! unset: [PROXMOX_TOKEN]                      # variables to leave unset
//! exit: 0                                     # default 1
//! expect:                                     # every problem, `code file:line:column`
//!   - config::no-clusters config/environments/staging.yaml:1:1
//! output_contains: ["…"]                      # in stdout or stderr
//! output_lacks: ["root:"]
//! ```
//!
//! With `validate --json` the problems must be exactly `expect`, in order; with any
//! other command each expected problem must be in the human report (its code and
//! `[file:line:column]`). Every run exits as said, and never panics.

use std::path::{Path, PathBuf};

mod support;

use serde::Deserialize;
use support::{TestContext, copy_dir};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    why: String,
    #[serde(default = "validate_json")]
    args: Vec<String>,
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    unset: Vec<String>,
    #[serde(default = "one")]
    exit: i32,
    expect: Vec<String>,
    #[serde(default)]
    output_contains: Vec<String>,
    #[serde(default)]
    output_lacks: Vec<String>,
}

fn validate_json() -> Vec<String> {
    vec!["validate".into(), "--json".into()]
}

fn one() -> i32 {
    1
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile")
}

/// The bundled example in a fresh project (`config/`), with the harness's variables (the
/// upstream mirror, the example's token).
fn example() -> TestContext {
    TestContext::with_example()
}

/// `infraflux --color never ARGS` in `dir`, without the `unset` variables.
fn infraflux(dir: &TestContext, args: &[String], unset: &[String]) -> std::process::Output {
    let mut command = dir.command();
    command.args(args);
    for name in unset {
        command.env_remove(name);
    }
    command.output().unwrap()
}

/// Run one corpus case; the problems it finds when they differ from the expectation.
fn run_case(case: &Path) -> Result<(), String> {
    let expectation: Expectation =
        serde_yaml::from_str(&std::fs::read_to_string(case.join("case.yaml")).unwrap())
            .map_err(|e| format!("case.yaml: {e}"))?;
    let dir = example();
    if case.join("config").exists() {
        copy_dir(&case.join("config"), &dir.path().join("config"));
    }
    if case.join("overlay").exists() {
        copy_dir(&case.join("overlay"), &dir.path().join("case/overlay"));
    }
    for file in &expectation.remove {
        std::fs::remove_file(dir.path().join("config").join(file)).unwrap();
    }
    let args: Vec<String> = expectation
        .args
        .iter()
        .map(|a| a.replace("{case}", "case"))
        .collect();
    let output = infraflux(&dir, &args, &expectation.unset);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let both = format!("{stdout}\n{stderr}");
    let context = || {
        format!(
            "({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            expectation.why
        )
    };
    if both.contains("panicked") {
        return Err(format!("panicked {}", context()));
    }
    if output.status.code() != Some(expectation.exit) {
        return Err(format!(
            "exit {:?}, expected {} {}",
            output.status.code(),
            expectation.exit,
            context()
        ));
    }
    let expected: Vec<String> = expectation
        .expect
        .iter()
        .map(|e| e.replace("{case}", "case"))
        .collect();
    if args.iter().any(|a| a == "--json") {
        let json: serde_json::Value =
            serde_json::from_str(&stdout).map_err(|e| format!("not JSON ({e}) {}", context()))?;
        let found: Vec<String> = json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                format!(
                    "{} {}:{}:{}",
                    p["code"].as_str().unwrap(),
                    p["file"].as_str().unwrap_or("?"),
                    p["line"],
                    p["column"]
                )
            })
            .collect();
        if found != expected {
            return Err(format!(
                "problems {found:#?}, expected {expected:#?} {}",
                context()
            ));
        }
    } else {
        for problem in &expected {
            let (code, at) = problem.split_once(' ').unwrap();
            if !both.contains(code) || !both.contains(&format!("[{at}]")) {
                return Err(format!("`{problem}` not reported {}", context()));
            }
        }
    }
    for text in &expectation.output_contains {
        if !both.contains(text.as_str()) {
            return Err(format!("`{text}` not in the output {}", context()));
        }
    }
    for text in &expectation.output_lacks {
        if both.contains(text.as_str()) {
            return Err(format!("`{text}` in the output {}", context()));
        }
    }
    Ok(())
}

#[test]
fn the_regression_corpus() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.yaml").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "the corpus is there: {cases:?}");
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            run_case(case)
                .err()
                .map(|error| format!("{}: {error}", case.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------
// Too large to keep as files

/// `validate --json` of the example with `files` written over it: (code, file:line).
fn problems_with(files: &[(&str, Vec<u8>)]) -> Vec<(String, String)> {
    let dir = example();
    for (path, bytes) in files {
        std::fs::write(dir.path().join("config").join(path), bytes).unwrap();
    }
    let output = infraflux(&dir, &validate_json(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["code"].as_str().unwrap().to_string(),
                format!("{}:{}", p["file"].as_str().unwrap_or("?"), p["line"]),
            )
        })
        .collect()
}

#[test]
fn a_file_over_the_size_limit_is_reported_and_not_read() {
    // 50 MB of real values took 35 s and 4.6 GB, and was accepted.
    let mut text = String::from("platform:\n  monitoring:\n    values:\n");
    let mut i = 0;
    while text.len() <= 1 << 20 {
        text.push_str(&format!("      key{i}: value{i}\n"));
        i += 1;
    }
    assert_eq!(
        problems_with(&[("defaults/large.yaml", text.into_bytes())]),
        [(
            "config::file-too-large".to_string(),
            "config/defaults/large.yaml:1".to_string()
        )]
    );
}

#[test]
fn files_under_the_size_limit_are_bounded_together() {
    // Seventeen files of 1 MiB less a little: each is fine, together they are not.
    let line = "# padding to reach the total size limit of the configuration\n";
    let text = line.repeat(((1 << 20) - 1024) / line.len());
    let files: Vec<(String, Vec<u8>)> = (0..17)
        .map(|i| {
            (
                format!("defaults/pad{i:02}.yaml"),
                text.clone().into_bytes(),
            )
        })
        .collect();
    let files: Vec<(&str, Vec<u8>)> = files.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    let problems = problems_with(&files);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].0, "config::configuration-too-large");
}

#[test]
fn a_layer_that_is_a_link_to_a_device_is_refused_not_read() {
    let dir = example();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("config/templates/zero.yaml")).unwrap();
    let output = infraflux(&dir, &validate_json(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("it is a device, not a regular file"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// Command line

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = example();
    for (shell, marker) in [
        ("bash", "_infraflux()"),
        ("zsh", "#compdef infraflux"),
        ("fish", "complete -c infraflux"),
    ] {
        let output = infraflux(&dir, &["completions".into(), shell.into()], &[]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{shell}");
        assert!(stdout.contains(marker), "{shell}: {stdout}");
        // Subcommands and their flags complete.
        assert!(
            stdout.contains("validate") && stdout.contains("allow-file-dir"),
            "{shell}"
        );
    }
}

#[test]
fn color_never_reaches_log_lines() {
    let dir = example();
    let plan = |color: &str| {
        let output = dir
            .command()
            .env_remove("NO_COLOR")
            .env("INFRAFLUX_LOG", "debug")
            .env("PROXMOX_TOKEN", "root@pam!infraflux=example")
            .args(["--config", "config", "--color", color])
            .args(["plan", "--env", "dev", "--refresh=false"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let always = plan("always");
    assert!(
        always.contains("DEBUG") && always.contains('\x1b'),
        "{always}"
    );
    let never = plan("never");
    assert!(never.contains("DEBUG"), "{never}");
    assert!(!never.contains('\x1b'), "{never:?}");
}
