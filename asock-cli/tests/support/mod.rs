//! Helpers for the tool's tests that need its binary (an `asock echo-server` child process,
//! running `asock` with input) and what /proc says about a process. The helpers both test
//! trees share are in the `asock-test-support` crate.

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use asock_test_support::run_for;

pub const BIN: &str = env!("CARGO_BIN_EXE_asock");

/// A running `asock echo-server`, killed on drop. Its stderr goes to a file.
pub struct Server {
    pub child: Child,
    pub port: u16,
    /// Lines printed on stdout at start (the `Started ...` line, and for TLS the CA's path).
    pub lines: Vec<String>,
    pub stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// A TLS client configuration that trusts the CA of a `--tls-self-signed` server.
    pub fn tls_client(&self) -> asock::tls::TlsConfig {
        let ca = self.lines[1].rsplit(' ').next().expect("the CA's path");
        asock::tls::TlsConfig::client()
            .add_root_pem_file(ca)
            .unwrap()
            .build()
            .unwrap()
    }

    /// Starts `asock echo-server 127.0.0.1:0 ARGS`; with `nofile`, under that RLIMIT_NOFILE.
    pub fn start(args: &[&str], nofile: Option<u64>) -> Server {
        Self::start_at(&["127.0.0.1:0"], args, nofile)
    }

    /// Starts `asock echo-server ADDR_ARGS ARGS` (ADDR_ARGS: `["127.0.0.1:0"]` or
    /// `["--unix", path]`).
    pub fn start_at(addr: &[&str], args: &[&str], nofile: Option<u64>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let mut cmd = Command::new(BIN);
        cmd.arg("echo-server")
            .args(addr)
            .args(args)
            // `--tls-self-signed` writes its CA under the temp dir: this test's, removed after.
            .env("TMPDIR", dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        if let Some(n) = nofile {
            // SAFETY: the closure runs in the forked child before exec and only calls
            // setrlimit, which is async-signal-safe; it allocates nothing.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("start asock");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut lines = Vec::new();
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        lines.push(first.trim().to_string());
        if args.contains(&"--tls-self-signed") {
            let mut second = String::new();
            out.read_line(&mut second).unwrap();
            lines.push(second.trim().to_string());
        }
        // Keep reading stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let port = lines[0]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        Server {
            child,
            port,
            lines,
            stderr,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// One line there and back on a new connection.
    pub fn round_trip(&self, line: &str) -> std::io::Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        echo_line(&mut s, line)
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn stats(&self) -> ProcStats {
        ProcStats::of(self.pid())
    }

    /// Sends `sig` to the server.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with our own child's pid; it has not been reaped (we own `child`).
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }

    /// Waits up to `limit` for the server to exit; its exit code (None: still running or killed
    /// by a signal) and how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> (Option<std::process::ExitStatus>, Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (Some(st), start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        (None, start.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `line\n` and checks `line\r\n` comes back.
pub fn echo_line(s: &mut TcpStream, line: &str) -> std::io::Result<()> {
    s.write_all(format!("{line}\n").as_bytes())?;
    let want = format!("{line}\r\n");
    let mut got = vec![0; want.len()];
    s.read_exact(&mut got)?;
    if got != want.as_bytes() {
        return Err(std::io::Error::other(format!(
            "echo mismatch: {:?}",
            String::from_utf8_lossy(&got)
        )));
    }
    Ok(())
}

/// What /proc says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStats {
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    pub fds: usize,
    pub threads: usize,
    pub rss_kib: u64,
}

impl ProcStats {
    pub fn of(pid: u32) -> ProcStats {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let cpu_ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        ProcStats {
            cpu_ticks,
            fds,
            threads: field("Threads:") as usize,
            rss_kib: field("VmRSS:"),
        }
    }
}

/// Clock ticks per second (for `cpu_ticks`).
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Polls `cond` every 20 ms for up to `limit`; whether it became true.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Closes `s` with a reset (SO_LINGER 0) instead of a FIN.
pub fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// A small deterministic PRNG (xorshift64*), seeded from the environment when
/// `ASOCK_SEED` is set so a failing run can be repeated.
pub struct Rng(u64);

impl Rng {
    pub fn from_env() -> Rng {
        let seed = std::env::var("ASOCK_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("ASOCK_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Runs `asock ARGS` with `stdin` as its input, for at most `limit` (then kills it); its exit
/// code (None: killed), stdout and stderr.
pub fn run_asock(args: &[&str], stdin: &[u8], limit: Duration) -> (Option<i32>, Vec<u8>, String) {
    run_for(Command::new(BIN).args(args), stdin, limit)
}

/// Reads `child`'s stderr until a line contains `marker`; returns that line. The rest of
/// stderr keeps being read (and collected into the returned receiver's text).
pub fn stderr_line(
    child: &mut Child,
    marker: &str,
    limit: Duration,
) -> (String, std::sync::mpsc::Receiver<String>) {
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (rest_tx, rest_rx) = std::sync::mpsc::channel();
    let marker = marker.to_string();
    std::thread::spawn(move || {
        let mut r = BufReader::new(err);
        let mut line = String::new();
        let mut found = false;
        let mut rest = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !found && line.contains(&marker) {
                found = true;
                let _ = tx.send(line.trim().to_string());
            } else {
                rest.push_str(&line);
            }
        }
        let _ = rest_tx.send(rest);
    });
    let line = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("no stderr line with the marker within {limit:?}"));
    (line, rest_rx)
}
