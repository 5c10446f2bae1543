//! Network > Interfaces: `GET /network`, and the forms that edit an
//! interface (`POST /network/mtu`, `POST /network/address/{add,delete}`),
//! made through rtnetlink in the console's own namespace: per node, never
//! sent to the daemon nor replicated, so also on a standby. A change that
//! may cut the browser's connection off asks for a confirmation first
//! (`confirm=yes`).
use axum::{
    Extension,
    extract::Request,
    http::{StatusCode, Uri},
    response::{IntoResponse, Redirect, Response},
};

use super::{Posted, Shared, no_audit, page};
use crate::{
    auth::sessions::Session,
    forms::Form,
    network::{
        self,
        edit::{self, What},
    },
    pages::{Section, lb::Failed, network as view},
};

/// `GET /network` (`?changed=INTERFACE` after a change to it).
pub async fn show(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    uri: Uri,
) -> Response {
    let interfaces = network::read().await;
    let changed = uri
        .query()
        .and_then(|q| Form::parse(q.as_bytes()))
        .map(|f| f.get("changed").to_owned())
        .filter(|d| !d.is_empty());
    page(
        StatusCode::OK,
        view::page(
            &app.nav(&session, Section::Network),
            &interfaces,
            None,
            changed.as_deref(),
        ),
    )
}

/// `POST /network/...`: one change to one interface.
pub async fn change(
    Extension(app): Shared,
    Extension(session): Extension<Session>,
    request: Request,
) -> Response {
    let posted = match Posted::read(request).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let Some(what) = What::from_path(posted.uri.path()) else {
        return crate::not_found(posted.uri).await.into_response();
    };
    let nav = app.nav(&session, Section::Network);
    let form = Form::parse(&posted.body).unwrap_or_default();
    let failed = |field: &str, message: String| Failed {
        form: view::key(what, form.get("interface"), form.get("address")),
        field: field.to_owned(),
        message,
        typed: form.typed(),
    };
    // What the interfaces are now: the form is judged against them.
    let interfaces = network::read().await;
    let plan = match &interfaces {
        Ok(all) => edit::plan(what, &form, all, posted.local),
        Err(why) => Err(crate::forms::FieldError {
            field: what.field(),
            message: format!("The interfaces could not be read: {why}"),
        }),
    };
    let plan = match plan {
        Ok(plan) => plan,
        Err(err) => {
            app.audit(
                &posted.who,
                what.action(),
                &form.typed_text(),
                &format!("refused: {}: {}", err.field, err.message),
            );
            let failed = failed(err.field, err.message);
            return page(
                StatusCode::BAD_REQUEST,
                view::page(&nav, &interfaces, Some(&failed), None),
            );
        }
    };
    if let Some(why) = &plan.cuts_off
        && form.get("confirm") != "yes"
    {
        // Nothing is changed yet: the confirmation page.
        return page(StatusCode::OK, view::confirm(&nav, &plan, &form, why));
    }
    let detail = plan.detail();
    if !app.audit(&posted.who, what.action(), &detail, "sent to the kernel") {
        return no_audit();
    }
    match network::apply(&plan).await {
        Ok(()) => {
            app.audit(&posted.who, what.action(), &detail, "ok");
            let changed =
                serde_urlencoded::to_string([("changed", &plan.interface)]).unwrap_or_default();
            Redirect::to(&format!("/network?{changed}")).into_response()
        }
        Err(why) => {
            app.audit(
                &posted.who,
                what.action(),
                &detail,
                &format!("refused: {why}"),
            );
            let failed = failed(what.field(), format!("Not changed: {why}."));
            let interfaces = network::read().await;
            page(
                StatusCode::CONFLICT,
                view::page(&nav, &interfaces, Some(&failed), None),
            )
        }
    }
}
