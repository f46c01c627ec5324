//! The rules of keyhost's default policy, as plain Rust.
//!
//! The policy components wrap these functions behind the WIT contract, and
//! the host's benchmarks call them natively, so a comparison of the two
//! measures only the WebAssembly boundary.

use std::net::IpAddr;

use ipnet::IpNet;

/// The service that classic-infrastructure keys are for, unless configured.
pub const CLASSIC_INFRASTRUCTURE: &str = "classic-infrastructure";

/// The four kinds of API key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    User,
    ServiceId,
    ClassicInfrastructure,
    ServiceSpecific,
}

/// The stable deny codes the rules can give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyCode {
    Disabled,
    Expired,
    Leaked,
    WrongService,
    InsufficientScope,
    IpNotAllowed,
    Denied,
}

/// A refusal with its code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deny {
    pub code: DenyCode,
    pub message: String,
}

impl Deny {
    pub fn new(code: DenyCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The parts of a key record the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Key<'a> {
    pub kind: KeyKind,
    pub service: Option<&'a str>,
    pub scopes: &'a [String],
    pub allowed_ips: &'a [String],
    pub expires_at: Option<i64>,
    pub disabled: bool,
    pub leaked: bool,
}

/// The parts of a request the rules read.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub service: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub now: i64,
}

/// The default policy's settings, from the registry's `[policy.config]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The name of the classic infrastructure service.
    pub classic_service: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            classic_service: CLASSIC_INFRASTRUCTURE.to_string(),
        }
    }
}

impl Settings {
    /// Reads the settings from name/value pairs. Names the default policy does
    /// not use are left for other policies and ignored.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Self, String> {
        let mut settings = Settings::default();
        for (name, value) in pairs {
            if name == "classic_service" {
                if value.trim().is_empty() {
                    return Err("policy.config.classic_service must not be empty".into());
                }
                settings.classic_service = value.clone();
            }
        }
        Ok(settings)
    }
}

/// Decides whether `key`, whose identity has `identity_scopes`, may make
/// `request`: state first (disabled, leaked, expired), then where the key may
/// be used (service, address), then what it may do (scope).
pub fn decide(
    settings: &Settings,
    key: &Key<'_>,
    identity_scopes: &[String],
    request: &Request<'_>,
) -> Result<(), Deny> {
    check_state(key, request.now)?;
    check_service(settings, key, request.service)?;
    check_source_ip(key.allowed_ips, request.source_ip)?;
    check_scope(key.scopes, identity_scopes, request.scope)
}

fn check_state(key: &Key<'_>, now: i64) -> Result<(), Deny> {
    if key.disabled {
        return Err(Deny::new(DenyCode::Disabled, "the key is disabled"));
    }
    if key.leaked {
        return Err(Deny::new(
            DenyCode::Leaked,
            "the key was reported as leaked",
        ));
    }
    match key.expires_at {
        Some(expiry) if now >= expiry => Err(Deny::new(DenyCode::Expired, "the key has expired")),
        _ => Ok(()),
    }
}

/// The key-kind table of docs/src/design.md: which kind of key may reach which service.
fn check_service(settings: &Settings, key: &Key<'_>, service: Option<&str>) -> Result<(), Deny> {
    let classic = settings.classic_service.as_str();
    let allowed = match key.kind {
        KeyKind::User => true,
        KeyKind::ServiceId => service != Some(classic),
        KeyKind::ClassicInfrastructure => service == Some(classic),
        KeyKind::ServiceSpecific => service.is_some() && service == key.service,
    };
    if allowed {
        return Ok(());
    }
    let wanted = service.unwrap_or("(no service)");
    let message = match key.kind {
        KeyKind::User => unreachable!("user keys reach every service"),
        KeyKind::ServiceId => format!("service ID keys are not valid for {classic}"),
        KeyKind::ClassicInfrastructure => {
            format!("classic infrastructure keys are valid only for {classic}, not {wanted}")
        }
        KeyKind::ServiceSpecific => format!(
            "the key is bound to service {}, not {wanted}",
            key.service.unwrap_or("(none)")
        ),
    };
    Err(Deny::new(DenyCode::WrongService, message))
}

