//! Kubernetes YAML, read and written the way Kubernetes reads it.
//!
//! kubectl, Helm, ArgoCD and the API server itself (an `application/apply-patch+yaml`
//! body) read YAML with `sigs.k8s.io/yaml`, that is go-yaml v2: YAML 1.1 scalars. A plain
//! `0400` is the octal integer 256 there, `yes`/`no`/`on` are booleans and `1_000` is 1000,
//! where a YAML 1.2 reader or writer such as serde_yaml takes them for strings. Both ways
//! went wrong, and the real API server refused the results:
//!
//! - reading: a manifest's `defaultMode: 0400` (once in a hand-written Cilium subset) became the string
//!   `"0400"`. [`documents`] reads with go-yaml v2's resolution of plain scalars (from
//!   saphyr-parser's events); quoted and block scalars are strings, as everywhere.
//! - writing: ArgoCD's redis `args: [..., "no", ...]` was written as a plain `no`, which
//!   Kubernetes reads as `false`. [`to_string`] quotes every string that YAML 1.1 or 1.2
//!   would read as anything else, so a file reads back the same under both.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

/// Every document of `text`, empty ones left out, each as the JSON the API server would
/// make of it.
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| e.to_string())?;
        builder
            .event(event)
            .map_err(|e| format!("line {}: {e}", span.start.line()))?;
    }
    Ok(builder
        .documents
        .into_iter()
        .filter(|document| !document.is_null())
        .collect())
}

enum Frame {
    Sequence(usize, Vec<Value>),
    Mapping(usize, Map<String, Value>, Option<String>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    documents: Vec<Value>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>) -> Result<(), String> {
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let value = resolve(&text, style, tag.as_deref());
                self.finish(anchor, value)?;
            }
            Event::Alias(anchor) => {
                let value = self
                    .anchors
                    .get(&anchor)
                    .cloned()
                    .ok_or("alias to an unknown anchor")?;
                self.add(value)?;
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Sequence(anchor, Vec::new())),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Frame::Mapping(anchor, Map::new(), None));
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Sequence(anchor, items)) => self.finish(anchor, Value::Array(items))?,
                Some(Frame::Mapping(anchor, map, _)) => self.finish(anchor, Value::Object(map))?,
                None => {}
            },
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    fn finish(&mut self, anchor: usize, value: Value) -> Result<(), String> {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        self.add(value)
    }

    fn add(&mut self, value: Value) -> Result<(), String> {
        match self.stack.last_mut() {
            None => self.documents.push(value),
            Some(Frame::Sequence(_, items)) => items.push(value),
            Some(Frame::Mapping(_, map, pending)) => match pending.take() {
                // JSON keys are strings: sigs.k8s.io/yaml writes other keys as text.
                None => {
                    *pending = Some(match value {
                        Value::String(text) => text,
                        Value::Array(_) | Value::Object(_) => {
                            return Err("a mapping key must be a scalar".into());
                        }
                        other => other.to_string(),
                    });
                }
                Some(key) => {
                    map.insert(key, value);
                }
            },
        }
        Ok(())
    }
}

/// `value` as one YAML document, in block style, that reads back as `value` under
/// YAML 1.1 (Kubernetes, [`documents`]) and YAML 1.2 (serde_yaml) alike.
pub fn to_string(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_mapping(&mut out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_sequence(&mut out, items, 0, false),
        scalar => {
            write_scalar(&mut out, scalar);
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// A mapping whose first key goes where the output stands (`inline`: after `- `) or on
/// a new line at `width`; its values nest two spaces deeper, sequences at the key's
/// column (as kubectl writes them).
fn write_mapping(out: &mut String, map: &Map<String, Value>, width: usize, inline: bool) {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 || !inline {
            indent(out, width);
        }
        write_string(out, key);
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                write_mapping(out, inner, width + 2, false);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                write_sequence(out, items, width, false);
            }
            Value::String(text) if literal_block(text) => {
                out.push(' ');
                write_literal(out, text, width + 2);
            }
            scalar => {
                out.push(' ');
                write_scalar(out, scalar);
                out.push('\n');
            }
        }
    }
}

fn write_sequence(out: &mut String, items: &[Value], width: usize, inline: bool) {
    for (index, item) in items.iter().enumerate() {
        if index > 0 || !inline {
            indent(out, width);
        }
        out.push_str("- ");
        match item {
            Value::Object(inner) if !inner.is_empty() => {
                write_mapping(out, inner, width + 2, true);
            }
            Value::Array(inner) if !inner.is_empty() => {
                write_sequence(out, inner, width + 2, true);
            }
            Value::String(text) if literal_block(text) => write_literal(out, text, width + 2),
            scalar => {
                write_scalar(out, scalar);
                out.push('\n');
            }
        }
    }
}

