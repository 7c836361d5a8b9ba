use infraflux_provider::{Diagnostic, Host, Severity, reference};
use serde_json::json;

use super::*;
use crate::state::{ResourceState, ResourceStatus, StateDocument};

const GIB: u64 = 1 << 30;
const HOSTS: [&str; 3] = ["pve1", "pve2", "pve3"];

fn machine(group: &str, name: &str, spread: Spread, memory: u64, allow: bool) -> DesiredResource {
    let (environment, cluster) = group.split_once('/').unwrap();
    let per_host = BTreeMap::from([(
        "image".to_string(),
        HOSTS
            .iter()
            .map(|h| {
                (
                    h.to_string(),
                    reference(format!("{group}/proxmox_image.talos-{h}"), "volume"),
                )
            })
            .collect(),
    )]);
    DesiredResource {
        address: ResourceAddr::new(environment, cluster, "proxmox_vm", name),
        provider: "proxmox".into(),
        kind: "proxmox_vm".into(),
        attributes: json!({"node": "pve1", "memory_mib": memory / (1 << 20)})
            .as_object()
            .unwrap()
            .clone(),
        depends_on: Vec::new(),
        prevent_destroy: false,
        origin: "test".into(),
        secrets: Default::default(),
        replace_with: Vec::new(),
        placement: Some(Rule::Machine {
            group: group.into(),
            hosts: HOSTS.iter().map(|h| h.to_string()).collect(),
            spread,
            allow_colocation: allow,
            memory,
            per_host,
        }),
    }
}

fn image(group: &str, host: &str) -> DesiredResource {
    let (environment, cluster) = group.split_once('/').unwrap();
    DesiredResource {
        address: ResourceAddr::new(
            environment,
            cluster,
            "proxmox_image",
            format!("talos-{host}"),
        ),
        provider: "proxmox".into(),
        kind: "proxmox_image".into(),
        attributes: json!({"node": host}).as_object().unwrap().clone(),
        depends_on: Vec::new(),
        prevent_destroy: false,
        origin: "test".into(),
        secrets: Default::default(),
        replace_with: Vec::new(),
        placement: Some(Rule::PerHost {
            group: group.into(),
            host: host.into(),
        }),
    }
}

fn cluster(
    group: &str,
    control_planes: usize,
    workers: usize,
    memory: u64,
    allow: bool,
) -> Vec<DesiredResource> {
    let mut resources: Vec<DesiredResource> = HOSTS.iter().map(|h| image(group, h)).collect();
    for n in 1..=control_planes {
        resources.push(machine(
            group,
            &format!("cp-{n}"),
            Spread::Distinct,
            memory,
            allow,
        ));
    }
    for n in 1..=workers {
        resources.push(machine(
            group,
            &format!("worker-{n}"),
            Spread::Even,
            memory,
            allow,
        ));
    }
    resources
}

