//! `asock listen`: accept one connection and relay it, like `nc -l`.

use asock::{a_socket, SelectorManager, SocketAddress};

use crate::{relay::relay, CliError, CliResult, ListenArgs};

/// Runs `asock listen`.
pub fn run(args: ListenArgs) -> CliResult {
    if args.udp {
        return Err(CliError("--udp is not supported yet".into()));
    }
    if args.tls_cert.is_some() {
        return Err(CliError("TLS is not supported yet".into()));
    }
    let selector = SelectorManager::builder().threads(1).build()?;
    let target = match (&args.unix, &args.addr) {
        (Some(path), _) => SocketAddress::Unix(path.clone()).to_string(),
        (None, Some(addr)) => addr.clone(),
        (None, None) => return Err(CliError("an address is required".into())),
    };
    let socket = selector.run_blocking(async {
        let server = a_socket(&selector).tcp().bind(target.as_str()).await?;
        let socket = server.accept().await;
        server.close();
        socket
    })?;
    let input = socket.open_read_channel();
    let output = socket.open_write_channel(true);
    relay(input, output)
}
