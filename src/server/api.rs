//! Wire types of the API and their conversion into model prompts.
//!
//! JSON and multipart requests are both parsed into [`RawSegment`] (image
//! bytes already base64-decoded) and then checked the same way into a
//! [`SegmentRequest`]: structure and limits here, coordinates and text
//! against the image later (they need its size). Everything a client can get
//! wrong maps to a specific [`ErrorCode`].

use crate::geo::{OutputCrs, Stretch};
use crate::image_input::{Coords, RasterOptions, SentPrompt};
use crate::mask::rle::Rle;
use crate::{Point, Prompt};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};

use super::errors::{ApiError, ErrorCode};
use super::window_request::{parse_window, WindowJson};

/// Standard base64; padding optional and non-zero trailing bits ignored
/// (encoders differ on both).
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes base64, tolerating a `data:...;base64,` prefix and line breaks.
pub fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    let payload = match text.strip_prefix("data:").and_then(|rest| rest.split_once(";base64,")) {
        Some((_, data)) => data,
        None => text,
    };
    let compact: String = payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    B64.decode(compact.as_bytes())
        .map_err(|e| ApiError::new(ErrorCode::MalformedBase64, format!("{field}: invalid base64: {e}")))
}

pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Limits a request is checked against before anything runs.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_points: usize,
    pub max_queries: usize,
    /// Side of the model's low-resolution logits (S/4).
    pub low_res_size: usize,
}

// ---------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------

/// One prompt as JSON: any of text, points, box, mask_input.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryJson {
    pub text: Option<String>,
    pub points: Option<Vec<Vec<f64>>>,
    #[serde(rename = "box")]
    pub bbox: Option<Vec<f64>>,
    /// Base64 of a float32 `.npy`.
    pub mask_input: Option<String>,
}

/// `POST /v1/segment` as JSON.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentJson {
    pub image: Option<String>,
    pub image_id: Option<String>,
    pub text: Option<String>,
    pub points: Option<Vec<Vec<f64>>>,
    #[serde(rename = "box")]
    pub bbox: Option<Vec<f64>>,
    pub mask_input: Option<String>,
    pub queries: Option<Vec<QueryJson>>,
    pub outputs: Option<Vec<String>>,
    /// Numbers, checked to be band numbers in [`parse_raster`] (JSON has
    /// no integer type: `3.0` is band 3).
    pub bands: Option<Vec<f64>>,
    pub stretch: Option<String>,
    pub coords: Option<String>,
    pub crs: Option<String>,
    pub multimask: Option<bool>,
    /// Turns on the windowed search (see [`super::windowed`]).
    pub window: Option<WindowJson>,
}

/// `POST /v1/refine` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefineJson {
    pub result_id: String,
    pub points: Option<Vec<Vec<f64>>>,
    #[serde(rename = "box")]
    pub bbox: Option<Vec<f64>>,
    pub outputs: Option<Vec<String>>,
    pub coords: Option<String>,
    pub crs: Option<String>,
    pub multimask: Option<bool>,
}

/// `POST /v1/images` as JSON.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageJson {
    pub image: String,
    pub bands: Option<Vec<f64>>,
    pub stretch: Option<String>,
    /// Pre-encode the scene's windows for later windowed searches.
    pub window: Option<WindowJson>,
}

/// A segment request with its binary parts decoded, from JSON or multipart.
#[derive(Debug, Default)]
pub struct RawSegment {
    pub image: Option<Bytes>,
    pub image_id: Option<String>,
    pub text: Option<String>,
    pub points: Option<Vec<Vec<f64>>>,
    pub bbox: Option<Vec<f64>>,
    /// `.npy` bytes.
    pub mask_input: Option<Vec<u8>>,
    pub queries: Option<Vec<QueryJson>>,
    pub outputs: Option<Vec<String>>,
    pub bands: Option<Vec<f64>>,
    pub stretch: Option<String>,
    pub coords: Option<String>,
    pub crs: Option<String>,
    pub multimask: Option<bool>,
    pub window: Option<WindowJson>,
}

