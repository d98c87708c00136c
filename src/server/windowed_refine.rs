//! `POST /v1/refine` on a windowed search's answer. The answer is kept as
//! the windows that found its object, each with the prompt decoded there
//! and the logits it returned (not the scene: its pixels are not kept, its
//! windows' features are in the feature cache). A refine runs the official
//! correction-click protocol in each of those windows and stitches their
//! new masks ([`crate::window::refine_object`]); the new answer is kept the
//! same way, so clicks can follow clicks.

use std::sync::Arc;
use std::time::Instant;

use super::api::{RefineRequest, SegmentResponse, Timings};
use super::cache::Lookup;
use super::errors::{ApiError, ErrorCode};
use super::service::{quoted, Service};
use super::window_answer::SceneAnswer;
use super::window_report::WindowReport;
use super::windowed_result::{window_key, WindowedResult};
use crate::predictor::EncodedImage;
use crate::window::{candidate_reports, refine_object, refined_prompts};

impl Service {
    /// `POST /v1/refine` for a `window-` result id.
    pub(super) async fn refine_windowed(&self, req: RefineRequest) -> Result<SegmentResponse, ApiError> {
        let start = Instant::now();
        let stored = self.window_results.get(&req.result_id).ok_or_else(|| {
            ApiError::new(
                ErrorCode::ResultNotFound,
                format!(
                    "windowed result_id {} is unknown or expired (results are kept {} s, at most {}): search the \
                     scene again with window",
                    quoted(&req.result_id),
                    self.config.result_ttl.as_secs(),
                    self.config.result_capacity
                ),
            )
        })?;
        if req.geometry.multimask || req.outputs.logits {
            return Err(ApiError::invalid_request(
                "multimask and the logits output cannot be used on a windowed result: its mask is stitched from \
                 windows, each with its own logits",
            ));
        }
        if stored.windows.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidPrompt,
                "this windowed search found no object, so there is no window to refine in: search the scene \
                 again with window and a click on the object",
            ));
        }
        let new = req.new.into_pixels(req.geometry.coords, &stored.georef)?;
        let prompts = refined_prompts(&stored.windows, &new.points, new.bbox)?;
        if let Some(p) = prompts.iter().find(|p| p.points.len() > self.limits.max_points) {
            return Err(ApiError::new(
                ErrorCode::TooManyPoints,
                format!(
                    "the refined prompt would have {} points in a window, over the limit of {}",
                    p.points.len(),
                    self.limits.max_points
                ),
            ));
        }
        let features = self.window_features(&stored)?;
        self.cache.count_hit();
        let model = self.model.clone();
        let results = self.window_results.clone();
        let mut response = self
            .blocking(move || -> Result<SegmentResponse, ApiError> {
                let decode_start = Instant::now();
                let refined = refine_object(&model, &stored.windows, &prompts, &features)?;
                let decode = decode_start.elapsed();
                let object = refined.object.as_ref();
                let report = WindowReport {
                    grid: stored.grid,
                    searched: refined.windows.len(),
                    encoded: 0,
                    candidates: candidate_reports(refined.object.as_slice(), Some(&stored.georef))?,
                };
                let text = stored.windows[0].prompt.text.clone();
                let result_id = results.insert(WindowedResult {
                    image_id: stored.image_id.clone(),
                    raster_key: stored.raster_key.clone(),
                    scene_width: stored.scene_width,
                    scene_height: stored.scene_height,
                    georef: stored.georef.clone(),
                    grid: stored.grid,
                    windows: refined.windows,
                });
                let answer = SceneAnswer {
                    image_id: &stored.image_id,
                    width: stored.scene_width,
                    height: stored.scene_height,
                    georef: &stored.georef,
                    outputs: req.outputs,
                    crs: req.geometry.crs,
                    text: text.as_deref(),
                };
                let post_start = Instant::now();
                let mut response = answer.respond(object, result_id, true, report)?;
                response.timings_ms = Timings {
                    decode: decode.as_secs_f64() * 1e3,
                    postprocess: post_start.elapsed().as_secs_f64() * 1e3,
                    ..Timings::default()
                };
                Ok(response)
            })
            .await??;
        response.timings_ms.total = start.elapsed().as_secs_f64() * 1e3;
        Ok(response)
    }

    /// Each window's features from the cache, or 404 naming the window.
    fn window_features(&self, stored: &WindowedResult) -> Result<Vec<Arc<EncodedImage>>, ApiError> {
        stored
            .windows
            .iter()
            .map(|w| {
                let key = window_key(&stored.image_id, &stored.raster_key, w.window);
                match self.cache.lookup(&key) {
                    Lookup::Hit(image) => Ok(Arc::new((*image.encoded).clone())),
                    _ => Err(ApiError::new(
                        ErrorCode::ImageNotCached,
                        format!(
                            "window {},{} {}x{} of image {} is no longer in the feature cache: send the scene \
                             again with the same window (POST /v1/images with window re-encodes it), then retry",
                            w.window.x,
                            w.window.y,
                            w.window.width,
                            w.window.height,
                            quoted(&stored.image_id)
                        ),
                    )),
                }
            })
            .collect()
    }
}
