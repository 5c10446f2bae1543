//! The cluster's settings as a draft: `GET /cluster/settings` (the form,
//! filled with the daemon's settings) and `POST /cluster/settings` with
//! `action=validate` (the daemon's verdict, `POST /v1/config/check`,
//! nothing changed) or `action=apply` (validated first, then a
//! confirmation page; with `confirm=yes`, `PUT /v1/config`). The draft
//! lives in the form. Refused on a standby, or when the role is unknown,
//! with nothing sent.
use axum::{
    Extension,
    extract::Request,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use lb_common::api::{Applied, Config, ConfigCheck, client::Method};

use super::{App, Posted, Shared, no_audit, page};
use crate::{
    auth::sessions::Session,
    forms::{self, Form},
    pages::{
        Section,
        cluster::{self as cluster_view, Outcome},
        cluster_settings::{self as view, Verdict},
        lb::{Writable, writable},
    },
};

const ACTION: &str = "cluster settings";

/// Why this node takes no settings now (None: it does).
fn refusal(status: &Result<lb_common::api::Status, String>) -> Option<String> {
    match writable(status) {
        Writable::Yes => None,
        Writable::Standby { .. } => Some(
            "this node is the standby: change the cluster's settings on the active node".into(),
        ),
        Writable::Unknown(why) => Some(format!("the node's role is unknown ({why})")),
    }
}

/// A refusal page (the cluster page with the reason on top).
async fn refused(app: &App, session: &Session, code: StatusCode, why: String) -> Response {
    let status = app.status().await;
    let config = crate::daemon::get::<Config>(&app.daemon, "/v1/config").await;
    page(
        code,
        cluster_view::page(
            &app.nav(session, Section::Cluster),
            &status,
            &config,
            Some(&Outcome::Refused(why)),
        ),
    )
}

/// `GET /cluster/settings`: the draft, as the daemon holds the settings.
pub async fn edit(Extension(app): Shared, Extension(session): Extension<Session>) -> Response {
    let status = app.status().await;
    if let Some(why) = refusal(&status) {
        return refused(&app, &session, StatusCode::CONFLICT, why).await;
    }
    match crate::daemon::get::<Config>(&app.daemon, "/v1/config").await {
        Ok(Config {
            cluster: Some(cluster),
            ..
        }) => page(
            StatusCode::OK,
            view::edit(&app.nav(&session, Section::Cluster), &cluster, None, None),
        ),
        Ok(_) => {
            refused(
                &app,
                &session,
                StatusCode::NOT_FOUND,
                "This node is not part of a cluster (standalone).".into(),
            )
            .await
        }
        Err(why) => {
            refused(
                &app,
                &session,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("The configuration could not be read: {why}"),
            )
            .await
        }
    }
}

/// The form's field a key of the daemon's answer is about
/// (`cluster.monitors[1].retries` → `monitors[1].retries`,
/// `cluster.np_targets[0]` → `np_targets`), or "" when the form has none.
pub fn field_of(key: Option<&str>, form: &Form) -> String {
    let Some(key) = key.and_then(|k| k.strip_prefix("cluster.")) else {
        return String::new();
    };
    let has = |field: &str| form.0.iter().any(|(k, _)| k == field);
    if has(key) {
        return key.to_owned();
    }
    match key.rsplit_once('[') {
        Some((list, _)) if has(list) => list.to_owned(),
        _ => String::new(),
    }
}

/// `POST /cluster/settings`: validate the draft, or apply it (after a
/// confirmation).
pub async fn submit(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    request: Request,
) -> Response {
    let posted = match Posted::read(request).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let form = Form::parse(&posted.body).unwrap_or_default();
    let nav = app.nav(&session, Section::Cluster);
    let apply = form.get("action") == "apply";
    let status = app.status().await;
    if let Some(why) = refusal(&status) {
        app.audit(
            &posted.who,
            ACTION,
            &form.typed_text(),
            &format!("refused: {why}"),
        );
        return refused(&app, &session, StatusCode::CONFLICT, why).await;
    }
    let current = match crate::daemon::get::<Config>(&app.daemon, "/v1/config").await {
        Ok(config) => config,
        Err(why) => {
            return refused(
                &app,
                &session,
                StatusCode::SERVICE_UNAVAILABLE,
                format!("The configuration could not be read: {why}"),
            )
            .await;
        }
    };
    let Some(cluster) = current.cluster.clone() else {
        return refused(
            &app,
            &session,
            StatusCode::NOT_FOUND,
            "This node is not part of a cluster (standalone).".into(),
        )
        .await;
    };
    let typed = form.typed();
    let show = |code: StatusCode, verdict: Verdict| {
        page(
            code,
            view::edit(&nav, &cluster, Some(&typed), Some(&verdict)),
        )
    };
    // The console's own reading of the form.
    let draft = match forms::cluster_settings(&form, &current) {
        Ok(draft) => draft,
        Err(err) => {
            if apply {
                app.audit(
                    &posted.who,
                    ACTION,
                    &form.typed_text(),
                    &format!("refused: {}: {}", err.field, err.message),
                );
            }
            return show(
                StatusCode::BAD_REQUEST,
                Verdict::Refused {
                    field: err.field,
                    message: err.message,
                },
            );
        }
    };
    let changes = forms::describe_cluster(&current, &draft);
    if apply && form.get("confirm") == "yes" {
        if !app.audit(&posted.who, ACTION, &changes, "sent to the daemon") {
            return no_audit();
        }
        return match crate::daemon::send::<_, Applied>(
            &app.daemon,
            Method::PUT,
            "/v1/config",
            &draft,
        )
        .await
        {
            Ok(applied) => {
                app.audit(
                    &posted.who,
                    ACTION,
                    &changes,
                    &format!("ok (generation {})", applied.generation),
                );
                let status = app.status().await;
                let config = crate::daemon::get::<Config>(&app.daemon, "/v1/config").await;
                page(
                    StatusCode::OK,
                    cluster_view::page(
                        &nav,
                        &status,
                        &config,
                        Some(&Outcome::Done(format!(
                            "The cluster settings are applied: the configuration is now generation {}.",
                            applied.generation
                        ))),
                    ),
                )
            }
            Err(why) => {
                app.audit(&posted.who, ACTION, &changes, &format!("refused: {why}"));
                show(
                    StatusCode::CONFLICT,
                    Verdict::Refused {
                        field: String::new(),
                        message: why,
                    },
                )
            }
        };
    }
    // Validate (also the first step of an apply): the daemon's verdict.
    let check = match crate::daemon::send::<_, ConfigCheck>(
        &app.daemon,
        Method::POST,
        "/v1/config/check",
        &draft,
    )
    .await
    {
        Ok(check) => check,
        Err(why) => {
            return show(
                StatusCode::SERVICE_UNAVAILABLE,
                Verdict::Refused {
                    field: String::new(),
                    message: format!("The daemon could not validate the draft: {why}"),
                },
            );
        }
    };
    if let Some(problem) = check.error {
        if apply {
            app.audit(
                &posted.who,
                ACTION,
                &changes,
                &format!("refused: {}", problem.message),
            );
        }
        return show(
            StatusCode::BAD_REQUEST,
            Verdict::Refused {
                field: field_of(problem.key.as_deref(), &form),
                message: problem.message,
            },
        );
    }
    if apply && changes != "nothing" {
        return page(
            StatusCode::OK,
            view::confirm(&nav, &typed, &changes, &check.cluster_changes),
        );
    }
    let message = if changes == "nothing" {
        "The draft is valid and changes nothing.".to_owned()
    } else if check.cluster_changes.is_empty() {
        format!("The draft is valid: {changes}.")
    } else {
        format!(
            "The draft is valid: {changes}. Applying it, the cluster takes {} live.",
            check.cluster_changes.join(", ")
        )
    };
    show(StatusCode::OK, Verdict::Valid(message)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_the_daemon_is_shown_at_the_field_that_holds_it() {
        let form = Form(
            [
                "np_targets",
                "monitors[1].retries",
                "max_failovers",
                "heartbeat_interval_ms",
            ]
            .map(|k| (k.to_owned(), String::new()))
            .to_vec(),
        );
        for (key, field) in [
            (Some("cluster.monitors[1].retries"), "monitors[1].retries"),
            (Some("cluster.np_targets[2]"), "np_targets"),
            (Some("cluster.max_failovers"), "max_failovers"),
            // A key that cannot change live: at its field too.
            (
                Some("cluster.heartbeat_interval_ms"),
                "heartbeat_interval_ms",
            ),
            // Not in the form: shown for the whole.
            (Some("cluster.interconnects[0].addresses"), ""),
            (Some("cluster"), ""),
            (Some("services[0]"), ""),
            (None, ""),
        ] {
            assert_eq!(field_of(key, &form), field, "{key:?}");
        }
    }
}
