//! The floor: a bare mio byte-echo loop with no runtime. One thread, one shared read buffer,
//! edge-triggered readiness, and a short read taken as "drained" (no extra read that would only
//! return `WouldBlock`) unless the peer's FIN was already reported. Bytes the socket does not
//! take at once wait in a per-connection queue, and that connection is not read again until its
//! queue is written out.
//!
//! `mio-echo [ADDR] [--buf BYTES]`

use std::io::{self, ErrorKind, Read, Write};
use std::net::Shutdown;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    /// Bytes read but not yet written back: `pending[sent..]`.
    pending: Vec<u8>,
    sent: usize,
    /// Readable as far as we know (an edge arrived, and no short read since).
    readable: bool,
    /// The peer's FIN was reported: a short read no longer means drained, since the end of
    /// stream still has to be read (its edge may have come before the data was read).
    read_closed: bool,
    eof: bool,
}

enum Next {
    Wait,
    Close,
}

fn main() {
    let args = asock_bench_peers::args("mio-echo [ADDR] [--buf BYTES]");
    if let Err(e) = run(&args) {
        asock_bench_peers::die(e);
    }
}

fn run(args: &asock_bench_peers::Args) -> io::Result<()> {
    let addr = args
        .addr
        .parse()
        .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{}: {e}", args.addr)))?;
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    asock_bench_peers::announce(&format!(
        "Started mio echo server at {}",
        listener.local_addr()?
    ));
    let mut events = Events::with_capacity(1024);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; args.buf];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            poll.registry().register(
                                &mut stream,
                                Token(entry.key()),
                                Interest::READABLE | Interest::WRITABLE,
                            )?;
                            entry.insert(Conn {
                                stream,
                                pending: Vec::new(),
                                sent: 0,
                                readable: true,
                                read_closed: false,
                                eof: false,
                            });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // Out of descriptors or an aborted handshake: try again at the next edge.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                conn.readable = true;
            }
            if event.is_read_closed() {
                conn.read_closed = true;
            }
            if let Next::Close = drive(conn, &mut buf) {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.stream);
            }
        }
    }
}

/// Writes out the queue, then echoes while the socket has bytes.
fn drive(conn: &mut Conn, buf: &mut [u8]) -> Next {
    loop {
        while conn.sent < conn.pending.len() {
            match conn.stream.write(&conn.pending[conn.sent..]) {
                Ok(n) => conn.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Wait,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Next::Close,
            }
        }
        conn.pending.clear();
        conn.sent = 0;
        if conn.eof {
            let _ = conn.stream.shutdown(Shutdown::Write);
            return Next::Close;
        }
        if !conn.readable {
            return Next::Wait;
        }
        match conn.stream.read(buf) {
            Ok(0) => conn.eof = true,
            Ok(n) => {
                if n < buf.len() && !conn.read_closed {
                    conn.readable = false;
                }
                let mut off = 0;
                while off < n {
                    match conn.stream.write(&buf[off..n]) {
                        Ok(k) => off += k,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Next::Close,
                    }
                }
                conn.pending.extend_from_slice(&buf[off..n]);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => conn.readable = false,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}
