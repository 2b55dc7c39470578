//! The platform seam: Linux fast paths (`recvmmsg`/`sendmmsg`, UDP segmentation offload (GSO)
//! and receive offload (GRO), `SO_PEERCRED`, Unix autobind, `dup3`) with a portable fallback, the way mio keeps its platform code apart.
//!
//! Every `unsafe` block in asock lives here, each with its own `SAFETY:` note.

use std::io;

use bytes::BytesMut;
use socket2::{MaybeUninitSlice, SockAddr, Socket as RawSocket};

/// The receive slot for one datagram: 64 KiB holds the largest UDP payload (65,527 bytes over
/// IPv6) and the largest Unix datagram asock sends, so nothing is ever cut short.
pub(crate) const SLOT: usize = 65_536;

/// The most datagrams one batched system call moves.
pub(crate) const MAX_BATCH: usize = 64;

/// Whether this platform has batched datagram calls.
pub(crate) const HAS_BATCH: bool = cfg!(any(target_os = "linux", target_os = "android"));

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

/// The most datagrams one GSO send may carry (the kernel's `UDP_MAX_SEGMENTS`).
pub(crate) const MAX_GSO_SEGMENTS: usize = 64;

/// Whether the kernel offers UDP generic segmentation offload (`UDP_SEGMENT`, Linux 4.18+) on
/// `sock`: the socket option can be read.
pub(crate) fn gso_supported(sock: &RawSocket) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        linux::get_udp_option(sock, libc::UDP_SEGMENT).is_ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = sock;
        false
    }
}

/// Turns UDP generic receive offload (`UDP_GRO`, Linux 5.0+) on or off; `Ok(false)` where the
/// kernel or platform lacks it.
pub(crate) fn set_gro(sock: &RawSocket, on: bool) -> io::Result<bool> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match linux::set_udp_option(sock, libc::UDP_GRO, on as libc::c_int) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(false),
            Err(e) => Err(e),
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (sock, on);
        Ok(false)
    }
}

/// Sends `buf` to `addr` (`None` on a connected socket) as datagrams of `segment` bytes each,
/// the last possibly shorter, with one `sendmsg` carrying a `UDP_SEGMENT` control message.
/// The caller keeps to the kernel's limits: at most [`MAX_GSO_SEGMENTS`] segments and one
/// UDP datagram's worth of bytes in all.
pub(crate) fn send_segments(
    sock: &RawSocket,
    buf: &[u8],
    segment: usize,
    addr: Option<&SockAddr>,
) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        #[cfg(test)]
        if test_hooks::take_gso_eio() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        linux::send_segments(sock, buf, segment, addr)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (sock, buf, segment, addr);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "UDP segmentation offload is Linux-only",
        ))
    }
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
/// call. Returns how many messages were sent (at least one) or the error of the first. The
/// caller keeps each message to the kernel's GSO limits, as for [`send_segments`].
pub(crate) fn send_segmented(sock: &RawSocket, msgs: &[SegmentedMessage<'_>]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        #[cfg(test)]
        if msgs.iter().any(|m| m.segment.is_some()) && test_hooks::take_gso_eio() {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        linux::send_segmented(sock, msgs)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (sock, msgs);
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "UDP segmentation offload is Linux-only",
        ))
    }
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
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        linux::recv_batch(sock, &mut bufs[..n], slot, out)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        recv_one(sock, &mut bufs[0], slot, out)
    }
}

/// Sends one datagram (portable path); `MSG_NOSIGNAL` where the OS has it, so no SIGPIPE.
pub(crate) fn send_one(sock: &RawSocket, d: &Outgoing) -> io::Result<usize> {
    match &d.addr {
        Some(a) => sock.send_to(&d.data, a),
        None => sock.send(&d.data),
    }
}

/// Sends as many of `msgs` as the kernel takes in one go. Returns how many were sent (at least
/// one) or the error of the first.
pub(crate) fn send_batch(sock: &RawSocket, msgs: &[Outgoing]) -> io::Result<usize> {
    match msgs.len() {
        0 => Ok(0),
        1 => send_one(sock, &msgs[0]).map(|_| 1),
        _ => {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            {
                linux::send_batch(sock, &msgs[..msgs.len().min(MAX_BATCH)])
            }
            #[cfg(not(any(target_os = "linux", target_os = "android")))]
            {
                send_one(sock, &msgs[0]).map(|_| 1)
            }
        }
    }
}

