//! Server-side apply, simplified where it does not change what a client sees: objects
//! merge key by key and lists are replaced whole (atomic), except `metadata.finalizers`,
//! a set as on the real server. Ownership is tracked per leaf path and manager, as the
//! real server's field managers do:
//!
//! - a leaf another manager set to a different value is a 409 conflict, worded as
//!   kube-apiserver words it (`Apply failed with 1 conflict: conflict with "helm":
//!   .data.mode`), unless forced; forced, the other manager loses the leaf;
//! - the same value applied by two managers is owned by both;
//! - a leaf a manager applied before and leaves out is removed, unless another manager
//!   owns it too; a manager that owns nothing any more drops out of `managedFields`;
//! - an apply that changes nothing writes nothing (same `resourceVersion`);
//!   `metadata.generation` (kinds that have one) moves when anything but metadata and
//!   status changes.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::kinds::Kind;
use super::{Key, State, Stored, TIMESTAMP, crd_established, failure, lifecycle, respond, schema};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};

/// One apply request, checked against its URL.
pub(super) struct Apply<'a> {
    pub kind: &'a Kind,
    pub namespace: Option<String>,
    pub name: String,
    pub manager: String,
    pub force: bool,
    pub manifest: Value,
}

/// Leaf paths of an applied configuration, as JSON pointers. Lists are leaves;
/// identity fields and status are nobody's.
fn leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, value) in map {
                let path = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
                if matches!(
                    path.as_str(),
                    "/apiVersion" | "/kind" | "/metadata/name" | "/metadata/namespace" | "/status"
                ) {
                    continue;
                }
                leaves(value, &path, out);
            }
        }
        _ => {
            out.insert(prefix.to_string(), value.clone());
        }
    }
}

/// `/spec/replicas` → `.spec.replicas`, as the API server names fields in conflicts.
pub(super) fn field_name(pointer: &str) -> String {
    pointer
        .split('/')
        .skip(1)
        .map(|part| format!(".{}", part.replace("~1", "/").replace("~0", "~")))
        .collect()
}

fn remove_pointer(object: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(Value::Object(map)) = object.pointer_mut(parent) {
        map.remove(&last);
    }
}

fn set_pointer(object: &mut Value, pointer: &str, value: Value) {
    let mut current = object;
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        current = current
            .as_object_mut()
            .expect("made an object above")
            .entry(part)
            .or_insert(Value::Null);
    }
    *current = value;
}

/// Everything but metadata and status: a change there bumps the generation.
fn spec_part(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    object
}

