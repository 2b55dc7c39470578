//! `--help` with examples on every command, shell completions, and `-v`/`-q` logging through
//! tracing without colour when stderr is not a terminal.
//! Everything on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_asock");

const COMMANDS: [&str; 6] = [
    "echo-server",
    "connect",
    "listen",
    "bench",
    "cert",
    "completions",
];

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run asock")
}

#[test]
fn every_command_has_help_with_examples() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let top = String::from_utf8(top.stdout).unwrap();
    assert!(top.contains("Examples:"), "{top}");
    for cmd in COMMANDS {
        assert!(top.contains(cmd), "top-level help does not list {cmd}");
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help failed");
        let help = String::from_utf8(out.stdout).unwrap();
        assert!(
            help.contains("Examples:"),
            "{cmd} --help has no examples:\n{help}"
        );
        assert!(
            help.contains(&format!("asock {cmd}")),
            "{cmd} --help has no example of itself:\n{help}"
        );
    }
}

#[test]
fn shell_completions() {
    let dir = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F _asock"),
        ("zsh", "#compdef asock"),
        ("fish", "complete -c asock"),
    ] {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "completions {shell} failed");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for cmd in COMMANDS {
            assert!(script.contains(cmd), "{shell} completions lack {cmd}");
        }
        if shell == "bash" {
            // The script parses.
            let path = dir.path().join("asock.bash");
            std::fs::write(&path, &script).unwrap();
            let check = Command::new("bash").arg("-n").arg(&path).status().unwrap();
            assert!(check.success(), "bash -n rejects the completion script");
        }
    }
    // An unknown shell is a usage error (exit 2).
    assert_eq!(run(&["completions", "tcsh"]).status.code(), Some(2));
}

/// Runs `asock [flags] echo-server 127.0.0.1:0`, makes one connection that echoes a line and
/// closes, stops the server with SIGTERM and returns its stderr.
fn echo_server_stderr(flags: &[&str]) -> String {
    let mut child: Child = Command::new(BIN)
        .args(flags)
        .args(["echo-server", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start asock");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let port: u16 = first.trim().rsplit(':').next().unwrap().parse().unwrap();
    {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"ping\n").unwrap();
        let mut back = [0u8; 6];
        s.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ping\r\n");
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest); // the server closes after our half-close
    }
    // Give the server a moment to log the close, then stop it.
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("echo-server did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn verbose_logs_connections_and_quiet_does_not() {
    let verbose = echo_server_stderr(&["-v"]);
    assert!(verbose.contains("Socket accepted: 127.0.0.1:"), "{verbose}");
    assert!(verbose.contains("INFO"), "{verbose}");
    // stderr is a pipe here: no colour escapes.
    assert!(!verbose.contains('\x1b'), "colour on a pipe: {verbose:?}");

    let default = echo_server_stderr(&[]);
    assert!(!default.contains("Socket accepted"), "{default}");
    let quiet = echo_server_stderr(&["-q"]);
    assert!(!quiet.contains("Socket accepted"), "{quiet}");
    assert!(
        !quiet.contains("INFO") && !quiet.contains("WARN"),
        "{quiet}"
    );
    // -v and -q together are a usage error.
    assert_eq!(
        run(&["-v", "-q", "completions", "bash"]).status.code(),
        Some(2)
    );
}
