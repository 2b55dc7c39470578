//! The server side of a TLS echo over rustls's two APIs, in memory, for callgrind: does the
//! caller-owned-buffer (`unbuffered`) API of the pinned rustls move fewer bytes than the
//! buffered `Connection` asock's session uses?
//!
//! `tls-paths buffered|unbuffered CHAIN.pem KEY.pem CA.pem WRITES [SIZE]`: a buffered rustls
//! client makes WRITES writes of SIZE bytes (default 64 KiB: four 16 KiB records), one at a
//! time; the server decrypts them, copies the plaintext into a 64 KiB "channel" buffer (what
//! asock's read channel holds) and encrypts it back from there; the client checks the echo. Both ways the server's input
//! is copied once into rustls's buffer or ours (the kernel's `recv` into user memory) and its
//! output once out of it (the `send`), so the difference is what the API itself costs.
//!
//! - buffered: `read_tls`, `process_new_packets`, `reader().read` into the channel buffer,
//!   `writer().write` from it, `write_tls` (asock's `tls/session.rs` today).
//! - unbuffered: TLS bytes in our own receive buffer, `process_tls_records`, each
//!   `ReadTraffic` record copied into the channel buffer, `WriteTraffic::encrypt` from it into
//!   our own send buffer.
//!
//! Only the server's work is in `server_step`, so
//! `valgrind --tool=callgrind --toggle-collect='*server_step*' tls-paths ...` counts it alone
//! (`bench/tls_paths.sh`). Prints the bytes echoed.

use std::io::{Read, Write};

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};

/// The channel buffer, and the default write (as asock's bulk benchmark makes).
const WRITE: usize = 64 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, chain, key, ca, writes, size) = match &args[..] {
        [_, m, c, k, a, w] => (m, c, k, a, w, WRITE),
        [_, m, c, k, a, w, s] => (m, c, k, a, w, s.parse().expect("SIZE")),
        _ => {
            eprintln!(
                "usage: tls-paths buffered|unbuffered CHAIN.pem KEY.pem CA.pem WRITES [SIZE]"
            );
            std::process::exit(2);
        }
    };
    assert!(size <= WRITE, "SIZE is at most {WRITE}");
    let server_config = asock_bench_tls_peer::server_config(chain, key);
    let client_config = asock_bench_tls_peer::client_config(ca);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut client = rustls::ClientConnection::new(client_config, name).expect("client");
    let mut server: Box<dyn Server> = match mode.as_str() {
        "buffered" => Box::new(Buffered {
            conn: rustls::ServerConnection::new(server_config).expect("server"),
        }),
        "unbuffered" => Box::new(Unbuffered::new(
            UnbufferedServerConnection::new(server_config).expect("server"),
        )),
        m => panic!("unknown mode {m}"),
    };
    let writes: usize = writes.parse().expect("WRITES");
    let mut channel = vec![0u8; WRITE];

    // The handshake (and the server's tickets): move bytes both ways until the client is done.
    let (mut c2s, mut s2c) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        client.write_tls(&mut c2s).expect("client write_tls");
        server_step(&mut *server, &c2s, &mut s2c, &mut channel);
        c2s.clear();
        client_take(&mut client, &mut s2c, &mut Vec::new());
    }
    assert!(!client.is_handshaking(), "handshake did not finish");

    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut echoed = Vec::new();
    let mut total = 0usize;
    for _ in 0..writes {
        client.writer().write_all(&data).expect("client write");
        client.write_tls(&mut c2s).expect("client write_tls");
        server_step(&mut *server, &c2s, &mut s2c, &mut channel);
        c2s.clear();
        client_take(&mut client, &mut s2c, &mut echoed);
        assert_eq!(echoed, data, "the echo differs");
        total += echoed.len();
        echoed.clear();
    }
    println!("{total}");
}

/// Feeds the server's TLS bytes to the client and collects the plaintext it gets.
fn client_take(client: &mut rustls::ClientConnection, s2c: &mut Vec<u8>, out: &mut Vec<u8>) {
    let mut rest = &s2c[..];
    while !rest.is_empty() {
        client.read_tls(&mut rest).expect("client read_tls");
        client.process_new_packets().expect("client process");
        let mut buf = [0u8; 16 * 1024];
        loop {
            match client.reader().read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("client read: {e}"),
            }
        }
    }
    s2c.clear();
}

