//! The training objective: a port of the official `MultiStepMultiMasksAndIous`
//! (github.com/zhaozlcc/rsam `training/loss_fns.py`, unchanged from SAM 2) for
//! the single-mask case (`multimask_output=False`, one mask per object).
//!
//! For one prediction step with `N` objects, high-resolution mask logits `x`
//! (`N x 1 x H x W`), binary targets `t`, predicted IoUs and object-score
//! logits:
//!
//! - `loss_mask`: sigmoid focal loss (alpha 0.25, gamma 2), mean over pixels;
//! - `loss_dice`: `1 - (2 Σ σ(x) t + 1) / (Σ σ(x) + Σ t + 1)`;
//! - `loss_iou`: `|pred_iou - IoU(x > 0, t > 0)|` (L1, the IoU is a constant);
//! - `loss_class`: binary cross-entropy of the object score against
//!   "the target is not empty" (focal loss with alpha -1, gamma 0).
//!
//! The first three are multiplied by the object's presence (an empty target
//! supervises only the object score), each term is summed over objects and
//! divided by `num_objects`, and the total is the weighted sum with
//! [`LossWeights`] (official 20, 1, 1, 1). Over the correction-click steps the
//! per-step losses are summed ([`LossParts::add`]), not averaged.
//!
//! All functions are built from differentiable tensor ops and run on any
//! device. Half-precision inputs are computed in `f32`; `f32` and `f64` keep
//! their dtype.

use candle_core::{DType, Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// Official focal-loss parameters of the mask term.
pub const FOCAL_ALPHA: f64 = 0.25;
pub const FOCAL_GAMMA: f64 = 2.0;
/// Official focal-loss parameters of the object-score term (plain BCE).
pub const OBJ_SCORE_ALPHA: f64 = -1.0;
pub const OBJ_SCORE_GAMMA: f64 = 0.0;

/// Weights of the four terms in the total loss (`weight_dict` of the official
/// config: `loss_mask` 20, `loss_dice` 1, `loss_iou` 1, `loss_class` 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LossWeights {
    pub mask: f64,
    pub dice: f64,
    pub iou: f64,
    pub class: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights {
            mask: 20.0,
            dice: 1.0,
            iou: 1.0,
            class: 1.0,
        }
    }
}

/// The loss terms of one or more prediction steps, each a scalar tensor.
///
/// `focal`, `dice`, `iou` and `class` are unweighted (the official
/// `loss_mask`, `loss_dice`, `loss_iou`, `loss_class`, already divided by the
/// number of objects); `total` is their weighted sum (the official
/// `core_loss`), the one to back-propagate.
#[derive(Debug, Clone)]
pub struct LossParts {
    pub focal: Tensor,
    pub dice: Tensor,
    pub iou: Tensor,
    pub class: Tensor,
    pub total: Tensor,
}

impl LossParts {
    /// Term-by-term sum: the loss of several prediction steps (the official
    /// code accumulates the steps with `+=`).
    pub fn add(&self, other: &LossParts) -> Result<LossParts> {
        Ok(LossParts {
            focal: (&self.focal + &other.focal)?,
            dice: (&self.dice + &other.dice)?,
            iou: (&self.iou + &other.iou)?,
            class: (&self.class + &other.class)?,
            total: (&self.total + &other.total)?,
        })
    }

    /// `[focal, dice, iou, class, total]` as `f32`, read back in one transfer.
    pub fn values(&self) -> Result<[f32; 5]> {
        let parts = [&self.focal, &self.dice, &self.iou, &self.class, &self.total]
            .iter()
            .map(|t| t.detach().to_dtype(DType::F32)?.reshape(1))
            .collect::<Result<Vec<_>>>()?;
        let v = Tensor::cat(&parts, 0)?.to_vec1::<f32>()?;
        Ok([v[0], v[1], v[2], v[3], v[4]])
    }
}

/// Half types are promoted to `f32`; `f32`/`f64` are kept.
fn compute_dtype(t: &Tensor) -> Result<Tensor> {
    match t.dtype() {
        DType::F32 | DType::F64 => Ok(t.clone()),
        _ => t.to_dtype(DType::F32),
    }
}

