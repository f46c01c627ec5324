//! The `buffer` candidate's layout: a call's key, identity and request in
//! one byte buffer, encoded by the host and read by the guest in place.
//!
//! All integers are little-endian. In order:
//!
//! ```text
//! call     = key identity request            (nothing may follow)
//! key      = str id, str name, u8 kind, str owner, opt-str service,
//!            strs scopes, strs allowed-ips, i64 created-at,
//!            opt-i64 expires-at, u8 flags
//! identity = str iam-id, u8 identity-kind, opt-str owner, strs scopes
//! request  = opt-str service, opt-str scope, opt-str source-ip,
//!            opt-str method, opt-str path, pairs attributes, i64 now
//! str      = u32 length, that many bytes of UTF-8
//! strs     = u32 count, that many str
//! pairs    = u32 count, that many (str name, str value)
//! opt-X    = u8 0 (none) | u8 1, X
//! kind     = 0 user | 1 service-id | 2 classic-infrastructure | 3 service-specific
//! identity-kind = 0 user | 1 service-id
//! flags    = bit 0 disabled, bit 1 leaked, bit 2 locked; other bits 0
//! ```
//!
//! [`decode`] checks every length, tag and UTF-8 text once and fails with a
//! [`Malformed`] rather than panic; the views it returns borrow the buffer,
//! and the lists are walked again (still checked) each time they are read.
//! host/benches/contracts.rs compiles this file natively too, to encode.

use std::borrow::Cow;

use keyhost_policy_rules::KeyKind;

use super::views::Facts;

/// The key's fields, as the host holds them.
pub struct KeyFields<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub kind: KeyKind,
    pub owner: &'a str,
    pub service: Option<&'a str>,
    pub scopes: &'a [String],
    pub allowed_ips: &'a [String],
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub disabled: bool,
    pub leaked: bool,
    pub locked: bool,
}

/// The identity's fields, as the host holds them.
pub struct IdentityFields<'a> {
    pub iam_id: &'a str,
    pub service_id: bool,
    pub owner: Option<&'a str>,
    pub scopes: &'a [String],
}

/// The request's fields, as the host holds them.
pub struct RequestFields<'a> {
    pub service: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    pub attributes: &'a [(String, String)],
    pub now: i64,
}

const DISABLED: u8 = 1;
const LEAKED: u8 = 2;
const LOCKED: u8 = 4;

/// Writes a call into `out`, which is cleared first (its capacity is kept,
/// so a host reusing one buffer allocates nothing once it is large enough).
/// Fails only when a text or list is longer than a u32 can count.
pub fn encode(
    out: &mut Vec<u8>,
    key: &KeyFields<'_>,
    identity: &IdentityFields<'_>,
    request: &RequestFields<'_>,
) -> Result<(), Malformed> {
    out.clear();
    let mut w = Writer(out);
    w.str(key.id)?;
    w.str(key.name)?;
    w.0.push(match key.kind {
        KeyKind::User => 0,
        KeyKind::ServiceId => 1,
        KeyKind::ClassicInfrastructure => 2,
        KeyKind::ServiceSpecific => 3,
    });
    w.str(key.owner)?;
    w.opt_str(key.service)?;
    w.strs(key.scopes)?;
    w.strs(key.allowed_ips)?;
    w.i64(key.created_at);
    match key.expires_at {
        None => w.0.push(0),
        Some(at) => {
            w.0.push(1);
            w.i64(at);
        }
    }
    let mut flags = 0;
    for (set, bit) in [
        (key.disabled, DISABLED),
        (key.leaked, LEAKED),
        (key.locked, LOCKED),
    ] {
        if set {
            flags |= bit;
        }
    }
    w.0.push(flags);

    w.str(identity.iam_id)?;
    w.0.push(u8::from(identity.service_id));
    w.opt_str(identity.owner)?;
    w.strs(identity.scopes)?;

    for text in [
        request.service,
        request.scope,
        request.source_ip,
        request.method,
        request.path,
    ] {
        w.opt_str(text)?;
    }
    w.len(request.attributes.len())?;
    for (name, value) in request.attributes {
        w.str(name)?;
        w.str(value)?;
    }
    w.i64(request.now);
    Ok(())
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn len(&mut self, len: usize) -> Result<(), Malformed> {
        let len = u32::try_from(len).map_err(|_| Malformed("a length past u32"))?;
        self.0.extend_from_slice(&len.to_le_bytes());
        Ok(())
    }

    fn str(&mut self, text: &str) -> Result<(), Malformed> {
        self.len(text.len())?;
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }

    fn opt_str(&mut self, text: Option<&str>) -> Result<(), Malformed> {
        match text {
            None => self.0.push(0),
            Some(text) => {
                self.0.push(1);
                self.str(text)?;
            }
        }
        Ok(())
    }

    fn strs(&mut self, list: &[String]) -> Result<(), Malformed> {
        self.len(list.len())?;
        list.iter().try_for_each(|text| self.str(text))
    }

    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_le_bytes());
    }
}

/// Why a buffer is refused: what was wrong, for the deny message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// A decoded call: views into the buffer, nothing copied.
#[derive(Debug)]
pub struct Call<'a> {
    pub key: Key<'a>,
    pub identity: Identity<'a>,
    pub request: Request<'a>,
}

#[derive(Debug)]
pub struct Key<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub kind: KeyKind,
    pub owner: &'a str,
    pub service: Option<&'a str>,
    pub scopes: Strs<'a>,
    pub allowed_ips: Strs<'a>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub disabled: bool,
    pub leaked: bool,
    pub locked: bool,
}

