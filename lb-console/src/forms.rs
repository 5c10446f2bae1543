//! The LB settings' forms read into the daemon's [`Change`]s: pure, no
//! I/O. A field that cannot be read is refused here with its name and why
//! (the page shows the message next to it, with what the operator typed);
//! what only the daemon can judge (a duplicate, a weight above its limit, a
//! standby's refusal) is its refusal, shown the same way.
use std::net::{IpAddr, SocketAddr};

use lb_common::api::{
    BackendConfig, BackendState, Change, Check, Config, HealthSpec, Mode, Protocol, ServiceConfig,
    ServiceRef, Timing,
};

/// A form as the browser sent it (URL-encoded), fields in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// Reads a URL-encoded body.
    pub fn parse(body: &[u8]) -> Option<Form> {
        serde_urlencoded::from_bytes(body).ok().map(Form)
    }

    /// The value of `name`, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// What the operator typed, to fill the form again (never the CSRF
    /// token, which the page writes itself).
    pub fn typed(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k != "csrf")
            .cloned()
            .collect()
    }

    /// What was typed as `field=value` words (the audit trail's detail of
    /// a form that could not be read).
    pub fn typed_text(&self) -> String {
        self.typed()
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A field that cannot be read: which, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

fn bad(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// The service a form is about (its hidden `service` field).
pub fn service(form: &Form) -> Result<ServiceRef, FieldError> {
    form.get("service")
        .parse()
        .map_err(|why| bad("service", why))
}

/// A backend's `address:port` in `field`.
fn address(form: &Form, field: &'static str) -> Result<SocketAddr, FieldError> {
    let text = form.get(field);
    if text.is_empty() {
        return Err(bad(
            field,
            "Enter the backend's address and port, e.g. 198.18.1.11:80 or [2001:db8:1::11]:80.",
        ));
    }
    text.parse().map_err(|_| {
        bad(
            field,
            format!("{text:?} is not an address and port (e.g. 198.18.1.11:80; IPv6 in brackets)."),
        )
    })
}

fn weight(form: &Form) -> Result<u32, FieldError> {
    let text = form.get("weight");
    text.parse().map_err(|_| {
        bad(
            "weight",
            format!("{text:?} is not a weight: a whole number, 0 or more."),
        )
    })
}

fn state(form: &Form) -> Result<BackendState, FieldError> {
    match form.get("state") {
        "enabled" => Ok(BackendState::Enabled),
        "drained" => Ok(BackendState::Drained),
        "disabled" => Ok(BackendState::Disabled),
        other => Err(bad(
            "state",
            format!("{other:?} is not a state (enabled, drained or disabled)."),
        )),
    }
}

/// `service`, `address`, `weight`, `state`: a new backend.
pub fn add_backend(form: &Form) -> Result<Change, FieldError> {
    Ok(Change::AddBackend {
        service: service(form)?,
        backend: BackendConfig {
            address: address(form, "address")?,
            weight: weight(form)?,
            state: state(form)?,
            health: None,
        },
    })
}

/// `service`, `address`, `weight`: a backend's new weight.
pub fn set_weight(form: &Form) -> Result<Change, FieldError> {
    Ok(Change::SetBackend {
        service: service(form)?,
        address: address(form, "address")?,
        weight: Some(weight(form)?),
        state: None,
    })
}

/// `service`, `address`, `state`: drain, enable or disable a backend.
pub fn set_state(form: &Form) -> Result<Change, FieldError> {
    Ok(Change::SetBackend {
        service: service(form)?,
        address: address(form, "address")?,
        weight: None,
        state: Some(state(form)?),
    })
}

/// `service`, `address`: removes a backend.
pub fn delete_backend(form: &Form) -> Result<Change, FieldError> {
    Ok(Change::DelBackend {
        service: service(form)?,
        address: address(form, "address")?,
    })
}

/// `name`, `protocol`, `vip`, `port`, `mode`, `sorry`: a new service
/// without backends.
pub fn add_service(form: &Form) -> Result<Change, FieldError> {
    let name = match form.get("name") {
        "" => None,
        name => Some(name.to_owned()),
    };
    let protocol = match form.get("protocol") {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => {
            return Err(bad(
                "protocol",
                format!("{other:?} is not a protocol (tcp or udp)."),
            ));
        }
    };
    let vip_text = form.get("vip");
    let vip: IpAddr = vip_text.parse().map_err(|_| {
        bad(
            "vip",
            if vip_text.is_empty() {
                "Enter the virtual IP address, e.g. 198.18.0.100 or 2001:db8::100.".to_owned()
            } else {
                format!("{vip_text:?} is not an IP address (e.g. 198.18.0.100 or 2001:db8::100).")
            },
        )
    })?;
    let port_text = form.get("port");
    let port: u16 = match port_text.parse() {
        Ok(port) if port > 0 => port,
        _ => {
            return Err(bad(
                "port",
                format!("{port_text:?} is not a port: a whole number from 1 to 65535."),
            ));
        }
    };
    let mode = match form.get("mode") {
        "nat" => Mode::Nat,
        "dsr" => Mode::Dsr,
        other => {
            return Err(bad(
                "mode",
                format!("{other:?} is not a mode (nat or dsr)."),
            ));
        }
    };
    let sorry = match form.get("sorry") {
        "" => None,
        _ => Some(address(form, "sorry")?),
    };
    Ok(Change::AddService {
        service: ServiceConfig {
            name,
            vip,
            port,
            protocol,
            mode,
            sorry,
            health: None,
            backends: Vec::new(),
        },
    })
}

/// `service`, `sorry` (empty: none): a service's sorry server, its other
/// settings as `config` (the daemon's) holds them, its backends kept.
pub fn set_sorry(form: &Form, config: &Config) -> Result<Change, FieldError> {
    let current = current(form, config)?;
    let sorry = match form.get("sorry") {
        "" => None,
        _ => Some(address(form, "sorry")?),
    };
    Ok(Change::SetService {
        service: ServiceConfig {
            sorry,
            backends: Vec::new(),
            ..current.clone()
        },
    })
}

/// The service `form` names, as `config` (the daemon's) holds it.
fn current<'a>(form: &Form, config: &'a Config) -> Result<&'a ServiceConfig, FieldError> {
    let name = service(form)?;
    config
        .services
        .iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| bad("service", format!("There is no service {name} (any more).")))
}

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

