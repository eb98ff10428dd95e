//! Progress on long reads, sorts and passes (indicatif), on stderr and only when stderr
//! is a terminal: redirected or piped runs, and tests, print nothing extra.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A spinner with `message`, hidden unless stderr is a terminal.
pub fn spinner(message: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target());
    pb.set_style(ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"));
    pb.set_message(message.into());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A bar over `len` units of `unit` with `message`, hidden unless stderr is a terminal.
pub fn bar(message: impl Into<String>, len: u64, unit: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), target());
    let template = format!("{{msg}} {{wide_bar}} {{human_pos}}/{{human_len}} {unit} [{{elapsed}}<{{eta}}]");
    pb.set_style(ProgressStyle::with_template(&template).expect("valid template"));
    pb.set_message(message.into());
    pb
}

fn target() -> ProgressDrawTarget {
    if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}
