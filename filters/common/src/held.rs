//! The snapshot a filter has in force and its policy, configured for that
//! snapshot's settings; and one request checked against them.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use keyhost_core::http;
use keyhost_core::lookup::{Found, Lookup};
use keyhost_core::record::{Identity, KeyRecord};
use keyhost_core::request::{self, Checking, Refusal, Seen};
use keyhost_core::snapshot::Snapshot;
use keyhost_core::text::policy_text;
use keyhost_core::time::Timestamp;
use keyhost_core::verdict::{DenyCode, Verdict};

use crate::policy::Policy;

/// What a filter does with a request.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Let it on, without the headers named in `remove` (a client's
    /// `X-Keyhost-*` and the key), with the identity headers in `add`.
    Allow {
        /// Names to remove, as the request spelled them.
        remove: Vec<String>,
        /// Headers to set.
        add: Vec<(String, String)>,
    },
    /// Answer this refusal; `log` says why the filter could not decide,
    /// for the proxy's log and not the client.
    Deny {
        /// The answer.
        refusal: Refusal,
        /// The detail of a failure to decide.
        log: Option<String>,
    },
}

/// The settings a policy was given, and its answer.
struct Configured {
    config: Vec<(String, String)>,
    answer: Result<(), String>,
}

/// How many keys' records a filter keeps decoded: a hot key costs no
/// record parsing after its first request.
const DECODED_KEYS: usize = 4096;

/// A key found in the snapshot, decoded once.
struct Decoded {
    position: usize,
    key: KeyRecord,
    identity: Option<Identity>,
    retired_until: Option<Timestamp>,
}

/// The snapshot in force, with the records of keys found lately kept
/// decoded (by the SHA-256 of the secret that found them; a miss is not
/// kept, so unknown secrets cannot fill it). A hit is lent, not copied; a
/// key decoded now waits in `fresh` until the check is over, and then
/// joins the others (`Held::remember`).
struct Remembering<'a> {
    snapshot: &'a Snapshot<Vec<u8>>,
    decoded: &'a HashMap<[u8; 32], Decoded>,
    fresh: RefCell<Option<([u8; 32], Decoded)>>,
}

impl Lookup for Remembering<'_> {
    fn prefix(&self) -> &str {
        self.snapshot.prefix()
    }

    fn revision(&self) -> u64 {
        self.snapshot.revision()
    }

    fn policy_config(&self) -> Vec<(String, String)> {
        self.snapshot.policy_config()
    }

    fn find_by_id(&self, id: &str) -> anyhow::Result<Option<Found<'_>>> {
        self.snapshot.find_by_id(id)
    }

    fn find(&self, hash: &[u8; 32]) -> anyhow::Result<Option<Found<'_>>> {
        if let Some(decoded) = self.decoded.get(hash) {
            return Ok(Some(Found {
                position: decoded.position,
                key: Cow::Borrowed(&decoded.key),
                identity: decoded.identity.as_ref().map(Cow::Borrowed),
                retired_until: decoded.retired_until,
            }));
        }
        let Some(found) = self.snapshot.find(hash)? else {
            return Ok(None);
        };
        let decoded = Decoded {
            position: found.position,
            key: found.key.into_owned(),
            identity: found.identity.map(Cow::into_owned),
            retired_until: found.retired_until,
        };
        let answer = Found {
            position: decoded.position,
            key: Cow::Owned(decoded.key.clone()),
            identity: decoded.identity.clone().map(Cow::Owned),
            retired_until: decoded.retired_until,
        };
        *self.fresh.borrow_mut() = Some((*hash, decoded));
        Ok(Some(answer))
    }
}

/// A policy and the snapshot it decides on.
pub struct Held<P> {
    policy: P,
    snapshot: Option<Snapshot<Vec<u8>>>,
    /// The settings the policy was last given, and its answer.
    configured: Option<Configured>,
    /// What was last logged of a failure to decide.
    logged: RefCell<Option<String>>,
    /// Why the snapshot in force may no longer be used, if it may not.
    expired: Option<String>,
    /// Records of the snapshot in force, decoded.
    decoded: HashMap<[u8; 32], Decoded>,
}

impl<P: Policy> Held<P> {
    /// Holds `policy`, with no snapshot yet: every check fails closed until
    /// one comes.
    pub fn new(policy: P) -> Held<P> {
        Held {
            policy,
            snapshot: None,
            configured: None,
            logged: RefCell::new(None),
            expired: None,
            decoded: HashMap::new(),
        }
    }

    /// The snapshot in force.
    pub fn snapshot(&self) -> Option<&Snapshot<Vec<u8>>> {
        self.snapshot.as_ref()
    }

