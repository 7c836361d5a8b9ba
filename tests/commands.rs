//! The engine commands over the shipped example configuration (`config/`), driven through
//! the library with mock providers standing in for proxmox, talos and kubernetes.

mod support {
    pub mod engine;
}

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use infraflux::registry::ProviderRegistry;
use infraflux_provider_mock::Op;
use support::engine::Harness;

#[test]
fn plan_apply_plan_over_the_example_configuration() {
    let harness = Harness::new();
    let run = harness.run(&["plan", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(run.code, ExitCode::from(2), "{}", run.err);
    let planned = run.out.matches(" will be created").count();
    insta::assert_snapshot!("plan_dev_first", run.out);
    assert!(
        run.out
            .contains("# dev/workload/proxmox_vm.cp-1 will be created"),
        "{}",
        run.out
    );
    assert!(
        run.out.contains("+ vmid        = (known after apply)"),
        "{}",
        run.out
    );
    assert!(run.out.contains("Plan: "));

    // No terminal and no --auto-approve: refuse, change nothing.
    let run = harness.run(&["apply", "--env", "dev"]);
    assert_eq!(run.code, ExitCode::from(1));
    assert!(run.err.contains("cannot ask for approval"), "{}", run.err);
    assert_eq!(harness.creates(), 0);

    let run = harness.run(&["apply", "--env", "dev", "--auto-approve"]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}\n{}", run.out, run.err);
    assert!(
        run.out.contains("Apply complete! Resources:"),
        "{}",
        run.out
    );
    assert!(
        run.err
            .contains("dev/workload/talos_bootstrap.cluster: Creation complete after")
    );
    assert_eq!(harness.creates(), planned);
    assert!(run.out.contains(&format!(
        "Resources: {planned} added, 0 changed, 0 destroyed."
    )));

    let run = harness.run(&["plan", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.out);
    assert!(run.out.contains("No changes."));

    // Secrets never reach the output.
    let run = harness.run(&[
        "plan",
        "--env",
        "dev",
        "--json",
        "--replace",
        "dev/workload/talos_secrets.cluster",
    ]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    assert!(!run.out.contains("bundle-mock"), "{}", run.out);
    let json: serde_json::Value = serde_json::from_str(&run.out).unwrap();
    assert_eq!(json["format_version"], 1);
}

#[test]
fn an_answer_other_than_yes_changes_nothing() {
    let mut harness = Harness::new();
    harness.answers = Some(Arc::new(Mutex::new(vec!["y".into(), "yes".into()])));
    let run = harness.run(&["apply", "--env", "dev", "--cluster", "workload"]);
    assert_eq!(run.code, ExitCode::from(1));
    assert!(run.err.contains("Apply cancelled"));
    assert_eq!(harness.creates(), 0);
    let run = harness.run(&["apply", "--env", "dev", "--cluster", "workload"]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    assert!(harness.creates() > 0);
}

#[test]
fn saved_plans_apply_once_and_are_refused_after_the_state_moved() {
    let harness = Harness::new();
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("dev.plan");
    let file = file.to_str().unwrap();
    let run = harness.run(&[
        "plan",
        "--env",
        "dev",
        "--cluster",
        "workload",
        "--out",
        file,
    ]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    assert!(run.out.contains("infraflux apply"));
    let run = harness.run(&["apply", file]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}\n{}", run.out, run.err);
    let run = harness.run(&["apply", file]);
    assert_eq!(run.code, ExitCode::from(1));
    assert!(
        run.err
            .contains("the saved plan is stale: the state changed since it was made"),
        "{}",
        run.err
    );
    assert!(run.err.contains("plan --out"), "{}", run.err);
}

#[test]
fn several_environments_need_a_choice() {
    let harness = Harness::new();
    let run = harness.run(&["plan"]);
    assert_eq!(run.code, ExitCode::from(1));
    assert!(run.err.contains("choose an environment"), "{}", run.err);
}

#[test]
fn missing_providers_are_a_clear_error() {
    let mut harness = Harness::new();
    harness.registry = ProviderRegistry::new();
    let run = harness.run(&["plan", "--env", "dev"]);
    assert_eq!(run.code, ExitCode::from(1));
    assert!(
        run.err.contains("no provider registered for `proxmox`"),
        "{}",
        run.err
    );
}

#[test]
fn prod_is_protected_from_destroy() {
    let harness = Harness::new();
    let run = harness.run(&[
        "apply",
        "--env",
        "prod",
        "--cluster",
        "edge",
        "--auto-approve",
        "--skip-promotion-check",
    ]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    let run = harness.run(&[
        "destroy",
        "--env",
        "prod",
        "--cluster",
        "edge",
        "--auto-approve",
    ]);
    assert_eq!(run.code, ExitCode::from(1));
    assert!(
        run.err.contains("protected by lifecycle.prevent_destroy"),
        "{}",
        run.err
    );
    let deletes: usize = harness.mocks.iter().map(|m| m.count(Op::Delete)).sum();
    assert_eq!(deletes, 0);
}

#[test]
fn destroy_deletes_dependants_first() {
    let harness = Harness::new();
    harness.run(&[
        "apply",
        "--env",
        "dev",
        "--cluster",
        "workload",
        "--auto-approve",
    ]);
    let run = harness.run(&[
        "destroy",
        "--env",
        "dev",
        "--cluster",
        "workload",
        "--auto-approve",
    ]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}\n{}", run.out, run.err);
    assert!(run.out.contains("Destroy complete!"), "{}", run.out);
    let proxmox = harness.mocks[0].finished(Op::Delete);
    let talos = harness.mocks[1].finished(Op::Delete);
    assert!(
        proxmox.last().unwrap().contains("proxmox_image"),
        "{proxmox:?}"
    );
    assert!(talos.last().unwrap().contains("talos_secrets"), "{talos:?}");
    assert!(harness.store.document("dev").unwrap().resources.is_empty());
}

#[test]
fn graph_prints_dot() {
    let harness = Harness::new();
    let run = harness.run(&["graph", "--env", "dev", "--cluster", "workload"]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    assert!(run.out.starts_with("digraph infraflux {"));
    assert!(run.out.contains(
        "\"dev/workload/talos_bootstrap.cluster\" -> \"dev/workload/talos_kubeconfig.cluster\" [label = \"depends_on\"];"
    ), "{}", run.out);
}

#[test]
fn import_adopts_an_existing_object_and_the_next_plan_is_empty() {
    use infraflux::state::StateStore;
    let harness = Harness::new();
    let run = harness.run(&["apply", "--env", "dev", "--auto-approve"]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    let addr: infraflux::vocabulary::ResourceAddr = "dev/workload/proxmox_vm.cp-1".parse().unwrap();

    // Forget the VM (as `state rm` would); the object itself still exists.
    let mut state = harness.store.load("dev").unwrap().unwrap();
    let id = state.resources.remove(&addr).unwrap().id.unwrap();
    state.serial += 1;
    harness.store.persist(&state).unwrap();

    let run = harness.run(&["import", "dev/workload/proxmox_vm.cp-1", &id]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    assert!(
        run.out.starts_with("Imported dev/workload/proxmox_vm.cp-1"),
        "{}",
        run.out
    );
    let state = harness.store.load("dev").unwrap().unwrap();
    assert_eq!(state.resources[&addr].id.as_deref(), Some(id.as_str()));

    let run = harness.run(&["plan", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}{}", run.out, run.err);

    // Importing it again, or importing an address the configuration lacks, is refused.
    let run = harness.run(&["import", "dev/workload/proxmox_vm.cp-1", &id]);
    assert!(run.err.contains("is already managed"), "{}", run.err);
    let run = harness.run(&["import", "dev/workload/proxmox_vm.cp-9", "42"]);
    assert!(
        run.err.contains("is not in the configuration"),
        "{}",
        run.err
    );
}

#[test]
fn prod_is_refused_until_staging_ran_the_same_configuration() {
    let harness = Harness::new();
    let run = harness.run(&["apply", "--env", "prod", "--auto-approve"]);
    assert_eq!(run.code, ExitCode::from(1));
    assert!(
        run.err
            .contains("refusing to apply `prod`: `staging` has no successful apply on record"),
        "{}",
        run.err
    );
    assert_eq!(harness.creates(), 0);

    // Staging in turn needs dev.
    let run = harness.run(&["apply", "--env", "staging", "--auto-approve"]);
    assert!(
        run.err.contains("`dev` has no successful apply on record"),
        "{}",
        run.err
    );

    for env in ["dev", "staging", "prod"] {
        let run = harness.run(&["apply", "--env", env, "--auto-approve"]);
        assert_eq!(run.code, ExitCode::SUCCESS, "{env}: {}", run.err);
    }
    use infraflux::state::StateStore;
    let prod = harness.store.load("prod").unwrap().unwrap();
    let record = prod
        .promotion
        .expect("a successful apply records the promotable configuration");
    assert_eq!(record.skipped_check, None);
    assert!(record.digest.starts_with("sha256:"));
}

#[test]
fn skipping_the_promotion_check_is_recorded_in_state() {
    let harness = Harness::new();
    let run = harness.run(&[
        "apply",
        "--env",
        "staging",
        "--auto-approve",
        "--skip-promotion-check",
    ]);
    assert_eq!(run.code, ExitCode::SUCCESS, "{}", run.err);
    assert!(
        run.err
            .contains("Warning: skipping the promotion check for `staging`"),
        "{}",
        run.err
    );
    use infraflux::state::StateStore;
    let staging = harness.store.load("staging").unwrap().unwrap();
    let skipped = staging.promotion.unwrap().skipped_check.unwrap();
    assert!(
        skipped.contains("`dev` has no successful apply on record"),
        "{skipped}"
    );
}
