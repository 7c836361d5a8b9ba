use std::sync::Arc;

use infraflux_provider::{is_unknown, reference};
use infraflux_provider_mock::Op;
use serde_json::json;

use super::*;
use crate::apply::tests::Rig;
use crate::state::ResourceState;
use crate::testing::{addr, desired, runtime};

fn resources() -> Vec<DesiredResource> {
    vec![
        desired("image", json!({"value": "talos", "zone": "pve1"}), &[]),
        desired(
            "vm",
            json!({"value": 4096, "input": reference("dev/w/mock_thing.image", "out")}),
            &[],
        ),
        desired(
            "config",
            json!({"value": "cp", "input": reference("dev/w/mock_thing.vm", "secret")}),
            &["vm"],
        ),
    ]
}

/// [`resources`] planned against the rig's state.
async fn planned(rig: &Rig, options: &PlanOptions) -> Result<Plan, Error> {
    plan(resources(), &rig.state(), &rig.registry, options).await
}

/// Human output with the random lineage left out (it is not printed anyway).
fn human_text(plan: &Plan) -> String {
    render::human(plan, false)
}

#[tokio::test]
async fn a_first_plan_creates_everything_with_unknowns_marked() {
    let rig = Rig::new();
    let plan = rig.plan(&resources()).await;
    assert_eq!(
        plan.summary(),
        Summary {
            add: 3,
            ..Summary::default()
        }
    );
    let vm = plan.change(&addr("vm")).unwrap();
    assert!(is_unknown(&vm.after.as_ref().unwrap()["input"]));
    assert_eq!(vm.wait_for, vec![addr("image")]);
    // Sensitivity follows the value: `config.input` holds the VM's secret.
    let config = plan.change(&addr("config")).unwrap();
    assert!(config.sensitive.contains(&"input".to_string()));
    insta::assert_snapshot!(human_text(&plan));
}

#[tokio::test]
async fn provider_validation_rejects_every_bad_resource_before_any_refresh() {
    let rig = Rig::new();
    rig.mock.fail(
        Op::Validate,
        "dev/w/mock_thing.vm",
        "memory must be a multiple of 1024",
    );
    rig.mock
        .fail(Op::Validate, "dev/w/mock_thing.config", "unknown role");
    let error = planned(&rig, &PlanOptions::default()).await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(&error, Error::Invalid(list) if list.len() == 2),
        "{text}"
    );
    assert!(
        text.contains("dev/w/mock_thing.vm `value`: memory must be a multiple of 1024"),
        "{text}"
    );
    assert!(text.contains("unknown role"), "{text}");
    assert!(
        rig.mock.calls().is_empty(),
        "nothing is read or planned: {:?}",
        rig.mock.calls()
    );
}

#[tokio::test]
async fn changes_are_shown_attribute_by_attribute() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    let mut changed = resources();
    changed[1].attributes.insert("value".into(), json!(8192)); // update
    changed[0].attributes.insert("zone".into(), json!("pve2")); // replace
    changed.remove(2); // orphan: deleted
    let plan = rig.plan(&changed).await;
    assert_eq!(
        plan.change(&addr("image")).unwrap().action,
        Action::DeleteThenCreate
    );
    assert_eq!(plan.change(&addr("vm")).unwrap().action, Action::Update);
    assert_eq!(plan.change(&addr("config")).unwrap().action, Action::Delete);
    let text = human_text(&plan)
        .replace(
            &rig.state().resources[&addr("image")].id.clone().unwrap(),
            "ID",
        )
        .replace(
            &rig.state().resources[&addr("vm")].id.clone().unwrap(),
            "ID",
        );
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn a_changed_multi_line_value_shows_the_lines_that_changed() {
    // A machine config is kilobytes of YAML: one JSON line said nothing.
    let document: String = (1..=40).map(|i| format!("key{i}: value{i}\n")).collect();
    let rig = Rig::new();
    let mut before = resources();
    before[1]
        .attributes
        .insert("document".into(), json!(document));
    rig.apply(&before).await;
    let mut after = resources();
    after[1].attributes.insert(
        "document".into(),
        json!(document.replace("key20: value20\n", "key20: changed\n")),
    );
    let text = human_text(&rig.plan(&after).await);
    let expected = "      ~ document = <<-EOT
              # (16 unchanged lines hidden)
              key17: value17
              key18: value18
              key19: value19
            - key20: value20
            + key20: changed
              key21: value21
              key22: value22
              key23: value23
              # (17 unchanged lines hidden)
        EOT
";
    assert!(text.contains(expected), "{text}");
}

#[tokio::test]
async fn colour_only_when_asked() {
    let rig = Rig::new();
    let plan = rig.plan(&resources()).await;
    assert!(!render::human(&plan, false).contains('\x1b'));
    assert!(render::human(&plan, true).contains("\x1b[32m+\x1b[0m"));
}

#[tokio::test]
async fn nothing_to_do_says_so() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    let plan = rig.plan(&resources()).await;
    assert_eq!(
        human_text(&plan),
        "No changes. The infrastructure matches the configuration.\n"
    );
    assert_eq!(detailed_exit_code(&Ok(plan)), 0);
    assert_eq!(detailed_exit_code(&Ok(rig.plan(&[]).await)), 2);
    assert_eq!(detailed_exit_code(&Err(Error::Internal("x".into()))), 1);
}

