//! `POST /v1/segment` with `window`: a scene larger than the model searched
//! window by window ([`crate::window`]). The scene comes from the uploaded
//! bytes (a TIFF read window by window with the request's bands and
//! stretch, any other image decoded whole), or, named by `image_id`, from
//! the cache alone ([`super::scenes`]); each window's features are
//! taken from or put into the server's byte-bounded feature cache under the
//! scene's id, its rendering and the window rectangle, and the answer is the
//! best candidate's full-scene mask in the outputs asked for, plus the grid
//! and the ranked candidates.
//!
//! A windowed answer is kept for `/v1/refine` as the windows that found the
//! object, each with its prompt and logits ([`super::windowed_refine`]).

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use image::ImageFormat;

use super::api::{ImageResponse, ImageSource, Outputs, SegmentRequest, SegmentResponse, Timings};
use super::cache::FeatureCache;
use super::cached_image::CachedImage;
use super::errors::{ApiError, ErrorCode};
use super::metrics::Metrics;
use super::on_worker::OnWorker;
use super::results::ResultStore;
use super::scenes::{SceneInfo, SceneRegistry};
use super::service::{check_claimed_id, image_format, image_id_of, Service};
use super::window_answer::SceneAnswer;
use super::window_flight::WindowFlight;
use super::window_report::{GridShape, WindowReport};
use super::windowed_result::{window_key, WindowedResult};
use crate::geo::{GeoRaster, Georef, OutputCrs, Window};
use crate::image_input::{self, Coords, RasterOptions, SentPrompt};
use crate::loaded_model::LoadedModel;
use crate::predictor::Prompt;
use crate::predictor::{EncodedImage, ModelImage};
use crate::window::{
    candidate_reports, encode_windows, search, CachedScene, FnFeatures, GeoTiffSource, ImageSource as SceneImage,
    SearchOptions, SearchOutcome, WindowError, WindowFeatures, WindowSource,
};

impl From<WindowError> for ApiError {
    fn from(e: WindowError) -> Self {
        match e {
            WindowError::TooManyWindows { .. } => ApiError::new(ErrorCode::PayloadTooLarge, e.to_string()),
            WindowError::Size(_) | WindowError::Overlap { .. } | WindowError::TopK(_) => {
                ApiError::invalid_request(format!("window: {e}"))
            }
            WindowError::EmptyScene { .. } => ApiError::new(ErrorCode::InvalidImage, e.to_string()),
            WindowError::Prompt(_) => ApiError::new(ErrorCode::InvalidPrompt, e.to_string()),
            WindowError::NotCached(_) => ApiError::new(
                ErrorCode::ImageNotCached,
                format!(
                    "{e} (evicted, or the scene was encoded with another window size or overlap): send the image \
                     itself with window"
                ),
            ),
            WindowError::Stopped(_) => ApiError::new(ErrorCode::Timeout, e.to_string()),
            WindowError::FeatureCount { .. } => ApiError::internal(e.to_string()),
            WindowError::Model(e) => e.into(),
            WindowError::Geo(e) => e.into(),
        }
    }
}

