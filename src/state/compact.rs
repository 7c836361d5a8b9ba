//! The compact JSON text `serde_json` would write for a value, made from any valid JSON
//! text of it (a state file is pretty-printed) without parsing it, where that is sure
//! to be the same bytes.
//!
//! A state's records hold their attributes as compact text ([`super::StoredAttributes`]),
//! and the checksum hashes that text. Reading a fleet's state parsed each record's
//! attributes into values and wrote them out again: a seventh of a steady 10,000-resource
//! plan's CPU (issue 15). Dropping the whitespace is the same text whenever the file
//! spells every value as `serde_json` writes it, which is how InfraFlux writes it. A
//! text spelled otherwise (a hand edit, another tool) is left to the caller to parse and
//! write: a repeated key, an escape `serde_json` does not write (`\/`, `\u00e9`, upper-case
//! hex), a number other than a plain integer of up to 18 digits, an object of more than
//! [`MAX_KEYS`] members (repeats are looked for by comparing keys one to one), or values
//! nested more than [`MAX_DEPTH`] deep.

/// Objects with more members than this are not checked for repeats here.
const MAX_KEYS: usize = 64;

/// Deeper than this, the caller parses: `serde_json` refuses text nested past its own
/// limit (128), and text held here must parse again.
const MAX_DEPTH: usize = 64;

