//! The console's HTML pages. Every page is self-contained: inline CSS, no
//! scripts, no external assets, so the content security policy can stay at
//! `default-src 'none'`.

use std::fmt::Write as _;

/// Shared stylesheet, inlined into every page.
const STYLE: &str = r#"
:root {
  color-scheme: light dark;
  --bg: #f4f5f7; --card: #ffffff; --fg: #1d2430; --muted: #5b6575;
  --line: #dde1e7; --accent: #1f6feb;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #10141a; --card: #181d25; --fg: #e4e8ee; --muted: #97a1b0;
          --line: #2a313c; --accent: #58a6ff; }
}
* { box-sizing: border-box; }
html, body { margin: 0; height: 100%; }
body {
  display: flex; align-items: center; justify-content: center;
  background: var(--bg); color: var(--fg);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  padding: 24px;
}
main {
  width: 100%; max-width: 460px; background: var(--card);
  border: 1px solid var(--line); border-radius: 10px; padding: 32px 32px 24px;
  box-shadow: 0 1px 3px rgba(0, 0, 0, .06), 0 8px 24px rgba(0, 0, 0, .05);
}
.brand { display: flex; align-items: center; gap: 12px; margin-bottom: 20px; }
.mark {
  width: 36px; height: 36px; border-radius: 8px; background: var(--accent); color: #fff;
  display: flex; align-items: center; justify-content: center;
  font-weight: 700; font-size: 16px; letter-spacing: .5px;
}
h1 { font-size: 19px; margin: 0; font-weight: 600; }
.sub { margin: 0; color: var(--muted); font-size: 13px; }
p { margin: 0 0 14px; }
dl {
  display: grid; grid-template-columns: max-content 1fr; gap: 6px 16px;
  margin: 20px 0; padding: 14px 16px; border: 1px solid var(--line); border-radius: 8px;
  font-size: 14px;
}
dt { color: var(--muted); }
dd { margin: 0; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
     font-size: 13px; overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; }
footer { margin-top: 22px; padding-top: 14px; border-top: 1px solid var(--line);
         color: var(--muted); font-size: 12px; }
a { color: var(--accent); }
form.login { display: grid; gap: 8px; margin-top: 8px; }
label { font-size: 13px; color: var(--muted); }
input { font: inherit; padding: 8px 10px; border: 1px solid var(--line); border-radius: 6px;
        background: var(--bg); color: var(--fg); width: 100%; }
button { font: inherit; padding: 8px 14px; border: 0; border-radius: 6px; margin-top: 8px;
         background: var(--accent); color: #fff; cursor: pointer; }
.error { color: #b42318; background: #fef3f2; border: 1px solid #fecdca; border-radius: 6px;
         padding: 8px 10px; }
"#;

/// The landing page served at `/` to a logged-in `user`; its logout form
/// carries the session's `csrf` token.
pub fn index(host: &str, version: &str, user: &str, csrf: &str) -> String {
    let host = escape(host);
    let version = escape(version);
    let user = escape(user);
    let csrf = escape(csrf);
    let body = format!(
        r#"<div class="brand"><div class="mark" aria-hidden="true">lb</div>
<div><h1>lb console</h1><p class="sub">Load balancer management</p></div></div>
<p>This is the management console of the lb load balancer running on
<strong>{host}</strong>.</p>
<dl>
<dt>Host</dt><dd>{host}</dd>
<dt>Version</dt><dd>lb {version}</dd>
<dt>Connection</dt><dd>HTTPS</dd>
<dt>Logged in as</dt><dd>{user}</dd>
</dl>
<p>The management screens (dashboard, cluster, services and backends)
arrive in later releases of the console. Until then, manage this node with
the <code>lb-ctl</code> command-line tool.</p>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{csrf}">
<button type="submit">Log out</button></form>
<footer>lb {version} &middot; {host}</footer>"#
    );
    page("lb console", &body)
}

/// The login form; `user` is what was typed (kept after an error), `error`
/// says why the last attempt failed.
pub fn login(user: &str, error: Option<&str>) -> String {
    let error = error
        .map(|e| format!(r#"<p class="error" role="alert">{}</p>"#, escape(e)))
        .unwrap_or_default();
    let body = format!(
        r#"<div class="brand"><div class="mark" aria-hidden="true">lb</div>
<div><h1>lb console</h1><p class="sub">Log in to manage this node</p></div></div>
{error}<form method="post" action="/login" class="login">
<label for="user">User name</label>
<input id="user" name="user" autocomplete="username" required value="{}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button>
</form>"#,
        escape(user)
    );
    page("Log in · lb console", &body)
}

/// A page that only says something (a refusal, an error).
pub fn message(title: &str, message: &str) -> String {
    let body = format!(
        r#"<div class="brand"><div class="mark" aria-hidden="true">lb</div>
<div><h1>{}</h1><p class="sub">lb console</p></div></div>
<p>{}</p>
<p><a href="/">Go to the console</a></p>"#,
        escape(title),
        escape(message)
    );
    page(&format!("{title} · lb console"), &body)
}

/// The body of 404 responses.
pub fn not_found(path: &str) -> String {
    let body = format!(
        r#"<div class="brand"><div class="mark" aria-hidden="true">lb</div>
<div><h1>Page not found</h1><p class="sub">lb console</p></div></div>
<p>There is no page at <code>{}</code>.</p>
<p><a href="/">Go to the console home page</a></p>"#,
        escape(path)
    );
    page("Not found · lb console", &body)
}

fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(STYLE.len() + body.len() + 512);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        escape(title)
    );
    out
}

/// Escapes text for use in HTML element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn index_escapes_host_and_has_title() {
        let html = index("evil<script>", "1.2.3", "admin", "t0ken");
        assert!(html.contains("<title>lb console</title>"));
        assert!(html.contains("evil&lt;script&gt;"));
        assert!(!html.contains("evil<script>"));
        assert!(html.contains("lb 1.2.3"));
        assert!(!html.contains("<script"));
        assert!(html.contains(r#"name="csrf" value="t0ken""#));
    }

    #[test]
    fn login_keeps_what_was_typed_and_escapes_it() {
        let html = login("ad\"min<", Some("Wrong user name or password."));
        assert!(html.contains(r#"value="ad&quot;min&lt;""#), "{html}");
        assert!(html.contains("Wrong user name or password."));
        assert!(!login("", None).contains("class=\"error\""));
    }

    #[test]
    fn not_found_escapes_path() {
        let html = not_found("/<x>");
        assert!(html.contains("/&lt;x&gt;"));
    }
}
