//! The client from Ktor's sockets page: sends one line to the echo server and prints the reply.
//!
//! Start `cargo run --example echo_server` first, then `cargo run --example echo_client`.

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
        let socket = a_socket(&selector).tcp().connect("127.0.0.1:2323").await?;
        let mut input = socket.open_read_channel();
        let mut output = socket.open_write_channel(true);

        output.write_fully(b"hello\r\n").await?;
        let response = input.read_utf8_line().await?;
        println!("Server said: '{}'", response.unwrap_or_default());
        Ok(())
    })
}
