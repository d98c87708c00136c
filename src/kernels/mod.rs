//! Inference-only CPU kernels that Candle lacks, each in its own file:
//!
//! - [`attention`]: fused scaled dot-product attention (tiled AVX-512 for
//!   head sizes up to 64, `gemm` blocks otherwise);
//! - [`linear_few_rows`]: linear layers on a few rows (BERT on a sentence);
//! - [`linear_gemm`]: linear layers on many rows, one `gemm` from the bias;
//! - [`max_pool`]: Hiera's query pooling in the channels-last layout;
//! - [`gelu`]: exact GELU with a vectorised erf;
//! - [`softmax`]: the row softmax the attention uses;
//! - [`bf16`]: matrix products and attention with bf16 operands and f32
//!   accumulation (AVX512-BF16) for `--dtype bf16` on the CPU.
//!
//! Each runs on the CPU without gradients; `nn.rs` decides when, and
//! [`choice`] holds the switches that turn them off.

pub mod attention;
pub mod bf16;
pub mod choice;
mod cpu;
pub mod gelu;
pub mod linear_few_rows;
pub mod linear_gemm;
pub mod max_pool;
pub mod softmax;

pub use attention::fused_attention;
pub use gelu::gelu_erf_slice;
pub use linear_few_rows::{linear_few_rows, FEW_ROWS};
pub use linear_gemm::linear_with_bias;
pub use max_pool::max_pool_nhwc;
