//! hyper 1.x's HTTP/1.1 client on asock: N requests, one after another, over one keep-alive
//! connection (an asock socket; hyper's connection driver is a task on asock's loops).
//!
//! ```text
//! cargo run --example hyper_server --features hyper,test-certs &
//! cargo run --example hyper_client --features hyper -- http://127.0.0.1:8080/ 3
//! ```
//!
//! Prints one line per response (`200 OK, 14 bytes`) and the body, then
//! `N requests over 1 connection`. Plain `http://` URLs only.

use std::time::Duration;

use asock::{a_socket, SelectorManager};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::HOST;
use hyper::{Request, StatusCode, Uri};

/// How long one request may take, from sending it to the end of the response body.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One response: status and body.
#[derive(Debug)]
pub struct Fetched {
    /// The status code.
    pub status: StatusCode,
    /// The whole body.
    pub body: Bytes,
}

/// Sends `count` GET requests for `url` over one connection and returns the responses.
///
/// Fails when the URL is not `http://host[:port]/...`, when the connection cannot be made, or
/// when the server closes the connection before the last response (no reconnect: this client
/// shows keep-alive, so a closed connection is an error).
pub async fn fetch(
    selector: &SelectorManager,
    url: &str,
    count: usize,
) -> Result<Vec<Fetched>, Box<dyn std::error::Error + Send + Sync>> {
    let uri: Uri = url.parse()?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported").into());
    }
    let authority = uri.authority().ok_or("URL without a host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let socket = a_socket(selector)
        .tcp()
        .connect((authority.host(), port))
        .await?;

    let (mut sender, connection) = http1::handshake(socket.connection(false)).await?;
    // The connection's driver: reads responses, writes requests, until `sender` is dropped.
    let driver = selector.launch(connection);

    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut responses = Vec::with_capacity(count);
    for _ in 0..count {
        let request = Request::get(path.as_str())
            .header(HOST, authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let fetched = asock::time::timeout(REQUEST_TIMEOUT, async {
            // Waits until the previous response is done and the connection can take another.
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Fetched { status, body })
        })
        .await??;
        responses.push(fetched);
    }
    drop(sender);
    driver.await??;
    Ok(responses)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/".to_string());
    let count = match args.next().map(|n| n.parse::<usize>()) {
        None => 3,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!(
                "usage: hyper_client [URL (default http://127.0.0.1:8080/)] [COUNT (default 3)]"
            );
            std::process::exit(2);
        }
    };
    let result = SelectorManager::new()
        .map_err(Into::into)
        .and_then(|selector| {
            // The whole client runs as a task on asock's loops.
            let sel = selector.clone();
            selector.run_blocking(selector.launch(async move { fetch(&sel, &url, count).await }))?
        });
    match result {
        Ok(responses) => {
            for r in &responses {
                println!("{}, {} bytes", r.status, r.body.len());
                println!("{}", String::from_utf8_lossy(&r.body).trim_end());
            }
            println!("{} requests over 1 connection", responses.len());
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
