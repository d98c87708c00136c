//! `rsam inspect`: a model directory's kind, config, parameter counts and
//! ignored keys.

use super::args::InspectArgs;
use super::output::print_line;
use crate::loaded_model::LoadedModel;
use crate::LoadOptions;

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let model_dir = args.model.unwrap_or_else(crate::predictor::default_model_dir);
    let model = LoadedModel::load(&model_dir, &LoadOptions::default())?;
    let report = model.load_report();
    let mut summary = serde_json::json!({
        "model": model_dir,
        "kind": model.kind().as_str(),
        "prompts": model.kind().prompts(),
        "weights": model.weights_path(),
        "config": model.config_json(),
        "parameters": report.num_parameters,
        "parameters_by_component": report.parameters_by_component,
        "ignored_keys": report.ignored_keys,
    });
    if let LoadedModel::Rsam(rsam) = &model {
        summary["tokenizer_vocab_size"] = rsam.tokenizer.vocab_size().into();
    }
    print_line(&serde_json::to_string_pretty(&summary)?)
}
