//! TLS identity (certificate chain and private key) and the rustls server
//! configuration of the console.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};

/// How long a generated self-signed certificate is valid.
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Backdating of a generated certificate's start, for clients whose clock is
/// a little behind ours.
const SELF_SIGNED_BACKDATE: Duration = Duration::from_secs(60 * 60);

/// The crypto provider of the console: ring.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain (leaf first) and its private key.
pub struct Identity {
    pub cert_chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Identity {
    /// The leaf certificate (the one presented to clients for this server).
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.cert_chain[0]
    }

    /// SHA-256 fingerprint of the leaf certificate, as colon-separated
    /// upper-case hex (the form browsers show).
    pub fn fingerprint(&self) -> String {
        sha256_fingerprint(self.leaf())
    }
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// Loads a certificate chain and a private key from PEM files, and checks
/// that the key belongs to the leaf certificate. Errors name the file and
/// what is wrong with it.
pub fn load_identity(cert_path: &Path, key_path: &Path) -> Result<Identity> {
    let cert_file = cert_path.display();
    let key_file = key_path.display();

    let cert_pem = std::fs::read(cert_path)
        .with_context(|| format!("cannot read certificate file {cert_file}"))?;
    let cert_chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("certificate file {cert_file} is not valid PEM"))?;
    if cert_chain.is_empty() {
        bail!("certificate file {cert_file} contains no PEM \"CERTIFICATE\" block");
    }

    let key_pem =
        std::fs::read(key_path).with_context(|| format!("cannot read key file {key_file}"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| match err {
        pem::Error::NoItemsFound => anyhow!(
            "key file {key_file} contains no unencrypted private key (expected a PEM \
             \"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\" block)"
        ),
        err => anyhow!(err).context(format!("key file {key_file} is not valid PEM")),
    })?;

    let provider = crypto_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|err| anyhow!("key file {key_file}: unusable private key: {err}"))?;
    match CertifiedKey::new(cert_chain.clone(), signing_key).keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(_)) => bail!(
            "the private key in {key_file} does not belong to the first certificate in {cert_file}"
        ),
        Err(err) => bail!("certificate file {cert_file}: unusable certificate: {err}"),
    }

    Ok(Identity { cert_chain, key })
}

/// Generates a self-signed certificate for `host`, "localhost" and, unless it
/// is unspecified (0.0.0.0 or ::), `ip`, with a fresh ECDSA P-256 key. The
/// certificate is valid for a year from now.
pub fn self_signed_identity(host: &str, ip: Option<IpAddr>) -> Result<Identity> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Ia5String, KeyPair,
        KeyUsagePurpose, SanType, SerialNumber,
    };

    let mut names: Vec<SanType> = Vec::new();
    let mut push = |san: SanType| {
        if !names.contains(&san) {
            names.push(san);
        }
    };
    match Ia5String::try_from(host) {
        Ok(dns) if !host.is_empty() => push(SanType::DnsName(dns)),
        _ => tracing::warn!(
            host,
            "host name is not a valid DNS name; left out of the certificate"
        ),
    }
    push(SanType::DnsName(Ia5String::try_from("localhost")?));
    if let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) {
        push(SanType::IpAddress(ip));
    }

    let mut params = CertificateParams::default();
    params.subject_alt_names = names;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        if host.is_empty() { "localhost" } else { host },
    );
    dn.push(DnType::OrganizationName, "lb console (self-signed)");
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];

    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("system clock is before 1970")?;
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    params.not_before = epoch + now.saturating_sub(SELF_SIGNED_BACKDATE);
    params.not_after = epoch + now + SELF_SIGNED_VALIDITY;

    let mut serial = [0u8; 16];
    crypto_provider()
        .secure_random
        .fill(&mut serial)
        .map_err(|_| anyhow!("no randomness for the certificate serial number"))?;
    serial[0] &= 0x7f; // keep the DER INTEGER positive
    params.serial_number = Some(SerialNumber::from_slice(&serial));

    let key_pair = KeyPair::generate().context("generating the certificate key")?;
    let cert = params
        .self_signed(&key_pair)
        .context("generating the self-signed certificate")?;
    Ok(Identity {
        cert_chain: vec![cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()).into(),
    })
}

