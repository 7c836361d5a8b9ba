use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use infraflux_provider::{ConcurrencyKey, Operation, Rollout, reference};
use infraflux_provider_mock::{Call, MockProvider, Op};
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::graph::DesiredResource;
use crate::plan::{PlanMode, PlanOptions, plan};
use crate::state::ResourceStatus;
use crate::testing::{Event, MemoryStore, RecordingReporter, addr, desired, mock_schemas};

/// A mock provider, a registry holding it and an in-memory store for environment `dev`.
pub(crate) struct Rig {
    pub mock: Arc<MockProvider>,
    pub registry: ProviderRegistry,
    pub store: MemoryStore,
}

impl Rig {
    pub fn new() -> Self {
        Self::with_mock(MockProvider::new("mock", mock_schemas()))
    }

    pub fn with_mock(mock: MockProvider) -> Self {
        let mock = Arc::new(mock);
        Rig {
            registry: ProviderRegistry::new().with(mock.clone()),
            mock,
            store: MemoryStore::with_history(),
        }
    }

    pub fn state(&self) -> StateDocument {
        self.store
            .document("dev")
            .unwrap_or_else(|| StateDocument::new("dev"))
    }

    pub async fn plan(&self, desired: &[DesiredResource]) -> Plan {
        self.plan_with(desired, &PlanOptions::default())
            .await
            .unwrap()
    }

    pub async fn plan_with(
        &self,
        desired: &[DesiredResource],
        options: &PlanOptions,
    ) -> Result<Plan, crate::plan::Error> {
        plan(desired.to_vec(), &self.state(), &self.registry, options).await
    }

    /// Plan against the current state and apply the plan.
    pub async fn apply(&self, desired: &[DesiredResource]) -> ApplySummary {
        self.apply_with(
            desired,
            &PlanOptions::default(),
            &ApplyOptions::default(),
            Arc::new(NoReporter),
        )
        .await
    }

    pub async fn apply_with(
        &self,
        desired: &[DesiredResource],
        plan_options: &PlanOptions,
        options: &ApplyOptions,
        reporter: Arc<dyn Reporter>,
    ) -> ApplySummary {
        let state = self.state();
        let plan = plan(desired.to_vec(), &state, &self.registry, plan_options)
            .await
            .unwrap();
        apply(
            &plan,
            state,
            Arc::new(self.store.clone()),
            &self.registry,
            reporter,
            options,
        )
        .await
        .unwrap()
    }
}

/// a ← b ← c (c refers to b's computed `out`, b depends on a), and x on its own.
fn chain() -> Vec<DesiredResource> {
    vec![
        desired("a", json!({"value": 1}), &[]),
        desired("b", json!({"value": 2}), &["a"]),
        desired(
            "c",
            json!({"value": 3, "input": reference("dev/w/mock_thing.b", "out")}),
            &[],
        ),
        desired("x", json!({"value": 4}), &[]),
    ]
}

fn names(addresses: &[ResourceAddr]) -> Vec<String> {
    addresses.iter().map(|a| a.name.clone()).collect()
}

/// Position in the call log where `op` on `name` started / finished.
fn position(calls: &[Call], want: &Call) -> usize {
    calls
        .iter()
        .position(|c| c == want)
        .unwrap_or_else(|| panic!("{want:?} not in {calls:?}"))
}

fn full(name: &str) -> String {
    addr(name).to_string()
}

#[tokio::test]
async fn dependencies_finish_before_dependants_start() {
    let rig = Rig::new();
    rig.mock.set_default_latency(Duration::from_millis(5));
    let summary = rig.apply(&chain()).await;
    assert!(summary.is_success(), "{summary:?}");
    let calls = rig.mock.calls();
    for (before, after) in [("a", "b"), ("b", "c")] {
        assert!(
            position(&calls, &Call::Finished(Op::Create, full(before)))
                < position(&calls, &Call::Started(Op::Create, full(after)))
        );
    }
    assert_eq!(rig.mock.count(Op::Create), 4);
}