fn write_scalar(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
        Value::Number(number) => out.push_str(&number.to_string()),
        Value::String(text) => write_string(out, text),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// Plain when that reads back as this string under both YAML versions, else
/// double-quoted.
fn write_string(out: &mut String, text: &str) {
    if plain_is_safe(text) {
        out.push_str(text);
        return;
    }
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if !printable(c) => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// YAML's printable characters (its double-quoted style escapes the rest).
fn printable(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{feff}' | '\u{2028}' | '\u{2029}' | '\u{fffe}' | '\u{ffff}'
        ))
}

fn plain_is_safe(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    // Indicators that start something else, and YAML 1.1's merge and value keys.
    if "-?:,[]{}#&*!|>'\"%@` \t".contains(first) || text == "<<" || text == "=" {
        return false;
    }
    if text.ends_with([' ', '\t', ':'])
        || text.contains(": ")
        || text.contains(" #")
        || text.chars().any(|c| c == '\t' || !printable(c))
    {
        return false;
    }
    // Anything YAML 1.1 reads as null, a boolean or a number (YAML 1.2's core forms are
    // among those), and what looks like a YAML 1.1 timestamp or sexagesimal number.
    if infinity_or_nan(text) || resolve_plain(text) != Value::String(text.to_string()) {
        return false;
    }
    let bytes = text.as_bytes();
    let timestamp =
        bytes.len() >= 5 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-';
    let sexagesimal = first.is_ascii_digit() && text.contains(':');
    !(timestamp || sexagesimal)
}

/// Multi-line text reads best as a literal block (`|`), when the block keeps it exactly:
/// no leading space on the first line, no line of only spaces, at most one final newline.
fn literal_block(text: &str) -> bool {
    text.contains('\n')
        && !text.starts_with([' ', '\t', '\n'])
        && !text.ends_with("\n\n")
        && !text
            .split('\n')
            .any(|line| !line.is_empty() && line.trim_matches(' ').is_empty())
        && text
            .chars()
            .all(|c| c == '\n' || (c != '\r' && c != '\t' && printable(c)))
}

fn write_literal(out: &mut String, text: &str, width: usize) {
    out.push_str(if text.ends_with('\n') { "|\n" } else { "|-\n" });
    for line in text.strip_suffix('\n').unwrap_or(text).split('\n') {
        if !line.is_empty() {
            indent(out, width);
            out.push_str(line);
        }
        out.push('\n');
    }
}

