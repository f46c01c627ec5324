//! The registry loader on arbitrary bytes: it never panics, and whatever it
//! accepts survives a save and a reload unchanged.
#![no_main]

use keyhost::registry::Registry;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(registry) = Registry::parse(data) {
        let saved = toml::to_string(&registry).expect("a loaded registry serializes");
        let again = Registry::parse(saved.as_bytes()).expect("a saved registry loads");
        assert_eq!(toml::to_string(&again).unwrap(), saved);
    }
});
