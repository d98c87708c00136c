//! `rsam eval`: metrics on predictions of known IoU, the click sampler and its
//! distance transform, the RISORS reader's error handling, and model mode end
//! to end on the tiny fixture model.

mod common;
mod eval_support;

use eval_support::*;
use rsam::eval::clicks::{next_click, squared_edt, Click};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Metrics on predictions of known IoU
// ---------------------------------------------------------------------------

/// Masks are 8 wide x 6 high (not square, to catch a transposition).
const W: usize = 8;
const H: usize = 6;

/// First `n` pixels in row-major order.
fn first(n: usize) -> Vec<u8> {
    mask(W, H, |x, y| y * W + x < n)
}

/// Pixels `a..b` in row-major order.
fn range(a: usize, b: usize) -> Vec<u8> {
    mask(W, H, |x, y| (a..b).contains(&(y * W + x)))
}

/// Two images, five annotations (one of area 0), four predictions:
///
/// | sample | category | GT          | prediction       | I | U  | IoU   |
/// |--------|----------|-------------|------------------|---|----|-------|
/// | a/1    | vehicle  | px 0..10    | px 2..12         | 8 | 12 | 2/3   |
/// | a/2    | building | px 20..24   | px 20..24        | 4 | 4  | 1     |
/// | b/3    | vehicle  | px 0..10    | px 0..7          | 7 | 10 | 0.7   |
/// | b/4    | building | px 30..36   | (missing)        | 0 | 6  | 0     |
/// | b/5    | building | empty, area 0 -> skipped                        |
fn known_dataset() -> (DatasetDir, std::path::PathBuf) {
    let ds = DatasetDir::new();
    ds.split("test", &["a", "b"]);
    ds.annotations(
        "a",
        vec![
            annotation(1, "vehicle", "the car", &first(10), H, W),
            annotation(2, "building", "the house", &range(20, 24), H, W),
        ],
    );
    ds.annotations(
        "b",
        vec![
            annotation(3, "vehicle", "the truck", &first(10), H, W),
            annotation(4, "building", "the shed", &range(30, 36), H, W),
            annotation(5, "building", "nothing", &first(0), H, W),
        ],
    );
    let preds = json!([
        prediction("a", 1, &range(2, 12), H, W),
        prediction("a", 2, &range(20, 24), H, W),
        prediction("b", 3, &first(7), H, W),
    ]);
    let file = ds.file("preds.json");
    std::fs::write(&file, preds.to_string()).unwrap();
    (ds, file)
}

