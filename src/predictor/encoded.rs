//! What the encoder gives one image, and what it takes.

use crate::models::image_encoder::ImageEmbeddings;
use crate::preprocess::Rgb8Image;

/// An image ready for the encoder: its pixels resized to the model's S x S
/// input, and the size of the original that prompts refer to. Resizing
/// first keeps what waits in a queue at S x S x 3 bytes whatever the upload.
#[derive(Debug, Clone)]
pub struct ModelImage {
    pub pixels: Rgb8Image,
    pub width: u32,
    pub height: u32,
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
