//! Broken configurations and the diagnostics they produce.
//!
//! Each case copies the bundled `config/` into a temporary directory, applies one small
//! edit (so the case reads as "the example, except …"), runs `infraflux validate --json`
//! there and checks the problems: code, message, file, line and column. Every run must
//! exit 1 — never 0, and never with a panic (exit 101, "panicked" on stderr).
//!
//! The binary runs with the temporary directory as its working directory and
//! `--config config`, so reported paths are `config/<layer>/<file>.yaml`, the way a user
//! running from the project root sees them.

mod support;

use std::path::PathBuf;

use serde_json::Value;
use support::{Run, TestContext};

/// The token the bundled example reads from `PROXMOX_TOKEN`.
const TOKEN: &str = support::TOKEN;

/// A copy of the bundled example configuration, edited by the test.
struct Case(TestContext);

impl Case {
    fn new() -> Self {
        Case(TestContext::with_example().token(Some(TOKEN)))
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.config_file(file)
    }

    /// Replace `from` by `to` in `file`; `from` must occur exactly once, so a case whose
    /// edit no longer applies (the example changed) fails instead of testing nothing.
    fn edit(self, file: &str, from: &str, to: &str) -> Self {
        self.0.edit(file, from, to);
        self
    }

    fn write(self, file: &str, bytes: impl AsRef<[u8]>) -> Self {
        self.0.write(file, bytes);
        self
    }

    fn token(self, token: Option<&str>) -> Self {
        Case(self.0.token(token))
    }

    fn command(&self, args: &[&str]) -> Run {
        self.0.run(args)
    }

    /// `infraflux validate --json`, which must fail cleanly.
    fn validate(&self) -> Report {
        let run = self.command(&["validate", "--json"]);
        assert_fails_cleanly(&run);
        let json: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("validate --json prints JSON ({e}):\n{}", run.stdout));
        assert_eq!(json["format_version"], 1);
        assert_eq!(json["valid"], false, "{}", run.stdout);
        Report {
            json,
            stdout: run.stdout,
        }
    }

    /// `infraflux validate` (human output on stderr), which must fail cleanly.
    fn validate_human(&self) -> String {
        let run = self.command(&["validate"]);
        assert_fails_cleanly(&run);
        run.stderr
    }
}

impl Case {
    /// `infraflux plan --env ENV --refresh=false`, which must fail cleanly: the command
    /// that resolves references (validate does not). Returns the human report.
    fn plan_human(&self, environment: &str) -> String {
        let run = self.command(&["plan", "--env", environment, "--refresh=false"]);
        assert_fails_cleanly(&run);
        run.stderr
    }
}

/// The parts of one rendered problem: code, message and `[file:line:column]`.
fn assert_reports(human: &str, code: &str, message: &str, at: &str) {
    for part in [code, message, &format!("[{at}]")] {
        assert!(human.contains(part), "`{part}` not in:\n{human}");
    }
}

/// Exit code 1 — never 0, and never a panic.
fn assert_fails_cleanly(run: &Run) {
    assert!(
        !run.stderr.contains("panicked"),
        "infraflux panicked:\n{}",
        run.stderr
    );
    assert_eq!(run.code, 1, "expected exit code 1\n{run}");
}

/// The parsed output of `validate --json`.
struct Report {
    json: Value,
    stdout: String,
}

#[derive(Debug, Clone)]
struct Found {
    severity: String,
    code: String,
    message: String,
    file: Option<String>,
    line: Option<u64>,
    column: Option<u64>,
    label: Option<String>,
    help: Option<String>,
}

impl Report {
    fn problems(&self) -> Vec<Found> {
        let text = |v: &Value| v.as_str().map(str::to_string);
        self.json["problems"]
            .as_array()
            .expect("problems is a list")
            .iter()
            .map(|p| Found {
                severity: text(&p["severity"]).unwrap(),
                code: text(&p["code"]).unwrap(),
                message: text(&p["message"]).unwrap(),
                file: text(&p["file"]),
                line: p["line"].as_u64(),
                column: p["column"].as_u64(),
                label: text(&p["label"]),
                help: text(&p["help"]),
            })
            .collect()
    }

    /// The one problem of the run (the case is built to produce exactly one).
    fn only(&self) -> Found {
        let problems = self.problems();
        assert_eq!(
            problems.len(),
            1,
            "expected exactly one problem:\n{}",
            self.stdout
        );
        assert_eq!(self.json["errors"], 1);
        problems.into_iter().next().unwrap()
    }

    /// The problem with this message.
    fn with_message(&self, message: &str) -> Found {
        self.problems()
            .into_iter()
            .find(|p| p.message == message)
            .unwrap_or_else(|| panic!("no problem `{message}` in:\n{}", self.stdout))
    }
}