fn check_same_2d(what: &str, logits: &Tensor, targets: &Tensor) -> Result<(usize, usize)> {
    let (n, p) = logits
        .dims2()
        .map_err(|_| candle_core::Error::Msg(format!("{what}: logits must be N x P, got {:?}", logits.dims())))?;
    if targets.dims() != [n, p] {
        candle_core::bail!(
            "{what}: targets {:?} do not match logits {:?}",
            targets.dims(),
            logits.dims()
        );
    }
    Ok((n, p))
}

/// `F.binary_cross_entropy_with_logits(x, t, reduction="none")`, in the
/// numerically stable form `max(x, 0) - x t + log(1 + exp(-|x|))`.
///
/// Its autograd gradient is `σ(x) - t` everywhere, `x = 0` included (Candle's
/// `relu` and `abs` both take the derivative 1 at 0, giving `1 - 1/2`).
fn bce_with_logits(x: &Tensor, t: &Tensor) -> Result<Tensor> {
    let softplus_neg_abs = ((x.abs()?.neg()?.exp()? + 1.0)?).log()?;
    (x.relu()? - (x * t)?)? + softplus_neg_abs
}

/// Sigmoid focal loss (RetinaNet; the official `sigmoid_focal_loss` with
/// `loss_on_multimask=True`, before the division by the number of objects):
/// `logits`, `targets` are `N x P`; returns `N`, the mean over `P` of
///
/// `BCE(x, t) · (1 - p_t)^gamma · (alpha t + (1 - alpha)(1 - t))`
///
/// with `p_t = σ(x) t + (1 - σ(x))(1 - t)`; the alpha factor is dropped when
/// `alpha < 0`. `gamma` 0, 1 and 2 are computed without `powf` (so `0^0` is 1
/// and the gradient at `p_t = 1` is finite); any other `gamma >= 0` uses it.
pub fn sigmoid_focal_loss(logits: &Tensor, targets: &Tensor, alpha: f64, gamma: f64) -> Result<Tensor> {
    check_same_2d("sigmoid_focal_loss", logits, targets)?;
    let x = compute_dtype(logits)?;
    let t = targets.to_dtype(x.dtype())?;
    let prob = candle_nn::ops::sigmoid(&x)?;
    let ce = bce_with_logits(&x, &t)?;
    // p_t = prob * t + (1 - prob) * (1 - t)
    let one_minus_t = t.affine(-1.0, 1.0)?;
    let p_t = ((&prob * &t)? + (prob.affine(-1.0, 1.0)? * &one_minus_t)?)?;
    let one_minus_pt = p_t.affine(-1.0, 1.0)?;
    let mut loss = if gamma == 0.0 {
        ce
    } else if gamma == 1.0 {
        (ce * one_minus_pt)?
    } else if gamma == 2.0 {
        (ce * one_minus_pt.sqr()?)?
    } else {
        (ce * one_minus_pt.powf(gamma)?)?
    };
    if alpha >= 0.0 {
        // alpha_t = alpha * t + (1 - alpha) * (1 - t)
        let alpha_t = ((&t * alpha)? + (one_minus_t * (1.0 - alpha))?)?;
        loss = (loss * alpha_t)?;
    }
    loss.mean(D::Minus1)
}

/// Dice loss (the official `dice_loss`, before the division by the number of
/// objects): `logits`, `targets` are `N x P`; returns `N`,
/// `1 - (2 Σ σ(x) t + 1) / (Σ σ(x) + Σ t + 1)`.
pub fn dice_loss(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_same_2d("dice_loss", logits, targets)?;
    let x = compute_dtype(logits)?;
    let t = targets.to_dtype(x.dtype())?;
    let p = candle_nn::ops::sigmoid(&x)?;
    let numerator = ((&p * &t)?.sum(1)? * 2.0)?;
    let denominator = (p.sum(1)? + t.sum(1)?)?;
    ((numerator + 1.0)? / (denominator + 1.0)?)?.affine(-1.0, 1.0)
}

