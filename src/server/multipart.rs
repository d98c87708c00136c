//! `multipart/form-data` bodies, for `curl -F image=@scene.jpg -F text=...`.
//!
//! Parts: a file part `image`; text fields `image_id`, `text`; `points`,
//! `box`, `queries` and `window` as JSON strings; `outputs` comma-separated or a JSON
//! list; `mask_input` as a `.npy` file part or base64 text.

use bytes::Bytes;

use super::api::{decode_base64, parse_json_as, parse_raster, QueryJson, RawSegment};
use super::errors::{ApiError, ErrorCode};
use super::window_request::WindowJson;
use crate::image_input::RasterOptions;

fn malformed(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorCode::MalformedMultipart, format!("invalid multipart body: {e}"))
}

/// The parts of a multipart body, by name (a repeated name keeps the last).
async fn parts(body: Bytes, boundary: String) -> Result<Vec<(String, Bytes)>, ApiError> {
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_string();
        let data = field.bytes().await.map_err(malformed)?;
        out.push((name, data));
    }
    Ok(out)
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Result<String, ApiError> {
    multer::parse_boundary(content_type).map_err(malformed)
}

fn text(name: &str, data: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(data.to_vec()).map_err(|_| malformed(format!("field {name} is not UTF-8 text")))
}

fn json<T: serde::de::DeserializeOwned>(name: &str, data: &[u8]) -> Result<T, ApiError> {
    parse_json_as(&format!("JSON in form field {name}"), data)
}

/// `rle,png` or `["rle", "png"]`.
fn outputs(data: &[u8]) -> Result<Vec<String>, ApiError> {
    let s = text("outputs", data)?;
    if s.trim_start().starts_with('[') {
        return json("outputs", s.as_bytes());
    }
    Ok(s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect())
}

/// A raw `.npy` part, or base64 text of one; anything else is not a mask
/// prompt (422, like a `.npy` of the wrong shape).
fn mask_input(data: &[u8]) -> Result<Vec<u8>, ApiError> {
    if data.starts_with(b"\x93NUMPY") {
        return Ok(data.to_vec());
    }
    let not_npy = || {
        ApiError::new(
            ErrorCode::InvalidMaskInput,
            "mask_input: the part is neither a .npy file nor base64 text of one",
        )
    };
    let text = std::str::from_utf8(data).map_err(|_| not_npy())?;
    decode_base64("mask_input", text).map_err(|_| not_npy())
}

/// `POST /v1/segment` as multipart.
pub async fn parse_segment(body: Bytes, boundary: String) -> Result<RawSegment, ApiError> {
    let mut raw = RawSegment::default();
    for (name, data) in parts(body, boundary).await? {
        match name.as_str() {
            "image" => raw.image = Some(data),
            "image_id" => raw.image_id = Some(text(&name, &data)?),
            "text" => raw.text = Some(text(&name, &data)?),
            "points" => raw.points = Some(json(&name, &data)?),
            "box" => raw.bbox = Some(json(&name, &data)?),
            "queries" => raw.queries = Some(json::<Vec<QueryJson>>(&name, &data)?),
            "outputs" => raw.outputs = Some(outputs(&data)?),
            "mask_input" => raw.mask_input = Some(mask_input(&data)?),
            "bands" => raw.bands = Some(json(&name, &data)?),
            "stretch" => raw.stretch = Some(text(&name, &data)?),
            "coords" => raw.coords = Some(text(&name, &data)?),
            "crs" => raw.crs = Some(text(&name, &data)?),
            "multimask" => raw.multimask = Some(json(&name, &data)?),
            "window" => raw.window = Some(json(&name, &data)?),
            other => {
                return Err(ApiError::invalid_request(format!(
                    "unknown form field {other:?}: expected image, image_id, text, points, box, mask_input, \
                     queries, outputs, bands, stretch, coords, crs, multimask or window"
                )))
            }
        }
    }
    Ok(raw)
}

/// `POST /v1/images` as multipart: the `image` part, `bands` / `stretch`
/// for a raster, and `window` to pre-encode a scene's windows.
pub async fn parse_image(body: Bytes, boundary: String) -> Result<ImageForm, ApiError> {
    let (mut image, mut bands, mut stretch, mut window) = (None, None, None, None);
    for (name, data) in parts(body, boundary).await? {
        match name.as_str() {
            "image" => image = Some(data),
            "bands" => bands = Some(json(&name, &data)?),
            "stretch" => stretch = Some(text(&name, &data)?),
            "window" => window = Some(json(&name, &data)?),
            other => {
                return Err(ApiError::invalid_request(format!(
                    "unknown form field {other:?}: expected image, bands, stretch or window"
                )))
            }
        }
    }
    let image = image.ok_or_else(|| ApiError::invalid_request("no image part in the form"))?;
    Ok((image, parse_raster(bands, stretch.as_deref())?, window))
}

/// The image, its rendering and an optional `window`.
pub type ImageForm = (Bytes, RasterOptions, Option<WindowJson>);