    /// Puts `snapshot` in force (it was verified), and gives the policy its
    /// settings when they changed.
    pub fn replace(&mut self, snapshot: Snapshot<Vec<u8>>) {
        let config = snapshot.policy_config();
        if self.configured.as_ref().map(|c| &c.config) != Some(&config) {
            let answer = self.policy.configure(&config);
            self.configured = Some(Configured { config, answer });
        }
        self.snapshot = Some(snapshot);
        self.decoded.clear();
        self.expired = None;
        *self.logged.borrow_mut() = None;
    }

    /// Says whether the snapshot in force may still be used: `Some(why)`
    /// fails every check closed until a snapshot comes or `None` is said.
    pub fn expire(&mut self, why: Option<String>) {
        self.expired = why;
    }

    /// Checks a request with `headers` (name, value: every line, as the
    /// proxy gives them), `method`, `path` and the proxy's `peer` address,
    /// as `/auth` would. A value that is not UTF-8 cannot carry a key or an
    /// address and is not read, but its header is removed all the same when
    /// it is keyhost's or a key's.
    pub fn check(
        &mut self,
        checking: &Checking,
        headers: &[(String, Vec<u8>)],
        method: Option<&str>,
        path: Option<&str>,
        peer: Option<&str>,
    ) -> Outcome {
        let Some(snapshot) = &self.snapshot else {
            return self.cannot("no registry snapshot yet".into());
        };
        if let Some(why) = &self.expired {
            return self.cannot(why.clone());
        }
        if let Some(Configured {
            answer: Err(refused),
            ..
        }) = &self.configured
        {
            let refused = format!("the policy refused its settings: {}", policy_text(refused));
            return self.cannot(refused);
        }
        if !path.is_some_and(http::is_plain_path) {
            return Outcome::Deny {
                refusal: request::refusal(DenyCode::Denied, http::NOT_PLAIN_PATH),
                log: None,
            };
        }
        let seen = Seen {
            headers,
            method: method.map(str::to_string),
            path: path.map(str::to_string),
            peer: peer.map(str::to_string),
        };
        let lookup = Remembering {
            snapshot,
            decoded: &self.decoded,
            fresh: RefCell::new(None),
        };
        let verdict = request::verdict(&lookup, &mut self.policy, checking, seen);
        self.remember(lookup.fresh.into_inner());
        match verdict {
            Ok(Verdict::Allow { key, info }) => {
                let mut remove: Vec<String> = Vec::new();
                for (name, _) in headers {
                    if (http::is_identity_header(name) || checking.is_key_header(name))
                        && !remove.contains(name)
                    {
                        remove.push(name.clone());
                    }
                }
                Outcome::Allow {
                    remove,
                    add: http::identity_headers(&key, &info),
                }
            }
            Ok(Verdict::Deny { code, reason, .. }) => Outcome::Deny {
                refusal: request::refusal(code, &reason),
                log: None,
            },
            Err(broken) => self.cannot(format!("{broken:#}")),
        }
    }

    /// Keeps a key decoded by the last check, making room when the keys
    /// kept are many.
    fn remember(&mut self, fresh: Option<([u8; 32], Decoded)>) {
        if let Some((hash, decoded)) = fresh {
            if self.decoded.len() >= DECODED_KEYS {
                self.decoded.clear();
            }
            self.decoded.insert(hash, decoded);
        }
    }

