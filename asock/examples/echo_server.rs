//! The echo server from Ktor's sockets page: each line a client sends comes back.
//!
//! Run `cargo run --example echo_server`, then `telnet 127.0.0.1 2323` and type.

use asock::{a_socket, SelectorManager};

fn main() -> std::process::ExitCode {
    // One readable line, not the `Debug` dump a `main` returning `Result` prints.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> asock::Result<()> {
    let selector = SelectorManager::new()?;
    selector.run_blocking(async {
        let server = a_socket(&selector).tcp().bind("127.0.0.1:2323").await?;
        println!("Started echo telnet server at {}", server.local_address());

        loop {
            let socket = server.accept().await?;

            selector.launch(async move {
                println!("Socket accepted: {}", socket.remote_address());

                let mut input = socket.open_read_channel();
                let mut output = socket.open_write_channel(true);

                let result: asock::Result<()> = async {
                    while let Some(line) = input.read_utf8_line().await? {
                        println!("{}: {line}", socket.remote_address());
                        output.write_fully(format!("{line}\r\n").as_bytes()).await?;
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = result {
                    eprintln!("{}: {e}", socket.remote_address());
                    socket.close();
                }
            });
        }
    })
}
