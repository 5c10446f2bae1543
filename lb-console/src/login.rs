//! The HTTP side of logging in: the login form, the session cookie, the
//! guard in front of every page (no session: the login page; a change
//! without the session's CSRF token: refused), and logout. What is decided
//! (password, sessions, throttle) is in `auth`; this carries it into
//! requests and responses, and writes every attempt to the audit trail.
use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use axum::{
    body::{Body, Bytes},
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use serde::Deserialize;

use crate::{
    auth::{
        audit::{AuditEntry, AuditLog},
        password::Credentials,
        sessions::{self, Session, Sessions},
        throttle::Throttle,
    },
    pages,
};

/// The session cookie. `__Host-`: browsers take it only over HTTPS, for
/// this host, with `Path=/`.
pub const COOKIE: &str = "__Host-lb-session";
/// The header a script sends the CSRF token in (a form sends the field
/// `csrf`).
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The largest form body read (a change is a few fields; a restored
/// configuration file is larger).
const MAX_FORM: usize = 1024 * 1024;

/// What the console knows of who may use it.
pub struct Access {
    pub credentials: Credentials,
    pub sessions: Mutex<Sessions>,
    pub throttle: Mutex<Throttle>,
    pub audit: AuditLog,
}

impl Access {
    pub fn new(credentials: Credentials, audit: AuditLog) -> Self {
        Self::with_sessions(credentials, audit, Sessions::default())
    }

    /// With sessions of other limits (tests: a short idle time).
    pub fn with_sessions(credentials: Credentials, audit: AuditLog, sessions: Sessions) -> Self {
        Self {
            credentials,
            sessions: Mutex::new(sessions),
            throttle: Mutex::new(Throttle::default()),
            audit,
        }
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes `entry` to the audit trail; a trail that cannot be written
    /// is logged loudly (the change itself is refused by the caller when
    /// it must not happen unrecorded).
    pub fn audit(&self, entry: &AuditEntry) -> bool {
        match self.audit.record(entry) {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(
                    error = %err,
                    path = %self.audit.path().display(),
                    action = %entry.action,
                    "cannot write the audit trail"
                );
                false
            }
        }
    }
}

/// The client's address (unspecified when the server was not asked for
/// it, as in some tests).
pub fn peer(extensions: &axum::http::Extensions) -> IpAddr {
    use axum::extract::connect_info::MockConnectInfo;
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .or_else(|| {
            extensions
                .get::<MockConnectInfo<SocketAddr>>()
                .map(|MockConnectInfo(addr)| addr.ip())
        })
        .unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
}

/// The session token the request's cookie carries.
fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

fn safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD)
}

/// In front of every route but `/login` and `/healthz`: a request without
/// an open session gets the login page (a page) or 401 (a change); a
/// change whose CSRF token (field `csrf` or header `x-csrf-token`) is not
/// its session's gets 403. The session goes to the handler as an
/// extension.
pub async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/login" || path == "/healthz" {
        return next.run(request).await;
    }
    let session =
        token(request.headers()).and_then(|t| access.sessions().touch(&t, Instant::now()));
    let Some(session) = session else {
        return if safe(request.method()) {
            Redirect::to("/login").into_response()
        } else {
            refusal(
                StatusCode::UNAUTHORIZED,
                "Not logged in",
                "Your session has ended: log in again, then repeat the change.",
            )
        };
    };
    let mut request = request;
    if !safe(request.method()) {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM).await else {
            return refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request too large",
                "The form sent is larger than the console accepts.",
            );
        };
        let sent = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| form_field(&bytes, "csrf"))
            .or_else(|| multipart_field(&parts.headers, &bytes, "csrf"));
        if !sent.is_some_and(|sent| crate::auth::same_secret(&sent, &session.csrf)) {
            access.audit(&AuditEntry::now(
                &session.user,
                peer(&parts.extensions),
                &format!("{} {}", parts.method, parts.uri.path()),
                "",
                "refused: missing or wrong CSRF token",
            ));
            return refusal(
                StatusCode::FORBIDDEN,
                "Request refused",
                "The form was not sent from this console's page (its security token is missing or wrong). Reload the page and try again.",
            );
        }
        request = Request::from_parts(parts, Body::from(bytes));
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

