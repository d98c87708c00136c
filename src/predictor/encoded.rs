//! What the encoder gives one image, and what it takes.

use crate::models::image_encoder::ImageEmbeddings;
use crate::preprocess::Rgb8Image;

/// An image ready for the encoder: resized to the model's S x S input, and
/// the size of the original that prompts refer to. Resizing first keeps
/// what waits in a queue at the model's size whatever the upload.
#[derive(Debug, Clone)]
pub struct ModelImage {
    pub pixels: ModelPixels,
    pub width: u32,
    pub height: u32,
}

/// The resized image, as each kind of model resizes it.
#[derive(Debug, Clone)]
pub enum ModelPixels {
    /// RSAM: 8-bit pixels resized to S x S with PIL's bilinear filter.
    Rgb8(Rgb8Image),
    /// SAM 2: the normalised 3 x S x S float input (`SAM2Transforms`, which
    /// resizes the float image with antialiasing).
    Normalized(Vec<f32>),
}

/// One encoded image: everything that does not depend on the prompt, and
/// the original size that prompts are checked against.
#[derive(Debug, Clone)]
pub struct EncodedImage {
    pub embeddings: ImageEmbeddings,
    pub width: u32,
    pub height: u32,
}

impl EncodedImage {
    /// Bytes held by the feature tensors (for cache accounting).
    pub fn nbytes(&self) -> usize {
        self.embeddings.nbytes()
    }
}