/// `service`: removes a service with its backends.
pub fn delete_service(form: &Form) -> Result<Change, FieldError> {
    Ok(Change::DelService {
        service: service(form)?,
    })
}

/// What a change is, for the audit trail and the page: an action and its
/// arguments, as the CLI would write them.
pub fn describe(change: &Change) -> (&'static str, String) {
    fn state(s: BackendState) -> &'static str {
        match s {
            BackendState::Enabled => "enabled",
            BackendState::Drained => "drained",
            BackendState::Disabled => "disabled",
        }
    }
    match change {
        Change::AddService { service } => {
            let mut detail = format!("{} mode {:?}", service.name(), service.mode).to_lowercase();
            if let Some(sorry) = service.sorry {
                detail.push_str(&format!(" sorry {sorry}"));
            }
            if let Some(name) = &service.name {
                detail.push_str(&format!(" name {name:?}"));
            }
            ("service add", detail)
        }
        Change::SetService { service } => (
            "service set",
            format!(
                "{} sorry {} health {}",
                service.name(),
                service
                    .sorry
                    .map_or_else(|| "none".to_owned(), |sorry| sorry.to_string()),
                describe_health(service.health.as_ref())
            ),
        ),
        Change::DelService { service } => ("service delete", service.to_string()),
        Change::AddBackend { service, backend } => (
            "backend add",
            format!(
                "{service} {} weight {} {}",
                backend.address,
                backend.weight,
                state(backend.state)
            ),
        ),
        Change::DelBackend { service, address } => {
            ("backend delete", format!("{service} {address}"))
        }
        Change::SetBackend {
            service,
            address,
            weight,
            state: new_state,
        } => {
            let mut detail = format!("{service} {address}");
            if let Some(weight) = weight {
                detail.push_str(&format!(" weight {weight}"));
            }
            if let Some(s) = new_state {
                detail.push_str(&format!(" {}", state(*s)));
            }
            ("backend set", detail)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Form {
        Form::parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_backend_form_becomes_the_change_the_cli_would_send() {
        let change = add_backend(&form(
            "csrf=x&service=tcp%2F198.18.0.100%3A80&address=+198.18.1.11%3A80&weight=3&state=drained",
        ))
        .unwrap();
        assert_eq!(
            serde_json::to_string(&change).unwrap(),
            r#"{"op":"add_backend","service":{"protocol":"tcp","vip":"198.18.0.100:80"},"backend":{"address":"198.18.1.11:80","weight":3,"state":"drained"}}"#
        );
        assert_eq!(
            describe(&change),
            (
                "backend add",
                "tcp/198.18.0.100:80 198.18.1.11:80 weight 3 drained".to_owned()
            )
        );
        let change = set_state(&form(
            "service=udp%2F%5B2001%3Adb8%3A%3A100%5D%3A53&address=%5B2001%3Adb8%3A1%3A%3A11%5D%3A53&state=enabled",
        ))
        .unwrap();
        assert_eq!(
            describe(&change).1,
            "udp/[2001:db8::100]:53 [2001:db8:1::11]:53 enabled"
        );
    }

    #[test]
    fn a_field_that_cannot_be_read_is_named_with_why() {
        let svc = "service=tcp%2F198.18.0.100%3A80";
        for (body, field, says) in [
            (
                "address=198.18.1.11%3A80&weight=1&state=enabled",
                "service",
                "PROTOCOL/VIP:PORT",
            ),
            (
                &format!("{svc}&address=&weight=1&state=enabled")[..],
                "address",
                "Enter the backend's address",
            ),
            (
                &format!("{svc}&address=198.18.1.11&weight=1&state=enabled")[..],
                "address",
                "is not an address and port",
            ),
            (
                &format!("{svc}&address=198.18.1.11%3A80&weight=-1&state=enabled")[..],
                "weight",
                "\"-1\" is not a weight",
            ),
            (
                &format!("{svc}&address=198.18.1.11%3A80&weight=1&state=on")[..],
                "state",
                "\"on\" is not a state",
            ),
        ] {
            let err = add_backend(&form(body)).unwrap_err();
            assert_eq!(err.field, field, "{body}");
            assert!(err.message.contains(says), "{body}: {}", err.message);
        }
        for (body, field) in [
            (
                "protocol=sctp&vip=198.18.0.100&port=80&mode=nat",
                "protocol",
            ),
            ("protocol=tcp&vip=198.18.0&port=80&mode=nat", "vip"),
            ("protocol=tcp&vip=198.18.0.100&port=0&mode=nat", "port"),
            ("protocol=tcp&vip=198.18.0.100&port=80&mode=tunnel", "mode"),
            (
                "protocol=tcp&vip=198.18.0.100&port=80&mode=nat&sorry=x",
                "sorry",
            ),
        ] {
            assert_eq!(add_service(&form(body)).unwrap_err().field, field, "{body}");
        }
        let change = add_service(&form(
            "name=web&protocol=tcp&vip=198.18.0.100&port=80&mode=dsr&sorry=198.18.1.99%3A80",
        ))
        .unwrap();
        assert_eq!(
            describe(&change).1,
            "tcp/198.18.0.100:80 mode dsr sorry 198.18.1.99:80 name \"web\""
        );
    }

    #[test]
    fn a_sorry_server_change_keeps_the_rest_of_the_service() {
        let config: Config = toml::from_str(
            "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n[[services]]\nname = \"web\"\nvip = \"198.18.0.100\"\nport = 80\n\
             protocol = \"tcp\"\nmode = \"dsr\"\nsorry = \"198.18.1.99:80\"\n\
             health = { kind = \"tcp\", interval_ms = 300, timeout_ms = 300, rise = 2, fall = 2 }\n\
             [[services.backends]]\naddress = \"198.18.1.11:80\"\n",
        )
        .unwrap();
        let Change::SetService { service } =
            set_sorry(&form("service=tcp%2F198.18.0.100%3A80&sorry="), &config).unwrap()
        else {
            panic!("not a SetService");
        };
        let current = &config.services[0];
        assert_eq!(service.sorry, None);
        assert_eq!(
            (&service.name, service.mode, &service.health),
            (&current.name, current.mode, &current.health)
        );
        assert!(service.backends.is_empty(), "the daemon keeps them");
        let err = set_sorry(&form("service=tcp%2F198.18.0.100%3A80&sorry=x"), &config).unwrap_err();
        assert_eq!(err.field, "sorry");
        let err = set_sorry(&form("service=tcp%2F198.18.0.101%3A80&sorry="), &config).unwrap_err();
        assert_eq!(
            (err.field, err.message.as_str()),
            (
                "service",
                "There is no service tcp/198.18.0.101:80 (any more)."
            )
        );
    }

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

    #[test]
    fn what_was_typed_is_kept_but_the_token() {
        assert_eq!(
            form("csrf=t&weight=abc").typed(),
            [("weight".to_owned(), "abc".to_owned())]
        );
    }
}
