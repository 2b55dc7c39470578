//! The io_uring floor: a byte-echo loop on one io_uring, one thread, no runtime. It is the
//! io_uring counterpart of `mio-echo`: what an echo costs when the read and the write are not
//! system calls of their own but entries in a submission queue.
//!
//! With every feature on (the default, each one dropped when the kernel refuses it):
//!
//! - one **multishot accept** on the listener, accepting straight into the ring's table of
//!   **registered (fixed) descriptors**, so no accepted socket ever has a file descriptor;
//! - one **multishot receive** per connection, taking its buffers from a **provided buffer
//!   ring** shared by all connections (`--buffers` buffers of `--buf` bytes);
//! - each received buffer is sent back as it is (no copy); one send in flight per connection
//!   keeps the echo in order, and a buffer goes back to the buffer ring once it is sent;
//! - everything a loop turn queued (sends, re-armed receives, closes) goes to the kernel in
//!   **one `io_uring_enter`**, which also waits for the next completions;
//! - the ring is set up with `SINGLE_ISSUER` and `DEFER_TASKRUN` (completion work runs only
//!   inside that `io_uring_enter`, in this thread), plus `SUBMIT_ALL` and `NO_SQARRAY`, and the
//!   ring's own descriptor is registered.
//!
//! The options turn features off, one at a time, to measure what each buys:
//!
//! - `--setup plain|coop|single|defer`: ring setup flags: none; `COOP_TASKRUN`; plus
//!   `SINGLE_ISSUER`; `SINGLE_ISSUER | DEFER_TASKRUN` (default). A level the kernel refuses
//!   falls back to the one before it.
//! - `--single-shot`: accept and receive one at a time, each connection receiving into its own
//!   `--buf`-byte buffer (no buffer ring), re-armed after its echo was sent.
//! - `--no-fixed`: ordinary descriptors for the sockets and the ring.
//! - `--submit-each`: one `io_uring_enter` per queued entry instead of one per loop turn.
//!
//! The flags and features in use are printed on stderr at start (`uring-echo: ...`); the first
//! stdout line is `Started io_uring echo server at ADDR`, as for every peer.
//!
//! `uring-echo [ADDR] [--buf BYTES] [--buffers N] [--setup LEVEL] [--single-shot] [--no-fixed]
//! [--submit-each]`

#[cfg(target_os = "linux")]
fn main() {
    let opts = linux::Opts::parse();
    if let Err(e) = linux::run(opts) {
        asock_bench_peers::die(e);
    }
}

#[cfg(not(target_os = "linux"))]
fn main() {
    asock_bench_peers::die("uring-echo needs Linux (io_uring)");
}

#[cfg(target_os = "linux")]
mod linux {
    use std::alloc::{alloc_zeroed, Layout};
    use std::collections::VecDeque;
    use std::io::{self, ErrorKind};
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::os::unix::io::RawFd;
    use std::sync::atomic::{AtomicU16, Ordering};

