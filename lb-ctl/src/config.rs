//! The node configuration: a TOML file, read and validated as a whole, and
//! written back atomically (temporary file, fsync, rename; the previous file
//! kept as `FILE.bak`) with a generation number on every change.
//!
//! Errors say where: file, line and column, for syntax errors and for
//! semantic ones (a backend of the wrong address family, a DSR backend on
//! another port...), which are located through the document's spans.
use std::{
    fmt,
    fs::{self, File},
    io::Write as _,
    path::{Path, PathBuf},
};

use crate::{
    balancer::{BackendSpec, Balancer, ServiceSpec, SpecError},
    cluster::config::{ClusterRules as _, Seg},
};

// The file's types are the API's (`GET`/`PUT /v1/config` carry the same
// `Config`): plain data in `lb_common::api`. What reads, checks and writes
// the file is here ([`ConfigFile`]).
pub use lb_common::api::{
    BackendConfig, ServiceConfig,
    config::{
        Config, LogFormat, Node, XdpMode, default_alert_log, default_api_socket, default_bpffs_dir,
    },
};

/// Where a problem is in the document: `services[2].backends[0]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub service: Option<usize>,
    pub backend: Option<usize>,
    pub field: Option<&'static str>,
    /// Any other key, from the document's root (`cluster.servers[1]`);
    /// used when not empty.
    pub path: Vec<Seg>,
}

impl Location {
    /// The key as written from the document's root, for an API answer:
    /// `cluster.monitors[1].interval_ms`, `services[2].backends[0]`,
    /// `node.interfaces`; None when the problem is about the whole.
    pub fn key(&self) -> Option<String> {
        if !self.path.is_empty() {
            let mut key = String::new();
            for seg in &self.path {
                match seg {
                    Seg::Key(name) => push_key(&mut key, name),
                    Seg::Name(name) => push_key(&mut key, name),
                    Seg::Index(i) => key.push_str(&format!("[{i}]")),
                }
            }
            return Some(key);
        }
        match (self.service, self.backend) {
            (Some(i), Some(j)) => Some(format!("services[{i}].backends[{j}]")),
            (Some(i), None) => Some(format!("services[{i}]")),
            (None, _) => self.field.map(|field| format!("node.{field}")),
        }
    }
}

fn push_key(key: &mut String, name: &str) {
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(name);
}

/// A configuration that cannot be used. `line` and `column` are 1-based;
/// both 0 when the problem has no place in a file (an API request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), 0) => write!(f, "{}: {}", file.display(), self.message),
            (Some(file), line) => write!(
                f,
                "{}:{}:{}: {}",
                file.display(),
                line,
                self.column,
                self.message
            ),
            (None, 0) => f.write_str(&self.message),
            (None, line) => write!(f, "line {line}, column {}: {}", self.column, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// An error about a `[node]` setting of the file at `path`, found by
    /// the daemon rather than by validation: placed at the field's key, or
    /// at `[node]` when the file does not set it.
    pub fn node_field(path: &Path, field: &'static str, message: String) -> ConfigError {
        let location = Location {
            field: Some(field),
            ..Location::default()
        };
        let (line, column) = fs::read_to_string(path)
            .ok()
            .and_then(|text| locate(&text, &location))
            .unwrap_or((0, 0));
        ConfigError {
            file: Some(path.to_owned()),
            line,
            column,
            message,
        }
    }
}

/// What the daemon does with a [`Config`]: read and check its file, check
/// it as a whole (the balancer's rules, the cluster's), write it back.
pub trait ConfigFile: Sized {
    /// Reads and validates a configuration file.
    fn load(path: &Path) -> Result<Self, ConfigError>;
    /// Parses and validates configuration text.
    fn parse(text: &str) -> Result<Self, ConfigError>;
    /// Checks everything the types do not: node settings, health timings,
    /// the cluster, and what the balancer would refuse. On error, says where.
    fn validate(&self) -> Result<(), (Location, String)>;
    /// What the balancer is given: every backend with its configured state.
    /// (The daemon overlays health: a backend that is down is disabled.)
    fn specs(&self) -> Vec<ServiceSpec>;
    /// Writes the configuration atomically: a temporary file beside it,
    /// fsync, the previous file kept as `FILE.bak`, rename, fsync of the
    /// directory. A crash at any point leaves a file that loads (the old one
    /// or the new one).
    fn save(&self, path: &Path) -> std::io::Result<()>;
    /// The TOML text, with a header saying who writes it.
    fn to_toml(&self) -> String;
}

