//! The JSON Schema of the configuration format, generated from [`super::raw`], and the
//! check of every file against it. Schema errors become problems at the exact key or
//! value, with "did you mean" for misspelt keys.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use serde_json::{Value as Json, json};

use super::layers::LayerKind;
use super::node::{KeyPath, Node, Segment};
use super::raw::RawSettings;
use crate::diag::{Problem, Problems, did_you_mean};

/// The schema of one kind of layer file. Environment files may also list their
/// `clusters`; cluster files may hold per-environment overrides under `environments`.
pub fn layer_schema(kind: LayerKind) -> Json {
    let mut schema = settings_schema();
    let properties = schema["properties"]
        .as_object_mut()
        .expect("RawSettings is a struct with properties");
    match kind {
        LayerKind::Environment => {
            properties.insert(
                "clusters".into(),
                json!({
                    "description": "Clusters (files in `clusters/`) this environment runs",
                    "type": "array",
                    "items": {"type": "string"},
                }),
            );
        }
        LayerKind::Cluster => {
            properties.insert(
                "environments".into(),
                json!({
                    "description": "Overrides for this cluster in one environment, keyed by environment name",
                    "type": "object",
                    "additionalProperties": {"$ref": "#/$defs/RawSettings"},
                }),
            );
        }
        LayerKind::Defaults => {
            properties.insert("state".into(), state_schema());
        }
        LayerKind::Template => {}
    }
    schema["title"] = json!(format!("InfraFlux {} file", kind.noun()));
    schema
}

/// `state:` (defaults files only): where state lives for the whole project. The
/// PostgreSQL connection string holds a password, so it only ever comes from the
/// environment (INFRAFLUX_STATE_POSTGRES_URL), never from a file.
fn state_schema() -> Json {
    json!({
        "description": "Where state lives (defaults files only); --state-backend and INFRAFLUX_STATE_BACKEND override it. The PostgreSQL connection string comes from INFRAFLUX_STATE_POSTGRES_URL.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "backend": {
                "description": "`local` (.infraflux/state/, the default) or `postgres`",
                "enum": ["local", "postgres"],
            },
            "lease": {
                "description": "PostgreSQL: how long a lock lasts unless its run renews it, e.g. 2m",
                "type": "string",
                "pattern": "^([0-9]+(ms|s|m|h))+$",
            },
        },
    })
}

/// Every kind accepted, for editors that map one schema to the whole `config/` folder.
pub fn any_layer_schema() -> Json {
    let mut schema = layer_schema(LayerKind::Cluster);
    let environment = layer_schema(LayerKind::Environment);
    schema["properties"]["clusters"] = environment["properties"]["clusters"].clone();
    schema["properties"]["state"] = state_schema();
    schema["title"] = json!("InfraFlux configuration file");
    schema
}

fn settings_schema() -> Json {
    let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let schema = generator.into_root_schema_for::<RawSettings>();
    let mut value = schema.to_value();
    // Self-reference for the per-environment overrides of cluster files.
    let copy = value.clone();
    if let Some(defs) = value.get_mut("$defs").and_then(Json::as_object_mut) {
        let mut settings = copy;
        if let Some(obj) = settings.as_object_mut() {
            obj.remove("$defs");
            obj.remove("$schema");
            obj.remove("title");
        }
        defs.insert("RawSettings".into(), settings);
    }
    value
}

struct Compiled {
    kind: LayerKind,
    schema: Json,
    validator: jsonschema::Validator,
}

fn compiled(kind: LayerKind) -> &'static Compiled {
    static CACHE: OnceLock<Vec<Compiled>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        LayerKind::ALL
            .iter()
            .map(|&kind| {
                // Validation works on the tree with nulls removed (a null only removes a
                // key while merging), so the schema it uses has no null branches: errors
                // then point at the offending value, not at an `anyOf` above it.
                let mut schema = layer_schema(kind);
                strip_null_branches(&mut schema);
                let validator = jsonschema::validator_for(&schema)
                    .expect("the generated configuration schema is valid JSON Schema");
                Compiled {
                    kind,
                    schema,
                    validator,
                }
            })
            .collect()
    });
    all.iter()
        .find(|c| c.kind == kind)
        .expect("every layer kind has a schema")
}

