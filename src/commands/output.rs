//! Where command output goes: data to stdout, problems and progress to stderr, colour
//! only on a terminal (or when asked).

use std::io::IsTerminal;

use crate::cli::ColorChoice;
use crate::config::Configuration;
use crate::diag::{Problems, render_problems};

pub struct Output {
    pub color_stderr: bool,
    pub color_stdout: bool,
}

impl Output {
    pub fn new(choice: ColorChoice) -> Self {
        let decide = |is_tty: bool| match choice {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => is_tty && std::env::var_os("NO_COLOR").is_none(),
        };
        Output {
            color_stderr: decide(std::io::stderr().is_terminal()),
            color_stdout: decide(std::io::stdout().is_terminal()),
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
