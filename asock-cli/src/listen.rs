//! `asock listen`: accept one connection and relay it, like `nc -l`.

use asock::{a_socket, SelectorManager, SocketAddress};

use crate::{relay::relay, CliError, CliResult, ListenArgs};

/// Runs `asock listen`.
pub fn run(args: ListenArgs) -> CliResult {
    if args.udp {
        return crate::udp::listen(args);
    }
    let tls = crate::tls::server_config(args.tls_cert.as_deref(), args.tls_key.as_deref(), false)?;
    let selector = SelectorManager::builder().threads(1).build()?;
    let target = match (&args.unix, &args.addr) {
        (Some(path), _) => SocketAddress::Unix(path.clone()).to_string(),
        (None, Some(addr)) => addr.clone(),
        (None, None) => return Err(CliError("an address is required".into())),
    };
    let socket = selector.run_blocking(async {
        let server = a_socket(&selector)
            .tcp()
            .replace_stale(args.unix.is_some())
            .bind(target.as_str())
            .await
            .map_err(crate::udp::unix_bind_error)?;
        // stdout carries only the relayed bytes; the bound address (port 0) goes to the log.
        crate::log!("Listening on {}", server.local_address());
        let socket = server.accept().await;
        server.close();
        socket.map_err(CliError::from)
    })?;
    if let Some((config, _)) = tls {
        let socket = selector.run_blocking(socket.tls_server(&config))?;
        return relay(socket.open_read_channel(), socket.open_write_channel(true));
    }
    let input = socket.open_read_channel();
    let output = socket.open_write_channel(true);
    relay(input, output)
}
