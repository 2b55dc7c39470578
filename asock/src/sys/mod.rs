//! The platform seam, the way mio keeps its platform code apart: one file per platform family,
//! chosen once here, each offering the same items.
//!
//! - `linux.rs` (Linux, Android): batched datagram calls (`recvmmsg`/`sendmmsg`), UDP
//!   segmentation and receive offload (GSO/GRO), `SO_PEERCRED`, Unix autobind, `dup3`,
//!   `splice`/`sendfile`, and `MSG_NOSIGNAL` on every send.
//! - `bsd.rs` (macOS, iOS and the BSDs): the portable paths, plus `getpeereid` and a SIGPIPE
//!   guard (`SO_NOSIGPIPE` set on every socket on Apple systems, `MSG_NOSIGNAL` on the BSDs).
//! - `fallback.rs` (any other Unix): one datagram per call, no offloads, no zero-copy;
//!   features the platform lacks report [`io::ErrorKind::Unsupported`] and their callers take a
//!   portable path. It is compiled (and unit-tested) everywhere, so the Linux build checks it.
//!
//! Every `unsafe` block of the socket code lives under this module, each with its own
//! `SAFETY:` note; C calls go through [`syscall!`], which turns the `-1`/`errno` convention
//! into `io::Result`. What is shared by all families (the datagram records, the pipe type,
//! close-in-place) is in this file.

use std::io;
use std::os::fd::RawFd;

use bytes::BytesMut;
use socket2::{MaybeUninitSlice, SockAddr, Socket as RawSocket};

/// Calls the `libc` function `$name` and maps its C-style failure (`-1`, with the reason in
/// `errno`) to `Err(io::Error::last_os_error())`; on success gives the call's return value.
///
/// It hides no `unsafe`: every use sits in an `unsafe` block of its own, under a safety note
/// saying why the arguments are valid for that call.
macro_rules! syscall {
    ($name:ident ( $($arg:expr),* $(,)? )) => {{
        let r = libc::$name($($arg),*);
        if r == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }};
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "linux.rs"]
mod imp;

#[cfg(any(
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
))]
#[path = "bsd.rs"]
mod imp;

// Built on every platform so that the one toolchain CI has type-checks and tests it; on Linux
// only its tests use it. On any other Unix it is the platform family.
#[cfg_attr(
    any(target_os = "linux", target_os = "android"),
    allow(
        dead_code,
        reason = "Linux uses linux.rs; the fallback is built here to be checked"
    )
)]
mod fallback;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    target_os = "freebsd",
    target_os = "openbsd",
    target_os = "netbsd",
    target_os = "dragonfly"
)))]
use fallback as imp;

// What every platform family provides (a family that lacks one fails to build here).
pub(crate) use imp::{
    accept, allowed_cpus, autobind_unix, gso_supported, peer_credentials, pin_current_thread, pipe,
    prepare_socket, recv, send, sendfile, set_gro, splice, HAS_BATCH, HAS_SPLICE, SEND_FLAGS,
};

/// The receive slot for one datagram: 64 KiB holds the largest UDP payload (65,527 bytes over
/// IPv6) and the largest Unix datagram asock sends, so nothing is ever cut short.
pub(crate) const SLOT: usize = 65_536;

/// The most datagrams one batched system call moves.
pub(crate) const MAX_BATCH: usize = 64;

/// The most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`).
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

/// One datagram taken from the kernel by [`recv_batch`].
#[derive(Debug)]
pub(crate) struct Received {
    /// The datagram was longer than its slot: the kernel discarded the rest.
    pub(crate) truncated: bool,
    /// The sender, when the kernel reported one.
    pub(crate) addr: Option<SockAddr>,
    /// With GRO on: the size of the datagrams the kernel coalesced into this one buffer (each
    /// `segment` bytes, the last possibly shorter). `None`: one datagram.
    pub(crate) segment: Option<usize>,
}

