//! Attention from Candle's generic operations (on CUDA, and on the CPU
//! without rsam's fused kernel) materialises the B x H x Lq x Lk score
//! matrix. For the TWGM's image self-attention that is 8 x (S/16)^4
//! scores per sentence: ~200 MB in f32 at 800 px, ~512 MB at 1024, and a
//! request's sentences are one batch, so 64 of them at 1024 px would ask for
//! 32 GB at once. [`blocks`] cuts the work into blocks of whole batch items,
//! then whole heads, then query rows, each block's scores within a byte
//! budget; every query row sees all its keys, so the result is the same.

use candle_core::{Result, Tensor};

/// Bytes of scores one block may hold. Its softmax and the masked copy
/// at most triple that at the peak.
pub const SCORE_BUDGET_BYTES: usize = 256 << 20;

/// A block of the attention: this many batch items, heads and query rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocks {
    pub batch: usize,
    pub heads: usize,
    pub queries: usize,
}

/// The largest blocks of a `b x h x lq x lk` score matrix of `elem_bytes`
/// values within `budget` bytes: whole batch items while a whole item fits,
/// then whole heads, then query rows (at least one row).
pub fn blocks((b, h, lq, lk): (usize, usize, usize, usize), elem_bytes: usize, budget: usize) -> Blocks {
    let rows = (budget / (lk * elem_bytes).max(1)).max(1);
    if h * lq <= rows {
        Blocks {
            batch: (rows / (h * lq).max(1)).clamp(1, b.max(1)),
            heads: h,
            queries: lq,
        }
    } else if lq <= rows {
        Blocks {
            batch: 1,
            heads: (rows / lq.max(1)).clamp(1, h),
            queries: lq,
        }
    } else {
        Blocks {
            batch: 1,
            heads: 1,
            queries: rows,
        }
    }
}

/// Runs `attend(q, k, v, mask)` block by block and joins the results.
/// `q`: B x H x Lq x D, `k` / `v`: B x H x Lk x D, `mask`: B x 1 x 1 x Lk
/// (or 1 x 1 x 1 x Lk). `attend` gets each block's queries with all their
/// keys and values.
pub fn in_blocks(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    blocks: Blocks,
    attend: impl Fn(&Tensor, &Tensor, &Tensor, Option<&Tensor>) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, h, lq, _) = q.dims4()?;
    if blocks.batch >= b && blocks.heads >= h && blocks.queries >= lq {
        return attend(q, k, v, mask);
    }
    let mut per_batch = Vec::new();
    for b0 in (0..b).step_by(blocks.batch) {
        let nb = blocks.batch.min(b - b0);
        let mask = mask.map(|m| narrow_batch(m, b0, nb)).transpose()?;
        let mut per_head = Vec::new();
        for h0 in (0..h).step_by(blocks.heads) {
            let nh = blocks.heads.min(h - h0);
            let part = |t: &Tensor| t.narrow(0, b0, nb)?.narrow(1, h0, nh);
            // Keys and values are made contiguous once for all query blocks.
            let (k, v) = (part(k)?.contiguous()?, part(v)?.contiguous()?);
            let q = part(q)?;
            let mut per_query = Vec::new();
            for q0 in (0..lq).step_by(blocks.queries) {
                let nq = blocks.queries.min(lq - q0);
                per_query.push(attend(&q.narrow(2, q0, nq)?, &k, &v, mask.as_ref())?);
            }
            per_head.push(Tensor::cat(&per_query, 2)?);
        }
        per_batch.push(Tensor::cat(&per_head, 1)?);
    }
    Tensor::cat(&per_batch, 0)
}

/// A mask's rows for batch items `b0..b0 + n` (a mask of one row serves all).
fn narrow_batch(mask: &Tensor, b0: usize, n: usize) -> Result<Tensor> {
    if mask.dim(0)? == 1 {
        Ok(mask.clone())
    } else {
        mask.narrow(0, b0, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_keep_whole_items_then_heads_then_rows_within_the_budget() {
        let mib = 1 << 20;
        // The TWGM at 800 px: 8 heads of 2500 x 2500 f32 scores, 200 MB per
        // sentence: one sentence per block under 256 MiB.
        let twgm = blocks((64, 8, 2500, 2500), 4, 256 * mib);
        assert_eq!(
            twgm,
            Blocks {
                batch: 1,
                heads: 8,
                queries: 2500
            }
        );
        // At 1024 px one sentence is 537 MB: four heads per block.
        assert_eq!(blocks((64, 8, 4096, 4096), 4, 256 * mib).heads, 4);
        // Small attentions stay one block.
        assert_eq!(
            blocks((16, 8, 7, 2500), 2, 256 * mib),
            Blocks {
                batch: 16,
                heads: 8,
                queries: 7
            }
        );
        // A head larger than the budget: query rows, at least one.
        assert_eq!(
            blocks((2, 2, 100, 50), 4, 1000),
            Blocks {
                batch: 1,
                heads: 1,
                queries: 5
            }
        );
        assert_eq!(blocks((2, 2, 100, 50), 4, 10).queries, 1);
        for (shape, budget) in [((64, 8, 2500, 2500), 256 * mib), ((3, 5, 77, 301), 40_000)] {
            let blk = blocks(shape, 4, budget);
            assert!(
                blk.batch * blk.heads * blk.queries * shape.3 * 4 <= budget,
                "{shape:?}: {blk:?}"
            );
        }
    }
}