/// A scalar as go-yaml v2 resolves it (`resolve.go`): explicit core tags first, then
/// quoted and block scalars are strings, then the YAML 1.1 null, boolean, integer and
/// float forms.
fn resolve(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Value {
    let string = || Value::String(text.to_string());
    if let Some(tag) = tag
        && (tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:")
    {
        return match tag.suffix.as_str() {
            "str" | "binary" => string(),
            _ => resolve_plain(text),
        };
    }
    if style != ScalarStyle::Plain {
        return string();
    }
    resolve_plain(text)
}

fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "true" | "True" | "TRUE" => {
            return Value::Bool(true);
        }
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "false" | "False" | "FALSE" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    let starts_like_a_number = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.');
    if !starts_like_a_number {
        return Value::String(text.to_string());
    }
    if infinity_or_nan(text) {
        // No JSON number for these; go-yaml's value fails to convert to JSON, so no
        // manifest that Kubernetes accepts holds one.
        return Value::String(text.to_string());
    }
    // Underscores are digit separators in YAML 1.1.
    let plain = text.replace('_', "");
    if let Some(integer) = parse_integer(&plain) {
        return Value::Number(integer);
    }
    if is_float(&plain)
        && let Some(number) = plain.parse::<f64>().ok().and_then(Number::from_f64)
    {
        return Value::Number(number);
    }
    Value::String(text.to_string())
}

fn infinity_or_nan(text: &str) -> bool {
    matches!(
        text,
        ".inf"
            | ".Inf"
            | ".INF"
            | "+.inf"
            | "+.Inf"
            | "+.INF"
            | "-.inf"
            | "-.Inf"
            | "-.INF"
            | ".nan"
            | ".NaN"
            | ".NAN"
    )
}

/// Go's `strconv.ParseInt(s, 0, 64)`, then `ParseUint`: an optional sign, then `0x` hex,
/// `0b` binary, `0o` or a leading `0` octal, or decimal.
fn parse_integer(text: &str) -> Option<Number> {
    let (negative, unsigned) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(hex) = unsigned
        .strip_prefix("0x")
        .or_else(|| unsigned.strip_prefix("0X"))
    {
        (16, hex)
    } else if let Some(binary) = unsigned
        .strip_prefix("0b")
        .or_else(|| unsigned.strip_prefix("0B"))
    {
        (2, binary)
    } else if let Some(octal) = unsigned
        .strip_prefix("0o")
        .or_else(|| unsigned.strip_prefix("0O"))
    {
        (8, octal)
    } else if unsigned.len() > 1 && unsigned.starts_with('0') {
        (8, &unsigned[1..])
    } else {
        (10, unsigned)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if negative {
        // i64::MIN's magnitude is one more than i64::MAX.
        let value = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Number::from(value))
    } else {
        Some(Number::from(magnitude))
    }
}

/// go-yaml v2's float form: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_float(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", fraction)) => !fraction.is_empty() && digits(fraction),
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => !mantissa.is_empty() && digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        let mut documents = documents(text).unwrap();
        assert_eq!(documents.len(), 1, "{text}");
        documents.remove(0)
    }

    #[test]
    fn plain_scalars_resolve_as_in_yaml_1_1() {
        let value = one(concat!(
            "octal: 0400\nhex: 0x1F\nbinary: 0b101\noctal_o: 0o17\ndecimal: 420\n",
            "negative: -12\nunderscored: 1_000\nzero: 0\nfloat: 1.5\nexponent: 1e3\n",
            "leading_zero_eight: 08\n",
            "yes: yes\nno_value: no\non_value: on\nOff_value: Off\ny_value: y\n",
            "null_value: ~\nempty:\nversion: 1.13.9\ntag: v1.34.4\nquantity: 512Mi\n",
        ));
        assert_eq!(
            value,
            json!({
                "octal": 256, "hex": 31, "binary": 5, "octal_o": 15, "decimal": 420,
                "negative": -12, "underscored": 1000, "zero": 0, "float": 1.5,
                "exponent": 1000.0, "leading_zero_eight": 8.0,
                // A key is resolved, then written as text, as sigs.k8s.io/yaml does.
                "true": true, "no_value": false, "on_value": true, "Off_value": false,
                "y_value": true, "null_value": null, "empty": null,
                "version": "1.13.9", "tag": "v1.34.4", "quantity": "512Mi",
            })
        );
    }

    #[test]
    fn quoted_block_and_str_tagged_scalars_are_strings() {
        let value = one("a: '0400'\nb: \"yes\"\nc: !!str 0400\nd: |\n  0400\ne: !!int 0400\n");
        assert_eq!(
            value,
            json!({"a": "0400", "b": "yes", "c": "0400", "d": "0400\n", "e": 256})
        );
    }

    #[test]
    fn documents_anchors_and_nesting() {
        let documents = documents(
            "---\n# empty\n---\na: &x {b: [1, two, 0755]}\nc: *x\n---\n- 1\n- - nested\n",
        )
        .unwrap();
        assert_eq!(
            documents,
            vec![
                json!({"a": {"b": [1, "two", 493]}, "c": {"b": [1, "two", 493]}}),
                json!([1, ["nested"]]),
            ]
        );
    }

    #[test]
    fn strings_yaml_1_1_would_misread_are_quoted() {
        let tricky = [
            "no",
            "yes",
            "on",
            "Off",
            "y",
            "N",
            "0400",
            "08",
            "1_000",
            "0x1F",
            "0b1",
            "1e3",
            ".5",
            ".inf",
            "~",
            "null",
            "",
            "2024-01-01",
            "12:30",
            "<<",
            "=",
            "- item",
            "a: b",
            "a #b",
            "trailing ",
            " leading",
            "tab\there",
            "#comment",
            "*alias",
            "&anchor",
            "!tag",
            "|",
            ">",
            "'single'",
            "\"double\"",
            "back\\slash",
            "@at",
            "`tick`",
            "%percent",
            "[list]",
            "{map}",
            "ends:",
            "bell\u{7}",
            "true",
            "1.5",
            "-1",
        ];
        let value = json!({"args": tricky.to_vec(), "on": "key", "0400": 1});
        let text = to_string(&value);
        assert_eq!(one(&text), value, "{text}");
        let yaml_1_2: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(yaml_1_2, value, "{text}");
        // What needs no quotes has none.
        let plain = json!({"image": "quay.io/cilium/cilium:v1.18.4", "memory": "512Mi",
            "version": "1.13.9", "path": "/etc/cni/net.d", "url": "https://a.b/c?d=e#f"});
        assert!(!to_string(&plain).contains('"'), "{}", to_string(&plain));
    }

    #[test]
    fn nesting_multi_line_text_and_empty_collections_round_trip() {
        let value = json!({
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/name": "x"}},
            "data": {
                "script": "#!/bin/sh\nset -e\n\n  indented\necho done\n",
                "no_final_newline": "a\nb",
                "two_final_newlines": "a\n\n",
                "leading_space": " a\nb\n",
                "blank_line_of_spaces": "a\n   \nb\n",
                "carriage": "a\r\nb",
            },
            "empty": {}, "none": [], "nothing": null, "number": 1.5, "big": 18446744073709551615u64,
            "nested": [[1, [2, 3]], [], {}, {"a": [{"b": "c"}], "d": "|"}, "- x", ["no"]],
        });
        let text = to_string(&value);
        assert_eq!(one(&text), value, "{text}");
        let yaml_1_2: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(yaml_1_2, value, "{text}");
        assert!(text.contains("script: |\n    #!/bin/sh\n"), "{text}");
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let error = documents("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(!error.is_empty());
    }
}
