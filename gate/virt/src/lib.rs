//! Virtual `wasi:http` types for the app behind a middleware gate.
//!
//! `wasi:http` 0.2 gives a component no way to make an `incoming-request`:
//! only the host makes them, and their headers cannot change. So the app
//! imports its HTTP types from here instead of from the host. Each virtual
//! resource wraps the host's and passes every call through, except one: an
//! `incoming-request` made by `hand-on` answers `headers` with the set the
//! gate chose (identity headers in, the client's `X-Keyhost-*` out),
//! immutable as a host's would be. Streams and pollables are `wasi:io`'s,
//! not virtual, so bodies flow between the app and the host untouched.
//!
//! The virtual types are exported as `keyhost:app-http@0.2.0`, a copy of
//! the host's `wasi:http@0.2.12` under a name no tool takes for a version
//! of it (two semver-compatible names would be merged into one), so that
//! `hand-on` can speak of both. `keyhost gate build` gives the export to
//! the app in place of its `wasi:http`.

mod convert;

use std::cell::RefCell;

use keyhost_core::http;

use convert::{error_to_app, error_to_host, header_error, method_to_app, method_to_host};
use convert::{scheme_to_app, scheme_to_host};

wit_bindgen::generate!({
    path: "../wit",
    world: "virt",
    generate_all,
});

use exports::keyhost::app_http::types as app;
use wasi::http::types as host;
use wasi::io::error::Error as IoError;
use wasi::io::poll::Pollable;
use wasi::io::streams::{InputStream, OutputStream};

struct Virt;

/// Takes the host resource out of a virtual one the app gave up.
trait Inner {
    type Host;
    fn into_host(self) -> Self::Host;
}

/// `fields`: the host's, or (for a request made by `hand-on`) a set the
/// gate chose, which the app may read but not change.
pub struct Fields {
    inner: host::Fields,
    immutable: bool,
}

impl Fields {
    fn wrap(inner: host::Fields) -> app::Fields {
        app::Fields::new(Fields {
            inner,
            immutable: false,
        })
    }

    fn writable(&self) -> Result<&host::Fields, app::HeaderError> {
        if self.immutable {
            Err(app::HeaderError::Immutable)
        } else {
            Ok(&self.inner)
        }
    }
}

impl Inner for app::Fields {
    type Host = host::Fields;
    fn into_host(self) -> host::Fields {
        self.into_inner::<Fields>().inner
    }
}

impl app::GuestFields for Fields {
    fn new() -> Fields {
        Fields {
            inner: host::Fields::new(),
            immutable: false,
        }
    }

    fn from_list(entries: Vec<(String, Vec<u8>)>) -> Result<app::Fields, app::HeaderError> {
        host::Fields::from_list(&entries)
            .map(Fields::wrap)
            .map_err(header_error)
    }

    fn get(&self, name: String) -> Vec<Vec<u8>> {
        self.inner.get(&name)
    }

    fn has(&self, name: String) -> bool {
        self.inner.has(&name)
    }

    fn set(&self, name: String, value: Vec<Vec<u8>>) -> Result<(), app::HeaderError> {
        self.writable()?.set(&name, &value).map_err(header_error)
    }

    fn delete(&self, name: String) -> Result<(), app::HeaderError> {
        self.writable()?.delete(&name).map_err(header_error)
    }

    fn append(&self, name: String, value: Vec<u8>) -> Result<(), app::HeaderError> {
        self.writable()?.append(&name, &value).map_err(header_error)
    }

    fn entries(&self) -> Vec<(String, Vec<u8>)> {
        self.inner.entries()
    }

    fn clone(&self) -> app::Fields {
        Fields::wrap(self.inner.clone())
    }
}

/// `incoming-request`: the host's, with the gate's headers.
pub struct IncomingRequest {
    inner: host::IncomingRequest,
    headers: host::Fields,
}

impl app::GuestIncomingRequest for IncomingRequest {
    fn method(&self) -> app::Method {
        method_to_app(self.inner.method())
    }

    fn path_with_query(&self) -> Option<String> {
        self.inner.path_with_query()
    }

    fn scheme(&self) -> Option<app::Scheme> {
        self.inner.scheme().map(scheme_to_app)
    }

    fn authority(&self) -> Option<String> {
        self.inner.authority()
    }

    fn headers(&self) -> app::Fields {
        app::Fields::new(Fields {
            inner: self.headers.clone(),
            immutable: true,
        })
    }

    fn consume(&self) -> Result<app::IncomingBody, ()> {
        self.inner.consume().map(|inner| {
            app::IncomingBody::new(IncomingBody {
                inner: RefCell::new(Some(inner)),
            })
        })
    }
}

/// `outgoing-request`, for the app's own calls out.
pub struct OutgoingRequest {
    inner: host::OutgoingRequest,
}

impl Inner for app::OutgoingRequest {
    type Host = host::OutgoingRequest;
    fn into_host(self) -> host::OutgoingRequest {
        self.into_inner::<OutgoingRequest>().inner
    }
}

