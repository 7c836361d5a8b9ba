//! Machine config documents written as YAML, byte for byte as `serde_yaml` writes them,
//! without going through libyaml for the documents where that is certain.
//!
//! Why: a machine config is rendered at every plan (twice: as applied and masked), and
//! libyaml's emitter analyses every scalar character by character (the configs carry
//! the cluster's certificates as long base64 strings). That was a quarter of the CPU of
//! a steady plan at 10k resources. Why byte for byte: the node's config digest
//! (`config_sha256`) is of these bytes, so any difference would show every machine
//! config as changed, and roll every node.
//!
//! [`write_document`] handles mappings, sequences, booleans, null, integers and the
//! strings whose plain (unquoted) form is certain: ASCII, no YAML indicator, not read
//! as a number, boolean or null, no line break, no double space (serde_yaml sets no line
//! width: libyaml never folds a line). It writes `''` for the empty string, as
//! serde_yaml does, and single-quotes what serde_yaml quotes to keep it a string where
//! that is certain ([`single_quoted_is_certain`]). Anything else (a float, a string that
//! needs double quotes or a block, a long key) makes it give up on the whole document:
//! the caller then uses serde_yaml. A test compares both on every bundled configuration
//! and on generated documents.

use serde_json::{Map, Value};

/// Keys longer than this are written as complex keys (`? key`) by libyaml.
const SIMPLE_KEY_LIMIT: usize = 128;

/// Append `document` to `out` as `serde_yaml::to_string` writes it; `None` when that is
/// not certain, with `out` left as it was.
pub fn write_document(document: &Value, out: &mut String) -> Option<()> {
    let start = out.len();
    let written = match document {
        Value::Object(map) if !map.is_empty() => write_mapping(out, map, 0),
        Value::Array(items) if !items.is_empty() => write_sequence(out, items, 0),
        scalar => write_scalar(out, scalar).map(|()| out.push('\n')),
    };
    if written.is_none() {
        out.truncate(start);
    }
    written
}

fn indent(out: &mut String, width: usize) {
    out.extend(std::iter::repeat_n(' ', width));
}

/// A block mapping whose keys start at column `width`; the caller has written whatever
/// precedes its first key on that line (nothing, or `- `).
fn write_mapping(out: &mut String, map: &Map<String, Value>, width: usize) -> Option<()> {
    for (index, (key, value)) in map.iter().enumerate() {
        if index > 0 {
            indent(out, width);
        }
        if key.is_empty() || key.len() > SIMPLE_KEY_LIMIT || !plain_is_certain(key, false) {
            return None;
        }
        out.push_str(key);
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                indent(out, width + 2);
                write_mapping(out, inner, width + 2)?;
            }
            // A sequence in a mapping is written at the key's own indentation.
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                indent(out, width);
                write_sequence(out, items, width)?;
            }
            scalar => {
                out.push(' ');
                write_scalar(out, scalar)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

/// A block sequence whose dashes are at column `width`; the caller has indented the
/// first one.
fn write_sequence(out: &mut String, items: &[Value], width: usize) -> Option<()> {
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            indent(out, width);
        }
        out.push_str("- ");
        match item {
            Value::Object(inner) if !inner.is_empty() => write_mapping(out, inner, width + 2)?,
            Value::Array(inner) if !inner.is_empty() => write_sequence(out, inner, width + 2)?,
            scalar => {
                write_scalar(out, scalar)?;
                out.push('\n');
            }
        }
    }
    Some(())
}

/// A scalar (or an empty collection) in value position.
fn write_scalar(out: &mut String, value: &Value) -> Option<()> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) if number.is_i64() || number.is_u64() => {
            out.push_str(&number.to_string());
        }
        // Floats: serde_yaml's own formatting (ryu, `.inf`, `.nan`) is not repeated here.
        Value::Number(_) => return None,
        Value::String(text) if text.is_empty() => out.push_str("''"),
        Value::String(text) if plain_is_certain(text, true) => out.push_str(text),
        Value::String(text) if single_quoted_is_certain(text) => {
            out.push('\'');
            out.push_str(text);
            out.push('\'');
        }
        Value::String(_) => return None,
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
    Some(())
}

/// The bytes a plain scalar may hold anywhere after its first ([`plain_is_certain`]).
const ALWAYS_PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        table[byte] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_' | b'.' | b'/' | b'=' | b'+' | b'@' | b'(' | b')' | b'~'
            );
        byte += 1;
    }
    table
};

