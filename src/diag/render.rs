//! Rendering problems through miette: a graphical report on a terminal, the same layout
//! without colour elsewhere (CI logs, tests).

use std::fmt;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};

use super::{Problem, Problems, Severity, SourceMap};

/// One problem with its source file attached, as miette wants it.
struct ProblemDiagnostic<'a> {
    problem: &'a Problem,
    source: Option<NamedSource<String>>,
}

impl fmt::Debug for ProblemDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl fmt::Display for ProblemDiagnostic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
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
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let origin = self.problem.origin?;
        // An empty span renders as a caret at one point; keep at least one character.
        let len = origin.len.max(1);
        Some(Box::new(std::iter::once(LabeledSpan::new(
            self.problem.label.clone(),
            origin.start,
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
    for problem in problems.sorted() {
        let source = problem.origin.map(|origin| {
            let file = sources.get(origin.file);
            NamedSource::new(file.path.display().to_string(), file.shown_text())
                .with_language("yaml")
        });
        let diagnostic = ProblemDiagnostic { problem, source };
        if handler.render_report(&mut out, &diagnostic).is_err() {
            out.push_str(&problem.message);
        }
        out.push('\n');
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
