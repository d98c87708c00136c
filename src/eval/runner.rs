//! The evaluation loop: every image of the split, its samples scored against
//! a model (text-only, then correction clicks) or against saved masks.
//!
//! In model mode each image is decoded and encoded once and all its
//! sentences are decoded on that encoding, `batch` prompts per decoder call
//! (a batch gives exactly what each prompt gives alone, so batching changes
//! speed, not results).

use rayon::prelude::*;

use super::clicks::{next_click, Click};
use super::metrics::{Meter, SampleScore};
use super::predictions::{PredictionRecord, PredictionSet};
use super::progress::Progress;
use super::report::Report;
use crate::mask::rle;
use crate::mask::BinaryMask;
use crate::preprocess::Rgb8Image;
use crate::risors::{Dataset, Sample, Skipped};
use crate::{EncodedImage, Point, Prediction, Prompt, Rsam};

/// Where the masks come from.
pub enum Source<'a> {
    /// Run a model: text-only, then `clicks` correction clicks.
    Model {
        model: &'a Rsam,
        clicks: usize,
        /// Prompts per decoder call.
        batch: usize,
        /// Keep the text-only masks for `--save-predictions`.
        keep_masks: bool,
    },
    /// Score saved masks; a missing one counts as an empty mask.
    Saved(&'a PredictionSet),
}

impl Source<'_> {
    fn steps(&self) -> usize {
        match self {
            Source::Model { clicks, .. } => clicks + 1,
            Source::Saved(_) => 1,
        }
    }
}

/// What a run produced: the report and, when asked, the text-only masks.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub predictions: Vec<PredictionRecord>,
}

/// Running state of an evaluation.
struct Tally {
    meters: Vec<Meter>,
    skipped: Vec<Skipped>,
    images: u64,
    missing: u64,
    records: Vec<PredictionRecord>,
}

impl Tally {
    fn skip(&mut self, progress: &Progress, entry: Skipped) {
        if !entry.by_rule {
            let id = entry
                .id
                .as_ref()
                .map(|i| format!(" annotation {i}"))
                .unwrap_or_default();
            progress.warn(&format!("skipped {}{id}: {}", entry.image, entry.reason));
        }
        self.skipped.push(entry);
    }

    fn skip_image(&mut self, progress: &Progress, image: &str, reason: String) {
        self.skip(
            progress,
            Skipped {
                image: image.to_string(),
                id: None,
                reason,
                by_rule: false,
            },
        );
    }
}

/// Scores every image of `dataset` with masks from `source`.
/// `max_pixels` bounds decoded images and masks.
pub fn evaluate(dataset: &Dataset, source: &Source, max_pixels: u64, progress: &Progress) -> Outcome {
    let mut tally = Tally {
        meters: vec![Meter::default(); source.steps()],
        skipped: Vec::new(),
        images: 0,
        missing: 0,
        records: Vec::new(),
    };
    for name in dataset.names() {
        evaluate_image(dataset, name, source, max_pixels, progress, &mut tally);
        progress.inc();
    }
    progress.finish();
    let missing = matches!(source, Source::Saved(_)).then_some(tally.missing);
    let steps = tally.meters.iter().map(Meter::metrics).collect();
    Outcome {
        report: Report::new(steps, tally.images, tally.skipped, missing),
        predictions: tally.records,
    }
}

fn evaluate_image(
    dataset: &Dataset,
    name: &str,
    source: &Source,
    max_pixels: u64,
    progress: &Progress,
    tally: &mut Tally,
) {
    let loaded = match dataset.load_samples(name, max_pixels) {
        Ok(l) => l,
        Err(e) => return tally.skip_image(progress, name, e.to_string()),
    };
    for s in loaded.skipped {
        tally.skip(progress, s);
    }
    match source {
        Source::Saved(set) => score_saved(name, &loaded.samples, set, progress, tally),
        Source::Model {
            model,
            clicks,
            batch,
            keep_masks,
        } => {
            let image = match read_image(dataset, name, max_pixels) {
                Ok(i) => i,
                Err(reason) => return tally.skip_image(progress, name, reason),
            };
            let features = match model.encode_image(&image) {
                Ok(f) => f,
                Err(e) => return tally.skip_image(progress, name, format!("encoding failed: {e}")),
            };
            let run = ImageRun {
                model,
                features: &features,
                clicks: *clicks,
            };
            for chunk in loaded.samples.chunks((*batch).max(1)) {
                run.chunk_isolated(name, chunk, *keep_masks, progress, tally);
            }
        }
    }
    tally.images += 1;
}

