//! Rendering an effective configuration as YAML, optionally with each value's origin
//! (`# config/clusters/workload.yaml:12`). Secret values are masked: this output is
//! meant to be pasted into tickets and CI logs. Secret are values under a secret-sounding
//! key, and every value read from an age-encrypted file, whose provenance reads
//! `environments/prod.yaml:4 (age: secrets/prod.yaml#proxmox.token)` (the place, never the
//! value; a value of an encrypted layer names that file and line).

use super::node::{Node, Value};
use super::secrets::SecretValues;
use crate::diag::SourceMap;

/// Keys whose values are secrets wherever they appear.
pub fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["token", "password", "secret", "private_key"]
        .iter()
        .any(|s| key == *s || key.ends_with(&format!("_{s}")))
}

pub const SENSITIVE_PLACEHOLDER: &str = crate::vocabulary::MASK;

pub fn render_yaml(node: &Node, sources: Option<&SourceMap>) -> String {
    render_yaml_masked(node, sources, &SecretValues::default())
}

/// [`render_yaml`], also masking every value read from an age source in `secrets`.
pub fn render_yaml_masked(
    node: &Node,
    sources: Option<&SourceMap>,
    secrets: &SecretValues,
) -> String {
    let mut lines: Vec<(String, Option<String>)> = Vec::new();
    let describe = |node: &Node| {
        sources.map(|s| match secrets.reference(node.origin) {
            Some(reference) => format!("{} ({reference})", s.describe(node.origin)),
            None => s.describe(node.origin),
        })
    };
    let view = View {
        describe: &describe,
        secrets,
    };
    match &node.value {
        Value::Map(_) | Value::List(_) => render_block(node, 0, &mut lines, &view),
        _ => lines.push((view.scalar(node), describe(node))),
    }
    let width = lines
        .iter()
        .filter(|(_, c)| c.is_some())
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0)
        .min(56);
    let mut out = String::new();
    for (line, comment) in lines {
        out.push_str(&line);
        if let Some(comment) = comment {
            let pad = width.saturating_sub(line.chars().count()) + 2;
            out.extend(std::iter::repeat_n(' ', pad));
            out.push_str("# ");
            out.push_str(&comment);
        }
        out.push('\n');
    }
    out
}

/// How values print: provenance, and which are secret.
struct View<'a> {
    describe: &'a dyn Fn(&Node) -> Option<String>,
    secrets: &'a SecretValues,
}

impl View<'_> {
    fn scalar(&self, node: &Node) -> String {
        if self.secrets.is_secret_origin(node.origin) && is_inline(node) && !node.is_null() {
            SENSITIVE_PLACEHOLDER.to_string()
        } else {
            scalar(node)
        }
    }
}

fn render_block(
    node: &Node,
    indent: usize,
    lines: &mut Vec<(String, Option<String>)>,
    view: &View<'_>,
) {
    let describe = view.describe;
    let pad = " ".repeat(indent);
    match &node.value {
        Value::Map(map) => {
            for (key, entry) in map {
                let child = &entry.node;
                let key_text = scalar_text(key);
                if is_sensitive_key(key) && !child.is_null() {
                    lines.push((
                        format!("{pad}{key_text}: {SENSITIVE_PLACEHOLDER}"),
                        describe(child),
                    ));
                } else if is_inline(child) {
                    lines.push((
                        format!("{pad}{key_text}: {}", view.scalar(child)),
                        describe(child),
                    ));
                } else {
                    lines.push((format!("{pad}{key_text}:"), None));
                    render_block(child, indent + 2, lines, view);
                }
            }
        }
        Value::List(items) => {
            for item in items {
                if is_inline(item) {
                    lines.push((format!("{pad}- {}", view.scalar(item)), describe(item)));
                } else {
                    // Render the item one level deeper, then turn its first line's indent
                    // into the "- " marker.
                    let start = lines.len();
                    render_block(item, indent + 2, lines, view);
                    if let Some((first, _)) = lines.get_mut(start) {
                        first.replace_range(indent..indent + 2, "- ");
                    }
                }
            }
        }
        _ => lines.push((format!("{pad}{}", view.scalar(node)), describe(node))),
    }
}

fn is_inline(node: &Node) -> bool {
    match &node.value {
        Value::Map(map) => map.is_empty(),
        Value::List(items) => items.is_empty(),
        _ => true,
    }
}

fn scalar(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => serde_yaml::to_string(f)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| f.to_string()),
        Value::String(s) => scalar_text(s),
        Value::Map(_) => "{}".into(),
        Value::List(_) => "[]".into(),
    }
}

