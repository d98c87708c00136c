//! The evaluation report: JSON (fractions in [0, 1], for scripts and for
//! comparing runs) and Markdown (percent with two decimals, laid out like the
//! paper's tables so numbers can be compared with it at a glance).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use super::metrics::{CategoryMetrics, Metrics};
use crate::risors::Skipped;

/// The metrics after a given number of correction clicks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClickStep {
    pub clicks: usize,
    #[serde(flatten)]
    pub metrics: Metrics,
}

/// What `rsam eval` prints and writes with `--json`. The top-level metrics
/// are the text-only ones (the paper's main tables); `clicks[k]` holds the
/// metrics after `k` correction clicks, so `clicks[0]` repeats them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub count: u64,
    /// Images whose samples were scored.
    pub images: u64,
    pub skipped: Vec<Skipped>,
    /// Predictions mode: samples without a saved mask (scored as empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_predictions: Option<u64>,
    #[serde(rename = "oIoU")]
    pub oiou: f64,
    #[serde(rename = "mIoU")]
    pub miou: f64,
    #[serde(rename = "P@0.5")]
    pub p50: f64,
    #[serde(rename = "P@0.6")]
    pub p60: f64,
    #[serde(rename = "P@0.7")]
    pub p70: f64,
    #[serde(rename = "P@0.8")]
    pub p80: f64,
    #[serde(rename = "P@0.9")]
    pub p90: f64,
    pub per_category: BTreeMap<String, CategoryMetrics>,
    pub clicks: Vec<ClickStep>,
}

impl Report {
    /// Builds the report from the metrics after 0, 1, ... clicks (at least
    /// the text-only step).
    pub fn new(steps: Vec<Metrics>, images: u64, skipped: Vec<Skipped>, missing_predictions: Option<u64>) -> Self {
        let first = steps
            .first()
            .cloned()
            .unwrap_or_else(|| super::metrics::Meter::default().metrics());
        Self {
            count: first.count,
            images,
            skipped,
            missing_predictions,
            oiou: first.oiou,
            miou: first.miou,
            p50: first.p50,
            p60: first.p60,
            p70: first.p70,
            p80: first.p80,
            p90: first.p90,
            per_category: first.per_category,
            clicks: steps
                .into_iter()
                .enumerate()
                .map(|(clicks, metrics)| ClickStep { clicks, metrics })
                .collect(),
        }
    }
}

/// Percent with two decimals, as in the paper.
fn pct(v: f64) -> String {
    format!("{:.2}", v * 100.0)
}

const PRECISION_HEADER: &str = "P@0.5 | P@0.6 | P@0.7 | P@0.8 | P@0.9 | oIoU | mIoU";

fn precision_cells(m: &Metrics) -> String {
    let mut cells: Vec<String> = m.precisions().iter().map(|&p| pct(p)).collect();
    cells.push(pct(m.oiou));
    cells.push(pct(m.miou));
    cells.join(" | ")
}

/// The report as Markdown: the overall table (Tables 5, 6, 8 layout), the
/// per-category table (Tables 7, 9) and, with clicks, the interactive table
/// (Table 14: metrics per number of clicks). `title` names the run, e.g.
/// the model directory and split.
pub fn markdown(report: &Report, title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# RSAM evaluation: {title}\n");
    let _ = writeln!(
        s,
        "{} samples from {} images; {} skipped.\n",
        report.count,
        report.images,
        report.skipped.len()
    );
    let _ = writeln!(s, "## Overall (%)\n");
    let _ = writeln!(s, "| Samples | {PRECISION_HEADER} |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    if let Some(step) = report.clicks.first() {
        let _ = writeln!(s, "| {} | {} |", step.metrics.count, precision_cells(&step.metrics));
    }
    let _ = writeln!(s, "\n## Per category (%)\n");
    let _ = writeln!(s, "| Category | Samples | oIoU | mIoU |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for (name, c) in &report.per_category {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            escape(name),
            c.count,
            pct(c.oiou),
            pct(c.miou)
        );
    }
    if report.clicks.len() > 1 {
        let _ = writeln!(s, "\n## Interactive correction clicks (%)\n");
        let _ = writeln!(s, "| Clicks | {PRECISION_HEADER} |");
        let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|");
        for step in &report.clicks {
            let _ = writeln!(s, "| {} | {} |", step.clicks, precision_cells(&step.metrics));
        }
    }
    s
}

/// Keeps a category name from breaking the table.
fn escape(name: &str) -> String {
    name.replace('|', "\\|").replace('\n', " ")
}
