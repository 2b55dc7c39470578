//! Linux and Android: batched datagram calls (`recvmmsg`/`sendmmsg`), UDP segmentation and
//! receive offload (GSO, GRO), `SO_PEERCRED`, Unix autobind, `dup3`, `splice` and `sendfile`,
//! and `MSG_NOSIGNAL` on every send.
//!
//! Over 600 lines because it is one platform family's whole seam, as in mio's `sys/unix`: every
//! Linux `unsafe` block in the crate, each with its `SAFETY` note, kept in one place to audit.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};

use bytes::BytesMut;
use socket2::{SockAddr, Socket as RawSocket};

use super::{Outgoing, Pipe, Received, MAX_BATCH};

/// Batched datagram calls: `recvmmsg` and `sendmmsg`.
pub(crate) const HAS_BATCH: bool = true;

/// `splice` and `sendfile` between sockets, pipes and files.
pub(crate) const HAS_SPLICE: bool = true;

/// Flags for every send on a socket: a reset peer is an error, never a SIGPIPE, whatever the
/// host process does with that signal.
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;

/// What a new or accepted socket needs before use: nothing here (`MSG_NOSIGNAL` on each send
/// keeps SIGPIPE away).
#[inline]
pub(crate) fn prepare_socket(_sock: &RawSocket) -> io::Result<()> {
    Ok(())
}

/// Accepts one connection from a non-blocking listener: one `accept4` that makes the new
/// socket non-blocking and close-on-exec itself, where the portable path needs two more
/// `fcntl` calls per connection.
#[inline]
pub(crate) fn accept(listener: &RawSocket) -> io::Result<(RawSocket, SockAddr)> {
    listener.accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
}

/// Whether the kernel offers UDP generic segmentation offload (`UDP_SEGMENT`, Linux 4.18+) on
/// `sock`: the socket option can be read.
pub(crate) fn gso_supported(sock: &RawSocket) -> bool {
    get_udp_option(sock, libc::UDP_SEGMENT).is_ok()
}

/// Turns UDP generic receive offload (`UDP_GRO`, Linux 5.0+) on or off; `Ok(false)` where the
/// kernel lacks it.
pub(crate) fn set_gro(sock: &RawSocket, on: bool) -> io::Result<bool> {
    match set_udp_option(sock, libc::UDP_GRO, on as libc::c_int) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The process, user and group of the peer of a connected Unix stream socket (`SO_PEERCRED`).
pub(crate) fn peer_credentials(fd: RawFd) -> io::Result<(Option<i32>, u32, u32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid, writable `ucred` and `len` holds its exact size; the kernel
    // writes at most `len` bytes into it and updates `len`.
    unsafe {
        syscall!(getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        ))
    }?;
    Ok((Some(cred.pid), cred.uid, cred.gid))
}

/// Binds a Unix datagram socket to a fresh abstract name chosen by the kernel (Linux
/// "autobind"), so a server can reply to it.
pub(crate) fn autobind_unix(sock: &RawSocket) -> io::Result<()> {
    // SAFETY: a zeroed `sockaddr_storage` is valid; the family is set to AF_UNIX and the
    // length covers only the family field, which is exactly Linux's autobind request.
    let addr = unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        storage.ss_family = libc::AF_UNIX as libc::sa_family_t;
        SockAddr::new(
            storage,
            std::mem::size_of::<libc::sa_family_t>() as libc::socklen_t,
        )
    };
    sock.bind(&addr)
}

/// Makes `fd` a duplicate of `dead`, atomically and close-on-exec (`dup3`); one attempt (the
/// caller retries `EINTR`). `fd` must be open and owned by the caller.
pub(super) fn dup_onto(dead: RawFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: `dead` is a descriptor the seam owns for the life of the process; `fd` is open
    // and owned by the caller, so replacing what it refers to cannot touch a descriptor
    // someone else owns. dup3 is atomic: there is no moment where `fd` is free for another
    // thread's `open` to take.
    unsafe { syscall!(dup3(dead, fd, libc::O_CLOEXEC)) }.map(drop)
}