/// One datagram handed to [`send_batch`].
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The payload.
    pub(crate) data: bytes::Bytes,
    /// Where to (`None` on a connected socket).
    pub(crate) addr: Option<SockAddr>,
    /// Set: `data` is consecutive datagrams of this size, for one GSO message (the outgoing
    /// queue's batches; [`send_one`] and [`send_batch`] are never given one).
    pub(crate) segment: Option<u16>,
}

/// Receives one datagram into the spare capacity of `buf` (made empty and at least `slot`
/// bytes large first), whose length then is what arrived (portable path).
pub(crate) fn recv_one(
    sock: &RawSocket,
    buf: &mut BytesMut,
    slot: usize,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    buf.clear();
    buf.reserve(slot);
    let mut bufs = [MaybeUninitSlice::new(&mut buf.spare_capacity_mut()[..slot])];
    let (len, flags, addr) = sock.recv_from_vectored(&mut bufs)?;
    let len = len.min(slot);
    // SAFETY: the kernel initialised the first `len` bytes of the spare capacity it was given
    // (`len` is at most `slot`, which that capacity holds).
    unsafe { buf.set_len(len) };
    out.push(Received {
        truncated: flags.is_truncated(),
        addr: (addr.len() > 0).then_some(addr),
        segment: None,
    });
    Ok(1)
}

/// Receives up to `bufs.len()` datagrams (at most [`MAX_BATCH`]), one into each buffer (made
/// empty and at least `slot` bytes large first; the kernel writes into the spare capacity, so
/// nothing is zeroed), whose length then is what arrived; appends what arrived to `out`.
/// Returns how many arrived (at least one) or the error of the first.
pub(crate) fn recv_batch(
    sock: &RawSocket,
    bufs: &mut [BytesMut],
    slot: usize,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    let n = bufs.len().min(MAX_BATCH);
    if n <= 1 || !HAS_BATCH {
        return match bufs.first_mut() {
            Some(buf) => recv_one(sock, buf, slot, out),
            None => Ok(0),
        };
    }
    imp::recv_batch(sock, &mut bufs[..n], slot, out)
}

/// Sends one datagram (the portable path), with [`SEND_FLAGS`]: where the OS has
/// `MSG_NOSIGNAL` it is passed, so a send never raises SIGPIPE (Apple systems have
/// `SO_NOSIGPIPE` set on the socket instead, by [`prepare_socket`]).
pub(crate) fn send_one(sock: &RawSocket, d: &Outgoing) -> io::Result<usize> {
    match &d.addr {
        Some(a) => sock.send_to_with_flags(&d.data, a, SEND_FLAGS),
        None => sock.send_with_flags(&d.data, SEND_FLAGS),
    }
}

/// Sends as many of `msgs` as the kernel takes in one go. Returns how many were sent (at least
/// one) or the error of the first.
pub(crate) fn send_batch(sock: &RawSocket, msgs: &[Outgoing]) -> io::Result<usize> {
    match msgs.len() {
        0 => Ok(0),
        1 => send_one(sock, &msgs[0]).map(|_| 1),
        n => imp::send_batch(sock, &msgs[..n.min(MAX_BATCH)]),
    }
}

/// Sends `buf` to `addr` (`None` on a connected socket) as datagrams of `segment` bytes each,
/// the last possibly shorter, with one `sendmsg` carrying a `UDP_SEGMENT` control message
/// (`Unsupported` where the platform has no GSO). The caller keeps to the kernel's limits: at
/// most [`MAX_GSO_SEGMENTS`] segments and one UDP datagram's worth of bytes in all.
pub(crate) fn send_segments(
    sock: &RawSocket,
    buf: &[u8],
    segment: usize,
    addr: Option<&SockAddr>,
) -> io::Result<usize> {
    #[cfg(test)]
    if test_hooks::take_gso_eio() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    imp::send_segments(sock, buf, segment, addr)
}

