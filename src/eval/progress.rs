//! A progress bar with rate and ETA on a terminal, nothing otherwise (logs
//! and pipes get only the warnings and the final summary).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress over the images of a split, plus warnings that do not tear the
/// bar apart.
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `images` images, drawn only when stderr is a terminal.
    pub fn new(images: u64) -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(images);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg}{wide_bar} {pos}/{len} images  {per_sec}  elapsed {elapsed_precise}  ETA {eta_precise}",
            ) {
                bar.set_style(style);
            }
            bar
        } else {
            ProgressBar::hidden()
        };
        Self { bar }
    }

    /// No output at all (library use, tests).
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    pub fn inc(&self) {
        self.bar.inc(1);
    }

    /// Prints a warning line to stderr above the bar.
    pub fn warn(&self, message: &str) {
        self.bar.suspend(|| eprintln!("warning: {message}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
