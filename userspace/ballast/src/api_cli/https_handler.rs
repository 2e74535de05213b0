//! A watch's `https://` handler: one request over TLS (rustls), as Consul's http handler
//! sends it. The server is verified against the system's roots (`SSL_CERT_FILE` names
//! another bundle, as Go's crypto/x509 reads it) unless the watch says `tls_skip_verify`.
use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{pem::PemObject as _, CertificateDer, ServerName, UnixTime},
    DigitallySignedStruct, SignatureScheme,
};

/// Debian's bundle (package ca-certificates).
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `tls_skip_verify`: any certificate is accepted, but the handshake's signatures are
/// still checked, so the peer holds the key of the certificate it sent.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(skip_verify: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if skip_verify {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(SkipVerify(provider))).with_no_client_auth()
    } else {
        let file = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| SYSTEM_ROOTS.into());
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&file).map_err(|e| format!("{file}: {e}"))? {
            // One bad certificate in a bundle does not make the others unusable.
            if let Ok(c) = cert {
                let _ = roots.add(c);
            }
        }
        if roots.is_empty() {
            return Err(format!("{file}: no CA certificates"));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// Sends one request to an `https://host[:port]/path` URL and returns the status.
pub async fn send(
    url: &str,
    method: Method,
    headers: &[(String, String)],
    body: Bytes,
    timeout: Duration,
    skip_verify: bool,
) -> Result<StatusCode, String> {
    let rest = url.strip_prefix("https://").ok_or("not an https:// URL")?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, _)| h).ok_or("bad IPv6 address")?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let port = match authority.rsplit_once(':') {
        Some((_, p)) if !p.ends_with(']') => p.parse::<u16>().map_err(|_| format!("port {p:?}"))?,
        _ => 443,
    };
    let name = ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?}: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(skip_verify)?));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("connect: {e}"))?;
        let tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header(hyper::header::HOST, authority);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        // Read the answer to its end (at most 1 MiB) so the server sees a completed exchange.
        let _ = http_body_util::Limited::new(resp.into_body(), 1 << 20).collect().await;
        Ok::<_, String>(status)
    };
    tokio::time::timeout(timeout, exchange).await.map_err(|_| "timed out".to_string())?
}