/// `recvmmsg` into `bufs` (more than one: the caller checked), one datagram each.
pub(super) fn recv_batch(
    sock: &RawSocket,
    bufs: &mut [BytesMut],
    slot: usize,
    out: &mut Vec<Received>,
) -> io::Result<usize> {
    let n = bufs.len();
    debug_assert!(n <= MAX_BATCH);
    // Only the first `n` entries are set up (and only received addresses are copied out):
    // zeroing all 64 of each, 17 KiB, cost more than the call itself when one datagram is
    // waiting (bench/callgrind.sh, UDP section).
    let mut addrs = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; MAX_BATCH];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_BATCH];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_BATCH];
    let mut controls = [const { MaybeUninit::<Control>::uninit() }; MAX_BATCH];
    for (i, buf) in bufs.iter_mut().enumerate() {
        buf.clear();
        buf.reserve(slot);
        iovs[i].write(libc::iovec {
            iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(),
            iov_len: slot,
        });
        // SAFETY: a plain C struct (integers and raw pointers) for which all-zero bytes are
        // a valid value: null pointers and zero lengths.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_name = addrs[i].as_mut_ptr().cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
        h.msg_control = controls[i].as_mut_ptr().cast();
        h.msg_controllen = CONTROL_LEN as _;
        hdrs[i].write(libc::mmsghdr {
            msg_hdr: h,
            msg_len: 0,
        });
    }
    // SAFETY: `hdrs[..n]` are initialised headers; each points at its own address storage,
    // its own control buffer and one initialised iovec, which points at the spare capacity
    // (at least `slot` bytes) of its own buffer, none of which moves until the call returns. All of these outlive the call, and the kernel writes
    // within the given lengths only. The socket is non-blocking and no timeout is passed.
    let r = unsafe {
        libc::recvmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr().cast::<libc::mmsghdr>(),
            n as libc::c_uint,
            0,
            std::ptr::null_mut(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let got = r as usize;
    for i in 0..got {
        // SAFETY: `hdrs[..n]` were initialised above (and `got <= n`); the kernel updated
        // their lengths and flags in place.
        let m = unsafe { hdrs[i].assume_init_ref() };
        let h = &m.msg_hdr;
        let name_len = (h.msg_namelen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        let addr = (name_len > std::mem::size_of::<libc::sa_family_t>()).then(|| {
            // SAFETY: all-zero bytes are a valid `sockaddr_storage`; the kernel initialised
            // the first `name_len` bytes of `addrs[i]` with an address of the socket's
            // family, and only those are copied, into the zeroed storage.
            unsafe {
                let mut storage: libc::sockaddr_storage = std::mem::zeroed();
                std::ptr::copy_nonoverlapping(
                    addrs[i].as_ptr().cast::<u8>(),
                    (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
                    name_len,
                );
                SockAddr::new(storage, name_len as libc::socklen_t)
            }
        });
        let len = (m.msg_len as usize).min(slot);
        // SAFETY: the kernel initialised the first `len` bytes (at most `slot`, which the
        // spare capacity holds) of this buffer's spare capacity.
        unsafe { bufs[i].set_len(len) };
        out.push(Received {
            truncated: h.msg_flags & libc::MSG_TRUNC != 0,
            addr,
            // The kernel wrote `msg_controllen` bytes of control messages, which is all
            // the parser reads.
            segment: gro_segment(h),
        });
    }
    Ok(got)
}

/// Room for one control message of an `int` (what `UDP_GRO` reports), and then some.
const CONTROL_LEN: usize = 64;

/// A control-message buffer aligned for `cmsghdr`.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
pub(super) struct Control(pub(super) [u8; CONTROL_LEN]);

impl Control {
    pub(super) const fn new() -> Self {
        Control([0; CONTROL_LEN])
    }
}

/// The segment size of a `UDP_GRO` control message in `h`, if the kernel sent one that is
/// well-formed and non-zero; anything else (no message, a short or foreign one) is `None`.
// The control lengths are `usize` with glibc and `u32` with musl: the casts are needed.
#[allow(clippy::unnecessary_cast)]
pub(super) fn gro_segment(h: &libc::msghdr) -> Option<usize> {
    if h.msg_control.is_null() || (h.msg_controllen as usize) < std::mem::size_of::<libc::cmsghdr>()
    {
        return None;
    }
    // SAFETY: `h` describes a control buffer of `msg_controllen` bytes that it points at
    // (ours, aligned for `cmsghdr`); CMSG_FIRSTHDR/CMSG_NXTHDR only return headers that lie
    // wholly inside it, or null.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(h) };
    while !c.is_null() {
        // SAFETY: `c` is a header inside the buffer (see above), read without moving it.
        let (level, kind, len) =
            unsafe { ((*c).cmsg_level, (*c).cmsg_type, (*c).cmsg_len as usize) };
        // SAFETY: a length constant for an `int` payload.
        let want =
            unsafe { libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as libc::c_uint) } as usize;
        if level == libc::SOL_UDP && kind == libc::UDP_GRO && len >= want {
            // SAFETY: the header says it carries at least an `int` of data, which lies in
            // the buffer; read unaligned, as the kernel gives no alignment promise.
            let size =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int) };
            return usize::try_from(size).ok().filter(|&s| s > 0);
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        c = unsafe { libc::CMSG_NXTHDR(h, c) };
    }
    None
}

fn get_udp_option(sock: &RawSocket, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` is a writable `int` and `len` its exact size; the kernel writes at most
    // `len` bytes.
    unsafe {
        syscall!(getsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        ))
    }?;
    Ok(v)
}

fn set_udp_option(sock: &RawSocket, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` is a readable `int` of the stated size.
    unsafe {
        syscall!(setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ))
    }
    .map(drop)
}

