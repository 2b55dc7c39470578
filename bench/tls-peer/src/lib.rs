//! Shared helpers of the TLS benchmark peers.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A rustls server config from PEM files, with the ring provider.
pub fn server_config(chain: &str, key: &str) -> Arc<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(chain)
        .expect("read chain")
        .collect::<Result<_, _>>()
        .expect("parse chain");
    let key = PrivateKeyDer::from_pem_file(key).expect("read key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("cert");
    c.ticketer = rustls::crypto::ring::Ticketer::new().expect("ticketer");
    Arc::new(c)
}

/// A rustls client config trusting `ca`, without session resumption (every handshake full).
pub fn client_config(ca: &str) -> Arc<rustls::ClientConfig> {
    let mut c = base_client_config(ca);
    c.resumption = rustls::client::Resumption::disabled();
    Arc::new(c)
}

/// A rustls client config trusting `ca`, with rustls's default in-memory session cache (TLS 1.3
/// tickets: handshakes after the first resume).
pub fn resuming_client_config(ca: &str) -> Arc<rustls::ClientConfig> {
    Arc::new(base_client_config(ca))
}

fn base_client_config(ca: &str) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read ca") {
        roots.add(c.expect("parse ca")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