/// What the schema refused in one file: the values to leave out (each reported), and
/// the paths whose checks to skip later (a value left out, the key a misspelt one
/// meant), so one mistake is reported once.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Refused {
    pub remove: Vec<KeyPath>,
    pub unchecked: Vec<KeyPath>,
}

impl Refused {
    fn value(&mut self, path: &KeyPath) {
        self.remove.push(path.clone());
        self.unchecked.push(path.up_to_first_index());
    }
}

/// Check one file's tree against its kind's schema; every violation becomes a problem.
/// `text` is the file's text, quoted in hints (`1.10` as written, not as the number 1.1).
pub fn check_layer(kind: LayerKind, root: &Node, text: &str, problems: &mut Problems) -> Refused {
    let mut refused = Refused::default();
    if root.is_null() {
        return refused;
    }
    let compiled = compiled(kind);
    let mut instance = root.to_json();
    strip_nulls(&mut instance);
    for error in compiled.validator.iter_errors(&instance) {
        let path = instance_path(error.instance_path());
        let node = root.lookup(&path).unwrap_or(root);
        let node_schema = schema_at(&compiled.schema, &path);
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed: Vec<&str> = node_schema
                    .and_then(|s| s.get("properties"))
                    .and_then(Json::as_object)
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                for key in unexpected {
                    refused.remove.push(path.key(key));
                    // The key it was meant to be is reported as this key, not again
                    // as missing.
                    if let Some(meant) = did_you_mean(key, allowed.iter().copied()) {
                        refused.unchecked.push(path.key(meant).up_to_first_index());
                    }
                    problems.push(unknown_key(root, &path, key, &allowed));
                }
                continue;
            }
            ValidationErrorKind::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                problems.push(
                    Problem::error(
                        "config::missing-key",
                        format!("missing `{key}` in `{path}`"),
                    )
                    .at(node.origin)
                    .label(format!("needs `{key}`"))
                    .help(format!("add `{key}:` to this item")),
                );
            }
            ValidationErrorKind::Type { .. } | ValidationErrorKind::AnyOf { .. } => {
                let expected = node_schema.map(describe_expected).unwrap_or_default();
                problems.push(
                    Problem::error(
                        "config::wrong-type",
                        format!(
                            "wrong type for `{path}`: expected {expected}, found {}",
                            node.kind_name()
                        ),
                    )
                    .at(node.origin)
                    .label(format!("expected {expected}"))
                    .help(type_hint(node, &expected, text)),
                );
            }
            ValidationErrorKind::Enum { options } => {
                let choices: Vec<&str> = options
                    .as_array()
                    .map(|a| a.iter().filter_map(Json::as_str).collect())
                    .unwrap_or_default();
                let found = node.as_str().unwrap_or("");
                let mut help = format!("use one of: {}", choices.join(", "));
                if let Some(close) = did_you_mean(found, choices.iter().copied()) {
                    help = format!("did you mean `{close}`? ({help})");
                }
                problems.push(
                    Problem::error(
                        "config::invalid-value",
                        format!("`{found}` is not a valid `{path}`"),
                    )
                    .at(node.origin)
                    .label("not one of the allowed values")
                    .help(help),
                );
            }
            _ => {
                problems.push(
                    Problem::error(
                        "config::invalid-value",
                        format!("invalid `{path}`: {error}"),
                    )
                    .at(node.origin)
                    .label("invalid value")
                    .help(
                        node_schema
                            .and_then(|s| s.get("description"))
                            .and_then(Json::as_str)
                            .map(|d| format!("expected: {d}"))
                            .unwrap_or_else(|| "see `infraflux config schema`".into()),
                    ),
                );
            }
        }
        refused.value(&path);
    }
    check_numbers(
        root,
        &mut KeyPath::root(),
        compiled,
        text,
        &mut refused,
        problems,
    );
    refused
}