fn placed(resources: &[DesiredResource]) -> Vec<(String, String)> {
    resources
        .iter()
        .map(|r| {
            (
                r.address.name.clone(),
                r.attributes["node"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

fn inventory(scope: &str, hosts: &[(&str, bool, u64)]) -> Inventory {
    Inventory {
        scope: scope.into(),
        hosts: hosts
            .iter()
            .map(|(name, online, free)| Host {
                name: name.to_string(),
                online: *online,
                memory_free: *free,
                memory_total: 8 * GIB,
            })
            .collect(),
        problems: Vec::new(),
    }
}

fn existing(state: &mut StateDocument, resource: &DesiredResource, host: &str) {
    let mut attributes = resource.attributes.clone();
    attributes.insert("node".into(), json!(host));
    state.resources.insert(
        resource.address.clone(),
        ResourceState {
            kind: resource.kind.clone(),
            provider: "proxmox".into(),
            id: Some("1000".into()),
            attributes: attributes.into(),
            sensitive: Vec::new(),
            dependencies: Vec::new(),
            status: ResourceStatus::Ready,
        },
    );
}

#[test]
fn offline_placement_spreads_deterministically_and_drops_unused_images() {
    let state = StateDocument::new("dev");
    let resources = solve(
        cluster("dev/w", 3, 2, 2 * GIB, false),
        &state,
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(
        placed(&resources),
        pairs(&[
            ("talos-pve1", "pve1"),
            ("talos-pve2", "pve2"),
            ("talos-pve3", "pve3"),
            ("cp-1", "pve1"),
            ("cp-2", "pve2"),
            ("cp-3", "pve3"),
            ("worker-1", "pve1"),
            ("worker-2", "pve2"),
        ])
    );
    // Each machine refers to the image on its own host.
    assert_eq!(
        resources[5].attributes["image"],
        reference("dev/w/proxmox_image.talos-pve3", "volume")
    );
    let small = solve(
        cluster("dev/w", 1, 1, 2 * GIB, false),
        &state,
        &HashMap::new(),
    )
    .unwrap();
    assert_eq!(
        placed(&small),
        pairs(&[
            ("talos-pve1", "pve1"),
            ("talos-pve2", "pve2"),
            ("cp-1", "pve1"),
            ("worker-1", "pve2"),
        ])
    );
}

#[test]
fn an_existing_machine_never_moves_and_new_ones_work_around_it() {
    let resources = cluster("dev/w", 2, 0, 2 * GIB, false);
    let mut state = StateDocument::new("dev");
    // cp-1 runs on pve2 (placed there earlier, or moved by HA): it stays there.
    existing(&mut state, &resources[3], "pve2");
    let placed_now = solve(resources, &state, &HashMap::new()).unwrap();
    assert_eq!(
        placed(&placed_now),
        pairs(&[
            ("talos-pve1", "pve1"),
            ("talos-pve2", "pve2"),
            ("cp-1", "pve2"),
            ("cp-2", "pve1"),
        ])
    );
}

#[test]
fn free_memory_decides_and_counts_what_the_plan_places() {
    let state = StateDocument::new("dev");
    // pve1 has room for one 3 GiB worker, pve2 for two, pve3 is offline.
    let inventories = HashMap::from([(
        "dev/w".to_string(),
        inventory(
            "pve-a",
            &[
                ("pve1", true, 4 * GIB),
                ("pve2", true, 7 * GIB),
                ("pve3", false, 0),
            ],
        ),
    )]);
    let resources = solve(cluster("dev/w", 0, 3, 3 * GIB, false), &state, &inventories).unwrap();
    assert_eq!(
        placed(&resources),
        pairs(&[
            ("talos-pve1", "pve1"),
            ("talos-pve2", "pve2"),
            ("worker-1", "pve2"),
            ("worker-2", "pve1"),
            ("worker-3", "pve2"),
        ])
    );
    // A fourth does not fit anywhere: a problem naming every node's state.
    let problems = solve(cluster("dev/w", 0, 4, 3 * GIB, false), &state, &inventories).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].address.name, "worker-4");
    assert!(
        problems[0].summary.contains("needs 3072 MiB"),
        "{}",
        problems[0].summary
    );
    assert!(
        problems[0]
            .summary
            .contains("pve1 1024 MiB free, pve2 1024 MiB free, pve3 offline"),
        "{}",
        problems[0].summary
    );
}

#[test]
fn control_planes_need_distinct_nodes_unless_colocation_is_allowed() {
    let state = StateDocument::new("dev");
    let inventories = HashMap::from([(
        "dev/w".to_string(),
        inventory(
            "pve-a",
            &[
                ("pve1", true, 6 * GIB),
                ("pve2", true, 6 * GIB),
                ("pve3", true, GIB),
            ],
        ),
    )]);
    let problems = solve(cluster("dev/w", 3, 0, 2 * GIB, false), &state, &inventories).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].address.name, "cp-3");
    assert!(
        problems[0].help.contains("allow_colocation: true"),
        "{}",
        problems[0].help
    );

    let resources = solve(cluster("dev/w", 3, 0, 2 * GIB, true), &state, &inventories).unwrap();
    assert_eq!(
        placed(&resources),
        pairs(&[
            ("talos-pve1", "pve1"),
            ("talos-pve2", "pve2"),
            ("cp-1", "pve1"),
            ("cp-2", "pve2"),
            ("cp-3", "pve1"),
        ])
    );
}

#[test]
fn groups_on_the_same_hosts_share_one_account() {
    let state = StateDocument::new("dev");
    let hosts = [
        ("pve1", true, 4 * GIB),
        ("pve2", true, 2 * GIB),
        ("pve3", false, 0),
    ];
    let inventories = HashMap::from([
        ("dev/a".to_string(), inventory("pve-a", &hosts)),
        ("dev/b".to_string(), inventory("pve-a", &hosts)),
    ]);
    let mut resources = cluster("dev/a", 1, 0, 4 * GIB, false);
    resources.extend(cluster("dev/b", 1, 0, 2 * GIB, false));
    let resources = solve(resources, &state, &inventories).unwrap();
    let machines: Vec<_> = placed(&resources)
        .into_iter()
        .filter(|(name, _)| name.starts_with("cp"))
        .collect();
    // dev/a takes pve1 whole; dev/b's control plane therefore goes to pve2.
    assert_eq!(machines, pairs(&[("cp-1", "pve1"), ("cp-1", "pve2")]));
}

#[test]
fn preflight_problems_are_reported_for_what_will_be_created() {
    let state = StateDocument::new("dev");
    let mut inventory = inventory(
        "pve-a",
        &[
            ("pve1", true, 8 * GIB),
            ("pve2", true, 8 * GIB),
            ("pve3", true, 8 * GIB),
        ],
    );
    for host in ["pve1", "pve3"] {
        inventory.problems.push((
            format!("dev/w/proxmox_image.talos-{host}"),
            Diagnostic {
                severity: Severity::Error,
                attribute: Some("storage".into()),
                summary: "storage `local` does not allow the content type `import`".into(),
                detail: Some("enable it with `pvesm set local --content iso,import`".into()),
            },
        ));
    }
    let inventories = HashMap::from([("dev/w".to_string(), inventory)]);
    // One machine: only pve1's image is needed, so only its problem counts.
    let problems = solve(cluster("dev/w", 1, 0, GIB, false), &state, &inventories).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].address.name, "talos-pve1");
    assert!(problems[0].help.contains("pvesm set local"));
}

#[test]
fn a_machine_moved_by_ha_keeps_its_image_and_needs_no_new_one() {
    let mut resources = cluster("dev/w", 1, 0, 2 * GIB, false);
    // Built for pve1, created there with pve1's image; HA has since moved it to pve3.
    resources[3].attributes.insert(
        "image".into(),
        reference("dev/w/proxmox_image.talos-pve1", "volume"),
    );
    let mut state = StateDocument::new("dev");
    let image = resources[0].clone();
    existing(&mut state, &image, "pve1");
    existing(&mut state, &resources[3], "pve3");
    let placed_now = solve(resources, &state, &HashMap::new()).unwrap();
    assert_eq!(
        placed(&placed_now),
        pairs(&[("talos-pve1", "pve1"), ("cp-1", "pve3")])
    );
    assert_eq!(
        placed_now[1].attributes["image"],
        reference("dev/w/proxmox_image.talos-pve1", "volume")
    );
}
