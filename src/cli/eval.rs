//! `rsam eval`: scores a model (or saved predictions), writes the requested
//! report files and prints the report as one JSON line.

use super::args::EvalArgs;
use super::output::{print_line, write_file};
use crate::eval::progress::Progress;
use crate::eval::{evaluate, report};
use crate::risors::Dataset;

/// `rsam eval`: evaluates, writes the requested files and prints the report
/// as one JSON line (the last line on stdout).
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    // Check the flags and the split list before loading a model.
    let (_, root) = args.mode()?;
    let images = Dataset::open(root, &args.split)?.names().len();
    let images = args.limit.map_or(images, |n| n.min(images));
    let started = std::time::Instant::now();
    let outcome = evaluate(&args, &Progress::new(images as u64))?;
    let report = &outcome.report;
    if let Some(path) = &args.save_predictions {
        crate::eval::predictions::write(path, &outcome.predictions)?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report)?;
        write_file(path, (text + "\n").as_bytes())?;
    }
    if let Some(path) = &args.markdown {
        write_file(path, report::markdown(report, &title(&args)).as_bytes())?;
    }
    eprintln!(
        "scored {} samples from {} images in {:.1} s ({} skipped)",
        report.count,
        report.images,
        started.elapsed().as_secs_f64(),
        report.skipped.len()
    );
    print_line(&serde_json::to_string(report)?)
}

/// What was evaluated, for the Markdown title.
fn title(args: &EvalArgs) -> String {
    let what = args
        .model
        .as_ref()
        .or(args.predictions.as_ref())
        .map(|p| p.display().to_string());
    format!("{} on split `{}`", what.unwrap_or_default(), args.split)
}
