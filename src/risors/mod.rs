//! RISORS-format datasets, read the way the official loader does: read by
//! `rsam eval` and by training, written by `rsam synth`.
//!
//! Layout: `JPEGImages/NAME.jpg`, `Annotations/NAME.json` and split lists
//! `RISORS_{train,val,test}.txt` (one NAME per line) at the dataset root. An
//! annotation file is SA-1B style: `{"image": {...}, "annotations": [{"id",
//! "name" (category), "description" (the referring sentence), "area",
//! "segmentation": {"size": [h, w], "counts": RLE}, ...}]}`.
//!
//! - `layout`: where the files are ([`IMAGE_DIR`], [`ANNOTATION_DIR`],
//!   [`split_list_file`]).
//! - [`Dataset`]: a dataset folder and one split's image names.
//! - `annotation`: one annotation as a [`Sample`], or why it is left out.
//! - [`Skipped`]: what was left out of the scores, and why.
//! - [`RisorsError`]: a dataset that cannot be read.

mod annotation;
mod dataset;
mod error;
mod layout;
mod skipped;

pub use annotation::{AnnotationId, Sample};
pub use dataset::{Dataset, ImageSamples};
pub use error::RisorsError;
pub use layout::{split_list_file, ANNOTATION_DIR, IMAGE_DIR};
pub use skipped::Skipped;