fn score_known(extra: &[&str]) -> (DatasetDir, Value) {
    let (ds, preds) = known_dataset();
    let json_out = ds.file("report.json");
    let mut args = vec![
        "eval",
        "--predictions",
        preds.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
        "--split",
        "test",
        "--json",
        json_out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = rsam(&args);
    let printed = summary(&out);
    let written = read_json(&json_out);
    assert_eq!(printed, written, "stdout summary and --json agree");
    (ds, written)
}

#[test]
fn every_metric_is_exact_on_known_ious() {
    let (_ds, r) = score_known(&[]);
    assert_eq!(r["count"], 4);
    assert_eq!(r["images"], 2);
    assert_eq!(r["missing_predictions"], 1, "b/4 has no prediction");
    close(&r["oIoU"], (8.0 + 4.0 + 7.0) / (12.0 + 4.0 + 10.0 + 6.0));
    close(&r["mIoU"], (2.0 / 3.0 + 1.0 + 0.7) / 4.0);
    // IoU strictly greater than the threshold: 0.7 exactly fails P@0.7.
    close(&r["P@0.5"], 0.75);
    close(&r["P@0.6"], 0.75);
    close(&r["P@0.7"], 0.25);
    close(&r["P@0.8"], 0.25);
    close(&r["P@0.9"], 0.25);

    let skipped = r["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0]["image"], "b");
    assert_eq!(skipped[0]["id"], 5);
    assert!(skipped[0]["reason"].as_str().unwrap().contains("area"));

    // Without --clicks there is exactly the text-only step, equal to the top level.
    let clicks = r["clicks"].as_array().unwrap();
    assert_eq!(clicks.len(), 1);
    assert_eq!(clicks[0]["clicks"], 0);
    for key in ["count", "oIoU", "mIoU", "P@0.5", "P@0.9", "per_category"] {
        assert_eq!(clicks[0][key], r[key], "{key}");
    }
}

#[test]
fn per_category_table() {
    let (_ds, r) = score_known(&[]);
    let cats = r["per_category"].as_object().unwrap();
    assert_eq!(cats.keys().collect::<Vec<_>>(), ["building", "vehicle"]);
    let v = &cats["vehicle"];
    assert_eq!(v["count"], 2);
    close(&v["oIoU"], 15.0 / 22.0);
    close(&v["mIoU"], (2.0 / 3.0 + 0.7) / 2.0);
    let b = &cats["building"];
    assert_eq!(b["count"], 2);
    close(&b["oIoU"], 4.0 / 10.0);
    close(&b["mIoU"], 0.5);
}

#[test]
fn markdown_layout() {
    let (ds, _) = known_dataset();
    let md = ds.file("report.md");
    let preds = ds.file("preds.json");
    let out = rsam(&[
        "eval",
        "--predictions",
        preds.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
        "--markdown",
        md.to_str().unwrap(),
    ]);
    summary(&out);
    let text = std::fs::read_to_string(&md).unwrap();
    let pct = |v: f64| format!("{:.2}", v * 100.0);
    let overall = format!(
        "| 4 | 75.00 | 75.00 | 25.00 | 25.00 | 25.00 | {} | {} |",
        pct(19.0 / 32.0),
        pct((2.0 / 3.0 + 1.0 + 0.7) / 4.0)
    );
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| *l == needle)
            .unwrap_or_else(|| panic!("no line {needle:?} in\n{text}"))
    };
    assert!(lines[0].starts_with("# RSAM evaluation: "), "{text}");
    let h = at("## Overall (%)");
    assert_eq!(
        lines[h + 2],
        "| Samples | P@0.5 | P@0.6 | P@0.7 | P@0.8 | P@0.9 | oIoU | mIoU |"
    );
    assert_eq!(lines[h + 3], "|---:|---:|---:|---:|---:|---:|---:|---:|");
    assert_eq!(lines[h + 4], overall);
    let c = at("## Per category (%)");
    assert_eq!(lines[c + 2], "| Category | Samples | oIoU | mIoU |");
    assert_eq!(lines[c + 4], "| building | 2 | 40.00 | 50.00 |");
    assert_eq!(
        lines[c + 5],
        format!(
            "| vehicle | 2 | {} | {} |",
            pct(15.0 / 22.0),
            pct((2.0 / 3.0 + 0.7) / 2.0)
        )
    );
    assert!(!text.contains("clicks"), "no click table without --clicks");
}

#[test]
fn missing_predictions_count_as_empty() {
    let (ds, _) = known_dataset();
    let empty = ds.file("none.json");
    std::fs::write(&empty, "[]").unwrap();
    let r = summary(&rsam(&[
        "eval",
        "--predictions",
        empty.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
    ]));
    assert_eq!(r["count"], 4);
    assert_eq!(r["missing_predictions"], 4);
    close(&r["oIoU"], 0.0);
    close(&r["mIoU"], 0.0);
    close(&r["P@0.5"], 0.0);
}

#[test]
fn limit_counts_images() {
    let (_ds, r) = score_known(&["--limit", "1"]);
    assert_eq!(r["images"], 1);
    assert_eq!(r["count"], 2);
    close(&r["oIoU"], 12.0 / 16.0);
}

// ---------------------------------------------------------------------------
// Click sampler and distance transform
// ---------------------------------------------------------------------------

/// Parses a picture: `#` foreground, `.` background; returns (mask, w, h).
fn picture(rows: &[&str]) -> (Vec<u8>, usize, usize) {
    let w = rows[0].len();
    let data = rows
        .iter()
        .flat_map(|r| r.bytes().map(|b| u8::from(b == b'#')))
        .collect();
    (data, w, rows.len())
}

#[test]
fn click_is_positive_at_the_centre_of_a_missed_region() {
    let (gt, w, h) = picture(&["......", ".###..", ".###..", ".###..", "......"]);
    let pred = vec![0; w * h];
    assert_eq!(
        next_click(&pred, &gt, w, h),
        Some(Click {
            x: 2,
            y: 2,
            positive: true
        })
    );
}

#[test]
fn click_is_negative_in_a_false_positive_region() {
    let (pred, w, h) = picture(&["#####...", "#####...", "#####...", "........"]);
    let (gt, _, _) = picture(&["........", "........", "........", "......##"]);
    // The false-positive block is 5x3 against the image border: its
    // farthest pixels (distance 2) are (1,1), (2,1), (3,1); the first wins.
    // The missed 2x1 region only reaches distance 1.
    assert_eq!(
        next_click(&pred, &gt, w, h),
        Some(Click {
            x: 1,
            y: 1,
            positive: false
        })
    );
}

