//! The same `wasi:http` types under the app's name and the host's: one
//! interface, two generated Rust types, converted field by field.

use crate::app;
use crate::host;

macro_rules! method {
    ($name:ident: $from:ident -> $to:ident) => {
        pub fn $name(method: $from::Method) -> $to::Method {
            use $from::Method as F;
            use $to::Method as T;
            match method {
                F::Get => T::Get,
                F::Head => T::Head,
                F::Post => T::Post,
                F::Put => T::Put,
                F::Delete => T::Delete,
                F::Connect => T::Connect,
                F::Options => T::Options,
                F::Trace => T::Trace,
                F::Patch => T::Patch,
                F::Other(other) => T::Other(other),
            }
        }
    };
}

macro_rules! scheme {
    ($name:ident: $from:ident -> $to:ident) => {
        pub fn $name(scheme: $from::Scheme) -> $to::Scheme {
            use $from::Scheme as F;
            use $to::Scheme as T;
            match scheme {
                F::Http => T::Http,
                F::Https => T::Https,
                F::Other(other) => T::Other(other),
            }
        }
    };
}

macro_rules! error_code {
    ($name:ident: $from:ident -> $to:ident) => {
        pub fn $name(code: $from::ErrorCode) -> $to::ErrorCode {
            use $from::ErrorCode as F;
            use $to::ErrorCode as T;
            let size = |p: $from::FieldSizePayload| $to::FieldSizePayload {
                field_name: p.field_name,
                field_size: p.field_size,
            };
            match code {
                F::DnsTimeout => T::DnsTimeout,
                F::DnsError(p) => T::DnsError($to::DnsErrorPayload {
                    rcode: p.rcode,
                    info_code: p.info_code,
                }),
                F::DestinationNotFound => T::DestinationNotFound,
                F::DestinationUnavailable => T::DestinationUnavailable,
                F::DestinationIpProhibited => T::DestinationIpProhibited,
                F::DestinationIpUnroutable => T::DestinationIpUnroutable,
                F::ConnectionRefused => T::ConnectionRefused,
                F::ConnectionTerminated => T::ConnectionTerminated,
                F::ConnectionTimeout => T::ConnectionTimeout,
                F::ConnectionReadTimeout => T::ConnectionReadTimeout,
                F::ConnectionWriteTimeout => T::ConnectionWriteTimeout,
                F::ConnectionLimitReached => T::ConnectionLimitReached,
                F::TlsProtocolError => T::TlsProtocolError,
                F::TlsCertificateError => T::TlsCertificateError,
                F::TlsAlertReceived(p) => T::TlsAlertReceived($to::TlsAlertReceivedPayload {
                    alert_id: p.alert_id,
                    alert_message: p.alert_message,
                }),
                F::HttpRequestDenied => T::HttpRequestDenied,
                F::HttpRequestLengthRequired => T::HttpRequestLengthRequired,
                F::HttpRequestBodySize(n) => T::HttpRequestBodySize(n),
                F::HttpRequestMethodInvalid => T::HttpRequestMethodInvalid,
                F::HttpRequestUriInvalid => T::HttpRequestUriInvalid,
                F::HttpRequestUriTooLong => T::HttpRequestUriTooLong,
                F::HttpRequestHeaderSectionSize(n) => T::HttpRequestHeaderSectionSize(n),
                F::HttpRequestHeaderSize(p) => T::HttpRequestHeaderSize(p.map(size)),
                F::HttpRequestTrailerSectionSize(n) => T::HttpRequestTrailerSectionSize(n),
                F::HttpRequestTrailerSize(p) => T::HttpRequestTrailerSize(size(p)),
                F::HttpResponseIncomplete => T::HttpResponseIncomplete,
                F::HttpResponseHeaderSectionSize(n) => T::HttpResponseHeaderSectionSize(n),
                F::HttpResponseHeaderSize(p) => T::HttpResponseHeaderSize(size(p)),
                F::HttpResponseBodySize(n) => T::HttpResponseBodySize(n),
                F::HttpResponseTrailerSectionSize(n) => T::HttpResponseTrailerSectionSize(n),
                F::HttpResponseTrailerSize(p) => T::HttpResponseTrailerSize(size(p)),
                F::HttpResponseTransferCoding(s) => T::HttpResponseTransferCoding(s),
                F::HttpResponseContentCoding(s) => T::HttpResponseContentCoding(s),
                F::HttpResponseTimeout => T::HttpResponseTimeout,
                F::HttpUpgradeFailed => T::HttpUpgradeFailed,
                F::HttpProtocolError => T::HttpProtocolError,
                F::LoopDetected => T::LoopDetected,
                F::ConfigurationError => T::ConfigurationError,
                F::InternalError(s) => T::InternalError(s),
            }
        }
    };
}

method!(method_to_app: host -> app);
method!(method_to_host: app -> host);
scheme!(scheme_to_app: host -> app);
scheme!(scheme_to_host: app -> host);
error_code!(error_to_app: host -> app);
error_code!(error_to_host: app -> host);

pub fn header_error(error: host::HeaderError) -> app::HeaderError {
    match error {
        host::HeaderError::InvalidSyntax => app::HeaderError::InvalidSyntax,
        host::HeaderError::Forbidden => app::HeaderError::Forbidden,
        host::HeaderError::Immutable => app::HeaderError::Immutable,
    }
}
