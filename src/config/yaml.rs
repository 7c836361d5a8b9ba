//! Span-aware YAML reading. serde_yaml keeps no positions, so the loader reads the event
//! stream of `saphyr-parser` and builds a [`Node`] tree whose every value and key knows
//! its file, line and column. Scalars are typed by the YAML 1.2 core schema; the YAML 1.1
//! merge key (`<<: *defaults`), which Helm values copied from elsewhere often use, merges
//! as Helm's own reader would.
//!
//! Hostile input is bounded here, where it is cheapest: how deep values nest
//! ([`MAX_DEPTH`]) and how many values the files of one configuration hold together,
//! aliases expanded ([`Budget`]). Every later stage walks trees recursively and copies
//! them per (environment, cluster) pair; both bounds keep that finite.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::node::{Entry, Map, Node, Value};
use crate::diag::{FileId, Origin, Problem, SourceFile};

/// The most values the files of one configuration may hold together once their aliases
/// are expanded. Aliases copy their anchor, so nine lines of nested aliases ("billion
/// laughs") would otherwise build billions of values and exhaust memory, and a few such
/// files would each stay under any per-file bound; real configurations hold a few
/// thousand values.
pub const MAX_VALUES: usize = 1_000_000;

/// How deep mappings and lists may nest. Real files (Helm values and Talos patches
/// included) nest a dozen levels; without a bound, a file of a few thousand `- ` nested
/// lists overflows the stack of every recursive walk after the parser. (The parser
/// itself refuses flow collections (`[[[…]]]`) nested past 255.)
pub const MAX_DEPTH: usize = 64;

/// How many values the files read so far may still add (aliases expanded): one budget
/// for every file of a configuration.
#[derive(Debug, Clone)]
pub struct Budget {
    left: usize,
    /// The limit was reached and reported: every file after is left out, unreported.
    reported: bool,
}

impl Budget {
    pub fn new() -> Self {
        Budget {
            left: MAX_VALUES,
            reported: false,
        }
    }

    /// Whether a problem of parsing a file is to be reported: the first time the
    /// limit is reached, and any other problem; the files after the limit are only
    /// left out (each would say the same).
    pub fn worth_reporting(&mut self, problem: &Problem) -> bool {
        if problem.code != "config::too-many-values" {
            return true;
        }
        !std::mem::replace(&mut self.reported, true)
    }

    /// Take `count` values; false once the budget is spent.
    fn take(&mut self, count: usize) -> bool {
        match self.left.checked_sub(count) {
            Some(left) => {
                self.left = left;
                true
            }
            None => {
                self.left = 0;
                false
            }
        }
    }
}

impl Default for Budget {
    fn default() -> Self {
        Self::new()
    }
}

/// Parse one file on its own budget. A syntax error is returned as a problem pointing at
/// its position; nothing in a broken file is trusted.
pub fn parse_file(file: FileId, source: &SourceFile) -> Result<Node, Problem> {
    parse_within(file, source, &mut Budget::new())
}

/// Parse one file of a configuration whose files share `budget`.
pub fn parse_within(
    file: FileId,
    source: &SourceFile,
    budget: &mut Budget,
) -> Result<Node, Problem> {
    let mut builder = Builder {
        file,
        source,
        budget,
        stack: Vec::new(),
        anchors: HashMap::new(),
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
        pending_key: Option<PendingKey>,
        /// Values of the merge key `<<`, merged in when the mapping ends.
        merges: Option<Box<(Origin, Node)>>,
    },
}

/// A mapping key waiting for its value.
struct PendingKey {
    key: String,
    origin: Origin,
    /// A plain `<<`: the YAML 1.1 merge key, not a key of its own.
    merge: bool,
}

