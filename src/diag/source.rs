//! The files a run has read, so diagnostics can quote them and name their lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Index of a file in the [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A span in a source file: byte range for rendering, line and column (both 1-based) for
/// humans and machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    pub file: FileId,
    pub start: usize,
    pub len: usize,
    pub line: u32,
    pub column: u32,
}

pub struct SourceFile {
    /// The path as the user would type it (relative to the working directory when possible).
    pub path: PathBuf,
    pub text: Arc<str>,
    line_starts: Vec<usize>,
    /// Where characters and bytes differ (text that is not ASCII), how to convert
    /// between them without walking a line from its start: the parser reports a
    /// position for every value, and a walk per value made long lines quadratic.
    characters: Option<CharacterIndex>,
    /// Decrypted from an age file (`*.age.yaml`): diagnostics name its lines but never
    /// quote its text.
    pub secret: bool,
}

/// Debug shows a secret file's text masked, as diagnostics do.
impl std::fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceFile")
            .field("path", &self.path)
            .field("text", &self.shown_text())
            .field("secret", &self.secret)
            .finish()
    }
}

/// Character ↔ byte conversion for text that is not ASCII: the byte offset of every
/// [`CharacterIndex::STEP`]th character, and the character index of every line start.
struct CharacterIndex {
    marks: Vec<usize>,
    line_start_chars: Vec<usize>,
}

impl CharacterIndex {
    const STEP: usize = 64;

    fn new(text: &str) -> Self {
        let mut marks = Vec::with_capacity(text.len() / Self::STEP + 1);
        let mut line_start_chars = vec![0];
        for (count, (byte, character)) in text.char_indices().enumerate() {
            if count % Self::STEP == 0 {
                marks.push(byte);
            }
            if character == '\n' {
                line_start_chars.push(count + 1);
            }
        }
        CharacterIndex {
            marks,
            line_start_chars,
        }
    }

    /// The byte offset of the character at `index` (the text's length past its end).
    fn byte_of(&self, text: &str, index: usize) -> usize {
        let Some(&mark) = self.marks.get(index / Self::STEP) else {
            return text.len();
        };
        text[mark..]
            .char_indices()
            .nth(index % Self::STEP)
            .map_or(text.len(), |(i, _)| mark + i)
    }

    /// The index of the character that starts at or contains byte `offset`.
    fn char_of(&self, text: &str, offset: usize) -> usize {
        let block = self
            .marks
            .partition_point(|&b| b <= offset)
            .saturating_sub(1);
        let mark = self.marks.get(block).copied().unwrap_or(0);
        let within = text[mark..]
            .char_indices()
            .take_while(|(i, _)| mark + i < offset)
            .count();
        block * Self::STEP + within
    }
}

impl SourceFile {
    fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let characters = (!text.is_ascii()).then(|| CharacterIndex::new(&text));
        SourceFile {
            path,
            text: text.into(),
            line_starts,
            characters,
            secret: false,
        }
    }

    /// Byte offset of a (1-based line, 0-based character column) position, clamped to the
    /// file. YAML parsers count characters; miette wants bytes.
    pub fn byte_offset(&self, line: usize, char_column: usize) -> usize {
        let line_index = line.saturating_sub(1).min(self.line_starts.len() - 1);
        match &self.characters {
            None => (self.line_starts[line_index].saturating_add(char_column)).min(self.text.len()),
            Some(index) => index.byte_of(
                &self.text,
                index.line_start_chars[line_index].saturating_add(char_column),
            ),
        }
    }

    /// 1-based line and column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (u32, u32) {
        let offset = offset.min(self.text.len());
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_index];
        let column = match &self.characters {
            None => offset - line_start,
            Some(index) => index.char_of(&self.text, offset) - index.line_start_chars[line_index],
        } + 1;
        (line_index as u32 + 1, column as u32)
    }

    /// The text a diagnostic may quote: a secret file's text with every byte but line
    /// breaks replaced by `*` (same offsets, so labels still point at the right place).
    pub fn shown_text(&self) -> String {
        if !self.secret {
            return self.text.to_string();
        }
        self.text
            .bytes()
            .map(|b| if b == b'\n' { '\n' } else { '*' })
            .collect()
    }

    /// The byte range of line `index` (0-based, clamped to the last line), its line
    /// break included.
    pub fn line_bounds(&self, index: usize) -> (usize, usize) {
        let index = index.min(self.line_starts.len() - 1);
        let start = self.line_starts[index];
        let end = self
            .line_starts
            .get(index + 1)
            .copied()
            .unwrap_or(self.text.len());
        (start, end)
    }

    /// [`Self::shown_text`] of a byte range only (on character boundaries).
    pub fn shown_range(&self, start: usize, end: usize) -> String {
        let text = &self.text[start..end];
        if !self.secret {
            return text.to_string();
        }
        text.bytes()
            .map(|b| if b == b'\n' { '\n' } else { '*' })
            .collect()
    }

    /// The origin of a byte range in this file. The range is clamped to the text and
    /// widened to whole characters: callers often ask for "one byte from here", which
    /// may be past the end of the file or the middle of a multi-byte character, and
    /// miette cannot show such a span.
    pub fn origin(&self, file: FileId, start: usize, end: usize) -> Origin {
        let text = &*self.text;
        let mut start = start.min(text.len());
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = end.clamp(start, text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        let (line, column) = self.line_column(start);
        Origin {
            file,
            start,
            len: end - start,
            line,
            column,
        }
    }
}