#[tokio::test]
async fn unknown_values_become_known_within_one_apply() {
    let rig = Rig::new();
    let plan = rig.plan(&chain()).await;
    let c = plan.change(&addr("c")).unwrap();
    assert!(infraflux_provider::is_unknown(
        &c.after.as_ref().unwrap()["input"]
    ));
    rig.apply(&chain()).await;
    let state = rig.state();
    let b = &state.resources[&addr("b")];
    let c = &state.resources[&addr("c")];
    assert_eq!(c.attributes.parse()["input"], b.attributes.parse()["out"]);
    assert_eq!(
        c.attributes.parse()["input"],
        json!(format!("out-{}", b.id.as_ref().unwrap()))
    );
    assert_eq!(c.dependencies, vec![addr("b")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planning_right_after_apply_finds_nothing_to_do() {
    let rig = Rig::new();
    rig.apply(&chain()).await;
    let plan = rig.plan(&chain()).await;
    assert!(!plan.has_changes(), "{:#?}", plan.changes);
    assert!(plan.drift.is_empty());
}

#[tokio::test]
async fn a_failure_skips_its_dependants_once_and_independent_branches_finish() {
    let rig = Rig::new();
    rig.mock.fail(Op::Create, &full("b"), "disk full");
    let reporter = Arc::new(RecordingReporter::default());
    let mut desired = chain();
    // d depends on both b and c: skipped once, because of b.
    desired.push(crate::testing::desired("d", json!({}), &["b", "c"]));
    let summary = rig
        .apply_with(
            &desired,
            &PlanOptions::default(),
            &ApplyOptions::default(),
            reporter.clone(),
        )
        .await;
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].address, addr("b"));
    assert_eq!(
        summary.failed[0].message,
        "create dev/w/mock_thing.b: disk full"
    );
    let mut skipped = summary.skipped.clone();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![(addr("c"), addr("b")), (addr("d"), addr("b"))]
    );
    let done: BTreeSet<String> = summary.done.iter().map(|(a, _)| a.name.clone()).collect();
    assert_eq!(done, BTreeSet::from(["a".to_string(), "x".to_string()]));
    let skip_events = reporter
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Skipped(..)))
        .count();
    assert_eq!(skip_events, 2);
    // b stays pending: the next plan reads it, finds nothing, and creates it.
    assert_eq!(
        rig.state().resources[&addr("b")].status,
        ResourceStatus::PendingCreate
    );
    rig.mock.clear_failures();
    let summary = rig.apply(&desired).await;
    assert!(summary.is_success(), "{summary:?}");
    assert_eq!(rig.mock.objects().len(), 5);
    assert!(!rig.plan(&desired).await.has_changes());
}

#[tokio::test]
async fn state_is_persisted_around_every_resource() {
    let rig = Rig::new();
    rig.apply(&chain()).await;
    let history = rig.store.history();
    // Per create: the pending record, then the result.
    assert_eq!(history.len(), 8);
    for window in history.windows(2) {
        assert_eq!(window[1].serial, window[0].serial + 1);
    }
    for name in ["a", "b", "c", "x"] {
        let statuses: Vec<Option<ResourceStatus>> = history
            .iter()
            .map(|d| d.resources.get(&addr(name)).map(|r| r.status))
            .collect();
        let first_pending = statuses
            .iter()
            .position(|s| *s == Some(ResourceStatus::PendingCreate))
            .unwrap();
        let first_ready = statuses
            .iter()
            .position(|s| *s == Some(ResourceStatus::Ready))
            .unwrap();
        assert_eq!(first_ready, first_pending + 1, "{name}: {statuses:?}");
    }
    // Between two persists, at most one resource changes.
    for window in history.windows(2) {
        let changed = window[1]
            .resources
            .iter()
            .filter(|(a, r)| window[0].resources.get(*a) != Some(*r))
            .count();
        assert_eq!(changed, 1);
    }
}

