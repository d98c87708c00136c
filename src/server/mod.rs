//! HTTP service (`rsam serve`): referring segmentation over HTTP.
//!
//! Layers, each with one job (like text-embeddings-inference):
//! - [`http`]: routes, content negotiation, auth, request ids, metrics, deadlines;
//! - [`service`]: the request pipeline (image, prompts, decode, outputs);
//! - [`engine`]: model worker threads, bounded queue, dynamic batching;
//! - [`cache`]: image features by content hash (LRU by bytes, single flight);
//! - [`results`]: results kept for `POST /v1/refine`;
//! - [`api`] / [`multipart`]: wire types; [`errors`]: error codes;
//!   [`metrics`]: Prometheus;
//! - [`page`]: the web page at `/` (embedded static files).
//!
//! The server binds first and loads the model in the background: `/healthz`
//! answers at once, `/readyz` and the model routes once the model is loaded
//! and warmed (one encode + decode).

pub mod api;
pub mod cache;
pub mod cached_image;
pub mod config;
pub mod engine;
pub mod errors;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod multipart;
pub mod on_worker;
pub mod outputs;
pub mod page;
pub mod results;
pub mod scenes;
pub mod service;
pub mod window_answer;
pub mod window_flight;
pub mod window_report;
pub mod window_request;
pub mod windowed;
pub mod windowed_refine;
pub mod windowed_result;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::ServerConfig;
pub use errors::{ApiError, ErrorCode};

use http::AppState;
use metrics::Metrics;
use service::Service;

/// Why the server could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the model: {0}")]
    Load(String),
    #[error("server failed: {0}")]
    Serve(String),
}

/// Where model loading stands.
#[derive(Debug, Clone)]
enum Readiness {
    Loading,
    Ready,
    Failed(String),
}

/// A running server.
///
/// Dropping the handle shuts the server down (gracefully).
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    ready: watch::Receiver<Readiness>,
    task: JoinHandle<Result<(), ServerError>>,
    state: AppState,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// Signals the server to stop accepting and drain.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl ShutdownTrigger {
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the model is loaded and warmed.
    pub async fn wait_ready(&mut self) -> Result<(), ServerError> {
        let state = self
            .ready
            .wait_for(|r| !matches!(r, Readiness::Loading))
            .await
            .map_err(|_| ServerError::Load("the loader stopped".into()))?
            .clone();
        match state {
            Readiness::Failed(reason) => Err(ServerError::Load(reason)),
            _ => Ok(()),
        }
    }

    /// The loaded service (for tests and embedding), once ready.
    pub fn service(&self) -> Option<Arc<Service>> {
        self.state.service_if_ready()
    }

    pub fn trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(self.shutdown.clone())
    }

    /// Stops accepting connections; in-flight requests and queued model
    /// work still finish.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits until the server has drained and stopped.
    pub async fn join(self) -> Result<(), ServerError> {
        let Self { task, shutdown, .. } = self;
        // Keep the sender alive until the server is done: dropping it would
        // count as a shutdown signal.
        let result = task.await.map_err(|e| ServerError::Serve(e.to_string()))?;
        drop(shutdown);
        result
    }
}

/// Binds `config.addr`, starts serving, and loads the model in the
/// background. Call [`ServerHandle::wait_ready`] to wait for the model.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: config.addr,
        source,
    })?;
    let state = AppState::new(config, Metrics::new());
    let (ready_tx, ready) = watch::channel(Readiness::Loading);
    let (shutdown, shutdown_rx) = watch::channel(false);
    tokio::spawn(load(state.clone(), ready_tx, shutdown.clone()));
    let task = tokio::spawn(serve(listener, state.clone(), shutdown_rx));
    Ok(ServerHandle {
        addr,
        shutdown,
        ready,
        task,
        state,
    })
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    let app = http::router(state.clone());
    let signal = async move {
        // A dropped handle counts as a shutdown request too.
        let _ = shutdown.wait_for(|stop| *stop).await;
        tracing::info!("shutting down: no new connections, draining in-flight requests");
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .await
        .map_err(|e| ServerError::Serve(e.to_string()))?;
    if let Some(service) = state.service_if_ready() {
        // Every request is answered by now; let the workers finish and exit.
        let _ = tokio::task::spawn_blocking(move || service.engine.shutdown()).await;
    }
    tracing::info!("server stopped");
    Ok(())
}

/// Loads and warms the model on a blocking thread; on failure, reports it
/// and stops the server.
async fn load(state: AppState, ready: watch::Sender<Readiness>, shutdown: watch::Sender<bool>) {
    let config = state.config().clone();
    let metrics = state.metrics().clone();
    let started = std::time::Instant::now();
    let loaded = tokio::task::spawn_blocking(move || load_service(&config, metrics)).await;
    match loaded {
        Ok(Ok(service)) => {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "model loaded and warmed: ready"
            );
            state.set_service(Arc::new(service));
            ready.send_replace(Readiness::Ready);
        }
        Ok(Err(e)) => fail(&ready, &shutdown, e.to_string()),
        Err(e) => fail(&ready, &shutdown, format!("the loader panicked: {e}")),
    }
}

fn fail(ready: &watch::Sender<Readiness>, shutdown: &watch::Sender<bool>, reason: String) {
    tracing::error!(%reason, "model loading failed");
    ready.send_replace(Readiness::Failed(reason));
    shutdown.send_replace(true);
}

fn load_service(config: &ServerConfig, metrics: Metrics) -> Result<Service, ServerError> {
    let load = |e: crate::RsamError| ServerError::Load(e.to_string());
    let options = crate::LoadOptions {
        device: crate::predictor::parse_device(&config.device).map_err(load)?,
        dtype: crate::predictor::parse_dtype(&config.dtype).map_err(load)?,
        max_pixels: config.max_pixels,
    };
    let model = crate::loaded_model::LoadedModel::load(&config.model_dir, &options).map_err(load)?;
    metrics.set_model_info(model.name(), model.kind().as_str(), &config.device, &config.dtype);
    Service::start(model, config, metrics).map_err(|e| ServerError::Load(e.message))
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Serves until Ctrl-C / SIGTERM, then drains and exits.
pub fn run(config: ServerConfig) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rsam-http")
        .build()?;
    let result = runtime.block_on(serve_until_signal(config));
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn serve_until_signal(config: ServerConfig) -> anyhow::Result<()> {
    let mut handle = start(config).await?;
    tracing::info!(addr = %handle.addr(), "listening; loading the model");
    let trigger = handle.trigger();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.shutdown();
    });
    handle.wait_ready().await?;
    handle.join().await?;
    Ok(())
}
