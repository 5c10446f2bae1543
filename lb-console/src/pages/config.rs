//! Backup and restore of the node's configuration: download what the
//! daemon holds (`GET /v1/config`) as a TOML file; upload a file, which is
//! read and checked here, then by the daemon (`PUT /v1/config`). A refused
//! file changes nothing, and the page says why.
use lb_common::api::Status;
use maud::html;

use super::{Nav, app, unknown};

/// What the last upload did.
pub enum Outcome {
    Restored { file: String, generation: u64 },
    Refused { file: String, why: String },
}

pub fn page(nav: &Nav, status: &Result<Status, String>, outcome: Option<&Outcome>) -> String {
    app(
        nav,
        html! {
            @match outcome {
                Some(Outcome::Restored { file, generation }) => {
                    p.notice.wide role="status" {
                        "Restored " code { (file) } ": the configuration is now generation " (generation) "."
                    }
                }
                Some(Outcome::Refused { file, why }) => {
                    div.error.wide role="alert" {
                        p { "The file " code { (file) } " was refused; nothing was changed." }
                        pre.why { (why) }
                    }
                }
                None => {}
            }
            section.card aria-labelledby="backup" {
                h2 #backup { "Back up" }
                p {
                    "The node's whole configuration (node, services, backends, cluster) as the daemon holds it"
                    @match status {
                        Ok(s) => { ", generation " (s.generation) }
                        Err(_) => { ", generation " (unknown()) }
                    }
                    ", as a TOML file that "
                    code { "lb-ctl config import" } " and this page take back."
                }
                a.button href="/config/download" download { "Download configuration" }
            }
            section.card aria-labelledby="restore" {
                h2 #restore { "Restore" }
                p {
                    "Replaces the configuration with a file's. It is checked first (here, then by the daemon): a file that is "
                    "refused changes nothing."
                }
                form.stack method="post" action="/config/restore" enctype="multipart/form-data" {
                    input type="hidden" name="csrf" value=(nav.csrf);
                    label for="file" { "Configuration file (TOML)" }
                    input #file type="file" name="file" accept=".toml,text/plain" required;
                    button type="submit" { "Restore" }
                }
            }
        },
    )
}
