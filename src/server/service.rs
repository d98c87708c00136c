//! The request pipeline, free of HTTP: find or encode the image's features,
//! check the prompts against it, decode on the engine, post-process.
//!
//! Order matters for cost: a bad prompt is rejected after the (cheap) image
//! decode and before the (expensive) encoding; CPU-heavy steps (hashing,
//! image decoding, mask post-processing) run on tokio's blocking pool under
//! a semaphore sized to the cores, never on the async workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::predictor::{CheckedPrompt, ModelImage};
use crate::preprocess::Rgb8Image;
use crate::{Prediction, Prompt, Rsam};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Semaphore};
use tracing::Span;

use super::api::{
    BatchingInfo, ImageResponse, ImageSource, Limits, LimitsInfo, ModelInfo, Outputs, QueueInfo, RefineRequest,
    ResultsInfo, SegmentRequest, SegmentResponse, SegmentResult, Timings,
};
use super::cache::{Begin, FeatureCache, Lookup};
use super::cached_image::CachedImage;
use super::config::ServerConfig;
use super::engine::{DecodeJob, DecodeOutput, EncodeDone, EncodeJob, Engine, EngineConfig, Job};
use super::errors::{ApiError, ErrorCode};
use super::metrics::{Metrics, Stage};
use super::results::{ResultStore, StoredResult};
use crate::mask::polygons::outer_polygons;

/// A loaded model with its engine, cache and result store.
pub struct Service {
    pub model: Arc<Rsam>,
    pub engine: Engine,
    pub cache: Arc<FeatureCache>,
    pub results: Arc<ResultStore>,
    pub metrics: Metrics,
    pub limits: Limits,
    pub config: ServerConfig,
    cpu: Arc<Semaphore>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// The request's image, its prompts checked against it, and whether the
/// features came from the cache.
struct Resolved {
    image: Arc<CachedImage>,
    prompts: Vec<CheckedPrompt>,
    cached: bool,
}

/// An id for an error message, cut short: ids come from clients.
fn quoted(id: &str) -> String {
    match id.char_indices().nth(80) {
        Some((end, _)) => format!("{:?}...", &id[..end]),
        None => format!("{id:?}"),
    }
}

/// Texts up to this many bytes are checked on the async thread (fast);
/// longer ones on the blocking pool, so a huge text cannot stall the runtime.
const INLINE_TEXT_BYTES: usize = 4096;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Hex SHA-256: the image id.
pub fn image_id_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decodes file bytes (415 when not an image at all, 422 when broken or
/// too large) and resizes them to the model's S x S input.
fn decode_for_model(model: &Rsam, bytes: &[u8], max_pixels: u64) -> Result<ModelImage, ApiError> {
    use image::ImageFormat as F;
    let format = image::guess_format(bytes).map_err(|_| {
        ApiError::new(
            ErrorCode::UnsupportedImageFormat,
            "the image bytes are not a recognised image (expected PNG, JPEG, TIFF, BMP or WebP)",
        )
    })?;
    if !matches!(format, F::Png | F::Jpeg | F::Tiff | F::Bmp | F::WebP) {
        return Err(ApiError::new(
            ErrorCode::UnsupportedImageFormat,
            format!("unsupported image format {format:?} (expected PNG, JPEG, TIFF, BMP or WebP)"),
        ));
    }
    let image = crate::preprocess::decode_image(bytes, max_pixels)?;
    Ok(model.prepare(&image))
}

/// 400 unless `claimed` (the `X-Rsam-Image-Id` header, when sent) is the
/// id of the bytes: a client whose router and server disagree on the id
/// would otherwise fill the wrong replica's cache without noticing.
fn check_claimed_id(claimed: Option<&str>, id: &str) -> Result<(), ApiError> {
    match claimed {
        Some(claimed) if !claimed.trim().eq_ignore_ascii_case(id) => Err(ApiError::new(
            ErrorCode::ImageIdMismatch,
            format!(
                "X-Rsam-Image-Id is {} but the image bytes hash to {id}: send the hex SHA-256 of the image file",
                quoted(claimed)
            ),
        )),
        _ => Ok(()),
    }
}

impl Service {
    /// Warms the model, then starts the engine.
    pub fn start(model: Rsam, config: &ServerConfig, metrics: Metrics) -> Result<Self, ApiError> {
        warm_up(&model)?;
        let model = Arc::new(model);
        let model_key = format!(
            "{}|{}|{:?}",
            model.config.name,
            model.weights_path.display(),
            model.dtype()
        );
        let engine_config = EngineConfig {
            max_queue: config.max_queue,
            max_batch_size: config.max_batch_size,
            max_batch_wait: config.max_batch_wait,
            workers: config.workers,
        };
        let engine = Engine::start(model.clone(), engine_config, metrics.clone())
            .map_err(|e| ApiError::internal(format!("cannot start the model worker: {e}")))?;
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            limits: Limits {
                max_points: config.max_points,
                max_queries: config.max_queries,
                low_res_size: model.low_res_size(),
            },
            cache: Arc::new(FeatureCache::new(config.cache_bytes, &model_key, metrics.clone())),
            results: Arc::new(ResultStore::new(config.result_ttl, config.result_capacity)),
            model,
            engine,
            metrics,
            config: config.clone(),
            cpu: Arc::new(Semaphore::new(cpus)),
        })
    }

