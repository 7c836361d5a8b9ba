//! Rendering problems through miette: a graphical report on a terminal, the same layout
//! without colour elsewhere (CI logs, tests).

use std::fmt::{self, Write as _};

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError,
    MietteSpanContents, SourceCode, SourceSpan, SpanContents,
};

use super::printable::{printable, printable_same_length};
use super::{Origin, Problem, Problems, Severity, SourceFile, SourceMap};

/// The most problems one report renders; the rest are counted (`validate --json`
/// lists them all). Thousands of findings say the same thing, and each quotes a line.
pub const MAX_RENDERED: usize = 200;

/// How much of a long line a diagnostic quotes on each side of its span.
const WINDOW: usize = 120;

/// One problem with the lines it quotes, as miette wants it.
struct ProblemDiagnostic<'a> {
    problem: &'a Problem,
    source: Option<Excerpt>,
    /// The label's span, clamped to what the excerpt shows.
    span: Option<(usize, usize)>,
}

/// The lines around a problem's span, read from the source map's line index. miette's
/// own sources scan a file from its start for every diagnostic, and quote a line
/// whole: a file of many problems, or one long line, took minutes and printed
/// megabytes. Long lines are cut to a window around the span; the text is shown
/// masked (secret files) and without terminal escapes.
struct Excerpt {
    name: String,
    /// The quoted text, its offset in the file, and its first line (0-based).
    text: String,
    offset: usize,
    line: usize,
    /// Characters from the start of `line` to `offset`.
    column: usize,
}

impl Excerpt {
    /// The excerpt for `origin` and the span to underline in it.
    fn new(file: &SourceFile, origin: Origin) -> (Self, (usize, usize)) {
        let text = &*file.text;
        let line = origin.line.saturating_sub(1) as usize;
        let (first_start, _) = file.line_bounds(line.saturating_sub(1));
        let (line_start, line_end) = file.line_bounds(line);
        let (_, last_end) = file.line_bounds(line + 1);
        // A span is underlined on its first line only, and at most a window wide.
        let start = origin.start.clamp(line_start, line_end);
        let end = (start + origin.len.min(WINDOW)).min(line_end.max(start));
        let long = last_end - first_start > 4 * WINDOW;
        let (from, to, first_line) = if long {
            (
                floor_boundary(text, start.saturating_sub(WINDOW).max(line_start)),
                ceil_boundary(text, (end + WINDOW).min(line_end)),
                line,
            )
        } else {
            (first_start, last_end, line.saturating_sub(1))
        };
        let excerpt = Excerpt {
            name: printable(&file.path.display().to_string()).into_owned(),
            text: printable_same_length(&file.shown_range(from, to)).into_owned(),
            offset: from,
            line: first_line,
            column: if from >= line_start {
                text[line_start..from].chars().count()
            } else {
                0
            },
        };
        (excerpt, (start, end.saturating_sub(start)))
    }
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        _context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let end = self.offset + self.text.len();
        if span.offset() < self.offset || span.offset() > end {
            return Err(MietteError::OutOfBounds);
        }
        // The header (no context) names the span's own line and column.
        let (data, offset, line, column) = if context_lines_before == 0 {
            let at = span.offset() - self.offset;
            let before = &self.text[..at];
            let newlines = before.matches('\n').count();
            let column = match before.rfind('\n') {
                Some(i) => before[i + 1..].chars().count(),
                None => self.column + before.chars().count(),
            };
            (
                &self.text[at..],
                span.offset(),
                self.line + newlines,
                column,
            )
        } else {
            (self.text.as_str(), self.offset, self.line, self.column)
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            data.as_bytes(),
            (offset, data.len()).into(),
            line,
            column,
            self.line + self.text.matches('\n').count(),
        )))
    }
}

impl fmt::Debug for ProblemDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&printable(&self.problem.message))
    }
}

impl fmt::Display for ProblemDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&printable(&self.problem.message))
    }
}

impl std::error::Error for ProblemDiagnostic<'_> {}

impl Diagnostic for ProblemDiagnostic<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.problem.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.problem.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem
            .help
            .as_deref()
            .map(|h| Box::new(printable(h)) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let (start, len) = self.span?;
        // An empty span renders as a caret at one point; keep at least one character.
        let len = len.max(1);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            self.problem
                .label
                .as_deref()
                .map(|label| printable(label).into_owned()),
            start,
            len,
        ))))
    }
}

