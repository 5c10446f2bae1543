//! lb-console: the HTTPS web console of lb.
//!
//! Over TLS (rustls with the ring provider, TLS 1.3 and 1.2): a login
//! page; for the logged-in administrator the dashboard (with live values),
//! the LB settings, the traffic statistics (the daemon's counters sampled
//! in the background, `traffic`), the cluster, the network interfaces,
//! the alerts and the configuration's backup and restore (`handlers`,
//! `pages`); and a health endpoint at `/healthz`. What it shows of the
//! load balancer, and every change to it, goes through the node's daemon's
//! API only (`lb_common::api`'s client and types, the CLI's); the node's
//! own interfaces are read and changed through rtnetlink in its namespace
//! (`network`).

pub mod auth;
pub mod daemon;
pub mod forms;
mod handlers;
pub mod live;
pub mod login;
mod multipart;
pub mod network;
mod pages;
pub mod system;
mod tls;
pub mod traffic;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::http::header::{self, HeaderValue};
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use lb_common::api::Client;

pub use tls::{
    Identity, crypto_provider, load_identity, self_signed_identity, sha256_fingerprint, tls_config,
};

/// The product version shown by the console.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The default listen address: the appliance's management port on all
/// addresses.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:50453";

/// Content security policy of every response: no external resources, only
/// the pages' inline styles, the console's own script (`/live.js`, no
/// inline script) fetching only from the console, forms only to the
/// console.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     script-src 'self'; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

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

/// The console's routes, showing `host` as the host name and asking the
/// node's daemon through `daemon`; `peer_console` is the other node's
/// console (linked from a standby's read-only pages). Every route but
/// `/login` and `/healthz` needs a session ([`login::guard`]).
pub fn router(
    host: &str,
    access: Arc<login::Access>,
    daemon: Client,
    peer_console: Option<String>,
) -> Router {
    router_with(host, access, daemon, peer_console, Default::default())
}

/// [`router`] showing the traffic of `traffic` (which a
/// [`traffic::sampler`] fills).
pub fn router_with(
    host: &str,
    access: Arc<login::Access>,
    daemon: Client,
    peer_console: Option<String>,
    traffic: traffic::Shared,
) -> Router {
    let app = Arc::new(handlers::App {
        host: host.to_owned(),
        daemon,
        peer_console,
        access: access.clone(),
        traffic,
    });
    Router::new()
        .route("/", get(handlers::dashboard))
        .route("/lb", get(handlers::lb::show))
        .route("/stats", get(handlers::stats))
        .route("/lb/backend/{what}", post(handlers::lb::change))
        .route("/lb/service/{what}", post(handlers::lb::change))
        .route("/cluster", get(handlers::cluster::show))
        .route(
            "/cluster/settings",
            get(handlers::cluster_settings::edit).post(handlers::cluster_settings::submit),
        )
        .route(
            "/cluster/confirm/{operation}",
            get(handlers::cluster::confirm),
        )
        .route("/cluster/{operation}", post(handlers::cluster::operate))
        .route("/live/status", get(handlers::live_status))
        .route("/live.js", get(handlers::live_script))
        .route("/network", get(handlers::network::show))
        .route("/network/mtu", post(handlers::network::change))
        .route("/network/address/{what}", post(handlers::network::change))
        .route("/alerts", get(handlers::alerts))
        .route("/config", get(handlers::config::show))
        .route("/config/download", get(handlers::config::download))
        .route("/config/restore", post(handlers::config::restore))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(Extension(app))
        .layer(axum::middleware::from_fn_with_state(
            access.clone(),
            login::guard,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(access)
}

async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn not_found(uri: Uri) -> (StatusCode, Html<String>) {
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

/// The console's own address of a request's connection (the local end of
/// its TCP connection: where the browser reached the console), in every
/// request's extensions; the Network page asks before a change that may
/// take it away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// Reads each accepted connection's local address into [`LocalAddr`].
#[derive(Clone, Copy, Debug, Default)]
struct LocalAddrAcceptor;

impl<S> axum_server::accept::Accept<tokio::net::TcpStream, S> for LocalAddrAcceptor {
    type Stream = tokio::net::TcpStream;
    type Service = WithLocalAddr<S>;
    type Future = std::future::Ready<std::io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        std::future::ready(stream.local_addr().map(|local| {
            (
                stream,
                WithLocalAddr {
                    inner: service,
                    local: LocalAddr(local),
                },
            )
        }))
    }
}

/// A connection's service that adds its [`LocalAddr`] to each request.
#[derive(Clone, Debug)]
struct WithLocalAddr<S> {
    inner: S,
    local: LocalAddr,
}

impl<S, B> tower::Service<axum::http::Request<B>> for WithLocalAddr<S>
where
    S: tower::Service<axum::http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.local);
        self.inner.call(request)
    }
}

/// Serves the console over HTTPS on `listener` until `handle` shuts it down
/// (see [`Handle::graceful_shutdown`]), asking the node's daemon through
/// `daemon` (`peer_console`: see [`router`]), its traffic sampled every
/// [`traffic::INTERVAL`].
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handle: Handle,
    access: Arc<login::Access>,
    daemon: Client,
    peer_console: Option<String>,
) -> Result<()> {
    serve_sampling(
        listener,
        tls,
        handle,
        access,
        daemon,
        peer_console,
        traffic::INTERVAL,
    )
    .await
}

/// [`serve`], sampling the daemon's traffic every `interval` (the charts
/// keep [`traffic::POINTS`] samples).
pub async fn serve_sampling(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    handle: Handle,
    access: Arc<login::Access>,
    daemon: Client,
    peer_console: Option<String>,
    interval: std::time::Duration,
) -> Result<()> {
    listener
        .set_nonblocking(true)
        .context("setting the listener non-blocking")?;
    let addr = listener
        .local_addr()
        .context("reading the listener's address")?;
    tracing::info!(%addr, "lb console {VERSION} listening on https://{addr}/");
    let history: traffic::Shared = Arc::new(std::sync::Mutex::new(traffic::History::new(
        interval,
        traffic::POINTS,
    )));
    let sampler = traffic::sampler(daemon.clone(), history.clone());
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(RustlsConfig::from_config(tls))
        .acceptor(LocalAddrAcceptor);
    let served = axum_server::from_tcp(listener)
        .acceptor(acceptor)
        .handle(handle)
        .serve(
            router_with(&hostname(), access, daemon, peer_console, history)
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    sampler.abort();
    served.with_context(|| format!("serving the console on {addr}"))?;
    tracing::info!("lb console stopped");
    Ok(())
}

#[cfg(test)]
mod tests;
