//! The dashboard's live values: what the daemon's card shows, as the page
//! renders it and as `GET /live/status` sends it to the page's script
//! (`live.js`, every 2 s). Pure: the daemon's state in, one text per value
//! out, `None` (shown as unknown) for every value when the daemon did not
//! answer, never a stale or assumed one.
use std::collections::BTreeMap;
use std::time::Duration;

use lb_common::api::{Alert, ClusterStatus, Role};
use serde::Serialize;

use crate::{daemon::DaemonState, system};

/// The live values in the order of the card: the key (`data-live` on the
/// page, the JSON's field) and the label.
pub const ROWS: [(&str, &str); 6] = [
    ("daemon", "Daemon"),
    ("node", "Node"),
    ("role", "Role"),
    ("uptime", "Uptime"),
    ("configuration", "Configuration"),
    ("services", "Services"),
];

/// The pair's live values (the dashboard's "Pair" card, shown when the
/// node is clustered): the key and the label (`None`: the peer's name).
pub const PAIR_ROWS: [(&str, Option<&str>); 6] = [
    ("group_runs_on", Some("Group runs on")),
    ("peer", None),
    ("interconnects", Some("Interconnects")),
    ("settings", Some("Settings")),
    ("takeovers", Some("Takeovers")),
    ("replication", Some("Replication")),
];

/// The texts of the pair's values, in the order of [`PAIR_ROWS`]. What the
/// peer would have to say (its role, its settings) is unknown when it is
/// not heard.
fn pair(c: &ClusterStatus) -> [Option<String>; 6] {
    let runs = if c.role == Some(Role::Active) {
        Some(c.servers.0.clone())
    } else if c.peer_alive && c.peer_role == Some(Role::Active) {
        Some(c.servers.1.clone())
    } else {
        None
    };
    let peer = if c.peer_alive {
        Some(match c.peer_role {
            Some(role) => role.to_string(),
            None => "no role".to_owned(),
        })
    } else {
        Some("not heard, role unknown".to_owned())
    };
    let peer_settings = c.peer_settings.as_ref().filter(|_| c.peer_alive);
    let settings = format!(
        "generation {} here, {} on {}{}",
        c.settings.0,
        match peer_settings {
            Some((g, _)) => format!("generation {g}"),
            None => "unknown".to_owned(),
        },
        c.servers.1,
        if peer_settings.is_some_and(|p| *p == c.settings) {
            " (same)"
        } else {
            ""
        }
    );
    let up = c.links.iter().filter(|(_, up)| *up).count();
    [
        runs,
        peer,
        Some(format!("{up} of {} hear the peer", c.links.len())),
        Some(settings),
        Some(c.takeovers.count.to_string()),
        c.replication.as_ref().map(|r| {
            format!(
                "{}, {}, lag {} flows",
                r.stream,
                if r.caught_up {
                    "caught up"
                } else {
                    "catching up"
                },
                r.lag_flows
            )
        }),
    ]
}

/// What `GET /live/status` answers.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Live {
    /// Every key of [`ROWS`] and [`PAIR_ROWS`], with its text, or `null`
    /// when unknown (a node without a pair: the pair's are all `null`).
    pub values: BTreeMap<&'static str, Option<String>>,
    /// Why the values are unknown.
    pub error: Option<String>,
    /// The recent alerts, newest first (the dashboard's "Recent alerts"),
    /// or `null` when the daemon did not say.
    pub alerts: Option<Vec<LiveAlert>>,
}

/// An alert as the dashboard's script shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveAlert {
    pub time: String,
    /// `info`, `warning` or `error`.
    pub level: String,
    /// The event's stable name.
    pub event: String,
    pub message: String,
}

impl Live {
    /// With the daemon's answer to `GET /v1/alerts` (oldest first), newest
    /// first; unknown when it did not answer.
    pub fn with_alerts(mut self, alerts: &Result<Vec<Alert>, String>) -> Live {
        self.alerts = alerts.as_ref().ok().map(|alerts| {
            alerts
                .iter()
                .rev()
                .map(|a| LiveAlert {
                    time: a.time.clone(),
                    level: a.level.to_string(),
                    event: a.event.to_string(),
                    message: a.message.clone(),
                })
                .collect()
        });
        self
    }
}

/// The values of `state`.
pub fn values(state: &DaemonState) -> Live {
    let (texts, error): ([Option<String>; 6], _) = match state {
        DaemonState::Answered(s) => (
            [
                Some(format!("running, lb {}", s.version)),
                Some(s.node.clone()),
                Some(s.role.to_string()),
                Some(system::human_duration(Duration::from_secs(
                    s.uptime_seconds,
                ))),
                Some(format!("generation {}", s.generation)),
                Some(format!(
                    "{} ({} backends, {} down)",
                    s.services, s.backends, s.backends_down
                )),
            ],
            None,
        ),
        DaemonState::Unknown(why) => (Default::default(), Some(why.clone())),
    };
    let pair_texts = match state {
        DaemonState::Answered(s) => s.cluster.as_ref().map(pair).unwrap_or_default(),
        DaemonState::Unknown(_) => Default::default(),
    };
    let mut values: BTreeMap<_, _> = ROWS.iter().map(|(key, _)| *key).zip(texts).collect();
    values.extend(PAIR_ROWS.iter().map(|(key, _)| *key).zip(pair_texts));
    Live {
        values,
        error,
        alerts: None,
    }
}

/// The page's script: fetches `/live/status` every 2 s and writes each
/// value into its `data-live` element; when the console or the daemon does
/// not answer, every value turns to unknown.
pub const SCRIPT: &str = include_str!("live.js");