impl Found {
    /// Code, message and position (`file:line:column`).
    fn is(&self, code: &str, message: &str, at: &str) -> &Self {
        assert_eq!(self.severity, "error", "{self:#?}");
        assert_eq!(self.code, code, "{self:#?}");
        assert_eq!(self.message, message, "{self:#?}");
        let position = format!(
            "{}:{}:{}",
            self.file.as_deref().unwrap_or("?"),
            self.line.unwrap_or(0),
            self.column.unwrap_or(0)
        );
        assert_eq!(position, at, "{self:#?}");
        self
    }

    fn help(&self, help: &str) -> &Self {
        assert_eq!(self.help.as_deref(), Some(help), "{self:#?}");
        self
    }

    fn label(&self, label: &str) -> &Self {
        assert_eq!(self.label.as_deref(), Some(label), "{self:#?}");
        self
    }
}

// ---------------------------------------------------------------------------------------
// Unknown keys

#[test]
fn unknown_top_level_key_suggests_the_known_one() {
    Case::new()
        .edit("environments/prod.yaml", "sync_wave: 2", "sync_wav: 2")
        .validate()
        .only()
        .is(
            "config::unknown-key",
            "unknown key `sync_wav` at the top level",
            "config/environments/prod.yaml:4:1",
        )
        .label("unknown key")
        .help("did you mean `sync_wave`?");
}

#[test]
fn unknown_nested_key_suggests_the_known_one() {
    Case::new()
        .edit("defaults/proxmox.yaml", "  endpoint:", "  endpiont:")
        .validate()
        .only()
        .is(
            "config::unknown-key",
            "unknown key `endpiont` in `proxmox`",
            "config/defaults/proxmox.yaml:5:3",
        )
        .help("did you mean `endpoint`?");
}

#[test]
fn unknown_key_in_a_clusters_environment_override() {
    Case::new()
        .edit(
            "clusters/workload.yaml",
            "    template: medium",
            "    templat: medium",
        )
        .validate()
        .only()
        .is(
            "config::unknown-key",
            "unknown key `templat` in `environments.staging`",
            "config/clusters/workload.yaml:14:5",
        )
        .help("did you mean `template`?");
}

// ---------------------------------------------------------------------------------------
// Wrong types

#[test]
fn a_string_where_an_integer_belongs() {
    Case::new()
        .edit(
            "templates/small.yaml",
            "control_plane:\n  count: 1\n  cpu: 2",
            "control_plane:\n  count: 1\n  cpu: \"2\"",
        )
        .validate()
        .only()
        .is(
            "config::wrong-type",
            "wrong type for `control_plane.cpu`: expected an integer, found a string",
            "config/templates/small.yaml:5:8",
        )
        .help("write a whole number without quotes or units, e.g. `2`");
}

#[test]
fn a_float_version_gets_a_quote_hint_with_the_text_as_written() {
    Case::new()
        .edit("defaults/platform.yaml", "version: 1.18.4", "version: 1.10")
        .validate()
        .only()
        .is(
            "config::wrong-type",
            "wrong type for `platform.cilium.version`: expected a string, found a number",
            "config/defaults/platform.yaml:7:14",
        )
        .help("quote the value (YAML reads `1.10` as a number): write \"1.10\"");
}

#[test]
fn a_scalar_where_a_mapping_belongs() {
    Case::new()
        .edit(
            "defaults/cluster.yaml",
            "kubernetes:\n  version: 1.32.2",
            "kubernetes: 1.32",
        )
        .validate()
        .only()
        .is(
            "config::wrong-type",
            "wrong type for `kubernetes`: expected a mapping, found a number",
            "config/defaults/cluster.yaml:12:13",
        )
        .help("write nested `key: value` lines here");
}

// ---------------------------------------------------------------------------------------
// Missing keys and malformed values

#[test]
fn a_required_key_removed_from_defaults_is_reported_once_at_its_parent() {
    Case::new()
        .edit(
            "defaults/proxmox.yaml",
            "  endpoint: https://pve1.lab.example.internal:8006\n",
            "",
        )
        .validate()
        .only()
        .is(
            "config::missing-key",
            "missing required key `proxmox.endpoint` for 5 (environment, cluster) pairs: \
             dev/workload, prod/management, prod/workload, prod/edge, staging/workload",
            "config/defaults/proxmox.yaml:4:1",
        )
        .label("`proxmox.endpoint` is not set in any layer");
}

#[test]
fn malformed_size() {
    // small.yaml is used by dev/workload and prod/edge: reported once, in the template.
    Case::new()
        .edit(
            "templates/small.yaml",
            "  memory: 4Gi\n  disk: 40Gi",
            "  memory: 4GB\n  disk: 40Gi",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "malformed size `4GB` in `control_plane.memory`",
            "config/templates/small.yaml:6:11",
        )
        .help("use Kubernetes units, e.g. `8Gi` (Ki, Mi, Gi, Ti; or k, M, G, T)");
}

#[test]
fn malformed_cidr() {
    Case::new()
        .edit("clusters/edge.yaml", "10.40.0.0/24", "10.40.0.0/33")
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "malformed IPv4 CIDR `10.40.0.0/33` in `network.nodes.cidr`",
            "config/clusters/edge.yaml:11:15",
        )
        .help("write a valid IPv4 CIDR, e.g. `10.10.0.0/24`");
}

