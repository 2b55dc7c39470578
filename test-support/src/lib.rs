//! Helpers shared by the integration tests of `asock` (`asock/tests/`) and of the `asock` tool
//! (`asock-cli/tests/`): a selector, a connected pair, a time bound for a test step, the
//! descriptor limit, looking for a peer program, waiting for a child process, and an
//! `openssl s_server` on 127.0.0.1. Helpers that need the tool's binary stay in
//! `asock-cli/tests/support`.
//!
//! Every helper bounds what it waits for in time; none talks to anything but 127.0.0.1.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asock::{a_socket, SelectorManager, Socket};

/// A selector with two loops, like the CI machine's two cores.
pub fn selector() -> SelectorManager {
    selector_with(2)
}

/// A selector with `threads` loops.
pub fn selector_with(threads: usize) -> SelectorManager {
    SelectorManager::builder()
        .threads(threads)
        .build()
        .expect("selector")
}

/// A connected TCP pair over 127.0.0.1: (client, accepted).
pub async fn pair(sel: &SelectorManager) -> (Socket, Socket) {
    let server = a_socket(sel).tcp().bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_address().clone();
    let client = a_socket(sel).tcp().connect(addr).await.unwrap();
    let accepted = server.accept().await.unwrap();
    (client, accepted)
}

/// Fails the test if `f` takes longer than `secs` (measured by asock's own timer).
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    asock::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// Raises the soft descriptor limit to the hard one (tests with many sockets); returns it.
pub fn raise_fd_limit() -> u64 {
    raise_fd_limit_to(u64::MAX)
}

/// Raises the soft descriptor limit to the hard one, but at most `cap`; returns it.
#[allow(
    clippy::unnecessary_cast,
    reason = "rlim_t is u64 on Linux, not on every Unix"
)]
pub fn raise_fd_limit_to(cap: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(cap as libc::rlim_t);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur as u64
}

/// Whether `program` is on `PATH` as an executable file (the real peers the tests drive:
/// openssl, socat, python3, nc, telnet, ...; `.ci/run` installs them).
pub fn have(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Whether `p` is a Unix socket file (not followed if it is a link).
pub fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// Waits for `child` at most `limit` (then kills it); its exit code (`None`: killed), stdout
/// and stderr (each empty when it was not piped).
pub fn wait_output(mut child: Child, limit: Duration) -> (Option<i32>, Vec<u8>, String) {
    let out = child.stdout.take().map(|mut out| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        })
    });
    let err = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = err.read_to_end(&mut v);
            String::from_utf8_lossy(&v).into_owned()
        })
    });
    let start = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st.code();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out.map_or_else(Vec::new, |t| t.join().unwrap());
    let err = err.map_or_else(String::new, |t| t.join().unwrap());
    (code, out, err)
}

/// Sends `sig` to a child process.
pub fn kill(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child, not yet reaped (the caller owns it).
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
}

/// Starts `openssl s_server -rev` (each line comes back reversed) in `dir`, with the
/// certificate `server.pem` and key `server.key` there and `extra` flags, on a free port of
/// 127.0.0.1; returns it and the port once it accepts (at most 10 s).
pub fn openssl_s_server(dir: &Path, extra: &[&str]) -> (Child, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}"), "-rev"])
        .args(["-cert", "server.pem", "-key", "server.key"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "s_server did not start"
        );
        std::thread::sleep(Duration::from_millis(30));
    }
    (child, port)
}

/// Runs `cmd` with `stdin` fed to it, for at most `secs` seconds (then kills it); its exit code
/// (`None`: killed), stdout and stderr.
pub fn run(cmd: &mut Command, stdin: &[u8], secs: u64) -> (Option<i32>, Vec<u8>, String) {
    run_for(cmd, stdin, Duration::from_secs(secs))
}

/// [`run`], with stdout as text.
pub fn run_text(cmd: &mut Command, stdin: &[u8], secs: u64) -> (Option<i32>, String, String) {
    let (code, out, err) = run(cmd, stdin, secs);
    (code, String::from_utf8_lossy(&out).into_owned(), err)
}

/// [`run`], bounded by `limit`.
pub fn run_for(cmd: &mut Command, stdin: &[u8], limit: Duration) -> (Option<i32>, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let r = wait_output(child, limit);
    let _ = feeder.join();
    r
}

/// A child process stopped when this is dropped: SIGTERM, up to 5 s to exit, then SIGKILL.
pub struct Terminate(pub Child);

impl Drop for Terminate {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped (we own it).
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An nginx serving `www/index.html` over TLS on 127.0.0.1, a child of the test with its own
/// prefix and config in a directory; stopped when dropped.
pub struct Nginx {
    /// The nginx master process.
    pub child: Terminate,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

/// Starts nginx in `dir` (its prefix, config, logs and temp files) serving `page` as
/// `index.html` over TLS 1.2 and 1.3 with `cert` and `key` (PEM files), on a free port of
/// 127.0.0.1; returns once it accepts (at most 10 s). Its error log is `dir/error.log`.
pub fn nginx_tls(dir: &Path, cert: &Path, key: &Path, page: &str) -> Nginx {
    use std::os::unix::fs::PermissionsExt;
    let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("nginx is needed; .ci/run installs it");
    std::fs::create_dir(dir.join("www")).unwrap();
    std::fs::create_dir(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("www/index.html"), page).unwrap();
    // Worker processes may run as another user: let them read the files.
    for p in [dir.to_path_buf(), dir.join("www")] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for f in [cert, key, &dir.join("www/index.html")] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dd = dir.display();
    let conf = format!(
        "worker_processes 1;
pid {dd}/nginx.pid;
error_log {dd}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log {dd}/access.log;
    client_body_temp_path {dd}/tmp/body;
    proxy_temp_path {dd}/tmp/proxy;
    fastcgi_temp_path {dd}/tmp/fastcgi;
    uwsgi_temp_path {dd}/tmp/uwsgi;
    scgi_temp_path {dd}/tmp/scgi;
    default_type text/html;
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {dd}/www;
        location / {{ index index.html; }}
    }}
}}
",
        cert = cert.display(),
        key = key.display()
    );
    std::fs::write(dir.join("nginx.conf"), conf).unwrap();
    let mut child = Command::new(bin)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "nginx exited early");
        assert!(Instant::now() < deadline, "nginx did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Nginx {
        child: Terminate(child),
        port,
    }
}

/// A fresh test CA and a server certificate for `names` signed by it, as a server config with
/// that certificate and a client config that trusts only that CA (no system roots) and
/// verifies `server_name`.
#[cfg(feature = "tls")]
pub fn tls_configs(
    names: &[&str],
    server_name: &str,
) -> (asock::tls::TlsServerConfig, asock::tls::TlsConfig) {
    use asock::tls::test_certs::TestCa;
    let ca = TestCa::new("asock test CA").unwrap();
    let cert = ca.server_cert(names).unwrap();
    let server =
        asock::tls::TlsServerConfig::from_pem(cert.chain_pem.as_bytes(), cert.key_pem.as_bytes())
            .unwrap();
    let client = asock::tls::TlsConfig::client()
        .os_roots(false)
        .add_root_pem(ca.cert_pem().as_bytes())
        .unwrap()
        .server_name(server_name)
        .unwrap()
        .build()
        .unwrap();
    (server, client)
}