/// Whether serde_yaml writes `text` plain, as it is: a value, or a key (`value` false;
/// keys with a space are left to serde_yaml, as no test holds them).
fn plain_is_certain(text: &str, value: bool) -> bool {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return false;
    };
    // A first character that starts something else in YAML, or that could start a
    // number (`-1`, `.5`, `.inf`) or a document marker. A `+` is no indicator to
    // libyaml: base64 secrets start with one once in 64 (a cluster whose bundle held one
    // went to serde_yaml for every machine config: a 10k steady plan took 1.2 times the CPU).
    // What it signs is checked below; `+.inf` and `++1` stay with serde_yaml.
    let signed = first == b'+' && bytes.get(1).is_some_and(u8::is_ascii_alphanumeric);
    if !(first.is_ascii_alphanumeric() || signed || matches!(first, b'/' | b'_' | b'(')) {
        return false;
    }
    let last = bytes[bytes.len() - 1];
    if last == b' ' || last == b':' {
        return false;
    }
    for (index, &byte) in bytes.iter().enumerate() {
        // Most bytes are these (a bundle's base64 certificates are a machine config's
        // bulk): one look-up each.
        if ALWAYS_PLAIN[usize::from(byte)] {
            continue;
        }
        let next = bytes.get(index + 1).copied();
        let fine = match byte {
            // `: ` starts a value.
            b':' => next != Some(b' '),
            // One space between words in a value: not two, not ` #` (a comment). At any
            // column: serde_yaml sets libyaml's line width to unlimited, so a long value
            // is never folded.
            b' ' => value && next != Some(b' ') && next != Some(b'#'),
            _ => false,
        };
        if !fine {
            return false;
        }
    }
    !read_as_other_than_a_string(text)
}

/// Whether serde_yaml writes the value `text` as `'text'`: single-quoted because it would
/// read back as a number, boolean or null (or, all digits with a leading zero, to keep it
/// a string), with nothing inside to escape or fold. Machine-config patches are full of
/// these (sysctl values such as `"65535"`, kubelet arguments such as `"250"`), and one of
/// them sent the whole document to libyaml. Only the forms where that is certain:
/// decimal digits, with at most one `.` between them, up to 300 characters (beyond
/// about 309 digits a number is infinite to serde_yaml, and a string again), and the
/// exact words it reads as booleans and null. Keys are not written this way.
fn single_quoted_is_certain(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "True", "TRUE", "false", "False", "FALSE", "null", "Null", "NULL", "~",
    ];
    if WORDS.contains(&text) {
        return true;
    }
    let decimal = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    text.len() <= 300
        && match text.split_once('.') {
            None => decimal(text),
            Some((whole, fraction)) => decimal(whole) && decimal(fraction),
        }
}

