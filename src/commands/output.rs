//! Where command output goes: data to stdout, problems and progress to stderr, colour
//! only on a terminal (or when asked).

use std::io::IsTerminal;

use crate::cli::ColorChoice;
use crate::config::Configuration;
use crate::diag::{Problems, render_problems};

/// Colour when asked, or on a terminal unless `NO_COLOR` is set.
pub fn use_color(choice: ColorChoice, is_tty: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => is_tty && std::env::var_os("NO_COLOR").is_none(),
    }
}

pub struct Output {
    pub color_stderr: bool,
    pub color_stdout: bool,
}

impl Output {
    pub fn new(choice: ColorChoice) -> Self {
        Output {
            color_stderr: use_color(choice, std::io::stderr().is_terminal()),
            color_stdout: use_color(choice, std::io::stdout().is_terminal()),
        }
    }

    /// Print problems (errors and warnings) to stderr.
    pub fn problems(&self, problems: &Problems, config: &Configuration) {
        if !problems.is_empty() {
            eprint!(
                "{}",
                render_problems(problems, config.sources(), self.color_stderr)
            );
        }
    }
}

/// ▸ ✔ ✗ for a person at a terminal; ASCII for logs and pipes.
pub fn fancy_symbols(global: &crate::cli::GlobalArgs, context: &crate::operation::Context) -> bool {
    context.color
        || (context.handle_signals && use_color(global.color, std::io::stderr().is_terminal()))
}