/// Parses a JSON body, telling syntax from shape errors in the message.
/// What a windowed search refuses beside its `window` (422).
fn refuse_beside_window(raw: &RawSegment, outputs: Outputs) -> Result<(), ApiError> {
    let refusals = [
        (
            raw.queries.is_some(),
            "window takes one prompt (text, points, box), not queries: one prompt per windowed search",
        ),
        (
            raw.multimask == Some(true),
            "multimask cannot be used with window: the search ranks one mask per window",
        ),
        (
            raw.mask_input.is_some(),
            "mask_input cannot be used with window: a mask input belongs to one model input, and each window is \
             its own input",
        ),
        (
            outputs.logits,
            "outputs: logits are not available with window: the answer is stitched from windows, each with its \
             own logits",
        ),
    ];
    match refusals.iter().find(|(refused, _)| *refused) {
        Some((_, why)) => Err(ApiError::invalid_request(*why)),
        None => Ok(()),
    }
}

pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    parse_json_as("JSON body", body)
}

/// Parses a JSON request (a body, or a form field named by `what`),
/// refusing an explicit `null` anywhere in it: the API description gives
/// every field a type and null is a value of none of them, while serde
/// would quietly read a null optional field as an absent one.
pub fn parse_json_as<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ApiError> {
    let malformed = |message: String| ApiError::new(ErrorCode::MalformedJson, format!("invalid {what}: {message}"));
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| malformed(e.to_string()))?;
    if let Some(path) = null_at(&value, "") {
        return Err(malformed(format!(
            "{path} is null, which is not a value of any field: leave the field out"
        )));
    }
    serde_json::from_value(value).map_err(|e| malformed(e.to_string()))
}

/// The path of the first null in `value` (`window.overlap`, `queries[1].box`).
fn null_at(value: &serde_json::Value, path: &str) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Null => Some(if path.is_empty() {
            "the value".into()
        } else {
            path.to_string()
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| null_at(v, &format!("{path}[{i}]"))),
        Value::Object(members) => members.iter().find_map(|(k, v)| {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            null_at(v, &at)
        }),
        _ => None,
    }
}

impl RawSegment {
    pub fn from_json(json: SegmentJson) -> Result<Self, ApiError> {
        let image = json
            .image
            .map(|s| decode_base64("image", &s).map(Bytes::from))
            .transpose()?;
        let mask_input = json.mask_input.map(|s| decode_base64("mask_input", &s)).transpose()?;
        Ok(Self {
            image,
            image_id: json.image_id,
            text: json.text,
            points: json.points,
            bbox: json.bbox,
            mask_input,
            queries: json.queries,
            outputs: json.outputs,
            bands: json.bands,
            stretch: json.stretch,
            coords: json.coords,
            crs: json.crs,
            multimask: json.multimask,
            window: json.window,
        })
    }

    fn has_prompt(&self) -> bool {
        self.text.is_some() || self.points.is_some() || self.bbox.is_some() || self.mask_input.is_some()
    }
}

/// Where the image comes from.
#[derive(Debug, Clone)]
pub enum ImageSource {
    /// The file, with the id the client says it has (`X-Rsam-Image-Id`),
    /// checked against the bytes once they are hashed.
    Bytes {
        bytes: Bytes,
        claimed_id: Option<String>,
    },
    Id(String),
}

/// Which optional outputs each result carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outputs {
    pub rle: bool,
    pub png: bool,
    pub logits: bool,
    pub polygons: bool,
    /// A top-level GeoJSON FeatureCollection of every result.
    pub geojson: bool,
    /// The first result's mask as a GeoTIFF (`Accept: image/tiff`; not a
    /// JSON output).
    pub geotiff: bool,
}

impl Outputs {
    pub const NAMES: [&'static str; 5] = ["rle", "png", "logits", "polygons", "geojson"];

    /// `None` means the default, RLE only.
    pub fn parse(names: Option<&[String]>) -> Result<Self, ApiError> {
        let Some(names) = names else {
            return Ok(Self {
                rle: true,
                ..Self::default()
            });
        };
        let mut out = Self::default();
        for name in names {
            match name.trim() {
                "rle" => out.rle = true,
                "png" => out.png = true,
                "logits" => out.logits = true,
                "polygons" => out.polygons = true,
                "geojson" => out.geojson = true,
                other => {
                    return Err(ApiError::invalid_request(format!(
                        "outputs: unknown output {other:?}: expected any of rle, png, logits, polygons, geojson"
                    )))
                }
            }
        }
        Ok(out)
    }
}

/// A checked segment request.
#[derive(Debug, Clone)]
pub struct SegmentRequest {
    pub image: ImageSource,
    /// How a TIFF becomes RGB (bands, stretch).
    pub raster: RasterOptions,
    /// Points and boxes in the units of `geometry.coords`.
    pub prompts: Vec<SentPrompt>,
    pub outputs: Outputs,
    pub geometry: Geometry,
    /// A windowed search (the `window` object) instead of one model input.
    pub window: Option<crate::window::SearchOptions>,
}

/// Where prompts and outputs lie and what the model answers with: the
/// units of points and boxes, the CRS of GeoJSON output, multimask.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Geometry {
    pub coords: Coords,
    pub crs: OutputCrs,
    pub multimask: bool,
}

