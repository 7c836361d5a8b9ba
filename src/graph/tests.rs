use infraflux_provider::reference;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::state::{ResourceState, ResourceStatus, StateDocument};
use crate::testing::{addr, desired};

fn state_resource(dependencies: &[&str]) -> ResourceState {
    ResourceState {
        kind: "mock_thing".into(),
        provider: "mock".into(),
        id: Some("id".into()),
        attributes: Default::default(),
        sensitive: Vec::new(),
        dependencies: dependencies.iter().map(|d| addr(d)).collect(),
        status: ResourceStatus::Ready,
    }
}

fn order(graph: &ResourceGraph) -> Vec<String> {
    graph
        .execution_order()
        .iter()
        .map(|v| v.address().name.clone())
        .collect()
}

#[test]
fn references_and_depends_on_order_dependencies_first() {
    let resources = vec![
        desired(
            "c",
            json!({"input": reference("dev/w/mock_thing.b", "out")}),
            &[],
        ),
        desired("b", json!({}), &["a"]),
        desired("a", json!({}), &[]),
    ];
    let graph = ResourceGraph::build(
        resources,
        &StateDocument::new("dev"),
        &GraphOptions::default(),
    )
    .unwrap();
    assert_eq!(order(&graph), ["a", "b", "c"]);
    assert_eq!(graph.predecessors(&addr("c")), [&addr("b")]);
    assert_eq!(graph.dependencies(&addr("c")), [addr("b")]);
}

#[test]
fn orphans_are_deleted_dependants_first() {
    // State knows x → y → z (x depends on y, y on z); the configuration names none.
    let mut state = StateDocument::new("dev");
    state
        .resources
        .insert(addr("x"), state_resource(&["dev/w/mock_thing.y"]));
    state
        .resources
        .insert(addr("y"), state_resource(&["dev/w/mock_thing.z"]));
    state.resources.insert(addr("z"), state_resource(&[]));
    let graph = ResourceGraph::build(Vec::new(), &state, &GraphOptions::default()).unwrap();
    assert_eq!(order(&graph), ["x", "y", "z"]);
    assert!(graph.get(&addr("y")).unwrap().is_delete());
}

#[test]
fn destroy_reverses_configured_edges() {
    let mut state = StateDocument::new("dev");
    for name in ["a", "b"] {
        state.resources.insert(addr(name), state_resource(&[]));
    }
    let resources = vec![
        desired("a", json!({}), &[]),
        desired("b", json!({}), &["a"]),
    ];
    let options = GraphOptions {
        mode: Mode::Destroy,
        ..GraphOptions::default()
    };
    let graph = ResourceGraph::build(resources, &state, &options).unwrap();
    assert_eq!(order(&graph), ["b", "a"]);
}

#[test]
fn a_cycle_names_every_address_and_every_edge() {
    let resources = vec![
        desired(
            "a",
            json!({"x": reference("dev/w/mock_thing.c", "out")}),
            &[],
        ),
        desired("b", json!({}), &["a"]),
        desired("c", json!({}), &["b"]),
        desired("d", json!({}), &["a"]),
    ];
    let error = ResourceGraph::build(
        resources,
        &StateDocument::new("dev"),
        &GraphOptions::default(),
    )
    .unwrap_err();
    insta::assert_snapshot!(error.to_string(), @r"
    dependency cycle between `dev/w/mock_thing.a`, `dev/w/mock_thing.b`, `dev/w/mock_thing.c`:
      `dev/w/mock_thing.a` must come before `dev/w/mock_thing.b`: depends_on
      `dev/w/mock_thing.b` must come before `dev/w/mock_thing.c`: depends_on
      `dev/w/mock_thing.c` must come before `dev/w/mock_thing.a`: attribute `x` refers to `out`
    remove one of these references or depends_on entries
    ");
}

#[test]
fn references_to_unknown_resources_are_errors() {
    let resources = vec![desired(
        "a",
        json!({"nested": [{"x": reference("dev/w/mock_thing.nope", "out")}]}),
        &[],
    )];
    let error = ResourceGraph::build(
        resources,
        &StateDocument::new("dev"),
        &GraphOptions::default(),
    )
    .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`dev/w/mock_thing.a` attribute `nested.0.x` refers to `out`: no resource `dev/w/mock_thing.nope` in the configuration"
    );
}

