//! Diagnostics: where a problem is (file, line, column), what is wrong, and how to fix it.
//!
//! Stages never print. They collect [`Problem`]s into a [`Problems`] list, which the binary
//! renders through miette at the edge. A problem points at an [`Origin`] (a span in one of
//! the files held by the [`SourceMap`]), so the model itself never carries spans: the
//! loader keeps them on the YAML tree and stages look them up by key path when they report.

mod printable;
mod render;
mod source;

pub use printable::{printable, printable_same_length};
pub use render::{ProblemsReport, render_problems};
pub use source::{FileId, Origin, SourceFile, SourceMap};

/// How bad a problem is. Errors stop the command; warnings are shown and let it go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One thing wrong with the user's input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    /// Stable identifier, e.g. `config::unknown-key`, for `--json` consumers and docs.
    pub code: &'static str,
    /// Terse summary: lower-case, no trailing period.
    pub message: String,
    /// Where it is; `None` for problems that belong to no file (e.g. a missing directory).
    #[serde(skip)]
    pub origin: Option<Origin>,
    /// Text attached to the highlighted span.
    pub label: Option<String>,
    /// What to do about it.
    pub help: Option<String>,
}

impl Problem {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            code,
            message: message.into(),
            origin: None,
            label: None,
            help: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(code, message)
        }
    }

    pub fn at(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn at_opt(mut self, origin: Option<Origin>) -> Self {
        self.origin = origin;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// A collection of problems, de-duplicated: the same problem found through several
/// (environment, cluster) pairs that share a layer is reported once.
#[derive(Debug, Clone, Default)]
pub struct Problems {
    items: Vec<Problem>,
    seen: std::collections::HashSet<Problem>,
}

impl Problems {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, problem: Problem) {
        if self.seen.insert(problem.clone()) {
            self.items.push(problem);
        }
    }

    pub fn extend(&mut self, other: Problems) {
        for problem in other.items {
            self.push(problem);
        }
    }

    /// Rewrite the text of every problem (messages, labels, help), e.g. to mask secrets
    /// a check quoted.
    pub fn map_text(&mut self, f: impl Fn(&str) -> String) {
        let items = std::mem::take(&mut self.items);
        self.seen.clear();
        for mut problem in items {
            problem.message = f(&problem.message);
            problem.label = problem.label.as_deref().map(&f);
            problem.help = problem.help.as_deref().map(&f);
            self.push(problem);
        }
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Problem> {
        self.items.iter()
    }

    /// Problems in file order (then line), errors and warnings interleaved as they appear,
    /// so a user fixing them top to bottom never jumps around.
    pub fn sorted(&self) -> Vec<&Problem> {
        let mut items: Vec<&Problem> = self.items.iter().collect();
        items.sort_by_key(|p| {
            (
                p.origin.map(|o| (o.file.0, o.start)),
                std::cmp::Reverse(p.severity),
            )
        });
        items
    }
}

impl IntoIterator for Problems {
    type Item = Problem;
    type IntoIter = std::vec::IntoIter<Problem>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// Closest candidate by edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_keys_only() {
        let keys = ["endpoint", "token", "nodes", "storage", "bridge"];
        assert_eq!(did_you_mean("endpiont", keys), Some("endpoint"));
        assert_eq!(did_you_mean("storge", keys), Some("storage"));
        assert_eq!(did_you_mean("kubernetes", keys), None);
    }

    #[test]
    fn duplicate_problems_are_kept_once() {
        let mut problems = Problems::new();
        problems.push(Problem::error("x", "same"));
        problems.push(Problem::error("x", "same"));
        problems.push(Problem::warning("x", "same"));
        assert_eq!(problems.len(), 2);
        assert!(problems.has_errors());
    }
}
