//! Every command's flags, one file per command. Library modules that take
//! a command's options (training, evaluation, synthesis) read them from here;
//! nothing here depends on what runs them.

mod bench;
mod convert;
mod device;
mod eval;
mod geo;
mod inspect;
mod segment;
mod serve;
mod synth;
mod train;
mod window;

pub use bench::BenchArgs;
pub use convert::ConvertArgs;
pub use device::DeviceArgs;
pub use eval::EvalArgs;
pub use geo::{
    Coords, CoordsArgs, GeoArgs, GeoCommand, GeoOutputArgs, InfoArgs, MaskTiffArgs, RasterArgs, StretchArgs,
    VectorizeArgs,
};
pub use inspect::InspectArgs;
pub use segment::SegmentArgs;
pub use serve::{LogFormat, ServeArgs};
pub use synth::{SynthArgs, DEFAULT_SPLITS};
pub use train::TrainArgs;
pub use window::WindowArgs;