/// One `sendmsg` with a `UDP_SEGMENT` control message: see [`super::send_segments`].
pub(super) fn send_segments(
    sock: &RawSocket,
    buf: &[u8],
    segment: usize,
    addr: Option<&SockAddr>,
) -> io::Result<usize> {
    let segment = u16::try_from(segment)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "segment too large"))?;
    let mut iov = libc::iovec {
        // The kernel only reads through this pointer.
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    let mut control = Control::new();
    // SAFETY: a zeroed `msghdr` is valid (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if let Some(a) = addr {
        msg.msg_name = a.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = a.len();
    }
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    set_segment(&mut msg, &mut control, segment);
    // SAFETY: `msg` points at one iovec over `buf`, optionally a live `SockAddr` of the
    // stated length, and the control buffer; all outlive the call, which only reads them.
    let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, SEND_FLAGS) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// `sendmmsg` of up to [`MAX_BATCH`] datagrams (more than one: the caller checked).
pub(super) fn send_batch(sock: &RawSocket, msgs: &[Outgoing]) -> io::Result<usize> {
    let n = msgs.len().min(MAX_BATCH);
    sendmmsg_each(sock, n, |i| {
        (&msgs[i].data[..], None, msgs[i].addr.as_ref())
    })
}

/// `sendmmsg` of GSO runs: see [`super::send_segmented`].
pub(super) fn send_segmented(
    sock: &RawSocket,
    msgs: &[super::SegmentedMessage<'_>],
) -> io::Result<usize> {
    let n = msgs.len().min(MAX_BATCH);
    sendmmsg_each(sock, n, |i| (msgs[i].data, msgs[i].segment, msgs[i].addr))
}

/// Sets up `h` to carry a `UDP_SEGMENT` control message of `segment` in `control`.
fn set_segment(h: &mut libc::msghdr, control: &mut Control, segment: u16) {
    h.msg_control = control.0.as_mut_ptr().cast();
    // SAFETY: a length constant for a `u16` payload.
    h.msg_controllen = unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as libc::c_uint) } as _;
    // SAFETY: `h` points at the aligned control buffer, larger than CMSG_SPACE(2), so the
    // first header and its two data bytes lie inside it; the data is written unaligned.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(h);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = libc::UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<u16>() as libc::c_uint) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut u16, segment);
    }
}

