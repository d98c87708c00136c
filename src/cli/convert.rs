//! `rsam convert`: an official training checkpoint to a model directory.

use anyhow::{bail, Context};

use super::args::ConvertArgs;
use super::output::print_json;
use crate::RsamConfig;

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let storage = crate::predictor::parse_dtype(&args.dtype)?;
    let config = match (&args.config, &args.preset) {
        (Some(path), _) => RsamConfig::from_file(path)?,
        (None, Some(name)) => RsamConfig::preset(name)
            .with_context(|| format!("unknown preset {name:?}: expected base-plus-800 or base-plus-1024"))?,
        (None, None) => bail!("give --config or --preset"),
    };
    let report = crate::convert::convert_checkpoint(&args.checkpoint, &config, &args.tokenizer, &args.out, storage)?;
    print_json(&serde_json::json!({
        "out": args.out,
        "parameters": report.num_parameters,
        "ignored_keys": report.ignored_keys,
        "dtype": args.dtype,
    }))
}
