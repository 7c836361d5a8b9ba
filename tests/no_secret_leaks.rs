//! The grep test: the example configuration with distinctive secrets in every form a
//! secret can take (a `${env:}` Proxmox token, `${age:}` values in attributes the
//! providers do not call sensitive, an encrypted `*.age.yaml` layer, the Talos PKI and
//! kubeconfig the providers generate) goes through validate, config show, plan (human,
//! JSON, saved), apply against the mock providers, plan again, state list and state show,
//! with trace logging and state encryption on. None of the secrets may appear in stdout,
//! stderr, the logs, the saved plan or the state files; and they must appear where they
//! have to (decrypted, in what the providers received and in the decrypted state), so
//! the test fails if the secrets never went anywhere.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use infraflux::state::{Encryption, IdentitySource, LocalStore, StateStore};
use support::engine::Engine;
use support::{Run, RunExt, TestContext, copy_dir};

/// The Proxmox token's secret part, from `${env:PROXMOX_TOKEN}`.
const ENV_TOKEN: &str = "Env-Token-Secret-3e8d";
/// From `${age:secrets/dev.yaml#grafana.admin_password}`, into Helm values.
const AGE_VALUE: &str = "Grafana-Age-Secret-7f3a9c";
/// From `${age:secrets/dev.yaml#git.token}`, inside the GitOps repository URL.
const AGE_IN_URL: &str = "ghp-Age-Secret-5b1e2d";
/// From the encrypted layer `environments/dev.age.yaml`.
const AGE_LAYER: &str = "Layer-Age-Secret-91c4e0";

const SECRETS: [&str; 4] = [ENV_TOKEN, AGE_VALUE, AGE_IN_URL, AGE_LAYER];

fn fixtures() -> PathBuf {
    support::fixtures().join("secrets")
}

/// The shipped example, the fixture's encrypted files, and `dev.yaml` referring to them.
fn project(dir: &Path) -> PathBuf {
    let config = dir.join("config");
    copy_dir(&support::example_config(), &config);
    copy_dir(&fixtures().join("config"), &config);
    let dev = config.join("environments/dev.yaml");
    let text = std::fs::read_to_string(&dev).unwrap().replace(
        "  revision: dev\n",
        "  revision: dev\n  repository: https://ci:${age:secrets/dev.yaml#git.token}@git.example.internal/platform/apps.git\n",
    ) + "platform:\n  monitoring:\n    values:\n      grafana:\n        adminPassword: ${age:secrets/dev.yaml#grafana.admin_password}\n";
    assert!(text.contains("git.token"), "dev.yaml changed shape: {text}");
    std::fs::write(dev, text).unwrap();
    config
}

/// Every variable a run reads: the token, the configuration key, the state key.
struct Variables {
    state_key: PathBuf,
}

impl Variables {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PROXMOX_TOKEN", format!("root@pam!ci={ENV_TOKEN}")),
            (
                "INFRAFLUX_AGE_IDENTITY_FILE",
                fixtures()
                    .join("TEST-ONLY-age-identity.txt")
                    .display()
                    .to_string(),
            ),
            (
                "INFRAFLUX_STATE_IDENTITY_FILE",
                self.state_key.display().to_string(),
            ),
        ]
    }
}

impl Variables {
    /// The same variables for the in-process runs.
    fn engine(&self) -> support::engine::Variables {
        support::engine::Variables(
            self.pairs()
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
        )
    }
}

/// What the library logs (tracing, every level), for the in-process runs.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Writer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = Writer(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber per test binary");
    buffer
}

/// Everything the test saw, to grep at the end.
#[derive(Default)]
struct Seen {
    texts: Vec<(String, String)>,
}

impl Seen {
    fn add(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.texts.push((what.into(), text.into()));
    }