/// The process, user and group of the peer of a connected Unix stream socket.
pub(crate) fn peer_credentials(fd: std::os::fd::RawFd) -> io::Result<(Option<i32>, u32, u32)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut cred = libc::ucred {
            pid: 0,
            uid: 0,
            gid: 0,
        };
        let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
        // SAFETY: `cred` is a valid, writable `ucred` and `len` holds its exact size; the kernel
        // writes at most `len` bytes into it and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_PEERCRED,
                (&mut cred as *mut libc::ucred).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((Some(cred.pid), cred.uid, cred.gid))
    }
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    ))]
    {
        let mut uid: libc::uid_t = 0;
        let mut gid: libc::gid_t = 0;
        // SAFETY: both out-pointers are valid, writable locals of the types getpeereid expects.
        let r = unsafe { libc::getpeereid(fd, &mut uid, &mut gid) };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((None, uid, gid))
    }
    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "openbsd",
        target_os = "netbsd",
        target_os = "dragonfly"
    )))]
    {
        let _ = fd;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "peer credentials are not available on this platform",
        ))
    }
}

/// Binds a Unix datagram socket to a fresh abstract name chosen by the kernel (Linux
/// "autobind"), so a server can reply to it. Elsewhere the socket stays unnamed.
pub(crate) fn autobind_unix(sock: &RawSocket) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
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
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = sock;
        Ok(())
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::io;
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;

    use bytes::BytesMut;
    use socket2::{SockAddr, Socket as RawSocket};

    use super::{Outgoing, Received, MAX_BATCH};
    #[cfg(test)]
    pub(super) use gro_segment as parse_gro_segment;

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
            let name_len =
                (h.msg_namelen as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
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
        if h.msg_control.is_null()
            || (h.msg_controllen as usize) < std::mem::size_of::<libc::cmsghdr>()
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
            let want = unsafe { libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as libc::c_uint) }
                as usize;
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

    pub(super) fn get_udp_option(sock: &RawSocket, name: libc::c_int) -> io::Result<libc::c_int> {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` is a writable `int` and `len` its exact size; the kernel writes at most
        // `len` bytes.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_UDP,
                name,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(v)
    }

    pub(super) fn set_udp_option(
        sock: &RawSocket,
        name: libc::c_int,
        v: libc::c_int,
    ) -> io::Result<()> {
        // SAFETY: `v` is a readable `int` of the stated size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_UDP,
                name,
                (&v as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

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
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }

    pub(super) fn send_segmented(
        sock: &RawSocket,
        msgs: &[super::SegmentedMessage<'_>],
    ) -> io::Result<usize> {
        let n = msgs.len().min(MAX_BATCH);
        sendmmsg_each(sock, n, |i| (msgs[i].data, msgs[i].segment, msgs[i].addr))
    }

    pub(super) fn send_batch(sock: &RawSocket, msgs: &[Outgoing]) -> io::Result<usize> {
        let n = msgs.len().min(MAX_BATCH);
        sendmmsg_each(sock, n, |i| {
            (&msgs[i].data[..], None, msgs[i].addr.as_ref())
        })
    }

    /// Sets up `h` to carry a `UDP_SEGMENT` control message of `segment` in `control`.
    fn set_segment(h: &mut libc::msghdr, control: &mut Control, segment: u16) {
        h.msg_control = control.0.as_mut_ptr().cast();
        // SAFETY: a length constant for a `u16` payload.
        h.msg_controllen =
            unsafe { libc::CMSG_SPACE(std::mem::size_of::<u16>() as libc::c_uint) } as _;
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
                libc::MSG_NOSIGNAL as _,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
}

/// The process-wide "dead" socket that closed descriptors are pointed at: an unconnected Unix
/// stream socket, on which every operation fails. Made once, before descriptors can run out.
fn dead_socket() -> Option<std::os::fd::RawFd> {
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
pub(crate) fn close_in_place(fd: std::os::fd::RawFd) -> io::Result<()> {
    let Some(dead) = dead_socket() else {
        // SAFETY: `fd` is open (the caller's contract); shutdown only changes socket state.
        let r = unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        return if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
    };
    loop {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: `dead` is a descriptor this module owns for the life of the process; `fd` is
        // open and owned by the caller, so replacing what it refers to cannot touch a
        // descriptor someone else owns. dup3 is atomic: there is no moment where `fd` is free
        // for another thread's `open` to take.
        let r = unsafe { libc::dup3(dead, fd, libc::O_CLOEXEC) };
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        // SAFETY: as for dup3 above; dup2 is atomic too. The close-on-exec flag is set right
        // after (a fork in between could leak the dead socket to a child, which is harmless).
        let r = unsafe {
            let r = libc::dup2(dead, fd);
            if r >= 0 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            r
        };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::linux::{parse_gro_segment, Control};

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

// ---- zero-copy: pipes, splice and sendfile (copy_to, send_file) ----

/// Whether this platform has `splice` and `sendfile` between sockets, pipes and files. Where it
/// does not, `copy_to` and `send_file` take their portable buffer-copy path.
pub(crate) const HAS_SPLICE: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// A non-blocking pipe that `splice` moves socket bytes through: read end and write end, and
/// its capacity in bytes.
#[derive(Debug)]
pub(crate) struct Pipe {
    read: std::os::fd::OwnedFd,
    write: std::os::fd::OwnedFd,
    capacity: usize,
}

impl Pipe {
    /// The read end (bytes leave the pipe here).
    pub(crate) fn read_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.read.as_raw_fd()
    }

    /// The write end (bytes enter the pipe here).
    pub(crate) fn write_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.write.as_raw_fd()
    }

    /// How many bytes the pipe holds at most.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Makes a non-blocking, close-on-exec pipe and asks the kernel for `size` bytes of capacity
/// (`F_SETPIPE_SZ`). A refused size (over `/proc/sys/fs/pipe-max-size`, or the user's pipe
/// budget spent) keeps the kernel's default; the capacity actually granted is reported.
pub(crate) fn pipe(size: usize) -> io::Result<Pipe> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::{FromRawFd, OwnedFd};
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: pipe2 writes two new descriptors into the two-element array it is given.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: both descriptors were just created by pipe2 and nothing else owns them.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let want = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: F_SETPIPE_SZ and F_GETPIPE_SZ only change or report the capacity of the pipe
        // behind a descriptor we own; they take and return plain integers.
        let capacity = unsafe {
            let _ = libc::fcntl(fds[1], libc::F_SETPIPE_SZ, want);
            libc::fcntl(fds[1], libc::F_GETPIPE_SZ)
        };
        if capacity <= 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Pipe {
            read,
            write,
            capacity: capacity as usize,
        })
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = size;
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "splice is not available on this platform",
        ))
    }
}

/// Moves up to `len` bytes from `from` to `to` inside the kernel (`splice`); one of them must be
/// a pipe. Never blocks: `SPLICE_F_NONBLOCK` with non-blocking descriptors, so a socket with
/// nothing to read, a full socket buffer or a full pipe all end in `WouldBlock`. `Ok(0)` is end
/// of stream when reading from a socket.
pub(crate) fn splice(
    from: std::os::fd::RawFd,
    to: std::os::fd::RawFd,
    len: usize,
) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: both descriptors are open for the duration of the call (their owners hold
        // them); null offsets mean "the descriptor's own position", which for sockets and
        // pipes is the stream itself. splice touches no memory of ours.
        let r = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(r as usize)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (from, to, len);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Sends up to `len` bytes of `file` from `offset` on the socket `sock` (`sendfile`), without
/// the bytes entering the process; `offset` moves past what was sent. `Ok(0)` means the file
/// ends at `offset`. On a non-blocking socket a full buffer is `WouldBlock`.
pub(crate) fn sendfile(
    sock: std::os::fd::RawFd,
    file: std::os::fd::RawFd,
    offset: &mut u64,
    len: usize,
) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut off = libc::off64_t::try_from(*offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // At most what one call may move (Linux caps it at 0x7ffff000 anyway).
        let len = len.min(0x7fff_f000);
        // SAFETY: both descriptors are open for the duration of the call (their owners hold
        // them); `off` is a valid, writable local the kernel updates; no other memory of ours
        // is touched.
        let r = unsafe { libc::sendfile64(sock, file, &mut off, len) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        *offset = off as u64;
        Ok(r as usize)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (sock, file, offset, len);
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

// ---- Stream reads and writes (the hot path of every connection) ----

/// Flags for every stream send: a reset peer is an error (`EPIPE`), never a `SIGPIPE`,
/// whatever the host process does with that signal. Elsewhere the socket option
/// `SO_NOSIGPIPE` does the same job where the platform has it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
/// Flags for every stream send (see the Linux variant).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// One `recv` on a non-blocking stream socket.
///
/// On Linux this is the system call itself: glibc's `recv` wrapper is a thread-cancellation
/// point, which costs two extra calls around every receive (about 30 instructions, 4% of an
/// echo) for a feature asock never uses: it never cancels threads, and on a non-blocking socket
/// there is nothing to cancel.
#[inline]
pub(crate) fn recv(fd: std::os::fd::RawFd, buf: &mut [u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call, and a null source
    // address with a zero length asks for none. A stale or closed `fd` only fails (EBADF).
    let n = unsafe {
        libc::syscall(
            libc::SYS_recvfrom,
            fd as libc::c_long,
            buf.as_mut_ptr() as libc::c_long,
            buf.len() as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call; a stale `fd` fails.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) } as libc::c_long;
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One `send` on a non-blocking stream socket, with [`SEND_FLAGS`]; a direct system call on
/// Linux for the reason given on [`recv`].
#[inline]
pub(crate) fn send(fd: std::os::fd::RawFd, buf: &[u8]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: `buf` is readable for `buf.len()` bytes for the whole call, and a null
    // destination with a zero length names none (the socket is connected). A stale `fd` fails.
    let n = unsafe {
        libc::syscall(
            libc::SYS_sendto,
            fd as libc::c_long,
            buf.as_ptr() as libc::c_long,
            buf.len() as libc::c_long,
            SEND_FLAGS as libc::c_long,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    // SAFETY: `buf` is readable for `buf.len()` bytes for the whole call; a stale `fd` fails.
    let n = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), SEND_FLAGS) } as libc::c_long;
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
