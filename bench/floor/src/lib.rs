//! What a filter costs a proxy before it checks anything: the floor under
//! the filters' speed rows in `bench/run.sh filters`.
//!
//! Built with the feature of one ABI, it is a filter that passes every
//! request. Its configuration says how much of a check's traffic with the
//! host it makes:
//!
//! - `"empty"`: none (the proxy's cost of running a filter at all);
//! - `"headers"`: the calls any key check must make, and no more: read
//!   the request's headers (Envoy gives them all in one call; Traefik
//!   gives the names in one, then a call per value, made here for the key
//!   header only), remove the key header and set three identity headers.

/// The headers the `"headers"` floor sets, as keyhost's filters do.
#[cfg(any(feature = "proxy-wasm", feature = "http-wasm"))]
const IDENTITY: [(&str, &str); 3] = [
    (
        "x-keyhost-key-id",
        "ApiKey-00000000-0000-0000-0000-000000000000",
    ),
    ("x-keyhost-owner", "user:bench"),
    ("x-keyhost-kind", "user"),
];

/// Whether a configuration asks for the `"headers"` floor (Traefik hands
/// the middleware's settings on as JSON, Envoy as the string it was given).
#[cfg(any(feature = "proxy-wasm", feature = "http-wasm"))]
fn says_headers(config: &[u8]) -> bool {
    config.windows(7).any(|word| word == b"headers")
}

#[cfg(feature = "proxy-wasm")]
mod proxy {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType};

    proxy_wasm::main! {{
        proxy_wasm::set_root_context(|_| Box::new(Root { headers: false }));
    }}

    struct Root {
        headers: bool,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, _size: usize) -> bool {
            self.headers = self
                .get_plugin_configuration()
                .is_some_and(|config| super::says_headers(&config));
            true
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Pass {
                headers: self.headers,
            }))
        }
    }

    struct Pass {
        headers: bool,
    }

    impl Context for Pass {}

    impl HttpContext for Pass {
        fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
            if self.headers {
                let headers = self.get_http_request_headers_bytes();
                std::hint::black_box(&headers);
                self.set_http_request_header("x-api-key", None);
                for (name, value) in super::IDENTITY {
                    self.set_http_request_header(name, Some(value));
                }
            }
            Action::Continue
        }
    }
}

#[cfg(feature = "http-wasm")]
mod http {
    use http_wasm_guest::host::{Request, Response, admin};
    use http_wasm_guest::{Guest, register};

    struct Pass {
        headers: bool,
    }

    impl Guest for Pass {
        fn handle_request(&self, request: &Request, _response: &Response) -> (bool, i32) {
            if self.headers {
                let names = request.header.names();
                std::hint::black_box(&names);
                let key = request.header.values(b"x-api-key");
                std::hint::black_box(&key);
                request.header.remove(b"x-api-key");
                for (name, value) in super::IDENTITY {
                    request.header.set(name.as_bytes(), value.as_bytes());
                }
            }
            (true, 0)
        }
    }

    #[cfg(target_os = "wasi")]
    unsafe extern "C" {
        fn __wasm_call_ctors();
    }

    /// Traefik runs it at instantiation.
    #[unsafe(no_mangle)]
    pub extern "C" fn _initialize() {
        #[cfg(target_os = "wasi")]
        unsafe {
            __wasm_call_ctors();
        }
        let headers = super::says_headers(admin::config().as_ref());
        register(Pass { headers });
    }
}
