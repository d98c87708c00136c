//! The plain-ops path: with trainable weights (Vars) every op records a
//! gradient graph, the forward pass equals the fast inference path, and
//! backpropagation reaches every component (what training in Rust needs).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use common::*;
use rsam::models::rsam::{DecodeBatch, RsamModel, SparseBatch, TextBatch};

fn trainable_model() -> (RsamModel, VarMap) {
    let tensors = candle_core::safetensors::load(tiny_dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, t) in tensors {
            data.insert(name, Var::from_tensor(&t).unwrap());
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let config = rsam::RsamConfig::from_file(&tiny_dir().join("config.json")).unwrap();
    (RsamModel::new(&config, vb).unwrap(), varmap)
}

/// Case 3: text + one positive click, as model-space tensors.
fn case3_batch(model: &rsam::Rsam) -> DecodeBatch {
    let ids = model.tokenizer.encode("the large storage tank on the left").unwrap();
    let dev = Device::Cpu;
    DecodeBatch {
        sparse: SparseBatch {
            // square.png is 128 x 128 = the model size: no scaling. The
            // official padding point (label -1) is appended.
            coords: Tensor::new(&[[[40f32, 50.0], [0.0, 0.0]]], &dev).unwrap(),
            labels: Tensor::new(&[[1i64, -1]], &dev).unwrap(),
            valid: None,
        },
        text_rows: vec![Some(0)],
        texts: Some(TextBatch::new(&[ids], &dev).unwrap()),
        mask_inputs: vec![None],
    }
}

#[test]
fn trainable_forward_equals_inference_and_backprop_reaches_every_component() {
    let inference = load_tiny();
    let (trainable, varmap) = trainable_model();
    let input = &expected()["input.square.png"];
    let batch = case3_batch(&inference);

    let fast = inference
        .model
        .decode(&inference.model.encode(input).unwrap(), &batch)
        .unwrap();
    let features = trainable.encode(input).unwrap();
    assert!(features.image_embed.track_op(), "the trainable path records a graph");
    let slow = trainable.decode(&features, &batch).unwrap();
    let d = max_abs_diff(&fast.low_res_logits, &slow.low_res_logits);
    assert!(d < 1e-4, "plain-ops path differs from the fused path by {d}");
    let want = &expected()["case3.low_res_logits"];
    assert!(max_abs_diff(&slow.low_res_logits, want) < 1e-4);

    // A loss touching logits, IoU and object score.
    let loss = (slow.low_res_logits.sqr().unwrap().mean_all().unwrap()
        + slow.iou.sum_all().unwrap()
        + slow.object_score_logits.sum_all().unwrap())
    .unwrap();
    let grads = loss.backward().unwrap();
    let data = varmap.data().lock().unwrap();
    for name in [
        "image_encoder.trunk.patch_embed.proj.weight",
        "image_encoder.trunk.pos_embed",
        "image_encoder.trunk.blocks.3.attn.qkv.weight",
        "image_encoder.neck.convs.0.conv.weight",
        "text_encoder.embeddings.word_embeddings.weight",
        "text_encoder.encoder.layer.1.output.dense.weight",
        "text_proj.weight",
        "description_transformer.layers.1.self_attn_key.q_proj.weight",
        "sam_prompt_encoder.point_embeddings.1.weight",
        "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.k_proj.weight",
        "sam_mask_decoder.conv_s0.weight",
        "sam_mask_decoder.iou_prediction_head.layers.2.weight",
        "sam_mask_decoder.pred_obj_score_head.layers.0.weight",
    ] {
        let var = data.get(name).unwrap_or_else(|| panic!("{name} is not a var"));
        let grad = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = grad.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm.is_finite() && norm > 0.0, "{name}: gradient norm {norm}");
    }
}