#[test]
fn malformed_ip_address() {
    Case::new()
        .edit(
            "clusters/edge.yaml",
            "gateway: 10.40.0.1",
            "gateway: 10.40.0.256",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "malformed IPv4 address `10.40.0.256` in `network.nodes.gateway`",
            "config/clusters/edge.yaml:12:18",
        );
}

#[test]
fn malformed_url() {
    Case::new()
        .edit(
            "defaults/proxmox.yaml",
            "endpoint: https://pve1.lab.example.internal:8006",
            "endpoint: pve1.lab.example.internal:8006",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "malformed URL `pve1.lab.example.internal:8006` in `proxmox.endpoint`",
            "config/defaults/proxmox.yaml:5:13",
        )
        .help("write a valid URL, e.g. `https://pve1.example.internal:8006`");
}

#[test]
fn malformed_repository_url() {
    Case::new()
        .edit(
            "defaults/platform.yaml",
            "repository: https://git.example.internal/platform/apps.git",
            "repository: git.example.internal/platform/apps",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "malformed repository URL `git.example.internal/platform/apps` in `gitops.repository`",
            "config/defaults/platform.yaml:28:15",
        );
}

#[test]
fn malformed_version() {
    Case::new()
        .edit(
            "defaults/cluster.yaml",
            "version: v1.13.9",
            "version: v1.13",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "malformed version `v1.13` in `talos.version`",
            "config/defaults/cluster.yaml:6:12",
        )
        .help("write a valid version, e.g. `v1.13.9`");
}

// ---------------------------------------------------------------------------------------
// Addresses and networks

#[test]
fn gateway_outside_the_node_network() {
    Case::new()
        .edit(
            "clusters/edge.yaml",
            "gateway: 10.40.0.1",
            "gateway: 10.41.0.1",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "`10.41.0.1` in `network.nodes.gateway` is outside the node network 10.40.0.0/24",
            "config/clusters/edge.yaml:12:18",
        )
        .help("pick an address between 10.40.0.1 and 10.40.0.254");
}

#[test]
fn vip_outside_the_node_network() {
    Case::new()
        .edit(
            "clusters/management.yaml",
            "vip: 10.30.0.5",
            "vip: 10.31.0.5",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "`10.31.0.5` in `network.vip` is outside the node network 10.30.0.0/24",
            "config/clusters/management.yaml:12:12",
        );
}

#[test]
fn start_outside_the_node_network() {
    Case::new()
        .edit(
            "clusters/edge.yaml",
            "start: 10.40.0.10",
            "start: 10.41.0.10",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "`10.41.0.10` in `network.nodes.start` is outside the node network 10.40.0.0/24",
            "config/clusters/edge.yaml:13:16",
        );
}

#[test]
fn node_range_running_past_the_network() {
    // prod/edge has 3 control planes and 1 worker: .252–.255, and .255 is the broadcast.
    Case::new()
        .edit(
            "clusters/edge.yaml",
            "start: 10.40.0.10",
            "start: 10.40.0.252",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "4 nodes starting at 10.40.0.252 do not fit in 10.40.0.0/24",
            "config/clusters/edge.yaml:13:16",
        )
        .label("the node range runs past the network")
        .help("start lower (the last usable address is 10.40.0.254) or use a larger network");
}

#[test]
fn vip_inside_the_node_range() {
    Case::new()
        .edit("clusters/edge.yaml", "vip: 10.40.0.5", "vip: 10.40.0.11")
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "the VIP 10.40.0.11 is inside the node range 10.40.0.10–10.40.0.13",
            "config/clusters/edge.yaml:14:12",
        )
        .label("a node will be given this address");
}

#[test]
fn node_ranges_of_two_pairs_overlap() {
    // prod/management takes 10.30.0.10–15; prod/workload now starts inside it.
    Case::new()
        .edit(
            "clusters/workload.yaml",
            "start: 10.30.0.30",
            "start: 10.30.0.12",
        )
        .validate()
        .only()
        .is(
            "config::overlapping-ranges",
            "node range 10.30.0.12–10.30.0.19 of prod/workload overlaps 10.30.0.10–10.30.0.15 of prod/management",
            "config/clusters/workload.yaml:27:16",
        )
        .label("overlaps prod/management");
}

// ---------------------------------------------------------------------------------------
// Names and references

#[test]
fn duplicate_worker_pool_names() {
    Case::new()
        .edit(
            "templates/large.yaml",
            "    disk: 200Gi\n",
            "    disk: 200Gi\n  - name: general\n    count: 1\n",
        )
        .validate()
        .only()
        .is(
            "config::duplicate-name",
            "duplicate name `general`",
            "config/templates/large.yaml:14:11",
        )
        .label("`general` is already used on line 9");
}

