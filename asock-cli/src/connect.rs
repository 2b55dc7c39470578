//! `asock connect`: a netcat-like client.

use asock::{a_socket, SelectorManager, SocketAddress};

use crate::{relay::relay, seconds, CliError, CliResult, ConnectArgs};

/// Runs `asock connect`.
pub fn run(args: ConnectArgs) -> CliResult {
    if args.udp {
        return crate::udp::connect(args);
    }
    let tls = if args.tls {
        Some(crate::tls::client_config(&args)?)
    } else {
        None
    };
    let selector = SelectorManager::builder().threads(1).build()?;
    let timeout = args.timeout.map(seconds).transpose()?;
    let target = match (&args.unix, &args.addr) {
        (Some(path), _) => SocketAddress::Unix(path.clone()).to_string(),
        (None, Some(addr)) => addr.clone(),
        (None, None) => return Err(CliError("an address is required".into())),
    };
    let socket = selector.run_blocking(async {
        let mut builder = a_socket(&selector).tcp();
        if let Some(t) = timeout {
            builder = builder.connect_timeout(t).socket_timeout(t);
        }
        builder.connect(target.as_str()).await
    })?;
    if let Some(config) = tls {
        let socket = selector.run_blocking(socket.tls(&config))?;
        return relay(socket.open_read_channel(), socket.open_write_channel(true));
    }
    let input = socket.open_read_channel();
    let output = socket.open_write_channel(true);
    relay(input, output)
}
