//! An encoded image as the server holds it: what the engine's encode
//! produces, the cache keeps and decode jobs read.

use std::time::Duration;

use crate::geo::Georef;
use crate::predictor::EncodedImage;

use super::on_worker::OnWorker;

/// An encoded image under its content id.
#[derive(Debug)]
pub struct CachedImage {
    /// Hex SHA-256 of the image file bytes.
    pub image_id: String,
    /// What the cache keys it by: the id, and for a raster rendered with
    /// other bands or another stretch, those too.
    pub key: String,
    /// Where the image lies on Earth (empty for a plain image).
    pub georef: Georef,
    /// The features, with the original size the prompts refer to (freed
    /// on a model worker: see [`super::on_worker`]).
    pub encoded: OnWorker<EncodedImage>,
    /// How long the encoding took (reported to the requests that waited).
    pub encode_time: Duration,
}

impl CachedImage {
    pub fn width(&self) -> u32 {
        self.encoded.width
    }

    pub fn height(&self) -> u32 {
        self.encoded.height
    }

    /// Bytes of feature tensors held (what the cache counts).
    pub fn nbytes(&self) -> usize {
        self.encoded.nbytes()
    }
}