#[test]
fn equal_distances_give_a_negative_click() {
    // One missed pixel and one wrong pixel, both at distance 1: the official
    // sampler is positive only when the false-negative distance is larger.
    let (gt, w, h) = picture(&["#...", "...."]);
    let (pred, _, _) = picture(&["....", "...#"]);
    assert_eq!(
        next_click(&pred, &gt, w, h),
        Some(Click {
            x: 3,
            y: 1,
            positive: false
        })
    );
}

#[test]
fn ties_go_to_the_first_pixel_in_row_major_order() {
    // A 2x2 missed block: all four pixels are at distance 1.
    let (gt, w, h) = picture(&[".....", "..##.", "..##.", "....."]);
    let pred = vec![0; w * h];
    assert_eq!(
        next_click(&pred, &gt, w, h),
        Some(Click {
            x: 2,
            y: 1,
            positive: true
        })
    );
}

#[test]
fn the_image_border_counts_as_a_boundary() {
    // An error covering the whole 7x3 image: without the zero border there
    // would be no boundary at all. Row 1 is 2 from the top and bottom edges;
    // columns 1..=5 are at least 2 from the side edges.
    let gt = vec![1u8; 7 * 3];
    let pred = vec![0u8; 7 * 3];
    assert_eq!(
        next_click(&pred, &gt, 7, 3),
        Some(Click {
            x: 1,
            y: 1,
            positive: true
        })
    );
    let d = squared_edt(&[true; 21], 7, 3);
    assert_eq!(&d[7..14], &[1, 4, 4, 4, 4, 4, 1]);
    assert_eq!(&d[..7], &[1; 7]);
}

#[test]
fn click_coordinates_are_column_and_row() {
    // Tall map: a single missed pixel at column 1, row 4.
    let (gt, w, h) = picture(&["...", "...", "...", "...", ".#.", "..."]);
    let pred = vec![0; w * h];
    assert_eq!(
        next_click(&pred, &gt, w, h),
        Some(Click {
            x: 1,
            y: 4,
            positive: true
        })
    );
}

#[test]
fn no_error_gives_no_click() {
    let (gt, w, h) = picture(&["..#", ".##"]);
    assert_eq!(next_click(&gt, &gt, w, h), None);
    assert_eq!(next_click(&[0; 6], &[0; 6], 3, 2), None);
}

/// Brute force: squared distance to the nearest background pixel, where the
/// one-pixel border around the map is background.
fn brute_edt(fg: &[bool], w: usize, h: usize) -> Vec<u64> {
    let mut zeros: Vec<(i64, i64)> = Vec::new();
    for y in -1..=h as i64 {
        for x in -1..=w as i64 {
            let inside = (0..w as i64).contains(&x) && (0..h as i64).contains(&y);
            if !inside || !fg[y as usize * w + x as usize] {
                zeros.push((x, y));
            }
        }
    }
    (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as i64, (i / w) as i64);
            zeros
                .iter()
                .map(|&(zx, zy)| ((x - zx).pow(2) + (y - zy).pow(2)) as u64)
                .min()
                .unwrap()
        })
        .collect()
}

#[test]
fn edt_matches_brute_force_on_random_maps() {
    // A small LCG keeps the test deterministic without a random-number crate.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as u32
    };
    for case in 0..300 {
        let w = 1 + next() as usize % 14;
        let h = 1 + next() as usize % 14;
        let density = [5, 50, 80, 95, 100][case % 5];
        let fg: Vec<bool> = (0..w * h).map(|_| next() % 100 < density).collect();
        assert_eq!(squared_edt(&fg, w, h), brute_edt(&fg, w, h), "case {case}: {w}x{h}");
    }
}

// ---------------------------------------------------------------------------
// Errors and skipped inputs
// ---------------------------------------------------------------------------

fn one_line_error(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "expected a failure, got {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn missing_split_file_is_a_clear_error() {
    let ds = DatasetDir::new();
    let preds = ds.file("p.json");
    std::fs::write(&preds, "[]").unwrap();
    let o = rsam(&[
        "eval",
        "--predictions",
        preds.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
        "--split",
        "val",
    ]);
    let err = one_line_error(&o);
    assert!(err.contains("RISORS_val.txt"), "{err}");
}

