//! The console's forms read into the daemon's requests: pure, no I/O. A
//! field that cannot be read is refused here with its name and why (the
//! page shows the message next to it, with what the operator typed); what
//! only the daemon can judge (a duplicate, a weight above its limit, a
//! standby's refusal) is its refusal, shown the same way. This module: the
//! form itself and the LB settings' forms, each one [`Change`];
//! [`health`]: a service's health check; [`cluster`]: the cluster's
//! settings as a draft.
use std::net::{IpAddr, SocketAddr};

use lb_common::api::{
    BackendConfig, BackendState, Change, Config, Mode, Protocol, ServiceConfig, ServiceRef,
};

mod cluster;
mod health;

pub use cluster::{SettingsError, cluster_settings, describe_cluster};
pub use health::{HEALTH_FIELDS, describe_health, set_health};
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
pub(crate) fn current<'a>(
    form: &Form,
    config: &'a Config,
) -> Result<&'a ServiceConfig, FieldError> {
    let name = service(form)?;
    config
        .services
        .iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| bad("service", format!("There is no service {name} (any more).")))
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
pub(crate) mod tests {
    use super::*;

    pub(crate) fn form(body: &str) -> Form {
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

    #[test]
    fn what_was_typed_is_kept_but_the_token() {
        assert_eq!(
            form("csrf=t&weight=abc").typed(),
            [("weight".to_owned(), "abc".to_owned())]
        );
    }
}
