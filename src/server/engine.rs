//! The model engine: dedicated worker threads (std threads, never the tokio
//! runtime) fed by a bounded queue, with dynamic batching of decodes.
//!
//! Why: inference is long, CPU/GPU-bound and synchronous; running it on the
//! async runtime would stall every other connection. A bounded queue turns
//! overload into a fast 503 instead of unbounded memory and latency.
//!
//! Batching: a worker that takes a decode job also takes every queued decode
//! job for the same image (up to `max_batch_size` prompts, waiting at most
//! `max_batch_wait` for more while nothing else is queued) and runs them as
//! one `LoadedModel::decode` call. The model gives each prompt of a batch exactly
//! what it gives alone, so batching only changes throughput. One request's
//! prompts are never split. Likewise a worker that takes an encode job takes
//! up to `max_encode_batch - 1` more queued encodes (of other images) and
//! runs them as one `encode_batch` (a GPU's throughput grows with the batch).
//!
//! On a GPU: one worker per device (Candle gives each thread its own CUDA
//! stream, so a second worker could read features whose kernels still run
//! on the first's), the device synchronised at the end of every encode (so
//! its time is the kernels' and not their launches'), and features freed on
//! a worker ([`super::on_worker`]).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::loaded_model::LoadedModel;
use crate::predictor::{CheckedPrompt, EncodedImage, ModelImage};
use crate::Prediction;
use tokio::sync::oneshot;
use tracing::Span;

use super::cached_image::CachedImage;
use super::errors::{ApiError, ErrorCode};
use super::metrics::{Metrics, Stage};
use super::on_worker::{mark_model_worker, Graveyard, OnWorker};

/// Queue and batching settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Jobs waiting beyond this are refused (503).
    pub max_queue: usize,
    /// Most prompts in one decode batch across requests.
    pub max_batch_size: usize,
    /// Longest a decode waits for batch mates while nothing else is queued.
    pub max_batch_wait: Duration,
    /// Worker threads (each runs whole model calls); one on a GPU.
    pub workers: usize,
    /// Most images encoded in one batch (1: one at a time).
    pub max_encode_batch: usize,
}

/// Called exactly once with an encoding's outcome (on drop if never called,
/// so a lost job can never leave waiters hanging).
pub struct EncodeDone(Option<OnEncoded>);

type OnEncoded = Box<dyn FnOnce(Result<Arc<CachedImage>, ApiError>) + Send>;

impl EncodeDone {
    pub fn new(f: impl FnOnce(Result<Arc<CachedImage>, ApiError>) + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    fn call(mut self, outcome: Result<Arc<CachedImage>, ApiError>) {
        if let Some(f) = self.0.take() {
            f(outcome);
        }
    }
}

impl Drop for EncodeDone {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(Err(ApiError::internal("the encoding job was dropped")));
        }
    }
}

/// Encode one image, already resized to the model's S x S input (the queue
/// then holds S*S*3 bytes per job whatever the upload size).
pub struct EncodeJob {
    pub image_id: String,
    /// The cache key (the id, and a non-default raster rendering).
    pub key: String,
    pub georef: crate::geo::Georef,
    pub image: ModelImage,
    pub deadline: Instant,
    /// The request's span: the worker logs inside it.
    pub span: Span,
    pub done: EncodeDone,
}

/// What a decode job gets back.
#[derive(Debug)]
pub struct DecodeOutput {
    pub predictions: Vec<Prediction>,
    /// Wall time of the batch's model call.
    pub decode: Duration,
    /// Time spent queued before the worker took the job.
    pub queued: Duration,
    /// Prompts in the batch this job ran in.
    pub batch_size: usize,
}

/// Decode a request's prompts, checked against its image, on that image.
pub struct DecodeJob {
    pub image: Arc<CachedImage>,
    pub prompts: Vec<CheckedPrompt>,
    /// SAM 2: answer the three candidates (batched only with jobs that ask
    /// the same).
    pub multimask: bool,
    pub deadline: Instant,
    /// The request's span: the worker logs inside it.
    pub span: Span,
    pub reply: oneshot::Sender<Result<DecodeOutput, ApiError>>,
}

