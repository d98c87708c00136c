//! SAM 2's image preprocessing (`sam2/utils/transforms.py`, `SAM2Transforms`):
//!
//! ```text
//! x = ToTensor()(pil_image)                 # u8 -> f32 / 255, CHW
//! x = Resize((S, S))(x)                     # torchvision on the float tensor:
//!                                           # antialiased bilinear, aspect ratio ignored
//! x = Normalize(MEAN, STD)(x)
//! ```
//!
//! Unlike RSAM's pipeline (PIL's fixed-point resize of 8-bit pixels, see
//! [`crate::preprocess`]), the resize runs in f32 on the CPU through ATen's
//! `_upsample_bilinear2d_aa` kernel (`separable_upsample_generic_Nd_kernel_impl`
//! with `HelperInterpLinear`, `UpSampleKernel.cpp`). [`resize_antialiased`]
//! ports it operation by operation: the weights are computed with the same
//! mix of float and double arithmetic, the width is resampled before the
//! height, only axes whose size changes are resampled, and each output is
//! accumulated in f32 from its first tap on, with the multiply-add fused as
//! the AVX2 / AVX-512 builds of PyTorch compile it. On the fixture this gives
//! the official model input bit for bit.

use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::preprocess::{Rgb8Image, IMAGE_MEAN, IMAGE_STD};
use crate::Result;

/// The 3 x S x S model input of an image, CHW row-major.
pub fn model_input(image: &Rgb8Image, size: usize) -> Vec<f32> {
    let (w, h) = (image.width as usize, image.height as usize);
    let mut x = resize_antialiased(&to_tensor(image), 3, h, w, size, size);
    normalize(&mut x, size * size);
    x
}

/// [`model_input`] as a 1 x 3 x S x S tensor.
pub fn model_tensor(image: &Rgb8Image, size: usize, device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(model_input(image, size), (1, 3, size, size), device)?)
}

/// torchvision's `ToTensor`: CHW, `v as f32 / 255`.
pub fn to_tensor(image: &Rgb8Image) -> Vec<f32> {
    let plane = image.width as usize * image.height as usize;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in image.data.chunks_exact(3).take(plane).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = px[c] as f32 / 255.0;
        }
    }
    out
}

/// torchvision's `Normalize` with the ImageNet mean / std, in place on CHW
/// planes of `plane` values.
fn normalize(x: &mut [f32], plane: usize) {
    for (c, channel) in x.chunks_exact_mut(plane).enumerate() {
        for v in channel {
            *v = (*v - IMAGE_MEAN[c]) / IMAGE_STD[c];
        }
    }
}

/// `F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False,
/// antialias=True)` of `channels` planes of `in_h x in_w` floats, as ATen
/// computes it on the CPU.
pub fn resize_antialiased(
    src: &[f32],
    channels: usize,
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let mut planes = src.to_vec();
    // Horizontal (the contiguous dimension) first, then vertical.
    if out_w != in_w {
        planes = resample_rows(&planes, channels * in_h, in_w, &AxisWeights::new(in_w, out_w));
    }
    if out_h != in_h {
        planes = resample_columns(&planes, channels, in_h, out_w, &AxisWeights::new(in_h, out_h));
    }
    planes
}

/// Per output index: the first input index and the normalised triangle
/// weights (`_compute_indices_min_size_weights_aa` for `scalar_t = float`).
#[derive(Debug, Clone, PartialEq)]
pub struct AxisWeights {
    taps: Vec<(usize, Vec<f32>)>,
}

impl AxisWeights {
    pub fn new(in_size: usize, out_size: usize) -> Self {
        // area_pixel_compute_scale<float>: float(in) / out.
        let scale = in_size as f32 / out_size as f32;
        // `(interp_size * 0.5) * scale` is a double, stored in a float.
        let support: f32 = if scale >= 1.0 { (1.0 * scale as f64) as f32 } else { 1.0 };
        let max_interp = support.ceil() as i64 * 2 + 1;
        let invscale: f32 = if scale >= 1.0 { (1.0 / scale as f64) as f32 } else { 1.0 };
        let taps = (0..out_size)
            .map(|i| {
                let center = (scale as f64 * (i as f64 + 0.5)) as f32;
                let xmin = (((center - support) as f64 + 0.5) as i64).max(0);
                let xmax = (((center + support) as f64 + 0.5) as i64).min(in_size as i64);
                let xsize = (xmax - xmin).clamp(0, max_interp);
                let mut weights: Vec<f32> = (0..xsize)
                    .map(|j| {
                        // int64 - float is a float; + 0.5 and * invscale in double.
                        let x = ((((j + xmin) as f32 - center) as f64 + 0.5) * invscale as f64) as f32;
                        triangle(x)
                    })
                    .collect();
                let total = weights.iter().fold(0f32, |acc, &w| acc + w);
                if total != 0.0 {
                    weights.iter_mut().for_each(|w| *w /= total);
                }
                (xmin as usize, weights)
            })
            .collect();
        Self { taps }
    }