/// The IoU of the thresholded prediction with the target, per row:
/// `|x > 0 ∧ t > 0| / max(|x > 0 ∨ t > 0|, 1)`. A constant (no gradient).
pub fn actual_iou(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    check_same_2d("actual_iou", logits, targets)?;
    let dtype = compute_dtype(logits)?.dtype();
    let pred = logits.detach().gt(0.0)?.to_dtype(dtype)?;
    let gt = targets.detach().gt(0.0)?.to_dtype(dtype)?;
    let inter = (&pred * &gt)?.sum(1)?;
    let union = ((pred.sum(1)? + gt.sum(1)?)? - &inter)?;
    inter / union.maximum(1.0)?
}

/// IoU-prediction loss with `use_l1_loss=True` (the official `iou_loss`,
/// before the division by the number of objects): `logits`, `targets` are
/// `N x P`, `pred_iou` is `N x 1`; returns `N`, `|pred_iou - actual_iou|`.
///
/// Differentiable w.r.t. `pred_iou` only, with PyTorch's `l1_loss` gradient
/// `sign(pred_iou - actual_iou)` (0 at equality).
pub fn iou_l1_loss(logits: &Tensor, targets: &Tensor, pred_iou: &Tensor) -> Result<Tensor> {
    let (n, _) = check_same_2d("iou_l1_loss", logits, targets)?;
    if pred_iou.dims() != [n, 1] {
        candle_core::bail!("iou_l1_loss: pred_iou must be {n} x 1, got {:?}", pred_iou.dims());
    }
    let actual = actual_iou(logits, targets)?;
    let pred = pred_iou.to_dtype(actual.dtype())?.reshape(n)?;
    let diff = (pred - actual)?;
    // |d| as d * sign(d) with the sign held constant: the value of `abs`, the
    // gradient of torch's l1_loss (Candle's `abs` has derivative 1 at 0).
    let sign = diff.detach().sign()?;
    diff * sign
}

