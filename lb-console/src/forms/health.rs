//! A service's health check form: the check and its timing, into the
//! CLI's `SetService` with the rest of the service kept.
use lb_common::api::{Change, Check, Config, HealthSpec, ServiceConfig, Timing};

use super::{FieldError, Form, bad, current};

/// The health check's fields, in the order the form shows them (the
/// field a refusal of the check's own rules names comes from here).
pub const HEALTH_FIELDS: [&str; 10] = [
    "kind",
    "path",
    "expect_status",
    "body_contains",
    "host",
    "verify_certificate",
    "interval_ms",
    "timeout_ms",
    "rise",
    "fall",
];

/// A whole number in `field`; empty: `default` (as in the file).
fn number<T: std::str::FromStr + ToString>(
    form: &Form,
    field: &'static str,
    default: T,
    what: &str,
) -> Result<T, FieldError> {
    let text = form.get(field);
    if text.is_empty() {
        return Ok(default);
    }
    text.parse()
        .map_err(|_| bad(field, format!("{text:?} is not {what}.")))
}

/// `service` and the health check's fields: `kind` (`none`, `tcp`,
/// `http`, `https`, `icmp`); for `http` and `https` `path` (empty: `/`),
/// `expect_status` (empty: 200), `body_contains` and `host` (empty: none);
/// for `https` `verify_certificate` (a checkbox: `yes` when ticked); and
/// the timing, `interval_ms`, `timeout_ms`, `rise`, `fall` (empty: the
/// defaults). Kind `none` removes the service's check (its timing is not
/// read); the fields of another kind are not read either. The service's
/// other settings are kept as `config` (the daemon's) holds them, its
/// backends too.
pub fn set_health(form: &Form, config: &Config) -> Result<Change, FieldError> {
    let current = current(form, config)?;
    let optional = |field: &str| match form.get(field) {
        "" => None,
        text => Some(text.to_owned()),
    };
    let http = |tls: bool| -> Result<Check, FieldError> {
        let path = optional("path").unwrap_or_else(|| "/".to_owned());
        let expect_status = number(
            form,
            "expect_status",
            200u16,
            "an HTTP status (a whole number from 100 to 599)",
        )?;
        let (body_contains, host) = (optional("body_contains"), optional("host"));
        Ok(if tls {
            let verify_certificate = match form.get("verify_certificate") {
                "" | "no" => false,
                "yes" => true,
                other => {
                    return Err(bad(
                        "verify_certificate",
                        format!("{other:?} is neither yes nor no."),
                    ));
                }
            };
            Check::Https {
                path,
                expect_status,
                body_contains,
                host,
                verify_certificate,
            }
        } else {
            Check::Http {
                path,
                expect_status,
                body_contains,
                host,
            }
        })
    };
    let check = match form.get("kind") {
        "none" => None,
        "tcp" => Some(Check::Tcp),
        "icmp" => Some(Check::Icmp),
        "http" => Some(http(false)?),
        "https" => Some(http(true)?),
        other => {
            return Err(bad(
                "kind",
                format!("{other:?} is not a kind of check (none, tcp, http, https or icmp)."),
            ));
        }
    };
    let health = match check {
        None => None,
        Some(check) => {
            let defaults = Timing::default();
            let timing = Timing {
                interval_ms: number(
                    form,
                    "interval_ms",
                    defaults.interval_ms,
                    "a number of milliseconds",
                )?,
                timeout_ms: number(
                    form,
                    "timeout_ms",
                    defaults.timeout_ms,
                    "a number of milliseconds",
                )?,
                rise: number(
                    form,
                    "rise",
                    defaults.rise,
                    "a count: a whole number, 1 or more",
                )?,
                fall: number(
                    form,
                    "fall",
                    defaults.fall,
                    "a count: a whole number, 1 or more",
                )?,
            };
            let spec = HealthSpec { check, timing };
            // The check's own rules, by the field they name first.
            if let Err(err) = spec.validate() {
                let field = HEALTH_FIELDS
                    .into_iter()
                    .find(|f| err.0.split(' ').next() == Some(*f))
                    .unwrap_or("kind");
                return Err(bad(field, format!("{}.", err.0)));
            }
            Some(spec)
        }
    };
    Ok(Change::SetService {
        service: ServiceConfig {
            health,
            backends: Vec::new(),
            ..current.clone()
        },
    })
}