/// One `sendmmsg` of `n` (at most [`MAX_BATCH`]) messages, message `i` being `msg(i)`: its
/// bytes, its GSO segment size if any, and its destination (`None` on a connected socket).
/// Only the `n` entries used are set up, as in `recv_batch`.
fn sendmmsg_each<'a>(
    sock: &RawSocket,
    n: usize,
    msg: impl Fn(usize) -> (&'a [u8], Option<u16>, Option<&'a SockAddr>),
) -> io::Result<usize> {
    debug_assert!(n <= MAX_BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_BATCH];
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_BATCH];
    let mut controls = [const { MaybeUninit::<Control>::uninit() }; MAX_BATCH];
    for i in 0..n {
        let (data, segment, addr) = msg(i);
        iovs[i].write(libc::iovec {
            // The kernel only reads through this pointer (sendmmsg takes no ownership).
            iov_base: data.as_ptr() as *mut libc::c_void,
            iov_len: data.len(),
        });
        // SAFETY: a plain C struct for which all-zero bytes are valid (null pointers, zero
        // lengths).
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        if let Some(a) = addr {
            h.msg_name = a.as_ptr() as *mut libc::c_void;
            h.msg_namelen = a.len();
        }
        h.msg_iov = iovs[i].as_mut_ptr();
        h.msg_iovlen = 1;
        if let Some(segment) = segment {
            set_segment(&mut h, controls[i].write(Control::new()), segment);
        }
        hdrs[i].write(libc::mmsghdr {
            msg_hdr: h,
            msg_len: 0,
        });
    }
    // SAFETY: `hdrs[..n]` are initialised; each points at one initialised iovec over live
    // data (borrowed for 'a, past the call), optionally at a live `SockAddr` of the stated
    // length and at its own initialised control buffer. sendmmsg only reads them.
    // MSG_NOSIGNAL: a broken peer is an error, not SIGPIPE.
    let r = unsafe {
        libc::sendmmsg(
            sock.as_raw_fd(),
            hdrs.as_mut_ptr().cast::<libc::mmsghdr>(),
            n as libc::c_uint,
            SEND_FLAGS as _,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

// ---- Stream reads and writes (the hot path of every connection) ----

/// One `recv` on a non-blocking stream socket: the system call itself. glibc's `recv`
/// wrapper is a thread-cancellation point, which costs two extra calls around every receive
/// (about 30 instructions, 4% of an echo) for a feature asock never uses: it never cancels
/// threads, and on a non-blocking socket there is nothing to cancel.
#[inline]
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call, and a null source
    // address with a zero length asks for none. A stale or closed `fd` only fails (EBADF).
    let n = unsafe {
        syscall!(syscall(
            libc::SYS_recvfrom,
            fd as libc::c_long,
            buf.as_mut_ptr() as libc::c_long,
            buf.len() as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        ))
    }?;
    Ok(n as usize)
}

/// One `send` on a non-blocking stream socket, with [`SEND_FLAGS`]; the system call itself,
/// for the reason given on [`recv`].
#[inline]
pub(crate) fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is readable for `buf.len()` bytes for the whole call, and a null
    // destination with a zero length names none (the socket is connected). A stale `fd` fails.
    let n = unsafe {
        syscall!(syscall(
            libc::SYS_sendto,
            fd as libc::c_long,
            buf.as_ptr() as libc::c_long,
            buf.len() as libc::c_long,
            SEND_FLAGS as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        ))
    }?;
    Ok(n as usize)
}

// ---- zero-copy: pipes, splice and sendfile (copy_to, send_file) ----

/// Makes a non-blocking, close-on-exec pipe and asks the kernel for `size` bytes of capacity
/// (`F_SETPIPE_SZ`). A refused size (over `/proc/sys/fs/pipe-max-size`, or the user's pipe
/// budget spent) keeps the kernel's default; the capacity actually granted is reported.
pub(crate) fn pipe(size: usize) -> io::Result<Pipe> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two new descriptors into the two-element array it is given.
    unsafe { syscall!(pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC)) }?;
    // SAFETY: both descriptors were just created by pipe2 and nothing else owns them.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let want = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    // SAFETY: F_SETPIPE_SZ only changes the capacity of the pipe behind a descriptor we own;
    // it takes and returns plain integers. A refusal keeps the default (see above).
    let _ = unsafe { syscall!(fcntl(fds[1], libc::F_SETPIPE_SZ, want)) };
    // SAFETY: F_GETPIPE_SZ only reports the capacity of the same pipe.
    let capacity = unsafe { syscall!(fcntl(fds[1], libc::F_GETPIPE_SZ)) }?;
    if capacity <= 0 {
        return Err(io::Error::other("pipe reports no capacity"));
    }
    Ok(Pipe {
        read,
        write,
        capacity: capacity as usize,
    })
}

/// Moves up to `len` bytes from `from` to `to` inside the kernel (`splice`); one of them must be
/// a pipe. Never blocks: `SPLICE_F_NONBLOCK` with non-blocking descriptors, so a socket with
/// nothing to read, a full socket buffer or a full pipe all end in `WouldBlock`. `Ok(0)` is end
/// of stream when reading from a socket.
pub(crate) fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: both descriptors are open for the duration of the call (their owners hold them);
    // null offsets mean "the descriptor's own position", which for sockets and pipes is the
    // stream itself. splice touches no memory of ours.
    let n = unsafe {
        syscall!(splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        ))
    }?;
    Ok(n as usize)
}

