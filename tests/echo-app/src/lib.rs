//! Answers every request with what it received: `METHOD PATH`, one line per
//! header (`name: value`), then `body: N bytes`. The gate tests read from it
//! what reached the app.

wit_bindgen::generate!({
    path: "wit",
    world: "echo",
    generate_all,
});

use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Echo;

impl exports::wasi::http::incoming_handler::Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let mut text = format!(
            "{:?} {}\n",
            request.method(),
            request.path_with_query().unwrap_or_default()
        );
        for (name, value) in request.headers().entries() {
            text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(&value)));
        }
        let mut length = 0;
        if let Ok(body) = request.consume()
            && let Ok(stream) = body.stream()
        {
            while let Ok(chunk) = stream.blocking_read(64 * 1024) {
                length += chunk.len();
            }
        }
        text.push_str(&format!("body: {length} bytes\n"));
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("a new body has a stream");
        for chunk in text.as_bytes().chunks(4096) {
            // A client that went away closes the stream: nothing to answer.
            if stream.blocking_write_and_flush(chunk).is_err() {
                return;
            }
        }
        drop(stream);
        let _ = OutgoingBody::finish(body, None);
    }
}

export!(Echo);