#[derive(Debug)]
pub struct Identity<'a> {
    pub iam_id: &'a str,
    pub service_id: bool,
    pub owner: Option<&'a str>,
    pub scopes: Strs<'a>,
}

#[derive(Debug)]
pub struct Request<'a> {
    pub service: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub source_ip: Option<&'a str>,
    pub method: Option<&'a str>,
    pub path: Option<&'a str>,
    /// The name/value pairs, as `2 * count` texts in a row.
    pub attributes: Strs<'a>,
    pub now: i64,
}

/// A list of texts, still encoded: `count` `str`s at the start of `bytes`.
/// [`decode`] has checked them all.
#[derive(Clone, Copy, Debug)]
pub struct Strs<'a> {
    count: u32,
    bytes: &'a [u8],
}

impl<'a> Strs<'a> {
    /// The texts in order. Should the bytes not hold them after all, the
    /// walk stops short instead of panicking.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut reader = Reader {
            bytes: self.bytes,
            at: 0,
        };
        (0..self.count).map_while(move |_| reader.str().ok())
    }
}

/// Reads a call from `bytes`, checking everything (see the module doc).
pub fn decode(bytes: &[u8]) -> Result<Call<'_>, Malformed> {
    let mut r = Reader { bytes, at: 0 };
    let id = r.str()?;
    let name = r.str()?;
    let kind = match r.u8()? {
        0 => KeyKind::User,
        1 => KeyKind::ServiceId,
        2 => KeyKind::ClassicInfrastructure,
        3 => KeyKind::ServiceSpecific,
        _ => return Err(Malformed("an unknown key kind")),
    };
    let owner = r.str()?;
    let service = r.opt_str()?;
    let scopes = r.strs(1)?;
    let allowed_ips = r.strs(1)?;
    let created_at = r.i64()?;
    let expires_at = match r.tag()? {
        false => None,
        true => Some(r.i64()?),
    };
    let flags = r.u8()?;
    if flags & !(DISABLED | LEAKED | LOCKED) != 0 {
        return Err(Malformed("unknown key flags"));
    }
    let key = Key {
        id,
        name,
        kind,
        owner,
        service,
        scopes,
        allowed_ips,
        created_at,
        expires_at,
        disabled: flags & DISABLED != 0,
        leaked: flags & LEAKED != 0,
        locked: flags & LOCKED != 0,
    };
    let identity = Identity {
        iam_id: r.str()?,
        service_id: match r.u8()? {
            0 => false,
            1 => true,
            _ => return Err(Malformed("an unknown identity kind")),
        },
        owner: r.opt_str()?,
        scopes: r.strs(1)?,
    };
    let request = Request {
        service: r.opt_str()?,
        scope: r.opt_str()?,
        source_ip: r.opt_str()?,
        method: r.opt_str()?,
        path: r.opt_str()?,
        attributes: r.strs(2)?,
        now: r.i64()?,
    };
    if r.at != bytes.len() {
        return Err(Malformed("bytes after the call"));
    }
    Ok(Call {
        key,
        identity,
        request,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(Malformed("the buffer ends early"))?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i64(&mut self) -> Result<i64, Malformed> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn tag(&mut self) -> Result<bool, Malformed> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Malformed("an option tag other than 0 or 1")),
        }
    }

    fn str(&mut self) -> Result<&'a str, Malformed> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| Malformed("a text that is not UTF-8"))
    }

    fn opt_str(&mut self) -> Result<Option<&'a str>, Malformed> {
        Ok(match self.tag()? {
            false => None,
            true => Some(self.str()?),
        })
    }

    /// A list of `count * per_item` texts, checked, left encoded.
    fn strs(&mut self, per_item: u32) -> Result<Strs<'a>, Malformed> {
        let count = self
            .u32()?
            .checked_mul(per_item)
            .ok_or(Malformed("a list too long"))?;
        let start = self.at;
        // Each text takes at least its 4-byte length, so a hostile count
        // fails as soon as the bytes run out.
        for _ in 0..count {
            self.str()?;
        }
        Ok(Strs {
            count,
            bytes: &self.bytes[start..self.at],
        })
    }
}

impl Facts for Call<'_> {
    fn disabled(&self) -> bool {
        self.key.disabled
    }
    fn leaked(&self) -> bool {
        self.key.leaked
    }
    fn expires_at(&self) -> Option<i64> {
        self.key.expires_at
    }
    fn now(&self) -> i64 {
        self.request.now
    }
    fn key_kind(&self) -> KeyKind {
        self.key.kind
    }
    fn key_service(&self) -> Option<Cow<'_, str>> {
        self.key.service.map(Cow::Borrowed)
    }
    fn key_scopes(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.key.scopes.iter().map(Cow::Borrowed)
    }
    fn allowed_ips(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.key.allowed_ips.iter().map(Cow::Borrowed)
    }
    fn identity_scopes(&self) -> impl Iterator<Item = Cow<'_, str>> {
        self.identity.scopes.iter().map(Cow::Borrowed)
    }
    fn request_service(&self) -> Option<Cow<'_, str>> {
        self.request.service.map(Cow::Borrowed)
    }
    fn request_scope(&self) -> Option<Cow<'_, str>> {
        self.request.scope.map(Cow::Borrowed)
    }
    fn source_ip(&self) -> Option<Cow<'_, str>> {
        self.request.source_ip.map(Cow::Borrowed)
    }
}