pub enum Job {
    // Boxed: an encode job carries the image and its georeferencing, three
    // times a decode job's size.
    Encode(Box<EncodeJob>),
    Decode(DecodeJob),
}

impl Job {
    /// Answers the job with an error without running it.
    fn fail(self, err: ApiError) {
        match self {
            Job::Encode(j) => j.done.call(Err(err)),
            Job::Decode(j) => {
                let _ = j.reply.send(Err(err));
            }
        }
    }
}

struct Queued {
    job: Job,
    enqueued: Instant,
}

struct QueueState {
    jobs: VecDeque<Queued>,
    /// Values dropped off the workers, for a worker to drop.
    buried: Vec<Box<dyn Send>>,
    closed: bool,
}

struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
    metrics: Metrics,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_depth(&self, state: &QueueState) {
        self.metrics.queue_depth.set(state.jobs.len() as i64);
    }

    /// Next job, blocking; `None` once closed and drained. Drops what was
    /// buried meanwhile first (outside the lock).
    fn pop(&self) -> Option<Queued> {
        let mut state = self.lock();
        loop {
            if !state.buried.is_empty() {
                let buried = std::mem::take(&mut state.buried);
                drop(state);
                drop(buried);
                state = self.lock();
                continue;
            }
            if let Some(job) = state.jobs.pop_front() {
                self.set_depth(&state);
                return Some(job);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Graveyard for Queue {
    fn bury(&self, value: Box<dyn Send>) {
        self.lock().buried.push(value);
        self.ready.notify_all();
    }
}

/// Worker threads for `requested` on a model on a CUDA device (`on_cuda`)
/// or not: one per CUDA device, as asked elsewhere (at least one).
pub fn worker_count(requested: usize, on_cuda: bool) -> usize {
    if on_cuda {
        1
    } else {
        requested.max(1)
    }
}

/// The model engine.
pub struct Engine {
    queue: Arc<Queue>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("capacity", &self.queue.capacity)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the worker threads.
    pub fn start(model: Arc<LoadedModel>, config: EngineConfig, metrics: Metrics) -> std::io::Result<Self> {
        let queue = Arc::new(Queue {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                buried: Vec::new(),
                closed: false,
            }),
            ready: Condvar::new(),
            capacity: config.max_queue.max(1),
            metrics: metrics.clone(),
        });
        let count = worker_count(config.workers, model.device().is_cuda());
        if count < config.workers {
            tracing::warn!(
                requested = config.workers,
                workers = count,
                device = ?model.device().location(),
                "one model worker per CUDA device: --workers {} lowered to {count}",
                config.workers
            );
        }
        let mut workers = Vec::new();
        for i in 0..count {
            let worker = Worker {
                model: model.clone(),
                queue: queue.clone(),
                config: config.clone(),
                metrics: metrics.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("rsam-worker-{i}"))
                .spawn(move || worker.run())?;
            workers.push(handle);
        }
        Ok(Self {
            queue,
            workers: Mutex::new(workers),
        })
    }

    /// Queues a job, or answers it at once with 503 when the queue is full
    /// or the engine is shutting down. Either way the job's reply channel
    /// receives exactly one answer.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        let mut state = self.queue.lock();
        let refusal = if state.closed {
            Some(ApiError::new(ErrorCode::NotReady, "the server is shutting down"))
        } else if state.jobs.len() >= self.queue.capacity {
            Some(ApiError::new(
                ErrorCode::Overloaded,
                format!(
                    "the model queue is full ({} jobs waiting): retry later",
                    self.queue.capacity
                ),
            ))
        } else {
            None
        };
        if let Some(err) = refusal {
            drop(state);
            job.fail(err.clone());
            return Err(err);
        }
        state.jobs.push_back(Queued {
            job,
            enqueued: Instant::now(),
        });
        self.queue.set_depth(&state);
        drop(state);
        // All: a worker waiting for batch mates of another image must not
        // swallow the only wake-up.
        self.queue.ready.notify_all();
        Ok(())
    }

    /// Jobs waiting now.
    pub fn depth(&self) -> usize {
        self.queue.lock().jobs.len()
    }

    /// Stops taking jobs, lets the workers finish everything queued, and
    /// joins them. Blocking: call from a blocking context.
    pub fn shutdown(&self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
        let handles = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Workers hold only the queue; closing it lets them exit once it is
        // drained. Joining here could block an async runtime, so don't.
        self.queue.lock().closed = true;
        self.queue.ready.notify_all();
    }
}

