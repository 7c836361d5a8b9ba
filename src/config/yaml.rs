//! Span-aware YAML reading. serde_yaml keeps no positions, so the loader reads the event
//! stream of `saphyr-parser` and builds a [`Node`] tree whose every value and key knows
//! its file, line and column. Scalars are typed by the YAML 1.2 core schema.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::node::{Entry, Map, Node, Value};
use crate::diag::{FileId, Origin, Problem, SourceFile};

/// The most values one file may hold once its aliases are expanded. Aliases copy their
/// anchor, so nine lines of nested aliases ("billion laughs") would otherwise build
/// billions of values and exhaust memory; real files hold a few thousand.
pub const MAX_VALUES: usize = 1_000_000;

/// Parse one file. A syntax error is returned as a problem pointing at its position;
/// nothing in a broken file is trusted.
pub fn parse_file(file: FileId, source: &SourceFile) -> Result<Node, Problem> {
    let mut builder = Builder {
        file,
        source,
        stack: Vec::new(),
        anchors: HashMap::new(),
        values: 0,
        documents: 0,
        root: None,
    };
    let mut parser = Parser::new_from_str(&source.text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|error| {
            let marker = error.marker();
            let start = source.byte_offset(marker.line(), marker.col());
            Problem::error("config::yaml-syntax", format!("invalid YAML: {}", error.info()))
                .at(source.origin(file, start, start + 1))
                .label("here")
                .help("fix the YAML syntax at this position (indentation, a missing ':' or an unclosed quote are the usual causes)")
        })?;
        builder.event(event, span)?;
    }
    let end = source.text.len();
    Ok(builder
        .root
        .unwrap_or_else(|| Node::new(Value::Null, source.origin(file, 0, end.min(1)))))
}

enum Frame {
    List {
        origin: Origin,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        origin: Origin,
        anchor: usize,
        map: Map,
        pending_key: Option<(String, Origin)>,
    },
}

struct Builder<'a> {
    file: FileId,
    source: &'a SourceFile,
    stack: Vec<Frame>,
    /// Anchored nodes and how many values each holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// Values built so far, aliases counted at their expanded size.
    values: usize,
    documents: usize,
    root: Option<Node>,
}

impl Builder<'_> {
    fn origin(&self, span: Span) -> Origin {
        let start = self.source.byte_offset(span.start.line(), span.start.col());
        let end = self.source.byte_offset(span.end.line(), span.end.col());
        self.source.origin(self.file, start, end.max(start))
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Problem> {
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Problem::error(
                        "config::yaml-multiple-documents",
                        "a configuration file holds one YAML document",
                    )
                    .at(self.origin(span))
                    .label("a second document starts here")
                    .help("split the documents into separate files, or remove the `---` line"));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let origin = self.origin(span);
                let value = resolve_scalar(&text, style, tag.as_deref());
                let node = Node::new(value, origin);
                self.values += 1;
                self.remember(anchor, &node);
                self.add(node)?;
            }
            Event::Alias(anchor) => {
                let origin = self.origin(span);
                let (node, size) = self.anchors.get(&anchor).ok_or_else(|| {
                    Problem::error("config::yaml-alias", "alias to an unknown anchor")
                        .at(origin)
                        .help("define the anchor (`&name`) before using it (`*name`)")
                })?;
                self.values = self.values.saturating_add(*size);
                if self.values > MAX_VALUES {
                    return Err(Problem::error(
                        "config::yaml-alias",
                        format!("aliases expand this file to more than {MAX_VALUES} values"),
                    )
                    .at(origin)
                    .label("the limit is reached here")
                    .help(
                        "aliases copy their anchor; nest fewer of them, or write the values out",
                    ));
                }
                let node = node.clone();
                self.add(node)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::List {
                origin: self.origin(span),
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                origin: self.origin(span),
                anchor,
                map: Map::new(),
                pending_key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Frame::List {
                        origin,
                        anchor,
                        items,
                    }) => {
                        let node = Node::new(Value::List(items), origin);
                        self.remember(anchor, &node);
                        node
                    }
                    Some(Frame::Map {
                        origin,
                        anchor,
                        map,
                        ..
                    }) => {
                        let node = Node::new(Value::Map(map), origin);
                        self.remember(anchor, &node);
                        node
                    }
                    None => return Ok(()),
                };
                self.values += 1;
                self.add(node)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), size(node)));
        }
    }

    /// Attach a finished node to its parent (or make it the document root).
    fn add(&mut self, node: Node) -> Result<(), Problem> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map {
                map, pending_key, ..
            }) => match pending_key.take() {
                None => {
                    let key = match &node.value {
                        Value::String(s) => s.clone(),
                        Value::Int(i) => i.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Float(f) => f.to_string(),
                        Value::Null => "null".to_string(),
                        Value::List(_) | Value::Map(_) => {
                            return Err(Problem::error(
                                "config::yaml-complex-key",
                                "mapping keys must be plain words",
                            )
                            .at(node.origin)
                            .help("use a string key such as `name:`"));
                        }
                    };
                    if let Some(first) = map.get(&key) {
                        let first_line = first.key_origin.line;
                        return Err(Problem::error(
                            "config::duplicate-key",
                            format!("duplicate key `{key}`"),
                        )
                        .at(node.origin)
                        .label(format!("`{key}` was already set on line {first_line}"))
                        .help("remove one of the two; YAML keeps only one value per key"));
                    }
                    *pending_key = Some((key, node.origin));
                }
                Some((key, key_origin)) => {
                    map.insert(key, Entry { key_origin, node });
                }
            },
        }
        Ok(())
    }
}