/// A no-op keeps its attributes once (`after`); `before` reads the same everywhere a
/// user or apply looks: the JSON plan, a saved plan loaded again, the diff.
#[tokio::test]
async fn a_no_op_keeps_its_attributes_once_and_shows_them_before_and_after() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    let plan = rig.plan(&resources()).await;
    assert!(!plan.changes.is_empty());
    let state = rig.state();
    for change in &plan.changes {
        assert_eq!(change.action, Action::NoOp);
        assert_eq!(change.before, None, "one copy only");
        assert_eq!(
            change.before_attributes(),
            Some(&state.resources[&change.address].attributes.parse())
        );
        assert!(change.attribute_diffs().is_empty());
    }
    let json = render::json(&plan);
    for change in json["changes"].as_array().unwrap() {
        assert!(change["before"].is_object(), "{change}");
        assert_eq!(change["before"], change["after"]);
    }
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.json");
    saved::save(&plan, &path).unwrap();
    let loaded = saved::load(&path).unwrap();
    for (loaded, made) in loaded.changes.iter().zip(&plan.changes) {
        assert_eq!(loaded.before_attributes(), made.before_attributes());
    }
}

#[tokio::test]
async fn prevent_destroy_refuses_plans_that_delete_protected_resources() {
    let rig = Rig::new();
    let mut protected = resources();
    for resource in &mut protected {
        resource.prevent_destroy = true;
    }
    rig.apply(&protected).await;
    // A replacement deletes: refused.
    protected[0].attributes.insert("zone".into(), json!("pve2"));
    let error = rig
        .plan_with(&protected, &PlanOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the plan would destroy a resource protected by lifecycle.prevent_destroy: `dev/w/mock_thing.image`"
    );
    assert!(error.help().unwrap().contains("prevent_destroy: false"));
    // So is destroy.
    let options = PlanOptions {
        mode: PlanMode::Destroy,
        ..PlanOptions::default()
    };
    let error = rig
        .plan_with(&resources_protected(), &options)
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::PreventDestroy(ref a) if a.len() == 3),
        "{error}"
    );
    // An in-place update is fine.
    let mut update = resources_protected();
    update[1].attributes.insert("value".into(), json!(1));
    assert!(
        rig.plan_with(&update, &PlanOptions::default())
            .await
            .is_ok()
    );
}

fn resources_protected() -> Vec<DesiredResource> {
    let mut protected = resources();
    for resource in &mut protected {
        resource.prevent_destroy = true;
    }
    protected
}

#[tokio::test]
async fn tainted_and_requested_replacements() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    let mut state = rig.state();
    state.resources.get_mut(&addr("vm")).unwrap().status = ResourceStatus::Tainted;
    let plan = plan(resources(), &state, &rig.registry, &PlanOptions::default())
        .await
        .unwrap();
    let vm = plan.change(&addr("vm")).unwrap();
    assert_eq!(
        (vm.action, vm.reason.clone()),
        (Action::DeleteThenCreate, Some(Reason::Tainted))
    );

    let options = PlanOptions {
        replace: vec![addr("image")],
        ..PlanOptions::default()
    };
    let plan = rig.plan_with(&resources(), &options).await.unwrap();
    let image = plan.change(&addr("image")).unwrap();
    assert_eq!(image.action, Action::DeleteThenCreate);
    assert_eq!(image.reason, Some(Reason::ReplaceRequested));
    // The VM refers to the image's computed `out`, unknown again.
    assert_eq!(plan.change(&addr("vm")).unwrap().action, Action::Update);

    let options = PlanOptions {
        replace: vec![addr("nope")],
        ..PlanOptions::default()
    };
    assert!(matches!(
        rig.plan_with(&resources(), &options).await,
        Err(Error::UnknownReplace(_))
    ));
}

/// Issue 14: `--refresh=deep` reaches the providers' read requests.
#[tokio::test]
async fn a_deep_refresh_asks_the_providers_for_full_reads() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    let before = rig.mock.read_depths().len();
    rig.plan(&resources()).await;
    let deep = PlanOptions {
        deep_refresh: true,
        ..PlanOptions::default()
    };
    rig.plan_with(&resources(), &deep).await.unwrap();
    // Without a refresh nothing is read, deep or not.
    let none = PlanOptions {
        refresh: false,
        deep_refresh: true,
        ..PlanOptions::default()
    };
    rig.plan_with(&resources(), &none).await.unwrap();
    assert_eq!(rig.mock.read_depths()[before..], [false, true]);
}

fn pending(state: &mut StateDocument, name: &str, status: ResourceStatus) {
    let record: &mut ResourceState = state.resources.get_mut(&addr(name)).unwrap();
    record.status = status;
    if status == ResourceStatus::PendingCreate {
        record.id = None;
    }
}

