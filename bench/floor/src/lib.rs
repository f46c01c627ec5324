//! What an embedding costs its host before it checks anything: the floor
//! under the speed rows of `bench/run.sh filters` and `bench/run.sh gate`.
//!
//! Built with the feature of one ABI, it is a filter that passes every
//! request. Its configuration says how much of a check's traffic with the
//! host it makes:
//!
//! - `"empty"`: none (the proxy's cost of running a filter at all);
//! - `"headers"`: the calls any key check must make, and no more: read
//!   the request's headers (Envoy gives them all in one call, the method
//!   and path among them; Traefik gives the names in one, then a call per
//!   value, made here for the key header only, and one each for the
//!   method and the URI), ask for the peer's address, remove the key
//!   header and set three identity headers.
//!
//! Built with the feature `gate` (for wasm32-wasip2), it is a middleware
//! gate that checks nothing: it hands every request on to the app behind
//! it, as keyhost's middleware gate hands on an allowed one (the key
//! header out, three identity headers in, through the same virtual HTTP
//! types). No configuration: that is the least any gate that adds headers
//! does.

/// The headers the `"headers"` floor sets, as keyhost's filters do.
#[cfg(any(feature = "proxy-wasm", feature = "http-wasm", feature = "gate"))]
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
                std::hint::black_box(self.get_property(vec!["source", "address"]));
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
                std::hint::black_box((request.method(), request.uri(), request.source_addr()));
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

#[cfg(feature = "gate")]
mod gate {
    use exports::wasi::http::incoming_handler::Guest;
    use keyhost::app_http::incoming_handler;
    use keyhost::gate::hand_on::hand_on;
    use wasi::http::types::{Fields, IncomingRequest, ResponseOutparam};

    wit_bindgen::generate!({
        path: "../../gate/wit",
        world: "middleware",
        generate_all,
    });

    struct Pass;

    impl Guest for Pass {
        fn handle(request: IncomingRequest, out: ResponseOutparam) {
            let mut headers: Vec<(String, Vec<u8>)> = request
                .headers()
                .entries()
                .into_iter()
                .filter(|(name, _)| {
                    let name = name.to_ascii_lowercase();
                    name != "x-api-key" && !name.starts_with("x-keyhost-")
                })
                .collect();
            for (name, value) in super::IDENTITY {
                headers.push((name.to_string(), value.as_bytes().to_vec()));
            }
            let headers = Fields::from_list(&headers).expect("headers a request already had");
            let (request, out) = hand_on(request, headers, out);
            incoming_handler::handle(request, out);
        }
    }

    export!(Pass);
}

/// With the feature `pass`: a component that hands the host's request
/// itself, untouched, to the app's handler (no virtual types): what
/// composing anything in front of an app costs.
#[cfg(feature = "pass")]
mod pass {
    wit_bindgen::generate!({
        path: [
            "../../gate/wit/deps/io.wit",
            "../../gate/wit/deps/clocks.wit",
            "../../gate/wit/deps/random.wit",
            "../../gate/wit/deps/filesystem.wit",
            "../../gate/wit/deps/sockets.wit",
            "../../gate/wit/deps/cli.wit",
            "../../gate/wit/deps/http.wit",
        ],
        inline: "
            package keyhost:floor;
            world pass {
                import wasi:http/incoming-handler@0.2.12;
                export wasi:http/incoming-handler@0.2.12;
            }
        ",
        world: "keyhost:floor/pass",
        generate_all,
    });

    struct Pass;

    impl exports::wasi::http::incoming_handler::Guest for Pass {
        fn handle(
            request: wasi::http::types::IncomingRequest,
            out: wasi::http::types::ResponseOutparam,
        ) {
            wasi::http::incoming_handler::handle(request, out);
        }
    }

    export!(Pass);
}