impl Service {
    /// `POST /v1/segment` with `window`: the whole search (scene decode,
    /// windows, outputs) on the blocking pool under one CPU permit.
    pub(super) async fn segment_windowed(
        &self,
        req: SegmentRequest,
        options: SearchOptions,
        deadline: Instant,
    ) -> Result<SegmentResponse, ApiError> {
        let start = Instant::now();
        let prompt = req
            .prompts
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("a windowed search without a prompt"))?;
        let (image_id, scene) = match req.image {
            ImageSource::Bytes { bytes, claimed_id } => (self.scene_id(&bytes, claimed_id).await?, Scene::Bytes(bytes)),
            ImageSource::Id(id) => {
                let info = self.scene_by_id(&id, &req.raster)?;
                (id, Scene::Cached(info))
            }
        };
        let job = SceneSearch {
            prompt: Some(prompt),
            coords: req.geometry.coords,
            crs: req.geometry.crs,
            outputs: req.outputs,
            ..self.scene_job(image_id, req.raster, options, deadline)
        };
        let mut response = self.blocking(move || job.run(scene)).await??;
        response.timings_ms.total = ms(start.elapsed());
        Ok(response)
    }

    /// `POST /v1/images` with `window`: the scene's windows encoded into
    /// the cache on the blocking pool.
    pub(super) async fn warm_windowed(
        &self,
        bytes: Bytes,
        claimed_id: Option<String>,
        raster: RasterOptions,
        options: SearchOptions,
        deadline: Instant,
    ) -> Result<ImageResponse, ApiError> {
        let image_id = self.scene_id(&bytes, claimed_id).await?;
        let job = self.scene_job(image_id, raster, options, deadline);
        self.blocking(move || job.pre_encode(&bytes)).await?
    }

    /// The uploaded scene's id, checked against the one the client claims.
    async fn scene_id(&self, bytes: &Bytes, claimed_id: Option<String>) -> Result<String, ApiError> {
        let hashed = bytes.clone();
        let image_id = self.blocking(move || image_id_of(&hashed)).await?;
        check_claimed_id(claimed_id.as_deref(), &image_id)?;
        Ok(image_id)
    }

    /// A job over the scene with no prompt (a pre-encode) and pixel
    /// coordinates, the default outputs, the raster's CRS.
    fn scene_job(
        &self,
        image_id: String,
        raster: RasterOptions,
        options: SearchOptions,
        deadline: Instant,
    ) -> SceneSearch {
        SceneSearch {
            model: self.model.clone(),
            cache: self.cache.clone(),
            results: self.window_results.clone(),
            scenes: self.scenes.clone(),
            metrics: self.metrics.clone(),
            image_id,
            raster,
            max_pixels: self.config.max_pixels,
            options,
            deadline,
            prompt: None,
            coords: Coords::Pixel,
            crs: OutputCrs::Raster,
            outputs: Outputs::default(),
        }
    }

    /// A scene named by `image_id` whose windows were encoded with this
    /// rendering, else 404 naming what to send.
    fn scene_by_id(&self, id: &str, raster: &RasterOptions) -> Result<SceneInfo, ApiError> {
        self.scenes.get(&scene_key(id, raster)).ok_or_else(|| {
            ApiError::new(
                ErrorCode::ImageNotCached,
                format!(
                    "no windows of image {} are in the feature cache with these bands and stretch (never sent with \
                     window, or forgotten): send the image itself with window, or pre-encode it with POST \
                     /v1/images and window",
                    super::service::quoted(id)
                ),
            )
        })
    }
}

/// The scene a search runs over: the uploaded bytes, or only the size of a
/// scene whose windows are all expected in the cache.
enum Scene {
    Bytes(Bytes),
    Cached(SceneInfo),
}

/// The scene registry's key: the scene and its rendering.
fn scene_key(image_id: &str, raster: &RasterOptions) -> String {
    format!("{image_id}|{}", raster.key())
}