#[tokio::test]
async fn pending_records_are_read_even_without_refresh() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    let no_refresh = PlanOptions {
        refresh: false,
        ..PlanOptions::default()
    };

    // The create happened before the interruption: adopted, nothing to do.
    let mut state = rig.state();
    let id = state.resources[&addr("image")].id.clone();
    pending(&mut state, "image", ResourceStatus::PendingCreate);
    let plan = plan(resources(), &state, &rig.registry, &no_refresh)
        .await
        .unwrap();
    assert!(!plan.has_changes(), "{:#?}", plan.changes);
    assert_eq!(plan.drift.len(), 1);
    assert_eq!(plan.drift[0].after.as_ref().unwrap().id, id);
    assert_eq!(
        plan.drift[0].after.as_ref().unwrap().status,
        ResourceStatus::Ready
    );

    // It did not happen: created.
    rig.mock.remove_object(&addr("image").to_string());
    let plan = super::plan(resources(), &state, &rig.registry, &no_refresh)
        .await
        .unwrap();
    assert_eq!(plan.change(&addr("image")).unwrap().action, Action::Create);

    // An interrupted delete of something still configured: replaced.
    let mut state = rig.state();
    pending(&mut state, "vm", ResourceStatus::PendingDelete);
    let plan = super::plan(resources(), &state, &rig.registry, &no_refresh)
        .await
        .unwrap();
    let vm = plan.change(&addr("vm")).unwrap();
    assert_eq!(
        (vm.action, vm.reason.clone()),
        (Action::DeleteThenCreate, Some(Reason::InterruptedDelete))
    );
}

#[tokio::test]
async fn drift_is_found_by_refresh_and_recorded_by_refresh_only() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    rig.mock
        .set_attribute(&addr("vm").to_string(), "value", json!(1024));

    let plan = rig.plan(&resources()).await;
    assert_eq!(plan.drift.len(), 1);
    assert_eq!(plan.change(&addr("vm")).unwrap().action, Action::Update);
    assert!(human_text(&plan).starts_with("Note: objects have changed outside InfraFlux"));

    let no_refresh = PlanOptions {
        refresh: false,
        ..PlanOptions::default()
    };
    assert!(
        !rig.plan_with(&resources(), &no_refresh)
            .await
            .unwrap()
            .has_changes()
    );
    assert_eq!(rig.mock.count(Op::Read), 3);

    let refresh_only = PlanOptions {
        mode: PlanMode::RefreshOnly,
        ..PlanOptions::default()
    };
    let plan = rig.plan_with(&resources(), &refresh_only).await.unwrap();
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(plan.changes[0].action, Action::Read);
    insta::assert_snapshot!(human_text(&plan).replace(
        &rig.state().resources[&addr("vm")].id.clone().unwrap(),
        "ID"
    ));
    let summary = crate::apply::apply(
        &plan,
        rig.state(),
        Arc::new(rig.store.clone()),
        &rig.registry,
        Arc::new(crate::apply::NoReporter),
        &crate::apply::ApplyOptions::default(),
    )
    .await
    .unwrap();
    assert!(summary.is_success());
    assert_eq!(
        rig.state().resources[&addr("vm")].attributes.parse()["value"],
        json!(1024)
    );
    assert_eq!(rig.mock.count(Op::Update), 0);
}

#[tokio::test]
async fn a_deleted_object_is_created_again() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    rig.mock.remove_object(&addr("config").to_string());
    let plan = rig.plan(&resources()).await;
    let config = plan.change(&addr("config")).unwrap();
    assert_eq!(
        (config.action, config.reason.clone()),
        (Action::Create, Some(Reason::DeletedOutside))
    );
}

#[tokio::test]
async fn only_changes_that_apply_keep_the_configuration_for_apply() {
    let rig = Rig::new();
    let created = planned(&rig, &PlanOptions::default()).await.unwrap();
    assert!(!created.changes.is_empty());
    assert!(
        created
            .changes
            .iter()
            .all(|c| c.action == Action::Create && c.desired.is_some())
    );
    rig.apply(&resources()).await;
    let steady = planned(&rig, &PlanOptions::default()).await.unwrap();
    assert_eq!(steady.changes.len(), created.changes.len());
    assert!(
        steady
            .changes
            .iter()
            .all(|c| c.action == Action::NoOp && c.desired.is_none())
    );
}

