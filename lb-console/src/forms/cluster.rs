//! The cluster's settings as a draft: the `[cluster]` tunables of the
//! form into the whole configuration, and what differs, in words.
use std::net::IpAddr;

use lb_common::api::Config;

use super::Form;

/// A field of the cluster settings' form that cannot be used: its name
/// (`max_failovers`, `monitors[1].retries`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingsError {
    pub field: String,
    pub message: String,
}

fn wrong(field: &str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A required whole number in `field`.
fn whole<T: std::str::FromStr>(form: &Form, field: &str, what: &str) -> Result<T, SettingsError> {
    let text = form.get(field);
    if text.is_empty() {
        return Err(wrong(field, format!("Enter {what}.")));
    }
    text.parse()
        .map_err(|_| wrong(field, format!("{text:?} is not {what}.")))
}

/// The cluster settings' form (the `[cluster]` tunables a running node
/// can be asked to change, and the heartbeat timing, which the daemon
/// refuses to change live): the daemon's `config` with its `[cluster]`
/// section changed as the form says, everything else as it was. Fields:
/// `heartbeat_interval_ms`, `heartbeat_lost_after`, `auto_failback` (a
/// checkbox: `yes`), `survivor` (a server's name; empty: the first
/// server), `max_failovers`, `failover_window_s`, `final_action` (`none`,
/// `stop`), `np_targets` (addresses, separated by spaces or commas), and
/// per monitor `i` (in the section's order, `monitors[i].name` saying
/// which) `monitors[i].interval_ms`, `.timeout_ms`, `.retries`,
/// `.start_wait_ms`, `.when` (`always`, `active`). The ranges are the
/// daemon's to judge (`POST /v1/config/check`).
pub fn cluster_settings(form: &Form, config: &Config) -> Result<Config, SettingsError> {
    let Some(current) = &config.cluster else {
        return Err(wrong(
            "cluster",
            "This node is not part of a cluster (standalone): it has no cluster settings.",
        ));
    };
    let mut cluster = current.clone();
    cluster.heartbeat_interval_ms =
        whole(form, "heartbeat_interval_ms", "a number of milliseconds")?;
    cluster.heartbeat_lost_after = whole(
        form,
        "heartbeat_lost_after",
        "a count of heartbeats (a whole number)",
    )?;
    cluster.auto_failback = match form.get("auto_failback") {
        "" | "no" => false,
        "yes" => true,
        other => {
            return Err(wrong(
                "auto_failback",
                format!("{other:?} is neither yes nor no."),
            ));
        }
    };
    cluster.survivor = match form.get("survivor") {
        "" => None,
        name if current.servers.iter().any(|s| s.name == name) => Some(name.to_owned()),
        name => {
            return Err(wrong(
                "survivor",
                format!("{name:?} is not one of the cluster's servers."),
            ));
        }
    };
    cluster.max_failovers = whole(
        form,
        "max_failovers",
        "a count of failovers (a whole number)",
    )?;
    cluster.failover_window_s = whole(form, "failover_window_s", "a number of seconds")?;
    cluster.final_action = match form.get("final_action") {
        "none" => lb_common::api::config::FinalAction::None,
        "stop" => lb_common::api::config::FinalAction::Stop,
        other => {
            return Err(wrong(
                "final_action",
                format!("{other:?} is not a final action (none or stop)."),
            ));
        }
    };
    cluster.np_targets = form
        .get("np_targets")
        .split([' ', ',', '\n', '\r', '\t'])
        .filter(|word| !word.is_empty())
        .map(|word| {
            word.parse().map_err(|_| {
                wrong(
                    "np_targets",
                    format!("{word:?} is not an IP address (e.g. 198.18.0.254)."),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    for (i, monitor) in cluster.monitors.iter_mut().enumerate() {
        let field = |name: &str| format!("monitors[{i}].{name}");
        if form.get(&field("name")) != monitor.name {
            return Err(wrong(
                &field("name"),
                format!(
                    "The monitors changed since this form was made (monitor {} is now {:?}): open the settings again.",
                    i + 1,
                    monitor.name
                ),
            ));
        }
        monitor.interval_ms = whole(form, &field("interval_ms"), "a number of milliseconds")?;
        monitor.timeout_ms = whole(form, &field("timeout_ms"), "a number of milliseconds")?;
        monitor.retries = whole(
            form,
            &field("retries"),
            "a count of failed checks (a whole number)",
        )?;
        monitor.start_wait_ms = whole(form, &field("start_wait_ms"), "a number of milliseconds")?;
        monitor.when = match form.get(&field("when")) {
            "always" => lb_common::api::config::MonitorWhen::Always,
            "active" => lb_common::api::config::MonitorWhen::Active,
            other => {
                return Err(wrong(
                    &field("when"),
                    format!("{other:?} is not when a monitor runs (always or active)."),
                ));
            }
        };
    }
    if !form
        .get(&format!("monitors[{}].name", cluster.monitors.len()))
        .is_empty()
    {
        return Err(wrong(
            "cluster",
            "The monitors changed since this form was made: open the settings again.",
        ));
    }
    Ok(Config {
        cluster: Some(cluster),
        ..config.clone()
    })
}

/// What a cluster settings change changes, for the audit trail: `KEY
/// VALUE` for each tunable that differs (`auto_failback true
/// monitors[0].retries 3`), or `nothing`.
pub fn describe_cluster(old: &Config, new: &Config) -> String {
    let (Some(old), Some(new)) = (&old.cluster, &new.cluster) else {
        return "nothing".to_owned();
    };
    let mut words = Vec::new();
    let mut differ = |key: String, a: String, b: String| {
        if a != b {
            words.push(format!("{key} {b}"));
        }
    };
    differ(
        "heartbeat_interval_ms".into(),
        old.heartbeat_interval_ms.to_string(),
        new.heartbeat_interval_ms.to_string(),
    );
    differ(
        "heartbeat_lost_after".into(),
        old.heartbeat_lost_after.to_string(),
        new.heartbeat_lost_after.to_string(),
    );
    differ(
        "auto_failback".into(),
        old.auto_failback.to_string(),
        new.auto_failback.to_string(),
    );
    let survivor = |s: &Option<String>| s.clone().unwrap_or_else(|| "(first server)".into());
    differ(
        "survivor".into(),
        survivor(&old.survivor),
        survivor(&new.survivor),
    );
    differ(
        "max_failovers".into(),
        old.max_failovers.to_string(),
        new.max_failovers.to_string(),
    );
    differ(
        "failover_window_s".into(),
        old.failover_window_s.to_string(),
        new.failover_window_s.to_string(),
    );
    differ(
        "final_action".into(),
        format!("{:?}", old.final_action).to_lowercase(),
        format!("{:?}", new.final_action).to_lowercase(),
    );
    let targets = |t: &[IpAddr]| {
        format!(
            "[{}]",
            t.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    differ(
        "np_targets".into(),
        targets(&old.np_targets),
        targets(&new.np_targets),
    );
    for (i, (a, b)) in old.monitors.iter().zip(&new.monitors).enumerate() {
        let key = |name: &str| format!("monitors[{i}].{name}");
        differ(
            key("interval_ms"),
            a.interval_ms.to_string(),
            b.interval_ms.to_string(),
        );
        differ(
            key("timeout_ms"),
            a.timeout_ms.to_string(),
            b.timeout_ms.to_string(),
        );
        differ(key("retries"), a.retries.to_string(), b.retries.to_string());
        differ(
            key("start_wait_ms"),
            a.start_wait_ms.to_string(),
            b.start_wait_ms.to_string(),
        );
        differ(
            key("when"),
            format!("{:?}", a.when).to_lowercase(),
            format!("{:?}", b.when).to_lowercase(),
        );
    }
    if words.is_empty() {
        "nothing".to_owned()
    } else {
        words.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clustered() -> Config {
        toml::from_str(
            "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n[cluster]\nid = \"00112233445566778899aabbccddeeff\"\n\
             [[cluster.servers]]\nname = \"lb1\"\n[[cluster.servers]]\nname = \"lb2\"\n\
             [[cluster.interconnects]]\nname = \"hb0\"\naddresses = [\"198.18.8.1\", \"198.18.8.2\"]\n\
             [[cluster.monitors]]\nname = \"uplink\"\nkind = \"link\"\ninterface = \"ext0\"\n",
        )
        .unwrap()
    }

    fn settings(changes: &[(&str, &str)]) -> Form {
        let mut fields = vec![
            ("csrf", "t"),
            ("heartbeat_interval_ms", "40"),
            ("heartbeat_lost_after", "5"),
            ("survivor", ""),
            ("max_failovers", "3"),
            ("failover_window_s", "3600"),
            ("final_action", "none"),
            ("np_targets", ""),
            ("monitors[0].name", "uplink"),
            ("monitors[0].interval_ms", "1000"),
            ("monitors[0].timeout_ms", "1000"),
            ("monitors[0].retries", "1"),
            ("monitors[0].start_wait_ms", "0"),
            ("monitors[0].when", "always"),
            ("action", "validate"),
        ];
        for (field, value) in changes {
            match fields.iter_mut().find(|(f, _)| f == field) {
                Some(entry) => entry.1 = value,
                None => fields.push((field, value)),
            }
        }
        Form(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    #[test]
    fn the_cluster_settings_form_changes_only_the_cluster_tunables() {
        let config = clustered();
        assert_eq!(cluster_settings(&settings(&[]), &config).unwrap(), config);
        let new = cluster_settings(
            &settings(&[
                ("auto_failback", "yes"),
                ("survivor", "lb2"),
                ("max_failovers", "5"),
                ("failover_window_s", "60"),
                ("final_action", "stop"),
                ("np_targets", "198.18.0.254, 2001:db8::fe\n198.18.0.253"),
                ("monitors[0].retries", "3"),
                ("monitors[0].when", "active"),
                ("monitors[0].start_wait_ms", "2000"),
            ]),
            &config,
        )
        .unwrap();
        assert_eq!((&new.node, &new.services), (&config.node, &config.services));
        let cluster = new.cluster.as_ref().unwrap();
        assert_eq!(cluster.survivor.as_deref(), Some("lb2"));
        assert_eq!(
            cluster.np_targets,
            ["198.18.0.254", "2001:db8::fe", "198.18.0.253"].map(|a| a.parse::<IpAddr>().unwrap())
        );
        assert_eq!(
            describe_cluster(&config, &new),
            "auto_failback true survivor lb2 max_failovers 5 failover_window_s 60 final_action stop \
             np_targets [198.18.0.254, 2001:db8::fe, 198.18.0.253] monitors[0].retries 3 \
             monitors[0].start_wait_ms 2000 monitors[0].when active"
        );
        assert_eq!(describe_cluster(&config, &config), "nothing");
        // What the form does not show stays as it was.
        let (old, now) = (config.cluster.as_ref().unwrap(), cluster);
        assert_eq!(
            (&now.id, &now.interconnects, &now.monitors[0].interface),
            (&old.id, &old.interconnects, &old.monitors[0].interface)
        );
    }

    #[test]
    fn a_cluster_settings_field_that_cannot_be_read_is_named_with_why() {
        let config = clustered();
        for (changes, field, message) in [
            (
                &[("heartbeat_interval_ms", "")][..],
                "heartbeat_interval_ms",
                "Enter a number of milliseconds.",
            ),
            (
                &[("heartbeat_lost_after", "-1")][..],
                "heartbeat_lost_after",
                "\"-1\" is not a count of heartbeats (a whole number).",
            ),
            (
                &[("auto_failback", "on")][..],
                "auto_failback",
                "\"on\" is neither yes nor no.",
            ),
            (
                &[("survivor", "lb3")][..],
                "survivor",
                "\"lb3\" is not one of the cluster's servers.",
            ),
            (
                &[("final_action", "reboot")][..],
                "final_action",
                "\"reboot\" is not a final action (none or stop).",
            ),
            (
                &[("np_targets", "198.18.0.254 gateway")][..],
                "np_targets",
                "\"gateway\" is not an IP address (e.g. 198.18.0.254).",
            ),
            (
                &[("monitors[0].timeout_ms", "1s")][..],
                "monitors[0].timeout_ms",
                "\"1s\" is not a number of milliseconds.",
            ),
            (
                &[("monitors[0].when", "never")][..],
                "monitors[0].when",
                "\"never\" is not when a monitor runs (always or active).",
            ),
            (
                &[("monitors[0].name", "gateway")][..],
                "monitors[0].name",
                "The monitors changed since this form was made (monitor 1 is now \"uplink\"): open the settings again.",
            ),
            (
                &[("monitors[1].name", "gateway")][..],
                "cluster",
                "The monitors changed since this form was made: open the settings again.",
            ),
        ] {
            let err = cluster_settings(&settings(changes), &config).unwrap_err();
            assert_eq!(
                (err.field.as_str(), err.message.as_str()),
                (field, message),
                "{changes:?}"
            );
        }
        let standalone = Config {
            cluster: None,
            ..config
        };
        assert_eq!(
            cluster_settings(&settings(&[]), &standalone)
                .unwrap_err()
                .field,
            "cluster"
        );
    }
}