fn read_image(dataset: &Dataset, name: &str, max_pixels: u64) -> Result<Rgb8Image, String> {
    let path = dataset.image_path(name).map_err(|e| e.to_string())?;
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // Annotations are drawn on the stored pixel grid, as PIL loads it.
    crate::preprocess::decode_image_oriented(&bytes, max_pixels, false).map_err(|e| format!("{}: {e}", path.display()))
}

/// Scores saved masks; a missing or unusable one counts as empty.
fn score_saved(name: &str, samples: &[Sample], set: &PredictionSet, progress: &Progress, tally: &mut Tally) {
    for sample in samples {
        let gt = &sample.gt;
        let mask = match set.get(name, &sample.id).map(|rle| saved_mask(rle, gt)) {
            Some(Ok(mask)) => mask,
            Some(Err(reason)) => {
                progress.warn(&format!(
                    "prediction for {name} annotation {}: {reason}; scored as an empty mask",
                    sample.id
                ));
                tally.missing += 1;
                Vec::new()
            }
            None => {
                tally.missing += 1;
                Vec::new()
            }
        };
        tally.meters[0].add(&sample.category, SampleScore::of(&mask, &gt.data));
    }
}

/// A saved mask, checked to be at the ground truth's size.
fn saved_mask(rle: &rle::Rle, gt: &BinaryMask) -> Result<Vec<u8>, String> {
    if rle.size != [gt.height, gt.width] {
        return Err(format!(
            "size {:?} differs from the annotation's [{}, {}]",
            rle.size, gt.height, gt.width
        ));
    }
    rle::decode(rle).map_err(|e| e.to_string())
}

/// One encoded image and the protocol to run on its sentences.
struct ImageRun<'a> {
    model: &'a Rsam,
    features: &'a EncodedImage,
    clicks: usize,
}

/// The prediction history of one sample.
struct Trace {
    /// Scores after 0, 1, ... clicks.
    scores: Vec<SampleScore>,
    /// The text-only mask.
    first: rle::Rle,
}

/// One sample during the click loop.
struct State<'a> {
    sample: &'a Sample,
    points: Vec<Point>,
    prediction: Prediction,
    mask: BinaryMask,
    /// No error left: later steps repeat the last score.
    done: bool,
    scores: Vec<SampleScore>,
}

impl ImageRun<'_> {
    /// Runs a chunk; when the batch fails (e.g. a sentence the tokenizer
    /// rejects), runs its samples one by one so that only the culprit is
    /// skipped.
    fn chunk_isolated(&self, name: &str, chunk: &[Sample], keep: bool, progress: &Progress, tally: &mut Tally) {
        match self.chunk(chunk) {
            Ok(traces) => record(name, chunk, traces, keep, tally),
            Err(_) if chunk.len() > 1 => {
                for one in chunk.chunks(1) {
                    self.chunk_isolated(name, one, keep, progress, tally);
                }
            }
            Err(e) => tally.skip(
                progress,
                Skipped {
                    image: name.to_string(),
                    id: Some(chunk[0].id.clone()),
                    reason: format!("decoding failed: {e}"),
                    by_rule: false,
                },
            ),
        }
    }

    /// The text-only prediction and the correction clicks of a chunk.
    fn chunk(&self, samples: &[Sample]) -> crate::Result<Vec<Trace>> {
        let prompts: Vec<Prompt> = samples.iter().map(|s| Prompt::text(s.sentence.clone())).collect();
        let predictions = self.model.predict(self.features, prompts)?;
        let mut states: Vec<State> = samples
            .par_iter()
            .zip(predictions.into_par_iter())
            .map(|(sample, prediction)| State::new(sample, prediction))
            .collect();
        let first: Vec<rle::Rle> = states.iter().map(|s| s.mask.to_rle()).collect();
        for _ in 0..self.clicks {
            self.click_step(&mut states)?;
        }
        Ok(states
            .into_iter()
            .zip(first)
            .map(|(s, first)| Trace {
                scores: s.scores,
                first,
            })
            .collect())
    }

    /// Adds one correction click to every sample that still has an error,
    /// decodes those again with the previous logits as the mask prompt, and
    /// scores every sample.
    fn click_step(&self, states: &mut [State]) -> crate::Result<()> {
        let (w, h) = (self.features.width, self.features.height);
        states.par_iter_mut().for_each(|s| s.add_click(w, h));
        let active: Vec<usize> = (0..states.len()).filter(|&i| !states[i].done).collect();
        let prompts: Vec<Prompt> = active.iter().map(|&i| states[i].prompt()).collect();
        let predictions = self.model.predict(self.features, prompts)?;
        for (&i, p) in active.iter().zip(predictions) {
            states[i].prediction = p;
        }
        states.par_iter_mut().for_each(State::rescore);
        Ok(())
    }
}