#[tokio::test]
async fn a_plan_made_only_to_be_shown_shows_the_same_and_is_never_saved() {
    let rig = Rig::new();
    let shown = PlanOptions {
        complete: false,
        ..PlanOptions::default()
    };
    // The changes a complete plan makes, without the configuration kept for apply.
    let without_configuration = |plan: &Plan| -> Vec<Change> {
        plan.changes
            .iter()
            .map(|c| Change {
                desired: None,
                ..c.clone()
            })
            .collect()
    };
    // Creating: the same changes, without the digest and the configuration.
    let full = planned(&rig, &PlanOptions::default()).await.unwrap();
    let made = planned(&rig, &shown).await.unwrap();
    assert_eq!(full.config_digest, config_digest(&resources()));
    assert!(made.config_digest.is_empty());
    assert!(full.changes.iter().all(|c| c.desired.is_some()));
    assert_eq!(made.changes, without_configuration(&full));
    assert_eq!(made.rollouts, full.rollouts);
    assert_eq!(human_text(&made), human_text(&full));

    // Steady but for one resource: the no-ops keep no attributes, and a reference to
    // one (`config.input` is the VM's secret) resolves to the recorded value all the same.
    rig.apply(&resources()).await;
    let mut changed = resources();
    changed[2]
        .attributes
        .insert("value".into(), json!("worker"));
    let state = rig.state();
    let full = plan(
        changed.clone(),
        &state,
        &rig.registry,
        &PlanOptions::default(),
    )
    .await
    .unwrap();
    let made = plan(changed, &state, &rig.registry, &shown).await.unwrap();
    let config = made.change(&addr("config")).unwrap();
    assert_eq!(config.action, Action::Update);
    assert_eq!(
        config.after.as_ref().unwrap()["input"],
        state.resources[&addr("vm")].attributes.parse()["secret"]
    );
    assert_eq!(config.desired, None);
    assert_eq!(
        Some(config),
        without_configuration(&full)
            .iter()
            .find(|c| c.address == addr("config"))
    );
    for address in [addr("image"), addr("vm")] {
        let (shown, complete) = (
            made.change(&address).unwrap(),
            full.change(&address).unwrap(),
        );
        assert_eq!(shown.action, Action::NoOp);
        assert_eq!(shown.after, None);
        assert_eq!(
            complete.after.as_ref(),
            Some(&state.resources[&address].attributes.parse())
        );
        assert_eq!(
            Change {
                after: complete.after.clone(),
                ..shown.clone()
            },
            *complete
        );
    }
    assert_eq!(human_text(&made), human_text(&full));

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.json");
    let error = saved::save(&made, &path).unwrap_err();
    assert!(
        error.to_string().contains("made only to be shown"),
        "{error}"
    );
    assert!(!path.exists());
}

#[tokio::test]
async fn saved_plans_are_bound_to_state_and_configuration() {
    let rig = Rig::new();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.json");
    let state = rig.state();
    let made = plan(resources(), &state, &rig.registry, &PlanOptions::default())
        .await
        .unwrap();
    saved::save(&made, &path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let loaded = saved::load(&path).unwrap();
    assert_eq!(loaded, made);
    let digest = config_digest(&resources());
    saved::check(&loaded, &state, &digest).unwrap();

    // The configuration changed.
    let mut changed = resources();
    changed[0].attributes.insert("value".into(), json!("other"));
    let error = saved::check(&loaded, &state, &config_digest(&changed)).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the saved plan is stale: the configuration changed since it was made"
    );

    // The state changed (another apply ran).
    rig.apply(&resources()).await;
    let mut now = rig.state();
    now.lineage = state.lineage;
    let error = saved::check(&loaded, &now, &digest).unwrap_err();
    assert!(
        matches!(error, saved::Error::Serial { plan: 0, .. }),
        "{error}"
    );
    assert!(error.help().unwrap().contains("plan --out"));

    // Another state altogether.
    let error = saved::check(&loaded, &StateDocument::new("dev"), &digest).unwrap_err();
    assert!(matches!(error, saved::Error::Lineage { .. }));

    std::fs::write(&path, r#"{"format_version": 7}"#).unwrap();
    assert!(matches!(
        saved::load(&path),
        Err(saved::Error::Version { found: 7, .. })
    ));
}

#[tokio::test]
async fn json_output_masks_secrets_and_lists_unknowns() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    let mut changed = resources();
    changed[1].attributes.insert("value".into(), json!(8192));
    let plan = rig.plan(&changed).await;
    let mut value = render::json(&plan);
    value["lineage"] = json!("LINEAGE");
    let text = serde_json::to_string_pretty(&value).unwrap();
    let state = rig.state();
    let mut text = text;
    for record in state.resources.values() {
        text = text.replace(record.id.as_ref().unwrap(), "ID");
    }
    assert!(!text.contains("secret-ID\""), "secrets are masked");
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn references_to_attributes_that_do_not_exist_are_errors() {
    let rig = Rig::new();
    let resources = vec![
        desired("a", json!({"value": 1}), &[]),
        desired(
            "b",
            json!({"input": reference("dev/w/mock_thing.a", "nope")}),
            &[],
        ),
    ];
    let error = rig
        .plan_with(&resources, &PlanOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`dev/w/mock_thing.b` attribute `input` refers to `dev/w/mock_thing.a` attribute `nope`, which it does not have"
    );
}

#[tokio::test]
async fn missing_providers_are_named() {
    let rig = Rig::new();
    let mut resource = desired("a", json!({}), &[]);
    resource.provider = "proxmox".into();
    let error = rig
        .plan_with(&[resource], &PlanOptions::default())
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "no provider registered for `proxmox` (needed by `dev/w/mock_thing.a`)"
    );
}