/// One message of [`send_segmented`]: `data` to `addr` (`None` on a connected socket), cut
/// into datagrams of `segment` bytes by the kernel (GSO) when `segment` is set.
pub(crate) struct SegmentedMessage<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) segment: Option<u16>,
    pub(crate) addr: Option<&'a SockAddr>,
}

/// Sends up to [`MAX_BATCH`] messages with one `sendmmsg`, each with its own `UDP_SEGMENT`
/// control message when it has a segment size: many GSO runs (to many peers) in one system
/// call (`Unsupported` where the platform has no GSO). Returns how many messages were sent (at
/// least one) or the error of the first. The caller keeps each message to the kernel's GSO
/// limits, as for [`send_segments`].
pub(crate) fn send_segmented(sock: &RawSocket, msgs: &[SegmentedMessage<'_>]) -> io::Result<usize> {
    #[cfg(test)]
    if msgs.iter().any(|m| m.segment.is_some()) && test_hooks::take_gso_eio() {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    imp::send_segmented(sock, msgs)
}

/// Faults the unit tests inject into the seam.
#[cfg(test)]
pub(crate) mod test_hooks {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static GSO_EIO: AtomicUsize = AtomicUsize::new(0);

    /// The next `n` GSO sends fail with `EIO`, as on a device without checksum offload.
    pub(crate) fn fail_gso_sends(n: usize) {
        GSO_EIO.store(n, Ordering::SeqCst);
    }

    pub(super) fn take_gso_eio() -> bool {
        GSO_EIO
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

// ---- close in place ----

/// The process-wide "dead" socket that closed descriptors are pointed at: an unconnected Unix
/// stream socket, on which every operation fails. Made once, before descriptors can run out.
fn dead_socket() -> Option<RawFd> {
    use std::os::fd::{AsRawFd, OwnedFd};
    static DEAD: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    DEAD.get_or_init(|| {
        RawSocket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
            .ok()
            .map(OwnedFd::from)
    })
    .as_ref()
    .map(|fd| fd.as_raw_fd())
}

/// Makes sure [`close_in_place`] can work later, when descriptors may have run out.
pub(crate) fn prepare_close_in_place() {
    let _ = dead_socket();
}

/// Releases the socket behind `fd` now while `fd` itself stays open: `fd` is atomically made a
/// duplicate of the dead socket, so the original socket is closed (its port freed, the peer
/// told) the moment no system call on it is in flight, while every owner of `fd` (an `OwnedFd`,
/// an `AsFd` borrower) keeps a valid descriptor, whose operations now fail, until it drops it.
/// This is how `close(&self)` can close a shared socket without a lock on the I/O path.
///
/// The caller must own `fd` and guarantee it is still open (not yet closed by its owner).
/// Falls back to `shutdown(SHUT_RDWR)` if the dead socket could not be made.
pub(crate) fn close_in_place(fd: RawFd) -> io::Result<()> {
    let Some(dead) = dead_socket() else {
        // SAFETY: `fd` is open (the caller's contract); shutdown only changes socket state.
        return unsafe { syscall!(shutdown(fd, libc::SHUT_RDWR)) }.map(drop);
    };
    loop {
        match imp::dup_onto(dead, fd) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

// ---- zero-copy: pipes, splice and sendfile (copy_to, send_file) ----

/// A non-blocking pipe that `splice` moves socket bytes through: read end and write end, and
/// its capacity in bytes. Made by [`pipe`] where the platform has `splice` ([`HAS_SPLICE`]).
#[derive(Debug)]
pub(crate) struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// The read end (bytes leave the pipe here).
    pub(crate) fn read_fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.read.as_raw_fd()
    }

    /// The write end (bytes enter the pipe here).
    pub(crate) fn write_fd(&self) -> RawFd {
        use std::os::fd::AsRawFd;
        self.write.as_raw_fd()
    }

    /// How many bytes the pipe holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}
