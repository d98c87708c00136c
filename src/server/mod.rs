//! HTTP service (`rsam serve`). Placeholder until the service lands.

/// `rsam serve` flags.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {}

pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("rsam serve is not built yet")
}