/// Problems rendered as text, one miette report each, in file order.
pub fn render_problems(problems: &Problems, sources: &SourceMap, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    let sorted = problems.sorted();
    for problem in sorted.iter().take(MAX_RENDERED) {
        let (source, span) = match problem.origin {
            Some(origin) => {
                let (excerpt, span) = Excerpt::new(sources.get(origin.file), origin);
                (Some(excerpt), Some(span))
            }
            None => (None, None),
        };
        let diagnostic = ProblemDiagnostic {
            problem,
            source,
            span,
        };
        if handler.render_report(&mut out, &diagnostic).is_err() {
            out.push_str(&printable(&problem.message));
        }
        out.push('\n');
    }
    if sorted.len() > MAX_RENDERED {
        let _ = writeln!(
            out,
            "… and {} more problems not shown (`infraflux validate --json` lists them all)\n",
            sorted.len() - MAX_RENDERED
        );
    }
    out
}

/// A summary error for the binary: "2 errors, 1 warning in the configuration".
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{summary}")]
pub struct ProblemsReport {
    pub summary: String,
}

impl ProblemsReport {
    pub fn new(problems: &Problems, what: &str) -> Self {
        let errors = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let warnings = problems.len() - errors;
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        ProblemsReport {
            summary: format!(
                "{} and {} in {what}",
                plural(errors, "error"),
                plural(warnings, "warning")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_problem(text: &str, start: usize, len: usize, message: &str) -> String {
        let mut sources = SourceMap::new();
        let id = sources.add("f.yaml", text.to_string());
        let origin = sources.get(id).origin(id, start, start + len);
        let mut problems = Problems::new();
        problems.push(Problem::error("x", message).at(origin).label("here"));
        render_problems(&problems, &sources, false)
    }

    #[test]
    fn a_long_line_is_quoted_around_the_span_only() {
        let text = format!(
            "a: 1\nb: [{}bad, {}]\nc: 2\n",
            "1, ".repeat(50_000),
            "2, ".repeat(50_000)
        );
        let start = text.find("bad").unwrap();
        let rendered = one_problem(&text, start, 3, "malformed");
        assert!(rendered.len() < 2_000, "{} bytes", rendered.len());
        assert!(rendered.contains("[f.yaml:2:150005]"), "{rendered}");
        assert!(rendered.contains("bad"), "{rendered}");
    }

    #[test]
    fn short_lines_are_quoted_with_their_neighbours() {
        let rendered = one_problem("a: 1\nb: bad\nc: 2\n", 8, 3, "malformed");
        assert!(rendered.contains("[f.yaml:2:4]"), "{rendered}");
        for line in ["a: 1", "b: bad", "c: 2"] {
            assert!(rendered.contains(line), "{rendered}");
        }
    }

    #[test]
    fn terminal_escapes_never_reach_the_output() {
        let text = "a: \"\u{1b}]0;owned\u{7}\"\nb: \u{202e}x\n";
        let rendered = one_problem(text, 3, 13, "bad value `\u{1b}[2J\u{9b}`");
        assert!(
            !rendered
                .chars()
                .any(|c| (c.is_control() && c != '\n') || c == '\u{202e}'),
            "{rendered:?}"
        );
        assert!(
            rendered.contains("bad value `\\u{1b}[2J\\u{9b}`"),
            "{rendered}"
        );
    }

    #[test]
    fn a_flood_of_problems_is_cut_with_a_count() {
        let mut sources = SourceMap::new();
        let id = sources.add("f.yaml", "a: 1\n".repeat(1_000));
        let mut problems = Problems::new();
        for line in 0..1_000 {
            let origin = sources.get(id).origin(id, line * 5, line * 5 + 1);
            problems.push(Problem::error("x", format!("problem {line}")).at(origin));
        }
        let rendered = render_problems(&problems, &sources, false);
        assert!(rendered.contains("problem 199"), "{rendered}");
        assert!(!rendered.contains("problem 200"));
        assert!(rendered.contains("… and 800 more problems not shown"));
    }
}