impl Geometry {
    fn parse(coords: Option<&str>, crs: Option<&str>, multimask: Option<bool>) -> Result<Self, ApiError> {
        let coords = match coords {
            None | Some("pixel") => Coords::Pixel,
            Some("map") => Coords::Map,
            Some(other) => {
                return Err(ApiError::invalid_request(format!(
                    "coords: {other:?} is not pixel (image pixels) or map (the raster's CRS units)"
                )))
            }
        };
        let crs = match crs {
            None => OutputCrs::Raster,
            Some(c) if c.eq_ignore_ascii_case("EPSG:4326") => OutputCrs::Wgs84,
            Some(other) => {
                return Err(ApiError::invalid_request(format!(
                    "crs: {other:?} is not supported: GeoJSON comes in the raster's own CRS (omit crs) or in \
                     EPSG:4326 (WGS 84 longitude / latitude)"
                )))
            }
        };
        Ok(Self {
            coords,
            crs,
            multimask: multimask.unwrap_or(false),
        })
    }
}

/// One 1-based band number.
fn band_number(n: f64) -> Result<u16, ApiError> {
    if n.fract() == 0.0 && (1.0..=f64::from(u16::MAX)).contains(&n) {
        return Ok(n as u16);
    }
    Err(ApiError::invalid_request(format!(
        "bands: {n} is not a band number (1-based integers, as GDAL numbers bands)"
    )))
}

/// `bands` and `stretch` of a request.
pub fn parse_raster(bands: Option<Vec<f64>>, stretch: Option<&str>) -> Result<RasterOptions, ApiError> {
    let bands = bands.map(|b| b.iter().map(|&n| band_number(n)).collect()).transpose()?;
    let stretch = stretch
        .map(|s| s.parse::<Stretch>())
        .transpose()
        .map_err(|e| ApiError::invalid_request(e.to_string()))?;
    Ok(RasterOptions { bands, stretch })
}

/// A checked refine request: new clicks and an optional new box for an
/// earlier result (a prompt of points and box only).
#[derive(Debug, Clone)]
pub struct RefineRequest {
    pub result_id: String,
    pub new: SentPrompt,
    pub outputs: Outputs,
    pub geometry: Geometry,
}

impl RefineRequest {
    pub fn from_json(json: RefineJson, limits: &Limits) -> Result<Self, ApiError> {
        Ok(Self {
            outputs: Outputs::parse(json.outputs.as_deref())?,
            geometry: Geometry::parse(json.coords.as_deref(), json.crs.as_deref(), json.multimask)?,
            new: build_prompt(None, json.points, json.bbox, None, limits)?,
            result_id: json.result_id,
        })
    }
}

impl SegmentRequest {
    pub fn from_raw(raw: RawSegment, limits: &Limits) -> Result<Self, ApiError> {
        let image = match (raw.image.clone(), raw.image_id.clone()) {
            (Some(bytes), None) => ImageSource::Bytes {
                bytes,
                claimed_id: None,
            },
            (None, Some(id)) => ImageSource::Id(id),
            (Some(_), Some(_)) => return Err(ApiError::invalid_request("give either image or image_id, not both")),
            (None, None) => {
                return Err(ApiError::invalid_request(
                    "no image: give image (the file, base64 in JSON or a file part in multipart) or image_id",
                ))
            }
        };
        let outputs = Outputs::parse(raw.outputs.as_deref())?;
        let geometry = Geometry::parse(raw.coords.as_deref(), raw.crs.as_deref(), raw.multimask)?;
        let raster = parse_raster(raw.bands.clone(), raw.stretch.as_deref())?;
        let window = raw
            .window
            .as_ref()
            .map(|w| {
                refuse_beside_window(&raw, outputs)?;
                parse_window(w)
            })
            .transpose()?;
        let prompts = prompts_of(raw, limits)?;
        Ok(Self {
            image,
            raster,
            prompts,
            outputs,
            geometry,
            window,
        })
    }
}

