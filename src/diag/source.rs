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

impl SourceFile {
    fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            path,
            text: text.into(),
            line_starts,
            secret: false,
        }
    }

    /// Byte offset of a (1-based line, 0-based character column) position, clamped to the
    /// file. YAML parsers count characters; miette wants bytes.
    pub fn byte_offset(&self, line: usize, char_column: usize) -> usize {
        let line_index = line.saturating_sub(1).min(self.line_starts.len() - 1);
        let line_start = self.line_starts[line_index];
        let rest = &self.text[line_start..];
        rest.char_indices()
            .nth(char_column)
            .map(|(i, _)| line_start + i)
            .unwrap_or(self.text.len())
    }

    /// 1-based line and column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (u32, u32) {
        let line_index = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let line_start = self.line_starts[line_index];
        let column = self.text[line_start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
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
