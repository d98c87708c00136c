//! The HTTP layer: routes, content negotiation, authentication, request
//! ids, metrics and deadlines. Handlers only parse and answer; the work is
//! in [`super::service::Service`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use super::api::{
    parse_json, parse_raster, ImageJson, ImageSource, RawSegment, RefineJson, RefineRequest, SegmentJson,
    SegmentRequest, SegmentResponse,
};
use super::config::ServerConfig;
use super::errors::{ApiError, ErrorCode};
use super::metrics::Metrics;
use super::multipart;
use super::service::Service;
use super::window_request::WindowJson;
use crate::image_input::RasterOptions;

/// The API description served at `GET /openapi.yaml`.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// State shared by every handler. The service appears once the model is
/// loaded and warmed; until then model routes answer 503 `not_ready`.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    service: OnceLock<Arc<Service>>,
    pub metrics: Metrics,
    pub config: ServerConfig,
}

impl AppState {
    pub fn new(config: ServerConfig, metrics: Metrics) -> Self {
        Self(Arc::new(Shared {
            service: OnceLock::new(),
            metrics,
            config,
        }))
    }

    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    pub fn set_service(&self, service: Arc<Service>) {
        let _ = self.0.service.set(service);
    }

    pub fn service_if_ready(&self) -> Option<Arc<Service>> {
        self.0.service.get().cloned()
    }

    fn service(&self) -> Result<Arc<Service>, ApiError> {
        self.service_if_ready()
            .ok_or_else(|| ApiError::new(ErrorCode::NotReady, "the model is still loading"))
    }
}

/// The request's deadline, set by the timeout middleware.
#[derive(Debug, Clone, Copy)]
struct Deadline(Instant);

/// One route: method, path template, whether it needs the API key.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub authenticated: bool,
    handler: fn() -> MethodRouter<AppState>,
}

/// Every route the server serves; the router is built from this table, so
/// the tests can check it against `openapi.yaml`.
pub fn routes() -> Vec<Route> {
    let r = |method, path, authenticated, handler| Route {
        method,
        path,
        authenticated,
        handler,
    };
    let mut table = vec![
        r(Method::POST, "/v1/segment", true, || post(segment)),
        r(Method::POST, "/v1/refine", true, || post(refine)),
        r(Method::POST, "/v1/images", true, || post(images)),
        r(Method::GET, "/v1/model", true, || get(model_info)),
        r(Method::GET, "/healthz", false, || get(healthz)),
        r(Method::GET, "/readyz", false, || get(readyz)),
        r(Method::GET, "/metrics", false, || get(metrics)),
        r(Method::GET, "/openapi.yaml", false, || get(openapi)),
    ];
    // The web page: public, so it loads without a key (it asks for one).
    table.extend(
        super::page::ASSETS
            .iter()
            .map(|a| r(Method::GET, a.path, false, || get(super::page::serve))),
    );
    table
}

/// The application with all middleware.
pub fn router(state: AppState) -> Router {
    let (mut private, mut public) = (Router::new(), Router::new());
    for route in routes() {
        if route.authenticated {
            private = private.route(route.path, (route.handler)());
        } else {
            public = public.route(route.path, (route.handler)());
        }
    }
    let private = private.route_layer(from_fn_with_state(state.clone(), authenticate));
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn_with_state(state.clone(), track))
        .layer(from_fn_with_state(state.clone(), deadline))
        .layer(CatchPanicLayer::custom(panic_response));
    private
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware)
        .with_state(state)
}

fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
}

// ---------------------------------------------------------------------------
// Middleware
// ---------------------------------------------------------------------------

/// A panic in a handler fails that request with a JSON 500; the server and
/// its other connections carry on.
fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(%detail, "a request handler panicked");
    ApiError::internal("the request failed unexpectedly; the server keeps serving").into_response()
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight(prometheus::IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts requests by route template (`unmatched` for unknown paths).
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let gauge = state.0.metrics.inflight.clone();
    gauge.inc();
    let _guard = InFlight(gauge);
    let start = Instant::now();
    let response = next.run(req).await;
    state
        .0
        .metrics
        .observe_request(&route, response.status().as_u16(), start.elapsed());
    response
}

/// Bounds the whole request by `--request-timeout-s` (504 past it); the
/// deadline also travels with model jobs so the worker skips stale ones.
async fn deadline(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let timeout = state.0.config.request_timeout;
    req.extensions_mut().insert(Deadline(Instant::now() + timeout));
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Timeout,
            format!("the request took longer than {} s", timeout.as_secs_f64()),
        )
        .into_response(),
    }
}