    /// None of [`SECRETS`] nor `generated` in anything seen.
    fn assert_clean(&self, generated: &[String]) {
        let secrets = SECRETS
            .iter()
            .map(|s| s.to_string())
            .chain(generated.iter().cloned());
        let secrets: Vec<String> = secrets.collect();
        for (what, text) in &self.texts {
            for secret in &secrets {
                assert!(
                    !text.contains(secret),
                    "secret `{secret}` leaked into {what}:\n{text}"
                );
            }
        }
    }
}

#[test]
fn no_secret_reaches_output_logs_plan_files_or_state() {
    let logs = capture_logs();
    let context = TestContext::new();
    let work = context.path().to_path_buf();
    let work = work.as_path();
    let config = project(work);

    // State encryption with a key of the test's own.
    let state_identity = age::x25519::Identity::generate();
    let state_key = work.join("state-key.txt");
    {
        use age::secrecy::ExposeSecret;
        std::fs::write(&state_key, state_identity.to_string().expose_secret()).unwrap();
    }
    let variables = Variables {
        state_key: state_key.clone(),
    };
    let encryption = Encryption {
        identities: vec![IdentitySource::File(state_key.clone())],
        ..Encryption::default()
    };
    let store = Arc::new(LocalStore::in_project(work).with_encryption(Some(encryption.clone())));

    // The engine commands in process, with mock providers that have the real providers'
    // schemas, and the real local state store with encryption.
    let engine = Engine::new()
        .config(&config)
        .store(store.clone())
        .variables(variables.engine())
        .global("-vv");
    let mocks = &engine.mocks;
    // The binary in the project, with the same variables and its own -vv logging.
    let context = variables
        .pairs()
        .into_iter()
        .fold(context, |context, (name, value)| context.env(name, value));
    let run_binary = |args: &[&str]| context.command().arg("-vv").args(args).run();

    let mut seen = Seen::default();
    let expect_ok = |what: &str, run: Run, seen: &mut Seen| -> Run {
        assert_eq!(run.code, 0, "{what}:\n{}\n{}", run.stdout, run.stderr);
        seen.add(format!("stdout of {what}"), run.stdout.clone());
        seen.add(format!("stderr of {what}"), run.stderr.clone());
        run
    };

    // Loading: validate and config show, through the binary (its own -vv logging).
    expect_ok(
        "validate",
        run_binary(&["validate", "--env", "dev"]),
        &mut seen,
    );
    for provenance in [false, true] {
        let mut args = vec!["config", "show", "--env", "dev", "--cluster", "workload"];
        if provenance {
            args.push("--provenance");
        }
        let run = expect_ok("config show", run_binary(&args), &mut seen);
        assert!(
            run.stdout.contains("adminPassword: (sensitive)"),
            "{}",
            run.stdout
        );
        assert!(
            run.stdout.contains("sharedSecret: (sensitive)"),
            "{}",
            run.stdout
        );
        assert!(run.stdout.contains("token: (sensitive)"), "{}", run.stdout);
    }

    // Planning: human, JSON, and a saved plan.
    let run = expect_ok("plan", engine.run(&["plan", "--env", "dev"]), &mut seen);
    assert!(run.stdout.contains("(sensitive)"), "{}", run.stdout);
    assert!(
        run.stdout.contains("+ repository") && run.stdout.contains("+ values"),
        "the attributes holding secrets are in the plan: {}",
        run.stdout
    );
    let run = expect_ok(
        "plan --json",
        engine.run(&["plan", "--env", "dev", "--json"]),
        &mut seen,
    );
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let handoff = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["address"]
                .as_str()
                .unwrap()
                .contains("kubernetes_handoff")
        })
        .expect("a handoff change");
    assert!(
        handoff["sensitive"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "repository"),
        "{handoff}"
    );
    let plan_file = work.join("dev.plan");
    expect_ok(
        "plan --out",
        engine.run(&["plan", "--env", "dev", "--out", plan_file.to_str().unwrap()]),
        &mut seen,
    );
    let plan_bytes = std::fs::read(&plan_file).unwrap();
    seen.add("the saved plan", String::from_utf8_lossy(&plan_bytes));
    assert!(
        infraflux::encryption::is_encrypted(&plan_bytes),
        "the saved plan is encrypted like the state"
    );
    let plan_plain = String::from_utf8(encryption.decrypt(&plan_bytes, "plan").unwrap()).unwrap();
    assert!(
        plan_plain.contains(AGE_VALUE),
        "decrypted, the saved plan holds what apply needs"
    );

    // Applying the saved plan against the mocks, then planning again (refresh reads).
    let run = expect_ok(
        "apply",
        engine.run(&["apply", plan_file.to_str().unwrap()]),
        &mut seen,
    );
    assert!(run.stdout.contains("Apply complete!"), "{}", run.stdout);
    let run = expect_ok(
        "plan after apply",
        engine.run(&["plan", "--env", "dev"]),
        &mut seen,
    );
    assert!(run.stdout.contains("No changes."), "{}", run.stdout);

    // Every secret reached a provider, decrypted.
    let received: String = mocks
        .iter()
        .flat_map(|m| m.objects())
        .map(|o| serde_json::Value::Object(o.attributes).to_string())
        .collect();
    for secret in [ENV_TOKEN, AGE_VALUE, AGE_IN_URL, AGE_LAYER] {
        assert!(
            received.contains(secret),
            "`{secret}` never reached a provider"
        );
    }

    // State: encrypted on disk, the secrets in it when decrypted, masked in every view.
    let state_dir = work.join(".infraflux/state");
    let mut state_files = 0;
    for entry in std::fs::read_dir(&state_dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        seen.add(
            format!("state file {}", path.display()),
            String::from_utf8_lossy(&bytes),
        );
        if path.extension().is_some_and(|e| e == "json") {
            state_files += 1;
            assert!(infraflux::encryption::is_encrypted(&bytes));
        }
    }
    assert_eq!(state_files, 1);
    let document = store.load("dev").unwrap().unwrap();
    let plain_state = serde_json::to_string(&document).unwrap();
    assert!(plain_state.contains(AGE_VALUE) && plain_state.contains(ENV_TOKEN));
    // What the providers generated and call sensitive (the Talos PKI, the kubeconfig):
    // the same rules hold for them.
    let mut generated = Vec::new();
    for resource in document.resources.values() {
        // A value recorded by reference is the referenced record's (its marker names an
        // address and attributes, no secret): resolved, it is what to look for.
        let attributes = document.resolve_stored(&resource.attributes).attributes;
        for name in &resource.sensitive {
            if let Some(value) = attributes.get(name) {
                strings(value, &mut generated);
            }
        }
    }
    generated.retain(|s| s.len() >= 6 && s != "(sensitive)");
    assert!(
        document.resources.keys().any(|a| a.kind == "talos_secrets") && !generated.is_empty(),
        "the Talos secrets are in state"
    );

    let run = expect_ok(
        "state list",
        run_binary(&[
            "--state-dir",
            work.to_str().unwrap(),
            "state",
            "list",
            "--env",
            "dev",
        ]),
        &mut seen,
    );
    let addresses: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    assert!(addresses.len() > 10, "{}", run.stdout);
    let mut masked = 0;
    for address in &addresses {
        for json in [false, true] {
            let mut args = vec![
                "--state-dir",
                work.to_str().unwrap(),
                "state",
                "show",
                address,
            ];
            if json {
                args.push("--json");
            }
            let run = expect_ok("state show", run_binary(&args), &mut seen);
            masked += run.stdout.matches("(sensitive)").count();
        }
    }
    assert!(masked > 0);

    // The library's own trace logs of the in-process runs.
    let logs = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "trace logging captured nothing");
    seen.add("the trace logs", logs);
    seen.assert_clean(&generated);
}

fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| strings(i, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}
