//! The engine commands over the shipped example configuration (`config/`), driven through
//! the library with mock providers standing in for proxmox, talos and kubernetes.

mod support;

use infraflux::registry::ProviderRegistry;
use infraflux_provider_mock::Op;
use support::engine::Engine;

/// Creates all mock providers were asked for.
fn creates(engine: &Engine) -> usize {
    engine.count(Op::Create)
}

#[test]
fn plan_apply_plan_over_the_example_configuration() {
    let _filters = support::filters();
    let harness = Engine::new();
    let run = harness.run(&["plan", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let planned = run.stdout.matches(" will be created").count();
    insta::assert_snapshot!("plan_dev_first", run.stdout);

    // No terminal and no --auto-approve: refuse, change nothing.
    let run = harness.run(&["apply", "--env", "dev"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("apply_without_a_terminal_stderr", run.stderr);
    assert_eq!(creates(&harness), 0);

    let run = harness.run(&["apply", "--env", "dev", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    // The summary counts what the plan above created.
    assert!(run.stdout.contains(&format!(
        "Resources: {planned} added, 0 changed, 0 destroyed."
    )));
    insta::assert_snapshot!("apply_dev", run.stdout);
    // Progress lines come in the order resources finish: sorted.
    insta::assert_snapshot!(
        "apply_dev_progress_sorted",
        support::sorted_lines(&run.stderr)
    );
    assert_eq!(creates(&harness), planned);

    let run = harness.run(&["plan", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    insta::assert_snapshot!("plan_dev_after_apply", run.stdout);

    // Secrets never reach the output.
    let run = harness.run(&[
        "plan",
        "--env",
        "dev",
        "--json",
        "--replace",
        "dev/workload/talos_secrets.cluster",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("bundle-mock"), "{}", run.stdout);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["format_version"], 1);
}

#[test]
fn an_answer_other_than_yes_changes_nothing() {
    let _filters = support::filters();
    let harness = Engine::new().answers(&["y", "yes"]);
    let run = harness.run(&["apply", "--env", "dev", "--cluster", "workload"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("apply_answered_y_stderr", run.stderr);
    assert_eq!(creates(&harness), 0);
    let run = harness.run(&["apply", "--env", "dev", "--cluster", "workload"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(creates(&harness) > 0);
}

#[test]
fn saved_plans_apply_once_and_are_refused_after_the_state_moved() {
    let harness = Engine::new();
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
    assert_eq!(run.code, 0, "{}", run.stderr);
    let _filters = support::filters();
    insta::assert_snapshot!("plan_out_dev_workload", run.stdout);
    let run = harness.run(&["apply", file]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let run = harness.run(&["apply", file]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("apply_stale_plan_stderr", run.stderr);
}

#[test]
fn several_environments_need_a_choice() {
    let _filters = support::filters();
    let harness = Engine::new();
    let run = harness.run(&["plan"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("plan_without_an_environment_stderr", run.stderr);
}

#[test]
fn missing_providers_are_a_clear_error() {
    let _filters = support::filters();
    let mut harness = Engine::new();
    harness.registry = ProviderRegistry::new();
    let run = harness.run(&["plan", "--env", "dev"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("plan_without_providers_stderr", run.stderr);
}

#[test]
fn prod_is_protected_from_destroy() {
    let _filters = support::filters();
    let harness = Engine::new();
    let run = harness.run(&[
        "apply",
        "--env",
        "prod",
        "--cluster",
        "edge",
        "--auto-approve",
        "--skip-promotion-check",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = harness.run(&[
        "destroy",
        "--env",
        "prod",
        "--cluster",
        "edge",
        "--auto-approve",
    ]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("destroy_protected_prod_stderr", run.stderr);
    let deletes = harness.count(Op::Delete);
    assert_eq!(deletes, 0);
}

#[test]
fn destroy_deletes_dependants_first() {
    let _filters = support::filters();
    let harness = Engine::new();
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
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    insta::assert_snapshot!("destroy_dev_workload", run.stdout);
    let proxmox = harness.mock("proxmox").finished(Op::Delete);
    let talos = harness.mock("talos").finished(Op::Delete);
    assert!(
        proxmox.last().unwrap().contains("proxmox_image"),
        "{proxmox:?}"
    );
    assert!(talos.last().unwrap().contains("talos_secrets"), "{talos:?}");
    assert!(harness.memory.document("dev").unwrap().resources.is_empty());
}

#[test]
fn graph_prints_dot() {
    let _filters = support::filters();
    let harness = Engine::new();
    let run = harness.run(&["graph", "--env", "dev", "--cluster", "workload"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    insta::assert_snapshot!("graph_dev_workload", run.stdout);
}

#[test]
fn import_adopts_an_existing_object_and_the_next_plan_is_empty() {
    let _filters = support::filters();
    use infraflux::state::StateStore;
    let harness = Engine::new();
    let run = harness.run(&["apply", "--env", "dev", "--auto-approve"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let addr: infraflux::vocabulary::ResourceAddr = "dev/workload/proxmox_vm.cp-1".parse().unwrap();

    // Forget the VM (as `state rm` would); the object itself still exists.
    let mut state = harness.memory.load("dev").unwrap().unwrap();
    let id = state.resources.remove(&addr).unwrap().id.unwrap();
    state.serial += 1;
    harness.memory.persist(&state).unwrap();

    let run = harness.run(&["import", "dev/workload/proxmox_vm.cp-1", &id]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("Imported dev/workload/proxmox_vm.cp-1"),
        "{}",
        run.stdout
    );
    let state = harness.memory.load("dev").unwrap().unwrap();
    assert_eq!(state.resources[&addr].id.as_deref(), Some(id.as_str()));

    let run = harness.run(&["plan", "--env", "dev", "--detailed-exitcode"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);

    // Importing it again, or importing an address the configuration lacks, is refused.
    let run = harness.run(&["import", "dev/workload/proxmox_vm.cp-1", &id]);
    insta::assert_snapshot!("import_twice_stderr", run.stderr);
    let run = harness.run(&["import", "dev/workload/proxmox_vm.cp-9", "42"]);
    insta::assert_snapshot!("import_unknown_address_stderr", run.stderr);
}

#[test]
fn prod_is_refused_until_staging_ran_the_same_configuration() {
    let _filters = support::filters();
    let harness = Engine::new();
    let run = harness.run(&["apply", "--env", "prod", "--auto-approve"]);
    assert_eq!(run.code, 1);
    insta::assert_snapshot!("apply_prod_before_staging_stderr", run.stderr);
    assert_eq!(creates(&harness), 0);

    // Staging in turn needs dev.
    let run = harness.run(&["apply", "--env", "staging", "--auto-approve"]);
    insta::assert_snapshot!("apply_staging_before_dev_stderr", run.stderr);

    for env in ["dev", "staging", "prod"] {
        let run = harness.run(&["apply", "--env", env, "--auto-approve"]);
        assert_eq!(run.code, 0, "{env}: {}", run.stderr);
    }
    use infraflux::state::StateStore;
    let prod = harness.memory.load("prod").unwrap().unwrap();
    let record = prod
        .promotion
        .expect("a successful apply records the promotable configuration");
    assert_eq!(record.skipped_check, None);
    assert!(record.digest.starts_with("sha256:"));
}

#[test]
fn skipping_the_promotion_check_is_recorded_in_state() {
    let harness = Engine::new();
    let run = harness.run(&[
        "apply",
        "--env",
        "staging",
        "--auto-approve",
        "--skip-promotion-check",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("Warning: skipping the promotion check for `staging`"),
        "{}",
        run.stderr
    );
    use infraflux::state::StateStore;
    let staging = harness.memory.load("staging").unwrap().unwrap();
    let skipped = staging.promotion.unwrap().skipped_check.unwrap();
    assert!(
        skipped.contains("`dev` has no successful apply on record"),
        "{skipped}"
    );
}
