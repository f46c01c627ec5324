//! Fetching snapshots from `keyhost serve`'s snapshot endpoint: the request
//! a filter sends, and what it makes of the answer. The sending is the
//! proxy's (proxy-wasm's `dispatch_http_call`); requests never wait on it.

use keyhost_core::lookup::Lookup;
use keyhost_core::snapshot::Snapshot;

use crate::config::{Live, verified};

/// The headers of one fetch. With `have`, the fetch sends its entity tag,
/// so an unchanged registry costs a "not modified" and no body.
pub fn request_headers(
    live: &Live,
    credential: &str,
    have: Option<&Snapshot<Vec<u8>>>,
) -> Vec<(String, String)> {
    let mut headers = vec![
        (":method".to_string(), "GET".to_string()),
        (":path".to_string(), live.path.clone()),
        (":authority".to_string(), live.authority.clone()),
        ("authorization".to_string(), format!("Bearer {credential}")),
    ];
    if let Some(etag) = have.and_then(|snapshot| snapshot.etag().ok()) {
        headers.push(("if-none-match".to_string(), etag));
    }
    headers
}

/// What a fetch brought.
pub enum Fetched {
    /// The registry has not changed.
    Unchanged,
    /// A newer snapshot, verified whole.
    New(Snapshot<Vec<u8>>),
}

/// The answer with `status` and `body` to a fetch made while holding
/// `have`. An `Err` says why it is refused; the snapshot in force stays.
pub fn answer(
    status: Option<&str>,
    body: Option<Vec<u8>>,
    have: Option<&Snapshot<Vec<u8>>>,
) -> Result<Fetched, String> {
    match status {
        Some("304") => Ok(Fetched::Unchanged),
        Some("200") => {
            let snapshot = verified(body.unwrap_or_default())
                .map_err(|e| format!("the snapshot it sent is refused: {e}"))?;
            if let Some(have) = have
                && snapshot.revision() < have.revision()
            {
                // An older registry could bring back a revoked key.
                return Err(format!(
                    "the snapshot it sent is refused: its revision {} is older than {} in force",
                    snapshot.revision(),
                    have.revision()
                ));
            }
            Ok(Fetched::New(snapshot))
        }
        Some(other) => Err(format!("keyhost serve answered {other}")),
        None => Err("keyhost serve did not answer".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::held::tests::snapshot_of;

    #[test]
    fn only_a_whole_newer_snapshot_is_taken() {
        let (current, _) = snapshot_of(5, &[]);
        let have = Snapshot::open(current).unwrap();
        assert!(matches!(
            answer(Some("304"), None, Some(&have)),
            Ok(Fetched::Unchanged)
        ));
        let (newer, _) = snapshot_of(6, &[]);
        assert!(matches!(
            answer(Some("200"), Some(newer.clone()), Some(&have)),
            Ok(Fetched::New(_))
        ));
        let mut flipped = newer.clone();
        let last = flipped.len() - 40;
        flipped[last] ^= 1;
        let truncated = newer[..newer.len() - 1].to_vec();
        let (older, _) = snapshot_of(4, &[]);
        for (body, why) in [
            (flipped, "checksum"),
            (truncated, "truncated"),
            (older, "older"),
            (b"<html>".to_vec(), "snapshot"),
        ] {
            let refused = answer(Some("200"), Some(body), Some(&have));
            let Err(e) = refused else {
                panic!("{why}: taken")
            };
            assert!(e.contains(why), "{why}: {e}");
        }
        assert!(answer(Some("401"), None, Some(&have)).is_err());
        assert!(answer(None, None, None).is_err());
    }

    #[test]
    fn a_fetch_sends_the_credential_and_the_tag_it_holds() {
        let live: Live = serde_json::from_str(r#"{"cluster": "keyhost"}"#).unwrap();
        let (bytes, _) = snapshot_of(1, &[]);
        let have = Snapshot::open(bytes).unwrap();
        let headers = request_headers(&live, "kh_rep_x", Some(&have));
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get(":path").as_deref(), Some("/v1/snapshot"));
        assert_eq!(get("authorization").as_deref(), Some("Bearer kh_rep_x"));
        assert_eq!(get("if-none-match"), Some(have.etag().unwrap()));
        assert_eq!(
            request_headers(&live, "kh_rep_x", None)
                .iter()
                .filter(|(n, _)| n == "if-none-match")
                .count(),
            0
        );
    }
}