/// Numbers JSON Schema cannot judge: the tree is validated as JSON, where a whole
/// number too large for 64 bits is a float that still counts as an "integer" (so
/// `count: 99999999999999999999` passed the schema and failed at the file's first line
/// later), and infinity and NaN have no JSON form at all (they became null, silently).
fn check_numbers(
    node: &Node,
    path: &mut KeyPath,
    compiled: &Compiled,
    text: &str,
    refused: &mut Refused,
    problems: &mut Problems,
) {
    match &node.value {
        super::node::Value::Float(number) => {
            let written = text
                .get(node.origin.start..node.origin.start + node.origin.len)
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map_or_else(|| number.to_string(), str::to_string);
            let integer = schema_at(&compiled.schema, path).is_some_and(|schema| {
                let types = describe_expected(schema);
                types.contains("an integer") && !types.contains("a number")
            });
            let digits = written.strip_prefix(['-', '+']).unwrap_or(&written);
            let problem = if !number.is_finite() {
                Problem::error(
                    "config::invalid-value",
                    format!("`{written}` in `{path}` is not a finite number"),
                )
                .label("infinity or NaN")
                .help("JSON, and so Kubernetes and Talos, has no infinity or NaN: write a number")
            } else if integer && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                Problem::error(
                    "config::invalid-value",
                    format!("`{written}` in `{path}` is too large for a whole number"),
                )
                .label("out of range")
                .help(format!("whole numbers go up to {}", i64::MAX))
            } else if integer {
                // Fractional numbers are the schema's; a whole one written as a float
                // (`2.0`, `1e3`) is not.
                Problem::error(
                    "config::wrong-type",
                    format!("wrong type for `{path}`: expected an integer, found a number"),
                )
                .label("expected an integer")
                .help(format!(
                    "write a whole number without a fraction or exponent, e.g. `{}`",
                    if number.abs() < 1e15 {
                        format!("{number:.0}")
                    } else {
                        "2".to_string()
                    }
                ))
            } else {
                return;
            };
            problems.push(problem.at(node.origin));
            refused.value(path);
        }
        super::node::Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Segment::Index(i));
                check_numbers(item, path, compiled, text, refused, problems);
                path.pop();
            }
        }
        super::node::Value::Map(map) => {
            for (key, entry) in map {
                path.push(Segment::Key(key.clone()));
                check_numbers(&entry.node, path, compiled, text, refused, problems);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `anyOf: [T, {type: null}]` → `T`; `type: [T, "null"]` → `type: T`.
fn strip_null_branches(schema: &mut Json) {
    match schema {
        Json::Object(map) => {
            if let Some(Json::Array(branches)) = map.get("anyOf") {
                let rest: Vec<Json> = branches
                    .iter()
                    .filter(|b| b.get("type") != Some(&json!("null")))
                    .cloned()
                    .collect();
                if rest.len() == 1 {
                    map.remove("anyOf");
                    if let Json::Object(inner) = &rest[0] {
                        for (k, v) in inner {
                            map.entry(k.clone()).or_insert_with(|| v.clone());
                        }
                    }
                }
            }
            if let Some(Json::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types[0].clone();
                    map.insert("type".into(), only);
                }
            }
            for value in map.values_mut() {
                strip_null_branches(value);
            }
        }
        Json::Array(items) => items.iter_mut().for_each(strip_null_branches),
        _ => {}
    }
}

fn strip_nulls(value: &mut Json) {
    match value {
        Json::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Json::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

fn unknown_key(root: &Node, parent: &KeyPath, key: &str, allowed: &[&str]) -> Problem {
    let path = parent.key(key);
    let origin = root
        .key_origin_of(&path)
        .unwrap_or_else(|| root.origin_of(parent));
    let where_ = if parent.is_root() {
        "at the top level".to_string()
    } else {
        format!("in `{parent}`")
    };
    let help = match did_you_mean(key, allowed.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None if allowed.is_empty() => "remove this key".to_string(),
        None => format!("known keys here: {}", allowed.join(", ")),
    };
    Problem::error(
        "config::unknown-key",
        format!("unknown key `{key}` {where_}"),
    )
    .at(origin)
    .label("unknown key")
    .help(help)
}

fn instance_path(location: &jsonschema::paths::Location) -> KeyPath {
    let mut path = KeyPath::root();
    for segment in location.segments() {
        match segment {
            jsonschema::paths::LocationSegment::Property(key) => {
                path.push(Segment::Key(key.to_string()))
            }
            jsonschema::paths::LocationSegment::Index(index) => path.push(Segment::Index(index)),
        }
    }
    path
}

/// The (sub)schema that describes the value at `path`, following `$ref`s and the
/// `anyOf [T, null]` that optional fields produce.
fn schema_at<'a>(root: &'a Json, path: &KeyPath) -> Option<&'a Json> {
    let mut schema = resolve(root, root)?;
    for segment in path.segments() {
        let next = match segment {
            Segment::Key(key) => schema
                .get("properties")
                .and_then(|p| p.get(key))
                .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object())),
            Segment::Index(_) => schema.get("items"),
        }?;
        schema = resolve(root, next)?;
    }
    Some(schema)
}

