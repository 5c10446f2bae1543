//! `lb-ctl cluster init`: the appliance's "save and generate cluster" in one
//! step. From one plan (the setup parameter sheet: the `[cluster]` section,
//! each server's `[nodes.NAME]` settings and the LB settings) it validates
//! every node's whole configuration, then makes the cluster's id, its
//! heartbeat key and its TLS material (a cluster CA and a certificate per
//! server), and writes each server's files. Nothing is written unless all
//! of it is valid.
//!
//! Output, for servers lb1 and lb2:
//! ```text
//! OUT/lb1/lb.toml   OUT/lb1/cluster.keys   OUT/lb1/tls/{ca.pem,lb1.pem,lb1.key}
//! OUT/lb2/lb.toml   OUT/lb2/cluster.keys   OUT/lb2/tls/{ca.pem,lb2.pem,lb2.key}
//! ```
//! Each folder goes to its server: `lb.toml` where `lb-ctl run --config`
//! reads it, the key file and the TLS folder where `key_file` and `tls_dir`
//! say.
use std::{
    collections::BTreeMap,
    fs,
    io::Write as _,
    os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde::Deserialize;

use super::{
    config::{ClusterConfig, Seg},
    keys::{KeyFile, hex},
};
use crate::config::{
    Config, ConfigError, ConfigFile as _, Location, Node, ServiceConfig, line_column, locate_path,
};

/// The plan file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    cluster: ClusterConfig,
    /// Each server's `[node]` settings, without `name` (the key is the name).
    nodes: BTreeMap<String, toml::Table>,
    #[serde(default)]
    services: Vec<ServiceConfig>,
}

/// One file to write, relative to the output folder.
#[derive(Debug)]
pub struct OutFile {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    /// 0o600 for secrets, 0o644 otherwise.
    pub mode: u32,
}

/// Validates the plan and makes every file; `random` fills buffers with
/// secure random bytes.
pub fn generate(
    text: &str,
    random: &mut dyn FnMut(&mut [u8]),
) -> Result<Vec<OutFile>, ConfigError> {
    let plan: PlanFile = toml::from_str(text).map_err(|err| {
        let (line, column) = err
            .span()
            .map(|span| line_column(text, span.start))
            .unwrap_or((0, 0));
        error(line, column, err.message().trim().to_owned())
    })?;
    let located = |path: Vec<Seg>, message: String| {
        let (line, column) = toml_edit::ImDocument::parse(text)
            .ok()
            .and_then(|doc| locate_path(&doc, &path))
            .map(|offset| line_column(text, offset))
            .unwrap_or((0, 0));
        error(line, column, message)
    };
    let mut cluster = plan.cluster;
    if cluster.id.is_empty() {
        let mut id = [0u8; 16];
        random(&mut id);
        cluster.id = hex(&id);
    }
    // Every server has its node settings, and nothing else is there.
    for name in plan.nodes.keys() {
        if cluster.servers.iter().all(|s| &s.name != name) {
            return Err(located(
                vec![Seg::Key("nodes"), Seg::Name(name.clone())],
                format!("nodes.{name} is not one of cluster.servers"),
            ));
        }
    }
    let mut configs = Vec::new();
    for server in &cluster.servers {
        let name = &server.name;
        let Some(table) = plan.nodes.get(name) else {
            return Err(located(
                vec![Seg::Key("nodes")],
                format!("server {name:?} has no [nodes.{name}] settings"),
            ));
        };
        let mut table = table.clone();
        if table.contains_key("name") {
            return Err(located(
                vec![Seg::Key("nodes"), Seg::Name(name.clone()), Seg::Key("name")],
                format!("nodes.{name}: `name` comes from the table's key; leave it out"),
            ));
        }
        table.insert("name".into(), toml::Value::String(name.clone()));
        let node: Node = toml::Value::Table(table)
            .try_into()
            .map_err(|err: toml::de::Error| {
                located(
                    vec![Seg::Key("nodes"), Seg::Name(name.clone())],
                    format!("nodes.{name}: {}", err.message().trim()),
                )
            })?;
        let config = Config {
            generation: 0,
            node,
            services: plan.services.clone(),
            cluster: Some(cluster.clone()),
        };
        config.validate().map_err(|(location, message)| {
            located(
                plan_path(&location, name),
                format!("server {name}: {message}"),
            )
        })?;
        configs.push(config);
    }
    let keys = KeyFile::generate(random).to_toml();
    let tls = tls_material(&cluster, random).map_err(|e| error(0, 0, e))?;
    let mut files = Vec::new();
    for config in configs {
        let name = config.node.name.clone();
        let dir = PathBuf::from(&name);
        files.push(OutFile {
            path: dir.join("lb.toml"),
            contents: config.to_toml().into_bytes(),
            mode: 0o644,
        });
        files.push(OutFile {
            path: dir.join("cluster.keys"),
            contents: keys.clone().into_bytes(),
            mode: 0o600,
        });
        files.push(OutFile {
            path: dir.join("tls").join("ca.pem"),
            contents: tls.ca_pem.clone().into_bytes(),
            mode: 0o644,
        });
        let (cert, key) = &tls.nodes[&name];
        files.push(OutFile {
            path: dir.join("tls").join(format!("{name}.pem")),
            contents: cert.clone().into_bytes(),
            mode: 0o644,
        });
        files.push(OutFile {
            path: dir.join("tls").join(format!("{name}.key")),
            contents: key.clone().into_bytes(),
            mode: 0o600,
        });
    }
    Ok(files)
}