#[tokio::test]
async fn an_unrecorded_attribute_is_applied_but_never_in_state_nor_a_change() {
    let mut schemas = mock_schemas();
    schemas[0].attributes.push(
        infraflux_provider::AttributeSchema::computed("rendered")
            .sensitive()
            .unrecorded(),
    );
    let rig = Rig::with_mock(MockProvider::new("mock", schemas));
    let things = vec![desired("a", json!({"value": 1}), &[])];
    assert!(rig.apply(&things).await.is_success());
    let object = rig.mock.objects().pop().unwrap();
    // The provider had it (the mock fills computed attributes on create)…
    assert_eq!(
        object.attributes["rendered"],
        json!(format!("rendered-{}", object.id))
    );
    // …and state does not.
    let recorded = &rig.state().resources[&addr("a")];
    assert!(
        !recorded.attributes.parse().contains_key("rendered"),
        "{recorded:?}"
    );
    assert!(recorded.attributes.parse().contains_key("out"));
    // Its absence is no change; a recorded attribute's change still is one.
    assert!(!rig.plan(&things).await.has_changes());
    // A record written before the schema left it out still has it: refreshed (the mock
    // reads it back from its world), that is no drift either.
    let mut older = rig.state();
    older
        .resources
        .get_mut(&addr("a"))
        .unwrap()
        .attributes
        .edit(|a| a.insert("rendered".into(), json!("as an older version recorded it")));
    let refreshed = plan(
        things.clone(),
        &older,
        &rig.registry,
        &PlanOptions::default(),
    )
    .await
    .unwrap();
    assert!(refreshed.drift.is_empty(), "{:?}", refreshed.drift);
    assert!(!refreshed.has_changes());
    let mut changed = things.clone();
    changed[0].attributes.insert("value".into(), json!(2));
    let plan = rig.plan(&changed).await;
    assert_eq!(plan.change(&addr("a")).unwrap().action, Action::Update);
    assert!(rig.apply(&changed).await.is_success());
    let recorded = &rig.state().resources[&addr("a")];
    assert_eq!(recorded.attributes.parse()["value"], json!(2));
    assert!(!recorded.attributes.parse().contains_key("rendered"));
}

#[tokio::test]
async fn a_record_keeps_the_outputs_it_was_applied_with_until_it_is_applied_again() {
    let rig = Rig::new();
    let outputs = |zone: &str| {
        vec![
            desired("vm", json!({"value": 1, "zone": zone}), &[]),
            desired(
                "config",
                json!({"value": 2, "input": reference("dev/w/mock_thing.vm", infraflux_provider::OUTPUTS)}),
                &[],
            ),
        ]
    };
    assert!(rig.apply(&outputs("z1")).await.is_success());
    let state = rig.state();
    let applied_with = state
        .resolve_stored(&state.resources[&addr("config")].attributes)
        .attributes["input"]
        .clone();
    assert!(
        crate::state::by_reference::recorded_reference(
            &state.resources[&addr("config")].attributes.parse()["input"]
        )
        .is_some()
    );
    // The VM is replaced (new outputs), and the config's update fails.
    rig.mock
        .fail(Op::Update, &full("config"), "the node is down");
    let summary = rig.apply(&outputs("z2")).await;
    assert!(!summary.is_success());
    let state = rig.state();
    let recorded = &state.resources[&addr("config")].attributes.parse()["input"];
    // It still holds what it was applied with (the identity its node trusts), as a copy.
    assert_eq!(*recorded, applied_with);
    assert_ne!(
        state.resources[&addr("vm")].attributes.parse()["out"],
        applied_with["out"]
    );
    // And the next plan updates it, and records it by reference again.
    let plan = rig.plan(&outputs("z2")).await;
    assert_eq!(plan.change(&addr("config")).unwrap().action, Action::Update);
    rig.mock.clear_failures();
    assert!(rig.apply(&outputs("z2")).await.is_success());
    let state = rig.state();
    assert!(
        crate::state::by_reference::recorded_reference(
            &state.resources[&addr("config")].attributes.parse()["input"]
        )
        .is_some()
    );
    assert!(!rig.plan(&outputs("z2")).await.has_changes());
}

