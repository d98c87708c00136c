//! `rsam inspect`: a model directory's config, parameter counts and ignored keys.

use super::args::InspectArgs;
use super::output::print_line;
use crate::{LoadOptions, Rsam};

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let model_dir = args.model.unwrap_or_else(crate::predictor::default_model_dir);
    let model = Rsam::load(&model_dir, &LoadOptions::default())?;
    let report = &model.load_report;
    let summary = serde_json::json!({
        "model": model_dir,
        "weights": model.weights_path,
        "config": model.config,
        "parameters": report.num_parameters,
        "parameters_by_component": report.parameters_by_component,
        "ignored_keys": report.ignored_keys,
        "tokenizer_vocab_size": model.tokenizer.vocab_size(),
    });
    print_line(&serde_json::to_string_pretty(&summary)?)
}
