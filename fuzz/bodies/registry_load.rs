//! The registry loader on arbitrary bytes: it never panics, and whatever it
//! accepts survives a save and a reload unchanged. The same bytes, cut into
//! field values, go through the write path: whatever it accepts must read
//! back.
//!
//! Shared by the fuzz target and by the corpus replay in `cargo test`.

use keyhost::iam::IamId;
use keyhost::lifecycle::{self, NewIdentity, NewKey};
use keyhost::registry::Registry;
use keyhost::time::Timestamp;

/// One input.
pub fn run(data: &[u8]) {
    if let Ok(registry) = Registry::parse(data) {
        let saved = toml::to_string(&registry).expect("a loaded registry serializes");
        let again = Registry::parse(saved.as_bytes()).expect("a saved registry loads");
        assert_eq!(toml::to_string(&again).unwrap(), saved);
    }
    written_fields_read_back(&String::from_utf8_lossy(data));
}

/// Field values separated by NUL: name, description, service, then scopes.
fn written_fields_read_back(text: &str) {
    let mut parts = text.split('\0');
    let name = parts.next().unwrap_or_default().to_string();
    let description = parts.next().unwrap_or_default().to_string();
    let service = parts.next().map(str::to_string);
    let scopes: Vec<String> = parts.map(str::to_string).collect();
    let now = Timestamp(1_700_000_000);
    let user: IamId = "user:fuzz".parse().unwrap();
    let mut registry = Registry::new("kh");
    let identity = NewIdentity {
        iam_id: user.clone(),
        owner: None,
        scopes: scopes.clone(),
    };
    if lifecycle::add_identity(&mut registry, identity, now).is_err() {
        return;
    }
    let new = NewKey {
        name,
        description,
        kind: service
            .is_some()
            .then_some(keyhost::iam::KeyKind::ServiceSpecific),
        service,
        scopes,
        ..NewKey::default()
    };
    if lifecycle::create_key(&mut registry, &user, new, now).is_err() {
        return;
    }
    let saved = toml::to_string(&registry).expect("an accepted write serializes");
    Registry::parse(saved.as_bytes()).expect("what keyhost writes, it reads back");
}