/// The loss of one prediction step (the official `_update_losses` with
/// `pred_obj_scores=True`, `iou_use_l1_loss=True`, one mask per object).
///
/// - `logits`: `N x 1 x H x W` mask logits at the target's resolution (the
///   low-resolution logits upsampled with [`super::resize::resize_bilinear`]);
/// - `targets`: `N x 1 x H x W`, 1 inside the object and 0 outside;
/// - `pred_iou`, `object_score_logits`: `N x 1`;
/// - `num_objects`: objects in the batch (the official divisor), clamped to
///   at least 1.
pub fn step_loss(
    logits: &Tensor,
    targets: &Tensor,
    pred_iou: &Tensor,
    object_score_logits: &Tensor,
    num_objects: f64,
    weights: &LossWeights,
) -> Result<LossParts> {
    let (n, m, h, w) = logits.dims4()?;
    if m != 1 {
        candle_core::bail!(
            "step_loss: one mask per object is supported, logits are {:?}",
            logits.dims()
        );
    }
    if targets.dims() != logits.dims() {
        candle_core::bail!(
            "step_loss: targets {:?} do not match logits {:?}",
            targets.dims(),
            logits.dims()
        );
    }
    for (what, t) in [("pred_iou", pred_iou), ("object_score_logits", object_score_logits)] {
        if t.dims() != [n, 1] {
            candle_core::bail!("step_loss: {what} must be {n} x 1, got {:?}", t.dims());
        }
    }
    let num_objects = if num_objects.is_finite() {
        num_objects.max(1.0)
    } else {
        1.0
    };
    let x = compute_dtype(logits)?.reshape((n, h * w))?;
    let t = targets.to_dtype(x.dtype())?.reshape((n, h * w))?;

    // target_obj = any(t > 0) per object, as 0/1.
    let target_obj = t.detach().gt(0.0)?.max(1)?.to_dtype(x.dtype())?;

    let per_object = |loss: Tensor| -> Result<Tensor> { (loss * &target_obj)?.sum_all()? / num_objects };
    let focal = per_object(sigmoid_focal_loss(&x, &t, FOCAL_ALPHA, FOCAL_GAMMA)?)?;
    let dice = per_object(dice_loss(&x, &t)?)?;
    let iou = per_object(iou_l1_loss(&x, &t, pred_iou)?)?;
    let score = object_score_logits.to_dtype(x.dtype())?;
    let class = (sigmoid_focal_loss(&score, &target_obj.unsqueeze(1)?, OBJ_SCORE_ALPHA, OBJ_SCORE_GAMMA)?
        .sum_all()?
        / num_objects)?;

    let total =
        ((((&focal * weights.mask)? + (&dice * weights.dice)?)? + (&iou * weights.iou)?)? + (&class * weights.class)?)?;
    Ok(LossParts {
        focal,
        dice,
        iou,
        class,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    fn t2(rows: &[&[f64]]) -> Tensor {
        let n = rows.len();
        let p = rows[0].len();
        let flat: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (n, p), &Device::Cpu).unwrap()
    }

    fn f64s(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
    }

    fn close(a: f64, b: f64, tol: f64, what: &str) {
        assert!(
            (a - b).abs() <= tol,
            "{what}: got {a}, expected {b} (|diff| {})",
            (a - b).abs()
        );
    }

    // ---- hand-computed terms for logits [0, 2, -1], targets [1, 0, 0] -------

    /// Focal loss (alpha 0.25, gamma 2) per pixel, by hand:
    /// - x = 0, t = 1: σ = 1/2, BCE = ln 2, p_t = 1/2, (1 - p_t)^2 = 1/4,
    ///   alpha_t = 0.25 -> 0.25 * 0.25 * ln 2;
    /// - x = 2, t = 0: BCE = 2 + ln(1 + e^-2) (= -ln(1 - σ(2))), p_t = 1 - σ(2),
    ///   (1 - p_t)^2 = σ(2)^2, alpha_t = 0.75;
    /// - x = -1, t = 0: BCE = ln(1 + e^-1) (= -ln(1 - σ(-1))), p_t = 1 - σ(-1),
    ///   (1 - p_t)^2 = σ(-1)^2, alpha_t = 0.75.
    fn focal_by_hand() -> f64 {
        let a = 0.25 * 0.25 * 2f64.ln();
        let b = (2.0 + (1.0 + (-2f64).exp()).ln()) * sig(2.0).powi(2) * 0.75;
        let c = (1.0 + (-1f64).exp()).ln() * sig(-1.0).powi(2) * 0.75;
        (a + b + c) / 3.0
    }

    /// Dice by hand: Σ p t = σ(0) = 0.5, Σ p = 0.5 + σ(2) + σ(-1), Σ t = 1:
    /// 1 - (2 * 0.5 + 1) / (Σ p + 1 + 1).
    fn dice_by_hand() -> f64 {
        1.0 - (2.0 * 0.5 + 1.0) / ((0.5 + sig(2.0) + sig(-1.0)) + 1.0 + 1.0)
    }

    #[test]
    fn focal_loss_matches_hand_computation() {
        let x = t2(&[&[0.0, 2.0, -1.0]]);
        let t = t2(&[&[1.0, 0.0, 0.0]]);
        let got = f64s(&sigmoid_focal_loss(&x, &t, 0.25, 2.0).unwrap());
        assert_eq!(got.len(), 1);
        close(got[0], focal_by_hand(), 1e-12, "focal");
        // Same in f32.
        let got32 = f64s(
            &sigmoid_focal_loss(
                &x.to_dtype(DType::F32).unwrap(),
                &t.to_dtype(DType::F32).unwrap(),
                0.25,
                2.0,
            )
            .unwrap(),
        );
        close(got32[0], focal_by_hand(), 1e-6, "focal f32");
    }

    #[test]
    fn focal_loss_alpha_negative_gamma_zero_is_plain_bce() {
        // BCE by hand: x = 1.5, t = 1: ln(1 + e^-1.5); x = -3, t = 1: 3 + ln(1 + e^-3);
        // x = 0.5, t = 0: 0.5 + ln(1 + e^-0.5) ; rows averaged separately.
        let x = t2(&[&[1.5, -3.0], &[0.5, 0.5]]);
        let t = t2(&[&[1.0, 1.0], &[0.0, 1.0]]);
        let got = f64s(&sigmoid_focal_loss(&x, &t, -1.0, 0.0).unwrap());
        let row0 = ((1.0 + (-1.5f64).exp()).ln() + (3.0 + (1.0 + (-3f64).exp()).ln())) / 2.0;
        let row1 = ((0.5 + (1.0 + (-0.5f64).exp()).ln()) + (1.0 + (-0.5f64).exp()).ln()) / 2.0;
        close(got[0], row0, 1e-12, "bce row 0");
        close(got[1], row1, 1e-12, "bce row 1");
        // Large logits stay finite (stable form): x = 100, t = 0 -> 100.
        let big = f64s(&sigmoid_focal_loss(&t2(&[&[100.0]]), &t2(&[&[0.0]]), -1.0, 0.0).unwrap());
        close(big[0], 100.0, 1e-9, "bce of a large logit");
    }

    #[test]
    fn focal_loss_other_gamma_uses_powf() {
        // gamma 1.5, alpha 0.25 on x = 1, t = 1: BCE = ln(1 + e^-1),
        // 1 - p_t = 1 - σ(1), alpha_t = 0.25.
        let got = f64s(&sigmoid_focal_loss(&t2(&[&[1.0]]), &t2(&[&[1.0]]), 0.25, 1.5).unwrap());
        let expected = (1.0 + (-1f64).exp()).ln() * (1.0 - sig(1.0)).powf(1.5) * 0.25;
        close(got[0], expected, 1e-12, "focal gamma 1.5");
    }

    #[test]
    fn dice_loss_matches_hand_computation() {
        let x = t2(&[&[0.0, 2.0, -1.0], &[3.0, 3.0, -2.0]]);
        let t = t2(&[&[1.0, 0.0, 0.0], &[1.0, 1.0, 0.0]]);
        let got = f64s(&dice_loss(&x, &t).unwrap());
        close(got[0], dice_by_hand(), 1e-12, "dice row 0");
        // Row 1: Σ p t = 2 σ(3), Σ p = 2 σ(3) + σ(-2), Σ t = 2.
        let row1 = 1.0 - (2.0 * 2.0 * sig(3.0) + 1.0) / (2.0 * sig(3.0) + sig(-2.0) + 2.0 + 1.0);
        close(got[1], row1, 1e-12, "dice row 1");
    }

    #[test]
    fn iou_loss_matches_hand_computation() {
        // Row 0: pred > 0 = [F, T, F], gt = [T, F, F]: I = 0, U = 2 -> IoU 0;
        //        pred_iou 0.7 -> 0.7.
        // Row 1: pred > 0 = [T, T, F, F], gt = [T, F, T, F]: I = 1, U = 3 -> 1/3;
        //        pred_iou 0.5 -> 1/6.
        // Row 2: both empty: I = 0, U = 0 -> clamp to 1 -> IoU 0; pred 0.25.
        let x = t2(&[
            &[0.0, 2.0, -1.0, -1.0],
            &[1.0, 0.5, -0.5, 0.0],
            &[-1.0, -1.0, -1.0, -1.0],
        ]);
        let t = t2(&[&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 1.0, 0.0], &[0.0, 0.0, 0.0, 0.0]]);
        let pred = t2(&[&[0.7], &[0.5], &[0.25]]);
        let actual = f64s(&actual_iou(&x, &t).unwrap());
        close(actual[0], 0.0, 1e-12, "iou row 0");
        close(actual[1], 1.0 / 3.0, 1e-12, "iou row 1");
        close(actual[2], 0.0, 1e-12, "iou row 2");
        let got = f64s(&iou_l1_loss(&x, &t, &pred).unwrap());
        close(got[0], 0.7, 1e-12, "iou loss row 0");
        close(got[1], 0.5 - 1.0 / 3.0, 1e-12, "iou loss row 1");
        close(got[2], 0.25, 1e-12, "iou loss row 2");
    }

    #[test]
    fn iou_loss_gradient_is_the_l1_sign() {
        // pred 0.9 vs actual 1/3 -> +1; pred 0.1 vs 1/3 -> -1; pred == actual 1 -> 0.
        let x = t2(&[&[1.0, 1.0, -1.0], &[1.0, 1.0, -1.0], &[1.0, -1.0, -1.0]]);
        let t = t2(&[&[1.0, 0.0, 1.0], &[1.0, 0.0, 1.0], &[1.0, 0.0, 0.0]]);
        let pred = Var::from_tensor(&t2(&[&[0.9], &[0.1], &[1.0]])).unwrap();
        let loss = iou_l1_loss(&x, &t, pred.as_tensor()).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        assert_eq!(f64s(grads.get(pred.as_tensor()).unwrap()), vec![1.0, -1.0, 0.0]);
    }

    #[test]
    fn focal_gradient_matches_finite_difference() {
        // f64 so that a central difference is accurate to ~1e-10.
        let xs = [0.0, 2.0, -1.0, 0.3, -4.0, 6.0];
        let ts = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        let x = Var::from_tensor(&t2(&[&xs])).unwrap();
        let t = t2(&[&ts]);
        let loss = sigmoid_focal_loss(x.as_tensor(), &t, 0.25, 2.0)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let g = f64s(grads.get(x.as_tensor()).unwrap());
        let f =
            |v: &[f64]| -> f64 { scalar(&sigmoid_focal_loss(&t2(&[v]), &t, 0.25, 2.0).unwrap().sum_all().unwrap()) };
        let h = 1e-5;
        for i in 0..xs.len() {
            let mut plus = xs;
            let mut minus = xs;
            plus[i] += h;
            minus[i] -= h;
            let fd = (f(&plus) - f(&minus)) / (2.0 * h);
            close(g[i], fd, 1e-8, &format!("d focal / d x[{i}]"));
        }
        // And the f32 path agrees with the f64 gradient.
        let x32 = Var::from_tensor(&t2(&[&xs]).to_dtype(DType::F32).unwrap()).unwrap();
        let loss32 = sigmoid_focal_loss(x32.as_tensor(), &t.to_dtype(DType::F32).unwrap(), 0.25, 2.0)
            .unwrap()
            .sum_all()
            .unwrap();
        let g32 = f64s(loss32.backward().unwrap().get(x32.as_tensor()).unwrap());
        for i in 0..xs.len() {
            close(g32[i], g[i], 1e-6, &format!("f32 gradient [{i}]"));
        }
    }

    #[test]
    fn dice_gradient_matches_finite_difference() {
        let xs = [0.0, 2.0, -1.0, 0.3];
        let ts = [1.0, 0.0, 0.0, 1.0];
        let x = Var::from_tensor(&t2(&[&xs])).unwrap();
        let t = t2(&[&ts]);
        let grads = dice_loss(x.as_tensor(), &t)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g = f64s(grads.get(x.as_tensor()).unwrap());
        let f = |v: &[f64]| -> f64 { scalar(&dice_loss(&t2(&[v]), &t).unwrap().sum_all().unwrap()) };
        let h = 1e-5;
        for i in 0..xs.len() {
            let mut plus = xs;
            let mut minus = xs;
            plus[i] += h;
            minus[i] -= h;
            close(
                g[i],
                (f(&plus) - f(&minus)) / (2.0 * h),
                1e-8,
                &format!("d dice / d x[{i}]"),
            );
        }
    }

    fn nchw(rows: &[&[f64]], h: usize, w: usize) -> Tensor {
        t2(rows)
            .reshape((rows.len(), 1, h, w))
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    }

    fn col(v: &[f64]) -> Tensor {
        Tensor::from_vec(v.to_vec(), (v.len(), 1), &Device::Cpu)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap()
    }

    #[test]
    fn step_loss_matches_hand_computation() {
        // Object 0: logits [0, 2, -1, -1] (2x2), target [1, 0, 0, 0], pred_iou 0.7,
        //           score 1.0 (present: BCE = ln(1 + e^-1)).
        // Object 1: empty target: only its class term counts,
        //           score -2.0 vs 0: BCE = 0 + ln(1 + e^-2).
        // num_objects = 2.
        let logits = nchw(&[&[0.0, 2.0, -1.0, -1.0], &[5.0, 5.0, 5.0, 5.0]], 2, 2);
        let targets = nchw(&[&[1.0, 0.0, 0.0, 0.0], &[0.0, 0.0, 0.0, 0.0]], 2, 2);
        let parts = step_loss(
            &logits,
            &targets,
            &col(&[0.7, 0.3]),
            &col(&[1.0, -2.0]),
            2.0,
            &LossWeights::default(),
        )
        .unwrap();
        // Object 0 on 4 pixels, the extra pixel x = -1, t = 0 adds
        // ln(1 + e^-1) σ(-1)^2 0.75 to the focal sum.
        let focal_sum = 0.25 * 0.25 * 2f64.ln()
            + (2.0 + (1.0 + (-2f64).exp()).ln()) * sig(2.0).powi(2) * 0.75
            + 2.0 * (1.0 + (-1f64).exp()).ln() * sig(-1.0).powi(2) * 0.75;
        let focal = focal_sum / 4.0 / 2.0;
        // Dice: Σ p t = 0.5, Σ p = 0.5 + σ(2) + 2 σ(-1), Σ t = 1.
        let dice = (1.0 - 2.0 / (0.5 + sig(2.0) + 2.0 * sig(-1.0) + 2.0)) / 2.0;
        // IoU: pred > 0 = {1}, gt = {0}: IoU 0, |0.7 - 0| = 0.7.
        let iou = 0.7 / 2.0;
        let class = ((1.0 + (-1f64).exp()).ln() + (1.0 + (-2f64).exp()).ln()) / 2.0;
        let [f, d, i, c, total] = parts.values().unwrap();
        close(f as f64, focal, 1e-6, "focal");
        close(d as f64, dice, 1e-6, "dice");
        close(i as f64, iou, 1e-6, "iou");
        close(c as f64, class, 1e-6, "class");
        close(total as f64, 20.0 * focal + dice + iou + class, 1e-5, "total");

        // Custom weights.
        let w = LossWeights {
            mask: 1.0,
            dice: 2.0,
            iou: 0.0,
            class: 3.0,
        };
        let parts = step_loss(&logits, &targets, &col(&[0.7, 0.3]), &col(&[1.0, -2.0]), 2.0, &w).unwrap();
        close(
            scalar(&parts.total),
            focal + 2.0 * dice + 3.0 * class,
            1e-5,
            "weighted total",
        );
    }

    #[test]
    fn perfect_confident_prediction() {
        // Logits ±30 matching the target: focal ~0, dice ~0 (Σ p t = Σ p = Σ t = 3),
        // IoU = 1 so the IoU loss is |pred_iou - 1|; score +30 -> class ~0.
        let logits = nchw(&[&[30.0, 30.0, -30.0, 30.0, -30.0, -30.0]], 2, 3);
        let targets = nchw(&[&[1.0, 1.0, 0.0, 1.0, 0.0, 0.0]], 2, 3);
        let parts = step_loss(
            &logits,
            &targets,
            &col(&[0.8]),
            &col(&[30.0]),
            1.0,
            &LossWeights::default(),
        )
        .unwrap();
        let [f, d, i, c, _] = parts.values().unwrap();
        assert!(f.abs() < 1e-12, "focal {f}");
        assert!(d.abs() < 1e-6, "dice {d}");
        close(i as f64, 0.2, 1e-6, "iou loss |0.8 - 1|");
        assert!(c.abs() < 1e-12, "class {c}");
    }

    #[test]
    fn negative_object_only_class_term() {
        // Empty target, confident wrong mask: mask, dice and IoU terms are
        // masked out; class = BCE(0.5, 0) = 0.5 + ln(1 + e^-0.5).
        let logits = nchw(&[&[4.0, 4.0, 4.0, 4.0]], 2, 2);
        let targets = nchw(&[&[0.0, 0.0, 0.0, 0.0]], 2, 2);
        let parts = step_loss(
            &logits,
            &targets,
            &col(&[0.9]),
            &col(&[0.5]),
            1.0,
            &LossWeights::default(),
        )
        .unwrap();
        let [f, d, i, c, total] = parts.values().unwrap();
        assert_eq!((f, d, i), (0.0, 0.0, 0.0));
        let bce = 0.5 + (1.0 + (-0.5f64).exp()).ln();
        close(c as f64, bce, 1e-6, "class");
        close(total as f64, bce, 1e-6, "total");
        // No gradient reaches the mask logits (only through the zeroed terms).
        let x = Var::from_tensor(&logits).unwrap();
        let s = Var::from_tensor(&col(&[0.5])).unwrap();
        let parts = step_loss(
            x.as_tensor(),
            &targets,
            &col(&[0.9]),
            s.as_tensor(),
            1.0,
            &LossWeights::default(),
        )
        .unwrap();
        let grads = parts.total.backward().unwrap();
        let gx = f64s(grads.get(x.as_tensor()).unwrap());
        assert!(gx.iter().all(|g| *g == 0.0), "mask gradient {gx:?}");
        // d BCE / d s = σ(0.5) - 0.
        close(
            f64s(grads.get(s.as_tensor()).unwrap())[0],
            sig(0.5),
            1e-6,
            "score gradient",
        );
    }

    #[test]
    fn num_objects_scales_every_term() {
        let logits = nchw(&[&[0.0, 2.0, -1.0, 1.0], &[-1.0, 0.5, 0.0, 3.0]], 2, 2);
        let targets = nchw(&[&[1.0, 0.0, 0.0, 1.0], &[0.0, 0.0, 0.0, 0.0]], 2, 2);
        let (iou, score) = (col(&[0.6, 0.2]), col(&[0.4, -0.3]));
        let w = LossWeights::default();
        let one = step_loss(&logits, &targets, &iou, &score, 1.0, &w)
            .unwrap()
            .values()
            .unwrap();
        let four = step_loss(&logits, &targets, &iou, &score, 4.0, &w)
            .unwrap()
            .values()
            .unwrap();
        for k in 0..5 {
            assert!(one[k] > 0.0, "term {k} should be positive");
            close(four[k] as f64, one[k] as f64 / 4.0, 1e-6, &format!("term {k} / 4"));
        }
        // num_objects is clamped to >= 1.
        let zero = step_loss(&logits, &targets, &iou, &score, 0.0, &w)
            .unwrap()
            .values()
            .unwrap();
        assert_eq!(zero, one);
    }

    #[test]
    fn steps_are_summed_and_values_read_back() {
        let logits = nchw(&[&[0.0, 2.0, -1.0, 1.0]], 2, 2);
        let targets = nchw(&[&[1.0, 0.0, 0.0, 1.0]], 2, 2);
        let w = LossWeights::default();
        let a = step_loss(&logits, &targets, &col(&[0.5]), &col(&[0.1]), 1.0, &w).unwrap();
        let logits2 = (&logits * 2.0).unwrap();
        let b = step_loss(&logits2, &targets, &col(&[0.9]), &col(&[2.0]), 1.0, &w).unwrap();
        let (va, vb) = (a.values().unwrap(), b.values().unwrap());
        let sum = a.add(&b).unwrap().values().unwrap();
        for k in 0..5 {
            close(sum[k] as f64, (va[k] + vb[k]) as f64, 1e-5, &format!("summed term {k}"));
        }
    }

    #[test]
    fn shape_errors_are_reported() {
        let w = LossWeights::default();
        let x = nchw(&[&[0.0; 4]], 2, 2);
        let bad_t = nchw(&[&[0.0; 6]], 2, 3);
        let e = step_loss(&x, &bad_t, &col(&[0.5]), &col(&[0.1]), 1.0, &w).unwrap_err();
        assert!(e.to_string().contains("targets"), "{e}");
        let e = step_loss(&x, &x, &col(&[0.5, 0.5]), &col(&[0.1]), 1.0, &w).unwrap_err();
        assert!(e.to_string().contains("pred_iou"), "{e}");
        let two = Tensor::zeros((1, 2, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(step_loss(&two, &two, &col(&[0.5]), &col(&[0.1]), 1.0, &w).is_err());
    }

    #[test]
    fn loss_weights_default_and_serde() {
        let w = LossWeights::default();
        assert_eq!((w.mask, w.dice, w.iou, w.class), (20.0, 1.0, 1.0, 1.0));
        let json = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<LossWeights>(&json).unwrap(), w);
        // Missing fields take their defaults.
        let partial: LossWeights = serde_json::from_str(r#"{"mask": 5.0}"#).unwrap();
        assert_eq!(
            (partial.mask, partial.dice, partial.iou, partial.class),
            (5.0, 1.0, 1.0, 1.0)
        );
    }
}