#[tokio::test]
async fn updates_and_replacements_are_applied() {
    let rig = Rig::new();
    rig.apply(&chain()).await;
    let b_id = rig.state().resources[&addr("b")].id.clone();
    let mut desired = chain();
    desired[0].attributes.insert("value".into(), json!(10)); // a: update
    desired[1].attributes.insert("zone".into(), json!("z2")); // b: replace
    let plan = rig.plan(&desired).await;
    assert_eq!(plan.change(&addr("a")).unwrap().action, Action::Update);
    assert_eq!(
        plan.change(&addr("b")).unwrap().action,
        Action::DeleteThenCreate
    );
    // c refers to b's `out`, which the replacement changes.
    assert_eq!(plan.change(&addr("c")).unwrap().action, Action::Update);
    let summary = rig.apply(&desired).await;
    assert!(summary.is_success(), "{summary:?}");
    let state = rig.state();
    assert_ne!(state.resources[&addr("b")].id, b_id);
    assert_eq!(
        state.resources[&addr("c")].attributes.parse()["input"],
        state.resources[&addr("b")].attributes.parse()["out"]
    );
    assert_eq!(rig.mock.objects().len(), 4);
    assert!(!rig.plan(&desired).await.has_changes());
}

#[tokio::test]
async fn orphans_and_destroy_delete_dependants_first() {
    let rig = Rig::new();
    rig.apply(&chain()).await;
    // Removing b and c from the configuration: c (which depended on b) goes first.
    rig.mock.clear_calls();
    let remaining = vec![chain()[0].clone(), chain()[3].clone()];
    let summary = rig.apply(&remaining).await;
    assert!(summary.is_success());
    assert_eq!(rig.mock.finished(Op::Delete), [full("c"), full("b")]);

    rig.mock.clear_calls();
    let options = PlanOptions {
        mode: PlanMode::Destroy,
        ..PlanOptions::default()
    };
    let mut with_b = remaining.clone();
    with_b.push(desired("b2", json!({}), &["a"]));
    let summary = rig
        .apply_with(
            &with_b,
            &options,
            &ApplyOptions::default(),
            Arc::new(NoReporter),
        )
        .await;
    assert!(summary.is_success());
    assert!(rig.state().resources.is_empty());
    assert!(rig.mock.objects().is_empty());
}

/// Updates in one rollout run one at a time, by rank then plan order; the first failure
/// stops the rest (skipped, their state kept), and a re-run resumes from there.
#[tokio::test]
async fn a_rollout_runs_one_at_a_time_in_order_and_stops_at_the_first_failure() {
    let mock = MockProvider::new("mock", mock_schemas()).with_rollout(|op, _, attributes| {
        let rank = attributes.get("rank")?.as_u64()? as u32;
        (op == Operation::Update).then(|| Rollout {
            key: "nodes".into(),
            rank,
            gates: "healthy".into(),
        })
    });
    let rig = Rig::with_mock(mock);
    rig.mock.set_default_latency(Duration::from_millis(5));
    // n0..n5: n1, n3 and n5 rank first (control planes), the others after.
    let nodes = |value: i64| -> Vec<DesiredResource> {
        (0..6)
            .map(|i| {
                desired(
                    &format!("n{i}"),
                    json!({"value": value, "rank": u64::from(i % 2 == 0)}),
                    &[],
                )
            })
            .collect()
    };
    assert!(rig.apply(&nodes(1)).await.is_success());
    rig.mock.clear_calls();
    rig.mock
        .fail(Op::Update, &full("n5"), "node n5 did not come back");
    let options = ApplyOptions {
        parallelism: 6,
        ..ApplyOptions::default()
    };
    let summary = rig
        .apply_with(
            &nodes(2),
            &PlanOptions::default(),
            &options,
            Arc::new(NoReporter),
        )
        .await;
    assert_eq!(rig.mock.max_in_flight(), 1);
    // Control planes first (n5's update is tried and fails), the others never.
    assert_eq!(
        rig.mock.finished(Op::Update),
        [full("n1"), full("n3"), full("n5")]
    );
    assert_eq!(summary.failed.len(), 1);
    assert_eq!(summary.failed[0].address, addr("n5"));
    let skipped: BTreeSet<String> = summary.skipped.iter().map(|(a, _)| a.to_string()).collect();
    assert_eq!(
        skipped,
        ["n0", "n2", "n4"]
            .iter()
            .map(|n| addr(n).to_string())
            .collect()
    );
    assert!(
        summary
            .skipped
            .iter()
            .all(|(_, because)| *because == addr("n5"))
    );
    assert_eq!(
        rig.state().resources[&addr("n0")].attributes.parse()["value"],
        1
    );

    // Fixed, the next run resumes: n5, then the rest in order.
    rig.mock.clear_failures();
    rig.mock.clear_calls();
    let summary = rig.apply(&nodes(2)).await;
    assert!(summary.is_success(), "{summary:?}");
    assert_eq!(
        rig.mock.finished(Op::Update),
        [full("n5"), full("n0"), full("n2"), full("n4")]
    );
}