#[test]
fn duplicate_cluster_in_an_environment() {
    Case::new()
        .edit(
            "environments/prod.yaml",
            "clusters: [management, workload, edge]",
            "clusters: [management, workload, edge, workload]",
        )
        .validate()
        .only()
        .is(
            "config::duplicate-name",
            "cluster `workload` is listed twice",
            "config/environments/prod.yaml:3:40",
        )
        .label("already listed on line 3");
}

#[test]
fn environment_naming_an_unknown_cluster() {
    let report = Case::new()
        .edit(
            "environments/staging.yaml",
            "clusters: [workload]",
            "clusters: [workloads]",
        )
        .validate();
    report
        .with_message("environment `staging` runs unknown cluster `workloads`")
        .is(
            "config::unknown-cluster",
            "environment `staging` runs unknown cluster `workloads`",
            "config/environments/staging.yaml:3:12",
        )
        .label("no such file in clusters/")
        .help("did you mean `workload`?");
    // The only other finding follows directly from it: workload's staging override is
    // now unused, a warning.
    let others: Vec<Found> = report
        .problems()
        .into_iter()
        .filter(|p| p.code != "config::unknown-cluster")
        .collect();
    assert_eq!(others.len(), 1, "{others:#?}");
    assert_eq!(others[0].severity, "warning");
    assert_eq!(others[0].code, "config::unused-override");
}

#[test]
fn cluster_naming_an_unknown_template() {
    Case::new()
        .edit("clusters/edge.yaml", "template: small", "template: smal")
        .validate()
        .only()
        .is(
            "config::unknown-template",
            "unknown template `smal`",
            "config/clusters/edge.yaml:4:11",
        )
        .label("no such file in templates/")
        .help("did you mean `small`?");
}

#[test]
fn override_naming_an_unknown_environment() {
    Case::new()
        .edit("clusters/edge.yaml", "  prod:", "  prdo:")
        .validate()
        .only()
        .is(
            "config::unknown-environment",
            "cluster `edge` overrides unknown environment `prdo`",
            "config/clusters/edge.yaml:6:3",
        )
        .help("did you mean `prod`?");
}

#[test]
fn selecting_an_unknown_environment_suggests_one() {
    let run = Case::new().command(&["validate", "--json", "--env", "prdo"]);
    assert_fails_cleanly(&run);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["problems"][0]["message"], "unknown environment `prdo`");
    assert_eq!(json["problems"][0]["help"], "did you mean `prod`?");
    // It belongs to no file.
    assert_eq!(json["problems"][0]["file"], Value::Null);
    assert_eq!(json["problems"][0]["line"], Value::Null);
}

// ---------------------------------------------------------------------------------------
// Reading files

#[test]
fn yaml_syntax_error() {
    // ` bad:` is indented less than `revision:` and more than `gitops:`.
    Case::new()
        .edit(
            "environments/dev.yaml",
            "  revision: dev\n",
            "  revision: dev\n bad: x\n",
        )
        .validate()
        .only()
        .is(
            "config::yaml-syntax",
            "invalid YAML: while parsing a block mapping, did not find expected key",
            "config/environments/dev.yaml:7:2",
        )
        .label("here");
}

#[test]
fn a_broken_environment_file_is_not_reported_again_as_unknown() {
    // workload.yaml overrides `dev`: before, a broken dev.yaml also produced "cluster
    // `workload` overrides unknown environment `dev`".
    let report = Case::new()
        .edit("environments/dev.yaml", "sync_wave: 0", "sync_wave: [0")
        .validate();
    let codes: Vec<String> = report.problems().into_iter().map(|p| p.code).collect();
    assert_eq!(codes, ["config::yaml-syntax"], "{}", report.stdout);
}

#[test]
fn duplicate_yaml_key() {
    Case::new()
        .edit(
            "environments/staging.yaml",
            "template: medium\n",
            "template: medium\ntemplate: large\n",
        )
        .validate()
        .only()
        .is(
            "config::duplicate-key",
            "duplicate key `template`",
            "config/environments/staging.yaml:6:1",
        )
        .label("`template` was already set on line 5");
}

#[test]
fn unreadable_file() {
    // Tests may run as root, where permissions do not stop reads: a directory named like
    // a layer file cannot be read by anyone.
    let case = Case::new();
    std::fs::create_dir(case.path("templates/tiny.yaml")).unwrap();
    let found = case.validate().only();
    found.is(
        "config::unreadable",
        &found.message,
        "config/templates/tiny.yaml:1:1",
    );
    assert!(
        found
            .message
            .starts_with("cannot read `config/templates/tiny.yaml`: "),
        "{found:#?}"
    );
}

#[test]
fn a_file_that_is_not_utf8() {
    // Latin-1 "é" in a comment on line 2.
    let case = Case::new();
    let mut bytes = std::fs::read(case.path("clusters/edge.yaml")).unwrap();
    let line_2 = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    bytes.splice(line_2 + 2..line_2 + 2, [0xE9]);
    case.write("clusters/edge.yaml", bytes)
        .validate()
        .only()
        .is(
            "config::unreadable",
            "`config/clusters/edge.yaml` is not UTF-8 text",
            "config/clusters/edge.yaml:2:3",
        )
        .help("save the file as UTF-8");
}

