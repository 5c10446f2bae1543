//! The console's HTML pages, rendered on the server with maud (which
//! escapes every value it is given). Inline CSS (`style.css`, compiled in),
//! no external assets and one script, the dashboard's `/live.js` (see
//! `crate::live`), from the console itself: the content security policy is
//! `default-src 'none'` with `script-src 'self'; connect-src 'self'`. Two shells: `bare` (one card in the middle: the
//! login page, refusals) and `app` (the bar with the host and the user, the
//! sections, the content) for logged-in pages.
use maud::{DOCTYPE, Markup, PreEscaped, html};

pub mod alerts;
pub mod cluster;
pub mod cluster_settings;
pub mod config;
pub mod dashboard;
pub mod lb;
pub mod network;
pub mod stats;

const STYLE: &str = include_str!("style.css");

/// The console's sections, in the order of the navigation. A section is
/// listed once its page exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Lb,
    Stats,
    Cluster,
    Network,
    Alerts,
    Config,
}

impl Section {
    const ALL: [Section; 7] = [
        Section::Dashboard,
        Section::Lb,
        Section::Stats,
        Section::Cluster,
        Section::Network,
        Section::Alerts,
        Section::Config,
    ];

    fn title(self) -> &'static str {
        match self {
            Section::Dashboard => "Dashboard",
            Section::Lb => "LB settings",
            Section::Stats => "Statistics",
            Section::Cluster => "Cluster",
            Section::Network => "Network",
            Section::Alerts => "Alerts",
            Section::Config => "Backup",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Section::Dashboard => "/",
            Section::Lb => "/lb",
            Section::Stats => "/stats",
            Section::Cluster => "/cluster",
            Section::Network => "/network",
            Section::Alerts => "/alerts",
            Section::Config => "/config",
        }
    }
}

/// A value the console does not know (the daemon or the peer did not
/// say): never shown as a confident state.
pub fn unknown() -> Markup {
    html! { span.unknown { "unknown" } }
}

/// What the shell of a logged-in page shows: where, who, and the session's
/// CSRF token for the logout form.
pub struct Nav<'a> {
    pub host: &'a str,
    pub version: &'a str,
    pub user: &'a str,
    pub csrf: &'a str,
    pub section: Section,
}

fn head(title: &str, refresh: Option<u64>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if let Some(seconds) = refresh {
                meta http-equiv="refresh" content=(seconds);
            }
            meta name="robots" content="noindex, nofollow";
            title { (title) }
            style { (PreEscaped(STYLE)) }
        }
    }
}

fn brand(title: &str, sub: &str) -> Markup {
    html! {
        div.brand {
            div.mark aria-hidden="true" { "lb" }
            div { h1 { (title) } p.sub { (sub) } }
        }
    }
}

/// A page of one card, without a session.
fn bare(title: &str, card: Markup) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title, None))
            body.bare { div.card { (card) } }
        }
    }
    .into_string()
}

/// A logged-in page: the bar, the sections and `content` (cards).
pub fn app(nav: &Nav, content: Markup) -> String {
    shell(nav, None, content)
}

/// A logged-in page that reloads itself every `seconds` (a plain
/// `<meta http-equiv="refresh">`: no script).
pub fn app_refreshing(nav: &Nav, seconds: u64, content: Markup) -> String {
    shell(nav, Some(seconds), content)
}

fn shell(nav: &Nav, refresh: Option<u64>, content: Markup) -> String {
    let title = format!("{} · {} · lb console", nav.section.title(), nav.host);
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&title, refresh))
            body {
                header.bar {
                    div.mark aria-hidden="true" { "lb" }
                    strong { "lb console" }
                    span.host.sub { (nav.host) }
                    div.who {
                        span { "Logged in as " strong { (nav.user) } }
                        form method="post" action="/logout" {
                            input type="hidden" name="csrf" value=(nav.csrf);
                            button.quiet type="submit" { "Log out" }
                        }
                    }
                }
                nav.sections aria-label="Sections" {
                    @for section in Section::ALL {
                        @if section == nav.section {
                            a href=(section.path()) aria-current="page" { (section.title()) }
                        } @else {
                            a href=(section.path()) { (section.title()) }
                        }
                    }
                }
                main.content { (content) }
                footer.foot { "lb " (nav.version) " · " (nav.host) }
            }
        }
    }
    .into_string()
}

/// The login form; `user` is what was typed (kept after an error), `error`
/// says why the last attempt failed.
pub fn login(user: &str, error: Option<&str>) -> String {
    bare(
        "Log in · lb console",
        html! {
            (brand("lb console", "Log in to manage this node"))
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form.stack method="post" action="/login" {
                label for="user" { "User name" }
                input #user name="user" autocomplete="username" required value=(user);
                label for="password" { "Password" }
                input #password name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
            }
        },
    )
}

/// A page that only says something (a refusal, an error).
pub fn message(title: &str, message: &str) -> String {
    bare(
        &format!("{title} · lb console"),
        html! {
            (brand(title, "lb console"))
            p { (message) }
            p { a href="/" { "Go to the console" } }
        },
    )
}

/// The body of 404 responses.
pub fn not_found(path: &str) -> String {
    bare(
        "Not found · lb console",
        html! {
            (brand("Page not found", "lb console"))
            p { "There is no page at " code { (path) } "." }
            p { a href="/" { "Go to the console home page" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nav<'a>(host: &'a str, csrf: &'a str) -> Nav<'a> {
        Nav {
            host,
            version: "1.2.3",
            user: "admin",
            csrf,
            section: Section::Dashboard,
        }
    }

    #[test]
    fn the_app_shell_escapes_and_carries_the_logout_token() {
        let html = app(&nav("evil<script>", "t0ken"), html! { p { "x" } });
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>Dashboard · evil&lt;script&gt; · lb console</title>"));
        assert!(!html.contains("evil<script>"));
        assert!(html.contains(r#"name="csrf" value="t0ken""#));
        assert!(html.contains(r#"<a href="/" aria-current="page">Dashboard</a>"#));
        assert!(html.contains("lb 1.2.3"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn login_keeps_what_was_typed_and_escapes_it() {
        let html = login("ad\"min<", Some("Wrong user name or password."));
        assert!(html.contains(r#"value="ad&quot;min&lt;""#), "{html}");
        assert!(html.contains("Wrong user name or password."));
        assert!(!login("", None).contains("class=\"error\""));
    }

    #[test]
    fn not_found_escapes_the_path() {
        let html = not_found("/<x>");
        assert!(html.contains("/&lt;x&gt;"));
        assert!(html.contains("Page not found"));
    }
}