/// A health check as one line of words (the audit trail's and the CLI's
/// spelling of its TOML fields): `http path "/healthz" expect_status 200
/// interval_ms 2000 timeout_ms 1000 rise 2 fall 3`; `none` without one.
pub fn describe_health(health: Option<&HealthSpec>) -> String {
    let Some(spec) = health else {
        return "none".to_owned();
    };
    let mut words = vec![spec.check.kind().to_owned()];
    match &spec.check {
        Check::None | Check::Tcp | Check::Icmp => {}
        Check::Http {
            path,
            expect_status,
            body_contains,
            host,
        }
        | Check::Https {
            path,
            expect_status,
            body_contains,
            host,
            ..
        } => {
            words.push(format!("path {path:?} expect_status {expect_status}"));
            if let Some(body) = body_contains {
                words.push(format!("body_contains {body:?}"));
            }
            if let Some(host) = host {
                words.push(format!("host {host:?}"));
            }
        }
    }
    if let Check::Https {
        verify_certificate, ..
    } = &spec.check
    {
        words.push(format!("verify_certificate {verify_certificate}"));
    }
    let t = spec.timing;
    words.push(format!(
        "interval_ms {} timeout_ms {} rise {} fall {}",
        t.interval_ms, t.timeout_ms, t.rise, t.fall
    ));
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::super::{describe, tests::form};
    use super::*;

    fn health_config() -> Config {
        toml::from_str(
            "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n[[services]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\n\
             protocol = \"tcp\"\nmode = \"dsr\"\nsorry = \"198.18.1.99:80\"\n\
             health = { kind = \"tcp\", interval_ms = 300, timeout_ms = 300, rise = 2, fall = 2 }\n\
             [[services.backends]]\naddress = \"198.18.1.11:80\"\n",
        )
        .unwrap()
    }

    const HEALTH: &str = "service=tcp%2F198.18.0.100%3A80";

    #[test]
    fn a_health_check_change_keeps_the_rest_of_the_service() {
        let config = health_config();
        let Change::SetService { service } = set_health(
            &form(&format!(
                "{HEALTH}&kind=https&path=%2Fhealthz%3Fdeep%3D1&expect_status=204&body_contains=ok\
                 &host=www.example.com&verify_certificate=yes&interval_ms=500&timeout_ms=400&rise=1&fall=4"
            )),
            &config,
        )
        .unwrap() else {
            panic!("not a SetService");
        };
        let current = &config.services[0];
        assert_eq!(
            (&service.name, service.mode, service.sorry),
            (&current.name, current.mode, current.sorry)
        );
        assert!(service.backends.is_empty(), "the daemon keeps them");
        assert_eq!(
            service.health,
            Some(HealthSpec {
                check: Check::Https {
                    path: "/healthz?deep=1".into(),
                    expect_status: 204,
                    body_contains: Some("ok".into()),
                    host: Some("www.example.com".into()),
                    verify_certificate: true,
                },
                timing: Timing {
                    interval_ms: 500,
                    timeout_ms: 400,
                    rise: 1,
                    fall: 4
                },
            })
        );
        let change = Change::SetService { service };
        assert_eq!(
            describe(&change),
            (
                "service set",
                "tcp/198.18.0.100:80 sorry 198.18.1.99:80 health https path \"/healthz?deep=1\" \
                 expect_status 204 body_contains \"ok\" host \"www.example.com\" verify_certificate true \
                 interval_ms 500 timeout_ms 400 rise 1 fall 4"
                    .to_owned()
            )
        );
        // HTTP: empty fields take the file's defaults; another kind's
        // fields (verify_certificate) are not read.
        let Change::SetService { service } = set_health(
            &form(&format!(
                "{HEALTH}&kind=http&path=&expect_status=&body_contains=&host=&verify_certificate=maybe\
                 &interval_ms=&timeout_ms=&rise=&fall="
            )),
            &config,
        )
        .unwrap() else {
            panic!("not a SetService");
        };
        assert_eq!(
            service.health,
            Some(HealthSpec {
                check: Check::Http {
                    path: "/".into(),
                    expect_status: 200,
                    body_contains: None,
                    host: None,
                },
                timing: Timing::default(),
            })
        );
        // TCP ignores the HTTP fields; none removes the check.
        let Change::SetService { service } = set_health(
            &form(&format!(
                "{HEALTH}&kind=tcp&path=nope&expect_status=x&interval_ms=1000&timeout_ms=200&rise=3&fall=3"
            )),
            &config,
        )
        .unwrap() else {
            panic!("not a SetService");
        };
        assert_eq!(
            service.health.as_ref().map(|h| (&h.check, h.timing)),
            Some((
                &Check::Tcp,
                Timing {
                    interval_ms: 1000,
                    timeout_ms: 200,
                    rise: 3,
                    fall: 3
                }
            ))
        );
        let change =
            set_health(&form(&format!("{HEALTH}&kind=none&interval_ms=x")), &config).unwrap();
        let Change::SetService { service } = &change else {
            panic!("not a SetService");
        };
        assert_eq!(service.health, None);
        assert_eq!(
            describe(&change).1,
            "tcp/198.18.0.100:80 sorry 198.18.1.99:80 health none"
        );
    }

    #[test]
    fn a_health_field_that_cannot_be_used_is_named_with_why() {
        let config = health_config();
        let timing = "interval_ms=1000&timeout_ms=500&rise=2&fall=3";
        for (fields, field, message) in [
            (
                format!("kind=smtp&{timing}"),
                "kind",
                "\"smtp\" is not a kind of check (none, tcp, http, https or icmp).",
            ),
            (
                format!("kind=http&path=healthz&{timing}"),
                "path",
                "path \"healthz\" must start with '/'.",
            ),
            (
                format!("kind=http&expect_status=abc&{timing}"),
                "expect_status",
                "\"abc\" is not an HTTP status (a whole number from 100 to 599).",
            ),
            (
                format!("kind=http&expect_status=700&{timing}"),
                "expect_status",
                "expect_status is 700; it must be an HTTP status, from 100 to 599.",
            ),
            (
                format!("kind=https&host=a+b&{timing}"),
                "host",
                "host \"a b\" is not a valid host name.",
            ),
            (
                format!("kind=https&verify_certificate=maybe&{timing}"),
                "verify_certificate",
                "\"maybe\" is neither yes nor no.",
            ),
            (
                "kind=tcp&interval_ms=-5&timeout_ms=500&rise=2&fall=3".to_owned(),
                "interval_ms",
                "\"-5\" is not a number of milliseconds.",
            ),
            (
                "kind=tcp&interval_ms=50&timeout_ms=50&rise=2&fall=3".to_owned(),
                "interval_ms",
                "interval_ms is 50; it must be at least 100.",
            ),
            (
                "kind=tcp&interval_ms=1000&timeout_ms=2000&rise=2&fall=3".to_owned(),
                "timeout_ms",
                "timeout_ms is 2000; it must not be more than interval_ms (1000).",
            ),
            (
                "kind=icmp&interval_ms=1000&timeout_ms=500&rise=0&fall=3".to_owned(),
                "rise",
                "rise is 0; it must be at least 1.",
            ),
            (
                "kind=icmp&interval_ms=1000&timeout_ms=500&rise=1&fall=many".to_owned(),
                "fall",
                "\"many\" is not a count: a whole number, 1 or more.",
            ),
        ] {
            let err = set_health(&form(&format!("{HEALTH}&{fields}")), &config).unwrap_err();
            assert_eq!(
                (err.field, err.message.as_str()),
                (field, message),
                "{fields}"
            );
        }
        let err =
            set_health(&form("service=tcp%2F198.18.0.101%3A80&kind=tcp"), &config).unwrap_err();
        assert_eq!(
            (err.field, err.message.as_str()),
            (
                "service",
                "There is no service tcp/198.18.0.101:80 (any more)."
            )
        );
    }
}
