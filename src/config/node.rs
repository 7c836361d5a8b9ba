//! The YAML tree the loader works on: every value and every key keeps the origin (file,
//! line, column) it was read from, and keeps it through merging, so the effective
//! configuration can say which layer set each value.

use indexmap::IndexMap;

use crate::diag::Origin;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Node>),
    Map(Map),
}

/// A mapping, in file order.
pub type Map = IndexMap<String, Entry>;

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where the key itself was written (for "unknown key" labels).
    pub key_origin: Origin,
    pub node: Node,
}

/// A path into the tree: `network.nodes.cidr`, `workers[1].memory`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> Self {
        KeyPath(Vec::new())
    }

    /// Parse a dotted path; `workers[1].memory` and `workers.1.memory` both work.
    pub fn parse(path: &str) -> Self {
        let mut segments = Vec::new();
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (key, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                match key.parse::<usize>() {
                    Ok(index) => segments.push(Segment::Index(index)),
                    Err(_) => segments.push(Segment::Key(key.to_string())),
                }
            }
            for index in rest
                .split(['[', ']'])
                .filter(|s| !s.is_empty())
                .filter_map(|s| s.parse().ok())
            {
                segments.push(Segment::Index(index));
            }
        }
        KeyPath(segments)
    }

    pub fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_string()));
        next
    }

    pub fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    pub fn pop(&mut self) -> Option<Segment> {
        self.0.pop()
    }

    /// Whether `self` is `other` or lies below it.
    pub fn starts_with(&self, other: &KeyPath) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The path cut before its first list index: a list's items are matched by name or
    /// position only after merging, so a place inside one is known by its list.
    pub fn up_to_first_index(&self) -> KeyPath {
        KeyPath(
            self.0
                .iter()
                .take_while(|s| matches!(s, Segment::Key(_)))
                .cloned()
                .collect(),
        )
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn last_key(&self) -> Option<&str> {
        self.0.iter().rev().find_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Index(_) => None,
        })
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for segment in &self.0 {
            match segment {
                Segment::Key(key) => {
                    if !first {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
            first = false;
        }
        Ok(())
    }
}

impl Node {
    pub fn new(value: Value, origin: Origin) -> Self {
        Node { value, origin }
    }

    pub fn as_map(&self) -> Option<&Map> {
        match &self.value {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Map> {
        match &mut self.value {
            Value::Map(map) => Some(map),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Node]> {
        match &self.value {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.get(key).map(|e| &e.node)
    }

    /// The node at a path, if every step exists.
    pub fn lookup(&self, path: &KeyPath) -> Option<&Node> {
        let mut node = self;
        for segment in path.segments() {
            node = match (segment, &node.value) {
                (Segment::Key(key), Value::Map(map)) => &map.get(key)?.node,
                (Segment::Index(i), Value::List(items)) => items.get(*i)?,
                _ => return None,
            };
        }
        Some(node)
    }

    /// The origin that best explains a path: the node itself when it exists, otherwise
    /// its closest existing ancestor (a missing key is reported where it should be).
    pub fn origin_of(&self, path: &KeyPath) -> Origin {
        let mut node = self;
        for segment in path.segments() {
            let next = match (segment, &node.value) {
                (Segment::Key(key), Value::Map(map)) => map.get(key).map(|e| &e.node),
                (Segment::Index(i), Value::List(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.origin
    }

    /// The origin of the key at the end of a path (for "unknown key" labels).
    pub fn key_origin_of(&self, path: &KeyPath) -> Option<Origin> {
        let (last, parent) = path.segments().split_last()?;
        let parent = self.lookup(&KeyPath(parent.to_vec()))?;
        match (last, &parent.value) {
            (Segment::Key(key), Value::Map(map)) => map.get(key).map(|e| e.key_origin),
            (Segment::Index(i), Value::List(items)) => items.get(*i).map(|n| n.origin),
            _ => None,
        }
    }

    /// How many values the tree holds, itself included.
    pub fn count_values(&self) -> usize {
        1 + match &self.value {
            Value::List(items) => items.iter().map(Node::count_values).sum(),
            Value::Map(map) => map.values().map(|e| e.node.count_values()).sum(),
            _ => 0,
        }
    }

    /// Remove the values at `paths` (paths into the tree as it is before any removal;
    /// a later item of a list goes before an earlier one, so indices stay right). The
    /// root path empties the tree.
    pub fn remove_paths(&mut self, paths: &[KeyPath]) {
        let mut paths: Vec<&KeyPath> = paths.iter().collect();
        paths.sort_by(|a, b| b.0.cmp(&a.0));
        paths.dedup();
        for path in paths {
            if path.is_root() {
                self.value = Value::Map(Map::new());
            } else {
                remove_at(self, &path.0);
            }
        }
    }

    /// A short description of the value's kind for "expected X, found Y" messages.
    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::String(_) => "a string",
            Value::List(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// Plain JSON, for schema validation and serde deserialization.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Map(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, e)| (k.clone(), e.node.to_json()))
                    .collect(),
            ),
        }
    }
}

fn remove_at(node: &mut Node, path: &[Segment]) {
    match path {
        [] => {}
        [last] => match (last, &mut node.value) {
            (Segment::Key(key), Value::Map(map)) => {
                map.shift_remove(key);
            }
            (Segment::Index(i), Value::List(items)) if *i < items.len() => {
                items.remove(*i);
            }
            _ => {}
        },
        [first, rest @ ..] => {
            let next = match (first, &mut node.value) {
                (Segment::Key(key), Value::Map(map)) => map.get_mut(key).map(|e| &mut e.node),
                (Segment::Index(i), Value::List(items)) => items.get_mut(*i),
                _ => None,
            };
            if let Some(next) = next {
                remove_at(next, rest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_paths_keeps_the_other_indices_right() {
        let mut sources = crate::diag::SourceMap::new();
        let id = sources.add("f.yaml", "a: [0, 1, 2, 3]\nb: {c: 1, d: 2}\n".to_string());
        let mut node = crate::config::yaml::parse_file(id, sources.get(id)).unwrap();
        node.remove_paths(&[
            KeyPath::parse("a[1]"),
            KeyPath::parse("a[3]"),
            KeyPath::parse("b.c"),
            KeyPath::parse("b.missing"),
            KeyPath::parse("a[9]"),
        ]);
        assert_eq!(
            node.to_json(),
            serde_json::json!({"a": [0, 2], "b": {"d": 2}})
        );
    }

    #[test]
    fn key_paths_parse_and_print_canonically() {
        for (input, printed) in [
            ("network.nodes.cidr", "network.nodes.cidr"),
            ("workers[1].memory", "workers[1].memory"),
            ("workers.1.memory", "workers[1].memory"),
        ] {
            assert_eq!(KeyPath::parse(input).to_string(), printed);
        }
    }
}
