//! The request pipeline, free of HTTP: find or encode the image's features,
//! check the prompts against it, decode on the engine, post-process.
//!
//! Order matters for cost: a bad prompt is rejected after the (cheap) image
//! decode and before the (expensive) encoding; CPU-heavy steps (hashing,
//! image decoding, mask post-processing) run on tokio's blocking pool under
//! a semaphore sized to the cores, never on the async workers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::geo::Georef;
use crate::image_input::{self, Coords, RasterOptions, SentPrompt};
use crate::loaded_model::LoadedModel;
use crate::model_kind::ModelKind;
use crate::predictor::{CheckedPrompt, ModelImage};
use crate::preprocess::Rgb8Image;
use crate::Prompt;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Semaphore};
use tracing::Span;

use super::api::{
    BatchingInfo, Geometry, ImageResponse, ImageSource, Limits, LimitsInfo, ModelInfo, Outputs, QueueInfo,
    RefineRequest, ResultsInfo, SegmentRequest, SegmentResponse, Timings,
};
use super::cache::{Begin, FeatureCache, Lookup};
use super::cached_image::CachedImage;
use super::config::ServerConfig;
use super::engine::{DecodeJob, DecodeOutput, EncodeDone, EncodeJob, Engine, EngineConfig, Job};
use super::errors::{ApiError, ErrorCode};
use super::metrics::{Metrics, Stage};
use super::outputs::OutputBuilder;
use super::results::ResultStore;
use super::scenes::SceneRegistry;
use super::windowed_result::{WindowedResult, WINDOWED_RESULT};

/// Texts up to this many bytes are checked on the async thread (fast);
/// longer ones on the blocking pool.
const INLINE_TEXT_BYTES: usize = 4096;