impl app::GuestOutgoingRequest for OutgoingRequest {
    fn new(headers: app::Fields) -> OutgoingRequest {
        OutgoingRequest {
            inner: host::OutgoingRequest::new(headers.into_host()),
        }
    }

    fn body(&self) -> Result<app::OutgoingBody, ()> {
        self.inner.body().map(OutgoingBody::wrap)
    }

    fn method(&self) -> app::Method {
        method_to_app(self.inner.method())
    }

    fn set_method(&self, method: app::Method) -> Result<(), ()> {
        self.inner.set_method(&method_to_host(method))
    }

    fn path_with_query(&self) -> Option<String> {
        self.inner.path_with_query()
    }

    fn set_path_with_query(&self, path_with_query: Option<String>) -> Result<(), ()> {
        self.inner.set_path_with_query(path_with_query.as_deref())
    }

    fn scheme(&self) -> Option<app::Scheme> {
        self.inner.scheme().map(scheme_to_app)
    }

    fn set_scheme(&self, scheme: Option<app::Scheme>) -> Result<(), ()> {
        self.inner.set_scheme(scheme.map(scheme_to_host).as_ref())
    }

    fn authority(&self) -> Option<String> {
        self.inner.authority()
    }

    fn set_authority(&self, authority: Option<String>) -> Result<(), ()> {
        self.inner.set_authority(authority.as_deref())
    }

    fn headers(&self) -> app::Fields {
        Fields::wrap(self.inner.headers())
    }
}

/// `request-options`.
pub struct RequestOptions {
    inner: host::RequestOptions,
}

impl Inner for app::RequestOptions {
    type Host = host::RequestOptions;
    fn into_host(self) -> host::RequestOptions {
        self.into_inner::<RequestOptions>().inner
    }
}

impl app::GuestRequestOptions for RequestOptions {
    fn new() -> RequestOptions {
        RequestOptions {
            inner: host::RequestOptions::new(),
        }
    }

    fn connect_timeout(&self) -> Option<u64> {
        self.inner.connect_timeout()
    }

    fn set_connect_timeout(&self, duration: Option<u64>) -> Result<(), ()> {
        self.inner.set_connect_timeout(duration)
    }

    fn first_byte_timeout(&self) -> Option<u64> {
        self.inner.first_byte_timeout()
    }

    fn set_first_byte_timeout(&self, duration: Option<u64>) -> Result<(), ()> {
        self.inner.set_first_byte_timeout(duration)
    }

    fn between_bytes_timeout(&self) -> Option<u64> {
        self.inner.between_bytes_timeout()
    }

    fn set_between_bytes_timeout(&self, duration: Option<u64>) -> Result<(), ()> {
        self.inner.set_between_bytes_timeout(duration)
    }
}

/// `response-outparam`: the app's answer becomes the host's.
pub struct ResponseOutparam {
    inner: host::ResponseOutparam,
}

impl app::GuestResponseOutparam for ResponseOutparam {
    fn set(param: app::ResponseOutparam, response: Result<app::OutgoingResponse, app::ErrorCode>) {
        let param = param.into_inner::<ResponseOutparam>().inner;
        let response = response.map(Inner::into_host).map_err(error_to_host);
        host::ResponseOutparam::set(param, response);
    }
}

/// `incoming-response`, to the app's own calls out.
pub struct IncomingResponse {
    inner: host::IncomingResponse,
}

impl app::GuestIncomingResponse for IncomingResponse {
    fn status(&self) -> u16 {
        self.inner.status()
    }

    fn headers(&self) -> app::Fields {
        Fields::wrap(self.inner.headers())
    }

    fn consume(&self) -> Result<app::IncomingBody, ()> {
        self.inner.consume().map(|inner| {
            app::IncomingBody::new(IncomingBody {
                inner: RefCell::new(Some(inner)),
            })
        })
    }
}

/// `incoming-body`: its stream is the host's.
pub struct IncomingBody {
    // Taken by `finish`, which consumes the body.
    inner: RefCell<Option<host::IncomingBody>>,
}

impl app::GuestIncomingBody for IncomingBody {
    fn stream(&self) -> Result<InputStream, ()> {
        self.inner.borrow().as_ref().ok_or(())?.stream()
    }

    fn finish(this: app::IncomingBody) -> app::FutureTrailers {
        let body = this
            .into_inner::<IncomingBody>()
            .inner
            .into_inner()
            .expect("a body is finished once");
        app::FutureTrailers::new(FutureTrailers {
            inner: host::IncomingBody::finish(body),
        })
    }
}

/// `fields` less any `X-Keyhost-*` and key header, in any spelling.
fn without_keyhosts(fields: &host::Fields) -> host::Fields {
    let kept: Vec<(String, Vec<u8>)> = fields
        .entries()
        .into_iter()
        .filter(|(name, _)| !(http::is_identity_header(name) || http::is_key_header(name)))
        .collect();
    host::Fields::from_list(&kept).unwrap_or_else(|_| host::Fields::new())
}

/// `future-trailers`.
pub struct FutureTrailers {
    inner: host::FutureTrailers,
}

