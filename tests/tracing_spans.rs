//! Each model component runs inside a TRACE span named after it (as
//! candle's models do), so `RUST_LOG=rsam=trace` shows where the time goes.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rsam::preprocess::Rgb8Image;
use rsam::{Point, Prompt};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;

/// Collects the names of the spans opened under it.
#[derive(Clone, Default)]
struct SpanNames(Arc<Mutex<BTreeSet<String>>>);

impl<S: Subscriber> Layer<S> for SpanNames {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        self.0.lock().unwrap().insert(attrs.metadata().name().to_string());
    }
}

fn image() -> Rgb8Image {
    let (width, height) = (40, 30);
    let data = (0..width * height * 3).map(|i| (i * 7 % 251) as u8).collect();
    Rgb8Image { width, height, data }
}

#[test]
fn encode_and_decode_open_a_span_per_component() {
    let model = common::load_tiny();
    let names = SpanNames::default();
    let subscriber = Registry::default().with(names.clone());
    tracing::subscriber::with_default(subscriber, || {
        let encoded = model.encode_image(&image()).unwrap();
        let prompt = Prompt {
            text: Some("the red roof".into()),
            points: vec![Point {
                x: 10.0,
                y: 12.0,
                label: 1,
            }],
            ..Default::default()
        };
        model.predict(&encoded, vec![prompt]).unwrap();
    });
    let seen = names.0.lock().unwrap().clone();
    for expected in [
        "image-encoder",
        "hiera",
        "hiera-block",
        "fpn-neck",
        "prompt-encoder-points",
        "mask-decoder",
        "bert",
        "bert-layer",
        "two-way-guidance",
        "two-way-guidance-block",
        "two-way-transformer",
        "two-way-block",
    ] {
        assert!(seen.contains(expected), "no {expected:?} span among {seen:?}");
    }
}

#[test]
fn without_a_trace_subscriber_no_span_is_recorded() {
    // The same run under a subscriber that only takes INFO: the spans are
    // disabled at their call sites, so they cost nothing in production.
    let model = common::load_tiny();
    let names = SpanNames::default();
    let subscriber = Registry::default()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(names.clone());
    tracing::subscriber::with_default(subscriber, || {
        model.encode_image(&image()).unwrap();
    });
    assert!(names.0.lock().unwrap().is_empty());
}