// ---------------------------------------------------------------------------------------
// Interpolation

#[test]
fn missing_environment_variable() {
    let human = Case::new().token(None).plan_human("dev");
    assert_reports(
        &human,
        "config::missing-env",
        "environment variable `PROXMOX_TOKEN` is not set",
        "config/defaults/proxmox.yaml:6:10",
    );
    assert!(human.contains("needs ${env:PROXMOX_TOKEN}"), "{human}");
}

#[test]
fn validate_needs_no_secrets_and_a_dev_run_only_devs() {
    // prod reads its own token; neither token is set.
    let case = Case::new()
        .edit(
            "environments/prod.yaml",
            "sync_wave: 2\n",
            "sync_wave: 2\nproxmox:\n  token: ${env:PROD_PROXMOX_TOKEN}\n",
        )
        .token(None);
    let output = case.command(&["validate"]);
    let stdout = output.stdout.as_str();
    assert_eq!(
        Some(output.code),
        Some(0),
        "{stdout}{}",
        output.stderr.as_str()
    );
    assert!(
        stdout.starts_with("configuration valid: 3 environments, 5 clusters, 26 nodes"),
        "{stdout}"
    );
    // A dev run needs dev's token only: set it, leave prod's unset.
    let case = case.token(Some(TOKEN));
    for args in [
        ["graph", "--env", "dev"].as_slice(),
        ["plan", "--env", "dev", "--refresh=false"].as_slice(),
    ] {
        let output = case.command(args);
        assert_eq!(
            Some(output.code),
            Some(0),
            "{args:?}: {}",
            output.stderr.as_str()
        );
    }
    assert_reports(
        &case.plan_human("prod"),
        "config::missing-env",
        "environment variable `PROD_PROXMOX_TOKEN` is not set",
        "config/environments/prod.yaml:6:10",
    );
}

#[test]
fn missing_file_reference() {
    let case = Case::new().edit(
        "defaults/proxmox.yaml",
        "ca_file: /etc/infraflux/pve-root-ca.pem",
        "ca_file: ${file:certs/pve-root-ca.pem}",
    );
    let human = case.plan_human("dev");
    // Relative to the file that names it.
    assert_reports(
        &human,
        "config::missing-file",
        "cannot read `config/defaults/certs/pve-root-ca.pem`: ",
        "config/defaults/proxmox.yaml:15:14",
    );
    assert!(
        human.contains("needs ${file:certs/pve-root-ca.pem}"),
        "{human}"
    );
    assert!(
        human.contains("file paths are relative to the YAML file that names them"),
        "{human}"
    );
}

// ---------------------------------------------------------------------------------------
// Semantics of merged values

#[test]
fn a_bad_value_in_defaults_is_reported_once_at_the_defaults_line() {
    // network.pods reaches all five (environment, cluster) pairs.
    Case::new()
        .edit(
            "defaults/networking.yaml",
            "pods: 10.244.0.0/16",
            "pods: 10.244.0.0/33",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "malformed CIDR `10.244.0.0/33` in `network.pods`",
            "config/defaults/networking.yaml:7:9",
        );
}

#[test]
fn cpu_request_above_its_limit() {
    Case::new()
        .edit(
            "environments/prod.yaml",
            "requests: {cpu: 1000m",
            "requests: {cpu: 3000m",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "CPU request 3 is above the limit 2",
            "config/environments/prod.yaml:13:21",
        )
        .label("above the limit");
}

#[test]
fn memory_request_above_its_limit() {
    Case::new()
        .edit("environments/staging.yaml", "memory: 512Mi", "memory: 2Gi")
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "memory request 2Gi is above the limit 1Gi",
            "config/environments/staging.yaml:14:35",
        );
}

#[test]
fn an_absurd_node_count_is_a_problem_not_a_crash() {
    // Used to overflow the node total (a panic) or allocate billions of machines.
    Case::new()
        .edit(
            "templates/small.yaml",
            "count: 1\n    cpu",
            "count: 4294967295\n    cpu",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "`workers[0].count` is 4294967295, more nodes than a cluster can have",
            "config/templates/small.yaml:10:12",
        );
}

#[test]
fn invalid_proxmox_token_is_reported_without_echoing_the_secret() {
    let secret = "7f3c9e1a-do-not-echo";
    let token = format!("root@pam-infraflux={secret}");
    let case = Case::new().token(Some(&token));
    let human = case.plan_human("dev");
    assert_reports(
        &human,
        "config::invalid-value",
        "malformed Proxmox API token in `proxmox.token`",
        "config/defaults/proxmox.yaml:6:10",
    );
    assert!(human.contains("not USER@REALM!TOKENID=SECRET"), "{human}");
    assert!(!human.contains(secret), "{human}");
    // validate does not read the token at all.
    let output = case.command(&["validate", "--json"]);
    assert_eq!(output.code, 0, "{output}");
    assert!(!output.stdout.contains(secret) && !output.stderr.contains(secret));
}

