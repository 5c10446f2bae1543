//! lb-console: the HTTPS web console of lb.
//!
//! This release serves a landing page at `/` and a health endpoint at
//! `/healthz` over TLS (rustls with the ring provider, TLS 1.3 and 1.2).

pub mod auth;
mod pages;
mod tls;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

pub use tls::{
    Identity, crypto_provider, load_identity, self_signed_identity, sha256_fingerprint, tls_config,
};

/// The product version shown by the console.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The default listen address: the appliance's management port on all
/// addresses.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:50453";

/// Content security policy of every response: no scripts, no external
/// resources, only the pages' inline styles.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The host name of this machine, or "localhost" if it cannot be read.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for writes of buf.len() bytes; gethostname writes
    // at most that many.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(name) = std::str::from_utf8(&buf[..end])
            && !name.is_empty()
        {
            return name.to_owned();
        }
    }
    "localhost".to_owned()
}

/// The console's routes for this machine's host name.
pub fn router() -> Router {
    router_for_host(&hostname())
}

/// The console's routes, showing `host` as the host name.
pub fn router_for_host(host: &str) -> Router {
    let index = Html(Bytes::from(pages::index(host, VERSION)));
    Router::new()
        .route("/", get(move || std::future::ready(index.clone())))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found(uri: Uri) -> (StatusCode, Html<String>) {
    (StatusCode::NOT_FOUND, Html(pages::not_found(uri.path())))
}

/// Adds the security headers to every response, including errors.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response.into_response()
}

/// Binds the console's TCP listener.
pub fn bind(listen: SocketAddr) -> Result<TcpListener> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    listener
        .set_nonblocking(true)
        .context("setting the listener non-blocking")?;
    Ok(listener)
}

/// Serves the console over HTTPS on `listener` until `handle` shuts it down
/// (see [`Handle::graceful_shutdown`]).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handle: Handle,
) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("setting the listener non-blocking")?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%addr, "lb console {VERSION} listening on https://{addr}/");
    axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(tls))
        .handle(handle)
        .serve(router().into_make_service())
        .await
        .with_context(|| format!("serving the console on {addr}"))?;
    tracing::info!("lb console stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        request(Method::GET, path).await
    }

    async fn request(method: Method, path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = router_for_host("node-1.example")
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    fn assert_security_headers(headers: &axum::http::HeaderMap) {
        let h = |name: header::HeaderName| {
            headers
                .get(&name)
                .unwrap_or_else(|| panic!("missing {name}"))
                .to_str()
                .unwrap()
                .to_owned()
        };
        assert!(h(header::STRICT_TRANSPORT_SECURITY).starts_with("max-age="));
        assert_eq!(h(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(h(header::X_FRAME_OPTIONS), "DENY");
        let csp = h(header::CONTENT_SECURITY_POLICY);
        assert!(
            csp.starts_with("default-src 'none'; style-src 'unsafe-inline'"),
            "{csp}"
        );
    }

    #[tokio::test]
    async fn index_page() {
        let (status, headers, body) = get("/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(body.starts_with("<!DOCTYPE html>"));
        assert!(body.contains("<title>lb console</title>"));
        assert!(body.contains(&format!("lb {VERSION}")));
        assert!(body.contains("node-1.example"));
        assert!(body.contains("later releases"));
        assert!(!body.contains("<script"));
        assert_security_headers(&headers);
    }

    #[tokio::test]
    async fn index_answers_head() {
        let (status, headers, body) = request(Method::HEAD, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.is_empty());
        assert_security_headers(&headers);
    }

    #[tokio::test]
    async fn healthz() {
        let (status, headers, body) = get("/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(body, "ok");
        assert_security_headers(&headers);
    }

    #[tokio::test]
    async fn unknown_path_is_404_html() {
        let (status, headers, body) = get("/admin/%3Cx%3E").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(body.contains("Page not found"));
        assert!(body.contains("/admin/%3Cx%3E"));
        assert_security_headers(&headers);
    }

    #[tokio::test]
    async fn wrong_method_still_has_security_headers() {
        let (status, headers, _) = request(Method::POST, "/").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_security_headers(&headers);
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