    /// Runs CPU-heavy work on the blocking pool, at most one job per core.
    pub async fn blocking<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
        let _permit = self
            .cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("the server is shutting down"))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ApiError::internal(format!("a post-processing task failed: {e}")))
    }

    /// `POST /v1/segment`.
    pub async fn segment(&self, req: SegmentRequest, deadline: Instant) -> Result<SegmentResponse, ApiError> {
        let start = Instant::now();
        let mut t = Timings::default();
        let resolved = self.resolve(req.image, req.prompts, deadline, &mut t).await?;
        self.respond(resolved, req.outputs, deadline, t, start).await
    }

    /// `POST /v1/refine`: the official correction-click protocol.
    pub async fn refine(&self, req: RefineRequest, deadline: Instant) -> Result<SegmentResponse, ApiError> {
        let start = Instant::now();
        let mut t = Timings::default();
        let stored = self.results.get(&req.result_id).ok_or_else(|| {
            ApiError::new(
                ErrorCode::ResultNotFound,
                format!(
                    "result_id {} is unknown or expired (results are kept {} s, at most {})",
                    quoted(&req.result_id),
                    self.config.result_ttl.as_secs(),
                    self.config.result_capacity
                ),
            )
        })?;
        let prompt = stored.refined_prompt(&req.points, req.bbox);
        if prompt.points.len() > self.limits.max_points {
            return Err(ApiError::new(
                ErrorCode::TooManyPoints,
                format!(
                    "the refined prompt would have {} points, over the limit of {}",
                    prompt.points.len(),
                    self.limits.max_points
                ),
            ));
        }
        let resolved = self.resolve_id(&stored.image_id, vec![prompt], &mut t).await?;
        self.respond(resolved, req.outputs, deadline, t, start).await
    }

    /// `POST /v1/images`: encode without a prompt.
    pub async fn warm(
        &self,
        bytes: Bytes,
        claimed_id: Option<String>,
        deadline: Instant,
    ) -> Result<ImageResponse, ApiError> {
        let start = Instant::now();
        let mut t = Timings::default();
        let source = ImageSource::Bytes { bytes, claimed_id };
        let r = self.resolve(source, Vec::new(), deadline, &mut t).await?;
        t.total = ms(start.elapsed());
        Ok(ImageResponse {
            image_id: r.image.image_id.clone(),
            width: r.image.width(),
            height: r.image.height(),
            cached: r.cached,
            timings_ms: t,
        })
    }

    async fn resolve(
        &self,
        source: ImageSource,
        prompts: Vec<Prompt>,
        deadline: Instant,
        t: &mut Timings,
    ) -> Result<Resolved, ApiError> {
        match source {
            ImageSource::Id(id) => self.resolve_id(&id, prompts, t).await,
            ImageSource::Bytes { bytes, claimed_id } => {
                self.resolve_bytes(bytes, claimed_id, prompts, deadline, t).await
            }
        }
    }

    /// Cached (or being encoded) features, else 404 `image_not_cached`.
    async fn resolve_id(&self, id: &str, prompts: Vec<Prompt>, t: &mut Timings) -> Result<Resolved, ApiError> {
        match self.cache.lookup(id) {
            Lookup::Absent => Err(ApiError::new(
                ErrorCode::ImageNotCached,
                format!(
                    "image {} is not in the feature cache (never sent, or evicted): send the image again \
                     (POST /v1/images re-warms it under the same image_id)",
                    quoted(id)
                ),
            )),
            found => self.use_found(found, prompts, t).await,
        }
    }

    /// Checks the prompts against a found image's size, then waits for it
    /// if needed.
    async fn use_found(&self, found: Lookup, prompts: Vec<Prompt>, t: &mut Timings) -> Result<Resolved, ApiError> {
        let (image, prompts) = match found {
            Lookup::Hit(image) => {
                let prompts = self.check(prompts, image.width(), image.height(), t).await?;
                (image, prompts)
            }
            Lookup::Pending(waiter) => {
                let prompts = self.check(prompts, waiter.width, waiter.height, t).await?;
                (waiter.wait().await?, prompts)
            }
            Lookup::Absent => return Err(ApiError::internal("image lookup lost its entry")),
        };
        self.cache.count_hit();
        Ok(Resolved {
            image,
            prompts,
            cached: true,
        })
    }

    async fn resolve_bytes(
        &self,
        bytes: Bytes,
        claimed_id: Option<String>,
        prompts: Vec<Prompt>,
        deadline: Instant,
        t: &mut Timings,
    ) -> Result<Resolved, ApiError> {
        let hashed = bytes.clone();
        let id = self.blocking(move || image_id_of(&hashed)).await?;
        check_claimed_id(claimed_id.as_deref(), &id)?;
        match self.cache.lookup(&id) {
            Lookup::Absent => {}
            found => return self.use_found(found, prompts, t).await,
        }
        let (model, max_pixels) = (self.model.clone(), self.config.max_pixels);
        let start = Instant::now();
        let decoded = self
            .blocking(move || decode_for_model(&model, &bytes, max_pixels))
            .await;
        self.metrics.observe_stage(Stage::ImageDecode, start.elapsed());
        t.image_decode = ms(start.elapsed());
        let image = decoded??;
        let prompts = self.check(prompts, image.width, image.height, t).await?;
        let (image, cached) = match self.cache.begin(&id, image.width, image.height) {
            Begin::Hit(found) => (found, true),
            Begin::Pending(waiter) => (waiter.wait().await?, true),
            Begin::Leader(waiter) => {
                let encode = EncodeJob {
                    image_id: id.clone(),
                    image,
                    deadline,
                    span: Span::current(),
                    done: self.completes_cache(id),
                };
                // A refused job answers the waiter with the refusal.
                let _ = self.engine.submit(Job::Encode(encode));
                let image = waiter.wait().await?;
                t.encode = ms(image.encode_time);
                (image, false)
            }
        };
        Ok(Resolved { image, prompts, cached })
    }

    /// Hands an encoding's outcome to the cache (and so to every waiter).
    fn completes_cache(&self, image_id: String) -> EncodeDone {
        let cache = self.cache.clone();
        EncodeDone::new(move |outcome| cache.complete(&image_id, outcome))
    }

    /// Checks every prompt against the image size and tokenises its text:
    /// the `text` stage. Long texts are tokenised on the blocking pool.
    async fn check(
        &self,
        prompts: Vec<Prompt>,
        width: u32,
        height: u32,
        t: &mut Timings,
    ) -> Result<Vec<CheckedPrompt>, ApiError> {
        let start = Instant::now();
        let text_bytes: usize = prompts.iter().filter_map(|p| p.text.as_ref()).map(String::len).sum();
        let model = self.model.clone();
        let result = if text_bytes > INLINE_TEXT_BYTES {
            self.blocking(move || check_all(&model, prompts, width, height))
                .await
                .and_then(|r| r)
        } else {
            check_all(&model, prompts, width, height)
        };
        self.metrics.observe_stage(Stage::Text, start.elapsed());
        t.text += ms(start.elapsed());
        result
    }

    /// Decodes on the engine, post-processes, stores the results for refine.
    async fn respond(
        &self,
        resolved: Resolved,
        outputs: Outputs,
        deadline: Instant,
        mut t: Timings,
        start: Instant,
    ) -> Result<SegmentResponse, ApiError> {
        let Resolved { image, prompts, cached } = resolved;
        let output = self.decode(image.clone(), prompts.clone(), deadline).await?;
        t.queue = ms(output.queued);
        t.decode = ms(output.decode);
        let post_start = Instant::now();
        let post = Postprocess {
            image: image.clone(),
            results: self.results.clone(),
            outputs,
            low_res_size: self.limits.low_res_size,
        };
        let results = self.blocking(move || post.run(prompts, output.predictions)).await?;
        self.metrics.observe_stage(Stage::Postprocess, post_start.elapsed());
        t.postprocess = ms(post_start.elapsed());
        t.total = ms(start.elapsed());
        Ok(SegmentResponse {
            image_id: image.image_id.clone(),
            width: image.width(),
            height: image.height(),
            cached,
            results,
            timings_ms: t,
        })
    }

    async fn decode(
        &self,
        image: Arc<CachedImage>,
        prompts: Vec<CheckedPrompt>,
        deadline: Instant,
    ) -> Result<DecodeOutput, ApiError> {
        let (reply, rx) = oneshot::channel();
        // A refused job answers `rx` with the refusal.
        let _ = self.engine.submit(Job::Decode(DecodeJob {
            image,
            prompts,
            deadline,
            span: Span::current(),
            reply,
        }));
        rx.await
            .unwrap_or_else(|_| Err(ApiError::internal("the model worker dropped the request")))
    }

    /// `GET /v1/model`.
    pub fn model_info(&self) -> ModelInfo {
        let m = &self.model;
        let c = &self.config;
        ModelInfo {
            model: m.config.name.clone(),
            model_dir: c.model_dir.clone(),
            weights: m.weights_path.clone(),
            device: c.device.clone(),
            dtype: c.dtype.clone(),
            image_size: m.image_size(),
            low_res_size: m.low_res_size(),
            max_text_tokens: m.tokenizer.max_tokens(),
            parameters: m.load_report.num_parameters,
            config: m.config.clone(),
            cache: self.cache.stats(),
            queue: QueueInfo {
                depth: self.engine.depth(),
                capacity: c.max_queue,
            },
            batching: BatchingInfo {
                max_batch_size: c.max_batch_size,
                max_batch_wait_ms: ms(c.max_batch_wait),
                workers: c.workers,
            },
            results: ResultsInfo {
                stored: self.results.len(),
                ttl_s: c.result_ttl.as_secs(),
                capacity: c.result_capacity,
            },
            limits: LimitsInfo {
                max_points: c.max_points,
                max_queries: c.max_queries,
                max_body_bytes: c.body_limit,
                max_pixels: c.max_pixels,
                request_timeout_s: c.request_timeout.as_secs_f64(),
            },
            version: env!("CARGO_PKG_VERSION"),
        }
    }
}

