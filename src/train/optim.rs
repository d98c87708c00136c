//! AdamW with parameter groups, global gradient clipping, a cosine schedule
//! and a state file that training can resume from.
//!
//! `candle_nn::AdamW` keeps its moments private, so a run cannot be resumed
//! from a checkpoint; this one is written out and follows
//! `torch.optim.AdamW` (the official trainer's optimizer) step by step:
//!
//! ```text
//! p <- p (1 - lr wd)
//! m <- b1 m + (1 - b1) g            v <- b2 v + (1 - b2) g²
//! p <- p - lr / (1 - b1^t) · m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//!
//! with `lr` the group's learning rate (base rate times the parameter's
//! multiplier) and `t` the number of updates *that parameter* has had (like
//! PyTorch's per-parameter `step`: a parameter without a gradient is skipped,
//! moments and count included). Before the update all gradients are clipped
//! together like `torch.nn.utils.clip_grad_norm_` (the official
//! `GradientClipper`, max norm 0.1, L2).
//!
//! Moments are kept in `f32` on the parameter's device, and the update is made
//! of tensor ops, so it runs wherever the parameters live.
//!
//! **State file** ([`AdamW::save`] / [`AdamW::load`]): one safetensors file
//! with an `f32` tensor `m.<name>` and `v.<name>` per parameter that has been
//! updated at least once, and string metadata `format` = `rsam-adamw`,
//! `version` = `1`, `step` (calls to [`AdamW::step`]), `beta1`, `beta2`,
//! `eps`, and `t.<name>` (that parameter's update count) for every parameter
//! that has moments. It is written to `<path>.tmp` and renamed into place.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Error, Result, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

/// `format` metadata value of an optimizer state file.
pub const STATE_FORMAT: &str = "rsam-adamw";
/// `version` metadata value of an optimizer state file.
pub const STATE_VERSION: &str = "1";

/// How each named parameter is treated: frozen or trained, its weight decay
/// and its learning-rate multiplier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ParamRules {
    /// Weight decay of every trained parameter not exempted below (official 0.1).
    pub weight_decay: f64,
    /// Names ending with one of these get no weight decay (default `bias`).
    pub no_decay_suffixes: Vec<String>,
    /// Names containing one of these get no weight decay (default `norm`,
    /// `LayerNorm`, `pos_embed`).
    pub no_decay_substrings: Vec<String>,
    /// One-dimensional tensors whose name ends in `weight` (the scales of
    /// normalisation layers, whatever their name) get no weight decay.
    pub no_decay_1d_weights: bool,
    /// Parameters whose name starts with one of these are not trained at all
    /// (not updated, not counted in the gradient norm), e.g. `text_encoder.`.
    pub frozen_prefixes: Vec<String>,
    /// `(prefix, multiplier)`: a parameter's learning rate is the base rate
    /// times the multiplier of the longest prefix its name starts with (1 if
    /// none), e.g. `("image_encoder.", 0.6)`.
    pub lr_multipliers: Vec<(String, f64)>,
}

impl Default for ParamRules {
    fn default() -> Self {
        ParamRules {
            weight_decay: 0.1,
            no_decay_suffixes: vec!["bias".into()],
            no_decay_substrings: vec!["norm".into(), "LayerNorm".into(), "pos_embed".into()],
            no_decay_1d_weights: true,
            frozen_prefixes: Vec::new(),
            lr_multipliers: Vec::new(),
        }
    }
}

impl ParamRules {
    /// Whether `name` is frozen (excluded from the optimizer).
    pub fn is_frozen(&self, name: &str) -> bool {
        self.frozen_prefixes.iter().any(|p| name.starts_with(p.as_str()))
    }

    /// The learning-rate multiplier of `name`: that of the longest matching
    /// prefix, 1 if none matches.
    pub fn lr_multiplier(&self, name: &str) -> f64 {
        self.lr_multipliers
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map_or(1.0, |(_, mult)| *mult)
    }

    /// The weight decay of a parameter called `name` with shape `dims`.
    pub fn weight_decay_for(&self, name: &str, dims: &[usize]) -> f64 {
        let exempt = self.no_decay_suffixes.iter().any(|s| name.ends_with(s.as_str()))
            || self.no_decay_substrings.iter().any(|s| name.contains(s.as_str()))
            || (self.no_decay_1d_weights && dims.len() <= 1 && name.ends_with("weight"));
        if exempt {
            0.0
        } else {
            self.weight_decay
        }
    }
}

/// AdamW hyper-parameters (PyTorch defaults) and gradient clipping.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global L2 gradient-norm clipping (official 0.1); `None` disables it.
    pub max_grad_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            max_grad_norm: Some(0.1),
        }
    }
}

/// A trained parameter as the optimizer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    pub name: String,
    pub dims: Vec<usize>,
    pub lr_multiplier: f64,
    pub weight_decay: f64,
}

/// What one [`AdamW::step`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Global L2 norm of the trained parameters' gradients, before clipping.
    pub grad_norm: f32,
}

struct ParamState {
    info: ParamInfo,
    var: Var,
    m: Option<Tensor>,
    v: Option<Tensor>,
    steps: u64,
}

/// AdamW over the trained parameters of a model (see the module docs).
pub struct AdamW {
    params: Vec<ParamState>,
    config: AdamWConfig,
    steps: u64,
}

