//! `asock`: an echo server, a netcat-like client and listener, and an echo load generator, all
//! built on the asock library.

mod bench;
mod cert;
mod common;
mod connect;
mod echo;
mod listen;
mod proxy;
mod relay;
mod shutdown;
mod tls;

use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, Parser, Subcommand};

/// Raw TCP, UDP and Unix sockets from the command line, built on the asock library.
#[derive(Parser, Debug)]
#[command(name = "asock", version, about, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    asock echo-server                      # line echo on 127.0.0.1:2323 (try: telnet 127.0.0.1 2323)\n  \
    asock connect 127.0.0.1:2323           # like nc: stdin to the socket, the socket to stdout\n  \
    asock listen 127.0.0.1:9000            # like nc -l: accept one connection and relay it\n  \
    asock bench 127.0.0.1:2323 --lines     # load an echo server: msgs/s, MB/s, latencies\n  \
    asock proxy 127.0.0.1:8080 127.0.0.1:80 # relay every connection to a target (zero-copy)\n  \
    asock cert --out /tmp/certs            # a test CA and server certificate for TLS\n  \
    asock -v echo-server                   # log each connection to stderr\n  \
    asock completions bash > ~/.local/share/bash-completion/completions/asock\n\n\
Logging goes to stderr: warnings by default (errors that end single connections are summed up\n\
in at most one line per second), -v for each connection and each such error, -vv/-vvv for\n\
more, -q for errors only. Colour is used only when stderr is a terminal (and NO_COLOR is not\n\
set). The first SIGINT/SIGTERM stops any command gracefully (exit 0; bench prints what it\n\
measured, then exits 130); a second exits at once.")]
struct Cli {
    /// More logging on stderr: -v connections and per-connection errors, -vv debug, -vvv trace.
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the echo server from Ktor's sockets docs: every line comes back with `\r\n`.
    #[command(after_help = "Examples:\n  \
        asock echo-server                       # 127.0.0.1:2323, line echo\n  \
        asock echo-server 127.0.0.1:7007 --raw  # byte echo\n  \
        asock echo-server 127.0.0.1:0           # any free port (printed on the first line)\n  \
        asock echo-server --unix /tmp/echo.sock # over a Unix socket\n  \
        asock echo-server --udp 127.0.0.1:9999  # datagram echo\n  \
        asock echo-server --udp --unix /tmp/echo.dgram # Unix datagram echo")]
    EchoServer(echo::EchoArgs),
    /// Connect and relay like netcat: stdin to the socket, the socket to stdout.
    #[command(after_help = "Examples:\n  \
        asock connect 127.0.0.1:2323\n  \
        echo hello | asock connect 127.0.0.1:2323\n  \
        asock connect --unix /tmp/echo.sock\n  \
        asock connect --tls --ca ca.pem localhost:8443\n  \
        asock connect --udp 127.0.0.1:9999\n  \
        asock connect -t 2 127.0.0.1:2323      # after the peer closes, send stdin for 2 s more")]
    Connect(connect::ConnectArgs),
    /// Accept one connection and relay it like `nc -l`.
    #[command(after_help = "Examples:\n  \
        asock listen 127.0.0.1:9000\n  \
        asock listen --unix /tmp/relay.sock\n  \
        asock listen --udp 127.0.0.1:9000")]
    Listen(listen::ListenArgs),
    /// Relay every connection on LISTEN to TARGET, like `socat TCP-LISTEN:..,fork TCP:..`.
    #[command(after_help = "Examples:\n  \
        asock proxy 127.0.0.1:8080 127.0.0.1:80\n  \
        asock proxy unix:/tmp/front.sock 127.0.0.1:6379\n  \
        asock proxy 0.0.0.0:8443 127.0.0.1:8080 --tls-cert cert.pem --tls-key key.pem")]
    Proxy(proxy::ProxyArgs),
    /// Load an echo server and measure it: msgs/s, MB/s, latency percentiles, errors.
    #[command(after_help = "Examples:\n  \
        asock bench 127.0.0.1:2323 --lines                 # against `asock echo-server`\n  \
        asock bench 127.0.0.1:7007 -c 256 -s 4096 -d 10    # raw echo (echo-server --raw)\n  \
        asock bench 127.0.0.1:7007 --mode stream -c 16 -s 65536\n  \
        asock bench 127.0.0.1:2323 --udp --mode stream -c 8  # UDP: 1,200 B datagrams, GSO/GRO")]
    Bench(bench::BenchArgs),
    /// Write a test CA, a server certificate chain and key (PEM) to try TLS with.
    #[command(after_help = "Examples:\n  \
        asock cert --out /tmp/certs\n  \
        asock cert --out certs --host example.test --host 10.0.0.1")]
    Cert(cert::CertArgs),
    /// Print a shell completion script for bash, zsh or fish (or elvish, powershell).
    #[command(after_help = "Examples:\n  \
        asock completions bash > ~/.local/share/bash-completion/completions/asock\n  \
        asock completions zsh > ~/.zfunc/_asock        # with fpath+=(~/.zfunc) in ~/.zshrc\n  \
        asock completions fish > ~/.config/fish/completions/asock.fish")]
    Completions {
        /// The shell to write completions for.
        shell: clap_complete::Shell,
    },
}

/// Sends `tracing` events to stderr: warnings by default, `-v` info, `-vv` debug, `-vvv`
/// trace, `-q` errors only; colour only when stderr is a terminal and `NO_COLOR` is unset.
fn init_logging(verbose: u8, quiet: bool) {
    use std::io::IsTerminal;
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::ERROR,
        (false, 0) => tracing::Level::WARN,
        (false, 1) => tracing::Level::INFO,
        (false, 2) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_ansi(colour)
        .with_target(false)
        .without_time()
        .init();
}

fn main() -> ExitCode {
    // A bug must still end in one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("error: internal error: {info}");
    }));
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    let result = match cli.command {
        Command::EchoServer(a) => echo::run(a),
        Command::Connect(a) => connect::run(a),
        Command::Listen(a) => listen::run(a),
        Command::Proxy(a) => proxy::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Cert(a) => cert::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "asock", &mut std::io::stdout());
            Ok(())
        }
    };
    shutdown::settle();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
