//! Backup and restore: `GET /config`, `GET /config/download` (the daemon's
//! configuration as a TOML file) and `POST /config/restore` (a file read
//! and checked here, then `PUT /v1/config`; refused: nothing changes).
use axum::{
    Extension,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use lb_common::api::{Applied, Config, client::Method};

use super::{Posted, Shared, no_audit, page};
use crate::{
    auth::sessions::Session,
    multipart,
    pages::{
        Section,
        config::{self as view, Outcome},
        lb::{Writable, writable},
    },
};

/// `GET /config`.
pub async fn show(Extension(app): Shared, Extension(session): Extension<Session>) -> Response {
    let status = app.status().await;
    page(
        StatusCode::OK,
        view::page(&app.nav(&session, Section::Config), &status, None),
    )
}

/// The file a backup downloads: the same text `lb-ctl config export`
/// prints.
pub fn to_toml(config: &Config) -> Result<String, String> {
    let body = toml::to_string_pretty(config).map_err(|e| e.to_string())?;
    Ok(format!(
        "# lb node configuration {} (generation {}), downloaded from the web console.\n\
         # Restore it with the console's Backup page or `lb-ctl config import FILE`.\n\n{body}",
        config.node.name, config.generation
    ))
}

/// `GET /config/download`.
pub async fn download(Extension(app): Shared, Extension(session): Extension<Session>) -> Response {
    let text = crate::daemon::get::<Config>(&app.daemon, "/v1/config")
        .await
        .and_then(|config| Ok((to_toml(&config)?, config)));
    match text {
        Ok((text, config)) => {
            let file = format!(
                "lb-{}-generation-{}.toml",
                config
                    .node
                    .name
                    .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
                config.generation
            );
            let mut response = text.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/toml; charset=utf-8"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file}\"")) {
                headers.insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Err(why) => {
            let status = app.status().await;
            let outcome = Outcome::Refused {
                file: "(download)".into(),
                why: format!("The configuration could not be read from the daemon: {why}"),
            };
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                view::page(&app.nav(&session, Section::Config), &status, Some(&outcome)),
            )
        }
    }
}

/// Reads a restored file: TOML of a [`Config`], the error with its line
/// and column.
pub fn parse(text: &str) -> Result<Config, String> {
    toml::from_str::<Config>(text).map_err(|err| {
        let at = err
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        format!("{at}{}", err.message().trim())
    })
}

/// `POST /config/restore` (multipart: `csrf`, `file`).
pub async fn restore(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    request: Request,
) -> Response {
    let posted = match Posted::read(request).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let nav = app.nav(&session, Section::Config);
    let status = app.status().await;
    let file = posted
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(multipart::boundary)
        .and_then(|b| multipart::parts(&posted.body, &b))
        .and_then(|parts| parts.into_iter().find(|p| p.name == "file"));
    let name = file
        .as_ref()
        .and_then(|f| f.filename.clone())
        .unwrap_or_default();
    let checked = match file {
        None => Err("No file was sent: choose a configuration file, then Restore.".to_owned()),
        Some(file) if file.content.is_empty() => {
            Err("The file is empty: choose a configuration file.".to_owned())
        }
        Some(file) => String::from_utf8(file.content)
            .map_err(|_| "The file is not text (UTF-8): is it a configuration file?".to_owned())
            .and_then(|text| parse(&text)),
    };
    let checked = checked.and_then(|config| match writable(&status) {
        Writable::Yes => match &status {
            // A node's file holds its own [node] table: another node's
            // would rename this one and move its interfaces and files.
            Ok(s) if s.node != config.node.name => Err(format!(
                "This file is the configuration of node {:?}; this node is {:?}. Restore a backup of this node.",
                config.node.name, s.node
            )),
            _ => Ok(config),
        },
        Writable::Standby { .. } => Err(
            "This node is the standby: restore the configuration on the active node, which pushes it here."
                .to_owned(),
        ),
        Writable::Unknown(why) => Err(format!("The node's role is unknown: {why}")),
    });
    let refused = |why: String| Outcome::Refused {
        file: name.clone(),
        why,
    };
    let outcome = match checked {
        Err(why) => {
            app.audit(
                &posted.who,
                "config restore",
                &name,
                &format!("refused: {why}"),
            );
            (StatusCode::BAD_REQUEST, refused(why))
        }
        Ok(config) => {
            let detail = format!(
                "{name} (node {}, generation {})",
                config.node.name, config.generation
            );
            if !app.audit(&posted.who, "config restore", &detail, "sent to the daemon") {
                return no_audit();
            }
            match crate::daemon::send::<_, Applied>(&app.daemon, Method::PUT, "/v1/config", &config)
                .await
            {
                Ok(applied) => {
                    app.audit(
                        &posted.who,
                        "config restore",
                        &detail,
                        &format!("ok (generation {})", applied.generation),
                    );
                    (
                        StatusCode::OK,
                        Outcome::Restored {
                            file: name.clone(),
                            generation: applied.generation,
                        },
                    )
                }
                Err(why) => {
                    app.audit(
                        &posted.who,
                        "config restore",
                        &detail,
                        &format!("refused: {why}"),
                    );
                    (StatusCode::CONFLICT, refused(why))
                }
            }
        }
    };
    let status = app.status().await;
    page(outcome.0, view::page(&nav, &status, Some(&outcome.1)))
}
