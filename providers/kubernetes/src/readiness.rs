//! Readiness: the kstatus rules (sigs.k8s.io/cli-utils `pkg/kstatus/status`) as pure
//! functions over the JSON of a live object.
//!
//! Order of the checks, as in kstatus: an object being deleted is in progress; a
//! controller that has not observed the latest generation is in progress; the
//! `Reconciling`/`Stalled` conditions decide; then each kind's own rules. Where this
//! module deliberately differs from kstatus it says so:
//! - a Job is Current only once `Complete` (kstatus calls a running Job Current);
//! - an unknown kind with a `Ready` condition must have it `True` (kstatus ignores it);
//! - an ArgoCD Application must be Synced and Healthy at the expected revision, with its
//!   last operation Succeeded and no `*Error` condition (kstatus has no rule for it).

use std::fmt;

use serde_json::Value;

/// How far an object is from its desired state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Reconciled: what was asked for is what runs.
    Current,
    /// Not there yet; the reason says what is missing. Waiting may help.
    InProgress(String),
    /// Reconciliation failed; waiting will not help.
    Failed(String),
    /// The object does not exist.
    NotFound,
}

impl Status {
    pub fn is_current(&self) -> bool {
        matches!(self, Status::Current)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Current => f.write_str("current"),
            Status::InProgress(reason) => write!(f, "in progress: {reason}"),
            Status::Failed(reason) => write!(f, "failed: {reason}"),
            Status::NotFound => f.write_str("not found"),
        }
    }
}

/// What the caller expects beyond "reconciled", for kinds where it matters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectation {
    /// For an ArgoCD Application: the revision it must be synced at. A commit SHA (7 to
    /// 40 hex digits) is compared with `status.sync.revision`; a branch or tag with the
    /// target revision ArgoCD last compared against. `None`: the spec's targetRevision.
    pub revision: Option<String>,
}

/// The status of a live object (`None`: it does not exist).
pub fn status(object: Option<&Value>) -> Status {
    status_with(object, &Expectation::default())
}

pub fn status_with(object: Option<&Value>, expectation: &Expectation) -> Status {
    let Some(object) = object else {
        return Status::NotFound;
    };
    if let Some(status) = generic(object) {
        return status;
    }
    let api_version = str_at(object, "/apiVersion").unwrap_or("");
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    match (group, str_at(object, "/kind").unwrap_or("")) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("batch", "Job") => job(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => custom_resource_definition(object),
        ("", "Pod") => pod(object),
        ("", "PersistentVolumeClaim") => persistent_volume_claim(object),
        ("", "Service") => service(object),
        ("", "Namespace") => namespace(object),
        ("argoproj.io", "Application") => application(object, expectation),
        _ => ready_condition(object),
    }
}

/// Conditions as one line each (`Available=False MinimumReplicasUnavailable: …`), for
/// reports on objects that did not become ready.
pub fn conditions_summary(object: &Value) -> Vec<String> {
    conditions(object)
        .iter()
        .map(|condition| {
            let mut line = format!(
                "{}={}",
                str_at(condition, "/type").unwrap_or("?"),
                str_at(condition, "/status").unwrap_or("?")
            );
            if let Some(reason) = str_at(condition, "/reason").filter(|r| !r.is_empty()) {
                line.push(' ');
                line.push_str(reason);
            }
            if let Some(message) = str_at(condition, "/message").filter(|m| !m.is_empty()) {
                line.push_str(": ");
                line.push_str(message);
            }
            line
        })
        .collect()
}

// ---- helpers ----------------------------------------------------------------------------

fn str_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

fn int_at(value: &Value, pointer: &str) -> Option<i64> {
    value.pointer(pointer).and_then(Value::as_i64)
}

fn conditions(object: &Value) -> &[Value] {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    conditions(object)
        .iter()
        .find(|c| str_at(c, "/type") == Some(kind))
}

fn condition_is(object: &Value, kind: &str, status: &str) -> bool {
    condition(object, kind).and_then(|c| str_at(c, "/status")) == Some(status)
}

