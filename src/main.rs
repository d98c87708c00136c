//! The `rsam` binary: process-wide settings (allocator, thread counts),
//! then the command line of [`rsam::cli`].

use std::process::ExitCode;

use clap::Parser;
use rsam::cli::Cli;

// Inference allocates and frees many large tensors; mimalloc keeps freed
// pages for reuse instead of returning them to the OS and faulting them in
// again (a measurable share of CPU time with the system allocator).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rsam::process::keep_freed_memory();
    rsam::process::pin_thread_count();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            // One line: the reason, without clap's usage block and tips.
            let text = e.to_string();
            let reason: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
                .collect();
            eprintln!("{}", reason.join(" ").trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    match rsam::cli::run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", rsam::cli::format_error(&e));
            ExitCode::FAILURE
        }
    }
}
