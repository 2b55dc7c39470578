//! TLS for the tool: `echo-server`/`listen` with `--tls-cert/--tls-key` or `--tls-self-signed`,
//! `connect --tls [--ca F] [--server-name N] [--alpn P] [--insecure]`, and `asock cert`.

use std::path::{Path, PathBuf};

use asock::tls::test_certs::TestCa;
use asock::tls::{TlsConfig, TlsServerConfig, TlsSocket};
use asock::{ByteReadChannel, ByteWriteChannel, SelectorManager, ServerSocket};
use clap::Args;

use crate::echo::{accept_and_echo, announce, EchoSocket, Mode};
use crate::shutdown::Graceful;
use crate::{log, CliError, CliResult, ConnectArgs};

/// Options of `cert`.
#[derive(Args, Debug, Clone)]
pub struct CertArgs {
    /// Directory to write ca.pem, server.pem (chain) and server.key into (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Name the server certificate is valid for (repeatable; DNS names or IP addresses).
    /// Default: localhost, 127.0.0.1 and ::1.
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
}

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

/// Runs `asock cert`.
pub fn cert(args: CertArgs) -> CliResult {
    let w = write_certs(&args.out, &args.hosts)?;
    println!("CA certificate:     {}", w.ca.display());
    println!("server certificate: {}", w.chain.display());
    println!("server key:         {}", w.key.display());
    println!(
        "try: asock echo-server --tls-cert {} --tls-key {} 127.0.0.1:8443",
        w.chain.display(),
        w.key.display()
    );
    println!(
        "     asock connect --tls --ca {} localhost:8443",
        w.ca.display()
    );
    Ok(())
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

/// The client config for `connect --tls ...`.
pub fn client_config(args: &ConnectArgs) -> CliResult<TlsConfig> {
    let mut b = TlsConfig::client();
    if let Some(ca) = &args.ca {
        b = b.add_root_pem_file(ca)?;
    }
    if let Some(name) = &args.server_name {
        b = b.server_name(name)?;
    }
    if !args.alpn.is_empty() {
        b = b.alpn(&args.alpn);
    }
    if args.insecure {
        b = b.danger_accept_invalid_certs();
    }
    if let (Some(cert), Some(key)) = (&args.cert, &args.key) {
        b = b.client_cert_pem_files(cert, key)?;
    }
    Ok(b.build()?)
}

/// The TLS echo server: accepts (handshakes run concurrently in the background) and echoes each
/// connection with [`crate::echo::serve`].
pub async fn serve_echo(
    selector: &SelectorManager,
    server: ServerSocket,
    config: TlsServerConfig,
    ca: Option<PathBuf>,
    mode: Mode,
    graceful: Graceful,
) -> CliResult {
    let server = std::sync::Arc::new(server.tls(&config));
    let closer = server.clone();
    graceful.install(move || closer.close())?;
    announce(&format!(
        "Started TLS echo telnet server at {}",
        server.local_address()
    ))?;
    if let Some(ca) = ca {
        announce(&format!(
            "Self-signed certificate for localhost, 127.0.0.1 and ::1; its CA certificate is at {}",
            ca.display()
        ))?;
    }
    server.on_handshake_error(|peer, e| log!("{peer}: {e}"));
    let accept = async || server.accept().await;
    accept_and_echo(selector, &graceful, mode, accept).await
}

impl EchoSocket for TlsSocket {
    fn describe(&self) -> String {
        let version = self
            .protocol_version()
            .map(|v| v.to_string())
            .unwrap_or_default();
        format!("{} ({version})", self.remote_address())
    }
    fn channels(&self) -> (ByteReadChannel, ByteWriteChannel) {
        (self.open_read_channel(), self.open_write_channel(false))
    }
}