#[tokio::test]
async fn a_resource_removed_from_the_configuration_keeps_its_clusters_protection() {
    let rig = Rig::new();
    let mut protected = resources();
    for resource in &mut protected {
        resource.prevent_destroy = true;
    }
    rig.apply(&protected).await;
    // Dropping one resource from a protected cluster: its deletion is refused.
    let remaining: Vec<DesiredResource> = protected
        .iter()
        .filter(|d| d.address.name != "config")
        .cloned()
        .collect();
    assert!(remaining.len() < protected.len());
    let error = rig
        .plan_with(&remaining, &PlanOptions::default())
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("protected by lifecycle.prevent_destroy"),
        "{error}"
    );
    // Once the cluster is no longer protected, it may go.
    let unprotected: Vec<DesiredResource> = remaining
        .into_iter()
        .map(|mut d| {
            d.prevent_destroy = false;
            d
        })
        .collect();
    let plan = rig
        .plan_with(&unprotected, &PlanOptions::default())
        .await
        .unwrap();
    assert!(plan.changes.iter().any(|c| c.action == Action::Delete));
}

#[tokio::test]
async fn attributes_secret_by_origin_are_masked_and_so_are_their_copies() {
    let rig = Rig::new();
    let mut resources = resources();
    resources[0]
        .attributes
        .insert("value".into(), json!("pass-from-age-1234"));
    resources[0].secrets = crate::graph::SecretAttributes {
        names: vec!["value".into()],
        values: vec![crate::vocabulary::Sensitive::new(
            "pass-from-age-1234".into(),
        )],
    };
    let plan = rig.plan(&resources).await;
    let image = plan.change(&addr("image")).unwrap();
    assert!(image.sensitive.contains(&"value".to_string()));
    assert!(!image.sensitive.contains(&"zone".to_string()));
    let human = human_text(&plan);
    let json = render::json(&plan).to_string();
    for text in [&human, &json] {
        assert!(!text.contains("pass-from-age-1234"), "{text}");
    }
    assert!(human.contains("+ value  = (sensitive)"), "{human}");

    // A provider that carries the value into another planned attribute.
    let mut planned = infraflux_provider::Attributes::new();
    planned.insert("value".into(), json!("pass-from-age-1234"));
    planned.insert("url".into(), json!("https://u:pass-from-age-1234@h"));
    planned.insert("zone".into(), json!("pve1"));
    let mut sensitive = vec!["value".to_string()];
    mark_derived_secrets(&resources[0], &planned, &mut sensitive);
    assert_eq!(sensitive, ["value", "url"]);
}

#[tokio::test]
async fn saved_plans_are_encrypted_like_the_state() {
    use age::secrecy::ExposeSecret;
    let rig = Rig::new();
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("plan.age");
    let mut resources = resources();
    resources[0]
        .attributes
        .insert("value".into(), json!("plan-file-secret-77"));
    let made = plan(
        resources,
        &rig.state(),
        &rig.registry,
        &PlanOptions::default(),
    )
    .await
    .unwrap();
    let identity = age::x25519::Identity::generate();
    let encryption = crate::state::Encryption {
        identities: vec![crate::state::IdentitySource::Key(
            crate::vocabulary::Sensitive::new(identity.to_string().expose_secret().to_string()),
        )],
        ..Default::default()
    };
    saved::save_encrypted(&made, &path, Some(&encryption)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert!(crate::encryption::is_encrypted(&bytes));
    assert!(!String::from_utf8_lossy(&bytes).contains("plan-file-secret-77"));
    assert_eq!(
        saved::load_encrypted(&path, Some(&encryption)).unwrap(),
        made
    );
    let error = saved::load(&path).unwrap_err();
    assert!(matches!(error, saved::Error::Encryption { .. }), "{error}");
    assert!(
        error
            .help()
            .unwrap()
            .contains("INFRAFLUX_STATE_IDENTITY_FILE")
    );
}

/// Issue 14: a resource whose provider cannot be reached is unknown; it and what waits
/// for it are left out, everything else is planned and applied, and the plan says it is
/// partial. Once reachable again, the next plan picks up what was left.
#[tokio::test]
async fn an_unreachable_resource_and_its_dependants_are_left_out_of_a_partial_plan() {
    let rig = Rig::new();
    rig.apply(&resources()).await;
    rig.mock.fail_with(
        Op::Read,
        "dev/w/mock_thing.vm",
        "cannot connect: No route to host\n  help: check the node",
        infraflux_provider::ErrorKind::Transient,
    );
    let mut changed = resources();
    changed[0]
        .attributes
        .insert("value".into(), json!("talos-2"));
    changed[1].attributes.insert("value".into(), json!(8192));
    let plan = rig.plan(&changed).await;
    assert!(plan.is_partial());
    let unknown: Vec<(String, String)> = plan
        .unknown
        .iter()
        .map(|u| (u.address.to_string(), u.reason.clone()))
        .collect();
    assert_eq!(
        unknown,
        [
            (
                "dev/w/mock_thing.vm".to_string(),
                "unreachable: cannot connect: No route to host".to_string()
            ),
            (
                "dev/w/mock_thing.config".to_string(),
                "waits for `dev/w/mock_thing.vm`, which is unknown".to_string()
            ),
        ]
    );
    // The image is planned; neither the VM nor what waits for it is.
    assert_eq!(plan.change(&addr("image")).unwrap().action, Action::Update);
    assert!(plan.change(&addr("vm")).is_none());
    assert!(plan.change(&addr("config")).is_none());
    assert_eq!(plan.summary().unknown, 2);
    assert_eq!(detailed_exit_code(&Ok(plan.clone())), PARTIAL_EXIT_CODE);
    let text = human_text(&plan);
    assert!(text.contains("Warning: this plan is partial"), "{text}");
    assert!(
        text.contains("? dev/w/mock_thing.vm: unreachable: cannot connect: No route to host"),
        "{text}"
    );
    assert!(
        text.contains(
            "Plan: 0 to add, 1 to change, 0 to destroy. This plan is partial: 2 resources unknown (left out)."
        ),
        "{text}"
    );
    let json = render::json(&plan);
    assert_eq!(json["partial"], json!(true));
    assert_eq!(json["summary"]["unknown"], json!(2));
    assert_eq!(json["unknown"][0]["address"], json!("dev/w/mock_thing.vm"));

    // Applying it changes the image only; the VM's record is as it was.
    let vm_before = rig.state().resources[&addr("vm")].clone();
    let summary = rig.apply(&changed).await;
    assert!(summary.is_success(), "{summary:?}");
    assert_eq!(
        summary.done,
        vec![(addr("image"), Action::Update)],
        "{summary:?}"
    );
    assert_eq!(rig.state().resources[&addr("vm")], vm_before);

    // A failure that is not about reaching the provider still fails the plan.
    rig.mock
        .fail(Op::Read, "dev/w/mock_thing.vm", "permission denied");
    let error = rig
        .plan_with(&changed, &PlanOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Refresh(_)), "{error}");

    // Reachable again: the rest is planned, and the plan is whole.
    rig.mock.clear_failures();
    let plan = rig.plan(&changed).await;
    assert!(!plan.is_partial());
    assert_eq!(plan.change(&addr("vm")).unwrap().action, Action::Update);
    assert_eq!(detailed_exit_code(&Ok(plan)), 2);
    // With nothing else to do, a partial plan does not claim the infrastructure matches.
    rig.apply(&changed).await;
    rig.mock.fail_with(
        Op::Read,
        "dev/w/mock_thing.config",
        "request timed out",
        infraflux_provider::ErrorKind::Transient,
    );
    let plan = rig.plan(&changed).await;
    let text = human_text(&plan);
    assert!(
        text.contains(
            "No changes to what could be read. This plan is partial: 1 resource unknown (left out)."
        ),
        "{text}"
    );
    assert!(!text.contains("matches the configuration"), "{text}");
}