#[test]
fn targets_keep_their_transitive_dependencies_only() {
    let resources = vec![
        desired("a", json!({}), &[]),
        desired("b", json!({}), &["a"]),
        desired("c", json!({}), &["b"]),
        desired("other", json!({}), &[]),
    ];
    let options = GraphOptions {
        targets: vec![addr("b")],
        ..GraphOptions::default()
    };
    let graph =
        ResourceGraph::build(resources.clone(), &StateDocument::new("dev"), &options).unwrap();
    assert_eq!(order(&graph), ["a", "b"]);
    let options = GraphOptions {
        targets: vec![addr("missing")],
        ..GraphOptions::default()
    };
    assert!(matches!(
        ResourceGraph::build(resources, &StateDocument::new("dev"), &options),
        Err(Error::UnknownTarget(_))
    ));
}

#[test]
fn cluster_scope_leaves_other_clusters_out() {
    let mut other = desired("x", json!({}), &[]);
    other.address.cluster = "other".into();
    let options = GraphOptions {
        cluster: Some("w".into()),
        ..GraphOptions::default()
    };
    let graph = ResourceGraph::build(
        vec![desired("a", json!({}), &[]), other],
        &StateDocument::new("dev"),
        &options,
    )
    .unwrap();
    assert_eq!(order(&graph), ["a"]);
}

#[test]
fn dot_output() {
    let mut state = StateDocument::new("dev");
    state
        .resources
        .insert(addr("old"), state_resource(&["dev/w/mock_thing.a"]));
    let resources = vec![
        desired("a", json!({}), &[]),
        desired(
            "b",
            json!({"image": reference("dev/w/mock_thing.a", "volume")}),
            &["a"],
        ),
    ];
    let graph = ResourceGraph::build(resources, &state, &GraphOptions::default()).unwrap();
    insta::assert_snapshot!(graph.to_dot());
}

/// Random DAGs: edges only from a lower to a higher index.
pub(crate) fn dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>)> {
    (1usize..30).prop_flat_map(|n| {
        let edges = proptest::collection::vec((0..n, 0..n), 0..n * 2).prop_map(|pairs| {
            pairs
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect::<Vec<_>>()
        });
        (Just(n), edges)
    })
}

