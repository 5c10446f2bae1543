//! LB settings: `GET /lb`, and the forms (`POST /lb/backend/{add,weight,
//! state,delete}`, `POST /lb/service/{add,delete,sorry,health}`), each
//! turned into one `api::Change` for `POST /v1/changes`.
use axum::{
    Extension,
    extract::Request,
    http::{StatusCode, Uri},
    response::{IntoResponse, Redirect, Response},
};
use lb_common::api::{Applied, Change, Config, Stats, Status, client::Method};

use super::{App, Posted, Shared, no_audit, page};
use crate::{
    auth::sessions::Session,
    forms::{self, FieldError, Form},
    pages::{
        Section,
        lb::{self as view, Failed, LbPage, Writable},
    },
};

/// A form of the page: its path's last words, how it reads, which form it
/// is on the page, and the field a refusal of the daemon is shown by.
struct Kind {
    action: &'static str,
    read: Read,
    key: fn(&Form) -> String,
    field: &'static str,
    /// It asks for a confirmation first (`confirm=yes`).
    confirm: bool,
}

/// How a form becomes a change: from its fields alone, or with the
/// daemon's configuration (what the form does not change is kept).
enum Read {
    Form(fn(&Form) -> Result<Change, FieldError>),
    WithConfig(fn(&Form, &Config) -> Result<Change, FieldError>),
}

fn key_weight(f: &Form) -> String {
    view::key_backend("weight", f.get("service"), f.get("address"))
}
fn key_state(f: &Form) -> String {
    view::key_backend("state", f.get("service"), f.get("address"))
}
fn key_delete_backend(f: &Form) -> String {
    view::key_backend("delete-backend", f.get("service"), f.get("address"))
}

fn kind(path: &str) -> Option<Kind> {
    Some(match path {
        "/lb/backend/add" => Kind {
            action: "backend add",
            read: Read::Form(forms::add_backend),
            key: |f| view::key_add_backend(f.get("service")),
            field: "address",
            confirm: false,
        },
        "/lb/backend/weight" => Kind {
            action: "backend set",
            read: Read::Form(forms::set_weight),
            key: key_weight,
            field: "weight",
            confirm: false,
        },
        "/lb/backend/state" => Kind {
            action: "backend set",
            read: Read::Form(forms::set_state),
            key: key_state,
            field: "state",
            confirm: false,
        },
        "/lb/backend/delete" => Kind {
            action: "backend delete",
            read: Read::Form(forms::delete_backend),
            key: key_delete_backend,
            field: "address",
            confirm: false,
        },
        "/lb/service/add" => Kind {
            action: "service add",
            read: Read::Form(forms::add_service),
            key: |_| view::KEY_ADD_SERVICE.to_owned(),
            field: "service",
            confirm: false,
        },
        "/lb/service/delete" => Kind {
            action: "service delete",
            read: Read::Form(forms::delete_service),
            key: |f| view::key_delete_service(f.get("service")),
            field: "service",
            confirm: true,
        },
        "/lb/service/health" => Kind {
            action: "service set",
            read: Read::WithConfig(forms::set_health),
            key: |f| view::key_health(f.get("service")),
            field: "kind",
            confirm: false,
        },
        "/lb/service/sorry" => Kind {
            action: "service set",
            read: Read::WithConfig(forms::set_sorry),
            key: |f| view::key_sorry(f.get("service")),
            field: "sorry",
            confirm: false,
        },
        _ => return None,
    })
}

async fn render(
    app: &App,
    session: &Session,
    status: &Result<Status, String>,
    failed: Option<&Failed>,
    applied: Option<&str>,
) -> String {
    let stats: Result<Stats, String> = crate::daemon::get(&app.daemon, "/v1/stats").await;
    let config: Result<Config, String> = crate::daemon::get(&app.daemon, "/v1/config").await;
    view::page(
        &app.nav(session, Section::Lb),
        &LbPage {
            status,
            stats: &stats,
            config: &config,
            peer_console: app.peer_console.as_deref(),
            failed,
            applied,
        },
    )
}

/// `GET /lb` (`?applied=GENERATION` after a change).
pub async fn show(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    uri: Uri,
) -> Response {
    let applied = uri
        .query()
        .and_then(|q| Form::parse(q.as_bytes()))
        .and_then(|f| f.get("applied").parse::<u64>().ok())
        .map(|g| format!("The change is applied: the configuration is now generation {g}."));
    let status = app.status().await;
    page(
        StatusCode::OK,
        render(&app, &session, &status, None, applied.as_deref()).await,
    )
}

/// `POST /lb/...`: one change.
pub async fn change(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    request: Request,
) -> Response {
    let posted = match Posted::read(request).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let Some(kind) = kind(posted.uri.path()) else {
        return crate::not_found(posted.uri).await.into_response();
    };
    let form = Form::parse(&posted.body).unwrap_or_default();
    let key = (kind.key)(&form);
    let status = app.status().await;
    let failed = |field: &str, message: String| Failed {
        form: key.clone(),
        field: field.to_owned(),
        message,
        typed: form.typed(),
    };
    // Only a node that says it is not a standby takes changes.
    let refused = match view::writable(&status) {
        Writable::Yes => None,
        Writable::Standby { .. } => {
            Some("this node is the standby: change the settings on the active node".to_owned())
        }
        Writable::Unknown(why) => Some(format!("the node's role is unknown ({why})")),
    };
    if let Some(why) = refused {
        app.audit(
            &posted.who,
            kind.action,
            &form.typed_text(),
            &format!("refused: {why}"),
        );
        return page(
            StatusCode::CONFLICT,
            render(&app, &session, &status, None, None).await,
        );
    }
    if kind.confirm && form.get("confirm") != "yes" {
        // Nothing is changed yet: the confirmation page.
        return page(
            StatusCode::OK,
            view::confirm_delete(&app.nav(&session, Section::Lb), form.get("service")),
        );
    }
    let change = match kind.read {
        Read::Form(read) => read(&form),
        Read::WithConfig(read) => {
            match crate::daemon::get::<Config>(&app.daemon, "/v1/config").await {
                Ok(config) => read(&form, &config),
                Err(why) => Err(FieldError {
                    field: kind.field,
                    message: format!("The configuration could not be read: {why}"),
                }),
            }
        }
    };
    let change = match change {
        Ok(change) => change,
        Err(err) => {
            app.audit(
                &posted.who,
                kind.action,
                &form.typed_text(),
                &format!("refused: {}: {}", err.field, err.message),
            );
            let failed = failed(err.field, err.message);
            return page(
                StatusCode::BAD_REQUEST,
                render(&app, &session, &status, Some(&failed), None).await,
            );
        }
    };
    let (action, detail) = forms::describe(&change);
    if !app.audit(&posted.who, action, &detail, "sent to the daemon") {
        return no_audit();
    }
    match crate::daemon::send::<_, Applied>(&app.daemon, Method::POST, "/v1/changes", &change).await
    {
        Ok(applied) => {
            app.audit(
                &posted.who,
                action,
                &detail,
                &format!("ok (generation {})", applied.generation),
            );
            Redirect::to(&format!("/lb?applied={}", applied.generation)).into_response()
        }
        Err(why) => {
            app.audit(&posted.who, action, &detail, &format!("refused: {why}"));
            let failed = failed(kind.field, why);
            page(
                StatusCode::CONFLICT,
                render(&app, &session, &status, Some(&failed), None).await,
            )
        }
    }
}