    use io_uring::types::{BufRingEntry, DestinationSlot};
    use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe, SubmissionQueue, Submitter};
    use slab::Slab;

    const USAGE: &str = "uring-echo [ADDR] [--buf BYTES] [--buffers N] \
                         [--setup plain|coop|single|defer] [--single-shot] [--no-fixed] \
                         [--submit-each]";

    /// Submission queue entries; the completion queue gets four times as many.
    const SQ_ENTRIES: u32 = 4096;
    /// The buffer group id of the provided buffer ring.
    const BGID: u16 = 0;

    /// What a completion is for: the high 32 bits of its `user_data` (the low 32 are the
    /// connection's key).
    const ACCEPT: u64 = 1;
    const RECV: u64 = 2;
    const SEND: u64 = 3;
    const CLOSE: u64 = 4;
    const SHUTDOWN: u64 = 5;
    const SIGNAL: u64 = 6;

    /// Ring setup flags, in the order they are turned on.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Setup {
        /// No setup flags.
        Plain,
        /// `COOP_TASKRUN`: no interrupt of the task when a completion arrives.
        Coop,
        /// `COOP_TASKRUN | SINGLE_ISSUER`.
        Single,
        /// `SINGLE_ISSUER | DEFER_TASKRUN`: completion work runs only in `io_uring_enter`.
        Defer,
    }

    impl Setup {
        fn name(self) -> &'static str {
            match self {
                Setup::Plain => "none",
                Setup::Coop => "COOP_TASKRUN",
                Setup::Single => "COOP_TASKRUN|SINGLE_ISSUER",
                Setup::Defer => "SINGLE_ISSUER|DEFER_TASKRUN",
            }
        }

        /// The next level down, for a kernel that refuses this one.
        fn fallback(self) -> Option<Setup> {
            match self {
                Setup::Defer => Some(Setup::Single),
                Setup::Single => Some(Setup::Coop),
                Setup::Coop => Some(Setup::Plain),
                Setup::Plain => None,
            }
        }
    }

    /// Command-line options.
    #[derive(Debug, Clone)]
    pub struct Opts {
        addr: String,
        buf: u32,
        buffers: u16,
        setup: Setup,
        multishot: bool,
        fixed: bool,
        submit_each: bool,
    }

    impl Opts {
        /// Parses the command line; exits with status 2 on a usage error.
        pub fn parse() -> Opts {
            let mut o = Opts {
                addr: "127.0.0.1:2323".into(),
                buf: 8 * 1024,
                buffers: 1024,
                setup: Setup::Defer,
                multishot: true,
                fixed: true,
                submit_each: false,
            };
            let fail = |msg: String| -> ! {
                eprintln!("error: {msg}\nusage: {USAGE}");
                std::process::exit(2)
            };
            let mut it = std::env::args().skip(1);
            while let Some(arg) = it.next() {
                let mut value = || {
                    it.next()
                        .unwrap_or_else(|| fail(format!("{arg} needs a value")))
                };
                match arg.as_str() {
                    "--buf" => {
                        let v = value();
                        o.buf = v
                            .parse()
                            .ok()
                            .filter(|n| *n > 0 && *n <= 1 << 20)
                            .unwrap_or_else(|| fail(format!("bad --buf (1..=1048576): {v}")));
                    }
                    "--buffers" => {
                        let v = value();
                        o.buffers = v
                            .parse()
                            .ok()
                            .filter(|n: &u16| n.is_power_of_two() && *n <= 1 << 15)
                            .unwrap_or_else(|| {
                                fail(format!("bad --buffers (a power of two <= 32768): {v}"))
                            });
                    }
                    "--setup" => {
                        let v = value();
                        o.setup = match v.as_str() {
                            "plain" => Setup::Plain,
                            "coop" => Setup::Coop,
                            "single" => Setup::Single,
                            "defer" => Setup::Defer,
                            _ => fail(format!("bad --setup: {v}")),
                        };
                    }
                    "--single-shot" => o.multishot = false,
                    "--no-fixed" => o.fixed = false,
                    "--submit-each" => o.submit_each = true,
                    "-h" | "--help" => {
                        println!("usage: {USAGE}");
                        std::process::exit(0);
                    }
                    s if s.starts_with('-') => fail(format!("unknown option {s}")),
                    s => o.addr = s.to_string(),
                }
            }
            o
        }
    }

    /// A socket as the ring names it.
    #[derive(Debug, Clone, Copy)]
    enum Fd {
        /// An ordinary file descriptor.
        Raw(RawFd),
        /// An index into the ring's registered descriptors.
        Fixed(u32),
    }

    /// Builds opcode `$op` on a [`Fd`]: both arms give the same opcode type.
    macro_rules! on_fd {
        ($fd:expr, $op:ident $(, $arg:expr)*) => {
            match $fd {
                Fd::Raw(f) => opcode::$op::new(types::Fd(f) $(, $arg)*),
                Fd::Fixed(i) => opcode::$op::new(types::Fixed(i) $(, $arg)*),
            }
        };
    }

    /// Received bytes waiting to be sent back: `len` bytes from `off` of a buffer.
    #[derive(Debug)]
    struct Chunk {
        /// A buffer ring buffer id, or `None` for the connection's own buffer.
        bid: Option<u16>,
        off: u32,
        len: u32,
    }

    /// One accepted connection.
    struct Conn {
        fd: Fd,
        /// Received and not yet sent, in order; the front one is being sent while `sending`.
        queue: VecDeque<Chunk>,
        /// A receive is armed (multishot: it has not posted its last completion yet).
        receiving: bool,
        sending: bool,
        /// The peer's FIN was received: close once the queue is sent.
        eof: bool,
        /// An error: close once nothing is in flight (the queue was dropped).
        failed: bool,
        closing: bool,
        /// `--single-shot`: the buffer this connection receives into.
        own: Vec<u8>,
    }

    /// A provided buffer ring: `entries` buffers of `size` bytes, handed to the kernel through
    /// a ring of `BufRingEntry` that the kernel consumes from and we refill at the tail.
    struct BufRing {
        entries: *mut BufRingEntry,
        mask: u16,
        tail: u16,
        bufs: *mut u8,
        size: u32,
        /// Buffers the kernel has (or will have at the next `publish`).
        free: usize,
    }

    impl BufRing {
        /// Allocates the ring and its buffers (for the life of the process: the kernel may use
        /// them until the ring is torn down at exit) and registers it as group `BGID`.
        fn register(sub: &Submitter<'_>, count: u16, size: u32) -> io::Result<BufRing> {
            let ring_layout = Layout::from_size_align(
                usize::from(count) * std::mem::size_of::<BufRingEntry>(),
                4096,
            )
            .map_err(io::Error::other)?;
            let bufs_layout = Layout::from_size_align(usize::from(count) * size as usize, 4096)
                .map_err(io::Error::other)?;
            // SAFETY: both layouts have a non-zero size (count >= 1, size >= 1).
            let (entries, bufs) = unsafe {
                (
                    alloc_zeroed(ring_layout).cast::<BufRingEntry>(),
                    alloc_zeroed(bufs_layout),
                )
            };
            if entries.is_null() || bufs.is_null() {
                return Err(io::Error::new(ErrorKind::OutOfMemory, "buffer ring"));
            }
            // SAFETY: `entries` is page-aligned memory for `count` entries that is never freed
            // (so it outlives the registration), and `count` is a power of two <= 32768.
            unsafe { sub.register_buf_ring_with_flags(entries as u64, count, BGID, 0)? };
            let mut ring = BufRing {
                entries,
                mask: count - 1,
                tail: 0,
                bufs,
                size,
                free: 0,
            };
            for bid in 0..count {
                ring.give(bid);
            }
            ring.publish();
            Ok(ring)
        }

        /// Puts buffer `bid` back at the tail (seen by the kernel after `publish`).
        fn give(&mut self, bid: u16) {
            // SAFETY: `tail & mask` is within the `mask + 1` entries allocated, and `bid` is a
            // buffer id below the count, so the address is inside the buffer allocation. The
            // kernel only reads entries between its head and the published tail, and this one
            // is past the published tail until `publish`.
            unsafe {
                let e = &mut *self.entries.add(usize::from(self.tail & self.mask));
                e.set_addr(self.bufs.add(usize::from(bid) * self.size as usize) as u64);
                e.set_len(self.size);
                e.set_bid(bid);
            }
            self.tail = self.tail.wrapping_add(1);
            self.free += 1;
        }

        /// Makes every buffer given back so far visible to the kernel.
        fn publish(&self) {
            // SAFETY: the tail field overlays the first entry's reserved field, inside the
            // allocation, 2-byte aligned; the kernel reads it as an atomic u16.
            unsafe {
                let tail = BufRingEntry::tail(self.entries).cast_mut();
                AtomicU16::from_ptr(tail).store(self.tail, Ordering::Release);
            }
        }

        /// Where `off` bytes into buffer `bid` are.
        fn ptr(&self, bid: u16, off: u32) -> *const u8 {
            // SAFETY: `bid` came from the kernel out of this ring (below the count) and
            // `off < size`, so the address is inside the buffer allocation.
            unsafe {
                self.bufs
                    .add(usize::from(bid) * self.size as usize + off as usize)
                    .cast_const()
            }
        }
    }

    /// What the loop knows besides the completion queue.
    struct Server<'a> {
        sub: Submitter<'a>,
        sq: SubmissionQueue<'a>,
        conns: Slab<Conn>,
        /// `None` with `--single-shot`.
        bufs: Option<BufRing>,
        listener: RawFd,
        buf: u32,
        fixed: bool,
        multishot: bool,
        submit_each: bool,
        /// Connections whose multishot receive ran out of buffers, to re-arm once some are back.
        starved: Vec<usize>,
    }

    fn user_data(kind: u64, key: usize) -> u64 {
        (kind << 32) | key as u64
    }

    /// Opens the listener with `TCP_NODELAY` (accepted sockets inherit it) and a backlog for
    /// 1,000 connections arriving at once.
    fn listen(addr: &str) -> io::Result<TcpListener> {
        let addr: std::net::SocketAddr = addr
            .parse()
            .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
        let listener = TcpListener::bind(addr)?;
        let fd = listener.as_raw_fd();
        let one: libc::c_int = 1;
        // SAFETY: `fd` is an open socket; the option value is a valid c_int of the given size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a listening socket; listen again only raises its backlog.
        if unsafe { libc::listen(fd, 4096) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(listener)
    }

    /// Builds the ring with `want`'s setup flags, or the highest level below it the kernel
    /// accepts; `SUBMIT_ALL | NO_SQARRAY` are added where accepted. Returns the ring, the level,
    /// and whether the extras were taken.
    fn build_ring(want: Setup) -> io::Result<(IoUring, Setup, bool)> {
        let mut level = want;
        loop {
            for extras in [true, false] {
                let mut b = IoUring::builder();
                b.setup_cqsize(SQ_ENTRIES * 4);
                if extras {
                    b.setup_submit_all().setup_no_sqarray();
                }
                match level {
                    Setup::Plain => {}
                    Setup::Coop => {
                        b.setup_coop_taskrun();
                    }
                    Setup::Single => {
                        b.setup_coop_taskrun().setup_single_issuer();
                    }
                    Setup::Defer => {
                        b.setup_single_issuer().setup_defer_taskrun();
                    }
                }
                match b.build(SQ_ENTRIES) {
                    Ok(ring) => return Ok((ring, level, extras)),
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                    Err(e) => return Err(e),
                }
            }
            level = level.fallback().ok_or_else(|| {
                io::Error::other("io_uring_setup refused every set of flags, even none")
            })?;
        }
    }

    /// The highest number of sockets the fixed descriptor table is sized for: `RLIMIT_NOFILE`
    /// (the kernel's limit for it), at most 65,536.
    fn fixed_slots() -> u32 {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is a valid rlimit to fill in.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return 1024;
        }
        lim.rlim_cur.min(65_536) as u32
    }

    /// Blocks SIGTERM and SIGINT and returns a signalfd that becomes readable when one of them
    /// arrives. The loop polls it through the ring and returns, so the process exits normally
    /// even where a signal cannot interrupt `io_uring_enter` (under valgrind, which holds
    /// signals back during that system call and then never gets to deliver them).
    fn stop_signals() -> io::Result<RawFd> {
        // SAFETY: `set` is initialised by sigemptyset before use; the calls only read it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            if libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(fd)
        }
    }

    /// Starts the server and runs its loop until SIGTERM or SIGINT (then returns `Ok`) or an
    /// error.
    pub fn run(opts: Opts) -> io::Result<()> {
        let listener = listen(&opts.addr)?;
        let (mut ring, setup, extras) = build_ring(opts.setup)?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for (code, name) in [
            (opcode::Accept::CODE, "ACCEPT"),
            (opcode::Recv::CODE, "RECV"),
            (opcode::Send::CODE, "SEND"),
            (opcode::Close::CODE, "CLOSE"),
            (opcode::Shutdown::CODE, "SHUTDOWN"),
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::other(format!(
                    "this kernel's io_uring has no {name} operation"
                )));
            }
        }
        let features = ring_features(ring.params());
        let (mut sub, sq, mut cq) = ring.split();
        let mut notes = vec![format!(
            "setup={}{}",
            setup.name(),
            if extras { "|SUBMIT_ALL|NO_SQARRAY" } else { "" }
        )];
        if setup != opts.setup {
            notes.push(format!("(asked for {}: refused)", opts.setup.name()));
        }
        let mut fixed = opts.fixed;
        if fixed {
            let slots = fixed_slots();
            match sub.register_files_sparse(slots) {
                Ok(()) => notes.push(format!("fixed_files={slots}")),
                Err(e) => {
                    notes.push(format!("fixed_files=no ({e})"));
                    fixed = false;
                }
            }
            match sub.register_ring_fd() {
                Ok(()) => notes.push("ring_fd=registered".into()),
                Err(e) => notes.push(format!("ring_fd=plain ({e})")),
            }
        } else {
            notes.push("fixed_files=no ring_fd=plain".into());
        }
        let mut multishot = opts.multishot;
        let bufs = if multishot {
            match BufRing::register(&sub, opts.buffers, opts.buf) {
                Ok(b) => {
                    notes.push(format!(
                        "accept=multishot recv=multishot buf_ring={}x{}",
                        opts.buffers, opts.buf
                    ));
                    Some(b)
                }
                Err(e) => {
                    notes.push(format!(
                        "buf_ring=no ({e}) accept=single recv=single own_buf={}",
                        opts.buf
                    ));
                    multishot = false;
                    None
                }
            }
        } else {
            notes.push(format!("accept=single recv=single own_buf={}", opts.buf));
            None
        };
        notes.push(if opts.submit_each {
            "enter=per-entry".into()
        } else {
            "enter=per-turn".into()
        });
        notes.push(features);
        eprintln!("uring-echo: {}", notes.join(" "));

        let mut server = Server {
            sub,
            sq,
            conns: Slab::new(),
            bufs,
            listener: listener.as_raw_fd(),
            buf: opts.buf,
            fixed,
            multishot,
            submit_each: opts.submit_each,
            starved: Vec::new(),
        };
        server.arm_accept()?;
        let signals = stop_signals()?;
        server.push(
            opcode::PollAdd::new(types::Fd(signals), libc::POLLIN as u32)
                .build()
                .user_data(user_data(SIGNAL, 0)),
        )?;
        asock_bench_peers::announce(&format!(
            "Started io_uring echo server at {}",
            listener.local_addr()?
        ));

        loop {
            if let Some(b) = &server.bufs {
                b.publish();
            }
            server.sq.sync();
            match server.sub.submit_and_wait(1) {
                Ok(_) => {}
                // EBUSY: the completion queue is full; reap it first.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => {}
                Err(e) => return Err(e),
            }
            loop {
                cq.sync();
                if cq.is_empty() {
                    break;
                }
                for cqe in &mut cq {
                    if cqe.user_data() >> 32 == SIGNAL {
                        return Ok(());
                    }
                    server.complete(cqe.user_data(), cqe.result(), cqe.flags())?;
                }
            }
            server.rearm_starved()?;
        }
    }

    /// The kernel features relevant here, for the start-up line.
    fn ring_features(p: &io_uring::Parameters) -> String {
        format!(
            "feat: nodrop={} fast_poll={} ext_arg={} bundle={}",
            p.is_feature_nodrop(),
            p.is_feature_fast_poll(),
            p.is_feature_ext_arg(),
            p.is_feature_recvsend_bundle()
        )
    }

    impl Server<'_> {
        /// Queues `e`; when the queue is full, submits what it holds first.
        fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
            loop {
                // SAFETY: every buffer an entry points to stays allocated and untouched until
                // its completion is reaped: buffer ring buffers are never freed and go back to
                // the ring only after their send completed; a connection's own buffer lives in
                // its slab entry, which is removed only after its close completed, and nothing
                // else is in flight by then.
                if unsafe { self.sq.push(&e) }.is_ok() {
                    break;
                }
                self.sq.sync();
                self.sub.submit()?;
                self.sq.sync();
            }
            if self.submit_each {
                self.sq.sync();
                self.sub.submit()?;
            }
            Ok(())
        }

        fn arm_accept(&mut self) -> io::Result<()> {
            let fd = types::Fd(self.listener);
            let e = if self.multishot {
                opcode::AcceptMulti::new(fd)
                    .allocate_file_index(self.fixed)
                    .build()
            } else {
                let slot = self.fixed.then(DestinationSlot::auto_target);
                opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                    .file_index(slot)
                    .build()
            };
            self.push(e.user_data(user_data(ACCEPT, 0)))
        }

        fn arm_recv(&mut self, key: usize) -> io::Result<()> {
            let conn = &mut self.conns[key];
            conn.receiving = true;
            let e = if self.multishot {
                on_fd!(conn.fd, RecvMulti, BGID).build()
            } else {
                if conn.own.is_empty() {
                    conn.own = vec![0; self.buf as usize];
                }
                on_fd!(conn.fd, Recv, conn.own.as_mut_ptr(), self.buf).build()
            };
            self.push(e.user_data(user_data(RECV, key)))
        }

        /// Starts sending the front of the queue, unless a send is in flight.
        fn send_next(&mut self, key: usize) -> io::Result<()> {
            let conn = &mut self.conns[key];
            if conn.sending {
                return Ok(());
            }
            let Some(c) = conn.queue.front() else {
                return Ok(());
            };
            let ptr = match c.bid {
                Some(bid) => self
                    .bufs
                    .as_ref()
                    .expect("ring buffer ids only come with a buffer ring")
                    .ptr(bid, c.off),
                // SAFETY: `off < len <= own.len()`.
                None => unsafe { conn.own.as_ptr().add(c.off as usize) },
            };
            conn.sending = true;
            let e = on_fd!(conn.fd, Send, ptr, c.len - c.off)
                .flags(libc::MSG_NOSIGNAL)
                .build();
            self.push(e.user_data(user_data(SEND, key)))
        }

        /// Closes a connection that is done (end of stream or error) once nothing of it is in
        /// flight.
        fn finish(&mut self, key: usize) -> io::Result<()> {
            let conn = &mut self.conns[key];
            if conn.closing
                || !(conn.eof || conn.failed)
                || conn.receiving
                || conn.sending
                || !conn.queue.is_empty()
            {
                return Ok(());
            }
            conn.closing = true;
            let e = on_fd!(conn.fd, Close).build();
            self.push(e.user_data(user_data(CLOSE, key)))
        }

        /// An error on a connection: drop what it has queued and end its receive.
        fn fail(&mut self, key: usize) -> io::Result<()> {
            let conn = &mut self.conns[key];
            if conn.failed {
                return Ok(());
            }
            conn.failed = true;
            let start = usize::from(conn.sending);
            let dropped: Vec<u16> = conn.queue.drain(start..).filter_map(|c| c.bid).collect();
            if let Some(b) = &mut self.bufs {
                for bid in dropped {
                    b.give(bid);
                }
            }
            if conn.receiving {
                let e = on_fd!(conn.fd, Shutdown, libc::SHUT_RDWR).build();
                self.push(e.user_data(user_data(SHUTDOWN, key)))?;
            }
            self.finish(key)
        }

        fn complete(&mut self, data: u64, res: i32, flags: u32) -> io::Result<()> {
            let key = (data & 0xffff_ffff) as usize;
            match data >> 32 {
                ACCEPT => self.accepted(res, flags),
                RECV => self.received(key, res, flags),
                SEND => self.sent(key, res),
                CLOSE => {
                    self.conns.remove(key);
                    Ok(())
                }
                // A failed shutdown changes nothing: the receive ends with the error anyway.
                SHUTDOWN => Ok(()),
                kind => Err(io::Error::other(format!(
                    "completion of unknown kind {kind}"
                ))),
            }
        }

        fn accepted(&mut self, res: i32, flags: u32) -> io::Result<()> {
            if res == -libc::EINVAL && self.multishot && !cqueue::more(flags) {
                return Err(io::Error::other(
                    "this kernel refused a multishot accept; run with --single-shot",
                ));
            }
            if res >= 0 {
                let fd = if self.fixed {
                    Fd::Fixed(res as u32)
                } else {
                    Fd::Raw(res)
                };
                let key = self.conns.insert(Conn {
                    fd,
                    queue: VecDeque::new(),
                    receiving: false,
                    sending: false,
                    eof: false,
                    failed: false,
                    closing: false,
                    own: Vec::new(),
                });
                self.arm_recv(key)?;
            }
            // Other errors (an aborted handshake, out of descriptors): accept again.
            if !cqueue::more(flags) {
                self.arm_accept()?;
            }
            Ok(())
        }

        fn received(&mut self, key: usize, res: i32, flags: u32) -> io::Result<()> {
            let more = self.multishot && cqueue::more(flags);
            let conn = &mut self.conns[key];
            if !more {
                conn.receiving = false;
            }
            if res > 0 {
                let bid = cqueue::buffer_select(flags);
                if let (Some(_), Some(b)) = (bid, &mut self.bufs) {
                    b.free -= 1;
                }
                if conn.failed {
                    if let (Some(bid), Some(b)) = (bid, &mut self.bufs) {
                        b.give(bid);
                    }
                } else {
                    conn.queue.push_back(Chunk {
                        bid,
                        off: 0,
                        len: res as u32,
                    });
                    self.send_next(key)?;
                    // A multishot receive that ended with data (its completion queue was
                    // full): arm it again. A single-shot one is re-armed once the echo is sent.
                    if self.multishot && !more {
                        self.arm_recv(key)?;
                    }
                }
            } else if res == 0 {
                conn.eof = true;
            } else if res == -libc::ENOBUFS && self.multishot && !conn.failed {
                self.starved.push(key);
            } else if res == -libc::EINVAL && self.multishot {
                return Err(io::Error::other(
                    "this kernel refused a multishot receive; run with --single-shot",
                ));
            } else {
                self.fail(key)?;
            }
            self.finish(key)
        }

        fn sent(&mut self, key: usize, res: i32) -> io::Result<()> {
            let conn = &mut self.conns[key];
            conn.sending = false;
            let c = conn
                .queue
                .front_mut()
                .expect("a send completes only for a queued chunk");
            let done = if res < 0 || conn.failed {
                true
            } else {
                c.off += res as u32;
                c.off >= c.len
            };
            let failed = conn.failed;
            let rearm = done && !self.multishot && res >= 0 && !failed && !conn.eof;
            if done {
                let c = conn.queue.pop_front().expect("the front chunk is there");
                if let (Some(bid), Some(b)) = (c.bid, &mut self.bufs) {
                    b.give(bid);
                }
            }
            if res < 0 {
                self.fail(key)?;
            } else if !failed {
                self.send_next(key)?;
                // `--single-shot`: the echo is out, receive the next bytes.
                if rearm {
                    self.arm_recv(key)?;
                }
            }
            self.finish(key)
        }

        /// Re-arms the receives that ran out of buffers, once some are back in the ring.
        fn rearm_starved(&mut self) -> io::Result<()> {
            if self.starved.is_empty() || self.bufs.as_ref().is_none_or(|b| b.free == 0) {
                return Ok(());
            }
            for key in std::mem::take(&mut self.starved) {
                let Some(conn) = self.conns.get(key) else {
                    continue;
                };
                if !conn.receiving && !conn.eof && !conn.failed && !conn.closing {
                    self.arm_recv(key)?;
                }
            }
            Ok(())
        }
    }
}
