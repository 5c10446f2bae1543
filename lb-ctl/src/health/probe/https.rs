//! `https`: the `http` probe over TLS (rustls with ring, TLS 1.3 and 1.2),
//! verifying the backend's certificate or not.
use std::{
    io,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use tokio::{net::TcpStream, time::Instant};
use tokio_rustls::{TlsConnector, client::TlsStream};

use super::{
    ProbeError, Stage,
    http::{HttpRequest, probe_http},
    step,
};

/// One HTTPS probe of `target`: the [`http::probe`](super::http::probe)
/// over TLS, with the server name `request.host` or the target's IP (which
/// sends no SNI). With `verify_certificate`, the certificate must chain to a
/// CA of the system's bundle (`SSL_CERT_FILE`, or the distribution's
/// `ca-certificates` file) and name the server; without, any certificate is
/// accepted, but the handshake's signatures are still checked against the
/// certificate the target sent.
pub async fn probe(
    request: &HttpRequest<'_>,
    verify_certificate: bool,
    target: SocketAddr,
    timeout: Duration,
) -> Result<(), ProbeError> {
    let deadline = Instant::now() + timeout;
    probe_http(
        request,
        Some(tls_config(verify_certificate)),
        target,
        deadline,
        timeout,
    )
    .await
}

/// The TLS handshake over a probe's connection, with the server name `host`
/// or the target's IP.
pub(super) async fn handshake(
    tcp: TcpStream,
    tls: Arc<ClientConfig>,
    host: Option<&str>,
    target: SocketAddr,
    deadline: Instant,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, ProbeError> {
    let server_name = match host {
        Some(host) => ServerName::try_from(host.to_owned()).map_err(|error| ProbeError::Tls {
            target,
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{host:?} is not a valid TLS server name: {error}"),
            ),
        })?,
        None => ServerName::IpAddress(target.ip().into()),
    };
    let connector = TlsConnector::from(tls);
    step(
        deadline,
        timeout,
        Stage::TlsHandshake,
        connector.connect(server_name, tcp),
    )
    .await?
    .map_err(|source| ProbeError::Tls { target, source })
}

/// The rustls client configuration: ring, TLS 1.3 and 1.2, ALPN http/1.1,
/// and either the system's CAs or any certificate. Built once per process.
fn tls_config(verify_certificate: bool) -> Arc<ClientConfig> {
    static VERIFYING: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    static ANY_CERTIFICATE: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if verify_certificate {
        VERIFYING.get_or_init(|| client_config(Some(system_roots())))
    } else {
        ANY_CERTIFICATE.get_or_init(|| client_config(None))
    }
    .clone()
}

/// A client configuration that checks certificates against `roots`, or,
/// with None, accepts any certificate.
fn client_config(roots: Option<RootCertStore>) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.3 and 1.2");
    let mut config = match roots {
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider }))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Where distributions keep their bundle of CA certificates, after the file
/// `SSL_CERT_FILE` names.
const CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Arch, Alpine
    "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
    "/etc/ssl/ca-bundle.pem",             // openSUSE
    "/etc/ssl/cert.pem",                  // Alpine, BSDs
];

fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    for path in from_env
        .into_iter()
        .chain(CA_BUNDLES.iter().map(PathBuf::from))
    {
        let Ok(certificates) = CertificateDer::pem_file_iter(&path) else {
            continue;
        };
        let (added, _) = roots.add_parsable_certificates(certificates.filter_map(Result::ok));
        if added > 0 {
            tracing::debug!(path = %path.display(), added, "health checks: CA certificates loaded");
            break;
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            "health checks: no CA certificates found (SSL_CERT_FILE, {CA_BUNDLES:?}); \
             HTTPS checks with verify_certificate = true will fail"
        );
    }
    roots
}

/// Accepts any certificate chain and name, but still checks that the
/// handshake's signatures were made with the key of the certificate the
/// server sent: `verify_certificate = false`.
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{lock, probe, testing::*};

    #[tokio::test]
    async fn probe_https_accepts_a_self_signed_certificate_unless_told_to_verify() {
        let server = serve(LOCALHOST, Some(tls_acceptor().0), || {
            Some(response("200 OK", "ok"))
        })
        .await;
        probe(&https(None, false), server.addr, SECOND)
            .await
            .unwrap();
        probe(&https(Some("localhost"), false), server.addr, SECOND)
            .await
            .unwrap();
        // An IP as the server name sends no SNI; a host name does.
        assert_eq!(
            *lock(&server.server_names),
            vec![None, Some("localhost".to_owned())]
        );
        let requests = server.requests();
        assert!(
            requests[0].starts_with("GET /health HTTP/1.1\r\n"),
            "{requests:?}"
        );
        assert!(
            requests[1].contains("\r\nhost: localhost\r\n"),
            "{requests:?}"
        );

        for host in [None, Some("localhost")] {
            let error = probe(&https(host, true), server.addr, SECOND)
                .await
                .unwrap_err();
            assert!(matches!(error, ProbeError::Tls { .. }), "{error:?}");
            assert_eq!(
                error.to_string(),
                format!(
                    "TLS handshake with {}: invalid peer certificate: UnknownIssuer",
                    server.addr
                )
            );
        }
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn probe_https_verifies_against_the_roots_and_the_name() {
        let (acceptor, certificate) = tls_acceptor();
        let server = serve(LOCALHOST, Some(acceptor), || Some(response("200 OK", "ok"))).await;
        // Trusting the certificate itself, as if a CA of the system's bundle.
        let mut roots = RootCertStore::empty();
        roots.add(certificate).unwrap();
        let config = client_config(Some(roots));
        let request = |host| HttpRequest {
            path: "/",
            expect_status: 200,
            body_contains: Some("ok"),
            host,
        };
        let deadline = Instant::now() + SECOND;
        probe_http(
            &request(Some("localhost")),
            Some(Arc::clone(&config)),
            server.addr,
            deadline,
            SECOND,
        )
        .await
        .unwrap();
        // The certificate names "localhost", not 127.0.0.1.
        let error = probe_http(&request(None), Some(config), server.addr, deadline, SECOND)
            .await
            .unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "TLS handshake with {}: invalid peer certificate: certificate not valid for name \"127.0.0.1\"",
                server.addr
            )),
            "{error}"
        );
    }

    #[tokio::test]
    async fn probe_https_against_plain_http_times_out_in_the_handshake() {
        // The plain server waits for a request head that never comes.
        let server = http_server(|| Some(response("200 OK", "ok"))).await;
        let error = probe(&https(None, false), server.addr, Duration::from_millis(200))
            .await
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "timed out after 200 ms in the TLS handshake"
        );
    }
}