/// The server's part, the only one callgrind counts: `input` is what arrived from the socket,
/// `output` what goes back to it.
#[inline(never)]
fn server_step(server: &mut dyn Server, input: &[u8], output: &mut Vec<u8>, channel: &mut [u8]) {
    server.echo(input, output, channel);
}

trait Server {
    /// Takes `input`, echoes every application byte through `channel` into `output`.
    fn echo(&mut self, input: &[u8], output: &mut Vec<u8>, channel: &mut [u8]);
}

struct Buffered {
    conn: rustls::ServerConnection,
}

impl Server for Buffered {
    fn echo(&mut self, mut input: &[u8], output: &mut Vec<u8>, channel: &mut [u8]) {
        while !input.is_empty() {
            self.conn.read_tls(&mut input).expect("read_tls");
            self.conn.process_new_packets().expect("process");
            loop {
                match self.conn.reader().read(channel) {
                    Ok(0) => break,
                    Ok(n) => {
                        self.conn.writer().write_all(&channel[..n]).expect("write");
                        while self.conn.wants_write() {
                            self.conn.write_tls(output).expect("write_tls");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("read: {e}"),
                }
            }
        }
        while self.conn.wants_write() {
            self.conn.write_tls(output).expect("write_tls");
        }
    }
}

struct Unbuffered {
    conn: UnbufferedServerConnection,
    /// Our receive buffer: `incoming[start..used]` is received and not yet processed.
    incoming: Vec<u8>,
    start: usize,
    used: usize,
    /// Sealed records not yet sent (our send buffer).
    outgoing: Vec<u8>,
    sealed: usize,
}

impl Unbuffered {
    fn new(conn: UnbufferedServerConnection) -> Self {
        Unbuffered {
            conn,
            incoming: vec![0; 64 * 1024 + 64 * 1024],
            start: 0,
            used: 0,
            outgoing: vec![0; 64 * 1024 + 4096],
            sealed: 0,
        }
    }
}

impl Server for Unbuffered {
    fn echo(&mut self, mut input: &[u8], output: &mut Vec<u8>, channel: &mut [u8]) {
        loop {
            // The socket's `recv` into our buffer (moving what is left to the front when the
            // end is reached).
            if self.used == self.incoming.len() {
                self.incoming.copy_within(self.start..self.used, 0);
                self.used -= self.start;
                self.start = 0;
            }
            let n = input.len().min(self.incoming.len() - self.used);
            self.incoming[self.used..self.used + n].copy_from_slice(&input[..n]);
            self.used += n;
            input = &input[n..];

            let mut filled = 0;
            let status = self
                .conn
                .process_tls_records(&mut self.incoming[self.start..self.used]);
            let mut discard = status.discard;
            // `false`: rustls needs more TLS bytes before it has anything new.
            let progress = match status.state.expect("process_tls_records") {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec.expect("record");
                        discard += rec.discard;
                        channel[filled..filled + rec.payload.len()].copy_from_slice(rec.payload);
                        filled += rec.payload.len();
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    match e.encode(&mut self.outgoing[self.sealed..]) {
                        Ok(n) => self.sealed += n,
                        Err(EncodeError::InsufficientSize(s)) => panic!("encode: {s:?}"),
                        Err(e) => panic!("encode: {e}"),
                    }
                    true
                }
                ConnectionState::TransmitTlsData(t) => {
                    output.extend_from_slice(&self.outgoing[..self.sealed]);
                    self.sealed = 0;
                    t.done();
                    true
                }
                ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake => false,
                s => panic!("unexpected state {s:?}"),
            };
            self.start += discard;
            if self.start == self.used {
                (self.start, self.used) = (0, 0);
            }
            if filled > 0 {
                self.seal(&channel[..filled], output);
            }
            if !progress && input.is_empty() {
                break;
            }
        }
    }
}

impl Unbuffered {
    /// Encrypts `plain` into the send buffer and "sends" it.
    fn seal(&mut self, plain: &[u8], output: &mut Vec<u8>) {
        let status = self.conn.process_tls_records(&mut []);
        let ConnectionState::WriteTraffic(mut w) = status.state.expect("state") else {
            panic!("not in WriteTraffic");
        };
        match w.encrypt(plain, &mut self.outgoing[self.sealed..]) {
            Ok(n) => self.sealed += n,
            Err(EncryptError::InsufficientSize(s)) => panic!("encrypt: {s:?}"),
            Err(e) => panic!("encrypt: {e}"),
        }
        output.extend_from_slice(&self.outgoing[..self.sealed]);
        self.sealed = 0;
    }
}