/// Checks every prompt; with several, an error names the query.
fn check_all(model: &Rsam, prompts: Vec<Prompt>, width: u32, height: u32) -> Result<Vec<CheckedPrompt>, ApiError> {
    let many = prompts.len() > 1;
    prompts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            model.check_prompt(p, width, height).map_err(|e| {
                let e = ApiError::from(e);
                match many {
                    false => e,
                    true => ApiError::new(e.code, format!("queries[{i}]: {}", e.message)),
                }
            })
        })
        .collect()
}

/// What post-processing needs, owned so it can run on the blocking pool.
struct Postprocess {
    image: Arc<CachedImage>,
    results: Arc<ResultStore>,
    outputs: Outputs,
    low_res_size: usize,
}

impl Postprocess {
    fn run(self, prompts: Vec<CheckedPrompt>, predictions: Vec<Prediction>) -> Vec<SegmentResult> {
        prompts
            .into_iter()
            .zip(predictions)
            .map(|(prompt, pred)| self.one(prompt.into_prompt(), pred))
            .collect()
    }

    fn one(&self, prompt: Prompt, pred: Prediction) -> SegmentResult {
        let (w, h) = (self.image.width(), self.image.height());
        let mask = pred.mask(w, h);
        let o = self.outputs;
        let side = self.low_res_size;
        let logits = o
            .logits
            .then(|| crate::npy::write_f32(&[side, side], &pred.low_res_logits));
        let result_id = self.results.insert(StoredResult {
            image_id: self.image.image_id.clone(),
            text: prompt.text,
            points: prompt.points,
            bbox: prompt.bbox,
            low_res_logits: pred.low_res_logits.clone(),
        });
        SegmentResult {
            result_id,
            iou_prediction: pred.iou,
            object_score_logit: pred.object_score_logit,
            object_present: pred.object_present(),
            area: mask.area(),
            bbox: mask.bbox(),
            rle: o.rle.then(|| mask.to_rle()),
            png: o.png.then(|| mask.to_png()),
            logits,
            polygons: o.polygons.then(|| outer_polygons(&mask.data, w as usize, h as usize)),
        }
    }
}

/// One encode and one decode (text and a click) before reporting ready, so
/// the first real request pays no lazy initialisation and a broken model
/// fails at start-up rather than on traffic.
fn warm_up(model: &Rsam) -> Result<(), ApiError> {
    let (w, h) = (64u32, 48u32);
    let data = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    let image = Rgb8Image {
        width: w,
        height: h,
        data,
    };
    let warm_up_error = |what: &str, e: crate::RsamError| ApiError::internal(format!("warm-up {what} failed: {e}"));
    let encoded = model.encode_image(&image).map_err(|e| warm_up_error("encode", e))?;
    let mut prompt = Prompt::text("warm up");
    prompt.points.push(crate::Point {
        x: 10.0,
        y: 10.0,
        label: 1,
    });
    let prompt = model
        .check_prompt(prompt, w, h)
        .map_err(|e| warm_up_error("decode", e))?;
    model
        .decode(&encoded, &[prompt])
        .map_err(|e| warm_up_error("decode", e))?;
    Ok(())
}