fn resolve<'a>(root: &'a Json, mut schema: &'a Json) -> Option<&'a Json> {
    for _ in 0..8 {
        if let Some(reference) = schema.get("$ref").and_then(Json::as_str) {
            let name = reference.strip_prefix("#/$defs/")?;
            schema = root.get("$defs")?.get(name)?;
        } else if let Some(branches) = schema.get("anyOf").and_then(Json::as_array) {
            schema = branches
                .iter()
                .find(|b| b.get("type") != Some(&json!("null")))?;
        } else {
            return Some(schema);
        }
    }
    Some(schema)
}

fn describe_expected(schema: &Json) -> String {
    let types: Vec<&str> = match schema.get("type") {
        Some(Json::String(t)) => vec![t.as_str()],
        Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
        _ if schema.get("properties").is_some() => vec!["object"],
        _ if schema.get("enum").is_some() => vec!["string"],
        _ => vec![],
    };
    let words: Vec<&str> = types
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "object" => "a mapping",
            "array" => "a list",
            "string" => "a string",
            "integer" => "an integer",
            "number" => "a number",
            "boolean" => "a boolean (true or false)",
            other => other,
        })
        .collect();
    if words.is_empty() {
        "a different value".into()
    } else {
        words.join(" or ")
    }
}

fn type_hint(node: &Node, expected: &str, text: &str) -> String {
    match (&node.value, expected) {
        (super::node::Value::Float(number), e) if e.contains("string") => {
            let written = text
                .get(node.origin.start..node.origin.start + node.origin.len)
                .map(str::trim)
                .filter(|w| !w.is_empty())
                .map_or_else(|| number.to_string(), str::to_string);
            format!("quote the value (YAML reads `{written}` as a number): write \"{written}\"")
        }
        (super::node::Value::String(s), e) if e.contains("integer") => {
            format!(
                "write a whole number without quotes or units, e.g. `{}`",
                s.trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<i64>()
                    .unwrap_or(2)
            )
        }
        (_, e) if e.contains("list") => "write a list: `[a, b]` or one `- item` per line".into(),
        (_, e) if e.contains("mapping") => "write nested `key: value` lines here".into(),
        (_, e) => format!("change the value to {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceMap;

    fn check(kind: LayerKind, text: &str) -> Vec<Problem> {
        let mut sources = SourceMap::new();
        let id = sources.add("f.yaml", text.to_string());
        let node = crate::config::yaml::parse_file(id, sources.get(id)).unwrap();
        let mut problems = Problems::new();
        check_layer(kind, &node, text, &mut problems);
        problems.into_iter().collect()
    }

    #[test]
    fn numbers_json_cannot_judge_are_reported_and_refused() {
        let text = "control_plane: {count: 99999999999999999999, cpu: 2.0, memory: .inf}\nworkers: [{name: a, count: 1e3}]\nplatform: {cilium: {values: {x: 1.5, y: .nan}}}\n";
        let mut sources = SourceMap::new();
        let id = sources.add("f.yaml", text.to_string());
        let node = crate::config::yaml::parse_file(id, sources.get(id)).unwrap();
        let mut problems = Problems::new();
        let refused = check_layer(LayerKind::Defaults, &node, text, &mut problems);
        let messages: Vec<&str> = problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "`99999999999999999999` in `control_plane.count` is too large for a whole number",
                "wrong type for `control_plane.cpu`: expected an integer, found a number",
                "`.inf` in `control_plane.memory` is not a finite number",
                "wrong type for `workers[0].count`: expected an integer, found a number",
                "`.nan` in `platform.cilium.values.y` is not a finite number",
            ]
        );
        // Left out and skipped later; a list is known by its path, not an index.
        assert!(refused.unchecked.contains(&KeyPath::parse("workers")));
        assert!(refused.remove.contains(&KeyPath::parse("workers[0].count")));
    }

    #[test]
    fn a_misspelt_key_leaves_out_the_key_it_meant() {
        let mut sources = SourceMap::new();
        let text = "proxmox:\n  storge: x\n";
        let id = sources.add("f.yaml", text.to_string());
        let node = crate::config::yaml::parse_file(id, sources.get(id)).unwrap();
        let refused = check_layer(LayerKind::Defaults, &node, text, &mut Problems::new());
        assert_eq!(refused.remove, [KeyPath::parse("proxmox.storge")]);
        assert_eq!(refused.unchecked, [KeyPath::parse("proxmox.storage")]);
    }

    #[test]
    fn the_state_section_belongs_to_defaults_files_only() {
        assert!(
            check(
                LayerKind::Defaults,
                "state: {backend: postgres, lease: 90s}\n"
            )
            .is_empty()
        );
        let problems = check(LayerKind::Defaults, "state: {backend: etcd}\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problems = check(LayerKind::Environment, "state: {backend: postgres}\n");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].message.contains("state"), "{problems:?}");
    }

    #[test]
    fn a_valid_layer_has_no_problems() {
        assert!(check(LayerKind::Defaults, "proxmox: {endpoint: 'https://x:8006', nodes: [a]}\ncontrol_plane: {count: 3, memory: 4Gi}\n").is_empty());
    }

    #[test]
    fn unknown_keys_get_did_you_mean() {
        let problems = check(LayerKind::Defaults, "proxmox:\n  endpiont: x\n");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "unknown key `endpiont` in `proxmox`");
        assert_eq!(
            problems[0].help.as_deref(),
            Some("did you mean `endpoint`?")
        );
        assert_eq!(problems[0].origin.unwrap().line, 2);
    }

    #[test]
    fn cluster_only_keys_are_unknown_elsewhere() {
        let problems = check(LayerKind::Defaults, "environments: {}\n");
        assert_eq!(problems[0].code, "config::unknown-key");
        assert!(check(LayerKind::Cluster, "environments: {dev: {sync_wave: 1}}\n").is_empty());
        let nested = check(LayerKind::Cluster, "environments: {dev: {sync_wav: 1}}\n");
        assert_eq!(
            nested[0].message,
            "unknown key `sync_wav` in `environments.dev`"
        );
    }

    #[test]
    fn wrong_types_say_what_was_expected() {
        let problems = check(LayerKind::Template, "control_plane:\n  cpu: four\n");
        assert_eq!(
            problems[0].message,
            "wrong type for `control_plane.cpu`: expected an integer, found a string"
        );
        let problems = check(LayerKind::Template, "network: 5\n");
        assert_eq!(
            problems[0].message,
            "wrong type for `network`: expected a mapping, found an integer"
        );
    }

    #[test]
    fn the_quote_hint_shows_the_number_as_written() {
        // `1.10` is the number 1.1: the hint must quote what the user wrote.
        let problems = check(
            LayerKind::Defaults,
            "kubernetes:\n  version: 1.10\nplatform: {cilium: {version: 1.18}}\n",
        );
        let hints: Vec<&str> = problems.iter().filter_map(|p| p.help.as_deref()).collect();
        assert_eq!(
            hints,
            [
                "quote the value (YAML reads `1.10` as a number): write \"1.10\"",
                "quote the value (YAML reads `1.18` as a number): write \"1.18\"",
            ]
        );
    }
}