/// The value of `name` in a URL-encoded form body.
fn form_field(body: &Bytes, name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The value of `name` in a `multipart/form-data` body (a form with a
/// file).
fn multipart_field(headers: &HeaderMap, body: &Bytes, name: &str) -> Option<String> {
    let boundary = crate::multipart::boundary(headers.get(header::CONTENT_TYPE)?.to_str().ok()?)?;
    crate::multipart::parts(body, &boundary)?
        .into_iter()
        .find(|p| p.name == name && p.filename.is_none())
        .and_then(|p| String::from_utf8(p.content).ok())
}

pub(crate) fn refusal(status: StatusCode, title: &str, message: &str) -> Response {
    (status, Html(pages::message(title, message))).into_response()
}

/// `GET /login`.
pub async fn form(State(access): State<Arc<Access>>, headers: HeaderMap) -> Response {
    // Already logged in: the console.
    if token(&headers).is_some_and(|t| access.sessions().touch(&t, Instant::now()).is_some()) {
        return Redirect::to("/").into_response();
    }
    Html(pages::login("", None)).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`: throttled per source address; argon2 runs off the
/// async workers.
pub async fn submit(State(access): State<Arc<Access>>, request: Request) -> Response {
    let from = peer(request.extensions());
    let Ok(bytes) = axum::body::to_bytes(request.into_body(), MAX_FORM).await else {
        return refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            "The form sent is larger than the console accepts.",
        );
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&bytes) else {
        return (
            StatusCode::BAD_REQUEST,
            Html(pages::login(
                "",
                Some("The form could not be read: send it again."),
            )),
        )
            .into_response();
    };
    let user = form.user.trim().to_owned();
    if let Err(wait) = access.throttle().check(from, Instant::now()) {
        access.audit(&AuditEntry::now(
            &user,
            from,
            "login",
            "",
            "refused: too many failed logins",
        ));
        // Rounded up: a client that waits as long as told is let in.
        let seconds = wait.as_millis().div_ceil(1000).max(1);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Html(pages::login(
                &user,
                Some(&format!(
                    "Too many failed logins from your address: try again in {seconds} s."
                )),
            )),
        )
            .into_response();
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    let check = {
        let access = access.clone();
        let user = user.clone();
        tokio::task::spawn_blocking(move || access.credentials.check(&user, &form.password))
    };
    let ok = check.await.unwrap_or(false);
    let now = Instant::now();
    if !ok {
        access.throttle().failed(from, now);
        access.audit(&AuditEntry::now(
            &user,
            from,
            "login",
            "",
            "refused: wrong user name or password",
        ));
        return (
            StatusCode::UNAUTHORIZED,
            Html(pages::login(&user, Some("Wrong user name or password."))),
        )
            .into_response();
    }
    access.throttle().succeeded(from);
    let token = access.sessions().open(&user, from, now);
    access.audit(&AuditEntry::now(&user, from, "login", "", "ok"));
    let mut response = Redirect::to("/").into_response();
    let cookie = format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        sessions::ABSOLUTE.as_secs()
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `POST /logout` (behind the guard: with the session's CSRF token).
pub async fn logout(State(access): State<Arc<Access>>, request: Request) -> Response {
    let from = peer(request.extensions());
    if let Some(t) = token(request.headers()) {
        access.sessions().close(&t);
    }
    if let Some(session) = request.extensions().get::<Session>() {
        access.audit(&AuditEntry::now(&session.user, from, "logout", "", "ok"));
    }
    let mut response = Redirect::to("/login").into_response();
    let cookie = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