/// Compares without an early exit, so timing does not leak the key.
fn same_key(given: &[u8], key: &[u8]) -> bool {
    given.len() == key.len() && given.iter().zip(key).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(key) = state.0.config.api_key.as_deref() else {
        return next.run(req).await;
    };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    match given {
        Some(g) if same_key(g.trim().as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(ErrorCode::Unauthorized, "wrong API key").into_response(),
        None => ApiError::new(
            ErrorCode::Unauthorized,
            "missing API key: send Authorization: Bearer KEY or x-api-key: KEY",
        )
        .into_response(),
    }
}

// ---------------------------------------------------------------------------
// Bodies
// ---------------------------------------------------------------------------

/// How a body is encoded.
enum BodyKind {
    Json,
    Multipart(String),
    /// Image file bytes as the whole body (`POST /v1/images` only).
    Raw,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyKind::Json);
    };
    let ct = ct.to_str().unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyKind::Json),
        e if e.ends_with("+json") => Ok(BodyKind::Json),
        "multipart/form-data" => Ok(BodyKind::Multipart(multipart::boundary(ct)?)),
        e if e.starts_with("image/") || e == "application/octet-stream" => Ok(BodyKind::Raw),
        _ => Err(unsupported_content_type(ct)),
    }
}

fn unsupported_content_type(ct: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnsupportedMediaType,
        format!("content type {ct:?} is not accepted here: send application/json or multipart/form-data"),
    )
}

/// What a model route has once its request is admitted.
struct Admitted {
    service: Arc<Service>,
    kind: BodyKind,
    body: Bytes,
}

/// The checks made before a model route does any work: the model is ready,
/// the content type is one the route takes (`json_only` for refine), and
/// the body fits the size limit. A request refused here has its unread
/// body drained first (see [`drain`]), so the client still sending it
/// receives the error instead of a connection reset.
async fn admit(state: &AppState, headers: &HeaderMap, body: Body, json_only: bool) -> Result<Admitted, ApiError> {
    let checked = state.service().and_then(|service| {
        let kind = body_kind(headers)?;
        if json_only && !matches!(kind, BodyKind::Json) {
            return Err(unsupported_content_type("not JSON"));
        }
        Ok((service, kind))
    });
    let (service, kind) = match checked {
        Ok(ok) => ok,
        Err(e) => {
            drain(headers, body.into_data_stream()).await;
            return Err(e);
        }
    };
    let body = read_body(state, headers, body, &kind).await?;
    Ok(Admitted { service, kind, body })
}

/// Reads the whole body under the size limit (413 above it). A body that
/// breaks off is malformed in the body's own kind.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body, kind: &BodyKind) -> Result<Bytes, ApiError> {
    let limit = state.0.config.body_limit;
    let too_large = || {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request body is over the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut stream = body.into_data_stream();
    if declared.is_some_and(|n| n > limit as u64) {
        drain(headers, stream).await;
        return Err(too_large());
    }
    let mut buffer = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let code = match kind {
                BodyKind::Json => ErrorCode::MalformedJson,
                BodyKind::Multipart(_) => ErrorCode::MalformedMultipart,
                BodyKind::Raw => ErrorCode::InvalidImage,
            };
            ApiError::new(code, format!("cannot read the request body: {e}"))
        })?;
        if buffer.len() + chunk.len() > limit {
            drain(headers, stream).await;
            return Err(too_large());
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buffer))
}

/// How much of a refused body is read and discarded, at most, before the
/// error is sent.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Reads and discards the rest of a refused request's body. Answering
/// while the client is still sending makes the server close a socket with
/// unread data, which resets the connection: most clients then report
/// "connection reset" and never show the 413 or 415. Up to [`DRAIN_BYTES`]
/// within [`DRAIN_TIME`] are discarded; past either the error is sent
/// anyway. A client that sent `Expect: 100-continue` has sent nothing yet
/// and receives the error in place of the `100 Continue`, so nothing is
/// read.
async fn drain(headers: &HeaderMap, mut stream: axum::body::BodyDataStream) {
    let expects_continue = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if expects_continue {
        return;
    }
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// Bodies up to this size are parsed on the async thread; larger ones (a
/// base64 image of megabytes) on the blocking pool.
const INLINE_PARSE_BYTES: usize = 256 << 10;

async fn parse_off<T: Send + 'static>(
    service: &Service,
    body: Bytes,
    parse: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    if body.len() <= INLINE_PARSE_BYTES {
        return parse(&body);
    }
    service.blocking(move || parse(&body)).await?
}

/// The routing header clients set to the image's id: load balancers hash
/// on it, and rsam checks it against the bytes it receives.
pub const IMAGE_ID_HEADER: &str = "x-rsam-image-id";