impl ConfigFile for Config {
    fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = fs::read_to_string(path).map_err(|err| ConfigError {
            file: Some(path.to_owned()),
            line: 0,
            column: 0,
            message: format!("cannot read the configuration: {err}"),
        })?;
        Config::parse(&text).map_err(|mut err| {
            err.file = Some(path.to_owned());
            err
        })
    }

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|err| {
            let (line, column) = err
                .span()
                .map(|span| line_column(text, span.start))
                .unwrap_or((0, 0));
            ConfigError {
                file: None,
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        config.validate().map_err(|(location, message)| {
            let (line, column) = locate(text, &location).unwrap_or((0, 0));
            ConfigError {
                file: None,
                line,
                column,
                message,
            }
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), (Location, String)> {
        let node = |field| Location {
            field: Some(field),
            ..Location::default()
        };
        if self.node.name.trim().is_empty() {
            return Err((node("name"), "node.name must not be empty".into()));
        }
        if self.node.interfaces.is_empty() {
            return Err((
                node("interfaces"),
                "node.interfaces must name at least one interface".into(),
            ));
        }
        for iface in &self.node.interfaces {
            if iface.is_empty() || iface.len() > 15 || iface.contains(['/', ' ', '\0']) {
                return Err((
                    node("interfaces"),
                    format!("node.interfaces: {iface:?} is not a valid interface name"),
                ));
            }
        }
        for (i, service) in self.services.iter().enumerate() {
            let at = Location {
                service: Some(i),
                ..Location::default()
            };
            if let Some(health) = &service.health {
                health.validate().map_err(|e| {
                    (
                        at.clone(),
                        format!("service {}: health: {e}", service.name()),
                    )
                })?;
            }
            for (j, backend) in service.backends.iter().enumerate() {
                if let Some(health) = &backend.health {
                    health.validate().map_err(|e| {
                        (
                            Location {
                                service: Some(i),
                                backend: Some(j),
                                ..Location::default()
                            },
                            format!(
                                "service {}: backend {}: health: {e}",
                                service.name(),
                                backend.address
                            ),
                        )
                    })?;
                }
            }
        }
        if let Some(cluster) = &self.cluster {
            cluster
                .validate(&self.node.name, &self.node.interfaces)
                .map_err(|err| {
                    (
                        Location {
                            path: err.path,
                            ..Location::default()
                        },
                        err.message,
                    )
                })?;
        }
        Balancer::new()
            .plan(&self.specs())
            .map(|_| ())
            .map_err(|err| (locate_spec_error(self, &err), err.to_string()))
    }

    fn specs(&self) -> Vec<ServiceSpec> {
        self.services.iter().map(ServiceSpec::from).collect()
    }

    fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = self.to_toml();
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .ok_or_else(|| std::io::Error::other(format!("{} is not a file path", path.display())))?
            .to_string_lossy()
            .into_owned();
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        if path.exists() {
            // A hard link keeps the previous version whole while the new one
            // takes its name.
            let backup = dir.join(format!("{name}.bak"));
            let _ = fs::remove_file(&backup);
            fs::hard_link(path, &backup)?;
        }
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    }

    fn to_toml(&self) -> String {
        let body = toml::to_string_pretty(self).expect("a configuration always serializes");
        format!(
            "# lb node configuration. lb-ctl rewrites this file on every change\n\
             # (generation {}); the previous version is kept as .bak.\n\n{body}",
            self.generation
        )
    }
}

/// Where a balancer's error is in the document.
fn locate_spec_error(config: &Config, err: &SpecError) -> Location {
    let (service, backend) = match err {
        SpecError::DuplicateService(s) => (Some(*s), None),
        SpecError::DuplicateBackend { service, backend }
        | SpecError::WeightTooLarge {
            service, backend, ..
        } => (Some(*service), Some(*backend)),
        SpecError::FamilyMismatch { service, addr, .. }
        | SpecError::DsrPortChange { service, addr, .. }
        | SpecError::BadAddress { service, addr, .. } => (Some(*service), Some(*addr)),
        SpecError::Maglev { service, .. } => (Some(*service), None),
        SpecError::TooManyServices { .. } | SpecError::TooManyBackends { .. } => (None, None),
    };
    let Some(service) = service else {
        return Location::default();
    };
    // The last service of that name (a duplicate is the second one).
    let Some(i) = config.services.iter().rposition(|s| s.name() == service) else {
        return Location::default();
    };
    let j = backend.and_then(|addr| {
        config.services[i]
            .backends
            .iter()
            .rposition(|b| b.address == addr)
    });
    Location {
        service: Some(i),
        backend: j,
        ..Location::default()
    }
}

/// What the balancer is given of a service: its backends with their
/// configured state.
impl From<&ServiceConfig> for ServiceSpec {
    fn from(service: &ServiceConfig) -> ServiceSpec {
        ServiceSpec {
            vip: service.vip,
            port: service.port,
            protocol: service.protocol,
            mode: service.mode,
            backends: service
                .backends
                .iter()
                .map(|b| BackendSpec {
                    addr: b.address,
                    weight: b.weight,
                    state: b.state,
                })
                .collect(),
            sorry: service.sorry,
        }
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Where a location's table (or field) starts in the document.
fn locate(text: &str, location: &Location) -> Option<(usize, usize)> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    if !location.path.is_empty() {
        return locate_path(&doc, &location.path).map(|offset| line_column(text, offset));
    }
    let span = match (location.service, location.backend) {
        (Some(i), backend) => {
            let services = doc.get("services")?.as_array_of_tables()?;
            let service = services.get(i)?;
            match backend {
                Some(j) => {
                    let backends = service.get("backends")?.as_array_of_tables()?;
                    backends.get(j)?.span()?
                }
                None => service.span()?,
            }
        }
        (None, _) => {
            let node = doc.get("node")?.as_table()?;
            match location.field.and_then(|f| node.key(f)) {
                Some(key) => key.span()?,
                None => node.span()?,
            }
        }
    };
    Some(line_column(text, span.start))
}

/// The start of the deepest key of `path` the document has (a missing key
/// is reported where the table that should hold it starts).
pub(crate) fn locate_path(doc: &toml_edit::ImDocument<&str>, path: &[Seg]) -> Option<usize> {
    use toml_edit::{Item, Value};
    #[derive(Clone, Copy)]
    enum At<'a> {
        Item(&'a Item),
        Table(&'a toml_edit::Table),
    }
    let mut at = At::Table(doc.as_table());
    let mut best = None;
    for seg in path {
        let name = match seg {
            Seg::Key(key) => Some(*key),
            Seg::Name(name) => Some(name.as_str()),
            Seg::Index(_) => None,
        };
        let entry = match (name, seg, at) {
            (Some(key), _, At::Table(table)) => table.get_key_value(key),
            (Some(key), _, At::Item(item)) => {
                item.as_table_like().and_then(|t| t.get_key_value(key))
            }
            (None, Seg::Index(i), At::Item(Item::ArrayOfTables(tables))) => {
                let Some(table) = tables.get(*i) else { break };
                best = table.span().map(|s| s.start).or(best);
                at = At::Table(table);
                continue;
            }
            (None, Seg::Index(i), At::Item(Item::Value(Value::Array(values)))) => {
                best = values
                    .get(*i)
                    .and_then(|v| v.span())
                    .map(|s| s.start)
                    .or(best);
                break;
            }
            _ => None,
        };
        let Some((key, item)) = entry else { break };
        best = key.span().map(|s| s.start).or(best);
        at = At::Item(item);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balancer::{BackendState, Mode};

    const GOOD: &str = r#"
[node]
name = "lb1"
interfaces = ["ext0", "int0"]

[[services]]
vip = "198.18.0.100"
port = 80
protocol = "tcp"

[[services.backends]]
address = "198.18.1.11:80"

[[services.backends]]
address = "198.18.1.12:80"
weight = 2
state = "drained"

[[services]]
vip = "2001:db8::100"
port = 80
protocol = "tcp"
mode = "dsr"

[[services.backends]]
address = "[2001:db8:1::11]:80"
"#;

    #[test]
    fn a_good_file_loads_with_defaults() {
        let config = Config::parse(GOOD).unwrap();
        assert_eq!(config.generation, 0);
        assert_eq!(config.node.api_socket, default_api_socket());
        assert_eq!(config.node.xdp_mode, XdpMode::Native);
        assert_eq!(config.services[0].mode, Mode::Nat);
        assert_eq!(config.services[0].backends[0].weight, 1);
        assert_eq!(config.services[0].backends[1].state, BackendState::Drained);
        assert_eq!(config.services[1].mode, Mode::Dsr);
    }

    #[test]
    fn the_documented_example_is_valid() {
        let config = Config::parse(include_str!("../../docs/lb.example.toml")).unwrap();
        assert_eq!(config.services.len(), 2);
        assert_eq!(config.node.metrics, Some("127.0.0.1:9650".parse().unwrap()));
    }

    #[test]
    fn written_text_reads_back_the_same() {
        let mut config = Config::parse(GOOD).unwrap();
        config.generation = 7;
        let text = config.to_toml();
        assert!(text.contains("generation 7"));
        assert_eq!(Config::parse(&text).unwrap(), config);
    }

    /// Each bad file with its exact error: line, column and message.
    #[test]
    fn bad_files_say_where_and_what() {
        let cases: &[(&str, &str)] = &[
            (
                "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\ncolour = 3\n",
                "line 4, column 1: unknown field `colour`, expected one of `name`, `interfaces`, `xdp_mode`, `api_socket`, `bpffs_dir`, `alert_log`, `metrics`, `log_format`, `detach_on_stop`, `allow_private_bpffs`",
            ),
            (
                "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n\n[[services]]\nvip = \"198.18.0.300\"\nport = 80\nprotocol = \"tcp\"\n",
                "line 6, column 7: invalid IP address syntax",
            ),
            (
                "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n\n[[services]]\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"sctp\"\n",
                "line 8, column 12: unknown variant `sctp`, expected `tcp` or `udp`",
            ),
            (
                "[node]\nname = \"lb1\"\ninterfaces = []\n",
                "line 3, column 1: node.interfaces must name at least one interface",
            ),
            (
                "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n\n[[services]]\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\nmode = \"dsr\"\n\n[[services.backends]]\naddress = \"198.18.1.11:80\"\n\n[[services.backends]]\naddress = \"198.18.1.12:8080\"\n",
                "line 14, column 1: service tcp/198.18.0.100:80: backend 198.18.1.12:8080 must use the VIP's port 80 in DSR mode (the packet is not rewritten)",
            ),
            (
                "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n\n[[services]]\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n\n[[services]]\nvip = \"198.18.0.100\"\nport = 80\nprotocol = \"tcp\"\n",
                "line 10, column 1: service tcp/198.18.0.100:80 is configured twice",
            ),
            (
                "[node\n",
                "line 1, column 6: invalid table header\nexpected `.`, `]`",
            ),
        ];
        for (text, want) in cases {
            let err = Config::parse(text).unwrap_err();
            assert_eq!(err.to_string(), *want, "for:\n{text}");
        }
    }

    #[test]
    fn cluster_errors_say_where_and_what() {
        let base = "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\n\n[cluster]\nid = \"00112233445566778899aabbccddeeff\"\nkey_file = \"/etc/lb/keys\"\nnp_targets = [\"198.18.0.254\", \"127.0.0.1\"]\n\n[[cluster.servers]]\nname = \"lb1\"\n[[cluster.servers]]\nname = \"lb2\"\n\n[[cluster.interconnects]]\nname = \"hb1\"\naddresses = [\"198.18.8.1\", \"198.18.8.2\"]\n";
        let err = Config::parse(base).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 8, column 31: cluster: 127.0.0.1 cannot be an NP target (it must be outside this node)"
        );
        let fixed = base.replace(", \"127.0.0.1\"", "");
        let config = Config::parse(&fixed).unwrap();
        assert_eq!(config.cluster.as_ref().unwrap().servers.len(), 2);
        let short = fixed.replace(
            "addresses = [\"198.18.8.1\", \"198.18.8.2\"]",
            "addresses = [\"198.18.8.1\"]",
        );
        assert_eq!(
            Config::parse(&short).unwrap_err().to_string(),
            "line 17, column 1: cluster: interconnect \"hb1\" needs one address per server (2), it has 1"
        );
        let stranger = fixed
            .replace("name = \"lb2\"", "name = \"lb3\"")
            .replace("name = \"lb1\"\n[[", "name = \"lb4\"\n[[");
        assert_eq!(
            Config::parse(&stranger).unwrap_err().to_string(),
            "line 10, column 11: cluster: this node (\"lb1\", node.name) is not among the servers (lb4, lb3)"
        );
    }

    #[test]
    fn locations_are_named_as_keys_from_the_root() {
        let at = |service, backend, field, path| Location {
            service,
            backend,
            field,
            path,
        };
        assert_eq!(
            at(
                None,
                None,
                None,
                vec![
                    Seg::Key("cluster"),
                    Seg::Key("monitors"),
                    Seg::Index(1),
                    Seg::Key("interval_ms")
                ]
            )
            .key()
            .as_deref(),
            Some("cluster.monitors[1].interval_ms")
        );
        assert_eq!(
            at(Some(2), Some(0), None, vec![]).key().as_deref(),
            Some("services[2].backends[0]")
        );
        assert_eq!(
            at(Some(2), None, None, vec![]).key().as_deref(),
            Some("services[2]")
        );
        assert_eq!(
            at(None, None, Some("interfaces"), vec![]).key().as_deref(),
            Some("node.interfaces")
        );
        assert_eq!(Location::default().key(), None);
    }

    #[test]
    fn errors_about_node_settings_point_at_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.toml");
        fs::write(
            &path,
            "[node]\nname = \"lb1\"\ninterfaces = [\"ext0\"]\nbpffs_dir = \"/sys/fs/bpf/x\"\n",
        )
        .unwrap();
        let err = ConfigError::node_field(&path, "bpffs_dir", "private".into());
        assert_eq!(err.to_string(), format!("{}:4:1: private", path.display()));
        // Not set: at [node].
        let err = ConfigError::node_field(&path, "allow_private_bpffs", "no".into());
        assert_eq!(err.to_string(), format!("{}:1:1: no", path.display()));
    }

    #[test]
    fn saving_keeps_the_previous_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.toml");
        let mut config = Config::parse(GOOD).unwrap();
        config.save(&path).unwrap();
        config.generation = 1;
        config.services.pop();
        config.save(&path).unwrap();
        let now = Config::load(&path).unwrap();
        let before = Config::load(&dir.path().join("lb.toml.bak")).unwrap();
        assert_eq!(now.generation, 1);
        assert_eq!(before.generation, 0);
        assert_eq!(before.services.len(), 2);
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    }

    /// A crash in the middle of saving (simulated at every step) leaves a
    /// file that loads: the old one or the new one.
    #[test]
    fn a_crash_while_saving_never_leaves_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lb.toml");
        let old = Config::parse(GOOD).unwrap();
        old.save(&path).unwrap();
        let mut new = old.clone();
        new.generation = 1;
        let text = new.to_toml();
        // The steps of `save`, stopped after each: a partial temporary file,
        // a complete one, the backup link made, the rename done.
        let tmp = dir.path().join(".lb.toml.tmp");
        for cut in [0, text.len() / 2, text.len()] {
            fs::write(&tmp, &text.as_bytes()[..cut]).unwrap();
            assert_eq!(Config::load(&path).unwrap(), old, "cut at {cut}");
        }
        let _ = fs::remove_file(dir.path().join("lb.toml.bak"));
        fs::hard_link(&path, dir.path().join("lb.toml.bak")).unwrap();
        assert_eq!(Config::load(&path).unwrap(), old);
        fs::rename(&tmp, &path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), new);
        // And the next save starts clean over a leftover temporary file.
        fs::write(&tmp, "garbage").unwrap();
        new.save(&path).unwrap();
        assert_eq!(Config::load(&path).unwrap(), new);
    }
}