/// `reason: message` of a condition, whichever parts it has.
fn condition_text(condition: &Value) -> String {
    let reason = str_at(condition, "/reason").unwrap_or("");
    let message = str_at(condition, "/message").unwrap_or("");
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (false, true) => reason.to_string(),
        (true, false) => message.to_string(),
        (true, true) => str_at(condition, "/type").unwrap_or("").to_string(),
    }
}

// ---- generic rules ------------------------------------------------------------------------

fn generic(object: &Value) -> Option<Status> {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Some(Status::InProgress("being deleted".into()));
    }
    if let (Some(generation), Some(observed)) = (
        int_at(object, "/metadata/generation"),
        int_at(object, "/status/observedGeneration"),
    ) && observed != generation
    {
        return Some(Status::InProgress(format!(
            "generation {generation} not yet observed (observed {observed})"
        )));
    }
    if let Some(stalled) = condition(object, "Stalled")
        && str_at(stalled, "/status") == Some("True")
    {
        return Some(Status::Failed(condition_text(stalled)));
    }
    if let Some(reconciling) = condition(object, "Reconciling")
        && str_at(reconciling, "/status") == Some("True")
    {
        return Some(Status::InProgress(condition_text(reconciling)));
    }
    None
}

/// Kinds without rules of their own: Current when they exist, unless a `Ready`
/// condition says otherwise.
fn ready_condition(object: &Value) -> Status {
    match condition(object, "Ready") {
        Some(ready) if str_at(ready, "/status") != Some("True") => {
            Status::InProgress(format!("not Ready: {}", condition_text(ready)))
        }
        _ => Status::Current,
    }
}

// ---- workloads ----------------------------------------------------------------------------

fn deployment(object: &Value) -> Status {
    if let Some(progressing) = condition(object, "Progressing")
        && str_at(progressing, "/reason") == Some("ProgressDeadlineExceeded")
    {
        return Status::Failed(format!(
            "progress deadline exceeded: {}",
            str_at(progressing, "/message").unwrap_or("")
        ));
    }
    let spec = int_at(object, "/spec/replicas").unwrap_or(1);
    let replicas = int_at(object, "/status/replicas").unwrap_or(0);
    let updated = int_at(object, "/status/updatedReplicas").unwrap_or(0);
    let ready = int_at(object, "/status/readyReplicas").unwrap_or(0);
    let available = int_at(object, "/status/availableReplicas").unwrap_or(0);
    if object.pointer("/status/observedGeneration").is_none() {
        return Status::InProgress("not yet observed by its controller".into());
    }
    if spec > replicas {
        return Status::InProgress(format!("replicas: {replicas}/{spec}"));
    }
    if updated < spec {
        return Status::InProgress(format!("updated: {updated}/{spec}"));
    }
    if replicas > spec {
        return Status::InProgress(format!("pending termination: {}", replicas - spec));
    }
    if available < spec {
        return Status::InProgress(format!("available: {available}/{spec}"));
    }
    if ready < spec {
        return Status::InProgress(format!("ready: {ready}/{spec}"));
    }
    if spec > 0 && !condition_is(object, "Available", "True") {
        return Status::InProgress("Available condition not True".into());
    }
    Status::Current
}

fn stateful_set(object: &Value) -> Status {
    if str_at(object, "/spec/updateStrategy/type") == Some("OnDelete") {
        return Status::Current;
    }
    if object.pointer("/status/observedGeneration").is_none() {
        return Status::InProgress("not yet observed by its controller".into());
    }
    let spec = int_at(object, "/spec/replicas").unwrap_or(1);
    let replicas = int_at(object, "/status/replicas").unwrap_or(0);
    let ready = int_at(object, "/status/readyReplicas").unwrap_or(0);
    let current = int_at(object, "/status/currentReplicas").unwrap_or(0);
    let updated = int_at(object, "/status/updatedReplicas").unwrap_or(0);
    if spec > replicas {
        return Status::InProgress(format!("replicas: {replicas}/{spec}"));
    }
    if replicas > spec {
        return Status::InProgress(format!("pending termination: {}", replicas - spec));
    }
    if ready < spec {
        return Status::InProgress(format!("ready: {ready}/{spec}"));
    }
    if let Some(partition) = int_at(object, "/spec/updateStrategy/rollingUpdate/partition") {
        let expected = (spec - partition).max(0);
        if updated < expected {
            return Status::InProgress(format!("updated: {updated}/{expected} (partitioned)"));
        }
        return Status::Current;
    }
    if current < spec {
        return Status::InProgress(format!("current: {current}/{spec}"));
    }
    if str_at(object, "/status/currentRevision") != str_at(object, "/status/updateRevision") {
        return Status::InProgress("waiting for the update revision to roll out".into());
    }
    Status::Current
}

