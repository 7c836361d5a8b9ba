//! Errors of the stages as diagnostics for the user: the message with its causes on one
//! line, and a `help:` that says what to do.

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct OperationDiagnostic {
    message: String,
    #[help]
    help: Option<String>,
}

/// An error with its causes on one line, and what to do about it.
pub fn diagnostic(error: &dyn std::error::Error, help: Option<String>) -> miette::Report {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    diagnostic_text(message, help)
}

pub fn diagnostic_text(message: String, help: Option<String>) -> miette::Report {
    OperationDiagnostic { message, help }.into()
}