/// The rustls server configuration: ring provider, TLS 1.3 and 1.2, no
/// client authentication, ALPN h2 and http/1.1.
pub fn tls_config(identity: &Identity) -> Result<Arc<ServerConfig>> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .context("TLS protocol versions not supported by the crypto provider")?
        .with_no_client_auth()
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())
        .context("certificate and key are not usable for TLS")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// SHA-256 of `data` as colon-separated upper-case hex, computed with the
/// console's crypto provider.
pub fn sha256_fingerprint(data: &[u8]) -> String {
    let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite");
    let hash = &suite.common.hash_provider;
    debug_assert_eq!(
        hash.algorithm(),
        rustls::crypto::hash::HashAlgorithm::SHA256
    );
    let digest = hash.hash(data);
    let hex: Vec<String> = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn fingerprint_is_sha256() {
        // FIPS 180-2 test vector for "abc".
        assert_eq!(
            sha256_fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn self_signed_identity_makes_a_usable_config() {
        let id =
            self_signed_identity("console.example", Some("192.0.2.7".parse().unwrap())).unwrap();
        assert_eq!(id.cert_chain.len(), 1);
        assert_eq!(id.fingerprint().len(), 32 * 3 - 1);
        tls_config(&id).unwrap();
        // Two generations differ (fresh key, random serial).
        let other = self_signed_identity("console.example", None).unwrap();
        assert_ne!(id.fingerprint(), other.fingerprint());
    }

    fn write(dir: &Path, name: &str, contents: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .write_all(contents)
            .unwrap();
        path
    }

    fn pem_pair() -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn loads_pem_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair();
        let cert_path = write(dir.path(), "cert.pem", cert.as_bytes());
        let key_path = write(dir.path(), "key.pem", key.as_bytes());
        let id = load_identity(&cert_path, &key_path).unwrap();
        assert_eq!(id.cert_chain.len(), 1);
        tls_config(&id).unwrap();
    }

    #[test]
    fn load_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pem_pair();
        let (_, other_key) = pem_pair();
        let cert_path = write(dir.path(), "cert.pem", cert.as_bytes());
        let key_path = write(dir.path(), "key.pem", key.as_bytes());
        let other_key_path = write(dir.path(), "other-key.pem", other_key.as_bytes());
        let junk_path = write(dir.path(), "junk.pem", b"hello\n");
        let missing = dir.path().join("missing.pem");

        let err = |c: &Path, k: &Path| format!("{:#}", load_identity(c, k).err().unwrap());

        let e = err(&missing, &key_path);
        assert!(
            e.contains("cannot read certificate file") && e.contains("missing.pem"),
            "{e}"
        );
        let e = err(&cert_path, &missing);
        assert!(
            e.contains("cannot read key file") && e.contains("missing.pem"),
            "{e}"
        );
        let e = err(&junk_path, &key_path);
        assert!(
            e.contains("junk.pem") && e.contains("no PEM \"CERTIFICATE\""),
            "{e}"
        );
        let e = err(&cert_path, &junk_path);
        assert!(
            e.contains("junk.pem") && e.contains("no unencrypted private key"),
            "{e}"
        );
        // A certificate where the key should be, and vice versa.
        let e = err(&cert_path, &cert_path);
        assert!(e.contains("key file") && e.contains("cert.pem"), "{e}");
        let e = err(&key_path, &key_path);
        assert!(
            e.contains("certificate file") && e.contains("key.pem"),
            "{e}"
        );
        let e = err(&cert_path, &other_key_path);
        assert!(
            e.contains("other-key.pem") && e.contains("does not belong"),
            "{e}"
        );
    }
}
