//! One progress bar per host on a terminal; plain lines otherwise (logs,
//! CI), where a bar would only be noise.

use std::{io::IsTerminal as _, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of all hosts.
pub struct Progress {
    multi: MultiProgress,
    plain: bool,
}

/// One host's bar (cheap to clone, usable from any thread).
#[derive(Clone)]
pub struct HostBar {
    bar: ProgressBar,
    name: String,
    plain: bool,
}

impl Progress {
    /// Bars on stderr if it is a terminal, plain lines if not.
    pub fn new() -> Self {
        let plain = !std::io::stderr().is_terminal();
        let target = if plain { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        Progress { multi: MultiProgress::with_draw_target(target), plain }
    }

    /// A bar for `name`, `width` wide for names.
    pub fn host(&self, name: &str, width: usize) -> HostBar {
        let style = ProgressStyle::with_template(&format!(
            "{{prefix:>{width}.bold}} {{spinner}} [{{bar:24.cyan/blue}}] {{pos:>4}}/{{len:<4}} {{wide_msg}}"
        ))
        .expect("valid template")
        .progress_chars("=> ");
        let bar = self.multi.add(ProgressBar::new(0).with_style(style).with_prefix(name.to_owned()));
        if !self.plain {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        HostBar { bar, name: name.to_owned(), plain: self.plain }
    }

    /// A line above the bars (or on stderr).
    pub fn note(&self, line: &str) {
        if self.plain {
            eprintln!("netlat-collect: {line}");
        } else {
            let _ = self.multi.println(format!("netlat-collect: {line}"));
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl HostBar {
    /// Enters a phase measured in `len` steps (0: unmeasured).
    pub fn phase(&self, msg: &str, len: u64) {
        self.bar.set_length(len);
        self.bar.set_position(0);
        self.bar.set_message(msg.to_owned());
        if self.plain {
            eprintln!("netlat-collect: {}: {msg}", self.name);
        }
    }

    /// Changes the phase's length.
    pub fn bar_len(&self, len: u64) {
        self.bar.set_length(len);
    }

    /// Progress within the phase; only the bar shows it.
    pub fn step(&self, pos: u64, msg: Option<&str>) {
        self.bar.set_position(pos);
        if let Some(m) = msg {
            self.bar.set_message(m.to_owned());
        }
    }

    /// A message worth keeping (printed in plain mode too).
    pub fn say(&self, msg: &str) {
        self.bar.set_message(msg.to_owned());
        if self.plain {
            eprintln!("netlat-collect: {}: {msg}", self.name);
        }
    }

    /// The host is done; the bar stays with its last word.
    pub fn done(&self, msg: &str) {
        self.bar.disable_steady_tick();
        self.bar.finish_with_message(msg.to_owned());
        if self.plain {
            eprintln!("netlat-collect: {}: {msg}", self.name);
        }
    }
}