/// A fleet's references are found on several threads: the edges, the order and each
/// resource's dependencies are those of the configuration, and of two missing
/// dependencies the first in the graph's order is the one reported.
#[test]
fn a_fleets_references_are_found_on_several_threads() {
    let name = |i: usize| format!("r{i:05}");
    let fleet = |missing: &[usize]| -> Vec<DesiredResource> {
        (0..NODES_WORTH_THREADS + 500)
            .map(|i| {
                let mut attributes = json!({});
                // Clusters of ten, each a chain.
                if i % 10 != 0 {
                    attributes = json!({"input": {"nested": [reference(format!("dev/w/mock_thing.{}", name(i - 1)), "out")]}});
                }
                if missing.contains(&i) {
                    attributes["gone"] = reference(format!("dev/w/mock_thing.gone{i}"), "out");
                }
                let depends_on = if i % 7 == 0 && i > 0 { vec![name(i / 2)] } else { Vec::new() };
                let depends_on: Vec<&str> = depends_on.iter().map(String::as_str).collect();
                desired(&name(i), attributes, &depends_on)
            })
            .collect()
    };
    let graph = ResourceGraph::build(
        fleet(&[]),
        &StateDocument::new("dev"),
        &GraphOptions::default(),
    )
    .unwrap();
    let ordered = graph.into_execution_order();
    assert_eq!(ordered.len(), NODES_WORTH_THREADS + 500);
    for (i, vertex) in ordered.iter().enumerate() {
        assert_eq!(vertex.vertex.address().name, name(i));
        let mut expected: Vec<ResourceAddr> = Vec::new();
        if i % 10 != 0 {
            expected.push(addr(&name(i - 1)));
        }
        if i % 7 == 0 && i > 0 {
            expected.push(addr(&name(i / 2)));
        }
        expected.sort();
        assert_eq!(vertex.dependencies, expected, "{}", name(i));
    }
    let error = ResourceGraph::build(
        fleet(&[NODES_WORTH_THREADS + 200, 300]),
        &StateDocument::new("dev"),
        &GraphOptions::default(),
    )
    .unwrap_err();
    match error {
        Error::MissingDependency { from, to, .. } => {
            assert_eq!(from, addr(&name(300)));
            assert_eq!(to, "dev/w/mock_thing.gone300");
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #[test]
    fn execution_order_respects_every_edge((n, edges) in dag()) {
        let resources: Vec<DesiredResource> = (0..n)
            .map(|i| {
                let deps: Vec<String> = edges
                    .iter()
                    .filter(|(_, to)| *to == i)
                    .map(|(from, _)| format!("r{from}"))
                    .collect();
                let mut resource = desired(&format!("r{i}"), json!({}), &[]);
                resource.depends_on = deps.iter().map(|d| addr(d)).collect();
                resource
            })
            .collect();
        let graph = ResourceGraph::build(resources, &StateDocument::new("dev"), &GraphOptions::default()).unwrap();
        let order = order(&graph);
        prop_assert_eq!(order.len(), n);
        for (from, to) in edges {
            let position = |name: String| order.iter().position(|o| *o == name).unwrap();
            let (before, after) = (position(format!("r{from}")), position(format!("r{to}")));
            prop_assert!(before < after, "r{} at {}, r{} at {}", from, before, to, after);
        }
    }

    /// The execution order reads each resource's dependencies from the graph's edges;
    /// they are what its attributes and `depends_on` name, as [`ResourceGraph::dependencies`]
    /// walks them: references repeated, nested in objects and lists, and named in both.
    #[test]
    fn the_execution_order_carries_the_configured_dependencies(
        (n, edges) in dag(),
        kinds in proptest::collection::vec(0u8..4, 0..64),
    ) {
        let resources: Vec<DesiredResource> = (0..n)
            .map(|i| {
                let mut attributes = serde_json::Map::new();
                let mut depends_on = Vec::new();
                for (k, (from, _)) in edges.iter().enumerate().filter(|(_, (_, to))| *to == i) {
                    let target = format!("dev/w/mock_thing.r{from}");
                    match kinds.get(k).copied().unwrap_or(0) {
                        0 => depends_on.push(addr(&format!("r{from}"))),
                        1 => {
                            attributes.insert(format!("a{k}"), reference(&target, "out"));
                        }
                        2 => {
                            attributes.insert(
                                format!("a{k}"),
                                json!({"nested": [1, reference(&target, "out"), reference(&target, "id")]}),
                            );
                        }
                        _ => {
                            attributes.insert(format!("a{k}"), reference(&target, "out"));
                            depends_on.push(addr(&format!("r{from}")));
                        }
                    }
                }
                let mut resource = desired(&format!("r{i}"), Value::Object(attributes), &[]);
                resource.depends_on = depends_on;
                resource
            })
            .collect();
        let graph = ResourceGraph::build(resources, &StateDocument::new("dev"), &GraphOptions::default()).unwrap();
        let walked: HashMap<ResourceAddr, Vec<ResourceAddr>> = (0..n)
            .map(|i| addr(&format!("r{i}")))
            .map(|a| (a.clone(), graph.dependencies(&a)))
            .collect();
        for ordered in graph.into_execution_order() {
            prop_assert_eq!(&ordered.dependencies, &walked[ordered.vertex.address()]);
        }
    }
}

/// A chain of 20,000 dependencies is ordered, not a stack overflow (petgraph's Tarjan
/// recursed once per vertex: an abort on a 2 MiB thread stack); and of two cycles, the
/// one holding the least address is the one told.
#[test]
fn a_long_chain_is_ordered_and_of_two_cycles_the_first_is_told() {
    let chain = |length: usize| -> Vec<DesiredResource> {
        (0..length)
            .map(|i| {
                let attributes = if i > 0 {
                    json!({"input": reference(format!("dev/w/mock_thing.r{:05}", i - 1), "out")})
                } else {
                    json!({})
                };
                desired(&format!("r{i:05}"), attributes, &[])
            })
            .collect()
    };
    let graph = ResourceGraph::build(
        chain(20_000),
        &StateDocument::new("dev"),
        &GraphOptions::default(),
    )
    .unwrap();
    let ordered = graph.into_execution_order();
    assert_eq!(ordered.len(), 20_000);
    assert_eq!(ordered[19_999].vertex.address().name, "r19999");

    let mut resources = chain(4);
    // r00002 → r00001 → r00002 and z1 ⇄ z2: the cycle holding r00001 is told.
    resources[1].depends_on = vec![addr("r00002")];
    resources.push(desired("z1", json!({}), &["z2"]));
    resources.push(desired("z2", json!({}), &["z1"]));
    resources.reverse();
    match ResourceGraph::build(
        resources,
        &StateDocument::new("dev"),
        &GraphOptions::default(),
    ) {
        Err(Error::Cycle(edges)) => {
            let named: Vec<String> = edges.iter().map(|e| e.from.name.clone()).collect();
            assert_eq!(named, ["r00001", "r00002"], "{edges:?}");
        }
        other => panic!("{other:?}"),
    }
}
