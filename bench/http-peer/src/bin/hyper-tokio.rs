//! `hyper-tokio [--multi-thread] [ADDR]`: the hyper hello-world server on tokio, the way
//! hyper's own guide writes it (a `TcpListener`, hyper-util's `TokioIo`, a task per connection,
//! `http1::Builder::serve_connection`), with the same handler and builder settings as asock's
//! `examples/hyper_server.rs` (`GET /` → `Hello, world!`, keep-alive, hyper's default header
//! read timeout on `TokioTimer`).
//!
//! Runtime: `current_thread` by default, `multi_thread` with `--multi-thread` (worker threads:
//! tokio's default, one per CPU the process may run on, so 1 under `taskset -c 0`). The first
//! stdout line is `Listening on http://ADDR`.

use std::convert::Infallible;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

const HELLO: &str = "Hello, world!\n";

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/") => (StatusCode::OK, "text/plain; charset=utf-8", HELLO),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}

async fn serve(addr: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    println!("Listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

fn main() {
    let mut multi = false;
    let mut addr = "127.0.0.1:8080".to_string();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--multi-thread" => multi = true,
            a if !a.starts_with('-') => addr = a.to_string(),
            a => {
                eprintln!(
                    "error: unexpected argument {a:?}\nusage: hyper-tokio [--multi-thread] [ADDR]"
                );
                std::process::exit(2);
            }
        }
    }
    let runtime = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let result = runtime.and_then(|rt| rt.block_on(serve(addr)));
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
