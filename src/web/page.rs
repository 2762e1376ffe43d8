//! `GET /`: the live cluster page, made and served by the binary itself (no build step): the
//! HTML and its script are compiled in, and the script reads `/health`, `/api` and `/events`
//! of the node that served it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("page.js");

/// Only this node's own script, styles and API: nothing from elsewhere runs in the page.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'";

fn headers(content_type: &'static str) -> [(header::HeaderName, &'static str); 4] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

pub async fn get_page() -> Response {
    (headers("text/html; charset=utf-8"), PAGE).into_response()
}

pub async fn get_script() -> Response {
    (headers("text/javascript; charset=utf-8"), SCRIPT).into_response()
}