/// A string as YAML would need it written (quoted only when a plain scalar would be read
/// back as something else).
fn scalar_text(text: &str) -> String {
    if crate::diag::printable(text) != text {
        // Terminal escapes and bidi marks are written as YAML escapes, never raw.
        return double_quoted(text);
    }
    let rendered = serde_yaml::to_string(text).unwrap_or_else(|_| format!("{text:?}"));
    let rendered = rendered.trim_end();
    if rendered.contains('\n') {
        // Multi-line strings: a JSON-style double-quoted scalar stays on one line.
        serde_json::to_string(text).unwrap_or_default()
    } else {
        rendered.to_string()
    }
}

/// A YAML double-quoted scalar with every character a terminal would act on escaped
/// (`\x1b` → `\u001B`); it reads back as the same string.
fn double_quoted(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if crate::diag::printable(c.encode_utf8(&mut [0; 4])) != c.to_string() => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse_file;

    #[test]
    fn terminal_escapes_in_values_are_written_as_yaml_escapes() {
        let text = "a: \"x\\e]0;owned\\ay\"\n\"k\\e[2J\": \"\\u202eb\\\"\\\\\"\n";
        let mut sources = SourceMap::new();
        let id = sources.add("t.yaml", text.to_string());
        let node = parse_file(id, sources.get(id)).unwrap();
        let rendered = render_yaml(&node, None);
        assert!(
            !rendered.chars().any(|c| c.is_control() && c != '\n'),
            "{rendered:?}"
        );
        assert!(!rendered.contains('\u{202e}'), "{rendered:?}");
        let id = sources.add("r.yaml", rendered.clone());
        let reparsed = parse_file(id, sources.get(id)).unwrap();
        assert_eq!(reparsed.to_json(), node.to_json(), "{rendered}");
    }

    #[test]
    fn renders_block_yaml_that_reads_back_the_same() {
        let text = "a: 1\nb: {c: 'x: y', d: [1, 2]}\nworkers:\n  - {name: general, count: 2}\nempty: {}\nversion: '1.18'\n";
        let mut sources = SourceMap::new();
        let id = sources.add("t.yaml", text.to_string());
        let node = parse_file(id, sources.get(id)).unwrap();
        let rendered = render_yaml(&node, None);
        let id2 = sources.add("r.yaml", rendered.clone());
        let reparsed = parse_file(id2, sources.get(id2)).unwrap();
        assert_eq!(reparsed.to_json(), node.to_json(), "{rendered}");
        assert!(
            rendered.contains("workers:\n  - name: general\n    count: 2\n"),
            "{rendered}"
        );
    }

    #[test]
    fn values_from_age_sources_are_masked_with_their_reference_as_provenance() {
        let mut sources = SourceMap::new();
        let id = sources.add(
            "p.yaml",
            "grafana:\n  adminPassword: s3cret\n  user: admin\nlist: [a, s3cret]\n".to_string(),
        );
        let node = parse_file(id, sources.get(id)).unwrap();
        let mut secrets = SecretValues::default();
        let password = node.get("grafana").unwrap().get("adminPassword").unwrap();
        secrets.add_reference(
            password.origin,
            "age: secrets/p.yaml#grafana.password".into(),
        );
        let item = &node.get("list").unwrap().as_list().unwrap()[1];
        secrets.add_reference(item.origin, "file: p.token".into());
        let rendered = render_yaml_masked(&node, Some(&sources), &secrets);
        assert!(!rendered.contains("s3cret"), "{rendered}");
        assert!(
            rendered
                .lines()
                .any(|l| l.starts_with("  adminPassword: (sensitive)")
                    && l.ends_with("# p.yaml:2 (age: secrets/p.yaml#grafana.password)")),
            "{rendered}"
        );
        assert!(rendered.contains("  user: admin"), "{rendered}");
        assert!(rendered.contains("  - (sensitive)"), "{rendered}");
    }

    #[test]
    fn provenance_comments_name_file_and_line_and_secrets_are_masked() {
        let mut sources = SourceMap::new();
        let id = sources.add(
            "p.yaml",
            "proxmox:\n  token: abc\n  storage: local-lvm\n".to_string(),
        );
        let node = parse_file(id, sources.get(id)).unwrap();
        let rendered = render_yaml(&node, Some(&sources));
        assert!(rendered.contains("token: (sensitive)"), "{rendered}");
        assert!(!rendered.contains("abc"));
        assert!(
            rendered
                .lines()
                .any(|l| l.starts_with("  storage: local-lvm") && l.ends_with("# p.yaml:3")),
            "{rendered}"
        );
    }
}