/// The API server's 409 message for `conflicts` (manager, field), fields in path order.
fn conflict_message(conflicts: &[(String, String)]) -> String {
    if let [(manager, field)] = conflicts {
        return format!("Apply failed with 1 conflict: conflict with \"{manager}\": {field}");
    }
    let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (manager, field) in conflicts {
        by_manager.entry(manager).or_default().push(field);
    }
    let mut lines = Vec::new();
    for (manager, fields) in by_manager {
        lines.push(format!("conflicts with \"{manager}\":"));
        lines.extend(fields.iter().map(|field| format!("- {field}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// `fieldsV1` of a manager's leaves: `f:`-prefixed keys down to each leaf (`{}`).
fn fields_v1(owned: &BTreeMap<String, Value>) -> Value {
    let mut fields = json!({});
    for pointer in owned.keys() {
        let mut current = &mut fields;
        for part in pointer.split('/').skip(1) {
            let key = format!("f:{}", part.replace("~1", "/").replace("~0", "~"));
            current = current
                .as_object_mut()
                .expect("only objects are built here")
                .entry(key)
                .or_insert_with(|| json!({}));
        }
    }
    fields
}

/// `metadata.managedFields`: one entry per manager that owns something, then what
/// controllers wrote (operation `Update`).
pub(super) fn managed_fields(stored: &Stored, api_version: &str) -> Value {
    let mut entries: Vec<Value> = stored
        .owned
        .iter()
        .filter(|(_, fields)| !fields.is_empty())
        .map(|(manager, fields)| {
            json!({"manager": manager, "operation": "Apply", "apiVersion": api_version,
                "time": TIMESTAMP, "fieldsType": "FieldsV1", "fieldsV1": fields_v1(fields)})
        })
        .collect();
    entries.extend(stored.updates.iter().cloned());
    Value::Array(entries)
}

/// `metadata.finalizers`: the server's own, then every manager's (a set).
fn finalizers(stored: &Stored) -> Vec<Value> {
    let mut all: Vec<Value> = stored.server_finalizers.iter().map(|f| json!(f)).collect();
    for fields in stored.owned.values() {
        for finalizer in fields
            .get("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !all.contains(finalizer) {
                all.push(finalizer.clone());
            }
        }
    }
    all
}

pub(super) fn apply(state: &mut State, request: Apply<'_>) -> Response<Full<Bytes>> {
    let Apply {
        kind,
        namespace,
        name,
        manager,
        force,
        manifest,
    } = request;
    let bad = |message: &str| failure(StatusCode::BAD_REQUEST, "BadRequest", message);
    let sent_name = manifest["metadata"]["name"].as_str().unwrap_or("");
    if sent_name != name {
        return bad(&format!(
            "the name of the object ({sent_name}) does not match the name on the URL ({name})"
        ));
    }
    if manifest["kind"] != kind.kind.as_str() {
        return bad("the kind of the object does not match the kind of the URL");
    }
    if kind.namespaced
        && let Some(sent) = manifest["metadata"]["namespace"].as_str()
        && Some(sent) != namespace.as_deref()
    {
        return bad(
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    if let Some(field) = schema::undeclared_field(kind, &manifest) {
        return failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "",
            &format!(
                "failed to create typed patch object ({}/{name}; {}, Kind={}): {field}: field not declared in schema",
                namespace.as_deref().unwrap_or(""),
                kind.api_version(),
                kind.kind
            ),
        );
    }
    let key: Key = (
        kind.group.clone(),
        kind.plural.clone(),
        namespace.clone(),
        name.clone(),
    );
    let created = !state.objects.contains_key(&key);
    if let Some(namespace) = namespace.as_deref()
        && let Some(refusal) =
            lifecycle::refuse_in_namespace(state, kind, namespace, &name, created)
    {
        return refusal;
    }
    let mut applied = BTreeMap::new();
    leaves(&manifest, "", &mut applied);
    let mut stored = state.objects.remove(&key).unwrap_or_else(|| Stored {
        object: json!({"apiVersion": kind.api_version(), "kind": kind.kind,
            "metadata": {"name": name}}),
        owned: BTreeMap::new(),
        updates: Vec::new(),
        server_finalizers: Vec::new(),
    });
    // Conflicts: a leaf another manager set to a different value.
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for (path, value) in &applied {
        for (other, fields) in &stored.owned {
            if *other != manager && fields.get(path).is_some_and(|v| v != value) {
                conflicts.push((other.clone(), field_name(path)));
            }
        }
    }
    conflicts.sort_by(|a, b| a.1.cmp(&b.1));
    if !conflicts.is_empty() && !force {
        if !created {
            state.objects.insert(key, stored);
        }
        return failure(
            StatusCode::CONFLICT,
            "Conflict",
            &conflict_message(&conflicts),
        );
    }
    let before = stored.object.clone();
    if force {
        // The other managers lose what was taken from them.
        for (other, fields) in stored.owned.iter_mut() {
            if *other != manager {
                fields.retain(|path, _| !applied.contains_key(path));
            }
        }
    }
    let previous = stored.owned.remove(&manager).unwrap_or_default();
    for path in previous.keys() {
        let owned_by_other = stored.owned.values().any(|f| f.contains_key(path));
        if !applied.contains_key(path) && !owned_by_other {
            remove_pointer(&mut stored.object, path);
        }
    }
    for (path, value) in &applied {
        set_pointer(&mut stored.object, path, value.clone());
    }
    stored.owned.insert(manager.clone(), applied);
    stored.owned.retain(|_, fields| !fields.is_empty());
    if created {
        lifecycle::prepare_for_create(kind, &mut stored);
    }
    match finalizers(&stored) {
        list if list.is_empty() => {
            if let Some(map) = stored.object["metadata"].as_object_mut() {
                map.remove("finalizers");
            }
        }
        list => stored.object["metadata"]["finalizers"] = Value::Array(list),
    }
    if let Some(namespace) = &namespace {
        stored.object["metadata"]["namespace"] = json!(namespace);
    }
    if created {
        stored.object["metadata"]["uid"] = json!(format!(
            "00000000-0000-0000-0000-{:012}",
            state.revision + 1
        ));
        stored.object["metadata"]["creationTimestamp"] = json!(TIMESTAMP);
    }
    lifecycle::enforce(kind, &mut stored);
    if kind.generation {
        let generation = before["metadata"]["generation"].as_i64().unwrap_or(0);
        if created || spec_part(&stored.object) != spec_part(&before) {
            stored.object["metadata"]["generation"] = json!(generation + 1);
        }
    }
    if kind.group == "apps" && kind.kind == "DaemonSet" {
        lifecycle::template_generation(&before, &mut stored.object, created);
    }
    stored.object["metadata"]["managedFields"] = managed_fields(&stored, &kind.api_version());
    if let Some(reactor) = state.reactor.clone() {
        reactor(&mut stored.object);
    }
    let changed = created || stored.object != before;
    if changed {
        state.revision += 1;
        stored.object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
    }
    let object = stored.object.clone();
    // The last finalizer of an object being deleted is gone: so is the object.
    let finished =
        object["metadata"]["deletionTimestamp"].is_string() && lifecycle::finalized(&object);
    if finished {
        lifecycle::finish(state, &key);
    } else {
        state.objects.insert(key.clone(), stored);
    }
    if kind.kind == "CustomResourceDefinition" && !finished {
        let established = object["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        if established {
            crd_established(state, &key);
        }
    }
    if created && kind.kind == "Namespace" {
        lifecycle::namespace_created(state, &name);
    }
    respond(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        &object,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflicts_are_named_like_the_api_server() {
        assert_eq!(field_name("/spec/replicas"), ".spec.replicas");
        assert_eq!(
            field_name("/metadata/labels/app.kubernetes.io~1name"),
            ".metadata.labels.app.kubernetes.io/name"
        );
        assert_eq!(
            conflict_message(&[("helm".into(), ".data.mode".into())]),
            "Apply failed with 1 conflict: conflict with \"helm\": .data.mode"
        );
        assert_eq!(
            conflict_message(&[
                ("helm".into(), ".data.level".into()),
                ("helm".into(), ".data.mode".into())
            ]),
            "Apply failed with 2 conflicts: conflicts with \"helm\":\n- .data.level\n- .data.mode"
        );
    }
}