// ---------------------------------------------------------------------------------------
// Several problems at once

#[test]
fn problems_in_several_files_are_all_reported_in_one_run() {
    let report = Case::new()
        .edit("defaults/proxmox.yaml", "  storage:", "  storge:")
        .edit(
            "templates/medium.yaml",
            "cpu: 4\n  memory",
            "cpu: four\n  memory",
        )
        .edit("environments/prod.yaml", "sync_wave: 2", "sync_wave: -2")
        .edit("clusters/edge.yaml", "template: small", "template: smal")
        .validate();
    let positions: Vec<String> = report
        .problems()
        .iter()
        .map(|p| {
            format!(
                "{}:{} {}",
                p.file.as_deref().unwrap_or("?"),
                p.line.unwrap_or(0),
                p.code
            )
        })
        .collect();
    // In file-read order: defaults, templates, environments, clusters.
    assert_eq!(
        positions,
        [
            "config/defaults/proxmox.yaml:8 config::unknown-key",
            "config/templates/medium.yaml:5 config::wrong-type",
            "config/environments/prod.yaml:4 config::invalid-value",
            "config/clusters/edge.yaml:4 config::unknown-template",
        ],
        "{}",
        report.stdout
    );
    assert_eq!(report.json["errors"], 4);
}

// ---------------------------------------------------------------------------------------
// Rendered (human) output

/// The human report (snapshot it with the case's filters bound: temporary paths).
fn human(case: &Case) -> String {
    case.validate_human()
}

#[test]
fn rendered_unknown_key_and_wrong_type() {
    let case = Case::new()
        .edit("defaults/proxmox.yaml", "  endpoint:", "  endpiont:")
        .edit("defaults/platform.yaml", "version: 1.18.4", "version: 1.18");
    let _filters = case.0.filters();
    insta::assert_snapshot!(human(&case));
}

#[test]
fn rendered_network_problems_from_two_layers() {
    let case = Case::new()
        .edit("clusters/edge.yaml", "vip: 10.40.0.5", "vip: 10.40.0.11")
        .edit(
            "defaults/networking.yaml",
            "services: 10.96.0.0/12",
            "services: 10.244.0.0/20",
        );
    let _filters = case.0.filters();
    insta::assert_snapshot!(human(&case));
}

// ---------------------------------------------------------------------------------------
// Hostile input (issue 16): reading outside the configuration, terminal escapes

#[test]
fn a_file_reference_outside_the_configuration_is_refused_and_never_printed() {
    let case = Case::new().edit(
        "defaults/proxmox.yaml",
        "token: ${env:PROXMOX_TOKEN}",
        "token: ${file:../../../../../../../../../../../../etc/passwd}",
    );
    let report = case.validate();
    report
        .only()
        .is(
            "config::file-outside",
            "`${file:../../../../../../../../../../../../etc/passwd}` reads outside the configuration",
            "config/defaults/proxmox.yaml:6:10",
        )
        .label("outside the configuration's directories");
    let show = case.command(&["config", "show", "--env", "dev", "--cluster", "workload"]);
    let plan = case.command(&["plan", "--env", "dev", "--refresh=false"]);
    for output in [&show, &plan] {
        let text = format!("{}{}", output.stdout.as_str(), output.stderr.as_str());
        assert_eq!(Some(output.code), Some(1), "{text}");
        assert!(text.contains("config::file-outside"), "{text}");
        assert!(!text.contains("root:"), "{text}");
    }
}

#[test]
fn a_directory_allowed_on_the_command_line_is_read_and_its_contents_masked() {
    let secrets = tempfile::tempdir().unwrap();
    let url = "https://ci:hunter2-do-not-print@git.example.internal/platform/apps.git";
    std::fs::write(secrets.path().join("repository"), format!("{url}\n")).unwrap();
    std::fs::write(secrets.path().join("path"), "apps/{environment}\n").unwrap();
    let reference =
        |name: &str, kind: &str| format!("${{{kind}:{}}}", secrets.path().join(name).display());
    let case = Case::new().edit(
        "defaults/platform.yaml",
        "  repository: https://git.example.internal/platform/apps.git\n  revision: main\n  path: environments/{environment}",
        &format!(
            "  repository: {}\n  revision: main\n  path: {}",
            reference("repository", "file"),
            reference("path", "plainfile")
        ),
    );
    let show = [
        "config",
        "show",
        "--env",
        "dev",
        "--cluster",
        "workload",
        "--provenance",
    ];
    // Not allowed: refused where it is written.
    let refused = case.command(&show);
    assert_eq!(Some(refused.code), Some(1));
    assert!(refused.stderr.as_str().contains("config::file-outside"));
    let dir = secrets.path().display().to_string();
    let mut args = vec!["--allow-file-dir", dir.as_str()];
    args.extend(show);
    let output = case.command(&args);
    let stdout = output.stdout.as_str();
    assert_eq!(Some(output.code), Some(0), "{}", output.stderr.as_str());
    assert!(!stdout.contains("hunter2"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("  repository: (sensitive)")
                && l.ends_with(&format!("(file: {}/repository)", dir))),
        "{stdout}"
    );
    // `plainfile` is shown as it is.
    assert!(stdout.contains("  path: apps/{environment} "), "{stdout}");
}

