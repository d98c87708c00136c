//! `rsam train` end to end on a micro configuration (64 px, a few thousand
//! parameters per block) and a small `rsam synth` dataset: reproducibility,
//! resuming, that the loss falls, the output directory, and every error.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use clap::Parser;
use rsam::cli::args::TrainArgs;
use rsam::train::checkpoint::{read_state, STATE_FILE};
use rsam::train::TrainError;

/// A tiny but complete RSAM: every component, 64 px input.
const MICRO_CONFIG: &str = r#"{
 "name": "rsam-micro", "image_size": 64, "d_model": 16, "num_twgt": 1,
 "hiera": {"embed_dim": 8, "num_heads": 1, "stages": [1, 1, 1, 1], "window_spec": [4, 4, 2, 2],
           "global_att_blocks": [2], "window_pos_embed_bkg_spatial_size": [2, 2]},
 "bert": {"vocab_size": 128, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 32, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
          "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64, "type_vocab_size": 2,
          "initializer_range": 0.02},
 "transformer_num_heads": 2, "transformer_mlp_dim": 32, "iou_head_hidden_dim": 16, "max_text_positions": 64
}"#;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    train: TrainArgs,
}

struct Fixture {
    _dir: tempfile::TempDir,
    dataset: PathBuf,
    config: PathBuf,
    root: PathBuf,
}

/// One synthetic dataset (16 images at 64 px: 12 train, 2 val, 2 test)
/// shared by the tests.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let dataset = dir.path().join("data");
        rsam::synth::run(&rsam::cli::args::SynthArgs {
            out: dataset.clone(),
            images: 16,
            size: 64,
            seed: 5,
            splits: "train=0.75,val=0.125,test=0.125".into(),
        })
        .unwrap();
        let config = dir.path().join("micro.json");
        std::fs::write(&config, MICRO_CONFIG).unwrap();
        Fixture {
            root: dir.path().to_path_buf(),
            _dir: dir,
            dataset,
            config,
        }
    })
}

