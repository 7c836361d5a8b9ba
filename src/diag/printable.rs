//! Text from the configuration, made safe to print on a terminal.
//!
//! A value may hold control characters (YAML's `"\e]0;…\a"` escapes are legal), and a
//! diagnostic quotes values and source lines. Printed raw, an escape sequence retitles
//! the terminal, clears the screen, hides the lines after it, or (OSC 52) writes the
//! clipboard; bidirectional overrides reorder what a reviewer reads. Everything that
//! echoes user text to a terminal goes through here.

use std::borrow::Cow;

/// Whether a character changes how a terminal shows what follows instead of showing
/// itself: C0 and C1 controls (tab and line feed excepted), DEL, and the
/// bidirectional embedding, override and isolate marks.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every unsafe character written as a visible escape (`\u{1b}`), for
/// messages, labels and values. Text without any is returned as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with every unsafe character replaced by visible characters of the same
/// length in bytes, so byte offsets into it (a diagnostic's span) still hold: for
/// quoting a source file. A carriage return before a line feed is kept (CRLF files).
pub fn printable_same_length(text: &str) -> Cow<'_, str> {
    let unsafe_at =
        |i: usize, c: char| is_unsafe(c) && !(c == '\r' && text[i + 1..].starts_with('\n'));
    if !text.char_indices().any(|(i, c)| unsafe_at(i, c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for (i, c) in text.char_indices() {
        if unsafe_at(i, c) {
            // One byte: `?`; two (C1 controls): `¿`; three (bidi marks): U+FFFD.
            out.push(match c.len_utf8() {
                1 => '?',
                2 => '¿',
                _ => '\u{fffd}',
            });
        } else {
            out.push(c);
        }
    }
    debug_assert_eq!(out.len(), text.len());
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_become_visible_text() {
        assert_eq!(printable("plain: é 🦀\n\tx"), "plain: é 🦀\n\tx");
        assert_eq!(
            printable("a\u{1b}]0;owned\u{7}b\u{9b}c\u{202e}d"),
            "a\\u{1b}]0;owned\\u{7}b\\u{9b}c\\u{202e}d"
        );
    }

    #[test]
    fn quoted_sources_keep_their_offsets() {
        let text = "a: \u{1b}[2J\r\nb: \u{9b}1m \u{202e}x\r";
        let shown = printable_same_length(text);
        assert_eq!(shown.len(), text.len());
        assert!(!shown.chars().any(is_unsafe_outside_crlf), "{shown:?}");
        assert!(shown.contains("\r\n"));
        fn is_unsafe_outside_crlf(c: char) -> bool {
            is_unsafe(c) && c != '\r'
        }
        assert!(shown.ends_with("x?"));
    }
}