/// How many values a tree holds (itself included).
fn size(node: &Node) -> usize {
    1 + match &node.value {
        Value::List(items) => items.iter().map(size).sum(),
        Value::Map(map) => map.values().map(|e| size(&e.node)).sum(),
        _ => 0,
    }
}

/// Type a scalar by the YAML 1.2 core schema: quoted and block scalars are strings, plain
/// ones may be null, booleans, integers or floats.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        let core = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
        if core && tag.suffix == "str" {
            return Value::String(text.to_string());
        }
    }
    if style != ScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(int) = parse_int(text) {
        return Value::Int(int);
    }
    if looks_like_float(text)
        && let Ok(float) = text.parse::<f64>()
    {
        return Value::Float(float);
    }
    Value::String(text.to_string())
}

fn parse_int(text: &str) -> Option<i64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(octal) = text.strip_prefix("0o") {
        return i64::from_str_radix(octal, 8).ok();
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    None
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` without a regex.
fn looks_like_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => {
            whole.bytes().all(|b| b.is_ascii_digit())
                && fraction.bytes().all(|b| b.is_ascii_digit())
                && !(whole.is_empty() && fraction.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let digits = e.strip_prefix(['-', '+']).unwrap_or(e);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::node::KeyPath;
    use crate::diag::SourceMap;

    fn parse(text: &str) -> Result<Node, Problem> {
        let mut map = SourceMap::new();
        let id = map.add("test.yaml", text.to_string());
        parse_file(id, map.get(id))
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let node = parse(
            "a: 1\nb: '1'\nc: 1.5\nd: true\ne: ~\nf: v1.13.9\ng: 1.13.9\nh: 0x1F\ni: 512Mi\n",
        )
        .unwrap();
        let value = |k: &str| node.get(k).unwrap().value.clone();
        assert_eq!(value("a"), Value::Int(1));
        assert_eq!(value("b"), Value::String("1".into()));
        assert_eq!(value("c"), Value::Float(1.5));
        assert_eq!(value("d"), Value::Bool(true));
        assert_eq!(value("e"), Value::Null);
        assert_eq!(value("f"), Value::String("v1.13.9".into()));
        assert_eq!(value("g"), Value::String("1.13.9".into()));
        assert_eq!(value("h"), Value::Int(31));
        assert_eq!(value("i"), Value::String("512Mi".into()));
    }

    #[test]
    fn every_value_knows_its_line_and_column() {
        let node = parse("network:\n  nodes:\n    cidr: 10.0.0.0/24\n").unwrap();
        let cidr = node.lookup(&KeyPath::parse("network.nodes.cidr")).unwrap();
        assert_eq!((cidr.origin.line, cidr.origin.column), (3, 11));
        let key = node
            .key_origin_of(&KeyPath::parse("network.nodes.cidr"))
            .unwrap();
        assert_eq!((key.line, key.column), (3, 5));
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_are_problems_with_positions() {
        let error = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(error.code, "config::yaml-syntax");
        let error = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(error.message, "duplicate key `a`");
        assert_eq!(error.origin.unwrap().line, 3);
    }

    #[test]
    fn aliases_copy_their_anchor() {
        let node = parse("base: &b {cpu: 2}\nother: *b\n").unwrap();
        assert_eq!(
            node.get("other").unwrap().to_json(),
            serde_json::json!({"cpu": 2})
        );
    }

    #[test]
    fn aliases_cannot_expand_a_file_without_bound() {
        // Ten levels of ten aliases each: 10^10 values if expanded.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let previous = format!("*a{}", level - 1);
            let items = [previous.as_str(); 10].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{items}]\n"));
        }
        let error = parse(&text).unwrap_err();
        assert_eq!(error.code, "config::yaml-alias");
        assert_eq!(
            error.message,
            "aliases expand this file to more than 1000000 values"
        );
        // Ordinary use of anchors stays fine.
        assert!(parse("a: &a {cpu: 2}\nb: *a\nc: [*a, *a]\n").is_ok());
    }

    #[test]
    fn empty_files_are_null() {
        assert!(parse("# only a comment\n").unwrap().is_null());
    }
}