fn prompts_of(raw: RawSegment, limits: &Limits) -> Result<Vec<SentPrompt>, ApiError> {
    let Some(queries) = raw.queries.as_ref() else {
        if !raw.has_prompt() {
            return Err(no_prompt());
        }
        let prompt = build_prompt(raw.text, raw.points, raw.bbox, raw.mask_input, limits)?;
        return Ok(vec![prompt]);
    };
    if raw.has_prompt() {
        return Err(ApiError::invalid_request(
            "give either one prompt (text, points, box, mask_input) or queries, not both",
        ));
    }
    if queries.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NoPrompt,
            "queries is empty: give at least one prompt",
        ));
    }
    if queries.len() > limits.max_queries {
        return Err(ApiError::new(
            ErrorCode::TooManyQueries,
            format!(
                "{} queries, over the limit of {} per request",
                queries.len(),
                limits.max_queries
            ),
        ));
    }
    queries
        .iter()
        .enumerate()
        .map(|(i, q)| query_prompt(q, limits).map_err(|e| in_query(i, e)))
        .collect()
}

fn query_prompt(q: &QueryJson, limits: &Limits) -> Result<SentPrompt, ApiError> {
    if q.text.is_none() && q.points.is_none() && q.bbox.is_none() && q.mask_input.is_none() {
        return Err(no_prompt());
    }
    let mask = q
        .mask_input
        .as_deref()
        .map(|s| decode_base64("mask_input", s))
        .transpose()?;
    build_prompt(q.text.clone(), q.points.clone(), q.bbox.clone(), mask, limits)
}

fn in_query(i: usize, e: ApiError) -> ApiError {
    ApiError::new(e.code, format!("queries[{i}]: {}", e.message))
}

fn no_prompt() -> ApiError {
    ApiError::new(
        ErrorCode::NoPrompt,
        "no prompt: give text, points, box or mask_input (or queries)",
    )
}

fn build_prompt(
    text: Option<String>,
    points: Option<Vec<Vec<f64>>>,
    bbox: Option<Vec<f64>>,
    mask_input: Option<Vec<u8>>,
    limits: &Limits,
) -> Result<SentPrompt, ApiError> {
    let sent = points.as_deref().unwrap_or_default();
    let points = parse_points(sent, limits.max_points)?;
    let sent_box = bbox.as_deref().unwrap_or_default();
    let bbox = bbox.as_deref().map(parse_box).transpose()?;
    let mask_input = mask_input
        .as_deref()
        .map(|npy| parse_mask_input(npy, limits.low_res_size))
        .transpose()?;
    Ok(SentPrompt {
        // parse_points checked that every point has three numbers.
        points: sent.iter().map(|p| [p[0], p[1]]).collect(),
        bbox: bbox.map(|_| [0, 1, 2, 3].map(|i| sent_box[i])),
        prompt: Prompt {
            text,
            points,
            bbox,
            mask_input,
        },
    })
}

/// `[[x, y, label], ...]` to points; labels must be exactly 0 or 1.
pub fn parse_points(points: &[Vec<f64>], max_points: usize) -> Result<Vec<Point>, ApiError> {
    if points.len() > max_points {
        return Err(ApiError::new(
            ErrorCode::TooManyPoints,
            format!("{} points, over the limit of {max_points} per prompt", points.len()),
        ));
    }
    points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let [x, y, label] = p[..] else {
                return Err(ApiError::new(
                    ErrorCode::InvalidPrompt,
                    format!("point {i} must be [x, y, label], got {} numbers", p.len()),
                ));
            };
            if label != 0.0 && label != 1.0 {
                return Err(ApiError::new(
                    ErrorCode::InvalidPrompt,
                    format!("point {i} has label {label}: expected 1 (positive) or 0 (negative)"),
                ));
            }
            Ok(Point {
                x: x as f32,
                y: y as f32,
                label: label as u8,
            })
        })
        .collect()
}

/// `[x0, y0, x1, y1]`.
pub fn parse_box(b: &[f64]) -> Result<[f32; 4], ApiError> {
    match b {
        [x0, y0, x1, y1] => Ok([*x0 as f32, *y0 as f32, *x1 as f32, *y1 as f32]),
        _ => Err(ApiError::new(
            ErrorCode::InvalidPrompt,
            format!("box must be [x0, y0, x1, y1], got {} numbers", b.len()),
        )),
    }
}