struct Worker {
    model: Arc<LoadedModel>,
    queue: Arc<Queue>,
    config: EngineConfig,
    metrics: Metrics,
}

/// A decode job with the time it waited.
struct Taken {
    job: DecodeJob,
    queued: Duration,
}

impl Worker {
    fn run(self) {
        mark_model_worker();
        while let Some(first) = self.queue.pop() {
            let queued = first.enqueued.elapsed();
            // Our own bookkeeping must not kill the worker either: a panic
            // drops the job's reply channels, which answers it with an error.
            let _ = catch_unwind(AssertUnwindSafe(|| match first.job {
                Job::Encode(job) => {
                    let batch = self.collect_encodes(*job);
                    self.encode(batch);
                }
                Job::Decode(job) => {
                    let batch = self.collect_batch(Taken { job, queued });
                    self.decode(batch);
                }
            }));
        }
    }

    /// Takes up to `max_encode_batch - 1` queued encode jobs besides
    /// `first` (without waiting for more).
    fn collect_encodes(&self, first: EncodeJob) -> Vec<EncodeJob> {
        let max = self.config.max_encode_batch.max(1);
        let mut batch = vec![first];
        let mut state = self.queue.lock();
        let mut i = 0;
        while i < state.jobs.len() && batch.len() < max {
            if !matches!(state.jobs[i].job, Job::Encode(_)) {
                i += 1;
                continue;
            }
            if let Some(Queued {
                job: Job::Encode(job), ..
            }) = state.jobs.remove(i)
            {
                batch.push(*job);
            }
        }
        self.queue.set_depth(&state);
        batch
    }

    /// Encodes a batch of images as one model call; if it fails as a whole,
    /// one by one, so that one bad image fails only its own request.
    fn encode(&self, jobs: Vec<EncodeJob>) {
        let now = Instant::now();
        let (live, expired): (Vec<EncodeJob>, Vec<EncodeJob>) = jobs.into_iter().partition(|j| now <= j.deadline);
        for job in expired {
            job.done.call(Err(timeout()));
        }
        if live.is_empty() {
            return;
        }
        let span = tracing::info_span!("encode_batch", images = live.len());
        for job in &live {
            span.follows_from(&job.span);
        }
        let _batch = span.enter();
        let images: Vec<ModelImage> = live.iter().map(|j| j.image.clone()).collect();
        match self.run_encode(&images) {
            Ok((encoded, took)) => {
                for (job, encoded) in live.into_iter().zip(encoded) {
                    self.finish_encode(job, Ok((encoded, took)));
                }
            }
            Err(_) if live.len() > 1 => {
                for job in live {
                    let result = self.run_encode(std::slice::from_ref(&job.image));
                    let result = result.map(|(mut encoded, took)| (encoded.remove(0), took));
                    self.finish_encode(job, result);
                }
            }
            Err(e) => {
                for job in live {
                    self.finish_encode(job, Err(e.clone()));
                }
            }
        }
    }