impl<'a> State<'a> {
    fn new(sample: &'a Sample, prediction: Prediction) -> Self {
        let gt = &sample.gt;
        let mask = prediction.mask(gt.width, gt.height);
        let score = SampleScore::of(&mask.data, &gt.data);
        Self {
            sample,
            points: Vec::new(),
            prediction,
            mask,
            done: false,
            scores: vec![score],
        }
    }

    /// Samples the next click from the current error (at the ground truth's
    /// resolution) and appends it, in image pixels; marks the sample done
    /// when there is no error.
    fn add_click(&mut self, image_w: u32, image_h: u32) {
        if self.done {
            return;
        }
        let gt = &self.sample.gt;
        match next_click(&self.mask.data, &gt.data, gt.width as usize, gt.height as usize) {
            Some(click) => self.points.push(to_image_point(click, gt, image_w, image_h)),
            None => self.done = true,
        }
    }

    /// The sentence, all clicks so far, and the previous low-resolution
    /// logits as the mask prompt (as the official `_iter_correct_pt_sampling`
    /// feeds them back).
    fn prompt(&self) -> Prompt {
        Prompt {
            text: Some(self.sample.sentence.clone()),
            points: self.points.clone(),
            bbox: None,
            mask_input: Some(self.prediction.low_res_logits.clone()),
        }
    }

    fn rescore(&mut self) {
        let last = self.scores.last().copied().unwrap_or_default();
        if self.done {
            self.scores.push(last);
            return;
        }
        let gt = &self.sample.gt;
        self.mask = self.prediction.mask(gt.width, gt.height);
        self.scores.push(SampleScore::of(&self.mask.data, &gt.data));
    }
}

/// A click on the ground-truth grid in image pixels: `(column, row)` as the
/// official sampler places it, scaled when the annotation's resolution
/// differs from the image's (identity when they agree).
fn to_image_point(click: Click, gt: &BinaryMask, image_w: u32, image_h: u32) -> Point {
    let scale = |v: u32, from: u32, to: u32| {
        if from == to || from == 0 {
            v as f32
        } else {
            (f64::from(v) * f64::from(to) / f64::from(from)) as f32
        }
    };
    Point {
        x: scale(click.x, gt.width, image_w),
        y: scale(click.y, gt.height, image_h),
        label: u8::from(click.positive),
    }
}

fn record(name: &str, samples: &[Sample], traces: Vec<Trace>, keep: bool, tally: &mut Tally) {
    for (sample, trace) in samples.iter().zip(traces) {
        for (meter, score) in tally.meters.iter_mut().zip(&trace.scores) {
            meter.add(&sample.category, *score);
        }
        if keep {
            tally.records.push(PredictionRecord {
                image: name.to_string(),
                id: sample.id.clone(),
                segmentation: trace.first,
            });
        }
    }
}