/// Issue 13 (`--replace` cascade): what is replaced with its host (`replace_with`)
/// leaves before the host goes and comes back after the new host is created; `--replace`
/// of the dependant replaces its host too; hosts and dependants roll one pair at a
/// time; a dependant that cannot leave stops its host's replacement before anything is
/// deleted.
#[tokio::test]
async fn a_dependant_replaced_with_its_host_leaves_first_and_returns_last() {
    let mock = MockProvider::new("mock", mock_schemas()).with_rollout(|op, _, attributes| {
        (op == Operation::Update && attributes.contains_key("node")).then(|| Rollout {
            key: "cluster".into(),
            rank: 0,
            gates: "healthy".into(),
        })
    });
    let rig = Rig::with_mock(mock);
    let world = || -> Vec<DesiredResource> {
        let mut all = vec![
            desired("h1", json!({"value": 1}), &[]),
            desired("h2", json!({"value": 1}), &[]),
        ];
        for (node, host) in [("c1", "h1"), ("c2", "h2")] {
            let mut node = desired(node, json!({"value": 1, "node": true}), &[host]);
            node.replace_with = vec![addr(host)];
            all.push(node);
        }
        all
    };
    assert!(rig.apply(&world()).await.is_success());
    rig.mock.clear_calls();

    // c1 asked for (its host goes with it), h2 asked for (c2 goes with it).
    let options = PlanOptions {
        replace: vec![addr("c1"), addr("h2")],
        ..PlanOptions::default()
    };
    let plan = rig.plan_with(&world(), &options).await.unwrap();
    for name in ["h1", "c1", "h2", "c2"] {
        assert!(
            plan.change(&addr(name)).unwrap().action.is_replace(),
            "{name}"
        );
    }
    assert_eq!(
        plan.change(&addr("c1")).unwrap().reason,
        Some(crate::plan::Reason::HostReplaced)
    );
    assert_eq!(names(&plan.rollouts[0].steps), ["h1", "c1", "h2", "c2"]);
    let summary = rig
        .apply_with(
            &world(),
            &options,
            &ApplyOptions::default(),
            Arc::new(NoReporter),
        )
        .await;
    assert!(summary.is_success(), "{summary:?}");
    let finished: Vec<(Op, String)> = rig
        .mock
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            Call::Finished(op, name) if op != Op::Read => Some((op, name)),
            _ => None,
        })
        .collect();
    let expected: Vec<(Op, String)> = [
        (Op::Delete, "c1"),
        (Op::Delete, "h1"),
        (Op::Create, "h1"),
        (Op::Create, "c1"),
        (Op::Delete, "c2"),
        (Op::Delete, "h2"),
        (Op::Create, "h2"),
        (Op::Create, "c2"),
    ]
    .into_iter()
    .map(|(op, name)| (op, full(name)))
    .collect();
    assert_eq!(finished, expected);
    assert!(
        rig.plan(&world())
            .await
            .changes
            .iter()
            .all(|c| c.action == Action::NoOp)
    );

    // c2 cannot leave: h2 is not touched, c2 is skipped, h1 and c1 go through.
    rig.mock.clear_calls();
    rig.mock
        .fail(Op::Delete, &full("c2"), "etcd refused: quorum");
    let options = PlanOptions {
        replace: vec![addr("h2"), addr("h1")],
        ..PlanOptions::default()
    };
    let summary = rig
        .apply_with(
            &world(),
            &options,
            &ApplyOptions::default(),
            Arc::new(NoReporter),
        )
        .await;
    assert_eq!(summary.failed.len(), 1, "{summary:?}");
    assert_eq!(summary.failed[0].address, addr("h2"));
    assert!(
        summary.failed[0].message.contains("could not leave first"),
        "{summary:?}"
    );
    assert!(
        rig.mock
            .finished(Op::Delete)
            .iter()
            .all(|n| *n != full("h2"))
    );
    assert!(summary.skipped.iter().any(|(a, _)| *a == addr("c2")));
    assert!(rig.state().resources.contains_key(&addr("h2")));
    assert!(rig.state().resources.contains_key(&addr("c2")));
}

