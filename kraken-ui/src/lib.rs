//! Kraken's web interface: its files live in `kraken-ui/assets/` and are
//! embedded in the binary at compile time, so a platform needs no npm step
//! and no internet to serve its UI.
//!
//! [`router`] serves the page at `/` and its files under `/ui/…`. It has no
//! state: everything the page shows comes from the REST API (`/api/v1`) and its
//! server-sent events, which the `kraken` binary serves on the same port by
//! merging this router with the API's.
//!
//! Every answer carries an `ETag` (a hash of the file) and
//! `Cache-Control: no-cache`, so a browser keeps its copy and only asks whether
//! it changed: after an upgrade of the binary it gets the new files at once.

use axum::{
    extract::Path,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};

/// One embedded file: its path under `/ui/`, its content type and its bytes.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page itself, served at `/`.
const INDEX: Asset = Asset {
    path: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../assets/index.html"),
};

/// Everything served under `/ui/`.
const ASSETS: &[Asset] = &[
    Asset {
        path: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../assets/style.css"),
    },
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../assets/favicon.svg"),
    },
    Asset { path: "app.js", content_type: JS, body: include_bytes!("../assets/app.js") },
    Asset { path: "api.js", content_type: JS, body: include_bytes!("../assets/api.js") },
    Asset { path: "util.js", content_type: JS, body: include_bytes!("../assets/util.js") },
    Asset { path: "charts.js", content_type: JS, body: include_bytes!("../assets/charts.js") },
    Asset { path: "platform.js", content_type: JS, body: include_bytes!("../assets/platform.js") },
    Asset { path: "nodes.js", content_type: JS, body: include_bytes!("../assets/nodes.js") },
    Asset { path: "deployments.js", content_type: JS, body: include_bytes!("../assets/deployments.js") },
    Asset { path: "detail.js", content_type: JS, body: include_bytes!("../assets/detail.js") },
    Asset { path: "info.js", content_type: JS, body: include_bytes!("../assets/info.js") },
];

/// The web interface's routes: `GET /` (the page) and `GET /ui/{file}` (its
/// scripts, style sheet and icon). Any other path under `/ui/` answers 404.
///
/// Merge it with the API's router to serve both on one port.
///
/// # Examples
///
/// ```
/// let app: axum::Router = kraken_ui::router();
/// # let _ = app;
/// ```
pub fn router() -> Router {
    Router::new().route("/", get(index)).route("/ui/{*path}", get(asset))
}

/// The names of the files served under `/ui/`, for diagnostics and tests.
pub fn asset_paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.path == path) {
        Some(asset) => serve(asset, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("No file /ui/{path} in Kraken's web interface; the interface starts at /."),
        )
            .into_response(),
    }
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = etag(asset.body);
    let cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
    let etag_header = (header::ETAG, header_value(&etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, [cache, etag_header]).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            cache,
            etag_header,
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        asset.body,
    )
        .into_response()
}

/// A strong validator for a file's bytes: 64-bit FNV-1a, quoted.
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}\"")
}

fn header_value(text: &str) -> HeaderValue {
    // An ETag is quoted hex, always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str) -> Response {
        router().oneshot(Request::get(path).body(Body::empty()).unwrap()).await.unwrap()
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    #[tokio::test]
    async fn index_is_served_at_the_root() {
        let response = get("/").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, header::CONTENT_TYPE), "text/html; charset=utf-8");
        assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.contains("<script type=\"module\" src=\"/ui/app.js\">"), "{text}");
        assert!(text.contains("id=\"connection-banner\""));
    }

    #[tokio::test]
    async fn every_asset_is_served_with_its_type_and_body() {
        for asset in ASSETS {
            let response = get(&format!("/ui/{}", asset.path)).await;
            assert_eq!(response.status(), StatusCode::OK, "{}", asset.path);
            assert_eq!(header(&response, header::CONTENT_TYPE), asset.content_type, "{}", asset.path);
            assert_eq!(header(&response, header::CACHE_CONTROL), "no-cache");
            assert!(header(&response, header::ETAG).starts_with('"'));
            let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
            assert_eq!(&body[..], asset.body, "{}", asset.path);
        }
        let css = get("/ui/style.css").await;
        assert_eq!(header(&css, header::CONTENT_TYPE), "text/css; charset=utf-8");
        let js = get("/ui/app.js").await;
        assert_eq!(header(&js, header::CONTENT_TYPE), "text/javascript; charset=utf-8");
    }

    #[tokio::test]
    async fn every_module_the_page_imports_is_embedded() {
        // A module imported by another but missing from ASSETS would 404 in the browser.
        for asset in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let target = line.split("\"./").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
                assert!(
                    asset_paths().any(|p| p == target),
                    "{} imports {target}, which is not served",
                    asset.path
                );
            }
        }
    }

    #[tokio::test]
    async fn unknown_ui_paths_are_not_found() {
        for path in ["/ui/missing.js", "/ui/", "/ui/../Cargo.toml", "/ui/assets/app.js"] {
            let response = get(path).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[tokio::test]
    async fn a_matching_etag_answers_not_modified() {
        let first = get("/ui/app.js").await;
        let tag = header(&first, header::ETAG).to_string();
        let request =
            Request::get("/ui/app.js").header(header::IF_NONE_MATCH, &tag).body(Body::empty()).unwrap();
        let second = router().oneshot(request).await.unwrap();
        assert_eq!(second.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header(&second, header::ETAG), tag);
        let other =
            Request::get("/ui/app.js").header(header::IF_NONE_MATCH, "\"nope\"").body(Body::empty()).unwrap();
        assert_eq!(router().oneshot(other).await.unwrap().status(), StatusCode::OK);
    }
}
