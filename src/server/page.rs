//! The web page at `/`: static files embedded in the binary, so `rsam serve`
//! works offline and needs no file next to it. Every URL inside the page is
//! relative (`assets/app.js`, `v1/segment`), so it also works behind a
//! reverse proxy that adds a path prefix.
//!
//! The files keep their names; each answer carries a strong ETag (a hash of
//! its bytes) with `Cache-Control: no-cache`, so browsers revalidate with
//! `If-None-Match` and get a bodiless 304 until the binary changes.

use std::sync::OnceLock;

use axum::extract::MatchedPath;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file and the path it is served at.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const JPEG: &str = "image/jpeg";

/// Every file of the page. The routes are built from this list.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("page/index.html"),
    },
    Asset {
        path: "/assets/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("page/app.css"),
    },
    Asset {
        path: "/assets/app.js",
        content_type: JS,
        bytes: include_bytes!("page/app.js"),
    },
    Asset {
        path: "/assets/api.js",
        content_type: JS,
        bytes: include_bytes!("page/api.js"),
    },
    Asset {
        path: "/assets/masks.js",
        content_type: JS,
        bytes: include_bytes!("page/masks.js"),
    },
    Asset {
        path: "/assets/samples/harbour.jpg",
        content_type: JPEG,
        bytes: include_bytes!("page/samples/harbour.jpg"),
    },
    Asset {
        path: "/assets/samples/stadium.jpg",
        content_type: JPEG,
        bytes: include_bytes!("page/samples/stadium.jpg"),
    },
    Asset {
        path: "/assets/samples/river.jpg",
        content_type: JPEG,
        bytes: include_bytes!("page/samples/river.jpg"),
    },
    Asset {
        path: "/assets/samples/airfield.jpg",
        content_type: JPEG,
        bytes: include_bytes!("page/samples/airfield.jpg"),
    },
];

/// The page's own policy: scripts, styles and requests from this origin
/// only (no CDN can creep in); images also from `blob:` (a dropped file)
/// and `data:` (the icon).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; \
                                       base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Strong ETags, one per asset, in [`ASSETS`] order.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.bytes))[..20]))
            .collect()
    })
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}

/// Serves the asset whose path is the matched route.
pub async fn serve(path: MatchedPath, headers: HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path.as_str()) else {
        // Only reachable if a route were added without its asset.
        return StatusCode::NOT_FOUND.into_response();
    };
    let (asset, etag) = (&ASSETS[index], &etags()[index]);
    let mut response = if not_modified(&headers, etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_if_none_match(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn if_none_match_lists_and_weak_tags_match() {
        let etag = "\"abc\"";
        assert!(not_modified(&with_if_none_match("\"abc\""), etag));
        assert!(not_modified(&with_if_none_match("\"x\", W/\"abc\""), etag));
        assert!(not_modified(&with_if_none_match("*"), etag));
        assert!(!not_modified(&with_if_none_match("\"abd\""), etag));
        assert!(!not_modified(&HeaderMap::new(), etag));
    }

    #[test]
    fn every_asset_has_a_distinct_path_and_etag() {
        let paths: std::collections::BTreeSet<_> = ASSETS.iter().map(|a| a.path).collect();
        let tags: std::collections::BTreeSet<_> = etags().iter().collect();
        assert_eq!((paths.len(), tags.len()), (ASSETS.len(), ASSETS.len()));
        assert!(ASSETS.iter().all(|a| !a.bytes.is_empty()));
    }

    /// Where a text has a string or attribute value that starts at the
    /// server's root (`"/v1/..."`, `url(/...)`) or names another origin.
    fn absolute_urls(text: &str) -> Vec<String> {
        // The SVG namespace is a name, not a URL the page loads.
        let text = text.replace("http://www.w3.org/2000/svg", "");
        let bytes = text.as_bytes();
        let mut found: Vec<String> = ["http://", "https://", "url(/", "//"]
            .iter()
            .filter(|p| match **p {
                "//" => text.contains("\"//") || text.contains("'//"),
                p => text.contains(p),
            })
            .map(|p| p.to_string())
            .collect();
        for (i, w) in bytes.windows(3).enumerate() {
            let quoted = matches!(w[0], b'"' | b'\'' | b'`');
            if quoted && w[1] == b'/' && w[2].is_ascii_alphanumeric() {
                found.push(String::from_utf8_lossy(&bytes[i..(i + 16).min(bytes.len())]).into_owned());
            }
        }
        found
    }

    #[test]
    fn absolute_urls_are_found() {
        assert!(absolute_urls(r#"<a href="/x">"#).len() == 1);
        assert!(absolute_urls("fetch(`/v1/segment`)").len() == 1);
        assert!(absolute_urls("url(/a.png)").len() == 1);
        assert!(absolute_urls("import('https://cdn.example/x.js')").len() == 1);
        assert!(absolute_urls(r#"fetch("v1/segment"); s.split("/"); a / b"#).is_empty());
    }

    /// The page must work behind a path prefix: no URL in it may start at
    /// the server's root or name another origin.
    #[test]
    fn the_page_uses_relative_urls_only() {
        for asset in ASSETS.iter().filter(|a| !a.content_type.starts_with("image/")) {
            let found = absolute_urls(std::str::from_utf8(asset.bytes).unwrap());
            assert!(found.is_empty(), "{}: URLs must be relative: {found:?}", asset.path);
        }
    }
}