fn check_source_ip(allowed: &[String], source_ip: Option<&str>) -> Result<(), Deny> {
    if allowed.is_empty() {
        return Ok(());
    }
    let Some(text) = source_ip else {
        return Err(Deny::new(
            DenyCode::IpNotAllowed,
            "the key is limited to some addresses and the request gave none",
        ));
    };
    let Ok(address) = text.trim().parse::<IpAddr>() else {
        return Err(Deny::new(
            DenyCode::IpNotAllowed,
            format!("the source address {text:?} is not an IP address"),
        ));
    };
    if allowed.iter().any(|entry| cidr_contains(entry, address)) {
        Ok(())
    } else {
        Err(Deny::new(
            DenyCode::IpNotAllowed,
            format!("{address} is outside the key's allowed addresses"),
        ))
    }
}

/// Whether a CIDR (or a bare address) contains `address`. An entry that does
/// not parse matches nothing, so a bad entry fails closed.
pub fn cidr_contains(entry: &str, address: IpAddr) -> bool {
    if let Ok(net) = decimal_octets(entry).parse::<IpNet>() {
        return net.contains(&address);
    }
    entry.parse::<IpAddr>() == Ok(address)
}

/// A range's IPv4 octets (its own, or an IPv6 range's IPv4 tail) without
/// their leading zeros: `010.001.002.000/24` is `10.1.2.0/24`. ipnet read
/// such octets as decimal until 2.12.3, which refuses them; a policy built
/// outside this workspace may link either, and must decide as keyhost
/// does. An octet of more than three digits is left as it is (refused by
/// both). No allocation unless an octet has a leading zero.
fn decimal_octets(entry: &str) -> std::borrow::Cow<'_, str> {
    let (address, prefix) = entry.split_once('/').unwrap_or((entry, ""));
    let tail_at = address.rfind(':').map_or(0, |at| at + 1);
    let (head, tail) = address.split_at(tail_at);
    let padded = |octet: &str| {
        (2..=3).contains(&octet.len())
            && octet.starts_with('0')
            && octet.bytes().all(|b| b.is_ascii_digit())
    };
    if !tail.contains('.') || !tail.split('.').any(padded) {
        return entry.into();
    }
    let octets: Vec<&str> = tail
        .split('.')
        .map(|octet| {
            if padded(octet) {
                let trimmed = octet.trim_start_matches('0');
                if trimmed.is_empty() { "0" } else { trimmed }
            } else {
                octet
            }
        })
        .collect();
    let slash = if entry.contains('/') { "/" } else { "" };
    format!("{head}{}{slash}{prefix}", octets.join(".")).into()
}

/// The key's scopes narrow its identity's: a scope is granted only when the
/// identity has it and the key either lists it or lists no scopes at all.
pub fn scope_granted(key_scopes: &[String], identity_scopes: &[String], scope: &str) -> bool {
    identity_scopes.iter().any(|s| s == scope)
        && (key_scopes.is_empty() || key_scopes.iter().any(|s| s == scope))
}

