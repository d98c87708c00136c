//! `rsam eval`. Placeholder until the evaluator lands.

/// `rsam eval` flags.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {}

pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("rsam eval is not built yet")
}