struct Builder<'a> {
    file: FileId,
    source: &'a SourceFile,
    /// Values the configuration may still hold, aliases counted at their expanded size.
    budget: &'a mut Budget,
    stack: Vec<Frame>,
    /// Anchored nodes and how many values each holds.
    anchors: HashMap<usize, (Node, usize)>,
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
                let merge_key = style == ScalarStyle::Plain && tag.is_none() && text == "<<";
                let value = resolve_scalar(&text, style, tag.as_deref());
                let node = Node::new(value, origin);
                self.count(1, origin, false)?;
                self.remember(anchor, &node);
                self.add(node, merge_key)?;
            }
            Event::Alias(anchor) => {
                let origin = self.origin(span);
                let (node, size) = self.anchors.get(&anchor).ok_or_else(|| {
                    Problem::error("config::yaml-alias", "alias to an unknown anchor")
                        .at(origin)
                        .help("define the anchor (`&name`) before using it (`*name`)")
                })?;
                let (node, size) = (node.clone(), *size);
                self.count(size, origin, true)?;
                self.add(node, false)?;
            }
            Event::SequenceStart(anchor, _) => {
                let origin = self.origin(span);
                self.check_depth(origin)?;
                self.stack.push(Frame::List {
                    origin,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                let origin = self.origin(span);
                self.check_depth(origin)?;
                self.stack.push(Frame::Map {
                    origin,
                    anchor,
                    map: Map::new(),
                    pending_key: None,
                    merges: None,
                });
            }
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
                        mut map,
                        merges,
                        ..
                    }) => {
                        if let Some(merged) = merges {
                            let (key_origin, merged) = *merged;
                            merge_into(&mut map, &merged, key_origin)?;
                        }
                        let node = Node::new(Value::Map(map), origin);
                        self.remember(anchor, &node);
                        node
                    }
                    None => return Ok(()),
                };
                self.count(1, node.origin, false)?;
                self.add(node, false)?;
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    /// Take `count` values from the configuration's budget; `alias` says whether an
    /// alias expanded to them (the usual way to reach the limit).
    fn count(&mut self, count: usize, origin: Origin, alias: bool) -> Result<(), Problem> {
        if self.budget.take(count) {
            return Ok(());
        }
        let (message, help) = if alias {
            (
                format!("aliases expand the configuration to more than {MAX_VALUES} values"),
                "aliases copy their anchor, and the limit counts every file of the configuration together; nest fewer of them, or write the values out",
            )
        } else {
            (
                format!("the configuration holds more than {MAX_VALUES} values"),
                "the limit counts every file of the configuration together (aliases expanded); move data that is not configuration out of it",
            )
        };
        Err(Problem::error("config::too-many-values", message)
            .at(origin)
            .label("the limit is reached here; later files are left out")
            .help(help))
    }

    /// A collection may start only above [`MAX_DEPTH`] open ones.
    fn check_depth(&self, origin: Origin) -> Result<(), Problem> {
        if self.stack.len() < MAX_DEPTH {
            return Ok(());
        }
        Err(Problem::error(
            "config::too-deep",
            format!("values nest more than {MAX_DEPTH} levels deep"),
        )
        .at(origin)
        .label(format!("level {}", self.stack.len() + 1))
        .help("flatten the structure: configuration values nest a dozen levels at most"))
    }

    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor > 0 {
            self.anchors
                .insert(anchor, (node.clone(), node.count_values()));
        }
    }

    /// Attach a finished node to its parent (or make it the document root).
    /// `merge_key`: the node is a plain `<<` scalar.
    fn add(&mut self, node: Node, merge_key: bool) -> Result<(), Problem> {
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map {
                map,
                pending_key,
                merges,
                ..
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
                    let earlier = match (merge_key, merges.as_deref()) {
                        (true, Some((origin, _))) => Some(origin.line),
                        (true, None) => None,
                        (false, _) => map.get(&key).map(|first| first.key_origin.line),
                    };
                    if let Some(first_line) = earlier {
                        return Err(Problem::error(
                            "config::duplicate-key",
                            format!("duplicate key `{key}`"),
                        )
                        .at(node.origin)
                        .label(format!("`{key}` was already set on line {first_line}"))
                        .help("remove one of the two; YAML keeps only one value per key"));
                    }
                    *pending_key = Some(PendingKey {
                        key,
                        origin: node.origin,
                        merge: merge_key,
                    });
                }
                Some(PendingKey {
                    origin: key_origin,
                    merge: true,
                    ..
                }) => *merges = Some(Box::new((key_origin, node))),
                Some(PendingKey {
                    key,
                    origin: key_origin,
                    ..
                }) => {
                    map.insert(key, Entry { key_origin, node });
                }
            },
        }
        Ok(())
    }
}