fn error(line: usize, column: usize, message: String) -> ConfigError {
    ConfigError {
        file: None,
        line,
        column,
        message,
    }
}

/// Where a node configuration's problem is in the plan.
fn plan_path(location: &Location, server: &str) -> Vec<Seg> {
    if !location.path.is_empty() {
        return location.path.clone();
    }
    match (location.service, location.backend, location.field) {
        (Some(i), Some(j), _) => vec![
            Seg::Key("services"),
            Seg::Index(i),
            Seg::Key("backends"),
            Seg::Index(j),
        ],
        (Some(i), None, _) => vec![Seg::Key("services"), Seg::Index(i)],
        (None, _, field) => {
            let mut path = vec![Seg::Key("nodes"), Seg::Name(server.to_owned())];
            path.extend(field.map(Seg::Key));
            path
        }
    }
}

struct Tls {
    ca_pem: String,
    /// Server name → (certificate PEM, key PEM).
    nodes: BTreeMap<String, (String, String)>,
}

/// A cluster CA, and for each server a certificate for its name and its
/// interconnect addresses, usable as TLS server and client (the replication
/// channel authenticates both ends).
fn tls_material(cluster: &ClusterConfig, random: &mut dyn FnMut(&mut [u8])) -> Result<Tls, String> {
    let fail = |what: &str, e: rcgen::Error| format!("generating the {what}: {e}");
    let ca_key = KeyPair::generate().map_err(|e| fail("CA key", e))?;
    let mut ca = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("lb cluster {} CA", cluster.id));
    ca.distinguished_name = dn;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.serial_number = Some(serial(random));
    validity(&mut ca);
    let ca_cert = ca
        .self_signed(&ca_key)
        .map_err(|e| fail("CA certificate", e))?;
    let mut nodes = BTreeMap::new();
    for (i, server) in cluster.servers.iter().enumerate() {
        let key = KeyPair::generate().map_err(|e| fail("node key", e))?;
        let mut params = CertificateParams::new(vec![server.name.clone()])
            .map_err(|e| fail("node certificate", e))?;
        for link in &cluster.interconnects {
            params
                .subject_alt_names
                .push(SanType::IpAddress(link.addresses[i]));
        }
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, server.name.clone());
        params.distinguished_name = dn;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.serial_number = Some(serial(random));
        validity(&mut params);
        let cert = params
            .signed_by(&key, &ca_cert, &ca_key)
            .map_err(|e| fail("node certificate", e))?;
        nodes.insert(server.name.clone(), (cert.pem(), key.serialize_pem()));
    }
    Ok(Tls {
        ca_pem: ca_cert.pem(),
        nodes,
    })
}

fn serial(random: &mut dyn FnMut(&mut [u8])) -> rcgen::SerialNumber {
    let mut serial = [0u8; 16];
    random(&mut serial);
    serial[0] &= 0x7f; // a positive DER INTEGER
    rcgen::SerialNumber::from_slice(&serial)
}

/// Ten years from a day ago: the pair's own CA, replaced by running init
/// again.
fn validity(params: &mut CertificateParams) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let day = std::time::Duration::from_secs(86_400);
    params.not_before = epoch + now.saturating_sub(day);
    params.not_after = epoch + now + day * 3650;
}

/// Writes the files under `out`. Refuses, writing nothing, when one exists
/// already (unless `force`). Secrets are created with mode 0600.
pub fn write(out: &Path, files: &[OutFile], force: bool) -> Result<(), String> {
    if !force && let Some(existing) = files.iter().map(|f| out.join(&f.path)).find(|p| p.exists()) {
        return Err(format!(
            "{} exists already; nothing was written (--force replaces the files)",
            existing.display()
        ));
    }
    for file in files {
        let path = out.join(&file.path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp-init");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(file.mode)
            .open(&tmp)
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.set_permissions(fs::Permissions::from_mode(file.mode))
            .and_then(|()| f.write_all(&file.contents))
            .and_then(|()| f.sync_all())
            .map_err(|e| format!("{}: {e}", tmp.display()))?;
        fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// Why `lb-ctl cluster init` failed.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The plan cannot be used (exit code 2).
    #[error("{0}")]
    Plan(ConfigError),
    /// Writing failed, or the files exist (exit code 1).
    #[error("{0}")]
    Write(String),
}

/// Reads the plan at `plan`, generates with the system's secure random
/// source and writes under `out`; returns the files written.
pub fn init(plan: &Path, out: &Path, force: bool) -> Result<Vec<PathBuf>, InitError> {
    let text = fs::read_to_string(plan).map_err(|err| {
        InitError::Plan(ConfigError {
            file: Some(plan.to_owned()),
            line: 0,
            column: 0,
            message: format!("cannot read the plan: {err}"),
        })
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let mut failed = false;
    let mut random = |buf: &mut [u8]| failed |= provider.secure_random.fill(buf).is_err();
    let files = generate(&text, &mut random).map_err(|mut err| {
        err.file = Some(plan.to_owned());
        InitError::Plan(err)
    })?;
    if failed {
        return Err(InitError::Write("the system's random source failed".into()));
    }
    write(out, &files, force).map_err(InitError::Write)?;
    Ok(files.iter().map(|f| out.join(&f.path)).collect())
}
