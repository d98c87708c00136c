//! What was left out of the scores, and why.

use serde::{Deserialize, Serialize};

use super::annotation::AnnotationId;

/// Something left out of the scores, and why (an image, or one annotation of
/// it when `id` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<AnnotationId>,
    pub reason: String,
    /// Left out by the dataset's own rules (area 0), not because something
    /// is broken: reported, but not worth a warning each.
    #[serde(skip)]
    pub by_rule: bool,
}