fn state_err(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Msg(format!("optimizer state {}: {reason}", path.display()))
}

impl AdamW {
    /// An optimizer over every variable of `varmap` that `rules` does not
    /// freeze.
    pub fn new(varmap: &VarMap, rules: &ParamRules, config: AdamWConfig) -> Result<Self> {
        let vars: Vec<(String, Var)> = {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Msg("VarMap lock is poisoned".into()))?;
            data.iter().map(|(name, var)| (name.clone(), var.clone())).collect()
        };
        Self::from_named_vars(vars, rules, config)
    }

    /// An optimizer over named variables (those `rules` freezes are dropped).
    /// Parameters are kept sorted by name.
    pub fn from_named_vars(
        vars: impl IntoIterator<Item = (String, Var)>,
        rules: &ParamRules,
        config: AdamWConfig,
    ) -> Result<Self> {
        let AdamWConfig {
            beta1,
            beta2,
            eps,
            max_grad_norm,
        } = config;
        if !(0.0..1.0).contains(&beta1) || !(0.0..1.0).contains(&beta2) || eps.is_nan() || eps < 0.0 {
            candle_core::bail!("AdamW: need 0 <= beta1, beta2 < 1 and eps >= 0, got {config:?}");
        }
        if max_grad_norm.is_some_and(|n| n.is_nan() || n <= 0.0) {
            candle_core::bail!("AdamW: max_grad_norm must be positive, got {max_grad_norm:?}");
        }
        let mut params = Vec::new();
        let mut seen = HashSet::new();
        for (name, var) in vars {
            if rules.is_frozen(&name) {
                continue;
            }
            if !seen.insert(name.clone()) {
                candle_core::bail!("AdamW: parameter {name} is given twice");
            }
            if !var.dtype().is_float() {
                candle_core::bail!("AdamW: parameter {name} has non-float dtype {:?}", var.dtype());
            }
            let dims = var.dims().to_vec();
            params.push(ParamState {
                info: ParamInfo {
                    lr_multiplier: rules.lr_multiplier(&name),
                    weight_decay: rules.weight_decay_for(&name, &dims),
                    name,
                    dims,
                },
                var,
                m: None,
                v: None,
                steps: 0,
            });
        }
        params.sort_by(|a, b| a.info.name.cmp(&b.info.name));
        Ok(AdamW {
            params,
            config,
            steps: 0,
        })
    }

    /// The trained parameters, sorted by name.
    pub fn params(&self) -> impl Iterator<Item = &ParamInfo> {
        self.params.iter().map(|p| &p.info)
    }

    /// Number of trained scalars.
    pub fn num_trainable(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Calls to [`AdamW::step`] so far (restored by [`AdamW::load`]).
    pub fn step_count(&self) -> u64 {
        self.steps
    }

    /// Updates parameter `name` has had (`None` if it is not trained).
    pub fn param_step_count(&self, name: &str) -> Option<u64> {
        self.find(name).map(|p| p.steps)
    }

    /// The first and second moments of `name` (`None` before its first update
    /// or if it is not trained).
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        let p = self.find(name)?;
        Some((p.m.as_ref()?, p.v.as_ref()?))
    }

    fn find(&self, name: &str) -> Option<&ParamState> {
        self.params
            .binary_search_by(|p| p.info.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.params[i])
    }

    /// The global L2 norm of the trained parameters' gradients in `grads`
    /// (0 if none has a gradient). One device-to-host transfer.
    pub fn grad_norm(&self, grads: &GradStore) -> Result<f32> {
        let mut squares = Vec::new();
        let mut device = None;
        for p in &self.params {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                let dev = device.get_or_insert_with(|| g.device().clone());
                let sq = g.detach().to_dtype(DType::F32)?.sqr()?.sum_all()?.reshape(1)?;
                squares.push(sq.to_device(dev)?);
            }
        }
        if squares.is_empty() {
            return Ok(0.0);
        }
        Tensor::cat(&squares, 0)?.sum_all()?.sqrt()?.to_scalar::<f32>()
    }

    /// One AdamW update with base learning rate `lr` from the gradients in
    /// `grads`. Parameters without a gradient are left as they are.
    ///
    /// The gradients are first clipped together like
    /// `torch.nn.utils.clip_grad_norm_`: with `max_grad_norm` set, all are
    /// multiplied by `min(1, max_grad_norm / (total_norm + 1e-6))`. As in
    /// PyTorch a non-finite norm is not an error (it is reported in
    /// [`StepStats`] for the caller to act on).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<StepStats> {
        if !lr.is_finite() || lr < 0.0 {
            candle_core::bail!("AdamW: learning rate must be finite and >= 0, got {lr}");
        }
        let grad_norm = self.grad_norm(grads)?;
        let clip = self
            .config
            .max_grad_norm
            .map(|max| max / (grad_norm as f64 + 1e-6))
            .filter(|coef| *coef < 1.0);
        let AdamWConfig { beta1, beta2, eps, .. } = self.config;
        self.steps += 1;
        for p in &mut self.params {
            let Some(g) = grads.get(p.var.as_tensor()) else {
                continue;
            };
            if g.dims() != p.info.dims.as_slice() {
                candle_core::bail!(
                    "AdamW: gradient of {} has shape {:?}, the parameter {:?}",
                    p.info.name,
                    g.dims(),
                    p.info.dims
                );
            }
            let mut g = g.detach().to_dtype(DType::F32)?;
            if let Some(coef) = clip {
                g = g.affine(coef, 0.0)?;
            }
            let m = match &p.m {
                Some(m) => (m.affine(beta1, 0.0)? + g.affine(1.0 - beta1, 0.0)?)?,
                None => g.affine(1.0 - beta1, 0.0)?,
            };
            let g2 = g.sqr()?;
            let v = match &p.v {
                Some(v) => (v.affine(beta2, 0.0)? + g2.affine(1.0 - beta2, 0.0)?)?,
                None => g2.affine(1.0 - beta2, 0.0)?,
            };
            let t = (p.steps + 1) as f64;
            let bias_correction1 = 1.0 - beta1.powf(t);
            let bias_correction2 = 1.0 - beta2.powf(t);
            let group_lr = lr * p.info.lr_multiplier;
            let step_size = group_lr / bias_correction1;
            // denom = sqrt(v) / sqrt(bc2) + eps
            let denom = v.sqrt()?.affine(1.0 / bias_correction2.sqrt(), eps)?;
            let update = m.div(&denom)?.affine(-step_size, 0.0)?;
            let mut param = p.var.as_tensor().detach().to_dtype(DType::F32)?;
            if p.info.weight_decay != 0.0 && group_lr != 0.0 {
                param = param.affine(1.0 - group_lr * p.info.weight_decay, 0.0)?;
            }
            let new = (param + update)?.to_dtype(p.var.dtype())?;
            p.var.set(&new)?;
            p.m = Some(m);
            p.v = Some(v);
            p.steps += 1;
        }
        Ok(StepStats { grad_norm })
    }

    /// Writes the optimizer state to `path` (see the module docs for the
    /// format).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut meta = HashMap::from([
            ("format".to_string(), STATE_FORMAT.to_string()),
            ("version".to_string(), STATE_VERSION.to_string()),
            ("step".to_string(), self.steps.to_string()),
            ("beta1".to_string(), self.config.beta1.to_string()),
            ("beta2".to_string(), self.config.beta2.to_string()),
            ("eps".to_string(), self.config.eps.to_string()),
        ]);
        let mut tensors = Vec::new();
        for p in &self.params {
            if let (Some(m), Some(v)) = (&p.m, &p.v) {
                let name = &p.info.name;
                tensors.push((format!("m.{name}"), m.to_device(&Device::Cpu)?.contiguous()?));
                tensors.push((format!("v.{name}"), v.to_device(&Device::Cpu)?.contiguous()?));
                meta.insert(format!("t.{name}"), p.steps.to_string());
            }
        }
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        safetensors::serialize_to_file(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta), &tmp)
            .map_err(|e| state_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| state_err(path, format!("renaming {} into place: {e}", tmp.display())))
    }

    /// Restores the state written by [`AdamW::save`]: the step count and, for
    /// each trained parameter, its moments and update count (a parameter the
    /// file has nothing for starts fresh, as it had never been updated).
    ///
    /// Fails, leaving this optimizer unchanged, if the file cannot be read,
    /// is not an rsam AdamW state file, has state for a parameter this
    /// optimizer does not train, or has a missing or mis-shaped entry for one
    /// it does (the error names the parameter).
    pub fn load(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| state_err(path, e))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .map_err(|e| state_err(path, format!("not a safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
            return Err(state_err(
                path,
                format!("not an rsam AdamW state file (its metadata has no format={STATE_FORMAT})"),
            ));
        }
        let version = meta.get("version").map_or("", String::as_str);
        if version != STATE_VERSION {
            return Err(state_err(
                path,
                format!("unsupported version {version:?} (expected {STATE_VERSION})"),
            ));
        }
        let parse_u64 = |key: &str| -> Result<Option<u64>> {
            meta.get(key)
                .map(|s| {
                    s.parse::<u64>()
                        .map_err(|_| state_err(path, format!("metadata {key} = {s:?} is not a count")))
                })
                .transpose()
        };
        let steps = parse_u64("step")?.ok_or_else(|| state_err(path, "metadata has no step"))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| state_err(path, e))?;

        let trained: HashSet<&str> = self.params.iter().map(|p| p.info.name.as_str()).collect();
        let mut foreign: Vec<&str> = Vec::new();
        for key in tensors.keys() {
            match key.strip_prefix("m.").or_else(|| key.strip_prefix("v.")) {
                Some(name) if trained.contains(name) => {}
                Some(name) => foreign.push(name),
                None => return Err(state_err(path, format!("unexpected tensor {key}"))),
            }
        }
        foreign.extend(
            meta.keys()
                .filter_map(|k| k.strip_prefix("t."))
                .filter(|n| !trained.contains(n)),
        );
        if !foreign.is_empty() {
            foreign.sort_unstable();
            foreign.dedup();
            return Err(state_err(
                path,
                format!(
                    "has state for parameters this optimizer does not train (frozen, or not in this model): {}",
                    foreign.join(", ")
                ),
            ));
        }

        let mut restored = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let name = &p.info.name;
            let (mk, vk) = (format!("m.{name}"), format!("v.{name}"));
            let Some(t) = parse_u64(&format!("t.{name}"))? else {
                if tensors.contains_key(&mk) || tensors.contains_key(&vk) {
                    return Err(state_err(
                        path,
                        format!("has moments but no step count t.{name} for parameter {name}"),
                    ));
                }
                restored.push((None, None, 0));
                continue;
            };
            let moment = |key: &str, what: &str| -> Result<Tensor> {
                let x = tensors
                    .get(key)
                    .ok_or_else(|| state_err(path, format!("missing {key} ({what} moment of parameter {name})")))?;
                if x.dims() != p.info.dims.as_slice() {
                    return Err(state_err(
                        path,
                        format!(
                            "{key} has shape {:?} but parameter {name} has shape {:?}",
                            x.dims(),
                            p.info.dims
                        ),
                    ));
                }
                x.to_dtype(DType::F32)?.to_device(p.var.device())
            };
            let m = moment(&mk, "first")?;
            let v = moment(&vk, "second")?;
            restored.push((Some(m), Some(v), t));
        }

        let saved_betas = (meta.get("beta1"), meta.get("beta2"), meta.get("eps"));
        let ours = (
            self.config.beta1.to_string(),
            self.config.beta2.to_string(),
            self.config.eps.to_string(),
        );
        if saved_betas != (Some(&ours.0), Some(&ours.1), Some(&ours.2)) {
            tracing::warn!(
                "optimizer state {} was saved with beta1/beta2/eps {:?}, this optimizer uses {:?}",
                path.display(),
                saved_betas,
                ours
            );
        }
        for (p, (m, v, t)) in self.params.iter_mut().zip(restored) {
            p.m = m;
            p.v = v;
            p.steps = t;
        }
        self.steps = steps;
        Ok(())
    }
}