#[test]
fn terminal_escapes_in_values_are_shown_escaped() {
    let case = Case::new().edit(
        "clusters/edge.yaml",
        "template: small",
        "template: \"small\\e]0;owned\\a\\e[2J\\u202e\"",
    );
    let found = case.validate().only();
    found.is(
        "config::unknown-template",
        "unknown template `small\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{202e}`",
        "config/clusters/edge.yaml:4:11",
    );
    let human = case.validate_human();
    assert!(
        human.contains("unknown template `small\\u{1b}]0;owned"),
        "{human}"
    );
    assert!(
        !human
            .chars()
            .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
        "{human:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Silently accepted before (issue 16)

#[test]
fn an_empty_environment_file_is_an_error_not_an_environment_without_clusters() {
    // Before, staging silently ran no clusters, and its next plan proposed destroying
    // everything it had.
    Case::new()
        .write("environments/staging.yaml", "")
        .validate()
        .with_message("environment `staging` does not say which clusters it runs")
        .is(
            "config::no-clusters",
            "environment `staging` does not say which clusters it runs",
            "config/environments/staging.yaml:1:1",
        )
        .label("empty file");
}

#[test]
fn a_vip_that_is_another_clusters_node_address() {
    // prod/workload's nodes are 10.30.0.30–37; management's VIP moves onto one.
    Case::new()
        .edit("clusters/management.yaml", "vip: 10.30.0.5", "vip: 10.30.0.31")
        .validate()
        .only()
        .is(
            "config::shared-address",
            "the VIP 10.30.0.31 of prod/management is a node address of prod/workload (10.30.0.30–10.30.0.37)",
            "config/clusters/management.yaml:12:12",
        );
}

#[test]
fn a_vip_shared_by_two_clusters() {
    Case::new()
        .edit("clusters/workload.yaml", "vip: 10.30.0.6", "vip: 10.30.0.5")
        .validate()
        .only()
        .is(
            "config::shared-address",
            "the VIP 10.30.0.5 of prod/workload is also the VIP of prod/management",
            "config/clusters/workload.yaml:28:12",
        );
}

#[test]
fn a_vmid_range_smaller_than_the_vms_of_a_pair() {
    // prod/workload has 8 VMs; the range now holds 5. Before, apply failed half-way.
    Case::new()
        .edit(
            "clusters/workload.yaml",
            "  prod:\n    template: large\n",
            "  prod:\n    template: large\n    proxmox:\n      vmid_range: {start: 1000, end: 1004}\n",
        )
        .validate()
        .only()
        .is(
            "config::vmid-range-too-small",
            "`proxmox.vmid_range` 1000–1004 holds 5 VM IDs, fewer than the VMs of prod/workload (8)",
            "config/clusters/workload.yaml:24:38",
        )
        .label("too few VM IDs");
}

#[test]
fn pairs_sharing_a_vmid_range_too_small_for_all_of_them() {
    // 26 VMs on one Proxmox cluster, 20 IDs: each pair fits alone, not all together.
    Case::new()
        .edit("defaults/proxmox.yaml", "    end: 1999", "    end: 1019")
        .validate()
        .only()
        .is(
            "config::vmid-range-too-small",
            "26 VMs of dev/workload, prod/management, prod/workload, prod/edge, staging/workload share VM IDs 1000–1019 on https://pve1.lab.example.internal:8006/, which hold 20",
            "config/defaults/proxmox.yaml:13:10",
        );
}

#[test]
fn a_vmid_range_reversed_in_an_environment_is_reported_there() {
    // `end` is in defaults; the environment's `start` made the range empty.
    Case::new()
        .edit(
            "environments/dev.yaml",
            "sync_wave: 0\n",
            "sync_wave: 0\nproxmox:\n  vmid_range: {start: 3000}\n",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "`proxmox.vmid_range` is empty: start 3000 is after end 1999",
            "config/environments/dev.yaml:6:23",
        )
        .label("`end` is set at line 13");
}

#[test]
fn proxmox_node_names_must_be_node_names() {
    let report = Case::new()
        .edit(
            "defaults/proxmox.yaml",
            "[pve1, pve2, pve3]",
            "[pve1, 'pve 2', 'a/b', '']",
        )
        .validate();
    let found: Vec<String> = report
        .problems()
        .iter()
        .map(|p| {
            format!(
                "{} {}:{}",
                p.message,
                p.line.unwrap_or(0),
                p.column.unwrap_or(0)
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            "`pve 2` is not a Proxmox node name 7:17",
            "`a/b` is not a Proxmox node name 7:26",
            "`` is not a Proxmox node name 7:33",
        ],
        "{}",
        report.stdout
    );
}

#[test]
fn image_upload_hosts_must_name_known_nodes() {
    Case::new()
        .edit(
            "defaults/proxmox.yaml",
            "  bridge: vmbr0\n",
            "  bridge: vmbr0\n  image_upload:\n    method: ssh\n    private_key_file: /keys/pve\n    known_hosts: /keys/known_hosts\n    hosts: {pve1: 192.0.2.11, pve4: 192.0.2.14}\n",
        )
        .validate()
        .only()
        .is(
            "config::unknown-node",
            "`proxmox.image_upload.hosts` names `pve4`, which is not in `proxmox.nodes`",
            "config/defaults/proxmox.yaml:15:31",
        )
        .help("did you mean `pve3`? (`proxmox.nodes`: pve1, pve2, pve3)");
}

#[test]
fn a_template_cannot_choose_a_template() {
    Case::new()
        .edit(
            "templates/small.yaml",
            "control_plane:\n",
            "template: large\ncontrol_plane:\n",
        )
        .validate()
        .only()
        .is(
            "config::template-in-template",
            "template `small` cannot choose a template",
            "config/templates/small.yaml:3:1",
        )
        .label("ignored: templates do not nest");
}

#[test]
fn cluster_and_environment_names_are_dns_labels() {
    let case = Case::new().edit(
        "environments/prod.yaml",
        "clusters: [management, workload, edge]",
        "clusters: [management, workload, Edge_1]",
    );
    std::fs::rename(
        case.path("clusters/edge.yaml"),
        case.path("clusters/Edge_1.yaml"),
    )
    .unwrap();
    std::fs::rename(
        case.path("environments/staging.yaml"),
        case.path("environments/Staging.yaml"),
    )
    .unwrap();
    let report = case.validate();
    let found: Vec<String> = report
        .problems()
        .iter()
        .map(|p| format!("{} {}", p.message, p.file.as_deref().unwrap_or("?")))
        .collect();
    assert!(
        found.contains(
            &"cluster name `Edge_1` is not a DNS label config/clusters/Edge_1.yaml".to_string()
        ) && found.contains(
            &"environment name `Staging` is not a DNS label config/environments/Staging.yaml"
                .to_string()
        ),
        "{}",
        report.stdout
    );
}

#[test]
fn a_merge_key_in_helm_values_merges() {
    let case = Case::new().edit(
        "defaults/platform.yaml",
        "      ipam:\n        mode: kubernetes\n",
        "      ipam: &ipam\n        mode: kubernetes\n      operator:\n        <<: *ipam\n        replicas: 1\n",
    );
    let output = case.command(&["config", "show", "--env", "dev", "--cluster", "workload"]);
    let stdout = output.stdout.as_str();
    assert_eq!(Some(output.code), Some(0), "{}", output.stderr.as_str());
    assert!(!stdout.contains("<<"), "{stdout}");
    assert!(
        stdout.contains("      operator:\n        replicas: 1\n        mode: kubernetes\n"),
        "{stdout}"
    );
}

#[test]
fn an_integer_too_large_is_reported_at_the_value() {
    // Before: at the first line of defaults/cluster.yaml, once per pair.
    Case::new()
        .edit(
            "templates/small.yaml",
            "  cpu: 2\n  memory: 4Gi",
            "  cpu: 99999999999999999999\n  memory: 4Gi",
        )
        .validate()
        .only()
        .is(
            "config::invalid-value",
            "`99999999999999999999` in `control_plane.cpu` is too large for a whole number",
            "config/templates/small.yaml:5:8",
        );
}

#[test]
fn value_problems_in_several_files_come_in_one_run() {
    // A format problem in one file no longer hides the value problems of the others,
    // and a misspelt key is not reported again as missing.
    let report = Case::new()
        .edit("defaults/proxmox.yaml", "  storage:", "  storge:")
        .edit("environments/prod.yaml", "sync_wave: 2", "sync_wave: -2")
        .edit("clusters/edge.yaml", "10.40.0.0/24", "10.40.0.0/33")
        .edit("environments/staging.yaml", "memory: 512Mi", "memory: 2Gi")
        .validate();
    let positions: Vec<String> = report
        .problems()
        .iter()
        .map(|p| {
            format!(
                "{}:{} {}",
                p.file.as_deref().unwrap_or("?"),
                p.line.unwrap_or(0),
                p.code
            )
        })
        .collect();
    assert_eq!(
        positions,
        [
            "config/defaults/proxmox.yaml:8 config::unknown-key",
            "config/environments/prod.yaml:4 config::invalid-value",
            "config/environments/staging.yaml:14 config::invalid-value",
            "config/clusters/edge.yaml:11 config::invalid-value",
        ],
        "{}",
        report.stdout
    );
}
