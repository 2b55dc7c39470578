//! `asock cert`: a test CA, a server chain and key to try TLS with.

use std::path::PathBuf;

use clap::Args;

use crate::common::{CliError, CliResult};
use crate::tls::write_certs;

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
    /// Replace ca.pem, server.pem and server.key when DIR already has them.
    #[arg(long)]
    pub force: bool,
}

/// Runs `asock cert`.
pub fn run(args: CertArgs) -> CliResult {
    if !args.force {
        // A CA others already trust must not be replaced by accident.
        for name in ["ca.pem", "server.pem", "server.key"] {
            let p = args.out.join(name);
            if p.symlink_metadata().is_ok() {
                return Err(CliError(format!(
                    "{} already exists: not overwriting it (--force replaces the files)",
                    p.display()
                )));
            }
        }
    }
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
