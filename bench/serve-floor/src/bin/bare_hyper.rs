//! The floor of serve's rows: hyper's HTTP/1 server on tokio's multi-thread
//! runtime (the versions keyhost uses), answering every request with an
//! empty 200. Nothing here checks anything.
//!
//!     bare-hyper 127.0.0.1:PORT

use std::convert::Infallible;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() {
    let listen = std::env::args().nth(1).expect("usage: bare-hyper ADDRESS");
    let listener = TcpListener::bind(&listen).await.expect("cannot listen");
    println!("listening on http://{}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let answer = service_fn(|_: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Empty::<Bytes>::new()))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), answer)
                .await;
        });
    }
}
