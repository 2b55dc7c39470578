//! The options of `asock bench`.

use clap::{Args, ValueEnum};

/// Options of `bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Echo server to load (HOST:PORT).
    pub addr: String,
    /// Concurrent connections.
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    pub connections: usize,
    /// Bytes per message (with `--lines`, including the `\r\n`) [default: 64; 1200 with
    /// `--udp --mode stream`, a QUIC-sized datagram].
    #[arg(short, long, value_name = "BYTES")]
    pub size: Option<usize>,
    /// Length of the measured run, in seconds.
    #[arg(short, long, value_name = "SECS", default_value_t = 10.0)]
    pub duration: f64,
    /// Load applied before measuring starts, in seconds.
    #[arg(short, long, value_name = "SECS", default_value_t = 1.0)]
    pub warmup: f64,
    /// Ping-pong (one message in flight per connection), stream (send and receive at once),
    /// or idle (one round trip, then hold the connection until the end).
    #[arg(short, long, value_enum, default_value_t = BenchMode::Pingpong)]
    pub mode: BenchMode,
    /// Messages are lines ending in `\r\n`, for line-echo servers.
    #[arg(long)]
    pub lines: bool,
    /// Send exactly this many messages in all (spread over the connections), without warm-up,
    /// instead of running for `--duration`.
    #[arg(long, value_name = "N")]
    pub messages: Option<u64>,
    /// Event-loop threads of the load generator.
    #[arg(short, long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Keep the load generator's loops polling this many microseconds before parking.
    #[arg(long, value_name = "MICROS")]
    pub busy_poll: Option<u64>,
    /// Also report this process's CPU time (the server's) per echoed message, from
    /// /proc/PID/stat over the measured run.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// Print one JSON object instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Load a UDP echo server: each connection is a connected UDP socket and each message one
    /// datagram. Ping-pong: a reply missing for a second counts as an error. Stream: datagrams
    /// back to back (up to `--window` in flight per connection, sent with UDP GSO where the
    /// kernel has it), every echo verified; datagrams lost or reordered are counted and
    /// reported, not errors (UDP promises neither).
    #[arg(long)]
    pub udp: bool,
    /// With `--udp --mode stream`: datagrams in flight per connection.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub window: usize,
    /// Speak TLS.
    #[arg(long, conflicts_with = "udp")]
    pub tls: bool,
    /// Trust this CA certificate (PEM) for `--tls`.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<std::path::PathBuf>,
    /// Do not verify the server certificate (testing only).
    #[arg(long, requires = "tls")]
    pub insecure: bool,
}

impl BenchArgs {
    /// Bytes per message: `--size`, else 64, or 1,200 with `--udp --mode stream`.
    pub fn size(&self) -> usize {
        self.size
            .unwrap_or(if self.udp && self.mode == BenchMode::Stream {
                1200
            } else {
                64
            })
    }
}

/// How `bench` loads the server.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// One message in flight per connection.
    Pingpong,
    /// Messages back to back, echoes read at the same time.
    Stream,
    /// One round trip, then an idle connection.
    Idle,
}
pub fn mode_name(m: BenchMode) -> &'static str {
    match m {
        BenchMode::Pingpong => "pingpong",
        BenchMode::Stream => "stream",
        BenchMode::Idle => "idle",
    }
}