/// A float `.npy` of S/4 x S/4 logits (leading 1-dimensions allowed).
pub fn parse_mask_input(npy: &[u8], side: usize) -> Result<Vec<f32>, ApiError> {
    Ok(crate::npy::read_low_res_logits(npy, side)?)
}

// ---------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------

fn as_base64<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(b) => s.serialize_str(&encode_base64(b)),
        None => s.serialize_none(),
    }
}

/// One prompt's result.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentResult {
    pub result_id: String,
    pub iou_prediction: f32,
    pub object_score_logit: f32,
    pub object_present: bool,
    pub area: u64,
    /// `[x, y, w, h]`, pycocotools' `toBbox`.
    pub bbox: [f64; 4],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rle: Option<Rle>,
    /// The mask as a PNG (0 / 255), base64 in JSON.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_base64")]
    pub png: Option<Vec<u8>>,
    /// S/4 x S/4 float32 `.npy`, base64 in JSON.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_base64")]
    pub logits: Option<Vec<u8>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polygons: Option<Vec<Vec<f64>>>,
    /// With `multimask` (SAM 2 models): every candidate in the model's order;
    /// the fields above describe the one with the highest predicted IoU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidates: Option<Vec<CandidateResult>>,
    /// The mask as a GeoTIFF, for `Accept: image/tiff` (never in JSON).
    #[serde(skip)]
    pub geotiff: Option<Vec<u8>>,
}

/// One candidate mask of a multimask result.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateResult {
    pub iou_prediction: f32,
    pub area: u64,
    pub bbox: [f64; 4],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rle: Option<Rle>,
    /// S/4 x S/4 float32 `.npy`, base64 in JSON.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "as_base64")]
    pub logits: Option<Vec<u8>>,
}

/// Milliseconds per stage of one request (0 for a stage it skipped).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub image_decode: f64,
    pub encode: f64,
    pub text: f64,
    pub queue: f64,
    pub decode: f64,
    pub postprocess: f64,
    pub total: f64,
}

/// `POST /v1/segment` and `POST /v1/refine` answer.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentResponse {
    pub image_id: String,
    pub width: u32,
    pub height: u32,
    pub cached: bool,
    /// Whether the image has map coordinates (a georeferenced GeoTIFF).
    pub georeferenced: bool,
    pub results: Vec<SegmentResult>,
    /// With `outputs: ["geojson"]`: a FeatureCollection, one Feature per
    /// result in order, in the raster's CRS (or WGS 84 with `crs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub geojson: Option<serde_json::Value>,
    /// A windowed search's grid and ranked candidates (with `window`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<super::window_report::WindowReport>,
    pub timings_ms: Timings,
}

