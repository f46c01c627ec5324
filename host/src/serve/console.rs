//! The web console at `/console/`: one page, its script and its style sheet,
//! built into the binary (no CDN, nothing fetched at run time). The page logs
//! in by exchanging an API key for an access token at `/identity/token`,
//! keeps the token in a script variable only, and calls the management API
//! with it.
//!
//! Every answer here carries a Content-Security-Policy that allows scripts,
//! styles and requests from this origin only, no inline script or style, no
//! form submission and no framing, with `nosniff`, no referrer and no caching.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The console's Content-Security-Policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// The console's routes: `GET /console` (a redirect to `/console/`), the
/// page at `/console/`, and its `app.js` and `app.css`.
pub fn routes() -> Router<super::AppState> {
    Router::new()
        .route("/console", get(redirect))
        .route("/console/", get(page))
        .route("/console/app.js", get(script))
        .route("/console/app.css", get(style))
        .layer(middleware::map_response(security_headers))
}

#[utoipa::path(get, path = "/console", tag = "console",
    responses((status = 308, description = "To `/console/`")))]
pub(super) async fn redirect() -> Redirect {
    Redirect::permanent("/console/")
}

#[utoipa::path(get, path = "/console/", tag = "console",
    responses((status = 200, description = "The console's page", content_type = "text/html")))]
pub(super) async fn page() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML).await
}

#[utoipa::path(get, path = "/console/app.js", tag = "console",
    responses((status = 200, description = "The console's script", content_type = "text/javascript")))]
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS).await
}

#[utoipa::path(get, path = "/console/app.css", tag = "console",
    responses((status = 200, description = "The console's style sheet", content_type = "text/css")))]
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS).await
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// Adds the console's security headers to every answer of its routes.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let fixed: [(HeaderName, &'static str); 4] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSP forbids inline script and style: the page must have none.
    #[test]
    fn the_page_has_no_inline_script_style_or_handlers() {
        let page = INDEX_HTML.to_ascii_lowercase();
        assert!(!page.contains("style="), "an inline style attribute");
        assert!(!page.contains("<style"), "an inline style element");
        for (at, _) in page.match_indices("<script") {
            let tag = &page[at..at + page[at..].find('>').expect("a closed tag")];
            assert!(tag.contains(" src="), "an inline script: {tag}");
        }
        let handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
        assert!(!handler.is_match(&page), "an inline event handler");
        assert!(!page.contains("javascript:") && !page.contains("data:"));
    }

    /// The script never writes HTML from strings, nor keeps anything in
    /// storage or cookies.
    #[test]
    fn the_script_builds_the_page_with_dom_calls_only() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "eval(",
            "new Function",
        ] {
            assert!(!APP_JS.contains(banned), "app.js uses {banned}");
        }
        let data_url = regex::Regex::new(r#"["'`]data:"#).unwrap();
        assert!(!data_url.is_match(APP_JS), "app.js writes a data: URL");
    }
}