#[test]
fn model_and_predictions_are_exclusive_and_one_is_required() {
    let (ds, preds) = known_dataset();
    let d = ds.path().to_str().unwrap();
    let tiny = common::tiny_dir();
    let both = rsam(&[
        "eval",
        "--model",
        tiny.to_str().unwrap(),
        "--predictions",
        preds.to_str().unwrap(),
        "--dataset",
        d,
    ]);
    assert!(one_line_error(&both).contains("mutually exclusive"));
    let neither = rsam(&["eval", "--dataset", d]);
    assert!(one_line_error(&neither).contains("--model"));
    let clicks = rsam(&[
        "eval",
        "--predictions",
        preds.to_str().unwrap(),
        "--dataset",
        d,
        "--clicks",
        "2",
    ]);
    assert!(one_line_error(&clicks).contains("--clicks"));
    let bad_file = ds.file("bad.json");
    std::fs::write(&bad_file, "{\"not\": \"a list\"}").unwrap();
    let bad = rsam(&["eval", "--predictions", bad_file.to_str().unwrap(), "--dataset", d]);
    assert!(one_line_error(&bad).contains("bad.json"));
}

#[test]
fn corrupt_image_and_annotation_are_skipped_and_reported() {
    let ds = DatasetDir::new();
    ds.split(
        "test",
        &["good", "broken_image", "broken_annotation", "no_image", "bad_mask"],
    );
    let m = mask(32, 24, |x, y| (4..20).contains(&x) && (6..18).contains(&y));
    ds.image("good", "png", 32, 24);
    ds.annotations(
        "good",
        vec![annotation(1, "ship", "the ship in the harbor", &m, 24, 32)],
    );
    ds.raw_image("broken_image", "jpg", b"\xff\xd8\xff\xe0 this is not really a jpeg");
    ds.annotations("broken_image", vec![annotation(2, "ship", "the ship", &m, 24, 32)]);
    ds.image("broken_annotation", "jpg", 32, 24);
    ds.raw_annotation_file("broken_annotation", b"{\"annotations\": [ {\"id\": ");
    ds.annotations("no_image", vec![annotation(3, "ship", "the ship", &m, 24, 32)]);
    ds.image("bad_mask", "png", 32, 24);
    let mut bad = annotation(4, "ship", "the ship", &m, 24, 32);
    bad["segmentation"]["counts"] = json!("this is not RLE");
    ds.annotations(
        "bad_mask",
        vec![
            bad,
            annotation(5, "tank", "the large storage tank on the left", &m, 24, 32),
        ],
    );

    let tiny = common::tiny_dir();
    let o = rsam(&[
        "eval",
        "--model",
        tiny.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
    ]);
    let r = summary(&o);
    assert_eq!(r["count"], 2, "good/1 and bad_mask/5 are scored");
    assert_eq!(r["images"], 2);
    let skipped = r["skipped"].as_array().unwrap();
    let entry = |image: &str| {
        skipped
            .iter()
            .find(|s| s["image"] == image)
            .unwrap_or_else(|| panic!("{image} not reported in {skipped:?}"))
    };
    assert!(entry("broken_image")["id"].is_null());
    assert!(entry("broken_annotation")["reason"].as_str().unwrap().contains("JSON"));
    assert!(entry("no_image")["reason"].as_str().unwrap().contains("no_image"));
    assert_eq!(entry("bad_mask")["id"], 4);
    assert_eq!(skipped.len(), 4);
    let err = stderr(&o);
    for name in ["broken_image", "broken_annotation", "no_image", "bad_mask"] {
        assert!(err.contains(name), "stderr names {name}: {err}");
    }
}

// ---------------------------------------------------------------------------
// Model mode end to end on the tiny fixture model
// ---------------------------------------------------------------------------

