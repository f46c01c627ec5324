//! A policy compiled into one of keyhost's proxy filters: `export!` starts
//! the filter around it, and the filter asks it about each key through the
//! same conversions the gate uses.

use std::marker::PhantomData;

use keyhost_core::check::{CheckRequest, Decider};
use keyhost_core::record::{Identity, KeyRecord};
use keyhost_core::time::Timestamp;
use keyhost_core::verdict::Decision;

use crate::Guest;
use crate::from_core;

#[cfg(feature = "http-wasm")]
pub use keyhost_filter_http_wasm as http_wasm;
#[cfg(feature = "proxy-wasm")]
pub use keyhost_filter_proxy_wasm as proxy_wasm;

/// The policy `T` as a filter's policy.
pub struct GuestPolicy<T>(PhantomData<T>);

impl<T> Default for GuestPolicy<T> {
    fn default() -> Self {
        GuestPolicy(PhantomData)
    }
}

impl<T: Guest> Decider for GuestPolicy<T> {
    type Fault = String;

    fn decide(
        &mut self,
        key: &KeyRecord,
        identity: &Identity,
        request: &CheckRequest,
        now: Timestamp,
    ) -> Result<Decision, String> {
        Ok(from_core::decision(T::validate(
            from_core::key_record(key),
            from_core::identity(identity),
            from_core::request(request, now),
        )))
    }
}

impl<T: Guest> keyhost_filter::Policy for GuestPolicy<T> {
    fn configure(&mut self, config: &[(String, String)]) -> Result<(), String> {
        T::configure(config.to_vec())
    }
}

/// Starts keyhost's proxy-wasm filter around the policy.
#[cfg(feature = "proxy-wasm")]
#[macro_export]
macro_rules! export {
    ($ty:ident with_types_in $($path:tt)*) => {
        $crate::filter::proxy_wasm::proxy_wasm::main! {{
            $crate::filter::proxy_wasm::start::<$crate::filter::GuestPolicy<$ty>>();
        }}
    };
}

/// Starts keyhost's http-wasm plugin around the policy.
#[cfg(all(feature = "http-wasm", not(feature = "proxy-wasm")))]
#[macro_export]
macro_rules! export {
    ($ty:ident with_types_in $($path:tt)*) => {
        $crate::filter::http_wasm::export!($crate::filter::GuestPolicy<$ty>);
    };
}
