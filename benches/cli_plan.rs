//! `infraflux plan` over the real CLI path at fleet scale: the `infraflux` binary loads a
//! generated configuration, resolves the model, builds the graph, plans and renders, in
//! a process of its own whose wall time, CPU time (user + sys) and peak RSS are read with
//! `getrusage(RUSAGE_CHILDREN)` in a parent process that runs only it.
//!
//! `cargo bench --bench cli_plan` prints, at about 1k, 10k and 100k resources (one
//! environment of K clusters × 11 VMs, 34 resources per cluster), the median of 3 runs
//! of two scenarios:
//! - `create`: `plan --refresh=false` against an empty state (everything to add, every
//!   attribute rendered);
//! - `steady`: `plan --refresh=false` against a state that records every resource as
//!   applied ([`record_applied`]). The state stands for what the providers would have
//!   read: every resource is loaded, decoded, its machine config rendered and diffed
//!   against its recorded attributes, as after a refresh, without a network (a real
//!   refresh at 100k would measure the simulator serving 33,000 VMs, not the planner).
//!
//! Targets (issue 15): 10k in ≤ 0.5 s and ≤ 150 MiB, 100k in ≤ 3 s and ≤ 1 GiB.
//! `INFRAFLUX_BENCH_RESOURCES=1000,10000` chooses the sizes, `INFRAFLUX_BENCH_RUNS` the
//! repetitions, `INFRAFLUX_BENCH_BINARY` another `infraflux` to measure (e.g. main's
//! release build, for a before/after), `INFRAFLUX_BENCH_KEEP=1` keeps each generated
//! project (its path printed) to profile `infraflux plan` on it. No timing is asserted: this prints figures for a human to compare.
//! Built without optimisations (`cargo test --benches`) it runs the smallest size once,
//! to check that the scenarios still work.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use infraflux::commands::wiring::providers_with;
use infraflux::config::{Selection, Variables};
use infraflux::operation::Workspace;
use infraflux::operation::load::desired_of;
use infraflux::plan::{PlanOptions, plan};
use infraflux::state::{LocalStore, ResourceState, ResourceStatus, StateDocument, StateStore};
use infraflux_kubernetes::upstream::Sources;

#[path = "support/child_usage.rs"]
mod child_usage;
#[path = "support/hierarchy.rs"]
mod hierarchy;

use child_usage::{Usage, median};

const ENVIRONMENT: &str = "fleet";
const TOKEN: &str = "root@pam!infraflux=bench";
/// What the example's cluster (workload role, 11 VMs) holds: 3 images, 11 VMs, 11
/// machine configs, secrets, bootstrap, kubeconfig, 4 platform services, a namespace
/// and the handoff.
const RESOURCES_PER_CLUSTER: usize = 34;

struct BenchVariables;

impl Variables for BenchVariables {
    fn var(&self, name: &str) -> Option<String> {
        (name == "PROXMOX_TOKEN").then(|| TOKEN.to_string())
    }
}

/// The upstream release files (ArgoCD's manifests) from the mirror beside the
/// repository; the download URL is a port where nothing listens.
fn mirror() -> PathBuf {
    let mirror = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/upstream");
    assert!(
        mirror.join("argo-cd-v3.5.1/install.yaml").is_file(),
        "the bench plans ArgoCD from {}: it needs argo-cd-v3.5.1/install.yaml there",
        mirror.display()
    );
    mirror
}

/// A project with `clusters` clusters of 11 VMs in the environment `fleet`.
fn project(clusters: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    hierarchy::generate(&config, clusters, &[(ENVIRONMENT, "fleet")]);
    std::fs::write(
        config.join("templates").join("fleet.yaml"),
        "control_plane:\n  count: 3\n  cpu: 2\n  memory: 4Gi\n  disk: 20Gi\nworkers:\n  - name: general\n    count: 8\n    cpu: 2\n    memory: 4Gi\n    disk: 20Gi\n",
    )
    .unwrap();
    dir
}

/// Record every resource of the environment as applied: plan it in-process as the CLI
/// would and write what is planned to state, ready. Twice: first with one real Talos
/// secrets bundle (generated once, shared by every cluster) where the plan has unknowns,
/// then as planned against that state, so machine configs are rendered from known
/// secrets as after a real apply. What is written is what apply would record: no
/// attribute the schema leaves unrecorded, and what a resource takes whole from another's
/// outputs recorded by reference. Values only a live cluster knows (a kubeconfig, how a
/// config was applied) stay unknown in state.
fn record_applied(project: &Path) {
    let workspace = Workspace::read(project.join("config").as_path(), &BenchVariables);
    let selection = Selection {
        environment: Some(ENVIRONMENT.into()),
        cluster: None,
    };
    let (_, model, problems) = workspace.load_model(&selection, true);
    let model = model.unwrap_or_else(|| panic!("{problems:?}"));
    let providers = providers_with(Sources {
        mirror: Some(mirror()),
        cache: None,
        base_url: Some("http://127.0.0.1:9".into()),
        ..Sources::default()
    });
    let options = PlanOptions {
        refresh: false,
        ..PlanOptions::default()
    };
    let secrets = infraflux_talos::secrets::ClusterSecrets::generate()
        .expect("generate a Talos secrets bundle")
        .to_attributes();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut state = StateDocument::new(ENVIRONMENT);
    for _ in 0..2 {
        let planned = runtime
            .block_on(plan(
                desired_of(&model, ENVIRONMENT),
                &state,
                &providers,
                &options,
            ))
            .expect("the generated configuration plans");
        let mut applied = StateDocument::new(ENVIRONMENT);
        for change in planned.changes {
            let mut attributes = change.after.expect("a planned resource has attributes");
            if change.address.kind == "talos_secrets" {
                for (name, value) in attributes.iter_mut() {
                    if let Some(secret) = secrets.get(name)
                        && infraflux_provider::is_unknown(value)
                    {
                        *value = secret.clone();
                    }
                }
            }
            // As apply records it: without what the schema says state never holds.
            let schema = providers.get(&change.provider).and_then(|p| {
                p.schemas()
                    .into_iter()
                    .find(|s| s.kind == change.address.kind)
            });
            if let Some(schema) = schema {
                attributes = schema.recorded(attributes);
            }
            if let Some(desired) = &change.desired {
                infraflux::state::by_reference::record_by_reference(desired, &mut attributes);
            }
            let kind = change.address.kind.clone();
            applied.resources.insert(
                change.address.clone(),
                ResourceState {
                    kind,
                    provider: change.provider,
                    id: Some(change.address.to_string()),
                    attributes: attributes.into(),
                    sensitive: change.sensitive,
                    dependencies: change.dependencies,
                    status: ResourceStatus::Ready,
                },
            );
        }
        state = applied;
    }
    LocalStore::in_project(project).persist(&state).unwrap();
}