/// Sends up to `len` bytes of `file` from `offset` on the socket `sock` (`sendfile`), without
/// the bytes entering the process; `offset` moves past what was sent. `Ok(0)` means the file
/// ends at `offset`. On a non-blocking socket a full buffer is `WouldBlock`.
pub(crate) fn sendfile(
    sock: RawFd,
    file: RawFd,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    let mut off = libc::off64_t::try_from(*offset)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // At most what one call may move (Linux caps it at 0x7ffff000 anyway).
    let len = len.min(0x7fff_f000);
    // SAFETY: both descriptors are open for the duration of the call (their owners hold them);
    // `off` is a valid, writable local the kernel updates; no other memory of ours is touched.
    let n = unsafe { syscall!(sendfile64(sock, file, &mut off, len)) }?;
    *offset = off as u64;
    Ok(n as usize)
}

// ---- CPU affinity (SelectorManager::builder().pin_threads) ----

/// The CPUs this process may run on (its affinity mask), in order; empty when unknown.
#[cfg(target_os = "linux")]
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set; the size passed is
    // the size of the set the kernel writes into.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size given; pid 0 is this thread.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, the capacity of `set`.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

/// Pins the calling thread to `cpu`; whether it worked.
#[cfg(target_os = "linux")]
pub(crate) fn pin_current_thread(cpu: usize) -> bool {
    if cpu >= libc::CPU_SETSIZE as usize {
        return false;
    }
    // SAFETY: all-zero is the empty `cpu_set_t`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` was checked to be below CPU_SETSIZE, the capacity of `set`; the set passed
    // to the kernel is valid and of the size given; pid 0 is the calling thread.
    unsafe {
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Unknown on Android (pinning is a no-op there).
#[cfg(target_os = "android")]
pub(crate) fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

/// A no-op on Android.
#[cfg(target_os = "android")]
pub(crate) fn pin_current_thread(_cpu: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::{gro_segment as parse_gro_segment, Control};

    /// A `msghdr` over `control`, holding one control message of `level`/`kind` with `data`.
    fn with_cmsg(
        control: &mut Control,
        level: i32,
        kind: i32,
        data: &[u8],
        len: usize,
    ) -> libc::msghdr {
        // SAFETY: a zeroed `msghdr` is valid.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_control = control.0.as_mut_ptr().cast();
        h.msg_controllen = control.0.len() as _;
        // SAFETY: the control buffer is aligned and larger than one header plus `data`.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&h);
            (*c).cmsg_level = level;
            (*c).cmsg_type = kind;
            (*c).cmsg_len = len as _;
            std::ptr::copy_nonoverlapping(data.as_ptr(), libc::CMSG_DATA(c), data.len());
            h.msg_controllen = libc::CMSG_SPACE(data.len() as u32) as _;
        }
        h
    }

    fn int_len() -> usize {
        // SAFETY: a length constant.
        unsafe { libc::CMSG_LEN(4) as usize }
    }

    #[test]
    fn gro_segment_size_is_read_from_a_well_formed_message() {
        let mut c = Control::new();
        let h = with_cmsg(
            &mut c,
            libc::SOL_UDP,
            libc::UDP_GRO,
            &1200i32.to_ne_bytes(),
            int_len(),
        );
        assert_eq!(parse_gro_segment(&h), Some(1200));
    }

    #[test]
    fn malformed_or_foreign_control_messages_are_ignored() {
        let mut c = Control::new();
        // (why, level, type, payload, cmsg_len): each must be ignored.
        let cases: [(&str, libc::c_int, libc::c_int, i32, usize); 5] = [
            (
                "truncated: claims less than an int",
                libc::SOL_UDP,
                libc::UDP_GRO,
                1200,
                int_len() - 2,
            ),
            (
                "another level",
                libc::SOL_IP,
                libc::UDP_GRO,
                1200,
                int_len(),
            ),
            (
                "another type",
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                1200,
                int_len(),
            ),
            ("a zero size", libc::SOL_UDP, libc::UDP_GRO, 0, int_len()),
            (
                "a negative size",
                libc::SOL_UDP,
                libc::UDP_GRO,
                -5,
                int_len(),
            ),
        ];
        for (why, level, kind, size, len) in cases {
            let h = with_cmsg(&mut c, level, kind, &size.to_ne_bytes(), len);
            assert_eq!(parse_gro_segment(&h), None, "{why}");
        }
        // A control length too short for any header, and none at all.
        let mut h = with_cmsg(
            &mut c,
            libc::SOL_UDP,
            libc::UDP_GRO,
            &1200i32.to_ne_bytes(),
            int_len(),
        );
        h.msg_controllen = 4;
        assert_eq!(parse_gro_segment(&h), None);
        h.msg_control = std::ptr::null_mut();
        assert_eq!(parse_gro_segment(&h), None);
    }
}