    /// A refusal for a check that cannot be decided; `why` is for the
    /// proxy's log, once until it changes (a dead registry would otherwise
    /// log on every request).
    fn cannot(&self, why: String) -> Outcome {
        let mut logged = self.logged.borrow_mut();
        let log = (logged.as_deref() != Some(why.as_str())).then(|| {
            *logged = Some(why.clone());
            why
        });
        Outcome::Deny {
            refusal: request::cannot_decide(),
            log,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use keyhost_core::check::{CheckRequest, Decider};
    use keyhost_core::iam::KeyKind;
    use keyhost_core::key_format;
    use keyhost_core::record::{Identity, KeyRecord};
    use keyhost_core::snapshot::{self, Contents, Snapshot};
    use keyhost_core::time::Timestamp;
    use keyhost_core::verdict::Decision;

    use super::*;

    /// Allows every key, unless its settings say `refuse`.
    #[derive(Default)]
    pub struct Allowing;

    impl Decider for Allowing {
        type Fault = String;
        fn decide(
            &mut self,
            _: &KeyRecord,
            _: &Identity,
            _: &CheckRequest,
            _: Timestamp,
        ) -> Result<Decision, String> {
            Ok(Decision::Allow(vec![("tier".into(), "gold".into())]))
        }
    }

    impl Policy for Allowing {
        fn configure(&mut self, config: &[(String, String)]) -> Result<(), String> {
            match config.iter().any(|(name, _)| name == "refuse") {
                true => Err("refused".into()),
                false => Ok(()),
            }
        }
    }

    /// A snapshot of one key of `user:alice` at `revision`, with
    /// `config`, and the key's secret.
    pub fn snapshot_of(revision: u64, config: &[(&str, &str)]) -> (Vec<u8>, String) {
        let secret = key_format::generate("kh", KeyKind::User);
        let now = Timestamp(1_700_000_000);
        let key = KeyRecord {
            id: "kid_1".into(),
            name: "laptop".into(),
            kind: KeyKind::User,
            owner: "user:alice".parse().unwrap(),
            service: None,
            description: String::new(),
            scopes: Vec::new(),
            allowed_ips: Vec::new(),
            hash: keyhost_core::key_hash::KeyHash::of(secret.expose()),
            created_at: now,
            updated_at: now,
            expires_at: None,
            locked: false,
            disabled: false,
            leaked: false,
            rate_limit: None,
            retired: Vec::new(),
        };
        let identity = Identity {
            iam_id: "user:alice".parse().unwrap(),
            owner: None,
            scopes: vec!["read".into()],
            created_at: now,
        };
        let bytes = snapshot::encode(&Contents {
            source: "test".into(),
            revision,
            prefix: "kh",
            policy_config: config
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            keys: &[key],
            identities: &[identity],
        });
        (bytes, secret.expose().to_string())
    }

    fn check(held: &mut Held<Allowing>, headers: &[(&str, &[u8])]) -> Outcome {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        held.check(
            &Checking::default(),
            &headers,
            Some("GET"),
            Some("/x"),
            None,
        )
    }

    #[test]
    fn without_a_snapshot_every_check_fails_closed() {
        let mut held = Held::new(Allowing);
        let Outcome::Deny { refusal, log } = check(&mut held, &[("x-api-key", b"kh_usr_x")]) else {
            panic!("allowed with no snapshot")
        };
        assert_eq!(refusal.status, 403);
        assert!(log.unwrap().contains("no registry snapshot"));
        // Said once, not on every request.
        let Outcome::Deny { log, .. } = check(&mut held, &[]) else {
            panic!("allowed with no snapshot")
        };
        assert_eq!(log, None);
    }

    #[test]
    fn an_allowed_request_loses_forged_identity_headers_and_the_key() {
        let (bytes, secret) = snapshot_of(1, &[]);
        let mut held = Held::new(Allowing);
        held.replace(Snapshot::open(bytes).unwrap());
        let outcome = check(
            &mut held,
            &[
                ("x-api-key", secret.as_bytes()),
                ("X-Keyhost-Key-Id", b"kid_forged"),
                ("x_keyhost_owner", b"user:root"),
                // Not UTF-8: not read, but removed all the same.
                ("x-keyhost-info-role", b"admin\xa0"),
                ("authorization", b"\xff"),
                ("x-other", b"kept"),
            ],
        );
        let Outcome::Allow { remove, add } = outcome else {
            panic!("refused: {outcome:?}")
        };
        assert_eq!(
            remove,
            [
                "x-api-key",
                "X-Keyhost-Key-Id",
                "x_keyhost_owner",
                "x-keyhost-info-role",
                "authorization"
            ]
        );
        assert!(add.contains(&("x-keyhost-key-id".into(), "kid_1".into())));
        assert!(add.contains(&("x-keyhost-info-tier".into(), "gold".into())));
        // A path that climbs is refused before the key is looked at.
        let headers = vec![("x-api-key".to_string(), secret.as_bytes().to_vec())];
        let outcome = held.check(
            &Checking::default(),
            &headers,
            Some("GET"),
            Some("/a/../b"),
            None,
        );
        assert!(matches!(outcome, Outcome::Deny { refusal, .. } if refusal.status == 403));
    }

    #[test]
    fn settings_the_policy_refuses_fail_every_check_closed_until_new_ones() {
        let (refused, secret) = snapshot_of(1, &[("refuse", "1")]);
        let mut held = Held::new(Allowing);
        held.replace(Snapshot::open(refused).unwrap());
        let outcome = check(&mut held, &[("x-api-key", secret.as_bytes())]);
        let Outcome::Deny { refusal, log } = outcome else {
            panic!("allowed under refused settings")
        };
        assert!(refusal.body.contains("policy_error"), "{}", refusal.body);
        assert!(
            !refusal.body.contains("refused"),
            "the detail reached the client"
        );
        assert!(log.unwrap().contains("refused its settings"));
        let (taken, secret) = snapshot_of(2, &[]);
        held.replace(Snapshot::open(taken).unwrap());
        assert!(matches!(
            check(&mut held, &[("x-api-key", secret.as_bytes())]),
            Outcome::Allow { .. }
        ));
    }
}
