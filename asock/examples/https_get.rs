//! An HTTP/1.1 client over TLS with ALPN: fetches one page and prints the status, the
//! negotiated protocol and the body.
//!
//! ```text
//! cargo run --example https_get -- https://localhost:8443/ --ca /tmp/certs/ca.pem
//! cargo run --example https_get -- https://example.org/          # verified by the OS roots
//! ```
//!
//! It offers ALPN `http/1.1`, verifies the server's certificate against the OS roots plus the
//! `--ca` file, sends `GET` with `Connection: close`, and reads a `Content-Length`, chunked or
//! read-to-close body. `tests/examples.rs` runs it against a real `nginx` with a test
//! certificate.

use asock::tls::{TlsConfig, TlsVersion};
use asock::{a_socket, ByteReadChannel, SelectorManager};

/// A parsed `https://host[:port]/path` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The host name (or IP literal; IPv6 without brackets).
    pub host: String,
    /// The port (443 unless given).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an `https://` URL.
    pub fn parse(url: &str) -> Result<Url, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url}: only https:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, p) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url}: bad IPv6 host"))?;
            (h, p.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| format!("{url}: bad port {p:?}"))?,
            None => 443,
        };
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// What came back.
#[derive(Debug)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The status line, e.g. `HTTP/1.1 200 OK`.
    pub status_line: String,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The protocol ALPN settled on (`http/1.1`), if the server did ALPN.
    pub alpn: Option<String>,
    /// The TLS version in use.
    pub tls_version: Option<TlsVersion>,
}

/// The largest body or header block this client reads.
const LIMIT: usize = 16 << 20;

/// Fetches `url` with `GET`, trusting the OS roots plus `extra_ca_pem` if given.
pub async fn get(
    selector: &SelectorManager,
    url: &Url,
    extra_ca_pem: Option<&[u8]>,
) -> asock::Result<Response> {
    let mut config = TlsConfig::client().alpn(["http/1.1"]);
    if let Some(pem) = extra_ca_pem {
        config = config.add_root_pem(pem)?;
    }
    let config = config.build()?;
    let socket = a_socket(selector)
        .tcp()
        .connect((url.host.as_str(), url.port))
        .await?;
    // Verifies the certificate against the host we connected to (Ktor's `serverName`).
    let tls = socket.tls(&config).await?;
    let alpn = tls
        .negotiated_alpn()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let tls_version = tls.protocol_version();
    let mut input = tls.open_read_channel();
    let mut output = tls.open_write_channel(false);
    let host = if url.port == 443 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    output
        .write_str(&format!(
            "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: asock-example\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            url.path
        ))
        .await?;
    output.flush().await?;

    let status_line = input
        .read_utf8_line()
        .await?
        .ok_or_else(|| bad("connection closed before the status line"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = input
            .read_utf8_line()
            .await?
            .ok_or_else(|| bad("connection closed in the headers"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        if headers.len() > 200 {
            return Err(bad("too many headers"));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        read_chunked(&mut input).await?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(&format!("bad content-length {len:?}")))?;
        if len > LIMIT {
            return Err(bad("body too large"));
        }
        input.read_bytes(len).await?
    } else {
        input.read_remaining(LIMIT).await?
    };
    output.close().await?; // close_notify
    Ok(Response {
        status,
        status_line,
        headers,
        body,
        alpn,
        tls_version,
    })
}

async fn read_chunked(input: &mut ByteReadChannel) -> asock::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = input
            .read_utf8_line()
            .await?
            .ok_or_else(|| bad("connection closed in a chunked body"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| bad(&format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            while let Some(l) = input.read_utf8_line().await? {
                if l.is_empty() {
                    break;
                }
            }
            return Ok(body);
        }
        if body.len() + size > LIMIT {
            return Err(bad("body too large"));
        }
        body.extend_from_slice(&input.read_bytes(size).await?);
        input.read_utf8_line().await?; // the CRLF after the chunk
    }
}

fn bad(msg: &str) -> asock::Error {
    asock::Error::Io {
        op: "HTTP",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_string()),
    }
}

#[allow(dead_code)] // `main` is unused when tests include this file as a module
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mut url, mut ca) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--ca" => ca = it.next().cloned(),
            _ => url = Some(a.clone()),
        }
    }
    let Some(url) = url else {
        eprintln!("usage: https_get https://HOST[:PORT]/PATH [--ca CA.pem]");
        return std::process::ExitCode::from(2);
    };
    let run = || -> Result<Response, String> {
        let url = Url::parse(&url)?;
        let ca = match &ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| format!("{path}: {e}"))?),
            None => None,
        };
        let selector = SelectorManager::builder()
            .threads(1)
            .build()
            .map_err(|e| e.to_string())?;
        selector
            .run_blocking(get(&selector, &url, ca.as_deref()))
            .map_err(|e| e.to_string())
    };
    match run() {
        Ok(r) => {
            eprintln!(
                "{} (ALPN {}, {})",
                r.status_line,
                r.alpn.as_deref().unwrap_or("none"),
                r.tls_version.map(|v| v.to_string()).unwrap_or_default()
            );
            use std::io::Write;
            let _ = std::io::stdout().write_all(&r.body);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