/// A plain scalar serde_yaml would read back as a number, boolean or null: it quotes
/// those. Rust's own number parsers accept more than serde_yaml does (`inf`, `nan`,
/// `infinity`), which only sends more documents to serde_yaml.
fn read_as_other_than_a_string(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "~",
    ];
    // serde_yaml reads a number's `+` sign before any of its forms (`+0x1F`, `+1e5`).
    let read = |text: &str| {
        // Compared without a lowercase copy: this runs for every scalar of every config.
        let prefix = text.get(..2).unwrap_or_default();
        WORDS.iter().any(|word| text.eq_ignore_ascii_case(word))
            || ["0x", "0o", "0b"]
                .iter()
                .any(|p| prefix.eq_ignore_ascii_case(p))
            || text.parse::<f64>().is_ok()
            || text.parse::<i128>().is_ok()
    };
    read(text) || text.strip_prefix('+').is_some_and(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn the_always_plain_bytes_are_the_letters_digits_and_these_marks() {
        for byte in 0..=255u8 {
            let expected = byte.is_ascii_alphanumeric()
                || matches!(
                    byte,
                    b'-' | b'_' | b'.' | b'/' | b'=' | b'+' | b'@' | b'(' | b')' | b'~'
                );
            assert_eq!(ALWAYS_PLAIN[usize::from(byte)], expected, "byte {byte}");
        }
    }

    fn written(document: &Value) -> Option<String> {
        let mut out = "kept\n".to_string();
        let answer = write_document(document, &mut out);
        let written = out.strip_prefix("kept\n").unwrap().to_string();
        if answer.is_none() {
            assert_eq!(written, "", "a document given up leaves nothing behind");
        }
        answer.map(|()| written)
    }

    fn same_as_serde_yaml(document: &Value) -> Option<String> {
        let written = written(document)?;
        let expected = serde_yaml::to_string(document).unwrap();
        assert_eq!(written, expected, "for {document}");
        Some(written)
    }

    #[test]
    fn the_shapes_of_a_machine_config_are_written_as_serde_yaml_writes_them() {
        let document = json!({
            "version": "v1alpha1",
            "debug": false,
            "machine": {
                "type": "controlplane",
                "token": "8edtuk.89e3cskrlx9enyut",
                "certSANs": [],
                "kubelet": {"image": "ghcr.io/siderolabs/kubelet:v1.32.2", "nodeIP": {"validSubnets": ["10.0.0.0/24"]}},
                "features": {"kubePrism": {"enabled": true, "port": 7445}},
                "nodeLabels": {"node.kubernetes.io/exclude-from-external-load-balancers": ""},
                "install": {"image": "factory.talos.dev/installer/a215:v1.13.9", "wipe": false},
            },
            "cluster": {
                "id": "SLjlXRP2bbTvZfELmnfmtEsz3m5AtQzF_HcTohd5g3g=",
                "secret": "1jh4z1U5mxrDCFp+kLi4/at7UvBPg9wPmsV8ijY8br8=",
                "controlPlane": {"endpoint": "https://10.0.0.5:6443"},
                "admissionControl": [{"name": "PodSecurity", "configuration": {"exemptions": {"namespaces": ["kube-system"], "usernames": []}}}],
                "auditPolicy": {"rules": [{"level": "Metadata"}]},
                "discovery": {"registries": {"service": {}}},
                "nested": [["a", "b"], [], {}, null, -3, 18446744073709551615u64],
                "masked": "(sensitive 1a2b3c4d)",
                // Base64 that starts with a sign, as one secret in 64 does.
                "secretboxEncryptionSecret": "+vC2HErFtnJuvrduPjTnHd2PMoJ9DFeP0b1Gm+HXrk0=",
            },
        });
        assert!(same_as_serde_yaml(&document).is_some());
        // What serde_yaml single-quotes to keep a string: a patch's sysctls and kubelet
        // arguments, versions, booleans and null as text, digits up to 300 long.
        let quoted = json!({
            "machine": {
                "sysctls": {"net.core.somaxconn": "65535", "vm.overcommit_memory": "1"},
                "kubelet": {"extraArgs": {"max-pods": "250", "rotate": "true"}},
            },
            "values": ["0", "007", "1.13", "0.5", "TRUE", "False", "null", "~", "9".repeat(300)],
        });
        let written = same_as_serde_yaml(&quoted).expect("written directly");
        assert!(written.contains("somaxconn: '65535'"), "{written}");
        // A long value with spaces, deep in the document: on one line at any column.
        let sentence = vec!["word"; 40].join(" ");
        let deep = json!({"a": {"b": {"c": [{"d": sentence, "e": [sentence]}]}}});
        let written = same_as_serde_yaml(&deep).expect("written directly");
        assert_eq!(written.lines().count(), 6, "{written}");
        for scalar in [
            json!("v1alpha1"),
            json!(""),
            json!(7),
            json!(null),
            json!({}),
            json!([]),
        ] {
            assert!(same_as_serde_yaml(&scalar).is_some(), "{scalar}");
        }
    }

    #[test]
    fn what_is_not_certain_is_left_to_serde_yaml() {
        for uncertain in [
            json!({"a": "0x1f"}),
            json!({"a": "-"}),
            json!({"a": "a: b"}),
            json!({"a": "two\nlines"}),
            json!({"a": "#comment"}),
            json!({"a": "+0x1F"}),
            json!({"a": "+1e5"}),
            json!({"a": "+.inf"}),
            json!({"a": "+inf"}),
            json!({"a": "++1"}),
            json!({"a": "+5"}),
            json!({"a": "yes"}),
            json!({"a": "1e5"}),
            json!({"a": "1."}),
            json!({"a": ".5"}),
            json!({"a": "-5"}),
            // Infinite to serde_yaml, so a string again, written plain.
            json!({"a": "9".repeat(400)}),
            json!({"65535": "a"}),
            json!({"a key": "a"}),
            json!({"a": "+"}),
            json!({"a": 1.5}),
            json!({"a": "é"}),
            json!({"a": "trailing "}),
            json!({"": 1}),
        ] {
            assert_eq!(written(&uncertain), None, "{uncertain}");
        }
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            // Strings from an alphabet with every character the writer treats specially.
            "[a-zA-Z0-9 ./:_=+@()~#'\"\\-]{0,12}".prop_map(Value::from),
            // Long values with spaces: never folded, at any column.
            "[a-z]{1,12}( [a-z+]{1,12}){4,12}".prop_map(Value::from),
            "(true|false|null|yes|No|ON|~|0x1F|0o17|1e5|\\.inf|-\\.5|007|1_000|10\\.0\\.0\\.1)"
                .prop_map(Value::from),
            // Numbers and words serde_yaml reads as other than strings, as strings.
            "([0-9]{1,6}|[0-9]{0,3}\\.[0-9]{0,3}|(t|T)rue|TRUE|(f|F)alse|FALSE|(n|N)ull|NULL|~)"
                .prop_map(Value::from),
            // Signed: numbers in the forms serde_yaml reads (and some it reads as strings,
            // which the writer leaves to it), and base64 secrets.
            "\\+(0x1F|0o17|0b1|1e5|\\.inf|inf|NaN|5|05|true|\\+1|-1|[a-zA-Z0-9+/=]{0,12})"
                .prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
        ]
    }

    fn document() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec(("[a-zA-Z0-9_./:+-]{1,10}", inner), 0..5)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the writer answers, its answer is serde_yaml's, byte for byte.
        #[test]
        fn an_answer_is_always_serde_yaml_s_own(document in document()) {
            if let Some(written) = written(&document) {
                prop_assert_eq!(written, serde_yaml::to_string(&document).unwrap());
            }
        }
    }
}