/// The `X-Rsam-Image-Id` header, when sent.
fn claimed_image_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(IMAGE_ID_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// What the client asked the answer to be: JSON, or the first result's
/// mask as a file (`Accept: image/png` or `image/tiff` before any
/// `application/json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Json,
    Png,
    GeoTiff,
}

impl Answer {
    fn of(headers: &HeaderMap) -> Self {
        let accept = headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        for range in accept.split(',') {
            let media = range.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            match media.as_str() {
                "image/png" => return Self::Png,
                "image/tiff" => return Self::GeoTiff,
                "application/json" => return Self::Json,
                _ => {}
            }
        }
        Self::Json
    }

    /// Asks for the output the answer needs.
    fn ask(self, outputs: &mut super::api::Outputs) {
        match self {
            Self::Png => outputs.png = true,
            Self::GeoTiff => outputs.geotiff = true,
            Self::Json => {}
        }
    }

    /// The response: JSON, or the first result's mask with the ids in
    /// headers for chaining.
    fn respond(self, resp: SegmentResponse) -> Result<Response, ApiError> {
        let content_type = match self {
            Self::Json => return Ok(Json(resp).into_response()),
            Self::Png => "image/png",
            Self::GeoTiff => "image/tiff",
        };
        let mut first = resp
            .results
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::internal("no result to return as a file"))?;
        let file = match self {
            Self::Png => first.png.take(),
            _ => first.geotiff.take(),
        };
        let bytes = file.unwrap_or_default();
        let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], bytes).into_response();
        let h = response.headers_mut();
        for (name, value) in [
            ("x-rsam-image-id", resp.image_id),
            ("x-rsam-result-id", first.result_id),
        ] {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        Ok(response)
    }
}

// ---------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------

async fn segment(
    State(state): State<AppState>,
    Extension(deadline): Extension<Deadline>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Admitted { service, kind, body } = admit(&state, &headers, body, false).await?;
    let raw = match kind {
        BodyKind::Json => parse_off(&service, body, |b| RawSegment::from_json(parse_json::<SegmentJson>(b)?)).await?,
        BodyKind::Multipart(boundary) => multipart::parse_segment(body, boundary).await?,
        BodyKind::Raw => return Err(unsupported_content_type("image/*")),
    };
    let mut req = SegmentRequest::from_raw(raw, &service.limits)?;
    if let ImageSource::Bytes { claimed_id, .. } = &mut req.image {
        *claimed_id = claimed_image_id(&headers);
    }
    let answer = Answer::of(&headers);
    answer.ask(&mut req.outputs);
    answer.respond(service.segment(req, deadline.0).await?)
}

async fn refine(
    State(state): State<AppState>,
    Extension(deadline): Extension<Deadline>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Admitted { service, body, .. } = admit(&state, &headers, body, true).await?;
    let mut req = RefineRequest::from_json(parse_json::<RefineJson>(&body)?, &service.limits)?;
    let answer = Answer::of(&headers);
    answer.ask(&mut req.outputs);
    answer.respond(service.refine(req, deadline.0).await?)
}

async fn images(
    State(state): State<AppState>,
    Extension(deadline): Extension<Deadline>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let Admitted { service, kind, body } = admit(&state, &headers, body, false).await?;
    let (bytes, raster, window) = match kind {
        BodyKind::Json => {
            let decode = |b: &[u8]| -> Result<(Vec<u8>, RasterOptions, Option<WindowJson>), ApiError> {
                let json = parse_json::<ImageJson>(b)?;
                let raster = parse_raster(json.bands, json.stretch.as_deref())?;
                Ok((super::api::decode_base64("image", &json.image)?, raster, json.window))
            };
            let (bytes, raster, window) = parse_off(&service, body, decode).await?;
            (Bytes::from(bytes), raster, window)
        }
        BodyKind::Multipart(boundary) => multipart::parse_image(body, boundary).await?,
        BodyKind::Raw => (body, RasterOptions::default(), None),
    };
    let claimed_id = claimed_image_id(&headers);
    let answer = match window {
        Some(w) => {
            let options = super::window_request::parse_window(&w)?;
            service
                .warm_windowed(bytes, claimed_id, raster, options, deadline.0)
                .await?
        }
        None => service.warm(bytes, claimed_id, raster, deadline.0).await?,
    };
    Ok(Json(answer).into_response())
}

async fn model_info(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(Json(state.service()?.model_info()).into_response())
}

async fn healthz() -> Response {
    Json(serde_json::json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.service()?;
    Ok(Json(serde_json::json!({"status": "ready"})).into_response())
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        state.0.metrics.render(),
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("no route {} {} (see GET /openapi.yaml)", req.method(), req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}