/// A loaded model with its engine, cache and result store.
pub struct Service {
    pub model: Arc<LoadedModel>,
    pub engine: Engine,
    pub cache: Arc<FeatureCache>,
    pub results: Arc<ResultStore>,
    /// Windowed answers, kept as the windows that found their object.
    pub window_results: Arc<ResultStore<WindowedResult>>,
    /// Scenes whose windows were encoded, for windowed searches by id.
    pub scenes: Arc<SceneRegistry>,
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

/// Features found in the cache, or being encoded by another request, with
/// the prompts already checked against the image.
enum Found {
    Ready(Arc<CachedImage>, Vec<CheckedPrompt>),
    Waiting(super::cache::Waiter, Vec<CheckedPrompt>),
}

/// An id for an error message, cut short: ids come from clients.
pub(super) fn quoted(id: &str) -> String {
    match id.char_indices().nth(80) {
        Some((end, _)) => format!("{:?}...", &id[..end]),
        None => format!("{id:?}"),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Hex SHA-256: the image id.
pub fn image_id_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Decodes file bytes (415 when not an image at all, 422 when broken or
/// too large; TIFFs with their bands, stretch and georeferencing) and
/// resizes them to the model's input.
fn decode_for_model(
    model: &LoadedModel,
    bytes: &[u8],
    raster: &RasterOptions,
    max_pixels: u64,
) -> Result<(ModelImage, Georef), ApiError> {
    image_format(bytes)?;
    let input = image_input::decode(bytes, raster, max_pixels)?;
    Ok((model.prepare(&input.image), input.georef))
}

/// The format of file bytes: 415 unless PNG, JPEG, TIFF, BMP or WebP.
pub(super) fn image_format(bytes: &[u8]) -> Result<image::ImageFormat, ApiError> {
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
    Ok(format)
}

/// The cache key of an image: its id, and the rendering when it is not the
/// default one (the same raster through other bands is another image).
fn cache_key(image_id: &str, raster: &RasterOptions) -> String {
    match raster.is_default() {
        true => image_id.to_string(),
        false => format!("{image_id}|{}", raster.key()),
    }
}

/// 400 unless `claimed` (the `X-Rsam-Image-Id` header, when sent) is the
/// id of the bytes: a client whose router and server disagree on the id
/// would otherwise fill the wrong replica's cache without noticing.
pub(super) fn check_claimed_id(claimed: Option<&str>, id: &str) -> Result<(), ApiError> {
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
    pub fn start(model: LoadedModel, config: &ServerConfig, metrics: Metrics) -> Result<Self, ApiError> {
        super::memory::return_freed_memory_after_a_while();
        warm_up(&model)?;
        super::memory::return_freed_memory_now();
        let model = Arc::new(model);
        // The dtype asked for, not the activations' (bf16 on the CPU keeps
        // f32 activations): f32 and bf16 features must not meet in a cache.
        let model_key = format!(
            "{}|{}|{}|{}",
            model.kind().as_str(),
            model.name(),
            model.weights_path().display(),
            config.dtype
        );
        let engine_config = EngineConfig {
            max_queue: config.max_queue,
            max_batch_size: config.max_batch_size,
            max_batch_wait: config.max_batch_wait,
            workers: config.workers,
            max_encode_batch: config.max_encode_batch,
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
            window_results: Arc::new(ResultStore::with_prefix(
                config.result_ttl,
                config.result_capacity,
                WINDOWED_RESULT,
            )),
            scenes: Arc::new(SceneRegistry::default()),
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
        if let Some(options) = req.window {
            return self.segment_windowed(req, options, deadline).await;
        }
        let start = Instant::now();
        let mut t = Timings::default();
        let resolved = self
            .resolve(req.image, &req.raster, req.prompts, req.geometry, deadline, &mut t)
            .await?;
        self.respond(resolved, req.outputs, req.geometry, deadline, t, start)
            .await
    }

    /// `POST /v1/refine`: the official correction-click protocol.
    pub async fn refine(&self, req: RefineRequest, deadline: Instant) -> Result<SegmentResponse, ApiError> {
        let start = Instant::now();
        let mut t = Timings::default();
        if self.window_results.owns(&req.result_id) {
            return self.refine_windowed(req).await;
        }
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
        let lookup = self.cache.lookup(&stored.image_key);
        // The new clicks in map units become pixels with the image's own
        // transform; the stored ones are pixels already.
        let new = match (&lookup, req.geometry.coords) {
            (Lookup::Hit(image), coords) => req.new.into_pixels(coords, &image.georef)?,
            (Lookup::Pending(waiter), coords) => req.new.into_pixels(coords, &waiter.georef)?,
            // Not cached: answered 404 below, whatever the units.
            (Lookup::Absent, _) => req.new.prompt,
        };
        let prompt = stored.refined_prompt(&new.points, new.bbox);
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
        let geometry = Geometry {
            coords: Coords::Pixel,
            ..req.geometry
        };
        let found = self
            .found_or_absent(
                &stored.image_key,
                lookup,
                vec![SentPrompt::exact(prompt)],
                geometry,
                &mut t,
            )
            .await?;
        let resolved = self.finish(found).await?;
        self.respond(resolved, req.outputs, req.geometry, deadline, t, start)
            .await
    }

    /// `POST /v1/images`: encode without a prompt.
    pub async fn warm(
        &self,
        bytes: Bytes,
        claimed_id: Option<String>,
        raster: RasterOptions,
        deadline: Instant,
    ) -> Result<ImageResponse, ApiError> {
        let start = Instant::now();
        let mut t = Timings::default();
        let source = ImageSource::Bytes { bytes, claimed_id };
        let geometry = Geometry {
            coords: Coords::Pixel,
            crs: crate::geo::OutputCrs::Raster,
            multimask: false,
        };
        let r = self
            .resolve(source, &raster, Vec::new(), geometry, deadline, &mut t)
            .await?;
        t.total = ms(start.elapsed());
        Ok(ImageResponse {
            image_id: r.image.image_id.clone(),
            width: r.image.width(),
            height: r.image.height(),
            cached: r.cached,
            georeferenced: r.image.georef.is_georeferenced(),
            window: None,
            timings_ms: t,
        })
    }

    async fn resolve(
        &self,
        source: ImageSource,
        raster: &RasterOptions,
        prompts: Vec<SentPrompt>,
        geometry: Geometry,
        deadline: Instant,
        t: &mut Timings,
    ) -> Result<Resolved, ApiError> {
        match source {
            ImageSource::Id(id) => {
                let key = cache_key(&id, raster);
                let lookup = self.cache.lookup(&key);
                let found = self.found_or_absent(&key, lookup, prompts, geometry, t).await?;
                self.finish(found).await
            }
            ImageSource::Bytes { bytes, claimed_id } => {
                self.resolve_bytes(bytes, claimed_id, raster, prompts, geometry, deadline, t)
                    .await
            }
        }
    }

    /// Cached (or being encoded) features with the prompts checked against
    /// them, else 404 `image_not_cached`.
    async fn found_or_absent(
        &self,
        key: &str,
        lookup: Lookup,
        prompts: Vec<SentPrompt>,
        geometry: Geometry,
        t: &mut Timings,
    ) -> Result<Found, ApiError> {
        let id = key.split('|').next().unwrap_or(key);
        match lookup {
            Lookup::Hit(image) => {
                let prompts = self
                    .check(prompts, image.width(), image.height(), &image.georef, geometry, t)
                    .await?;
                Ok(Found::Ready(image, prompts))
            }
            Lookup::Pending(waiter) => {
                let prompts = self
                    .check(prompts, waiter.width, waiter.height, &waiter.georef, geometry, t)
                    .await?;
                Ok(Found::Waiting(waiter, prompts))
            }
            Lookup::Absent => Err(ApiError::new(
                ErrorCode::ImageNotCached,
                format!(
                    "image {} is not in the feature cache (never sent, or evicted): send the image again \
                     (POST /v1/images re-warms it under the same image_id)",
                    quoted(id)
                ),
            )),
        }
    }

    /// Waits for features another request is encoding; counts the hit.
    async fn finish(&self, found: Found) -> Result<Resolved, ApiError> {
        let (image, prompts) = match found {
            Found::Ready(image, prompts) => (image, prompts),
            Found::Waiting(waiter, prompts) => (waiter.wait().await?, prompts),
        };
        self.cache.count_hit();
        Ok(Resolved {
            image,
            prompts,
            cached: true,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn resolve_bytes(
        &self,
        bytes: Bytes,
        claimed_id: Option<String>,
        raster: &RasterOptions,
        prompts: Vec<SentPrompt>,
        geometry: Geometry,
        deadline: Instant,
        t: &mut Timings,
    ) -> Result<Resolved, ApiError> {
        let hashed = bytes.clone();
        let id = self.blocking(move || image_id_of(&hashed)).await?;
        check_claimed_id(claimed_id.as_deref(), &id)?;
        let key = cache_key(&id, raster);
        match self.cache.lookup(&key) {
            Lookup::Absent => {}
            found => {
                let found = self.found_or_absent(&key, found, prompts, geometry, t).await?;
                return self.finish(found).await;
            }
        }
        let (model, max_pixels, options) = (self.model.clone(), self.config.max_pixels, raster.clone());
        let start = Instant::now();
        let decoded = self
            .blocking(move || decode_for_model(&model, &bytes, &options, max_pixels))
            .await;
        self.metrics.observe_stage(Stage::ImageDecode, start.elapsed());
        t.image_decode = ms(start.elapsed());
        let (image, georef) = decoded??;
        let prompts = self
            .check(prompts, image.width, image.height, &georef, geometry, t)
            .await?;
        let (image, cached) = match self.cache.begin(&key, image.width, image.height, &georef) {
            Begin::Hit(found) => (found, true),
            Begin::Pending(waiter) => (waiter.wait().await?, true),
            Begin::Leader(waiter) => {
                let encode = EncodeJob {
                    image_id: id,
                    key: key.clone(),
                    georef,
                    image,
                    deadline,
                    span: Span::current(),
                    done: self.completes_cache(key),
                };
                // A refused job answers the waiter with the refusal.
                let _ = self.engine.submit(Job::Encode(Box::new(encode)));
                let image = waiter.wait().await?;
                t.encode = ms(image.encode_time);
                (image, false)
            }
        };
        Ok(Resolved { image, prompts, cached })
    }

    /// Hands an encoding's outcome to the cache (and so to every waiter).
    fn completes_cache(&self, key: String) -> EncodeDone {
        let cache = self.cache.clone();
        EncodeDone::new(move |outcome| cache.complete(&key, outcome))
    }

    /// Moves prompts in map units to pixels, checks every prompt against the
    /// image size and tokenises its text: the `text` stage. Long texts are
    /// tokenised on the blocking pool, so a huge one cannot stall the runtime.
    async fn check(
        &self,
        prompts: Vec<SentPrompt>,
        width: u32,
        height: u32,
        georef: &Georef,
        geometry: Geometry,
        t: &mut Timings,
    ) -> Result<Vec<CheckedPrompt>, ApiError> {
        let start = Instant::now();
        let text_bytes: usize = prompts
            .iter()
            .filter_map(|p| p.prompt.text.as_ref())
            .map(String::len)
            .sum();
        let result = if text_bytes > INLINE_TEXT_BYTES {
            let (model, georef) = (self.model.clone(), georef.clone());
            self.blocking(move || check_all(&model, prompts, width, height, &georef, geometry.coords))
                .await
                .and_then(|r| r)
        } else {
            check_all(&self.model, prompts, width, height, georef, geometry.coords)
        };
        self.metrics.observe_stage(Stage::Text, start.elapsed());
        t.text += ms(start.elapsed());
        result
    }

    /// Decodes on the engine, builds the outputs, stores the results for refine.
    async fn respond(
        &self,
        resolved: Resolved,
        outputs: Outputs,
        geometry: Geometry,
        deadline: Instant,
        mut t: Timings,
        start: Instant,
    ) -> Result<SegmentResponse, ApiError> {
        let Resolved { image, prompts, cached } = resolved;
        if geometry.multimask && self.model.kind() != ModelKind::Sam2 {
            return Err(ApiError::invalid_request(
                "multimask needs a SAM 2 model: this server's RSAM model gives one mask per prompt",
            ));
        }
        let output = self
            .decode(image.clone(), prompts.clone(), geometry.multimask, deadline)
            .await?;
        t.queue = ms(output.queued);
        t.decode = ms(output.decode);
        let post_start = Instant::now();
        let builder = OutputBuilder {
            image: image.clone(),
            results: self.results.clone(),
            outputs,
            crs: geometry.crs,
        };
        let built = self
            .blocking(move || builder.run(prompts, output.predictions))
            .await??;
        self.metrics.observe_stage(Stage::Postprocess, post_start.elapsed());
        t.postprocess = ms(post_start.elapsed());
        t.total = ms(start.elapsed());
        Ok(SegmentResponse {
            image_id: image.image_id.clone(),
            width: image.width(),
            height: image.height(),
            cached,
            georeferenced: image.georef.is_georeferenced(),
            results: built.results,
            geojson: built.geojson,
            window: None,
            timings_ms: t,
        })
    }

    async fn decode(
        &self,
        image: Arc<CachedImage>,
        prompts: Vec<CheckedPrompt>,
        multimask: bool,
        deadline: Instant,
    ) -> Result<DecodeOutput, ApiError> {
        let (reply, rx) = oneshot::channel();
        // A refused job answers `rx` with the refusal.
        let _ = self.engine.submit(Job::Decode(DecodeJob {
            image,
            prompts,
            multimask,
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
            model: m.name().to_string(),
            kind: m.kind(),
            prompts: m.kind().prompts(),
            model_dir: c.model_dir.clone(),
            weights: m.weights_path().clone(),
            device: c.device.clone(),
            dtype: c.dtype.clone(),
            image_size: m.image_size(),
            low_res_size: m.low_res_size(),
            max_text_tokens: m.max_text_tokens(),
            parameters: m.load_report().num_parameters,
            config: m.config_json(),
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

/// Checks every prompt (map units moved to pixels first); with several, an
/// error names the query.
fn check_all(
    model: &LoadedModel,
    prompts: Vec<SentPrompt>,
    width: u32,
    height: u32,
    georef: &Georef,
    coords: Coords,
) -> Result<Vec<CheckedPrompt>, ApiError> {
    let many = prompts.len() > 1;
    let in_query = |i: usize, e: crate::RsamError| {
        let e = ApiError::from(e);
        match many {
            false => e,
            true => ApiError::new(e.code, format!("queries[{i}]: {}", e.message)),
        }
    };
    prompts
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let p = p.into_pixels(coords, georef).map_err(|e| in_query(i, e))?;
            model.check_prompt(p, width, height).map_err(|e| in_query(i, e))
        })
        .collect()
}

/// One encode and a decode of two prompts (RSAM: a sentence and a click,
/// batched; SAM 2: two clicks) before reporting ready, so the first real
/// request pays no lazy initialisation and a broken model fails at
/// start-up rather than on traffic.
fn warm_up(model: &LoadedModel) -> Result<(), ApiError> {
    let (w, h) = (64u32, 48u32);
    let data = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
    let image = Rgb8Image {
        width: w,
        height: h,
        data,
    };
    let warm_up_error = |what: &str, e: crate::RsamError| ApiError::internal(format!("warm-up {what} failed: {e}"));
    let encoded = model.encode_image(&image).map_err(|e| warm_up_error("encode", e))?;
    let click = |x: f32| Prompt {
        points: vec![crate::Point { x, y: 10.0, label: 1 }],
        ..Default::default()
    };
    let first = match model.kind() {
        ModelKind::Rsam => Prompt {
            text: Some("warm up".into()),
            ..click(10.0)
        },
        ModelKind::Sam2 => click(10.0),
    };
    model
        .predict(&encoded, vec![first, click(30.0)], false)
        .map_err(|e| warm_up_error("decode", e))?;
    Ok(())
}