type Trailers = Option<Result<Result<Option<app::Fields>, app::ErrorCode>, ()>>;

impl app::GuestFutureTrailers for FutureTrailers {
    fn subscribe(&self) -> Pollable {
        self.inner.subscribe()
    }

    /// Trailers come from the client too: keyhost's own names and the key
    /// are taken out of them, as out of the headers.
    fn get(&self) -> Trailers {
        self.inner.get().map(|taken| {
            taken.map(|answer| {
                answer
                    .map(|trailers| trailers.map(|t| Fields::wrap(without_keyhosts(&t))))
                    .map_err(error_to_app)
            })
        })
    }
}

/// `outgoing-response`: the app's answer.
pub struct OutgoingResponse {
    inner: host::OutgoingResponse,
}

impl Inner for app::OutgoingResponse {
    type Host = host::OutgoingResponse;
    fn into_host(self) -> host::OutgoingResponse {
        self.into_inner::<OutgoingResponse>().inner
    }
}

impl app::GuestOutgoingResponse for OutgoingResponse {
    fn new(headers: app::Fields) -> OutgoingResponse {
        OutgoingResponse {
            inner: host::OutgoingResponse::new(headers.into_host()),
        }
    }

    fn status_code(&self) -> u16 {
        self.inner.status_code()
    }

    fn set_status_code(&self, status_code: u16) -> Result<(), ()> {
        self.inner.set_status_code(status_code)
    }

    fn headers(&self) -> app::Fields {
        Fields::wrap(self.inner.headers())
    }

    fn body(&self) -> Result<app::OutgoingBody, ()> {
        self.inner.body().map(OutgoingBody::wrap)
    }
}

/// `outgoing-body`: its stream is the host's.
pub struct OutgoingBody {
    inner: RefCell<Option<host::OutgoingBody>>,
}

impl OutgoingBody {
    fn wrap(inner: host::OutgoingBody) -> app::OutgoingBody {
        app::OutgoingBody::new(OutgoingBody {
            inner: RefCell::new(Some(inner)),
        })
    }
}

impl app::GuestOutgoingBody for OutgoingBody {
    fn write(&self) -> Result<OutputStream, ()> {
        self.inner.borrow().as_ref().ok_or(())?.write()
    }

    fn finish(
        this: app::OutgoingBody,
        trailers: Option<app::Fields>,
    ) -> Result<(), app::ErrorCode> {
        let body = this
            .into_inner::<OutgoingBody>()
            .inner
            .into_inner()
            .expect("a body is finished once");
        host::OutgoingBody::finish(body, trailers.map(Inner::into_host)).map_err(error_to_app)
    }
}

/// `future-incoming-response`, to the app's own calls out.
pub struct FutureIncomingResponse {
    inner: host::FutureIncomingResponse,
}

type Answer = Option<Result<Result<app::IncomingResponse, app::ErrorCode>, ()>>;

impl app::GuestFutureIncomingResponse for FutureIncomingResponse {
    fn subscribe(&self) -> Pollable {
        self.inner.subscribe()
    }

    fn get(&self) -> Answer {
        self.inner.get().map(|taken| {
            taken.map(|answer| {
                answer
                    .map(|inner| app::IncomingResponse::new(IncomingResponse { inner }))
                    .map_err(error_to_app)
            })
        })
    }
}

impl app::Guest for Virt {
    type Fields = Fields;
    type IncomingRequest = IncomingRequest;
    type OutgoingRequest = OutgoingRequest;
    type RequestOptions = RequestOptions;
    type ResponseOutparam = ResponseOutparam;
    type IncomingResponse = IncomingResponse;
    type IncomingBody = IncomingBody;
    type FutureTrailers = FutureTrailers;
    type OutgoingResponse = OutgoingResponse;
    type OutgoingBody = OutgoingBody;
    type FutureIncomingResponse = FutureIncomingResponse;

    fn http_error_code(err: &IoError) -> Option<app::ErrorCode> {
        host::http_error_code(err).map(error_to_app)
    }
}

impl exports::keyhost::app_http::outgoing_handler::Guest for Virt {
    fn handle(
        request: app::OutgoingRequest,
        options: Option<app::RequestOptions>,
    ) -> Result<app::FutureIncomingResponse, app::ErrorCode> {
        wasi::http::outgoing_handler::handle(request.into_host(), options.map(Inner::into_host))
            .map(|inner| app::FutureIncomingResponse::new(FutureIncomingResponse { inner }))
            .map_err(error_to_app)
    }
}

impl exports::keyhost::gate::hand_on::Guest for Virt {
    fn hand_on(
        request: host::IncomingRequest,
        headers: host::Fields,
        out: host::ResponseOutparam,
    ) -> (app::IncomingRequest, app::ResponseOutparam) {
        (
            app::IncomingRequest::new(IncomingRequest {
                inner: request,
                headers,
            }),
            app::ResponseOutparam::new(ResponseOutparam { inner: out }),
        )
    }
}

export!(Virt);
