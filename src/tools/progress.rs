//! Progress of a long cache tool run: an indicatif bar on a terminal, plain lines (every
//! 10% and at the end) when stderr is a pipe or a file, so logs stay readable.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress over `total` items.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: u64,
    done: u64,
    next_line: u64,
}

impl Progress {
    /// Starts reporting `what` over `total` items.
    pub fn new(what: &'static str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("=> "));
            bar.set_message(what);
            bar
        });
        Self { bar, what, total, done: 0, next_line: 0 }
    }

    /// One more item done.
    pub fn inc(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.done >= self.next_line || self.done == self.total => {
                eprintln!("{}: {}/{}", self.what, self.done, self.total);
                self.next_line = self.done + (self.total / 10).max(1);
            }
            None => {}
        }
    }

    /// Prints a line without tearing the bar.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => println!("{line}"),
        }
    }

    /// Ends the bar.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