    /// One `encode_batch` call, timed up to the device's end of the work.
    fn run_encode(&self, images: &[ModelImage]) -> Result<(Vec<EncodedImage>, Duration), ApiError> {
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            let encoded = self.model.encode_batch(images)?;
            // Kernels still running on this thread's CUDA stream: wait for
            // them, so that the time is real and another thread reading the
            // features reads finished ones.
            self.model.device().synchronize()?;
            Ok::<_, crate::RsamError>(encoded)
        }));
        let took = start.elapsed();
        self.metrics.observe_stage(Stage::Encode, took);
        let outcome = match result {
            Ok(Ok(encoded)) if encoded.len() == images.len() => Ok(encoded),
            Ok(Ok(encoded)) => Err(ApiError::internal(format!(
                "the model returned {} encodings for {} images",
                encoded.len(),
                images.len()
            ))),
            Ok(Err(e)) => Err(ApiError::from(e).during("encoding")),
            Err(panic) => Err(panicked("encoding", panic)),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, images = images.len(), "image encoding failed");
        }
        outcome.map(|encoded| (encoded, took))
    }

    /// Answers an encode job, its features freed on a worker when the last
    /// request or cache entry lets them go.
    fn finish_encode(&self, job: EncodeJob, result: Result<(EncodedImage, Duration), ApiError>) {
        let home: Weak<dyn Graveyard> = Arc::downgrade(&self.queue) as Weak<Queue>;
        let outcome = result.map(|(encoded, encode_time)| {
            let _request = job.span.enter();
            tracing::debug!(image_id = %job.image_id, ms = encode_time.as_secs_f64() * 1e3, "image encoded");
            Arc::new(CachedImage {
                image_id: job.image_id.clone(),
                key: job.key.clone(),
                georef: job.georef.clone(),
                encoded: OnWorker::new(encoded, home),
                encode_time,
            })
        });
        job.done.call(outcome);
    }

    /// Takes queued decode jobs on the same image as `first`, waiting up to
    /// `max_batch_wait` for more while the queue holds nothing else.
    fn collect_batch(&self, first: Taken) -> Vec<Taken> {
        let max = self.config.max_batch_size.max(1);
        let until = Instant::now() + self.config.max_batch_wait;
        let image_key = first.job.image.key.clone();
        let multimask = first.job.multimask;
        let mut prompts = first.job.prompts.len();
        let mut batch = vec![first];
        let mut state = self.queue.lock();
        loop {
            let mut i = 0;
            while i < state.jobs.len() && prompts < max {
                let fits = matches!(&state.jobs[i].job, Job::Decode(j)
                    if j.image.key == image_key && j.multimask == multimask && prompts + j.prompts.len() <= max);
                if !fits {
                    i += 1;
                    continue;
                }
                let Some(Queued {
                    job: Job::Decode(job),
                    enqueued,
                }) = state.jobs.remove(i)
                else {
                    unreachable!("checked to be a decode job above");
                };
                prompts += job.prompts.len();
                batch.push(Taken {
                    job,
                    queued: enqueued.elapsed(),
                });
            }
            self.queue.set_depth(&state);
            let now = Instant::now();
            if prompts >= max || state.closed || !state.jobs.is_empty() || now >= until {
                return batch;
            }
            state = self
                .queue
                .ready
                .wait_timeout(state, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Runs a batch; if it fails as a whole, runs its jobs one by one so
    /// that one bad job fails only its own request.
    fn decode(&self, batch: Vec<Taken>) {
        let now = Instant::now();
        let (live, expired): (Vec<Taken>, Vec<Taken>) = batch
            .into_iter()
            .filter(|t| !t.job.reply.is_closed())
            .partition(|t| now <= t.job.deadline);
        for t in expired {
            let _ = t.job.reply.send(Err(timeout()));
        }
        if live.is_empty() {
            return;
        }
        // One span for the model call, linked to every request in it.
        let span = tracing::info_span!("decode_batch", requests = live.len());
        for t in &live {
            span.follows_from(&t.job.span);
        }
        let _batch = span.enter();
        let prompts: Vec<CheckedPrompt> = live.iter().flat_map(|t| t.job.prompts.iter().cloned()).collect();
        match self.run_decode(&live[0].job.image, &prompts, live[0].job.multimask) {
            Ok((predictions, took)) => reply_split(live, predictions, took),
            Err(_) if live.len() > 1 => {
                for t in live {
                    self.decode_alone(t);
                }
            }
            Err(e) => {
                for t in live {
                    let _ = t.job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    fn decode_alone(&self, t: Taken) {
        let _request = t.job.span.enter();
        let result = self.run_decode(&t.job.image, &t.job.prompts, t.job.multimask);
        let _ = match result {
            Ok((predictions, took)) => {
                let output = DecodeOutput {
                    batch_size: predictions.len(),
                    predictions,
                    decode: took,
                    queued: t.queued,
                };
                t.job.reply.send(Ok(output))
            }
            Err(e) => t.job.reply.send(Err(e)),
        };
    }

    fn run_decode(
        &self,
        image: &CachedImage,
        prompts: &[CheckedPrompt],
        multimask: bool,
    ) -> Result<(Vec<Prediction>, Duration), ApiError> {
        let start = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            self.model.decode(&image.encoded, prompts, multimask)
        }));
        let took = start.elapsed();
        self.metrics.observe_stage(Stage::Decode, took);
        self.metrics.observe_batch(prompts.len());
        let outcome = match result {
            Ok(Ok(p)) if p.len() == prompts.len() => Ok(p),
            Ok(Ok(p)) => Err(ApiError::internal(format!(
                "the model returned {} predictions for {} prompts",
                p.len(),
                prompts.len()
            ))),
            Ok(Err(e)) => Err(ApiError::from(e).during("decoding")),
            Err(panic) => Err(panicked("decoding", panic)),
        };
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, prompts = prompts.len(), "decode failed");
        }
        outcome.map(|p| (p, took))
    }
}

/// Hands each job its slice of the batch's predictions.
fn reply_split(live: Vec<Taken>, mut predictions: Vec<Prediction>, took: Duration) {
    let batch_size = predictions.len();
    for t in live {
        let rest = predictions.split_off(t.job.prompts.len().min(predictions.len()));
        let mine = std::mem::replace(&mut predictions, rest);
        let _ = t.job.reply.send(Ok(DecodeOutput {
            predictions: mine,
            decode: took,
            queued: t.queued,
            batch_size,
        }));
    }
}

fn timeout() -> ApiError {
    ApiError::new(
        ErrorCode::Timeout,
        "the request's deadline passed while it waited for the model",
    )
}

fn panicked(what: &str, panic: Box<dyn std::any::Any + Send>) -> ApiError {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    tracing::error!(%detail, "{what} panicked");
    ApiError::internal(format!("{what} failed inside the model: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::Rgb8Image;
    use crate::Prompt;

    fn tiny() -> Arc<LoadedModel> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rsam-tiny");
        Arc::new(LoadedModel::load(&dir, &crate::LoadOptions::default()).unwrap())
    }

    fn engine(model: &Arc<LoadedModel>, wait_ms: u64) -> Engine {
        let config = EngineConfig {
            max_queue: 8,
            max_batch_size: 16,
            max_batch_wait: Duration::from_millis(wait_ms),
            workers: 1,
            max_encode_batch: 1,
        };
        Engine::start(model.clone(), config, Metrics::new()).unwrap()
    }

    fn cached(model: &LoadedModel, id: &str) -> Arc<CachedImage> {
        let image = Rgb8Image {
            width: 40,
            height: 30,
            data: (0..40 * 30 * 3).map(|i| (i % 256) as u8).collect(),
        };
        Arc::new(CachedImage {
            image_id: id.into(),
            key: id.into(),
            georef: Default::default(),
            encoded: OnWorker::anywhere(model.encode_image(&image).unwrap()),
            encode_time: Duration::ZERO,
        })
    }

    fn submit(
        engine: &Engine,
        image: &Arc<CachedImage>,
        prompt: CheckedPrompt,
    ) -> oneshot::Receiver<Result<DecodeOutput, ApiError>> {
        let (reply, rx) = oneshot::channel();
        let deadline = Instant::now() + Duration::from_secs(30);
        let job = DecodeJob {
            image: image.clone(),
            prompts: vec![prompt],
            multimask: false,
            deadline,
            span: Span::none(),
            reply,
        };
        engine.submit(Job::Decode(job)).unwrap();
        rx
    }

    /// A click checked against an image of `width` x 30.
    fn click(model: &LoadedModel, x: f32, width: u32) -> CheckedPrompt {
        let prompt = Prompt {
            points: vec![crate::Point { x, y: 5.0, label: 1 }],
            ..Default::default()
        };
        model.check_prompt(prompt, width, 30).unwrap()
    }

    #[test]
    fn a_failing_job_fails_alone_and_the_worker_survives() {
        let model = tiny();
        let engine = engine(&model, 300);
        let image = cached(&model, "a");
        // Queued together, batched together; the bad one (checked against
        // another image size, which the service never does) fails the
        // batch, and the retry one by one fails only itself.
        let good = submit(&engine, &image, click(&model, 5.0, 40));
        let bad = submit(&engine, &image, click(&model, 5.0, 80));
        let good = good.blocking_recv().unwrap().unwrap();
        assert_eq!(good.predictions.len(), 1);
        let bad = bad.blocking_recv().unwrap().unwrap_err();
        assert_eq!(bad.code, ErrorCode::InvalidPrompt);
        // Features that do not fit the model: an error, not a dead worker.
        let mut broken = (*cached(&model, "b").encoded).clone();
        broken.embeddings.image_embed =
            candle_core::Tensor::zeros((1, 3, 2, 2), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
        let broken = Arc::new(CachedImage {
            image_id: "b".into(),
            key: "b".into(),
            georef: Default::default(),
            encoded: OnWorker::anywhere(broken),
            encode_time: Duration::ZERO,
        });
        let err = submit(&engine, &broken, click(&model, 5.0, 40))
            .blocking_recv()
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InternalError);
        assert!(err.message.starts_with("decoding failed: "), "{}", err.message);
        let again = submit(&engine, &image, click(&model, 6.0, 40)).blocking_recv().unwrap();
        assert!(again.is_ok(), "the worker still serves");
        engine.shutdown();
    }

    #[test]
    fn full_queue_and_shutdown_refuse_with_503_codes() {
        let model = tiny();
        let engine = engine(&model, 0);
        let image = cached(&model, "a");
        engine.shutdown();
        let (reply, rx) = oneshot::channel();
        let job = DecodeJob {
            image,
            prompts: vec![click(&model, 5.0, 40)],
            multimask: false,
            deadline: Instant::now(),
            span: Span::none(),
            reply,
        };
        assert_eq!(engine.submit(Job::Decode(job)).unwrap_err().code, ErrorCode::NotReady);
        assert_eq!(rx.blocking_recv().unwrap().unwrap_err().code, ErrorCode::NotReady);
    }

    /// A queue holding `jobs`, closed: a worker run on it drains it and returns.
    fn closed_queue(jobs: Vec<Job>) -> Arc<Queue> {
        let jobs = jobs
            .into_iter()
            .map(|job| Queued {
                job,
                enqueued: Instant::now(),
            })
            .collect();
        Arc::new(Queue {
            state: Mutex::new(QueueState {
                jobs,
                buried: Vec::new(),
                closed: true,
            }),
            ready: Condvar::new(),
            capacity: 8,
            metrics: Metrics::new(),
        })
    }

    type Encoded = Arc<Mutex<Vec<(String, Arc<CachedImage>)>>>;

    fn encode_job(model: &LoadedModel, id: &str, seed: usize, out: &Encoded) -> Job {
        let image = Rgb8Image {
            width: 40 + seed as u32,
            height: 30,
            data: (0..(40 + seed) * 30 * 3)
                .map(|i| ((i * (seed + 1)) % 256) as u8)
                .collect(),
        };
        let (out, name) = (out.clone(), id.to_string());
        Job::Encode(Box::new(EncodeJob {
            image_id: id.into(),
            key: id.into(),
            georef: Default::default(),
            image: model.prepare(&image),
            deadline: Instant::now() + Duration::from_secs(60),
            span: Span::none(),
            done: EncodeDone::new(move |r| out.lock().unwrap().push((name, r.unwrap()))),
        }))
    }

    /// Queued encodes of different images run as one batch of at most
    /// `max_encode_batch` (one model call: one encode time) and give what
    /// each gives alone.
    #[test]
    fn queued_encodes_are_batched_with_the_same_results() {
        let model = tiny();
        let out: Encoded = Arc::default();
        for max_encode_batch in [3, 1] {
            out.lock().unwrap().clear();
            let jobs = (0..4)
                .map(|i| encode_job(&model, &format!("img{i}"), i, &out))
                .collect();
            let queue = closed_queue(jobs);
            let worker = Worker {
                model: model.clone(),
                queue: queue.clone(),
                config: EngineConfig {
                    max_queue: 8,
                    max_batch_size: 16,
                    max_batch_wait: Duration::ZERO,
                    workers: 1,
                    max_encode_batch,
                },
                metrics: Metrics::new(),
            };
            worker.run();
            let done = out.lock().unwrap().clone();
            let ids: Vec<&str> = done.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(ids, ["img0", "img1", "img2", "img3"]);
            let times: Vec<Duration> = done.iter().map(|(_, c)| c.encode_time).collect();
            if max_encode_batch == 3 {
                assert!(
                    times[0] == times[1] && times[1] == times[2],
                    "one call for three: {times:?}"
                );
                assert_ne!(times[2], times[3], "the fourth in a batch of its own");
            } else {
                assert!(times.windows(2).all(|w| w[0] != w[1]), "one call each: {times:?}");
            }
            for (i, (_, cached)) in done.iter().enumerate() {
                let image = Rgb8Image {
                    width: 40 + i as u32,
                    height: 30,
                    data: (0..(40 + i) * 30 * 3).map(|k| ((k * (i + 1)) % 256) as u8).collect(),
                };
                let alone = model.encode_image(&image).unwrap();
                assert_eq!((cached.width(), cached.height()), (alone.width, alone.height));
                let got = &cached.encoded.embeddings;
                for (a, b) in [
                    (&got.image_embed, &alone.embeddings.image_embed),
                    (&got.high_res_s0, &alone.embeddings.high_res_s0),
                    (&got.high_res_s1, &alone.embeddings.high_res_s1),
                ] {
                    let diff = (a - b)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap();
                    assert!(diff < 1e-4, "image {i}: batched features differ by {diff}");
                }
            }
        }
    }

    #[test]
    fn one_worker_per_cuda_device() {
        assert_eq!(worker_count(4, true), 1);
        assert_eq!(worker_count(1, true), 1);
        assert_eq!(worker_count(4, false), 4);
        assert_eq!(worker_count(0, false), 1);
    }

    /// Records the name of the thread that drops it.
    struct Probe(Arc<Mutex<Vec<String>>>);

    impl Drop for Probe {
        fn drop(&mut self) {
            let name = std::thread::current().name().unwrap_or("unnamed").to_string();
            self.0.lock().unwrap().push(name);
        }
    }

    /// Features the engine made and a request drops off the workers go back
    /// to the engine's queue, and what is buried there is dropped on a
    /// worker thread.
    #[test]
    fn features_are_freed_on_a_worker_thread() {
        let model = tiny();
        let engine = engine(&model, 0);
        let drops = Arc::new(Mutex::new(Vec::new()));
        engine.queue.bury(Box::new(Probe(drops.clone())));
        let until = Instant::now() + Duration::from_secs(10);
        while drops.lock().unwrap().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(*drops.lock().unwrap(), ["rsam-worker-0"]);

        let out: Encoded = Arc::default();
        engine.submit(encode_job(&model, "img", 0, &out)).unwrap();
        while out.lock().unwrap().is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let cached = out.lock().unwrap().pop().unwrap().1;
        // The workers stopped, the queue still there: the features wait in
        // it instead of being freed on this (request) thread.
        engine.shutdown();
        drop(cached);
        assert_eq!(engine.queue.lock().buried.len(), 1);
    }
}