#[tokio::test]
async fn parallelism_and_per_key_limits_hold() {
    let mock =
        MockProvider::new("mock", mock_schemas()).with_concurrency_key(|_, _, attributes| {
            attributes
                .get("zone")
                .and_then(|z| z.as_str())
                .map(|zone| ConcurrencyKey {
                    key: zone.to_string(),
                    limit: 1,
                })
        });
    let rig = Rig::with_mock(mock);
    rig.mock.set_default_latency(Duration::from_millis(2));
    let mut desired: Vec<DesiredResource> = (0..12)
        .map(|i| crate::testing::desired(&format!("r{i}"), json!({"value": i}), &[]))
        .collect();
    for (i, resource) in desired.iter_mut().enumerate().take(4) {
        resource
            .attributes
            .insert("zone".into(), json!("storage-1"));
        let _ = i;
    }
    let options = ApplyOptions {
        parallelism: 3,
        ..ApplyOptions::default()
    };
    let summary = rig
        .apply_with(
            &desired,
            &PlanOptions::default(),
            &options,
            Arc::new(NoReporter),
        )
        .await;
    assert!(summary.is_success());
    assert!(
        rig.mock.max_in_flight() <= 3,
        "{}",
        rig.mock.max_in_flight()
    );
    assert_eq!(rig.mock.max_in_flight_for_key("storage-1"), 1);
}

