//! Unix-domain specifics shared by the stream and datagram builders: replacing a stale socket
//! file, removing the file when the socket closes, and peer credentials.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Socket as RawSocket, Type};

use super::Socket;
use crate::address::SocketAddress;
use crate::error::{Error, Result};
use crate::sys;

/// The file-system path behind a Unix address, or `None` for a Linux abstract name (`@name`)
/// or an IP address.
pub(crate) fn file_path(addr: &SocketAddress) -> Option<&Path> {
    let p = addr.as_unix()?;
    if p.as_os_str().is_empty() || p.to_str().is_some_and(|s| s.starts_with('@')) {
        return None;
    }
    Some(p)
}

/// Gets `path` ready for a bind. When a file exists there the bind fails with
/// [`Error::AddressInUse`], unless `replace_stale` is on and the file is a socket that nothing
/// accepts on (or receives on): then it is removed. A file that is not a socket is never
/// touched.
pub(crate) fn prepare_bind(
    addr: &SocketAddress,
    path: &Path,
    ty: Type,
    replace_stale: bool,
) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("inspect socket path", e)),
    };
    let in_use = |why: &str| Error::AddressInUse {
        addr: addr.clone(),
        source: Some(io::Error::new(io::ErrorKind::AddrInUse, why.to_string())),
    };
    if !meta.file_type().is_socket() {
        return Err(in_use("a file that is not a socket exists at this path"));
    }
    if !replace_stale {
        return Err(in_use("a socket file exists at this path"));
    }
    if is_live(path, ty)? {
        return Err(in_use("a live socket listens at this path"));
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("remove stale socket file", e)),
    }
}

/// Whether something accepts (or receives) on the socket file at `path`.
fn is_live(path: &Path, ty: Type) -> Result<bool> {
    let probe = RawSocket::new(Domain::UNIX, ty.nonblocking(), None)
        .map_err(|e| Error::io("create socket", e))?;
    let sa = socket2::SockAddr::unix(path).map_err(|e| Error::io("bind", e))?;
    match probe.connect(&sa) {
        Ok(()) => Ok(true),
        Err(e) => match e.raw_os_error() {
            // Nobody is bound to the file any more.
            Some(libc::ECONNREFUSED) | Some(libc::ENOENT) => Ok(false),
            // A listener whose backlog is full, a connect still in progress, or a socket of the
            // other type: all mean a live owner.
            Some(libc::EAGAIN) | Some(libc::EINPROGRESS) | Some(libc::EPROTOTYPE) => Ok(true),
            _ => Err(Error::io("probe socket path", e)),
        },
    }
}

/// Removes a socket file that a bind created, once, when the socket closes or is dropped; only
/// if the file at the path is still the one that bind created.
#[derive(Debug)]
pub(crate) struct PathGuard {
    path: PathBuf,
    dev: u64,
    ino: u64,
    removed: AtomicBool,
}

impl PathGuard {
    /// Remembers the file a bind just created at `addr`, if it is a file at all.
    pub(crate) fn after_bind(addr: &SocketAddress) -> Option<PathGuard> {
        let path = file_path(addr)?;
        let meta = std::fs::symlink_metadata(path).ok()?;
        Some(PathGuard {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            removed: AtomicBool::new(false),
        })
    }

    /// Removes the file now (idempotent).
    pub(crate) fn remove(&self) {
        if self.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino && meta.file_type().is_socket() {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Who is on the other end of a Unix-domain stream socket: see [`Socket::peer_credentials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerCredentials {
    /// The peer's process id, where the OS reports it (Linux: yes; macOS, BSDs: no).
    pub pid: Option<i32>,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

impl Socket {
    /// The process, user and group of the peer of a Unix-domain stream socket, as the kernel
    /// recorded them when the connection was made (`SO_PEERCRED` on Linux, `getpeereid`
    /// elsewhere).
    ///
    /// Fails for a TCP socket, and with an `Unsupported` I/O error where the OS has no such call.
    ///
    /// ```no_run
    /// # async fn demo(selector: asock::SelectorManager) -> asock::Result<()> {
    /// use asock::SocketAddress;
    /// let path = SocketAddress::Unix("/tmp/app.sock".into());
    /// let server = asock::a_socket(&selector).tcp().bind(&path).await?;
    /// let client = server.accept().await?;
    /// let who = client.peer_credentials()?;
    /// println!("peer uid {} pid {:?}", who.uid, who.pid);
    /// # Ok(()) }
    /// ```
    pub fn peer_credentials(&self) -> Result<PeerCredentials> {
        if self.local_address().as_unix().is_none() {
            return Err(Error::io(
                "peer credentials",
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "peer credentials exist only for Unix-domain sockets",
                ),
            ));
        }
        let (pid, uid, gid) = sys::peer_credentials(self.as_raw_fd())
            .map_err(|e| Error::io("peer credentials", e))?;
        Ok(PeerCredentials { pid, uid, gid })
    }
}