/// The three fixture images with two sentences each; masks at the images'
/// resolution except one annotated at half resolution.
fn fixture_dataset() -> DatasetDir {
    let ds = DatasetDir::new();
    let images = common::tiny_dir().join("images");
    ds.copy_image(&images.join("square.png"), "square", "png");
    ds.copy_image(&images.join("tall.jpg"), "tall", "jpg");
    ds.copy_image(&images.join("wide.png"), "wide", "png");
    ds.split("test", &["square", "tall", "wide"]);
    let blob = |w: usize, h: usize, cx: f64, cy: f64, r: f64| {
        mask(w, h, |x, y| (x as f64 - cx).powi(2) + (y as f64 - cy).powi(2) < r * r)
    };
    let ann = |id, cat, text, m: Vec<u8>, w, h| annotation(id, cat, text, &m, h, w);
    ds.annotations(
        "square",
        vec![
            ann(
                10,
                "vehicle",
                "a small white vehicle near the bottom right corner of the parking lot",
                blob(128, 128, 96.0, 100.0, 12.0),
                128,
                128,
            ),
            ann(
                11,
                "storage tank",
                "the large storage tank on the left",
                blob(128, 128, 30.0, 60.0, 25.0),
                128,
                128,
            ),
        ],
    );
    ds.annotations(
        "tall",
        vec![
            ann(
                20,
                "ship",
                "the ship in the harbor",
                blob(96, 160, 48.0, 40.0, 20.0),
                96,
                160,
            ),
            ann(
                21,
                "bridge",
                "bridge",
                mask(96, 160, |_, y| (70..90).contains(&y)),
                96,
                160,
            ),
        ],
    );
    ds.annotations(
        "wide",
        vec![
            ann(
                30,
                "airplane",
                "the airplane parked at the top of the airport",
                blob(200, 150, 100.0, 30.0, 18.0),
                200,
                150,
            ),
            ann(
                31,
                "storage tank",
                "the large storage tank on the left",
                blob(100, 75, 20.0, 40.0, 10.0),
                100,
                75,
            ),
        ],
    );
    ds
}