struct Run {
    usage: Usage,
    summary: String,
}

/// The argument that makes this bench the measuring parent of one `infraflux plan`.
const MEASURE: &str = "--measure-plan-in";

/// Run `infraflux plan --env fleet --refresh=false` in `project` under a parent process
/// of its own (this bench again, [`measure`]): `getrusage(RUSAGE_CHILDREN)` there counts
/// that one child only, its CPU time and its peak RSS.
fn run_plan(project: &Path) -> Run {
    let output = Command::new(std::env::current_exe().unwrap())
        .args([MEASURE.as_ref(), project.as_os_str()])
        .stderr(Stdio::inherit())
        .output()
        .expect("run the measuring process");
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "the measured run failed: {text}");
    let (usage, summary) = Usage::decode(&text);
    Run {
        usage,
        summary: summary.to_string(),
    }
}

/// The measuring parent: run the plan, then print `wall_us cpu_us peak_rss_kib summary`.
fn measure(project: &Path) {
    let out = project.join("plan.txt");
    // Another build to compare with (e.g. main's), else this one.
    let binary = std::env::var_os("INFRAFLUX_BENCH_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_infraflux").into());
    let (status, usage) = Usage::of(
        Command::new(binary)
            .current_dir(project)
            .args([
                "plan",
                "--env",
                ENVIRONMENT,
                "--refresh=false",
                "--color=never",
            ])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("PROXMOX_TOKEN", TOKEN)
            .env("INFRAFLUX_MANIFESTS", mirror())
            .env("INFRAFLUX_MANIFESTS_URL", "http://127.0.0.1:9")
            .env("XDG_CACHE_HOME", project.join(".cache"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap()),
    );
    let plan = std::fs::read_to_string(&out).unwrap();
    assert!(status.success(), "infraflux plan failed ({status})");
    let summary = plan
        .lines()
        .rev()
        .find(|l| l.starts_with("Plan:") || l.starts_with("No changes"))
        .unwrap_or("(no summary line)");
    println!("{} {summary}", usage.encode());
}

fn report(scenario: &str, resources: usize, runs: &[Run]) {
    let wall = median(runs.iter().map(|r| r.usage.wall).collect());
    let cpu = median(runs.iter().map(|r| r.usage.cpu).collect());
    let rss = median(runs.iter().map(|r| r.usage.peak_rss_kib).collect()) as f64 / 1024.0;
    let target = match resources {
        9_000..=11_000 => " (target ≤ 0.5 s, ≤ 150 MiB)",
        90_000..=110_000 => " (target ≤ 3 s, ≤ 1024 MiB)",
        _ => "",
    };
    println!(
        "{scenario:<7} {resources:>7} resources: wall {:>6.2} s  cpu {:>6.2} s  peak RSS {rss:>7.1} MiB  {:.1} KiB/resource{target}  [{}]",
        wall.as_secs_f64(),
        cpu.as_secs_f64(),
        rss * 1024.0 / resources as f64,
        runs[0].summary,
    );
}

fn main() {
    let arguments: Vec<String> = std::env::args().collect();
    if let [_, flag, project] = arguments.as_slice()
        && flag == MEASURE
    {
        return measure(Path::new(project));
    }
    let optimised = !cfg!(debug_assertions);
    let sizes: Vec<usize> = match std::env::var("INFRAFLUX_BENCH_RESOURCES") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .expect("INFRAFLUX_BENCH_RESOURCES: numbers")
            })
            .collect(),
        Err(_) if optimised => vec![1_000, 10_000, 100_000],
        Err(_) => vec![1_000],
    };
    let repetitions = child_usage::repetitions(3);
    for wanted in sizes {
        let clusters = wanted.div_ceil(RESOURCES_PER_CLUSTER);
        let resources = clusters * RESOURCES_PER_CLUSTER;
        let project = project(clusters);
        // Kept for a profiler: its path, then the steady state once recorded.
        let keep = std::env::var_os("INFRAFLUX_BENCH_KEEP").is_some();
        if keep {
            println!("project: {}", project.path().display());
        }
        let runs: Vec<Run> = (0..repetitions).map(|_| run_plan(project.path())).collect();
        report("create", resources, &runs);
        record_applied(project.path());
        let runs: Vec<Run> = (0..repetitions).map(|_| run_plan(project.path())).collect();
        report("steady", resources, &runs);
        if keep {
            let _ = project.keep();
        }
    }
}
