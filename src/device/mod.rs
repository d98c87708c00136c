//! What running on a GPU asks of the code that the CPU forgives, made
//! checkable on the CPU: the operand layouts cuBLAS takes
//! ([`gemm_layout`]), the one door of the generic path's matrix products
//! ([`products`]), attention under a memory budget ([`attention_budget`]),
//! one read back to the host per decode ([`host_read`]), and the dtypes a
//! GPU has kernels for ([`capability`]).

pub mod attention_budget;
pub mod capability;
pub mod gemm_layout;
pub mod host_read;
pub mod products;