/// `GET /v1/model` answer.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub model: String,
    /// `rsam` or `sam2`.
    pub kind: crate::model_kind::ModelKind,
    /// The prompt fields this model takes.
    pub prompts: &'static [&'static str],
    pub model_dir: std::path::PathBuf,
    pub weights: std::path::PathBuf,
    pub device: String,
    pub dtype: String,
    /// S, the square model input side.
    pub image_size: usize,
    /// S/4, the side of low-resolution logits and `mask_input`.
    pub low_res_size: usize,
    /// Most tokens a sentence may have (`null` for a model without text).
    pub max_text_tokens: Option<usize>,
    pub parameters: usize,
    /// The model directory's `config.json`.
    pub config: serde_json::Value,
    pub cache: super::cache::CacheStats,
    pub queue: QueueInfo,
    pub batching: BatchingInfo,
    pub results: ResultsInfo,
    pub limits: LimitsInfo,
    pub version: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueInfo {
    pub depth: usize,
    pub capacity: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct BatchingInfo {
    pub max_batch_size: usize,
    pub max_batch_wait_ms: f64,
    pub workers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResultsInfo {
    pub stored: usize,
    pub ttl_s: u64,
    pub capacity: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitsInfo {
    pub max_points: usize,
    pub max_queries: usize,
    pub max_body_bytes: usize,
    pub max_pixels: u64,
    pub request_timeout_s: f64,
}

/// `POST /v1/images` answer.
#[derive(Debug, Clone, Serialize)]
pub struct ImageResponse {
    pub image_id: String,
    pub width: u32,
    pub height: u32,
    pub cached: bool,
    pub georeferenced: bool,
    /// With `window`: the windows encoded ahead of windowed searches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<super::window_report::WindowReport>,
    pub timings_ms: Timings,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_points: 2,
            max_queries: 2,
            low_res_size: 2,
        }
    }

    fn raw(json: &str) -> RawSegment {
        RawSegment::from_json(serde_json::from_str(json).unwrap()).unwrap()
    }

    fn code(json: &str) -> ErrorCode {
        SegmentRequest::from_raw(raw(json), &limits()).unwrap_err().code
    }

    #[test]
    fn an_explicit_null_is_refused_not_read_as_absent() {
        for (body, path) in [
            (r#"{"image_id": "x", "text": null}"#, "text is null"),
            (
                r#"{"image_id": "x", "text": "a", "window": {"overlap": null}}"#,
                "window.overlap is null",
            ),
            (
                r#"{"image_id": "x", "queries": [{"text": "a", "box": null}]}"#,
                "queries[0].box is null",
            ),
        ] {
            let e = parse_json::<SegmentJson>(body.as_bytes()).unwrap_err();
            assert_eq!(e.code, ErrorCode::MalformedJson, "{body}");
            assert!(e.message.contains(path), "{}", e.message);
            assert!(e.message.contains("is null, which is not a value"), "{}", e.message);
        }
        let e = parse_json::<RefineJson>(br#"{"result_id": "r", "multimask": null}"#).unwrap_err();
        assert!(e.message.contains("is null, which is not a value"), "{}", e.message);
        let e = parse_json::<ImageJson>(br#"{"image": "", "bands": null}"#).unwrap_err();
        assert!(e.message.contains("is null, which is not a value"), "{}", e.message);
        // Absent is still absent.
        let json = parse_json::<SegmentJson>(br#"{"image_id": "x", "window": {}}"#).unwrap();
        assert!(json.text.is_none() && json.window.is_some_and(|w| w.overlap.is_none()));
    }

    #[test]
    fn structure_errors_have_their_codes() {
        assert_eq!(code(r#"{"text": "a"}"#), ErrorCode::InvalidRequest);
        assert_eq!(code(r#"{"image_id": "x"}"#), ErrorCode::NoPrompt);
        assert_eq!(code(r#"{"image_id": "x", "queries": []}"#), ErrorCode::NoPrompt);
        assert_eq!(code(r#"{"image_id": "x", "queries": [{}]}"#), ErrorCode::NoPrompt);
        assert_eq!(
            code(r#"{"image_id": "x", "text": "a", "queries": [{"text": "b"}]}"#),
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            code(r#"{"image_id": "x", "queries": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}"#),
            ErrorCode::TooManyQueries
        );
        assert_eq!(
            code(r#"{"image_id": "x", "points": [[1, 1, 1], [1, 1, 0], [2, 2, 1]]}"#),
            ErrorCode::TooManyPoints
        );
        assert_eq!(
            code(r#"{"image_id": "x", "points": [[1, 1, 2]]}"#),
            ErrorCode::InvalidPrompt
        );
        assert_eq!(
            code(r#"{"image_id": "x", "points": [[1, 1]]}"#),
            ErrorCode::InvalidPrompt
        );
        assert_eq!(code(r#"{"image_id": "x", "box": [1, 1, 2]}"#), ErrorCode::InvalidPrompt);
        assert_eq!(
            code(r#"{"image_id": "x", "text": "a", "outputs": ["jpeg"]}"#),
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn mask_input_shapes() {
        let npy = crate::npy::write_f32(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(parse_mask_input(&npy, 2).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        let npy = crate::npy::write_f32(&[4], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(parse_mask_input(&npy, 2).unwrap_err().code, ErrorCode::InvalidMaskInput);
        assert_eq!(
            parse_mask_input(b"not npy", 2).unwrap_err().code,
            ErrorCode::InvalidMaskInput
        );
    }

    #[test]
    fn base64_variants() {
        assert_eq!(decode_base64("f", "aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("f", "aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("f", "data:image/png;base64,aG\nk=").unwrap(), b"hi");
        assert_eq!(decode_base64("f", "!!").unwrap_err().code, ErrorCode::MalformedBase64);
    }
}