/// A rollout is shown as its own ordered list (rank first, then plan order), in the
/// human plan and in `--json`, with what each step waits for.
#[tokio::test]
async fn a_rollout_is_shown_in_order_with_its_gates() {
    use infraflux_provider::{Operation, Rollout};
    use infraflux_provider_mock::MockProvider;
    let mock = MockProvider::new("mock", crate::testing::mock_schemas()).with_rollout(
        |op, _, attributes| {
            let rank = attributes.get("rank")?.as_u64()? as u32;
            (op == Operation::Update).then(|| Rollout {
                key: "talos:dev-w".into(),
                rank,
                gates: "back on its version and as healthy as before".into(),
            })
        },
    );
    let rig = Rig::with_mock(mock);
    let nodes = |value: i64| -> Vec<DesiredResource> {
        ["worker-1", "cp-1", "worker-2", "cp-2"]
            .iter()
            .map(|name| {
                let rank = u64::from(name.starts_with("worker"));
                desired(name, json!({"value": value, "rank": rank}), &[])
            })
            .collect()
    };
    rig.apply(&nodes(1)).await;
    let plan = rig.plan(&nodes(2)).await;
    assert_eq!(plan.rollouts.len(), 1);
    // A plan only shown (no configuration kept) puts them in the same rollout.
    let shown = rig
        .plan_with(
            &nodes(2),
            &PlanOptions {
                complete: false,
                ..PlanOptions::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(shown.rollouts, plan.rollouts);
    let text = human_text(&plan);
    let section = &text[text.find("Rollout").expect("a rollout section")..];
    insta::assert_snapshot!("rollout_human", section);
    insta::assert_snapshot!(
        "rollout_json",
        serde_json::to_string_pretty(&render::json(&plan)["rollouts"]).unwrap()
    );
}

#[tokio::test]
async fn a_reference_to_outputs_is_every_computed_attribute_as_one_object() {
    let rig = Rig::new();
    // `config` takes the VM's outputs (`out`, and `secret`, which is sensitive) in one
    // reference; the VM's inputs (`value`, `input`) are not outputs.
    let with_outputs = |resources: &mut Vec<DesiredResource>| {
        resources[2].attributes.insert(
            "input".into(),
            reference("dev/w/mock_thing.vm", infraflux_provider::OUTPUTS),
        );
    };
    let mut configured = resources();
    with_outputs(&mut configured);
    let created = rig.plan(&configured).await;
    let config = created.change(&addr("config")).unwrap();
    let input = &config.after.as_ref().unwrap()["input"];
    assert_eq!(
        input.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["out", "secret"]
    );
    assert!(is_unknown(&input["out"]) && is_unknown(&input["secret"]));
    assert!(config.sensitive.contains(&"input".to_string()));

    rig.apply(&configured).await;
    let state = rig.state();
    let vm = state.resources[&addr("vm")].attributes.parse();
    // Recorded as the reference it is (`state::by_reference`), and resolved to the value.
    let recorded = state.resources[&addr("config")].attributes.parse();
    let marker = crate::state::by_reference::recorded_reference(&recorded["input"])
        .expect("recorded by reference");
    assert_eq!(marker.address, "dev/w/mock_thing.vm");
    assert_eq!(
        state.resolve(&recorded).attributes["input"],
        json!({"out": vm["out"], "secret": vm["secret"]})
    );
    // Refreshed (the mock reads back the value itself), it is still no drift.
    let again = rig.plan(&configured).await;
    assert_eq!(again.summary(), Summary::default());
    assert!(again.drift.is_empty(), "{:?}", again.drift);
    assert!(
        crate::state::by_reference::recorded_reference(
            &rig.state().resources[&addr("config")].attributes.parse()["input"]
        )
        .is_some()
    );

    // The VM's outputs changed after the config recorded them (its update applied, the
    // config's failed): both sides resolve to the VM's new value, but the record is
    // stale, so the config is changed.
    let mut moved_on = rig.state();
    moved_on
        .resources
        .get_mut(&addr("vm"))
        .unwrap()
        .attributes
        .edit(|a| a.insert("out".into(), json!("out-new")));
    let options = PlanOptions {
        refresh: false,
        ..PlanOptions::default()
    };
    let stale = plan(configured.clone(), &moved_on, &rig.registry, &options)
        .await
        .unwrap();
    let change = stale.change(&addr("config")).unwrap();
    assert_eq!(change.action, Action::Update);
    assert_eq!(
        change.after.as_ref().unwrap()["input"]["out"],
        json!("out-new")
    );

    // Recorded from one reference per output, it is the same value: no change.
    let rig = Rig::new();
    let mut per_output = resources();
    per_output[2].attributes.insert(
        "input".into(),
        json!({
            "out": reference("dev/w/mock_thing.vm", "out"),
            "secret": reference("dev/w/mock_thing.vm", "secret"),
        }),
    );
    rig.apply(&per_output).await;
    assert_eq!(rig.plan(&configured).await.summary(), Summary::default());
}

#[test]
fn only_outputs_with_a_secret_among_them_are_secret() {
    let schema = &crate::testing::mock_schemas()[0];
    let outputs = infraflux_provider::OUTPUTS;
    assert!(resolve::referenced_is_sensitive(&[], outputs, Some(schema)));
    assert!(resolve::referenced_is_sensitive(
        &[],
        "secret",
        Some(schema)
    ));
    assert!(!resolve::referenced_is_sensitive(&[], "out", Some(schema)));
    // A secret input is not an output.
    let public = infraflux_provider::ResourceSchema::new(
        "mock_thing",
        vec![
            infraflux_provider::AttributeSchema::input("password").sensitive(),
            infraflux_provider::AttributeSchema::computed("out"),
        ],
    );
    assert!(!resolve::referenced_is_sensitive(
        &[],
        outputs,
        Some(&public)
    ));
    assert!(resolve::referenced_is_sensitive(
        &["out".to_string()],
        outputs,
        Some(&public)
    ));
    // Without the schema, nothing is known of the outputs.
    let attributes = json!({"out": 1}).as_object().unwrap().clone();
    assert!(resolve::referenced_value(&attributes, outputs, None).is_none());
}

/// `clusters` pieces of [`resources`], one per cluster: `dev/cNNN/mock_thing.*`.
fn fleet(clusters: usize) -> Vec<DesiredResource> {
    (0..clusters)
        .flat_map(|c| {
            let at = |name: &str| format!("dev/c{c:03}/mock_thing.{name}");
            let mut image = desired(&at("image"), json!({"value": "talos", "zone": "pve1"}), &[]);
            let mut vm = desired(
                &at("vm"),
                json!({"value": 4096, "input": reference(at("image"), "out")}),
                &[],
            );
            let config = desired(
                &at("config"),
                json!({"value": "cp", "input": reference(at("vm"), "secret")}),
                &[&at("vm")],
            );
            // Something to change in some clusters, not in others.
            if c % 3 == 0 {
                image.attributes.insert("zone".into(), json!("pve2"));
            }
            if c % 5 == 0 {
                vm.attributes.insert("value".into(), json!(8192));
            }
            [image, vm, config]
        })
        .collect()
}

/// Issue 15: a fleet's clusters are planned on several threads (`parallel`), and the plan
/// is the one planned on one, resource for resource: creates, updates, no-ops, deletes,
/// unknowns and what waits for them, in the same order, shown the same.
#[test]
fn a_fleet_is_planned_the_same_on_many_threads_as_on_one() {
    let rig = Rig::new();
    // Applied as it was: 120 clusters, 360 resources (more than one thread's worth).
    let applied: Vec<DesiredResource> = fleet(120)
        .into_iter()
        .map(|mut d| {
            match d.address.name.as_str() {
                "image" => d.attributes.insert("zone".into(), json!("pve1")),
                "vm" => d.attributes.insert("value".into(), json!(4096)),
                _ => None,
            };
            d
        })
        .collect();
    runtime(false).block_on(rig.apply(&applied));
    rig.mock.fail_with(
        Op::Read,
        "dev/c007/mock_thing.vm",
        "cannot connect: No route to host",
        infraflux_provider::ErrorKind::Transient,
    );
    // Now: clusters 100..120 are gone (deleted), 120..130 are new (created); a third
    // move zone (replaced), a fifth grow their VMs (updated).
    let mut desired: Vec<DesiredResource> = fleet(130);
    desired.retain(|d| !(100..120).contains(&d.address.cluster[1..].parse::<usize>().unwrap()));
    let state = rig.state();
    let plan_on = |multi_thread: bool, threads: usize, complete: bool| {
        let options = PlanOptions {
            threads,
            complete,
            ..PlanOptions::default()
        };
        runtime(multi_thread)
            .block_on(plan(desired.clone(), &state, &rig.registry, &options))
            .unwrap()
    };
    for complete in [true, false] {
        let one = plan_on(false, 1, complete);
        let many = plan_on(true, 4, complete);
        assert_eq!(many.changes, one.changes);
        assert_eq!(many.unknown, one.unknown);
        assert_eq!(human_text(&many), human_text(&one));
        // What the comparison is worth: every kind of change is in it.
        for action in [
            Action::Create,
            Action::Update,
            Action::NoOp,
            Action::DeleteThenCreate,
            Action::Delete,
        ] {
            assert!(
                one.changes.iter().any(|c| c.action == action),
                "no {action:?} in {:?}",
                one.summary()
            );
        }
        assert_eq!(
            one.unknown
                .iter()
                .map(|u| u.address.to_string())
                .collect::<Vec<_>>(),
            ["dev/c007/mock_thing.vm", "dev/c007/mock_thing.config"]
        );
    }
    // Destroying (every edge reversed) and targets (with what they depend on, more than
    // one thread's worth) alike.
    let target = PlanOptions {
        targets: (0..100)
            .map(|c| addr(&format!("dev/c{c:03}/mock_thing.config")))
            .collect(),
        ..PlanOptions::default()
    };
    for options in [
        PlanOptions {
            mode: PlanMode::Destroy,
            ..PlanOptions::default()
        },
        target,
    ] {
        let on = |multi_thread: bool, threads: usize| {
            let options = PlanOptions {
                threads,
                ..options.clone()
            };
            runtime(multi_thread)
                .block_on(plan(desired.clone(), &state, &rig.registry, &options))
                .unwrap()
        };
        let (one, many) = (on(false, 1), on(true, 4));
        assert_eq!(many.changes, one.changes);
        assert_eq!(many.unknown, one.unknown);
        assert!(one.has_changes(), "{:?}", one.summary());
    }
}

/// Issue 15: once a piece meets an error, the pieces planned after it stop before any
/// later position in the execution order, so a failure every cluster would meet (a
/// release file that cannot be downloaded) is tried once, not once per cluster.
#[test]
fn the_pieces_after_an_error_stop_before_its_position() {
    let rig = Rig::new();
    let desired = fleet(120);
    let failing = "dev/c010/mock_thing.config";
    rig.mock.fail(Op::Plan, failing, "early");
    let options = PlanOptions {
        threads: 1,
        ..PlanOptions::default()
    };
    let error = runtime(false)
        .block_on(plan(desired, &rig.state(), &rig.registry, &options))
        .unwrap_err();
    assert!(matches!(&error, Error::Provider { .. }), "{error:?}");
    let planned = rig.mock.planned();
    assert!(planned.iter().any(|a| a == failing), "{planned:?}");
    // Nothing of a later cluster's is planned past the failing position (each of the
    // 110 clusters' would be, without the stop); what comes before it in the execution
    // order still is.
    let later: Vec<&String> = planned.iter().filter(|a| a.as_str() > "dev/c011").collect();
    assert!(later.is_empty(), "{later:?}");
    assert!(planned.len() <= 33, "{planned:?}");
}

/// Issue 15: with several threads, the error a plan stops at is still the first one in
/// execution order, though a later cluster's may be found first.
#[test]
fn a_plan_on_many_threads_stops_at_the_first_error_in_execution_order() {
    let rig = Rig::new();
    let desired = fleet(120);
    rig.mock.fail(Op::Plan, "dev/c110/mock_thing.image", "late");
    rig.mock
        .fail(Op::Plan, "dev/c010/mock_thing.config", "early");
    rig.mock.fail(Op::Plan, "dev/c060/mock_thing.vm", "middle");
    for (multi_thread, threads) in [(false, 1), (true, 4)] {
        let options = PlanOptions {
            threads,
            ..PlanOptions::default()
        };
        let error = runtime(multi_thread)
            .block_on(plan(desired.clone(), &rig.state(), &rig.registry, &options))
            .unwrap_err();
        assert!(
            matches!(&error, Error::Provider { address, .. } if address.to_string() == "dev/c010/mock_thing.config"),
            "{error:?}"
        );
    }
}