/// `text` (valid JSON) as `serde_json::to_string` of its parsed value would write it,
/// or `None` when that cannot be told without parsing.
pub fn compact(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    // The keys met so far in each open object; `None` for an array.
    let mut open: Vec<Option<Vec<&str>>> = Vec::new();
    // Whether the next string is an object's key.
    let mut key_next = false;
    let mut at = 0;
    while let Some(&byte) = bytes.get(at) {
        match byte {
            b' ' | b'\n' | b'\r' | b'\t' => at += 1,
            b'{' | b'[' => {
                if open.len() == MAX_DEPTH {
                    return None;
                }
                key_next = byte == b'{';
                open.push(key_next.then(Vec::new));
                out.push(byte);
                at += 1;
            }
            b'}' | b']' => {
                open.pop();
                key_next = false;
                out.push(byte);
                at += 1;
            }
            b',' => {
                key_next = matches!(open.last(), Some(Some(_)));
                out.push(byte);
                at += 1;
            }
            b':' => {
                key_next = false;
                out.push(byte);
                at += 1;
            }
            b'"' => {
                let end = string_end(bytes, at + 1)?;
                if key_next {
                    let key = text.get(at + 1..end)?;
                    let keys = open.last_mut()?.as_mut()?;
                    // Escapes are spelled one way only here, so equal texts are the
                    // only equal keys.
                    if keys.len() == MAX_KEYS || keys.contains(&key) {
                        return None;
                    }
                    keys.push(key);
                }
                out.extend_from_slice(&bytes[at..=end]);
                at = end + 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = at;
                while bytes
                    .get(at)
                    .is_some_and(|b| matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
                {
                    at += 1;
                }
                let number = &bytes[start..at];
                if !plain_integer(number) {
                    return None;
                }
                out.extend_from_slice(number);
            }
            b'a'..=b'z' => {
                // `true`, `false` or `null`: the text is valid JSON.
                let start = at;
                while bytes.get(at).is_some_and(u8::is_ascii_lowercase) {
                    at += 1;
                }
                out.extend_from_slice(&bytes[start..at]);
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Where the string whose contents start at `at` ends (its closing quote), when each of
/// its escapes is the one `serde_json` writes for its character.
fn string_end(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        // Most of a state's text is in strings (machine configs): skipped to the next
        // quote or backslash a word at a time.
        at += memchr::memchr2(b'"', b'\\', bytes.get(at..)?)?;
        if bytes[at] == b'"' {
            return Some(at);
        }
        // A backslash.
        at += 1;
        match *bytes.get(at)? {
            b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't' => at += 1,
            b'u' => {
                // `\u00xx` (lower-case hex) for a control character without a short
                // escape.
                let code = match bytes.get(at + 1..at + 5)? {
                    [b'0', b'0', high @ (b'0' | b'1'), low] => {
                        let low = match low {
                            b'0'..=b'9' => low - b'0',
                            b'a'..=b'f' => low - b'a' + 10,
                            _ => return None,
                        };
                        (high - b'0') * 16 + low
                    }
                    _ => return None,
                };
                if matches!(code, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) {
                    return None;
                }
                at += 5;
            }
            _ => return None,
        }
    }
}

/// An integer `serde_json` reads as one and writes back the same: no fraction or
/// exponent, no `-0`, and few enough digits to fit an `i64` and a `u64` either way.
fn plain_integer(number: &[u8]) -> bool {
    let digits = number.strip_prefix(b"-").unwrap_or(number);
    !digits.is_empty()
        && digits.len() <= 18
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0')
        && number != b"-0"
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// What serde_json writes for `text` parsed.
    fn written(text: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<Value>(text).unwrap()).unwrap()
    }

    proptest! {
        #[test]
        fn compact_is_what_serde_json_writes_or_nothing(value in crate::state::parse::tests::json_values(
            // Every character that is escaped, and some that are not.
            "[\\x00-\\x20\"\\\\/a-z\\x7f\u{e9}\u{1f600}\u{2028}]{0,12}",
            "[a-e\"\\n]{0,3}",
        )) {
            let expected = serde_json::to_string(&value).unwrap();
            for text in [expected.clone(), serde_json::to_string_pretty(&value).unwrap()] {
                if let Some(ours) = compact(&text) {
                    prop_assert_eq!(&ours, &expected);
                }
            }
        }

        /// Hand-written spellings: any JSON text gives serde_json's text or none.
        #[test]
        fn any_spelling_gives_serde_jsons_text_or_none(text in spelled()) {
            if let Some(ours) = compact(&text) {
                prop_assert_eq!(ours, written(&text));
            }
        }
    }

    /// JSON text spelled in the ways serde_json does and does not write.
    fn spelled() -> impl Strategy<Value = String> {
        let space = prop_oneof![Just(""), Just(" "), Just("\n  "), Just("\t"), Just("\r\n")];
        let piece = prop_oneof![
            Just("a"),
            Just(r"\/"),
            Just(r"\u00e9"),
            Just(r"\u001F"),
            Just(r"\u001f"),
            Just(r"\u000a"),
            Just(r"\u0008"),
            Just(r"\n"),
            Just(r#"\""#),
            Just(r"\\"),
            Just("\u{e9}"),
            Just("/"),
        ];
        let string = proptest::collection::vec(piece, 0..4)
            .prop_map(|pieces| format!("\"{}\"", pieces.concat()));
        let leaf = prop_oneof![
            prop_oneof![
                Just("0"),
                Just("-0"),
                Just("12"),
                Just("-12"),
                Just("1.0"),
                Just("1e2"),
                Just("-1E-2"),
                Just("123456789012345678"),
                Just("1234567890123456789"),
                Just("true"),
                Just("false"),
                Just("null"),
            ]
            .prop_map(String::from),
            string.clone(),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            let member = (space.clone(), string.clone(), space.clone(), inner.clone());
            prop_oneof![
                proptest::collection::vec((space.clone(), inner), 0..6).prop_map(|items| {
                    let items: Vec<String> =
                        items.into_iter().map(|(s, v)| format!("{s}{v}")).collect();
                    format!("[{}]", items.join(","))
                }),
                proptest::collection::vec(member, 0..6).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(s, k, t, v)| format!("{s}{k}{t}:{s}{v}{t}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    #[test]
    fn a_pretty_state_record_is_compacted_without_parsing() {
        let text = "{\n  \"name\": \"cp-1\",\n  \"cores\": 4,\n  \"tags\": [\"a b\", -3, true, null],\n  \"config\": \"line: 1\\nquote: \\\"x\\\"\\ttab \\u001b\",\n  \"empty\": {},\n  \"nested\": {\"x\": []}\n}";
        assert_eq!(compact(text).as_deref(), Some(written(text).as_str()));
    }

    #[test]
    fn spellings_serde_json_would_change_are_left_to_it() {
        for text in [
            r#"{"a": 1, "a": 2}"#,
            r#"{"a": {"b": 1, "c": 2, "b": 3}}"#,
            r#"{"a": "\/"}"#,
            r#"{"a": "\u00e9"}"#,
            r#"{"a": "\u001F"}"#,
            r#"{"a": "\u000a"}"#,
            r#"{"a": 1.0}"#,
            r#"{"a": 1e3}"#,
            r#"{"a": -0}"#,
            r#"{"a": 12345678901234567890}"#,
        ] {
            assert_eq!(compact(text), None, "{text}");
        }
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!("\"k{i}\": {i}")).collect();
        assert_eq!(compact(&format!("{{{}}}", many.join(", "))), None);
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(compact(&deep), None);
        // The same key in two objects is no repeat.
        let text = r#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#;
        assert_eq!(compact(text).as_deref(), Some(written(text).as_str()));
    }
}