fn daemon_set(object: &Value) -> Status {
    if object.pointer("/status/observedGeneration").is_none() {
        return Status::InProgress("not yet observed by its controller".into());
    }
    let Some(desired) = int_at(object, "/status/desiredNumberScheduled") else {
        return Status::InProgress("desiredNumberScheduled not reported yet".into());
    };
    let scheduled = int_at(object, "/status/currentNumberScheduled").unwrap_or(0);
    let updated = int_at(object, "/status/updatedNumberScheduled").unwrap_or(0);
    let available = int_at(object, "/status/numberAvailable").unwrap_or(0);
    let ready = int_at(object, "/status/numberReady").unwrap_or(0);
    if scheduled < desired {
        return Status::InProgress(format!("scheduled: {scheduled}/{desired}"));
    }
    if updated < desired {
        return Status::InProgress(format!("updated: {updated}/{desired}"));
    }
    if available < desired {
        return Status::InProgress(format!("available: {available}/{desired}"));
    }
    if ready < desired {
        return Status::InProgress(format!("ready: {ready}/{desired}"));
    }
    Status::Current
}

fn job(object: &Value) -> Status {
    if let Some(failed) = condition(object, "Failed")
        && str_at(failed, "/status") == Some("True")
    {
        return Status::Failed(format!("job failed: {}", condition_text(failed)));
    }
    if condition_is(object, "Complete", "True") {
        return Status::Current;
    }
    if object.pointer("/status/startTime").is_none() {
        return Status::InProgress("job not started".into());
    }
    Status::InProgress(format!(
        "job running: {} succeeded, {} active, {} failed",
        int_at(object, "/status/succeeded").unwrap_or(0),
        int_at(object, "/status/active").unwrap_or(0),
        int_at(object, "/status/failed").unwrap_or(0)
    ))
}

fn pod(object: &Value) -> Status {
    match str_at(object, "/status/phase").unwrap_or("Pending") {
        "Succeeded" => Status::Current,
        "Failed" => Status::Failed(format!(
            "pod failed: {}",
            str_at(object, "/status/message")
                .or_else(|| str_at(object, "/status/reason"))
                .unwrap_or("no reason given")
        )),
        "Running" if condition_is(object, "Ready", "True") => Status::Current,
        phase => {
            let statuses = object
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for container in statuses {
                if let Some(reason) = str_at(container, "/state/waiting/reason") {
                    let name = str_at(container, "/name").unwrap_or("?");
                    if reason == "CrashLoopBackOff" {
                        return Status::Failed(format!("container {name} is crash-looping"));
                    }
                    return Status::InProgress(format!("container {name} waiting: {reason}"));
                }
            }
            if let Some(scheduled) = condition(object, "PodScheduled")
                && str_at(scheduled, "/status") == Some("False")
            {
                return Status::InProgress(format!("not scheduled: {}", condition_text(scheduled)));
            }
            Status::InProgress(format!("pod {phase}, not Ready"))
        }
    }
}

fn persistent_volume_claim(object: &Value) -> Status {
    match str_at(object, "/status/phase") {
        Some("Bound") => Status::Current,
        phase => Status::InProgress(format!("not Bound (phase {})", phase.unwrap_or("unknown"))),
    }
}

fn service(object: &Value) -> Status {
    if str_at(object, "/spec/type") == Some("LoadBalancer") {
        let assigned = object
            .pointer("/status/loadBalancer/ingress")
            .and_then(Value::as_array)
            .is_some_and(|ingress| !ingress.is_empty());
        if !assigned {
            return Status::InProgress("load balancer ingress not assigned".into());
        }
    }
    Status::Current
}

fn namespace(object: &Value) -> Status {
    match str_at(object, "/status/phase") {
        Some("Terminating") => Status::InProgress("namespace terminating".into()),
        _ => Status::Current,
    }
}

