//! Results read back to the host in one transfer. On a GPU each read is a
//! synchronising copy; a decode's logits, IoUs and object scores read one
//! by one cost three.

use candle_core::{DType, Result, Tensor};

/// The values of `tensors`, each flattened and cast to f32 on its device,
/// joined there and read in one copy.
pub fn to_host_f32<const N: usize>(tensors: [&Tensor; N]) -> Result<[Vec<f32>; N]> {
    let flat = tensors
        .iter()
        .map(|t| t.flatten_all()?.to_dtype(DType::F32))
        .collect::<Result<Vec<_>>>()?;
    let mut all = Tensor::cat(&flat, 0)?.to_vec1::<f32>()?.into_iter();
    Ok(std::array::from_fn(|i| {
        all.by_ref().take(flat[i].elem_count()).collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn one_read_gives_each_tensor_its_own_values() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::arange(0f32, 24.0, &dev)?
            .reshape((2, 1, 3, 4))?
            .to_dtype(DType::BF16)?;
        let iou = Tensor::new(&[[0.5f32], [0.25]], &dev)?;
        let scores = Tensor::new(&[[-3f32], [7.0]], &dev)?.t()?;
        let [logits, iou, scores] = to_host_f32([&logits, &iou, &scores])?;
        assert_eq!(logits, (0..24).map(|v| v as f32).collect::<Vec<_>>());
        assert_eq!(iou, vec![0.5, 0.25]);
        assert_eq!(scores, vec![-3.0, 7.0]);
        Ok(())
    }
}