/// Every file read during a run, addressed by [`FileId`].
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, path: impl Into<PathBuf>, text: String) -> FileId {
        self.files.push(SourceFile::new(path.into(), text));
        FileId(self.files.len() as u32 - 1)
    }

    /// A file decrypted in memory: positions work as for any file, but rendered
    /// diagnostics show its text masked (see [`SourceFile::shown_text`]).
    pub fn add_secret(&mut self, path: impl Into<PathBuf>, text: String) -> FileId {
        let id = self.add(path, text);
        self.files[id.0 as usize].secret = true;
        id
    }

    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn path(&self, id: FileId) -> &Path {
        &self.get(id).path
    }

    /// `file:line` for provenance annotations.
    pub fn describe(&self, origin: Origin) -> String {
        format!("{}:{}", self.path(origin.file).display(), origin.line)
    }

    /// `file:line:column` for diagnostics in plain text and JSON.
    pub fn describe_precisely(&self, origin: Origin) -> String {
        format!(
            "{}:{}:{}",
            self.path(origin.file).display(),
            origin.line,
            origin.column
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_line_columns_round_trip_with_multibyte_text() {
        let mut map = SourceMap::new();
        let id = map.add("a.yaml", "a: 1\nnäme: x\n".to_string());
        let file = map.get(id);
        let offset = file.byte_offset(2, 6);
        assert_eq!(&file.text[offset..offset + 1], "x");
        assert_eq!(file.line_column(offset), (2, 7));
        assert_eq!(
            map.describe(file.origin(id, offset, offset + 1)),
            "a.yaml:2"
        );
    }

    proptest::proptest! {
        /// The indexed conversions agree with walking each line from its start.
        #[test]
        fn positions_agree_with_a_walk_from_the_line_start(text in "(a|é|🦀|\n| ){0,300}", line in 1usize..12, column in 0usize..80) {
            let mut map = SourceMap::new();
            let id = map.add("p.yaml", text.clone());
            let file = map.get(id);
            let starts: Vec<usize> = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
            let line_start = starts[(line - 1).min(starts.len() - 1)];
            let walked = text[line_start..].char_indices().nth(column).map_or(text.len(), |(i, _)| line_start + i);
            proptest::prop_assert_eq!(file.byte_offset(line, column), walked);
            let (found_line, found_column) = file.line_column(walked);
            let line_index = starts.partition_point(|&s| s <= walked) - 1;
            let expected_column = text[starts[line_index]..walked].chars().count() + 1;
            proptest::prop_assert_eq!((found_line, found_column), (line_index as u32 + 1, expected_column as u32));
        }
    }

    #[test]
    fn a_secret_file_is_shown_masked_with_the_same_offsets() {
        let mut map = SourceMap::new();
        let id = map.add_secret("s.age.yaml", "a: pässword\nb: 2\n".to_string());
        let file = map.get(id);
        let shown = file.shown_text();
        assert_eq!(shown.len(), file.text.len());
        assert!(!shown.contains("ss"), "{shown}");
        assert_eq!(shown.matches('\n').count(), 2);
        assert!(!format!("{map:?}").contains("ss"));
        let plain = map.add("p.yaml", "a: 1\n".to_string());
        assert_eq!(map.get(plain).shown_text(), "a: 1\n");
    }

    #[test]
    fn origins_stay_inside_the_text_and_on_character_boundaries() {
        // Found by tests/loader_fuzz.rs: a YAML error "one byte" past the end of a file,
        // or on the first byte of a byte order mark, made a span miette cannot show.
        let mut map = SourceMap::new();
        let id = map.add("a.yaml", "?".to_string());
        let past_the_end = map.get(id).origin(id, 1, 2);
        assert_eq!((past_the_end.start, past_the_end.len), (1, 0));
        let id = map.add("b.yaml", "&a \u{feff}".to_string());
        let inside_a_character = map.get(id).origin(id, 3, 4);
        assert_eq!((inside_a_character.start, inside_a_character.len), (3, 3));
        let start_inside = map.get(id).origin(id, 4, 5);
        assert_eq!((start_inside.start, start_inside.len), (3, 3));
        assert_eq!((start_inside.line, start_inside.column), (1, 4));
    }
}