/// fvcore's `CosineParamScheduler`: `end + (start - end) (1 + cos(pi where)) / 2`
/// for `where` in `[0, 1]` (clamped).
pub fn cosine_value(where_: f64, start: f64, end: f64) -> f64 {
    let w = where_.clamp(0.0, 1.0);
    end + 0.5 * (start - end) * (1.0 + (std::f64::consts::PI * w).cos())
}

/// The learning rate of step `step` (0-based) of `total_steps`.
///
/// With `warmup_steps = K > 0`, steps `0..K` ramp linearly from
/// `start / (K + 1)` up to `start K / (K + 1)` (never 0), and step `K` is
/// `start`. From there the rate follows [`cosine_value`] with
/// `where = (step - K) / (total_steps - K)`, reaching `end` at `total_steps`
/// (and staying there after). Without warm-up this is fvcore's cosine over
/// `where = step / total_steps`.
pub fn lr_at(step: usize, total_steps: usize, warmup_steps: usize, start: f64, end: f64) -> f64 {
    if step < warmup_steps {
        return start * (step + 1) as f64 / (warmup_steps + 1) as f64;
    }
    let span = total_steps.saturating_sub(warmup_steps);
    if span == 0 {
        return end;
    }
    cosine_value((step - warmup_steps) as f64 / span as f64, start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(values: &[f32], dims: &[usize]) -> Var {
        Var::from_tensor(&Tensor::from_vec(values.to_vec(), dims, &Device::Cpu).unwrap()).unwrap()
    }

    fn vals(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    fn no_clip() -> AdamWConfig {
        AdamWConfig {
            max_grad_norm: None,
            ..AdamWConfig::default()
        }
    }

    fn grads_of(entries: &[(&Var, &[f32])]) -> GradStore {
        let mut g = GradStore::default();
        for (v, values) in entries {
            g.insert(
                v.as_tensor(),
                Tensor::from_vec(values.to_vec(), v.dims(), &Device::Cpu).unwrap(),
            );
        }
        g
    }

    fn assert_close(got: &[f32], expected: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), expected.len(), "{what}");
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!((*g as f64 - e).abs() <= tol, "{what}[{i}]: got {g}, expected {e}");
        }
    }

    fn assert_close64(got: &[f64], expected: &[f64], tol: f64, what: &str) {
        assert_eq!(got.len(), expected.len(), "{what}");
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!((g - e).abs() <= tol, "{what}[{i}]: got {g}, expected {e}");
        }
    }

    #[test]
    fn two_adamw_steps_match_pytorch_by_hand() {
        // torch.optim.AdamW(lr=0.01, weight_decay=0.1), defaults b1 0.9, b2 0.999, eps 1e-8,
        // p0 = [1, -2, 0.5], g1 = [0.1, -0.2, 0.3], g2 = [-0.05, 0.4, 0.3].
        //
        // Step 1: p <- p (1 - 0.01 * 0.1) = 0.999 p; m1 = 0.1 g1 = [0.01, -0.02, 0.03];
        // v1 = 0.001 g1² = [1e-5, 4e-5, 9e-5]; bc1 = 0.1, bc2 = 0.001, so
        // m1 / bc1 = g1 and sqrt(v1) / sqrt(bc2) = |g1|:
        // p1 = 0.999 p0 - 0.01 g1 / (|g1| + 1e-8)
        //    = [0.999 - 0.001 / 0.10000001, -1.998 + 0.002 / 0.20000001, 0.4995 - 0.003 / 0.30000001]
        //    = [0.98900000100, -1.98800000050, 0.48950000033].
        // Step 2: m2 = 0.9 m1 + 0.1 g2 = [0.004, 0.022, 0.057];
        // v2 = 0.999 v1 + 0.001 g2² = [1.249e-5, 1.9996e-4, 1.7991e-4];
        // bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 = 0.001999;
        // p2 = 0.999 p1 - (0.01 / 0.19) m2 / (sqrt(v2) / sqrt(0.001999) + 1e-8)
        //    = [0.98534763094, -1.98967303565, 0.47901050067]
        // (evaluated in f64 with the torch.optim.AdamW update rule written out in plain
        // Python; PyTorch itself was not installed here).
        let p = var(&[1.0, -2.0, 0.5], &[1, 3]);
        let mut opt = AdamW::from_named_vars(
            [("layer.weight".to_string(), p.clone())],
            &ParamRules::default(),
            no_clip(),
        )
        .unwrap();
        assert_eq!(opt.params().next().unwrap().weight_decay, 0.1);
        opt.step(&grads_of(&[(&p, &[0.1, -0.2, 0.3])]), 0.01).unwrap();
        let p1 = [
            0.999 - 0.01 * 0.1 / (0.1 + 1e-8),
            -2.0 * 0.999 + 0.01 * 0.2 / (0.2 + 1e-8),
            0.5 * 0.999 - 0.01 * 0.3 / (0.3 + 1e-8),
        ];
        assert_close(&vals(p.as_tensor()), &p1, 1e-6, "p after step 1");
        assert_close64(
            &p1,
            &[0.9890000009999999, -1.9880000005, 0.4895000003333333],
            1e-12,
            "p1 by hand",
        );
        let (m, v) = opt.moments("layer.weight").unwrap();
        assert_close(&vals(m), &[0.01, -0.02, 0.03], 1e-8, "m1");
        assert_close(&vals(v), &[1e-5, 4e-5, 9e-5], 1e-11, "v1");

        opt.step(&grads_of(&[(&p, &[-0.05, 0.4, 0.3])]), 0.01).unwrap();
        let m2 = [
            0.9 * 0.01 + 0.1 * -0.05,
            0.9 * -0.02 + 0.1 * 0.4,
            0.9 * 0.03 + 0.1 * 0.3,
        ];
        let v2 = [
            0.999 * 1e-5 + 0.001 * 0.0025,
            0.999 * 4e-5 + 0.001 * 0.16,
            0.999 * 9e-5 + 0.001 * 0.09,
        ];
        let p2: Vec<f64> = (0..3)
            .map(|i| 0.999 * p1[i] - (0.01 / 0.19) * m2[i] / ((v2[i] / 0.001999f64).sqrt() + 1e-8))
            .collect();
        assert_close64(
            &p2,
            &[0.9853476309393391, -1.989673035654104, 0.4790105006663334],
            1e-9,
            "p2 by hand",
        );
        assert_close(&vals(p.as_tensor()), &p2, 2e-6, "p after step 2");
        assert_eq!(opt.step_count(), 2);
        assert_eq!(opt.param_step_count("layer.weight"), Some(2));
    }

    #[test]
    fn weight_decay_rules() {
        // Zero gradients: the Adam part of the update is 0 / (0 + eps) = 0, so
        // a decayed parameter becomes p (1 - lr wd) = 0.99 p and the others stay.
        let rules = ParamRules::default();
        let names_decay = [
            ("enc.layer.weight", vec![2, 2], true),
            ("enc.pos_embed", vec![1, 2, 2], false),
            ("enc.layer.bias", vec![4], false),
            ("enc.norm1.weight", vec![4], false),
            ("bert.LayerNorm.weight", vec![4], false),
            ("enc.neck.norm.scale", vec![2, 2], false),
            ("enc.scale.weight", vec![4], false), // 1-D weight
            ("enc.gamma", vec![4], true),         // 1-D, not a weight
            ("enc.proj.weight", vec![4, 1], true),
        ];
        let vars: Vec<(String, Var)> = names_decay
            .iter()
            .map(|(n, d, _)| (n.to_string(), var(&[1.0, 2.0, -3.0, 4.0], d)))
            .collect();
        let mut opt = AdamW::from_named_vars(vars.clone(), &rules, no_clip()).unwrap();
        let zeros: Vec<(&Var, &[f32])> = vars.iter().map(|(_, v)| (v, &[0.0f32; 4][..])).collect();
        opt.step(&grads_of(&zeros), 0.1).unwrap();
        for ((name, _, decays), (_, v)) in names_decay.iter().zip(&vars) {
            let f = if *decays { 0.99 } else { 1.0 };
            assert_close(&vals(v.as_tensor()), &[f, 2.0 * f, -3.0 * f, 4.0 * f], 1e-7, name);
            assert_eq!(
                rules.weight_decay_for(name, v.dims()),
                if *decays { 0.1 } else { 0.0 },
                "{name}"
            );
        }
    }

    #[test]
    fn frozen_prefixes_are_untouched_and_not_counted() {
        let rules = ParamRules {
            frozen_prefixes: vec!["text_encoder.".into()],
            ..ParamRules::default()
        };
        let frozen = var(&[1.0, 2.0], &[1, 2]);
        let trained = var(&[1.0, 2.0], &[1, 2]);
        let mut opt = AdamW::from_named_vars(
            [
                ("text_encoder.layer.weight".to_string(), frozen.clone()),
                ("decoder.layer.weight".to_string(), trained.clone()),
            ],
            &rules,
            no_clip(),
        )
        .unwrap();
        let names: Vec<_> = opt.params().map(|p| p.name.clone()).collect();
        assert_eq!(names, vec!["decoder.layer.weight"]);
        let stats = opt
            .step(&grads_of(&[(&frozen, &[30.0, 40.0]), (&trained, &[3.0, 4.0])]), 0.1)
            .unwrap();
        assert!((stats.grad_norm - 5.0).abs() < 1e-6, "grad norm {}", stats.grad_norm);
        assert_eq!(vals(frozen.as_tensor()), vec![1.0, 2.0]);
        assert_ne!(vals(trained.as_tensor()), vec![1.0, 2.0]);
        assert!(opt.moments("text_encoder.layer.weight").is_none());
        assert_eq!(opt.param_step_count("text_encoder.layer.weight"), None);
    }

    #[test]
    fn vars_without_gradient_are_untouched_and_keep_their_own_step_count() {
        let a = var(&[1.0, 2.0], &[1, 2]);
        let b = var(&[5.0, -5.0], &[1, 2]);
        let rules = ParamRules {
            weight_decay: 0.0,
            ..ParamRules::default()
        };
        let mut opt = AdamW::from_named_vars(
            [("a.weight".into(), a.clone()), ("b.weight".into(), b.clone())],
            &rules,
            no_clip(),
        )
        .unwrap();
        for _ in 0..3 {
            opt.step(&grads_of(&[(&a, &[0.5, -0.5])]), 0.1).unwrap();
        }
        assert_eq!(vals(b.as_tensor()), vec![5.0, -5.0]);
        assert!(opt.moments("b.weight").is_none());
        assert_eq!(opt.param_step_count("b.weight"), Some(0));
        assert_eq!(opt.param_step_count("a.weight"), Some(3));
        // b's first update has t = 1 (bias-corrected: a step of lr g / (|g| + eps)),
        // although the optimizer has made 3 steps.
        opt.step(&grads_of(&[(&b, &[2.0, -1.0])]), 0.1).unwrap();
        assert_close(
            &vals(b.as_tensor()),
            &[5.0 - 0.1 * 2.0 / (2.0 + 1e-8), -5.0 + 0.1 * 1.0 / (1.0 + 1e-8)],
            1e-6,
            "b after its first update",
        );
        assert_eq!(opt.param_step_count("a.weight"), Some(3));
        assert_eq!(opt.step_count(), 4);
    }

    #[test]
    fn clipping_scales_gradients_to_max_norm() {
        // Two parameters, gradients [3, 4] and [12]: total norm sqrt(9 + 16 + 144) = 13.
        // max_norm 0.1 -> coefficient 0.1 / (13 + 1e-6); m1 = 0.1 * coef * g.
        let a = var(&[0.0, 0.0], &[1, 2]);
        let b = var(&[0.0], &[1, 1]);
        let vars = [("a.weight".to_string(), a.clone()), ("b.weight".to_string(), b.clone())];
        let grads = grads_of(&[(&a, &[3.0, 4.0]), (&b, &[12.0])]);
        let mut opt = AdamW::from_named_vars(vars.clone(), &ParamRules::default(), AdamWConfig::default()).unwrap();
        let stats = opt.step(&grads, 0.01).unwrap();
        assert!((stats.grad_norm - 13.0).abs() < 1e-5);
        let coef = 0.1 / (13.0 + 1e-6);
        let (m, v) = opt.moments("a.weight").unwrap();
        assert_close(&vals(m), &[0.1 * coef * 3.0, 0.1 * coef * 4.0], 1e-8, "clipped m of a");
        assert_close(
            &vals(v),
            &[0.001 * (coef * 3.0f64).powi(2), 0.001 * (coef * 4.0f64).powi(2)],
            1e-10,
            "v of a",
        );
        let clipped_norm = {
            let ma = vals(opt.moments("a.weight").unwrap().0);
            let mb = vals(opt.moments("b.weight").unwrap().0);
            (ma.iter().chain(&mb).map(|x| (*x as f64 / 0.1).powi(2)).sum::<f64>()).sqrt()
        };
        assert!((clipped_norm - 0.1).abs() < 1e-6, "clipped norm {clipped_norm}");

        // Under the limit: no scaling.
        let mut opt = AdamW::from_named_vars(
            vars,
            &ParamRules::default(),
            AdamWConfig {
                max_grad_norm: Some(20.0),
                ..AdamWConfig::default()
            },
        )
        .unwrap();
        opt.step(&grads, 0.01).unwrap();
        assert_close(
            &vals(opt.moments("a.weight").unwrap().0),
            &[0.3, 0.4],
            1e-7,
            "unclipped m",
        );
    }

    #[test]
    fn lr_multipliers_use_the_longest_prefix() {
        let rules = ParamRules {
            weight_decay: 0.0,
            lr_multipliers: vec![("image_encoder.".into(), 0.6), ("image_encoder.neck.".into(), 2.0)],
            ..ParamRules::default()
        };
        assert_eq!(rules.lr_multiplier("image_encoder.trunk.w"), 0.6);
        assert_eq!(rules.lr_multiplier("image_encoder.neck.conv.weight"), 2.0);
        assert_eq!(rules.lr_multiplier("sam_mask_decoder.w"), 1.0);
        let p = var(&[1.0], &[1, 1]);
        let mut opt = AdamW::from_named_vars([("image_encoder.trunk.w".into(), p.clone())], &rules, no_clip()).unwrap();
        // First step: p - (0.1 * 0.6) g / (|g| + eps).
        opt.step(&grads_of(&[(&p, &[1.0])]), 0.1).unwrap();
        assert_close(&vals(p.as_tensor()), &[1.0 - 0.06 / (1.0 + 1e-8)], 1e-7, "p");
    }

    #[test]
    fn lr_schedule() {
        // No warm-up: where = step / total; start at 0, (start + end) / 2 halfway, end at total.
        assert_eq!(lr_at(0, 100, 0, 1e-4, 1e-6), 1e-4);
        assert!((lr_at(50, 100, 0, 1e-4, 1e-6) - (1e-4 + 1e-6) / 2.0).abs() < 1e-18);
        assert!((lr_at(100, 100, 0, 1e-4, 1e-6) - 1e-6).abs() < 1e-18);
        assert!((lr_at(150, 100, 0, 1e-4, 1e-6) - 1e-6).abs() < 1e-18);
        // Quarter: end + (start - end)(1 + cos(pi/4)) / 2.
        let q = 1e-6 + 0.5 * (1e-4 - 1e-6) * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!((lr_at(25, 100, 0, 1e-4, 1e-6) - q).abs() < 1e-18);
        // Warm-up of 4 steps: start * [1, 2, 3, 4] / 5, then start at step 4,
        // cosine over the remaining 96 steps (midpoint at 4 + 48).
        for s in 0..4 {
            assert!((lr_at(s, 100, 4, 1.0, 0.0) - (s + 1) as f64 / 5.0).abs() < 1e-15);
        }
        assert_eq!(lr_at(4, 100, 4, 1.0, 0.0), 1.0);
        assert!((lr_at(52, 100, 4, 1.0, 0.0) - 0.5).abs() < 1e-15);
        assert!(lr_at(100, 100, 4, 1.0, 0.0).abs() < 1e-15);
        // Monotone through the warm-up and the decay.
        let lrs: Vec<f64> = (0..=100).map(|s| lr_at(s, 100, 4, 1.0, 0.1)).collect();
        assert!(lrs[..5].windows(2).all(|w| w[0] < w[1]));
        assert!(lrs[4..].windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(cosine_value(0.0, 3.0, 1.0), 3.0);
        assert_eq!(cosine_value(1.0, 3.0, 1.0), 1.0);
    }

    /// Vars with fixed values; "late.weight" only gets gradients from step 2 on.
    fn model(values: Option<&HashMap<String, Vec<f32>>>) -> Vec<(String, Var)> {
        let spec: [(&str, &[usize]); 4] = [
            ("a.weight", &[4, 3]),
            ("a.bias", &[3]),
            ("n.norm.weight", &[3]),
            ("late.weight", &[2, 2]),
        ];
        spec.iter()
            .enumerate()
            .map(|(k, (name, dims))| {
                let n: usize = dims.iter().product();
                let data = match values {
                    Some(v) => v[*name].clone(),
                    None => (0..n).map(|i| ((i + 3 * k) as f32 * 0.37).sin()).collect(),
                };
                (name.to_string(), var(&data, dims))
            })
            .collect()
    }

    /// Gradients that depend on the current parameters (so the trajectories
    /// depend on the whole state): g = cos(3 p + step).
    fn grads_at(vars: &[(String, Var)], step: usize) -> GradStore {
        let mut g = GradStore::default();
        for (name, v) in vars {
            if name == "late.weight" && step < 2 {
                continue;
            }
            g.insert(
                v.as_tensor(),
                v.as_tensor().affine(3.0, step as f64).unwrap().cos().unwrap(),
            );
        }
        g
    }

    fn snapshot(vars: &[(String, Var)]) -> HashMap<String, Vec<f32>> {
        vars.iter().map(|(n, v)| (n.clone(), vals(v.as_tensor()))).collect()
    }

    #[test]
    fn save_load_round_trip_resumes_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optim.safetensors");
        let rules = ParamRules::default();
        let config = AdamWConfig {
            max_grad_norm: Some(1.0),
            ..AdamWConfig::default()
        };

        let vars_b = model(None);
        let mut b = AdamW::from_named_vars(vars_b.clone(), &rules, config).unwrap();
        for step in 0..3 {
            b.step(&grads_at(&vars_b, step), lr_at(step, 6, 1, 1e-2, 1e-3)).unwrap();
        }
        b.save(&path).unwrap();
        assert!(!dir.path().join("optim.safetensors.tmp").exists());
        let mid = snapshot(&vars_b);

        // A fresh optimizer over a copy of the parameters, resumed from the file.
        let vars_c = model(Some(&mid));
        let mut c = AdamW::from_named_vars(vars_c.clone(), &rules, config).unwrap();
        c.load(&path).unwrap();
        assert_eq!(c.step_count(), 3);
        assert_eq!(c.param_step_count("late.weight"), Some(1));
        assert_eq!(c.param_step_count("a.weight"), Some(3));

        for step in 3..6 {
            let lr = lr_at(step, 6, 1, 1e-2, 1e-3);
            let sb = b.step(&grads_at(&vars_b, step), lr).unwrap();
            let sc = c.step(&grads_at(&vars_c, step), lr).unwrap();
            assert_eq!(sb, sc);
        }
        assert_eq!(snapshot(&vars_b), snapshot(&vars_c));
        assert_ne!(snapshot(&vars_b), mid);
        assert_eq!(b.step_count(), c.step_count());

        // Without the state the trajectory differs (the test can tell).
        let vars_d = model(Some(&mid));
        let mut d = AdamW::from_named_vars(vars_d.clone(), &rules, config).unwrap();
        for step in 3..6 {
            d.step(&grads_at(&vars_d, step), lr_at(step, 6, 1, 1e-2, 1e-3)).unwrap();
        }
        assert_ne!(snapshot(&vars_b), snapshot(&vars_d));
    }

    #[test]
    fn load_errors_are_clear_and_leave_the_state_alone() {
        let dir = tempfile::tempdir().unwrap();
        let rules = ParamRules::default();
        let p = var(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let mut opt = AdamW::from_named_vars([("a.weight".into(), p.clone())], &rules, no_clip()).unwrap();
        opt.step(&grads_of(&[(&p, &[1.0, 1.0, 1.0, 1.0])]), 0.1).unwrap();
        let err = |r: Result<()>| r.unwrap_err().to_string();

        // Missing file.
        let missing = dir.path().join("nope.safetensors");
        let e = err(opt.load(&missing));
        assert!(e.contains("nope.safetensors"), "{e}");

        // Not a safetensors file / a foreign safetensors file.
        let junk = dir.path().join("junk.safetensors");
        std::fs::write(&junk, b"hello").unwrap();
        assert!(err(opt.load(&junk)).contains("not a safetensors file"));
        let foreign = dir.path().join("model.safetensors");
        candle_core::safetensors::save(
            &HashMap::from([("a.weight".to_string(), p.as_tensor().clone())]),
            &foreign,
        )
        .unwrap();
        assert!(err(opt.load(&foreign)).contains("not an rsam AdamW state file"));

        // Mis-shaped entry (same name, transposed shape).
        let q = var(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
        let mut other = AdamW::from_named_vars([("a.weight".into(), q.clone())], &rules, no_clip()).unwrap();
        other.step(&grads_of(&[(&q, &[1.0; 6])]), 0.1).unwrap();
        let shaped = dir.path().join("shaped.safetensors");
        other.save(&shaped).unwrap();
        let e = err(opt.load(&shaped));
        assert!(
            e.contains("m.a.weight") && e.contains("[3, 2]") && e.contains("[2, 2]"),
            "{e}"
        );

        // State for a parameter this optimizer does not train.
        let x = var(&[1.0], &[1, 1]);
        let mut extra = AdamW::from_named_vars(
            [("a.weight".into(), p.clone()), ("x.weight".into(), x.clone())],
            &rules,
            no_clip(),
        )
        .unwrap();
        extra.step(&grads_of(&[(&p, &[1.0; 4]), (&x, &[1.0])]), 0.1).unwrap();
        let extra_path = dir.path().join("extra.safetensors");
        extra.save(&extra_path).unwrap();
        let e = err(opt.load(&extra_path));
        assert!(e.contains("does not train") && e.contains("x.weight"), "{e}");

        // Missing moment: the step count says a.weight has state, the tensor is absent.
        let partial = dir.path().join("partial.safetensors");
        let meta = HashMap::from([
            ("format".to_string(), STATE_FORMAT.to_string()),
            ("version".to_string(), STATE_VERSION.to_string()),
            ("step".to_string(), "1".to_string()),
            ("t.a.weight".to_string(), "1".to_string()),
        ]);
        let v = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        safetensors::serialize_to_file([("v.a.weight", &v)], Some(meta), &partial).unwrap();
        let e = err(opt.load(&partial));
        assert!(
            e.contains("missing m.a.weight") && e.contains("parameter a.weight"),
            "{e}"
        );

        // None of the failures changed anything.
        assert_eq!(opt.step_count(), 1);
        assert_eq!(opt.param_step_count("a.weight"), Some(1));
        assert_close(&vals(opt.moments("a.weight").unwrap().0), &[0.1; 4], 1e-7, "m kept");
    }

    #[test]
    fn new_reads_a_varmap_and_rejects_bad_configs() {
        let varmap = VarMap::new();
        {
            let mut data = varmap.data().lock().unwrap();
            data.insert("text_encoder.w".into(), var(&[1.0], &[1]));
            data.insert("mask_decoder.w".into(), var(&[1.0, 2.0], &[2]));
        }
        let rules = ParamRules {
            frozen_prefixes: vec!["text_encoder.".into()],
            ..ParamRules::default()
        };
        let opt = AdamW::new(&varmap, &rules, AdamWConfig::default()).unwrap();
        assert_eq!(opt.num_trainable(), 2);
        assert!(AdamW::new(
            &varmap,
            &rules,
            AdamWConfig {
                beta1: 1.0,
                ..AdamWConfig::default()
            }
        )
        .is_err());
        assert!(AdamW::new(
            &varmap,
            &rules,
            AdamWConfig {
                max_grad_norm: Some(0.0),
                ..AdamWConfig::default()
            }
        )
        .is_err());
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<ParamRules>(&json).unwrap(), rules);
    }
}
