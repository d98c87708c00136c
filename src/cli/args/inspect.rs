//! `rsam inspect` flags.

use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Model directory; default: the bundled weights/rsam-demo.
    #[arg(long, env = "RSAM_MODEL")]
    pub model: Option<PathBuf>,
}
