//! Certificates for tests and quick tries (feature `test-certs`, built on `rcgen`): a CA, and
//! server and client certificates it issues, like Ktor's `ktor-network-tls-certificates`.
//!
//! ```
//! use asock::tls::test_certs::TestCa;
//!
//! let ca = TestCa::new("test CA")?;
//! let server = ca.server_cert(&["localhost", "127.0.0.1"])?;
//! assert!(server.chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(server.key_pem.contains("PRIVATE KEY"));
//! # Ok::<(), asock::Error>(())
//! ```
//!
//! These keys are made fresh in memory; they are for tests, never for production.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::error::{Error, Result};

/// The kind of key a test certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (the default).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    fn generate(self) -> Result<KeyPair> {
        let alg = match self {
            KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &rcgen::PKCS_ED25519,
        };
        KeyPair::generate_for(alg).map_err(cert_error)
    }
}

fn cert_error(e: rcgen::Error) -> Error {
    Error::tls_config_from(format!("making a test certificate: {e}"), e)
}

/// A certificate authority made for tests.
pub struct TestCa {
    params: CertificateParams,
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A certificate issued by a [`TestCa`], with its private key, all PEM.
#[derive(Debug, Clone)]
pub struct TestCert {
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The chain to present: the leaf, then the CA (PEM).
    pub chain_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl TestCa {
    /// Makes a CA with an ECDSA P-256 key, valid from a day ago for ten years.
    pub fn new(common_name: &str) -> Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "asock test certificates");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let key = KeyType::EcdsaP256.generate()?;
        let cert = params.clone().self_signed(&key).map_err(cert_error)?;
        Ok(TestCa { params, cert, key })
    }

    /// The CA certificate, PEM: what a client (or a server verifying clients) trusts.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A server certificate for `names` (DNS names and IP literals), valid for a year.
    pub fn server_cert(&self, names: &[&str]) -> Result<TestCert> {
        self.issue(names, true, KeyType::default(), false)
    }

    /// A server certificate for `names` that expired yesterday.
    pub fn expired_server_cert(&self, names: &[&str]) -> Result<TestCert> {
        self.issue(names, true, KeyType::default(), true)
    }

    /// A client certificate with common name (and DNS SAN) `name`.
    pub fn client_cert(&self, name: &str) -> Result<TestCert> {
        self.issue(&[name], false, KeyType::default(), false)
    }

    /// A certificate for `names` with a chosen key type; `server` picks the server or client
    /// purpose.
    pub fn cert_with_key(&self, names: &[&str], server: bool, key: KeyType) -> Result<TestCert> {
        self.issue(names, server, key, false)
    }

    fn issue(&self, names: &[&str], server: bool, kt: KeyType, expired: bool) -> Result<TestCert> {
        let sans: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(sans).map_err(cert_error)?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("asock"),
        );
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        if expired {
            params.not_before = now - Duration::days(30);
            params.not_after = now - Duration::days(1);
        } else {
            params.not_before = now - Duration::days(1);
            params.not_after = now + Duration::days(365);
        }
        let key = kt.generate()?;
        let issuer = self.params.clone();
        let issuer_cert = issuer.self_signed(&self.key).map_err(cert_error)?;
        let cert = params
            .signed_by(&key, &issuer_cert, &self.key)
            .map_err(cert_error)?;
        let cert_pem = cert.pem();
        Ok(TestCert {
            chain_pem: format!("{cert_pem}{}", self.cert.pem()),
            cert_pem,
            key_pem: key.serialize_pem(),
        })
    }
}