/// Train args for `out` with the micro config, plus `extra` flags.
fn args(out: &Path, extra: &[&str]) -> TrainArgs {
    let f = fixture();
    let mut argv: Vec<String> = [
        "train",
        "--config",
        f.config.to_str().unwrap(),
        "--dataset",
        f.dataset.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--batch",
        "4",
        "--lr",
        "2e-3",
        "--correction-clicks",
        "1",
        "--negative-ratio",
        "0.5",
        "--val-clicks",
        "1",
        "--seed",
        "11",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if extra.contains(&"--resume") {
        // A resumed run keeps its config; --config would be refused.
        argv.drain(1..3);
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    Cli::parse_from(argv).train
}

fn out_dir(name: &str) -> PathBuf {
    let dir = fixture().root.join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let mut v: Vec<_> = tensors
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Names of the tensors that differ between two weight lists (with the
/// largest difference), for short assertion messages.
fn differing(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> Vec<(String, f32)> {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .filter(|(x, y)| x.1 != y.1)
        .map(|(x, y)| {
            let d = x.1.iter().zip(&y.1).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            (x.0.clone(), d)
        })
        .collect()
}

fn train_error(args: &TrainArgs) -> String {
    let err = rsam::train::run(args).unwrap_err();
    let err = match err.downcast::<TrainError>() {
        Ok(e) => e.to_string(),
        Err(e) => format!("{e:#}"),
    };
    err
}

#[test]
fn same_seed_same_weights_and_resume_equals_an_uninterrupted_run() {
    let a = out_dir("repro-a");
    let summary = rsam::train::run(&args(&a, &["--epochs", "2"])).unwrap();
    assert_eq!(summary.epochs, 2);
    assert_eq!(summary.steps, 6, "12 training images in batches of 4, two epochs");

    let b = out_dir("repro-b");
    rsam::train::run(&args(&b, &["--epochs", "2"])).unwrap();
    let same = differing(&weights(&a), &weights(&b));
    assert!(same.is_empty(), "same seed and data, different weights: {same:?}");

    // Stopped after the first epoch, then resumed.
    let c = out_dir("repro-c");
    let first = rsam::train::run(&args(&c, &["--epochs", "2", "--max-steps", "3"])).unwrap();
    assert_eq!((first.epochs, first.steps), (1, 3));
    assert!(!differing(&weights(&a), &weights(&c)).is_empty());
    let resumed = rsam::train::run(&args(&c, &["--epochs", "2", "--resume"])).unwrap();
    assert_eq!((resumed.epochs, resumed.steps), (2, 6));
    // Bit for bit: the weights, optimizer moments, step and schedule are all
    // restored, and nothing the model derives from its weights is cached.
    let resumed_diff = differing(&weights(&a), &weights(&c));
    assert!(resumed_diff.is_empty(), "resuming changed the result: {resumed_diff:?}");

    let other = out_dir("repro-other-seed");
    let mut different = args(&other, &["--epochs", "1"]);
    different.seed = 12;
    rsam::train::run(&different).unwrap();
    assert!(
        !differing(&weights(&a), &weights(&other)).is_empty(),
        "another seed, other weights"
    );
}

#[test]
fn the_loss_falls_and_the_output_is_a_model_directory() {
    let out = out_dir("falls");
    let mut a = args(&out, &["--epochs", "6", "--val-limit", "2"]);
    a.lr = 3e-3;
    let summary = rsam::train::run(&a).unwrap();
    let state = read_state(&out).unwrap();
    assert_eq!(state.history.len(), 6);
    let first = &state.history[0];
    let last = &state.history[5];
    assert!(
        last.loss < 0.7 * first.loss,
        "loss did not fall: {} -> {}",
        first.loss,
        last.loss
    );
    // Validation after each epoch: text only and one click.
    assert_eq!(last.val_miou.len(), 2);
    assert!(last.val_miou.iter().all(|m| (0.0..=1.0).contains(m)));
    assert_eq!(summary.last.as_ref(), Some(last));

    // What segment / serve / eval load.
    let model = rsam::Rsam::load(&out, &rsam::LoadOptions::default()).unwrap();
    assert!(model.load_report.ignored_keys.is_empty());
    let jpeg = std::fs::read(fixture().dataset.join("JPEGImages/synth_000000.jpg")).unwrap();
    let features = model.encode_bytes(&jpeg).unwrap();
    let preds = model
        .predict(&features, vec![rsam::Prompt::text("the storage tank on the left")])
        .unwrap();
    assert_eq!(preds[0].low_res_logits.len(), 16 * 16);
    assert!(preds[0].low_res_logits.iter().all(|v| v.is_finite()));
}

#[test]
fn click_only_sentences_and_center_clicks_train() {
    let quick = ["--epochs", "1", "--val-split", ""];
    let plain = out_dir("clicks-plain");
    rsam::train::run(&args(&plain, &quick)).unwrap();
    let clicky = out_dir("clicks-only");
    let mut flags = quick.to_vec();
    flags.extend(["--text-dropout", "1", "--center-clicks", "1"]);
    let summary = rsam::train::run(&args(&clicky, &flags)).unwrap();
    let last = summary.last.unwrap();
    assert!(last.loss.is_finite() && last.loss > 0.0, "{}", last.loss);
    // Same seed and data: only the prompts differ, so the weights must too,
    // in the prompt encoder's point embeddings above all.
    let changed = differing(&weights(&plain), &weights(&clicky));
    assert!(
        changed.iter().any(|(name, _)| name.contains("point_embeddings")),
        "{changed:?}"
    );
    // Still reproducible.
    let again = out_dir("clicks-only-again");
    rsam::train::run(&args(&again, &flags)).unwrap();
    assert!(differing(&weights(&clicky), &weights(&again)).is_empty());
}

#[test]
fn frozen_text_encoder_stays_put() {
    let out = out_dir("frozen");
    rsam::train::run(&args(&out, &["--epochs", "1", "--freeze-text", "--val-split", ""])).unwrap();
    let config = rsam::RsamConfig::from_file(&fixture().config).unwrap();
    let initial = rsam::train::init::initial_weights(&config, 11, &candle_core::Device::Cpu).unwrap();
    let mut initial: Vec<(String, Vec<f32>)> = initial
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect();
    initial.sort_by(|a, b| a.0.cmp(&b.0));
    let trained = weights(&out);
    assert_eq!(trained.len(), initial.len());
    for ((name, after), (_, before)) in trained.iter().zip(&initial) {
        if name.starts_with("text_encoder.") {
            assert_eq!(after, before, "{name} moved although the text encoder is frozen");
        }
    }
    let moved = trained
        .iter()
        .zip(&initial)
        .any(|((n, a), (_, b))| n.starts_with("image_encoder.") && a != b);
    assert!(moved, "the rest of the model trains");
}

#[test]
fn fine_tuning_starts_from_a_model_directory() {
    let base = out_dir("base");
    rsam::train::run(&args(&base, &["--epochs", "1", "--val-split", ""])).unwrap();
    let tuned = out_dir("tuned");
    let mut a = args(&tuned, &["--epochs", "1", "--val-split", ""]);
    a.lr = 0.0;
    a.init = Some(base.clone());
    a.config = None;
    rsam::train::run(&a).unwrap();
    // A zero learning rate keeps the starting weights.
    let moved = differing(&weights(&base), &weights(&tuned));
    assert!(moved.is_empty(), "lr 0 moved {moved:?}");
}

#[test]
fn fine_tuning_at_another_input_size() {
    let base = out_dir("base-64");
    rsam::train::run(&args(&base, &["--epochs", "1", "--max-steps", "1", "--val-split", ""])).unwrap();
    let tuned = out_dir("tuned-96");
    let mut a = args(&tuned, &["--epochs", "1", "--max-steps", "2", "--image-size", "96"]);
    a.init = Some(base.clone());
    a.config = None;
    let summary = rsam::train::run(&a).unwrap();
    assert_eq!(summary.steps, 2);
    // The same weights, trained at 96 px, saved with a 96 px config; the
    // validation ran at that size too.
    let config = rsam::RsamConfig::from_file(&tuned.join("config.json")).unwrap();
    assert_eq!(config.image_size, 96);
    let before = rsam::RsamConfig::from_file(&base.join("config.json")).unwrap();
    assert_eq!(before.image_size, 64);
    assert!(!differing(&weights(&base), &weights(&tuned)).is_empty());
    let val = summary.last.unwrap().val_miou;
    assert!(!val.is_empty() && val.iter().all(|v| v.is_finite()), "{val:?}");
}

#[test]
fn errors_name_the_problem() {
    let f = fixture();
    // Resume without a run.
    let empty = out_dir("nothing-here");
    let e = train_error(&args(&empty, &["--resume"]));
    assert!(e.contains(STATE_FILE) && e.contains("cannot resume"), "{e}");

    // A second run into the same directory.
    let taken = out_dir("taken");
    rsam::train::run(&args(&taken, &["--epochs", "1", "--max-steps", "1", "--val-split", ""])).unwrap();
    let e = train_error(&args(&taken, &["--epochs", "1"]));
    assert!(e.contains("already holds a training run"), "{e}");

    // A damaged run: no optimizer state, then a state file that is not one.
    std::fs::remove_file(taken.join("train/optimizer.safetensors")).unwrap();
    let e = train_error(&args(&taken, &["--epochs", "2", "--resume"]));
    assert!(e.contains("optimizer.safetensors"), "{e}");
    std::fs::write(taken.join(STATE_FILE), "{\"epochs\": ").unwrap();
    let e = train_error(&args(&taken, &["--epochs", "2", "--resume"]));
    assert!(e.contains("not a training state"), "{e}");

    let out = out_dir("errors");
    type Case = (fn(&mut TrainArgs), &'static str);
    let cases: [Case; 9] = [
        (|a| a.epochs = 0, "--epochs"),
        (|a| a.batch = 0, "--batch"),
        (|a| a.sentences_per_image = 0, "--sentences-per-image"),
        (|a| a.lr = -1.0, "--lr"),
        (|a| a.click_from_gt = 1.5, "--click-from-gt"),
        (|a| a.center_clicks = -0.1, "--center-clicks"),
        (|a| a.text_dropout = f64::NAN, "--text-dropout"),
        (|a| a.negative_ratio = -0.5, "--negative-ratio"),
        (|a| a.device = "tpu".into(), "tpu"),
    ];
    for (change, needle) in cases {
        let mut a = args(&out, &[]);
        change(&mut a);
        let e = train_error(&a);
        assert!(e.contains(needle), "{needle}: {e}");
    }
    let mut both = args(&out, &["--resume"]);
    both.init = Some(f.dataset.clone());
    assert!(train_error(&both).contains("mutually exclusive"));

    // Flags a fine-tuned or resumed run cannot honour.
    let mut tuned = args(&out, &[]);
    tuned.init = Some(f.dataset.clone());
    let e = train_error(&tuned);
    assert!(e.contains("--config conflicts with --init"), "{e}");
    let mut resumed = args(&out, &["--resume"]);
    resumed.config = Some("demo".into());
    let e = train_error(&resumed);
    assert!(e.contains("--config conflicts with --resume"), "{e}");
    let e = train_error(&args(&out, &["--resume", "--image-size", "96"]));
    assert!(e.contains("--image-size conflicts with --resume"), "{e}");
    let e = train_error(&args(&out, &["--image-size", "70"]));
    assert!(e.contains("image_size 70 must be a positive multiple of 16"), "{e}");

    // No train split.
    let no_split = f.root.join("no-split");
    std::fs::create_dir_all(&no_split).unwrap();
    std::fs::copy(f.dataset.join("vocab.txt"), no_split.join("vocab.txt")).unwrap();
    let mut a = args(&out, &[]);
    a.dataset = no_split;
    let e = train_error(&a);
    assert!(e.contains("RISORS_train.txt"), "{e}");

    // No tokenizer anywhere.
    let no_vocab = f.root.join("no-vocab");
    std::fs::create_dir_all(&no_vocab).unwrap();
    let mut a = args(&out, &[]);
    a.dataset = no_vocab;
    let e = train_error(&a);
    assert!(e.contains("no tokenizer") && e.contains("--tokenizer"), "{e}");

    // A vocabulary larger than the config's BERT.
    let big_vocab = f.root.join("big-vocab.txt");
    let words: Vec<String> = (0..300).map(|i| format!("w{i}")).collect();
    std::fs::write(
        &big_vocab,
        format!("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n{}\n", words.join("\n")),
    )
    .unwrap();
    let mut a = args(&out, &[]);
    a.tokenizer = Some(big_vocab);
    let e = train_error(&a);
    assert!(e.contains("bert.vocab_size is 128"), "{e}");

    // Fine-tuning from weights that do not fit the directory's config: the
    // error names the weights file.
    let mismatched = f.root.join("mismatched");
    std::fs::create_dir_all(&mismatched).unwrap();
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny");
    std::fs::copy(tiny.join("model.safetensors"), mismatched.join("model.safetensors")).unwrap();
    std::fs::copy(tiny.join("vocab.txt"), mismatched.join("vocab.txt")).unwrap();
    std::fs::copy(&f.config, mismatched.join("config.json")).unwrap();
    let mut a = args(&out, &[]);
    a.init = Some(mismatched);
    a.config = None;
    let e = train_error(&a);
    assert!(e.contains("mismatched/model.safetensors"), "{e}");

    // A config that does not parse.
    let mut a = args(&out, &[]);
    a.config = Some(f.root.join("missing.json").display().to_string());
    let e = train_error(&a);
    assert!(e.contains("missing.json"), "{e}");
}