/// The merge key (YAML 1.1, <https://yaml.org/type/merge.html>): the entries of a
/// mapping, or of each mapping of a list, join `map` unless it sets the key itself; of
/// several mappings in a list, the first that sets a key wins.
fn merge_into(map: &mut Map, merged: &Node, key_origin: Origin) -> Result<(), Problem> {
    let sources: Vec<&Node> = match &merged.value {
        Value::Map(_) => vec![merged],
        Value::List(items) if items.iter().all(|i| i.as_map().is_some()) => items.iter().collect(),
        _ => {
            return Err(Problem::error(
                "config::yaml-merge-key",
                format!(
                    "the merge key `<<` takes a mapping or a list of mappings, found {}",
                    merged.kind_name()
                ),
            )
            .at(merged.origin)
            .label("not a mapping")
            .help(format!("write `<<: *anchor` with an anchor on a mapping, or quote the key (`'<<':`, line {}) if it is a key of its own", key_origin.line)));
        }
    };
    for source in sources {
        for (key, entry) in source.as_map().into_iter().flatten() {
            if !map.contains_key(key) {
                map.insert(key.clone(), entry.clone());
            }
        }
    }
    Ok(())
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
        assert_eq!(error.code, "config::too-many-values");
        assert_eq!(
            error.message,
            "aliases expand the configuration to more than 1000000 values"
        );
        // Reported at the alias that reaches the limit: a5 holds 10^6 values.
        assert_eq!(error.origin.unwrap().line, 6);
        // Ordinary use of anchors stays fine.
        assert!(parse("a: &a {cpu: 2}\nb: *a\nc: [*a, *a]\n").is_ok());
    }

    #[test]
    fn the_value_budget_is_shared_by_every_file_of_a_configuration() {
        // Each file expands to 300,000 values, well under the limit on its own; four of
        // them used to exhaust memory when a configuration spread its aliases out.
        let file = "a: &a [x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n";
        let mut map = SourceMap::new();
        let mut budget = Budget::new();
        let mut results = Vec::new();
        for name in ["a.yaml", "b.yaml", "c.yaml", "d.yaml"] {
            let id = map.add(name, file.to_string());
            results.push(parse_within(id, map.get(id), &mut budget).map(|_| ()));
        }
        assert!(results[0].is_ok() && results[1].is_ok() && results[2].is_ok());
        let error = results[3].clone().unwrap_err();
        assert_eq!(error.code, "config::too-many-values");
        assert_eq!(
            map.path(error.origin.unwrap().file),
            std::path::Path::new("d.yaml")
        );
        // On its own budget, the same file is fine.
        assert!(parse(file).is_ok());
    }

    #[test]
    fn block_nesting_is_bounded_and_located() {
        // Thousands of nested block lists used to overflow the stack (flow nesting is
        // refused by the parser itself).
        for text in [
            format!("x:\n  {}v\n", "- ".repeat(20_000)),
            (0..200)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect(),
        ] {
            let error = parse(&text).unwrap_err();
            assert_eq!(error.code, "config::too-deep", "{}", error.message);
            assert_eq!(
                error.message,
                format!("values nest more than {MAX_DEPTH} levels deep")
            );
            assert!(error.origin.is_some());
        }
        // The top-level mapping and 63 lists: 64 levels.
        let just_deep_enough = format!("x:\n  {}v\n", "- ".repeat(MAX_DEPTH - 1));
        assert!(parse(&just_deep_enough).is_ok());
        let one_more = format!("x:\n  {}v\n", "- ".repeat(MAX_DEPTH));
        assert_eq!(parse(&one_more).unwrap_err().code, "config::too-deep");
    }

    #[test]
    fn a_long_line_of_many_values_parses_in_linear_time() {
        // Positions used to be found by walking each line from its start: a 200,000
        // value line took minutes. (Not timed: the test would not finish otherwise.)
        let text = format!(
            "x: [{}]\ny: \"é\"\nz: [{}]\n",
            "1, ".repeat(100_000),
            "é, ".repeat(100_000)
        );
        let node = parse(&text).unwrap();
        let z = node.get("z").unwrap().as_list().unwrap();
        let last = z.last().unwrap();
        assert_eq!((last.origin.line, last.origin.column), (3, 5 + 3 * 99_999));
    }

    #[test]
    fn merge_keys_merge_like_helm_reads_them() {
        let node = parse(
            "base: &base {a: 1, b: 1}\nother: &other {b: 2, c: 2}\none:\n  <<: *base\n  b: 3\nlist:\n  <<: [*other, *base]\nquoted: {'<<': 1}\n",
        )
        .unwrap();
        assert_eq!(
            node.get("one").unwrap().to_json(),
            serde_json::json!({"b": 3, "a": 1}),
            "explicit keys win"
        );
        assert_eq!(
            node.get("list").unwrap().to_json(),
            serde_json::json!({"b": 2, "c": 2, "a": 1}),
            "the first mapping of a list wins"
        );
        assert_eq!(
            node.get("quoted").unwrap().to_json(),
            serde_json::json!({"<<": 1})
        );
        // Merged values keep the position they were written at.
        let a = node.get("one").unwrap().get("a").unwrap();
        assert_eq!(a.origin.line, 1);
        let error = parse("a:\n  <<: 5\n").unwrap_err();
        assert_eq!(error.code, "config::yaml-merge-key");
        assert_eq!(error.origin.unwrap().line, 2);
        let error = parse("b: &b {x: 1}\na:\n  <<: *b\n  <<: *b\n").unwrap_err();
        assert_eq!(error.code, "config::duplicate-key");
    }

    #[test]
    fn empty_files_are_null() {
        assert!(parse("# only a comment\n").unwrap().is_null());
    }
}
