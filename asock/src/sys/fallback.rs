//! Any Unix: the portable paths. One datagram per call, no segmentation or receive offload, no
//! `splice`/`sendfile` (their callers take the buffer-copy path on `Unsupported`), no peer
//! credentials, no autobind; `dup2` for close-in-place. `bsd.rs` builds on these.

use std::io;
use std::os::fd::RawFd;

use bytes::BytesMut;
use socket2::{SockAddr, Socket as RawSocket};

use super::{recv_one, send_one, Outgoing, Pipe, Received};

/// No batched datagram calls: one datagram per system call.
pub(crate) const HAS_BATCH: bool = false;

/// No `splice`/`sendfile`: copies go through a buffer.
pub(crate) const HAS_SPLICE: bool = false;

/// No send flags. A platform without `MSG_NOSIGNAL` or `SO_NOSIGPIPE` leaves SIGPIPE to the
/// process (the Rust runtime ignores it in a Rust `main`).
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// What a new or accepted socket needs before use: nothing here.
#[inline]
pub(crate) fn prepare_socket(_sock: &RawSocket) -> io::Result<()> {
    Ok(())
}

/// Receives the first datagram only (no batched call).
pub(super) fn recv_batch(
    sock: &RawSocket,
    bufs: &mut [BytesMut],
    slot: usize,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    recv_one(sock, &mut bufs[0], slot, out)
}

/// Sends the first datagram only (no batched call); the caller sends the rest next.
pub(super) fn send_batch(sock: &RawSocket, msgs: &[Outgoing]) -> io::Result<usize> {
    send_one(sock, &msgs[0]).map(|_| 1)
}

/// No UDP segmentation offload.
pub(crate) fn gso_supported(_sock: &RawSocket) -> bool {
    false
}

/// No UDP receive offload: `Ok(false)`.
pub(crate) fn set_gro(_sock: &RawSocket, _on: bool) -> io::Result<bool> {
    Ok(false)
}

/// No UDP segmentation offload: `Unsupported`.
pub(super) fn send_segments(
    _sock: &RawSocket,
    _buf: &[u8],
    _segment: usize,
    _addr: Option<&SockAddr>,
) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "UDP segmentation offload is Linux-only",
    ))
}

/// No UDP segmentation offload: `Unsupported`.
pub(super) fn send_segmented(
    _sock: &RawSocket,
    _msgs: &[super::SegmentedMessage<'_>],
) -> io::Result<usize> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "UDP segmentation offload is Linux-only",
    ))
}

/// No portable way to learn a Unix peer's credentials: `Unsupported`.
pub(crate) fn peer_credentials(_fd: RawFd) -> io::Result<(Option<i32>, u32, u32)> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "peer credentials are not available on this platform",
    ))
}

/// No autobind: the socket stays unnamed.
pub(crate) fn autobind_unix(_sock: &RawSocket) -> io::Result<()> {
    Ok(())
}

/// Makes `fd` a duplicate of `dead` (`dup2`, atomic), then close-on-exec; one attempt (the
/// caller retries `EINTR`). `fd` must be open and owned by the caller.
pub(super) fn dup_onto(dead: RawFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: `dead` is a descriptor the seam owns for the life of the process; `fd` is open
    // and owned by the caller, so replacing what it refers to cannot touch a descriptor
    // someone else owns. dup2 is atomic: `fd` is never free for another thread's `open`.
    unsafe { syscall!(dup2(dead, fd)) }?;
    // SAFETY: `fd` is open (just made a duplicate); F_SETFD only sets its flags. A fork between
    // the two calls could leak the dead socket to a child, which is harmless.
    unsafe { syscall!(fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC)) }.map(drop)
}

/// Accepts one connection from a non-blocking listener as a non-blocking, close-on-exec
/// socket, with the peer's address (the portable path: `accept`, then `O_NONBLOCK` set on the
/// new socket).
pub(crate) fn accept(listener: &RawSocket) -> io::Result<(RawSocket, SockAddr)> {
    let (sock, peer) = listener.accept()?;
    sock.set_nonblocking(true)?;
    Ok((sock, peer))
}

/// One `recv` on a non-blocking stream socket.
#[inline]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call; a stale `fd` fails.
    let n = unsafe { syscall!(recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0)) }?;
    Ok(n as usize)
}

