//! TLS offload for `bind ... ssl crt PATH [crt PATH2 ...] [alpn h2,http/1.1]` (the job
//! stunnel did in the seeds), with rustls on the aws-lc-rs provider: the versions, cipher
//! suites and groups the bind line's TLS policy allows (`ssl-min-ver`, `no-tlsv12`,
//! `ciphers`, `ciphersuites`, `curves`, ... see `ballast_l7::haproxy::tls`), the
//! certificate chosen by SNI (`strict-sni` refuses a name no certificate matches), ALPN,
//! and session resumption (a session cache for IDs and stateful tickets, plus stateless
//! tickets unless `no-tls-tickets`).
//!
//! `crt` takes a PEM file (certificate chain and private key, as HAProxy's) or a directory
//! of them. The first certificate loaded is the default for clients without a matching SNI.
use std::{fmt, path::Path, sync::Arc};

use ballast_l7::haproxy::tls::{Group, Suite, TlsOptions, TlsPolicy, TlsVersion};
use rustls::{
    crypto::aws_lc_rs::{cipher_suite, kx_group},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
    ServerConfig, SupportedCipherSuite,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {msg}")]
    Cert { path: String, msg: String },
    #[error("TLS setup: {0}")]
    Setup(String),
}

/// Certificates of one bind line, chosen by SNI.
pub struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
    /// `strict-sni`: no certificate (the handshake fails) when none matches the SNI.
    strict: bool,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SniResolver({} certificates)", self.certs.len())
    }
}

impl SniResolver {
    fn matches(ck: &CertifiedKey, name: &str) -> bool {
        let Some(end) = ck.cert.first() else { return false };
        let Ok(cert) = webpki::EndEntityCert::try_from(end) else { return false };
        let Ok(sn) = ServerName::try_from(name) else { return false };
        cert.verify_is_valid_for_subject_name(&sn).is_ok()
    }

    /// Index of the certificate served for `sni` (the first one when none matches).
    pub fn pick(&self, sni: Option<&str>) -> usize {
        sni.and_then(|n| self.certs.iter().position(|c| Self::matches(c, n))).unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.strict {
            let name = hello.server_name()?;
            return self.certs.iter().find(|c| Self::matches(c, name)).cloned();
        }
        self.certs.get(self.pick(hello.server_name())).cloned()
    }
}

fn rustls_suite(s: Suite) -> SupportedCipherSuite {
    match s {
        Suite::Tls13Aes256GcmSha384 => cipher_suite::TLS13_AES_256_GCM_SHA384,
        Suite::Tls13Aes128GcmSha256 => cipher_suite::TLS13_AES_128_GCM_SHA256,
        Suite::Tls13Chacha20Poly1305Sha256 => cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        Suite::EcdheEcdsaAes256GcmSha384 => cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        Suite::EcdheEcdsaAes128GcmSha256 => cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        Suite::EcdheEcdsaChacha20Poly1305 => cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        Suite::EcdheRsaAes256GcmSha384 => cipher_suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        Suite::EcdheRsaAes128GcmSha256 => cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        Suite::EcdheRsaChacha20Poly1305 => cipher_suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    }
}

fn rustls_group(g: Group) -> &'static dyn rustls::crypto::SupportedKxGroup {
    match g {
        Group::X25519 => kx_group::X25519,
        Group::P256 => kx_group::SECP256R1,
        Group::P384 => kx_group::SECP384R1,
    }
}

fn load_pem(path: &Path, provider: &rustls::crypto::CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let err = |msg: String| TlsError::Cert { path: path.display().to_string(), msg };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(format!("reading certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    let key = PrivateKeyDer::from_pem_file(path).map_err(|e| err(format!("no usable private key: {e}")))?;
    let signer = provider.key_provider.load_private_key(key).map_err(|e| err(format!("private key: {e}")))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| err(format!("the key does not match the certificate: {e}")))?;
    Ok(ck)
}

/// Every PEM file a `crt` argument names (a file, or the `.pem`/`.crt` files of a
/// directory, in name order like HAProxy).
fn pem_files(path: &Path) -> Result<Vec<std::path::PathBuf>, TlsError> {
    if path.is_dir() {
        let mut v: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| TlsError::Cert { path: path.display().to_string(), msg: e.to_string() })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pem" || x == "crt"))
            .collect();
        v.sort();
        Ok(v)
    } else {
        Ok(vec![path.to_path_buf()])
    }
}

/// The rustls configuration for one bind line: its certificates, ALPN and TLS policy
/// (None: HAProxy's defaults, TLS 1.2 and 1.3 with every suite).
pub fn server_config(
    crts: &[std::path::PathBuf],
    alpn: &[String],
    policy: Option<&TlsPolicy>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let default_policy;
    let policy = match policy {
        Some(p) => p,
        None => {
            default_policy =
                ballast_l7::haproxy::tls::resolve(&TlsOptions::default()).map_err(TlsError::Setup)?.0;
            &default_policy
        }
    };
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites = policy.suites.iter().map(|s| rustls_suite(*s)).collect();
    if !policy.groups.is_empty() {
        provider.kx_groups = policy.groups.iter().map(|g| rustls_group(*g)).collect();
    }
    let provider = Arc::new(provider);
    let mut certs = Vec::new();
    for c in crts {
        for f in pem_files(c)? {
            certs.push(Arc::new(load_pem(&f, &provider)?));
        }
    }
    if certs.is_empty() {
        return Err(TlsError::Setup("no certificate loaded".into()));
    }
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = policy
        .versions
        .iter()
        .rev()
        .filter_map(|v| match v {
            TlsVersion::Tls13 => Some(&rustls::version::TLS13),
            TlsVersion::Tls12 => Some(&rustls::version::TLS12),
            _ => None,
        })
        .collect();
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs, strict: policy.strict_sni }));
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    // HAProxy chooses by the server's order unless `prefer-client-ciphers`.
    cfg.ignore_client_order = !policy.prefer_client_ciphers;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(20_000);
    // `no-tls-tickets` keeps rustls's default ticketer, which makes no stateless tickets:
    // resumption then goes through the session cache only (IDs, stateful TLS 1.3 tickets).
    if policy.tickets {
        cfg.ticketer =
            rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| TlsError::Setup(e.to_string()))?;
    }
    Ok(Arc::new(cfg))
}