fn check_scope(
    key_scopes: &[String],
    identity_scopes: &[String],
    scope: Option<&str>,
) -> Result<(), Deny> {
    match scope {
        Some(scope) if !scope_granted(key_scopes, identity_scopes, scope) => Err(Deny::new(
            DenyCode::InsufficientScope,
            format!("the key does not carry the scope {scope}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn key(kind: KeyKind) -> Key<'static> {
        Key {
            kind,
            service: None,
            scopes: &[],
            allowed_ips: &[],
            expires_at: None,
            disabled: false,
            leaked: false,
        }
    }

    fn request(service: Option<&'static str>) -> Request<'static> {
        Request {
            service,
            scope: None,
            source_ip: None,
            now: 1_000,
        }
    }

    fn code(result: Result<(), Deny>) -> Option<DenyCode> {
        result.err().map(|deny| deny.code)
    }

    #[test]
    fn octets_with_leading_zeros_are_read_as_decimal_whatever_ipnet_does() {
        for (entry, read) in [
            ("010.001.002.000/24", "10.1.2.0/24"),
            ("::ffff:010.000.000.000/104", "::ffff:10.0.0.0/104"),
            ("10.1.2.0/24", "10.1.2.0/24"),
            ("00.0.0.0/0", "0.0.0.0/0"),
            ("0010.0.0.0/8", "0010.0.0.0/8"),
            ("010.0.0.1", "10.0.0.1"),
            ("2001:db8::/32", "2001:db8::/32"),
        ] {
            assert_eq!(decimal_octets(entry), read, "{entry}");
        }
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr_contains("010.001.002.000/24", ip("10.1.2.3")));
        assert!(!cidr_contains("0010.0.0.0/8", ip("10.0.0.1")));
        // A bare address is read as std reads it: a leading zero is refused.
        assert!(!cidr_contains("010.0.0.1", ip("10.0.0.1")));
    }

    #[test]
    fn service_table() {
        let s = Settings::default();
        let classic = Some(CLASSIC_INFRASTRUCTURE);
        assert_eq!(
            code(decide(&s, &key(KeyKind::User), &[], &request(classic))),
            None
        );
        assert_eq!(
            code(decide(&s, &key(KeyKind::ServiceId), &[], &request(classic))),
            Some(DenyCode::WrongService)
        );
        assert_eq!(
            code(decide(
                &s,
                &key(KeyKind::ServiceId),
                &[],
                &request(Some("db"))
            )),
            None
        );
        assert_eq!(
            code(decide(
                &s,
                &key(KeyKind::ClassicInfrastructure),
                &[],
                &request(Some("db"))
            )),
            Some(DenyCode::WrongService)
        );
        let mut bound = key(KeyKind::ServiceSpecific);
        bound.service = Some("db");
        assert_eq!(code(decide(&s, &bound, &[], &request(Some("db")))), None);
        assert_eq!(
            code(decide(&s, &bound, &[], &request(Some("queue")))),
            Some(DenyCode::WrongService)
        );
        assert_eq!(
            code(decide(&s, &bound, &[], &request(None))),
            Some(DenyCode::WrongService)
        );
    }

    #[test]
    fn scopes_narrow_and_never_widen() {
        let identity = strings(&["read", "write"]);
        let key_scopes = strings(&["read", "admin"]);
        assert!(scope_granted(&key_scopes, &identity, "read"));
        assert!(!scope_granted(&key_scopes, &identity, "write"));
        assert!(!scope_granted(&key_scopes, &identity, "admin"));
        assert!(scope_granted(&[], &identity, "write"));
    }

    #[test]
    fn cidrs() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr_contains("10.0.0.0/8", ip("10.1.2.3")));
        assert!(!cidr_contains("10.0.0.0/8", ip("11.1.2.3")));
        assert!(cidr_contains("2001:db8::/32", ip("2001:db8::1")));
        assert!(cidr_contains("192.0.2.7", ip("192.0.2.7")));
        assert!(!cidr_contains("not a cidr", ip("192.0.2.7")));
    }

    #[test]
    fn state_comes_first() {
        let s = Settings::default();
        let mut k = key(KeyKind::ClassicInfrastructure);
        k.expires_at = Some(1_000);
        assert_eq!(
            code(decide(&s, &k, &[], &request(Some("db")))),
            Some(DenyCode::Expired)
        );
        k.leaked = true;
        assert_eq!(
            code(decide(&s, &k, &[], &request(Some("db")))),
            Some(DenyCode::Leaked)
        );
        k.disabled = true;
        assert_eq!(
            code(decide(&s, &k, &[], &request(Some("db")))),
            Some(DenyCode::Disabled)
        );
    }
}
