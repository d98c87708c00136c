//! The generator's random streams: every image draws from its own stream
//! (the seed, stream `i`), so a dataset is the same whatever the number of
//! threads, and any image can be regenerated alone.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator's random stream type.
pub type SynthRng = ChaCha8Rng;

/// The random stream of image `index`.
pub fn image_rng(seed: u64, index: u64) -> SynthRng {
    let mut rng = SynthRng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}