fn custom_resource_definition(object: &Value) -> Status {
    if let Some(names) = condition(object, "NamesAccepted")
        && str_at(names, "/status") == Some("False")
    {
        return Status::Failed(format!("names not accepted: {}", condition_text(names)));
    }
    match condition(object, "Established") {
        Some(established) if str_at(established, "/status") == Some("True") => Status::Current,
        Some(established) => {
            Status::InProgress(format!("not Established: {}", condition_text(established)))
        }
        None => Status::InProgress("not Established yet".into()),
    }
}

// ---- ArgoCD ------------------------------------------------------------------------------

/// A commit SHA, as opposed to a branch or tag name.
pub fn is_commit_sha(revision: &str) -> bool {
    (7..=40).contains(&revision.len()) && revision.chars().all(|c| c.is_ascii_hexdigit())
}

fn application(object: &Value, expectation: &Expectation) -> Status {
    let health = str_at(object, "/status/health/status").unwrap_or("Unknown");
    if health == "Degraded" {
        return Status::Failed(format!("Degraded: {}", degraded_message(object)));
    }
    for condition in conditions(object) {
        let kind = str_at(condition, "/type").unwrap_or("");
        if kind == "InvalidSpecError" {
            return Status::Failed(condition_text_argocd(condition));
        }
        if kind.ends_with("Error") {
            return Status::InProgress(condition_text_argocd(condition));
        }
    }
    if let Some(phase) = str_at(object, "/status/operationState/phase")
        && phase != "Succeeded"
    {
        let message = str_at(object, "/status/operationState/message").unwrap_or("");
        return match phase {
            "Failed" | "Error" => Status::Failed(format!("last sync {phase}: {message}")),
            _ => Status::InProgress(format!("sync {phase}: {message}")),
        };
    }
    let sync = str_at(object, "/status/sync/status").unwrap_or("Unknown");
    if sync != "Synced" {
        return Status::InProgress(format!("sync status {sync}"));
    }
    if health != "Healthy" {
        return Status::InProgress(format!("health {health}"));
    }
    let expected = expectation
        .revision
        .as_deref()
        .or_else(|| str_at(object, "/spec/source/targetRevision"));
    if let Some(expected) = expected {
        let at_revision = if is_commit_sha(expected) {
            str_at(object, "/status/sync/revision").is_some_and(|r| r.starts_with(expected))
        } else {
            str_at(object, "/status/sync/comparedTo/source/targetRevision") == Some(expected)
        };
        if !at_revision {
            return Status::InProgress(format!(
                "not yet synced at revision {expected} (at {})",
                str_at(object, "/status/sync/revision").unwrap_or("none")
            ));
        }
    }
    Status::Current
}

/// ArgoCD conditions have a type and a message, no reason.
fn condition_text_argocd(condition: &Value) -> String {
    format!(
        "{}: {}",
        str_at(condition, "/type").unwrap_or("?"),
        str_at(condition, "/message").unwrap_or("")
    )
}

/// The application's health message (deprecated in ArgoCD 3, still set by some
/// versions), else the messages of its degraded resources.
fn degraded_message(object: &Value) -> String {
    if let Some(message) = str_at(object, "/status/health/message").filter(|m| !m.is_empty()) {
        return message.to_string();
    }
    let resources = object
        .pointer("/status/resources")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let messages: Vec<String> = resources
        .iter()
        .filter(|r| str_at(r, "/health/status") == Some("Degraded"))
        .map(|r| {
            let mut line = format!(
                "{} {}",
                str_at(r, "/kind").unwrap_or("?"),
                match str_at(r, "/namespace").filter(|n| !n.is_empty()) {
                    Some(namespace) => format!("{namespace}/{}", str_at(r, "/name").unwrap_or("?")),
                    None => str_at(r, "/name").unwrap_or("?").to_string(),
                }
            );
            if let Some(message) = str_at(r, "/health/message") {
                line.push_str(": ");
                line.push_str(message);
            }
            line
        })
        .collect();
    if messages.is_empty() {
        "no message given".into()
    } else {
        messages.join("; ")
    }
}

#[cfg(test)]
mod tests;