    /// The output of one tap list over `read(k)` for input indices `k`: the
    /// first product, then fused multiply-adds in order.
    fn apply(weights: &[f32], first: usize, read: impl Fn(usize) -> f32) -> f32 {
        let Some((&w0, rest)) = weights.split_first() else {
            return 0.0;
        };
        let mut acc = read(first) * w0;
        for (j, &w) in rest.iter().enumerate() {
            acc = read(first + 1 + j).mul_add(w, acc);
        }
        acc
    }
}

/// `HelperInterpLinear::aa_filter<float>`.
fn triangle(x: f32) -> f32 {
    let x = x.abs();
    if x < 1.0 {
        (1.0 - x as f64) as f32
    } else {
        0.0
    }
}

/// Resamples each of `rows` rows of `in_w` values to the axis' output width.
fn resample_rows(src: &[f32], rows: usize, in_w: usize, axis: &AxisWeights) -> Vec<f32> {
    let out_w = axis.taps.len();
    let mut out = vec![0f32; rows * out_w];
    out.par_chunks_mut(out_w.max(1))
        .zip(src.par_chunks(in_w.max(1)))
        .for_each(|(dst, row)| {
            for (o, (first, weights)) in dst.iter_mut().zip(&axis.taps) {
                *o = AxisWeights::apply(weights, *first, |k| row[k]);
            }
        });
    out
}

/// Resamples the columns of `channels` planes of `in_h x w` values to the
/// axis' output height.
fn resample_columns(src: &[f32], channels: usize, in_h: usize, w: usize, axis: &AxisWeights) -> Vec<f32> {
    let out_h = axis.taps.len();
    let mut out = vec![0f32; channels * out_h * w];
    out.par_chunks_mut(w.max(1)).enumerate().for_each(|(row, dst)| {
        let (c, y) = (row / out_h, row % out_h);
        let plane = &src[c * in_h * w..(c + 1) * in_h * w];
        let (first, weights) = &axis.taps[y];
        for (x, o) in dst.iter_mut().enumerate() {
            *o = AxisWeights::apply(weights, *first, |k| plane[k * w + x]);
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_the_identity() {
        let src: Vec<f32> = (0..2 * 5 * 7).map(|v| v as f32 * 0.37 - 3.0).collect();
        assert_eq!(resize_antialiased(&src, 2, 5, 7, 5, 7), src);
    }

    #[test]
    fn weights_sum_to_one_and_widen_when_downsampling() {
        for (input, output) in [(384, 256), (200, 256), (1000, 1024), (4000, 1024), (7, 3)] {
            let axis = AxisWeights::new(input, output);
            assert_eq!(axis.taps.len(), output);
            let scale = input as f64 / output as f64;
            for (first, weights) in &axis.taps {
                let sum: f32 = weights.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{input}->{output}: weights sum to {sum}");
                assert!(first + weights.len() <= input);
                assert!(weights.len() as f64 <= 2.0 * scale.max(1.0).ceil() + 1.0);
            }
        }
    }

    #[test]
    fn constant_planes_stay_constant() {
        let src = vec![0.25f32; 3 * 37 * 53];
        let out = resize_antialiased(&src, 3, 37, 53, 16, 16);
        assert_eq!(out.len(), 3 * 16 * 16);
        assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }

    #[test]
    fn halving_averages_neighbours() {
        // 4 -> 2 (scale 2, support 2): output 0 is centred on input 1.0 and
        // reads inputs 0..3 with triangle weights 3/4, 3/4, 1/4 (scaled by
        // 1/2 around the centre), normalised to 3/7, 3/7, 1/7.
        let axis = AxisWeights::new(4, 2);
        let (first, w) = &axis.taps[0];
        assert_eq!(*first, 0);
        assert_eq!(w.len(), 3);
        for (got, want) in w.iter().zip([3.0 / 7.0, 3.0 / 7.0, 1.0 / 7.0]) {
            assert!((got - want).abs() < 1e-7, "{w:?}");
        }
        let out = resize_antialiased(&[0.0, 4.0, 8.0, 12.0], 1, 1, 4, 1, 2);
        assert!(
            (out[0] - 20.0 / 7.0).abs() < 1e-5 && (out[1] - 64.0 / 7.0).abs() < 1e-5,
            "{out:?}"
        );
    }
}
