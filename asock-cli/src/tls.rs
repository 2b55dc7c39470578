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

/// The server config for `--tls-cert/--tls-key` or `--tls-self-signed`, and for the latter the
/// path the CA was written to. `None`: no TLS.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    self_signed: bool,
) -> CliResult<Option<(TlsServerConfig, Option<PathBuf>)>> {
    if self_signed {
        let dir = std::env::temp_dir().join(format!("asock-tls-{}", std::process::id()));
        let w = write_certs(&dir, &[])?;
        let cfg = TlsServerConfig::from_pem_files(&w.chain, &w.key)?;
        return Ok(Some((cfg, Some(w.ca))));
    }
    match (cert, key) {
        (Some(c), Some(k)) => Ok(Some((TlsServerConfig::from_pem_files(c, k)?, None))),
        (None, None) => Ok(None),
        _ => Err(CliError("--tls-cert and --tls-key go together".into())),
    }
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
        b = b.add_root_pem_file(ca)?;
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
        b = b.client_cert_pem_files(cert, key)?;
    }
    Ok(b.build()?)
}
