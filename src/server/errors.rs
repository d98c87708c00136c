//! The service's error type: every failure a request can meet maps to one
//! HTTP status and one stable snake_case code, answered as
//! `{"error": {"code": ..., "message": ...}}`. Clients switch on the code, so
//! the codes are an enum (listed in `openapi.yaml`, checked by the tests).

use crate::geo::GeoError;
use crate::RsamError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// Every error code the server emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    MalformedJson,
    MalformedMultipart,
    MalformedBase64,
    ImageIdMismatch,
    Unauthorized,
    NotFound,
    ImageNotCached,
    ResultNotFound,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnsupportedImageFormat,
    InvalidRequest,
    InvalidImage,
    ImageTooLarge,
    InvalidPrompt,
    InvalidText,
    TextNotSupported,
    NotGeoreferenced,
    UnsupportedCrs,
    TooManyPoints,
    TooManyQueries,
    InvalidMaskInput,
    NoPrompt,
    InternalError,
    Overloaded,
    NotReady,
    Timeout,
}

impl ErrorCode {
    /// All codes, for documentation checks.
    pub const ALL: [ErrorCode; 28] = [
        Self::MalformedJson,
        Self::MalformedMultipart,
        Self::MalformedBase64,
        Self::ImageIdMismatch,
        Self::Unauthorized,
        Self::NotFound,
        Self::ImageNotCached,
        Self::ResultNotFound,
        Self::MethodNotAllowed,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::UnsupportedImageFormat,
        Self::InvalidRequest,
        Self::InvalidImage,
        Self::ImageTooLarge,
        Self::InvalidPrompt,
        Self::InvalidText,
        Self::TextNotSupported,
        Self::NotGeoreferenced,
        Self::UnsupportedCrs,
        Self::TooManyPoints,
        Self::TooManyQueries,
        Self::InvalidMaskInput,
        Self::NoPrompt,
        Self::InternalError,
        Self::Overloaded,
        Self::NotReady,
        Self::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::MalformedMultipart => "malformed_multipart",
            Self::MalformedBase64 => "malformed_base64",
            Self::ImageIdMismatch => "image_id_mismatch",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::ImageNotCached => "image_not_cached",
            Self::ResultNotFound => "result_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnsupportedImageFormat => "unsupported_image_format",
            Self::InvalidRequest => "invalid_request",
            Self::InvalidImage => "invalid_image",
            Self::ImageTooLarge => "image_too_large",
            Self::InvalidPrompt => "invalid_prompt",
            Self::InvalidText => "invalid_text",
            Self::TextNotSupported => "text_not_supported",
            Self::NotGeoreferenced => "not_georeferenced",
            Self::UnsupportedCrs => "unsupported_crs",
            Self::TooManyPoints => "too_many_points",
            Self::TooManyQueries => "too_many_queries",
            Self::InvalidMaskInput => "invalid_mask_input",
            Self::NoPrompt => "no_prompt",
            Self::InternalError => "internal_error",
            Self::Overloaded => "overloaded",
            Self::NotReady => "not_ready",
            Self::Timeout => "timeout",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson | Self::MalformedMultipart | Self::MalformedBase64 | Self::ImageIdMismatch => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::ImageNotCached | Self::ResultNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType | Self::UnsupportedImageFormat => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidRequest
            | Self::InvalidImage
            | Self::ImageTooLarge
            | Self::InvalidPrompt
            | Self::InvalidText
            | Self::TextNotSupported
            | Self::NotGeoreferenced
            | Self::UnsupportedCrs
            | Self::TooManyPoints
            | Self::TooManyQueries
            | Self::InvalidMaskInput
            | Self::NoPrompt => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Overloaded | Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }
}

/// A request's failure: a code and a message that says what and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InternalError, message)
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The JSON body, `{"error": {"code", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}})
    }

    /// Prefixes the message of an internal error with what was being done;
    /// errors a client caused keep their message.
    pub fn during(mut self, what: &str) -> Self {
        if self.code == ErrorCode::InternalError {
            self.message = format!("{what} failed: {}", self.message);
        }
        self
    }
}

/// The one mapping of library errors to API errors: what a client caused
/// (a bad image, prompt, text or mask prompt) gets its code, everything else
/// is internal.
impl From<RsamError> for ApiError {
    fn from(err: RsamError) -> Self {
        match err {
            RsamError::Prompt(m) => Self::new(ErrorCode::InvalidPrompt, m),
            RsamError::Text(m) => Self::new(ErrorCode::InvalidText, format!("text: {m}")),
            RsamError::MaskInput(m) => Self::new(ErrorCode::InvalidMaskInput, format!("mask_input: {m}")),
            RsamError::Image(m) => Self::new(ErrorCode::InvalidImage, format!("cannot decode the image: {m}")),
            e @ RsamError::ImageTooLarge { .. } => Self::new(ErrorCode::ImageTooLarge, e.to_string()),
            RsamError::TextNotSupported(m) => Self::new(ErrorCode::TextNotSupported, m),
            RsamError::Geo(e) => e.into(),
            other => Self::internal(other.to_string()),
        }
    }
}

/// A raster's problems are the image's (or the request's options for it);
/// only writing an output is the server's.
impl From<GeoError> for ApiError {
    fn from(err: GeoError) -> Self {
        let code = match &err {
            GeoError::TooLarge { .. } => ErrorCode::ImageTooLarge,
            GeoError::NotTiff(_)
            | GeoError::Corrupt(_)
            | GeoError::Truncated(_)
            | GeoError::GeoKeys(_)
            | GeoError::Georeferencing(_)
            | GeoError::Nodata(_) => ErrorCode::InvalidImage,
            GeoError::UnsupportedSampleFormat(_) | GeoError::UnsupportedLayout(_) => ErrorCode::UnsupportedImageFormat,
            GeoError::BandOutOfRange { .. }
            | GeoError::InvalidBands(_)
            | GeoError::InvalidStretch(_)
            | GeoError::OutOfByteRange { .. }
            | GeoError::InvalidWindow { .. } => ErrorCode::InvalidRequest,
            GeoError::NotGeoreferenced(_) => ErrorCode::NotGeoreferenced,
            GeoError::UnsupportedCrs(_) | GeoError::Reprojection { .. } => ErrorCode::UnsupportedCrs,
            GeoError::MaskLength { .. } | GeoError::Write(_) | GeoError::Io { .. } => ErrorCode::InternalError,
        };
        Self::new(code, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        if self.code == ErrorCode::Overloaded || self.code == ErrorCode::NotReady {
            // Clients and load balancers back off this long before retrying.
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if self.code == ErrorCode::Unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{s}"
            );
            assert!(seen.insert(s), "duplicate {s}");
        }
    }
}