fn model_run(ds: &DatasetDir, extra: &[&str]) -> Value {
    let tiny = common::tiny_dir();
    let mut args = vec![
        "eval",
        "--model",
        tiny.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    summary(&rsam(&args))
}

fn assert_metrics_shape(m: &Value) {
    for key in ["oIoU", "mIoU", "P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9"] {
        let v = m[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {m}"));
        assert!((0.0..=1.0).contains(&v), "{key} = {v}");
    }
    assert_eq!(m["count"], 6);
    let cats = m["per_category"].as_object().unwrap();
    assert_eq!(cats.len(), 5);
    assert_eq!(cats["storage tank"]["count"], 2);
}

/// The metrics that must agree between two runs of the same masks.
fn scores(r: &Value) -> Value {
    json!([
        r["count"],
        r["oIoU"],
        r["mIoU"],
        r["P@0.5"],
        r["P@0.6"],
        r["P@0.7"],
        r["P@0.8"],
        r["P@0.9"],
        r["per_category"]
    ])
}

#[test]
fn model_mode_end_to_end_with_clicks_and_saved_predictions() {
    let ds = fixture_dataset();
    let (json_out, md_out, saved) = (ds.file("r.json"), ds.file("r.md"), ds.file("saved.json"));
    let r = model_run(
        &ds,
        &[
            "--clicks",
            "2",
            "--json",
            json_out.to_str().unwrap(),
            "--markdown",
            md_out.to_str().unwrap(),
            "--save-predictions",
            saved.to_str().unwrap(),
        ],
    );
    assert_eq!(r, read_json(&json_out));
    assert_eq!(r["images"], 3);
    assert_eq!(r["skipped"], json!([]));
    assert_metrics_shape(&r);
    let clicks = r["clicks"].as_array().unwrap();
    assert_eq!(clicks.len(), 3, "after 0, 1 and 2 clicks");
    for (k, step) in clicks.iter().enumerate() {
        assert_eq!(step["clicks"], k);
        assert_metrics_shape(step);
    }
    assert_eq!(scores(&clicks[0]), scores(&r), "clicks[0] is the text-only result");
    assert!(
        scores(&clicks[1]) != scores(&r) || scores(&clicks[2]) != scores(&r),
        "the clicks change the predictions"
    );
    let md = std::fs::read_to_string(&md_out).unwrap();
    assert!(md.contains("## Interactive correction clicks (%)"), "{md}");
    assert!(md.contains("\n| 2 | "), "{md}");

    // The saved text-only masks, re-scored without the model, give the same numbers.
    let saved_list = read_json(&saved);
    assert_eq!(saved_list.as_array().unwrap().len(), 6);
    let half = saved_list.as_array().unwrap().iter().find(|p| p["id"] == 31).unwrap();
    assert_eq!(
        half["segmentation"]["size"],
        json!([75, 100]),
        "masks at the annotation's resolution"
    );
    let rescored = summary(&rsam(&[
        "eval",
        "--predictions",
        saved.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
    ]));
    assert_eq!(scores(&rescored), scores(&r));
    assert_eq!(rescored["missing_predictions"], 0);
}

#[test]
fn batch_size_does_not_change_results() {
    let ds = fixture_dataset();
    let one = model_run(&ds, &["--clicks", "1", "--batch", "1"]);
    let many = model_run(&ds, &["--clicks", "1", "--batch", "16"]);
    assert_eq!(one["clicks"], many["clicks"]);
}

#[test]
fn the_library_scores_a_dataset_without_the_cli() {
    let (ds, preds) = known_dataset();
    let set = rsam::eval::predictions::PredictionSet::read(&preds).unwrap();
    let dataset = rsam::risors::Dataset::open(ds.path(), "test").unwrap();
    let outcome = rsam::eval::runner::evaluate(
        &dataset,
        &rsam::eval::runner::Source::Saved(&set),
        u64::MAX,
        &rsam::eval::progress::Progress::hidden(),
    );
    assert_eq!(outcome.report.count, 4);
    assert!((outcome.report.oiou - 19.0 / 32.0).abs() < 1e-12);
}

#[test]
fn a_prediction_of_the_wrong_size_counts_as_empty() {
    let (ds, _) = known_dataset();
    let preds = ds.file("wrong.json");
    let list = json!([
        prediction("a", 1, &[1; 9], 3, 3),
        prediction("a", 2, &range(20, 24), H, W)
    ]);
    std::fs::write(&preds, list.to_string()).unwrap();
    let o = rsam(&[
        "eval",
        "--predictions",
        preds.to_str().unwrap(),
        "--dataset",
        ds.path().to_str().unwrap(),
    ]);
    let r = summary(&o);
    assert_eq!(r["missing_predictions"], 3, "a/1 (wrong size), b/3 and b/4");
    // Unions: the GT alone where the mask counts as empty (10 + 10 + 6), 4 for a/2.
    close(&r["oIoU"], 4.0 / 30.0);
    assert!(stderr(&o).contains("differs from the annotation"), "{}", stderr(&o));
}

/// The click loop, replayed by hand with the model API: the text-only
/// prediction, then each click sampled at the annotation's resolution,
/// placed at (column, row) scaled to image pixels, and decoded with all
/// clicks so far and the previous low-resolution logits as the mask prompt.
#[test]
fn the_click_protocol_matches_a_hand_replay() {
    use rsam::eval::metrics::SampleScore;
    use rsam::eval::runner::{evaluate, Source};
    use rsam::{Point, Prompt};

    let ds = fixture_dataset();
    ds.split("one", &["wide"]);
    let model = common::load_tiny();
    let dataset = rsam::risors::Dataset::open(ds.path(), "one").unwrap();
    let source = Source::Model {
        model: &model,
        clicks: 3,
        batch: 16,
        keep_masks: false,
    };
    let progress = rsam::eval::progress::Progress::hidden();
    let report = evaluate(&dataset, &source, u64::MAX, &progress).report;
    assert_eq!(report.count, 2);

    // Replay annotation 31: a half-resolution (100 x 75) mask of the 200 x 150 image.
    let samples = dataset.load_samples("wide", u64::MAX).unwrap().samples;
    let sample = samples
        .iter()
        .find(|s| s.id == rsam::risors::AnnotationId::Int(31))
        .unwrap();
    let (gw, gh) = (sample.gt.width, sample.gt.height);
    let bytes = std::fs::read(ds.file("JPEGImages/wide.png")).unwrap();
    let features = model.encode_bytes(&bytes).unwrap();
    let mut prompt = Prompt::text(sample.sentence.clone());
    let mut prediction = model.predict(&features, vec![prompt.clone()]).unwrap().remove(0);
    let mut replay = Vec::new();
    for _ in 0..=3 {
        let mask = prediction.mask(gw, gh);
        replay.push(SampleScore::of(&mask.data, &sample.gt.data));
        let Some(click) = next_click(&mask.data, &sample.gt.data, gw as usize, gh as usize) else {
            break;
        };
        prompt.points.push(Point {
            x: click.x as f32 * 2.0,
            y: click.y as f32 * 2.0,
            label: u8::from(click.positive),
        });
        prompt.mask_input = Some(prediction.low_res_logits.clone());
        prediction = model.predict(&features, vec![prompt.clone()]).unwrap().remove(0);
    }
    for (k, score) in replay.iter().enumerate() {
        let cat = &report.clicks[k].metrics.per_category["storage tank"];
        assert_eq!(cat.count, 1);
        assert_eq!(cat.miou, score.iou(), "after {k} clicks");
    }
}
