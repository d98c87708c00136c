//! The operand layouts that Candle's CUDA matrix product can hand to cuBLAS
//! (candle-core 0.11's `gemm_config`), checked on any device. The CPU
//! multiplies operands of any strides, so a layout that only cuBLAS rejects
//! (a row view of a batch, say) passes every CPU test and then fails every
//! call on a GPU; [`check`] lets the CPU see it.
//!
//! cuBLAS takes each operand's last two dimensions as a column-major
//! matrix, plain or transposed: one of the two innermost strides must be 1
//! and the other the matrix width (or either may be anything where that
//! dimension has one element). The batch dimensions, at most two, must
//! collapse to one batch stride.

use candle_core::Layout;

/// A pair of operand layouts that cuBLAS cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a matrix product of {lhs_dims:?} (strides {lhs_strides:?}) by {rhs_dims:?} (strides {rhs_strides:?}) \
     has a layout that CUDA's cuBLAS cannot take ({problem})"
)]
pub struct GemmLayoutError {
    pub lhs_dims: Vec<usize>,
    pub lhs_strides: Vec<usize>,
    pub rhs_dims: Vec<usize>,
    pub rhs_strides: Vec<usize>,
    pub problem: &'static str,
}

/// Whether `lhs x rhs` (shapes ... x m x k and ... x k x n, as
/// `Tensor::matmul` takes them) has operand layouts cuBLAS accepts. Shape
/// errors are left to the product itself.
pub fn check(lhs: &Layout, rhs: &Layout) -> Result<(), GemmLayoutError> {
    let (a, b) = (lhs.dims(), rhs.dims());
    let rank = a.len();
    if rank < 2 || b.len() != rank {
        return Ok(());
    }
    let (m, k, n) = (a[rank - 2], a[rank - 1], b[rank - 1]);
    if m == 0 || n == 0 || k == 0 || a[..rank - 2].contains(&0) {
        return Ok(());
    }
    let error = |problem| GemmLayoutError {
        lhs_dims: a.to_vec(),
        lhs_strides: lhs.stride().to_vec(),
        rhs_dims: b.to_vec(),
        rhs_strides: rhs.stride().to_vec(),
        problem,
    };
    let (ls, rs) = (lhs.stride(), rhs.stride());
    if !matrix_fits(rs[rank - 1], rs[rank - 2], k, n) {
        return Err(error("the right operand's matrix strides"));
    }
    if !matrix_fits(ls[rank - 1], ls[rank - 2], m, k) {
        return Err(error("the left operand's matrix strides"));
    }
    if !batch_fits(&ls[..rank - 2], &a[..rank - 2]) {
        return Err(error("the left operand's batch strides"));
    }
    if !batch_fits(&rs[..rank - 2], &b[..rank - 2]) {
        return Err(error("the right operand's batch strides"));
    }
    Ok(())
}

/// A `rows x cols` matrix with strides `(row_stride, col_stride)`, read
/// row-major (col stride 1, row stride `cols`) or transposed (row stride 1,
/// col stride `rows`); a dimension of one element takes any stride.
fn matrix_fits(col_stride: usize, row_stride: usize, rows: usize, cols: usize) -> bool {
    let row_major = (col_stride == 1 || cols == 1) && (row_stride == cols || rows == 1);
    let transposed = (col_stride == rows || cols == 1) && (row_stride == 1 || rows == 1);
    row_major || transposed
}

/// The batch dimensions (at most two) collapse to one stride.
fn batch_fits(strides: &[usize], dims: &[usize]) -> bool {
    match (strides, dims) {
        ([], _) | ([_], _) => true,
        ([outer, inner], [_, d1]) => *outer == inner * d1 || dims[0] == 1 || *d1 == 1,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn layouts(a: &Tensor, b: &Tensor) -> Result<(), GemmLayoutError> {
        check(a.layout(), b.layout())
    }

    /// The decoder's per-token rows: `hs.narrow(1, i, 1).squeeze(1)` of a
    /// B x N x d batch is B x d with rows N*d apart. cuBLAS takes it for one
    /// prompt and rejects it for two, as the review of the CUDA path found.
    #[test]
    fn row_views_of_a_batch_are_rejected_from_two_rows() {
        let w = Tensor::zeros((8, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
        for (b, ok) in [(1usize, true), (2, false), (5, false)] {
            let hs = Tensor::zeros((b, 7, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
            let row = hs.narrow(1, 2, 1).unwrap().squeeze(1).unwrap();
            let result = layouts(&row, &w.t().unwrap());
            assert_eq!(result.is_ok(), ok, "batch {b}: {result:?}");
            if let Err(e) = result {
                assert_eq!(e.problem, "the left operand's matrix strides");
                assert!(e.to_string().contains("cuBLAS"), "{e}");
            }
            assert!(layouts(&row.contiguous().unwrap(), &w.t().unwrap()).is_ok());
        }
    }

    #[test]
    fn plain_transposed_and_broadcast_operands_are_accepted() {
        let dev = Device::Cpu;
        let q = Tensor::zeros((2, 3, 10, 4), candle_core::DType::F32, &dev).unwrap();
        let k = Tensor::zeros((2, 3, 12, 4), candle_core::DType::F32, &dev).unwrap();
        // q k^T with k transposed in place, and with a contiguous copy.
        assert!(layouts(&q, &k.transpose(2, 3).unwrap()).is_ok());
        assert!(layouts(&q, &k.transpose(2, 3).unwrap().contiguous().unwrap()).is_ok());
        // A matrix broadcast over the batch (stride 0) is one batch stride.
        let w = Tensor::zeros((4, 5), candle_core::DType::F32, &dev).unwrap();
        let x = Tensor::zeros((6, 10, 4), candle_core::DType::F32, &dev).unwrap();
        assert!(layouts(&x, &w.broadcast_left(6).unwrap()).is_ok());
    }

    #[test]
    fn heads_that_do_not_merge_into_one_batch_stride_are_rejected() {
        let dev = Device::Cpu;
        // B x L x H x D viewed as B x H x L x D: the two batch strides do
        // not collapse, and the matrix rows are H*D apart.
        let x = Tensor::zeros((2, 10, 3, 4), candle_core::DType::F32, &dev).unwrap();
        let heads = x.transpose(1, 2).unwrap();
        let k = Tensor::zeros((2, 3, 4, 10), candle_core::DType::F32, &dev).unwrap();
        assert!(layouts(&heads, &k).is_err());
        assert!(layouts(&heads.contiguous().unwrap(), &k).is_ok());
        // Five dimensions: cuBLAS batches at most two.
        let a = Tensor::zeros((2, 2, 2, 3, 4), candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::zeros((2, 2, 2, 4, 3), candle_core::DType::F32, &dev).unwrap();
        assert_eq!(layouts(&a, &b).unwrap_err().problem, "the left operand's batch strides");
    }
}