#[tokio::test]
async fn cancellation_starts_nothing_new_and_records_what_finished() {
    let rig = Rig::new();
    rig.mock.set_default_latency(Duration::from_millis(20));
    let cancel = CancellationToken::new();
    struct CancelOnStart(CancellationToken);
    impl Reporter for CancelOnStart {
        fn started(&self, _: &ResourceAddr, _: Action) {
            self.0.cancel();
        }
    }
    let options = ApplyOptions {
        parallelism: 1,
        cancel: cancel.clone(),
    };
    let summary = rig
        .apply_with(
            &chain(),
            &PlanOptions::default(),
            &options,
            Arc::new(CancelOnStart(cancel)),
        )
        .await;
    assert!(summary.cancelled);
    assert_eq!(summary.done.len(), 1);
    assert_eq!(summary.not_started.len(), 3);
    assert_eq!(rig.mock.count(Op::Create), 1);
    let (done, _) = &summary.done[0];
    assert_eq!(rig.state().resources[done].status, ResourceStatus::Ready);
    // The rest follows on the next run.
    let summary = rig.apply(&chain()).await;
    assert!(summary.is_success());
    assert_eq!(rig.mock.objects().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_recorded_before_the_walk() {
    let rig = Rig::new();
    rig.apply(&chain()).await;
    rig.mock.set_attribute(&full("x"), "value", json!(40));
    rig.mock.remove_object(&full("c"));
    let plan = rig.plan(&chain()).await;
    assert_eq!(plan.drift.len(), 2);
    let c = plan.change(&addr("c")).unwrap();
    assert_eq!(
        (c.action, c.reason.clone()),
        (Action::Create, Some(crate::plan::Reason::DeletedOutside))
    );
    assert_eq!(plan.change(&addr("x")).unwrap().action, Action::Update);
    let summary = rig.apply(&chain()).await;
    assert!(summary.is_success(), "{summary:?}");
    let history = rig.store.history();
    let first = history.iter().rev().find(|d| {
        d.resources
            .get(&addr("x"))
            .is_some_and(|x| x.attributes.parse()["value"] == json!(40))
    });
    assert!(first.is_some(), "the drift was recorded");
    assert_eq!(
        rig.state().resources[&addr("x")].attributes.parse()["value"],
        json!(4)
    );
    assert!(!rig.plan(&chain()).await.has_changes());
}

#[tokio::test]
async fn a_plan_for_another_state_is_refused() {
    let rig = Rig::new();
    let plan = rig.plan(&chain()).await;
    let other = StateDocument::new("dev");
    let error = apply(
        &plan,
        other,
        Arc::new(rig.store.clone()),
        &rig.registry,
        Arc::new(NoReporter),
        &ApplyOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(error, Error::Lineage { .. }), "{error}");
}

// ---- random DAGs ------------------------------------------------------------------

fn random_resources(n: usize, edges: &[(usize, usize)]) -> Vec<DesiredResource> {
    (0..n)
        .map(|i| {
            let mut attributes = json!({"value": i});
            let mut depends_on = Vec::new();
            for (k, (from, _)) in edges.iter().filter(|(_, to)| *to == i).enumerate() {
                // Alternate between data references and plain ordering.
                if k % 2 == 0 {
                    attributes[format!("input{k}")] = reference(full(&format!("r{from}")), "out");
                } else {
                    depends_on.push(format!("r{from}"));
                }
            }
            let deps: Vec<&str> = depends_on.iter().map(String::as_str).collect();
            desired(&format!("r{i}"), attributes, &deps)
        })
        .collect()
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(future)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn apply_order_respects_every_edge_and_converges(
        (n, edges) in crate::graph::tests::dag(),
        parallelism in 1usize..6,
    ) {
        run(async {
            let rig = Rig::new();
            let desired = random_resources(n, &edges);
            let options = ApplyOptions { parallelism, ..ApplyOptions::default() };
            let summary = rig.apply_with(&desired, &PlanOptions::default(), &options, Arc::new(NoReporter)).await;
            prop_assert!(summary.is_success());
            let calls = rig.mock.calls();
            for (from, to) in &edges {
                let finished = position(&calls, &Call::Finished(Op::Create, full(&format!("r{from}"))));
                let started = position(&calls, &Call::Started(Op::Create, full(&format!("r{to}"))));
                prop_assert!(finished < started, "r{} finished at {}, r{} started at {}", from, finished, to, started);
            }
            prop_assert!(!rig.plan(&desired).await.has_changes());
            Ok(())
        })?;
    }

    #[test]
    fn a_failure_never_skips_an_independent_branch(
        (n, edges) in crate::graph::tests::dag(),
        failing in any::<prop::sample::Index>(),
    ) {
        run(async {
            let rig = Rig::new();
            let failing = failing.index(n);
            rig.mock.fail(Op::Create, &full(&format!("r{failing}")), "boom");
            let desired = random_resources(n, &edges);
            let summary = rig.apply(&desired).await;
            // Everything downstream of the failure is skipped, everything else is done.
            let mut downstream = BTreeSet::from([failing]);
            for i in 0..n {
                if edges.iter().any(|(from, to)| *to == i && downstream.contains(from)) {
                    downstream.insert(i);
                }
            }
            let done: BTreeSet<String> = summary.done.iter().map(|(a, _)| a.name.clone()).collect();
            let skipped: Vec<String> = names(&summary.skipped.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>());
            let mut seen = HashMap::new();
            for name in &skipped {
                *seen.entry(name.clone()).or_insert(0) += 1;
            }
            prop_assert!(seen.values().all(|&count| count == 1));
            for i in 0..n {
                let name = format!("r{i}");
                if i == failing {
                    prop_assert_eq!(summary.failed.len(), 1);
                } else if downstream.contains(&i) {
                    prop_assert!(skipped.contains(&name), "{} should be skipped", name);
                } else {
                    prop_assert!(done.contains(&name), "{} should be done", name);
                }
            }
            Ok(())
        })?;
    }
}
