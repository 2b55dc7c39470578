//! TLS configs and certificates for the tool, a leaf every command uses: server configs from
//! `--tls-cert/--tls-key` or `--tls-self-signed`, client configs from `--tls` options, and test
//! certificates for `asock cert`.

use std::path::{Path, PathBuf};

use asock::tls::test_certs::TestCa;
use asock::tls::{TlsConfig, TlsServerConfig};

use crate::common::{CliError, CliResult};

const DEFAULT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Files written by [`write_certs`].
pub struct Written {
    /// The CA certificate clients should trust.
    pub ca: PathBuf,
    /// The server's chain.
    pub chain: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

/// Makes a CA and a server certificate for `hosts` and writes them as PEM into `dir`.
pub fn write_certs(dir: &Path, hosts: &[String]) -> CliResult<Written> {
    let hosts: Vec<&str> = if hosts.is_empty() {
        DEFAULT_HOSTS.to_vec()
    } else {
        hosts.iter().map(String::as_str).collect()
    };
    let ca = TestCa::new("asock test CA")?;
    let server = ca.server_cert(&hosts)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError(format!("cannot create {}: {e}", dir.display())))?;
    let w = Written {
        ca: dir.join("ca.pem"),
        chain: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let write = |p: &Path, s: &str| {
        std::fs::write(p, s).map_err(|e| CliError(format!("cannot write {}: {e}", p.display())))
    };
    write(&w.ca, &ca.cert_pem())?;
    write(&w.chain, &server.chain_pem)?;
    write(&w.key, &server.key_pem)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&w.key, std::fs::Permissions::from_mode(0o600));
    }
    Ok(w)
}

/// A self-signed certificate made for one run: its private directory (random name, mode
/// 0700) holds the CA certificate clients need, and is removed with this value; the key was
/// removed as soon as it was loaded.
pub struct SelfSigned {
    /// The CA certificate clients should trust.
    pub ca: PathBuf,
    _dir: tempfile::TempDir,
}

/// Owner-only permissions (0700) for a directory.
fn private_dir_mode() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o700)
}

/// The server config for `--tls-cert/--tls-key` or `--tls-self-signed` (with, for the latter,
/// where its CA is). `None`: no TLS.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    self_signed: bool,
) -> CliResult<Option<(TlsServerConfig, Option<SelfSigned>)>> {
    if self_signed {
        // A random name, created with mode 0700: no other user can predict, pre-create or
        // read it.
        let dir = tempfile::Builder::new()
            .prefix("asock-tls-")
            .permissions(private_dir_mode())
            .tempdir()
            .map_err(|e| CliError(format!("cannot create a private directory: {e}")))?;
        let w = write_certs(dir.path(), &[])?;
        let cfg = TlsServerConfig::from_pem_files(&w.chain, &w.key)?;
        // The key is in memory now; it never outlives its use on disk.
        std::fs::remove_file(&w.key)
            .map_err(|e| CliError(format!("cannot remove {}: {e}", w.key.display())))?;
        return Ok(Some((
            cfg,
            Some(SelfSigned {
                ca: w.ca,
                _dir: dir,
            }),
        )));
    }
    match (cert, key) {
        (Some(c), Some(k)) => {
            let cfg = TlsServerConfig::from_pem_files(c, k).map_err(|e| files_error(e, c, k))?;
            Ok(Some((cfg, None)))
        }
        (None, None) => Ok(None),
        _ => Err(CliError("--tls-cert and --tls-key go together".into())),
    }
}

/// Names the file (and the option) a certificate or key error is about: the library says
/// what was wrong ("no usable private key"), the tool says where.
fn files_error(e: asock::Error, cert: &Path, key: &Path) -> CliError {
    let asock::Error::TlsConfig { detail, .. } = &e else {
        return e.into();
    };
    if let Some(rest) = detail.strip_prefix("certificate chain: ") {
        return CliError(format!("certificate file {}: {rest}", cert.display()));
    }
    if let Some(rest) = detail.strip_prefix("private key: ") {
        return CliError(format!("key file {}: {rest}", key.display()));
    }
    if detail.starts_with("certificate and key: ") {
        if detail.contains("KeyMismatch") || detail.contains("not be consistent") {
            return CliError(format!(
                "the key in {} does not match the certificate in {}",
                key.display(),
                cert.display()
            ));
        }
        return CliError(format!(
            "certificate {} and key {}: {detail}",
            cert.display(),
            key.display()
        ));
    }
    // "cannot read PATH: ..." already names its file.
    CliError(format!("TLS configuration: {detail}"))
}

/// What a TLS client is asked for on the command line (`connect --tls`, `bench --tls`).
#[derive(Debug, Default)]
pub struct ClientOptions<'a> {
    /// A CA certificate (PEM) to trust besides the system roots.
    pub ca: Option<&'a Path>,
    /// The name to verify the certificate against.
    pub server_name: Option<&'a str>,
    /// ALPN protocols to offer.
    pub alpn: &'a [String],
    /// Skip verification (testing only).
    pub insecure: bool,
    /// A client certificate chain and its key (PEM).
    pub client_cert: Option<(&'a Path, &'a Path)>,
}

/// The client config for `opts`.
pub fn client_config(opts: &ClientOptions<'_>) -> CliResult<TlsConfig> {
    let mut b = TlsConfig::client();
    if let Some(ca) = opts.ca {
        b = b.add_root_pem_file(ca).map_err(|e| match &e {
            asock::Error::TlsConfig { detail: d, .. } if !d.starts_with("cannot read") => {
                CliError(format!("CA file {}: {d}", ca.display()))
            }
            _ => e.into(),
        })?;
    }
    if let Some(name) = opts.server_name {
        b = b.server_name(name)?;
    }
    if !opts.alpn.is_empty() {
        b = b.alpn(opts.alpn);
    }
    if opts.insecure {
        b = b.danger_accept_invalid_certs();
    }
    if let Some((cert, key)) = opts.client_cert {
        b = b
            .client_cert_pem_files(cert, key)
            .map_err(|e| files_error(e, cert, key))?;
    }
    Ok(b.build()?)
}