/// One `send` on a non-blocking stream socket, with the platform's
/// [`SEND_FLAGS`](super::SEND_FLAGS) (`MSG_NOSIGNAL` on the BSDs; none on Apple systems,
/// whose sockets have `SO_NOSIGPIPE`).
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes for the whole call; a stale `fd` fails.
    let n = unsafe { syscall!(send(fd, buf.as_ptr().cast(), buf.len(), super::SEND_FLAGS)) }?;
    Ok(n as usize)
}

/// No `splice`: `Unsupported`.
pub(crate) fn pipe(_size: usize) -> io::Result<Pipe> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "splice is not available on this platform",
    ))
}

/// No `splice`: `Unsupported`.
pub(crate) fn splice(_from: RawFd, _to: RawFd, _len: usize) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// No `sendfile` between a file and a socket here: `Unsupported`.
pub(crate) fn sendfile(
    _sock: RawFd,
    _file: RawFd,
    _offset: &mut u64,
    _len: usize,
) -> io::Result<usize> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// The fallback runs on Linux too, so the one toolchain CI has checks its behaviour.
/// The CPUs this process may run on: unknown here (pinning is a no-op).
pub(crate) fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// Pinning threads to CPUs is not done here: always `false`.
pub(crate) fn pin_current_thread(_cpu: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::os::fd::AsRawFd;

    use socket2::{Domain, Socket as RawSocket, Type};

    use super::*;

    fn udp_pair() -> (RawSocket, RawSocket) {
        let bind = |s: &RawSocket| {
            let a: SocketAddr = "127.0.0.1:0".parse().unwrap();
            s.bind(&a.into()).unwrap();
        };
        let a = RawSocket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        let b = RawSocket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
        bind(&a);
        bind(&b);
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        (a, b)
    }

    #[test]
    fn batches_move_one_datagram_per_call() {
        let (a, b) = udp_pair();
        let to = b.local_addr().unwrap();
        let msgs: Vec<Outgoing> = [&b"one"[..], b"two"]
            .into_iter()
            .map(|p| Outgoing {
                data: bytes::Bytes::from_static(p),
                addr: Some(to.clone()),
                segment: None,
            })
            .collect();
        assert_eq!(send_batch(&a, &msgs).unwrap(), 1, "one sent per call");
        assert_eq!(send_batch(&a, &msgs[1..]).unwrap(), 1);
        let mut bufs = [BytesMut::new(), BytesMut::new()];
        let mut out = Vec::new();
        assert_eq!(recv_batch(&b, &mut bufs, 16, &mut out).unwrap(), 1);
        assert_eq!(recv_batch(&b, &mut bufs[1..], 16, &mut out).unwrap(), 1);
        assert_eq!((&bufs[0][..], &bufs[1][..]), (&b"one"[..], &b"two"[..]));
        assert_eq!(
            out[0].addr.as_ref().and_then(|a| a.as_socket()),
            a.local_addr().unwrap().as_socket()
        );
    }

    #[test]
    fn missing_features_say_unsupported() {
        let (a, _b) = udp_pair();
        assert!(!gso_supported(&a));
        assert!(!set_gro(&a, true).unwrap());
        let unsupported = |e: io::Error| e.kind() == io::ErrorKind::Unsupported;
        assert!(send_segments(&a, b"x", 1, None).is_err_and(unsupported));
        assert!(peer_credentials(a.as_raw_fd()).is_err_and(unsupported));
        assert!(pipe(4096).is_err_and(unsupported));
        assert!(splice(0, 1, 1).is_err_and(unsupported));
        assert!(sendfile(0, 1, &mut 0, 1).is_err_and(unsupported));
    }

    #[test]
    fn stream_send_and_recv_move_bytes() {
        let (a, b) = RawSocket::pair(Domain::UNIX, Type::STREAM, None).unwrap();
        assert_eq!(send(a.as_raw_fd(), b"ping").unwrap(), 4);
        let mut buf = [0u8; 8];
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ping");
    }

    #[test]
    fn dup_onto_replaces_the_socket_and_sets_close_on_exec() {
        let (a, _b) = udp_pair();
        let dead = RawSocket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        dup_onto(dead.as_raw_fd(), a.as_raw_fd()).unwrap();
        // The descriptor now refers to the dead Unix socket: no longer bound to an inet port.
        assert!(a.local_addr().unwrap().as_socket().is_none());
        // SAFETY: F_GETFD only reads the flags of a descriptor we own.
        let flags = unsafe { syscall!(fcntl(a.as_raw_fd(), libc::F_GETFD)) }.unwrap();
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
    }
}