/// Everything one search needs, owned so that it runs on the blocking pool.
struct SceneSearch {
    model: Arc<LoadedModel>,
    cache: Arc<FeatureCache>,
    results: Arc<ResultStore<WindowedResult>>,
    scenes: Arc<SceneRegistry>,
    metrics: Metrics,
    image_id: String,
    raster: RasterOptions,
    max_pixels: u64,
    options: SearchOptions,
    /// Past it no more windows are encoded: the client has had its 504.
    deadline: Instant,
    /// `None` for a pre-encode (`POST /v1/images` with `window`).
    prompt: Option<SentPrompt>,
    coords: Coords,
    crs: OutputCrs,
    outputs: Outputs,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl SceneSearch {
    fn run(self, scene: Scene) -> Result<SegmentResponse, ApiError> {
        let start = Instant::now();
        match scene {
            Scene::Bytes(bytes) => self.with_scene(&bytes, |source, georef| self.search(source, georef, start)),
            Scene::Cached(info) => {
                let mut source = CachedScene {
                    width: info.width,
                    height: info.height,
                    georef: Some(info.georef.clone()),
                };
                self.search(&mut source, info.georef, start)
            }
        }
    }

    /// Remembers the scene's size and georeferencing, so that it can be
    /// searched again by its id while its windows are cached.
    fn remember(&self, source: &dyn WindowSource, georef: &Georef) {
        let info = SceneInfo {
            width: source.width(),
            height: source.height(),
            georef: georef.clone(),
        };
        self.scenes.record(scene_key(&self.image_id, &self.raster), info);
    }

    /// Opens the scene as a window source: a TIFF window by window with
    /// the scene-wide stretch, any other image decoded whole.
    fn with_scene<T>(
        &self,
        bytes: &[u8],
        f: impl FnOnce(&mut dyn WindowSource, Georef) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if image_format(bytes)? == ImageFormat::Tiff {
            let raster = GeoRaster::from_bytes(bytes, self.max_pixels)?;
            let mut source = GeoTiffSource::new(raster, self.raster.bands.clone(), self.raster.stretch)?;
            let georef = source.georef().cloned().unwrap_or_default();
            self.remember(&source, &georef);
            return f(&mut source, georef);
        }
        let input = image_input::decode(bytes, &self.raster, self.max_pixels)?;
        let mut source = SceneImage::new(&input.image);
        self.remember(&source, &input.georef);
        f(&mut source, input.georef)
    }

    /// `POST /v1/images` with `window`: every window of the scene encoded
    /// into the cache (those already there are kept), no prompt decoded, so
    /// later windowed searches on the scene are decode-only.
    fn pre_encode(self, bytes: &[u8]) -> Result<ImageResponse, ApiError> {
        let start = Instant::now();
        self.with_scene(bytes, |source, georef| {
            let (width, height) = (source.width(), source.height());
            let (encoding, encode_time) = self.with_features(&georef, |features| {
                encode_windows(&self.model, source, &self.options, features, &mut |_| {})
            });
            let (grid, encoded) = encoding?;
            let timings_ms = Timings {
                encode: ms(encode_time),
                total: ms(start.elapsed()),
                ..Timings::default()
            };
            Ok(ImageResponse {
                image_id: self.image_id.clone(),
                width,
                height,
                cached: encoded == 0,
                georeferenced: georef.is_georeferenced(),
                window: Some(WindowReport {
                    grid: GridShape::from(&grid),
                    searched: 0,
                    encoded,
                    candidates: Vec::new(),
                }),
                timings_ms,
            })
        })
    }

    fn search(
        &self,
        source: &mut dyn WindowSource,
        georef: Georef,
        start: Instant,
    ) -> Result<SegmentResponse, ApiError> {
        let mut t = Timings {
            image_decode: ms(start.elapsed()),
            ..Timings::default()
        };
        let prompt = self
            .prompt
            .clone()
            .ok_or_else(|| ApiError::internal("a windowed search without a prompt"))?
            .into_pixels(self.coords, &georef)?;
        let search_start = Instant::now();
        let (outcome, encode_time) = self.with_features(&georef, |features| {
            search(&self.model, source, &prompt, &self.options, features, &mut |_| {})
        });
        let outcome = outcome?;
        t.encode = ms(encode_time);
        t.decode = ms(search_start.elapsed().saturating_sub(encode_time));
        self.metrics.window_searches.inc();
        self.metrics.windows_per_search.observe(outcome.searched.len() as f64);
        let post_start = Instant::now();
        let mut response = self.respond(&outcome, &georef, &prompt)?;
        t.postprocess = ms(post_start.elapsed());
        response.timings_ms = t;
        Ok(response)
    }

    /// Runs `f` over the server's feature cache as the window features
    /// (one flight per window); gives its result and the encoder's time.
    fn with_features<T>(&self, georef: &Georef, f: impl FnOnce(&mut dyn WindowFeatures) -> T) -> (T, Duration) {
        let encode_time = Cell::new(Duration::ZERO);
        let flight = WindowFlight::new(&self.cache);
        let mut features = FnFeatures {
            get: |_: usize, w: Window| self.cached(w, georef, &flight),
            encode: |windows: &[(usize, Window)], images: Vec<ModelImage>| {
                self.encode(windows, images, georef, &encode_time, &flight)
            },
        };
        let out = f(&mut features);
        (out, encode_time.get())
    }

    fn window_key(&self, w: Window) -> String {
        window_key(&self.image_id, &self.raster.key(), w)
    }

    /// A window's features from the cache (or from another search encoding
    /// them); `None` when this search is to encode them.
    fn cached(&self, w: Window, georef: &Georef, flight: &WindowFlight) -> Option<Arc<EncodedImage>> {
        let key = self.window_key(w);
        let image = flight.get(&key, w.width, w.height, &georef.window(w.x, w.y))?;
        Some(Arc::new((*image.encoded).clone()))
    }

    /// Windowed searches run beside the engine workers on the blocking pool:
    /// the encoder is called here directly, not through the engine's queue.
    fn encode(
        &self,
        windows: &[(usize, Window)],
        images: Vec<ModelImage>,
        georef: &Georef,
        encode_time: &Cell<Duration>,
        flight: &WindowFlight,
    ) -> Result<Vec<Arc<EncodedImage>>, WindowError> {
        if Instant::now() >= self.deadline {
            // The windows encoded so far stay cached for the next request.
            return Err(WindowError::Stopped(
                "the request's deadline passed before every window was encoded; the windows encoded so far stay \
                 cached, so sending the request again resumes the search"
                    .into(),
            ));
        }
        let start = Instant::now();
        let encoded = self.model.encode_batch(&images)?;
        let elapsed = start.elapsed();
        encode_time.set(encode_time.get() + elapsed);
        self.metrics.windows_encoded.inc_by(windows.len() as u64);
        let per_window = elapsed / windows.len().max(1) as u32;
        Ok(windows
            .iter()
            .zip(encoded)
            .map(|(&(_, w), features)| {
                let key = self.window_key(w);
                flight.finish(
                    &key,
                    Arc::new(CachedImage {
                        image_id: self.image_id.clone(),
                        key: key.clone(),
                        georef: georef.window(w.x, w.y),
                        // Made on the blocking pool, beside the engine's
                        // workers: no worker to hand it back to (on CUDA a
                        // windowed search is not yet routed through them).
                        encoded: OnWorker::anywhere(features.clone()),
                        encode_time: per_window,
                    }),
                );
                Arc::new(features)
            })
            .collect())
    }

    /// The best candidate as the answer, kept for refine as the windows
    /// that found it.
    fn respond(&self, outcome: &SearchOutcome, georef: &Georef, prompt: &Prompt) -> Result<SegmentResponse, ApiError> {
        let grid = &outcome.grid;
        let best = outcome.best();
        let result_id = self.results.insert(WindowedResult {
            image_id: self.image_id.clone(),
            raster_key: self.raster.key(),
            scene_width: grid.scene_width,
            scene_height: grid.scene_height,
            georef: georef.clone(),
            grid: GridShape::from(grid),
            windows: best.map(|c| c.object_windows(prompt)).unwrap_or_default(),
        });
        let answer = SceneAnswer {
            image_id: &self.image_id,
            width: grid.scene_width,
            height: grid.scene_height,
            georef,
            outputs: self.outputs,
            crs: self.crs,
            text: prompt.text.as_deref(),
        };
        let report = WindowReport {
            grid: GridShape::from(grid),
            searched: outcome.searched.len(),
            encoded: outcome.encoded,
            candidates: candidate_reports(&outcome.candidates, Some(georef))?,
        };
        answer.respond(best, result_id, outcome.encoded == 0, report)
    }
}