/// The analytic gradients equal finite differences, in f64, for elements of
/// parameters across every component: what makes training converge (a
/// backward pass that merely runs is not enough).
#[test]
fn gradients_match_finite_differences() {
    let tensors = candle_core::safetensors::load(tiny_dir().join("model.safetensors"), &Device::Cpu).unwrap();
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, t) in tensors {
            data.insert(name, Var::from_tensor(&t.to_dtype(DType::F64).unwrap()).unwrap());
        }
    }
    let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
    let config = rsam::RsamConfig::from_file(&tiny_dir().join("config.json")).unwrap();
    let model = RsamModel::new(&config, vb).unwrap();
    let inference = load_tiny();
    let mut batch = case3_batch(&inference);
    // A mask prompt too, so that the mask downscaler is on the path.
    // Deterministic "random" values (the test must not depend on a seed).
    let wave = |phase: f64| -> Tensor {
        let v: Vec<f64> = (0..32 * 32).map(|i| (i as f64 * 0.7 + phase).sin() * 1.5).collect();
        Tensor::from_vec(v, (1, 1, 32, 32), &Device::Cpu).unwrap()
    };
    let mask = wave(0.3);
    batch.mask_inputs = vec![Some(mask)];
    let input = expected()["input.square.png"].to_dtype(DType::F64).unwrap();
    let weights = wave(1.1);
    let loss_of = |m: &RsamModel| -> Tensor {
        let features = m.encode(&input).unwrap();
        let out = m.decode(&features, &batch).unwrap();
        ((out.low_res_logits * &weights).unwrap().sum_all().unwrap()
            + (out.iou.sum_all().unwrap() * 3.0).unwrap()
            + out.object_score_logits.sum_all().unwrap())
        .unwrap()
    };
    let grads = loss_of(&model).backward().unwrap();
    let data = varmap.data().lock().unwrap();
    let names = [
        "image_encoder.trunk.patch_embed.proj.weight",
        "image_encoder.trunk.pos_embed",
        "image_encoder.trunk.blocks.3.attn.qkv.weight",
        "image_encoder.trunk.blocks.1.mlp.layers.0.weight",
        "image_encoder.neck.convs.1.conv.weight",
        "text_encoder.embeddings.word_embeddings.weight",
        "text_encoder.encoder.layer.0.attention.self.query.weight",
        "description_transformer.layers.0.self_attn_key.q_proj.weight",
        "description_transformer.layers.1.cross_attn_image_to_token.v_proj.weight",
        "sam_prompt_encoder.point_embeddings.1.weight",
        "sam_prompt_encoder.mask_downscaling.0.weight",
        "sam_mask_decoder.mask_tokens.weight",
        "sam_mask_decoder.iou_token.weight",
        "sam_mask_decoder.transformer.layers.0.cross_attn_token_to_image.k_proj.weight",
        "sam_mask_decoder.output_upscaling.0.weight",
        "sam_mask_decoder.output_hypernetworks_mlps.0.layers.0.weight",
        "sam_mask_decoder.conv_s0.weight",
    ];
    let eps = 1e-5;
    let mut failures = Vec::new();
    for name in names {
        let var = data.get(name).unwrap_or_else(|| panic!("{name} is not a var"));
        let analytic = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        let original = var.as_tensor().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        // The element with the largest gradient, and one other.
        let largest = (0..analytic.len())
            .max_by(|&a, &b| analytic[a].abs().total_cmp(&analytic[b].abs()))
            .unwrap();
        for index in [largest, analytic.len() / 3] {
            let shifted = |delta: f64| -> f64 {
                let mut values = original.clone();
                values[index] += delta;
                var.set(&Tensor::from_vec(values, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                loss_of(&model).to_scalar::<f64>().unwrap()
            };
            let numeric = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(original.clone(), var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            let a = analytic[index];
            // In f64 with a central difference the two agree to ~1e-4
            // relative; a ReLU unit crossing zero inside ±eps can cost a
            // little more. The pooling bug this caught was off by 4x and flipped signs.
            if (a - numeric).abs() > 1e-2 * a.abs().max(numeric.abs()).max(1.0) {
                failures.push(format!("{name}[{index}]: analytic {a} vs numeric {numeric}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "gradients differ from finite differences:\n{}",
        failures.join("\n")
    );
}
