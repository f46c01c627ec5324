//! The snapshot a filter has in force and its policy, configured for that
//! snapshot's settings; and one request checked against them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use keyhost_core::http;
use keyhost_core::key_format;
use keyhost_core::lookup::{Found, Lent, Lookup};
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
        add: Rc<[(String, String)]>,
    },
    /// Answer this refusal; `log` says why the filter could not decide,
    /// for the proxy's log and not the client.
    Deny {
        /// The answer.
        refusal: Rc<Refusal>,
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

/// Hashes a SHA-256 by its first eight bytes: it is already uniform, and
/// only keys of the registry (not a client's guesses) are kept, so SipHash
/// would buy nothing per request.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }
}

/// The longest method and path, together, whose answer is kept: so that
/// the answers kept stay small however long the paths that come.
const KEPT_REQUEST: usize = 2048;

/// Decoded records by the SHA-256 of the secret that found them.
type DecodedKeys = HashMap<[u8; 32], Decoded, BuildHasherDefault<DigestHasher>>;

/// The last answer about each key found lately, by the SHA-256 of its
/// secret.
type Answers = HashMap<[u8; 32], Answer, BuildHasherDefault<DigestHasher>>;

/// The last answer about a key, and what it was an answer to: the
/// request's method, path and client address, in one second. A request that brings the same gets the same answer without
/// asking the policy again, which is what the policy would answer: the
/// contract has it decide like a pure function of those (and the records
/// and settings, which are the snapshot's: a new snapshot forgets every
/// answer). A proxy sends a key's requests in bursts, and this spares each
/// but the first the policy call and the identity headers' making.
struct Answer {
    method: Option<String>,
    path: Option<String>,
    address: Option<String>,
    now: Timestamp,
    answer: Answered,
}

/// An answer to hand out again.
#[derive(Clone)]
enum Answered {
    Allow(Rc<[(String, String)]>),
    Deny(Rc<Refusal>),
}

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
    decoded: &'a DecodedKeys,
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
                key: Lent::Borrowed(&decoded.key),
                identity: decoded.identity.as_ref().map(Lent::Borrowed),
                retired_until: decoded.retired_until,
            }));
        }
        let Some(found) = self.snapshot.find(hash)? else {
            return Ok(None);
        };
        let decoded = Decoded {
            position: found.position,
            key: found.key.into_owned(),
            identity: found.identity.map(Lent::into_owned),
            retired_until: found.retired_until,
        };
        let answer = Found {
            position: decoded.position,
            key: Lent::Owned(decoded.key.clone()),
            identity: decoded.identity.clone().map(Lent::Owned),
            retired_until: decoded.retired_until,
        };
        *self.fresh.borrow_mut() = Some((*hash, decoded));
        Ok(Some(answer))
    }
}

thread_local! {
    // A policy keeps its settings where it likes, often VM-wide (the SDK's
    // default rules keep them in a thread-local), and Envoy runs every
    // plugin of one `vm_id` and code in one VM, each with its own root
    // context and settings. So the VM remembers whose settings were given
    // last, and a filter gives its own again before its policy decides.
    static SETTINGS_GIVEN_BY: Cell<u64> = const { Cell::new(0) };
    static LAST_HELD: Cell<u64> = const { Cell::new(0) };
}

/// A policy and the snapshot it decides on.
pub struct Held<P> {
    /// This one's number in the VM (from 1), for `SETTINGS_GIVEN_BY`.
    number: u64,
    policy: P,
    snapshot: Option<Snapshot<Vec<u8>>>,
    /// The settings the policy was last given, and its answer.
    configured: Option<Configured>,
    /// What was last logged of a failure to decide.
    logged: RefCell<Option<String>>,
    /// Why the snapshot in force may no longer be used, if it may not.
    expired: Option<String>,
    /// Records of the snapshot in force, decoded.
    decoded: DecodedKeys,
    /// The last answer about keys found lately.
    answers: Answers,
}

impl<P: Policy> Held<P> {
    /// Holds `policy`, with no snapshot yet: every check fails closed until
    /// one comes.
    pub fn new(policy: P) -> Held<P> {
        let number = LAST_HELD.with(|last| {
            last.set(last.get() + 1);
            last.get()
        });
        Held {
            number,
            policy,
            snapshot: None,
            configured: None,
            logged: RefCell::new(None),
            expired: None,
            decoded: DecodedKeys::default(),
            answers: Answers::default(),
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
            SETTINGS_GIVEN_BY.with(|by| by.set(self.number));
        }
        self.snapshot = Some(snapshot);
        self.decoded.clear();
        self.answers.clear();
        self.expired = None;
        *self.logged.borrow_mut() = None;
    }

    /// Forgets the answers kept: they were given under the filter's old
    /// settings (service, scope, key headers), which have changed.
    pub fn forget_answers(&mut self) {
        self.answers.clear();
    }

    /// Says whether the snapshot in force may still be used: `Some(why)`
    /// fails every check closed until a snapshot comes or `None` is said.
    pub fn expire(&mut self, why: Option<String>) {
        self.expired = why;
    }

    /// Checks a request as `/auth` would. Its `seen.headers` are every line
    /// of those the check reads (the key's and the client address's) and
    /// at least the names of keyhost's and a key's, which it removes; the
    /// others do not matter to it. A value that is not UTF-8 cannot carry a
    /// key or an address and is not read, but its header is removed all
    /// the same when it is keyhost's or a key's. `seen.now` unset is now.
    pub fn check(&mut self, checking: &Checking, seen: Seen<'_>) -> Outcome {
        self.give_settings_again();
        let now = seen.now.unwrap_or_else(Timestamp::now);
        let Seen {
            headers,
            method,
            path,
            ..
        } = seen;
        let Some(snapshot) = &self.snapshot else {
            return self.cannot("no registry snapshot yet".into());
        };
        if let Some(why) = &self.expired {
            return Outcome::Deny {
                refusal: Rc::new(request::too_stale()),
                log: self.log_once(why),
            };
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
                refusal: Rc::new(request::refusal(DenyCode::Denied, http::NOT_PLAIN_PATH)),
                log: None,
            };
        }
        let seen = Seen {
            now: Some(now),
            ..seen
        };
        let address = seen.source_ip(checking);
        // Only a secret already found has an answer kept (so no two texts
        // share a digest that is kept). Only one of a key's shape is hashed:
        // a megabyte of junk in a key header is refused before any digest.
        let hash = seen
            .presented(checking)
            .filter(|presented| key_format::parse(snapshot.prefix(), presented).is_ok())
            .map(key_format::hash);
        let kept = hash
            .as_ref()
            .and_then(|hash| self.answers.get(hash))
            .filter(|kept| {
                kept.now == now
                    && kept.method.as_deref() == method
                    && kept.path.as_deref() == path
                    && kept.address == address
            });
        let answered = match kept {
            Some(kept) => kept.answer.clone(),
            None => {
                let lookup = Remembering {
                    snapshot,
                    decoded: &self.decoded,
                    fresh: RefCell::new(None),
                };
                let verdict = request::verdict_hashed(
                    &lookup,
                    &mut self.policy,
                    checking,
                    seen,
                    hash.as_ref(),
                );
                self.remember(lookup.fresh.into_inner());
                let (answered, found) = match verdict {
                    Ok(Verdict::Allow { key, info }) => (
                        Answered::Allow(http::identity_headers(&key, &info).into()),
                        true,
                    ),
                    Ok(Verdict::Deny { code, reason, key }) => (
                        Answered::Deny(Rc::new(request::refusal(code, &reason))),
                        key.is_some() && code != DenyCode::PolicyError,
                    ),
                    Err(broken) => return self.cannot(format!("{broken:#}")),
                };
                let small = path.map_or(0, str::len) + method.map_or(0, str::len) <= KEPT_REQUEST;
                if let Some(hash) = hash.filter(|_| found && small) {
                    self.keep(
                        hash,
                        Answer {
                            method: method.map(str::to_string),
                            path: path.map(str::to_string),
                            address,
                            now,
                            answer: answered.clone(),
                        },
                    );
                }
                answered
            }
        };
        match answered {
            Answered::Allow(add) => {
                let mut remove: Vec<String> = Vec::new();
                for (name, _) in headers {
                    if (http::is_identity_header(name) || checking.is_key_header(name))
                        && !remove.contains(name)
                    {
                        remove.push(name.clone());
                    }
                }
                Outcome::Allow { remove, add }
            }
            Answered::Deny(refusal) => Outcome::Deny { refusal, log: None },
        }
    }

    /// Gives the policy this filter's settings again when another filter
    /// of the VM gave its own since (see `SETTINGS_GIVEN_BY`).
    fn give_settings_again(&mut self) {
        if SETTINGS_GIVEN_BY.with(Cell::get) == self.number {
            return;
        }
        if let Some(configured) = &mut self.configured {
            configured.answer = self.policy.configure(&configured.config);
            SETTINGS_GIVEN_BY.with(|by| by.set(self.number));
        }
    }

    /// Keeps the last answer about a key, making room when the keys are
    /// many.
    fn keep(&mut self, hash: [u8; 32], answer: Answer) {
        if self.answers.len() >= DECODED_KEYS && !self.answers.contains_key(&hash) {
            self.answers.clear();
        }
        self.answers.insert(hash, answer);
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
        Outcome::Deny {
            refusal: Rc::new(request::cannot_decide()),
            log: self.log_once(&why),
        }
    }

    /// `why`, unless it is what was logged last.
    fn log_once(&self, why: &str) -> Option<String> {
        let mut logged = self.logged.borrow_mut();
        (logged.as_deref() != Some(why)).then(|| {
            *logged = Some(why.to_string());
            why.to_string()
        })
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
            superseded: Vec::new(),
        });
        (bytes, secret.expose().to_string())
    }

    fn check<P: Policy>(held: &mut Held<P>, headers: &[(&str, &[u8])]) -> Outcome {
        let headers: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect();
        held.check(
            &Checking::default(),
            Seen {
                headers: &headers,
                method: Some("GET"),
                path: Some("/x"),
                peer: None,
                now: None,
            },
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
            Seen {
                headers: &headers,
                method: Some("GET"),
                path: Some("/a/../b"),
                peer: None,
                now: None,
            },
        );
        assert!(matches!(outcome, Outcome::Deny { refusal, .. } if refusal.status == 403));
    }

    /// Allows every key, and counts the times it was asked.
    #[derive(Default)]
    struct Counting(Rc<std::cell::Cell<usize>>);

    impl Decider for Counting {
        type Fault = String;
        fn decide(
            &mut self,
            _: &KeyRecord,
            _: &Identity,
            request: &CheckRequest,
            _: Timestamp,
        ) -> Result<Decision, String> {
            self.0.set(self.0.get() + 1);
            let path = request.path.clone().unwrap_or_default();
            Ok(Decision::Allow(vec![("path".into(), path)]))
        }
    }

    impl Policy for Counting {
        fn configure(&mut self, _: &[(String, String)]) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn only_the_same_request_about_the_same_key_in_the_same_second_is_answered_again() {
        let (bytes, secret) = snapshot_of(1, &[]);
        let asked = Rc::new(std::cell::Cell::new(0));
        let mut held = Held::new(Counting(asked.clone()));
        held.replace(Snapshot::open(bytes.clone()).unwrap());
        let headers = vec![("x-api-key".to_string(), secret.as_bytes().to_vec())];
        let checking = Checking::default();
        let mut check = |method, path, peer, now| {
            let seen = Seen {
                headers: &headers,
                method,
                path,
                peer,
                now: Some(Timestamp(now)),
            };
            let outcome = held.check(&checking, seen);
            let Outcome::Allow { add, .. } = outcome else {
                panic!("refused: {outcome:?}")
            };
            add.iter()
                .find(|(name, _)| name == "x-keyhost-info-path")
                .map(|(_, value)| value.clone())
        };
        let at = 1_700_000_000;
        assert_eq!(
            check(Some("GET"), Some("/a"), Some("10.0.0.1"), at).as_deref(),
            Some("/a")
        );
        assert_eq!(
            check(Some("GET"), Some("/a"), Some("10.0.0.1"), at).as_deref(),
            Some("/a")
        );
        assert_eq!(
            asked.get(),
            1,
            "the same request in the same second asks once"
        );
        // Any part that differs asks again, and gets its own answer.
        assert_eq!(
            check(Some("GET"), Some("/b"), Some("10.0.0.1"), at).as_deref(),
            Some("/b")
        );
        assert_eq!(asked.get(), 2);
        check(Some("POST"), Some("/b"), Some("10.0.0.1"), at);
        assert_eq!(asked.get(), 3);
        check(Some("POST"), Some("/b"), Some("10.0.0.2"), at);
        assert_eq!(asked.get(), 4);
        // The same address from another port is the same request.
        check(Some("POST"), Some("/b"), Some("10.0.0.2:40000"), at);
        assert_eq!(asked.get(), 4);
        check(Some("POST"), Some("/b"), None, at);
        assert_eq!(asked.get(), 5);
        check(Some("POST"), Some("/b"), None, at + 1);
        assert_eq!(asked.get(), 6);
        check(Some("POST"), Some("/b"), None, at + 1);
        assert_eq!(asked.get(), 6);
        // The answer to a long path is not kept.
        let long = format!("/{}", "a".repeat(KEPT_REQUEST));
        check(Some("GET"), Some(&long), None, at + 1);
        check(Some("GET"), Some(&long), None, at + 1);
        assert_eq!(asked.get(), 8);
        // A new snapshot forgets every answer.
        held.replace(Snapshot::open(bytes).unwrap());
        let seen = Seen {
            headers: &headers,
            method: Some("POST"),
            path: Some("/b"),
            peer: None,
            now: Some(Timestamp(at + 1)),
        };
        held.check(&checking, seen);
        assert_eq!(asked.get(), 9);
        // So do new settings of the filter's own.
        held.forget_answers();
        held.check(&checking, seen);
        assert_eq!(asked.get(), 10);
    }

    #[test]
    fn no_answer_is_kept_for_a_key_that_is_not_found_however_many_come() {
        let (bytes, _) = snapshot_of(1, &[]);
        let mut held = Held::new(Allowing);
        held.replace(Snapshot::open(bytes).unwrap());
        for _ in 0..200 {
            let unknown = key_format::generate("kh", KeyKind::User);
            let outcome = check(&mut held, &[("x-api-key", unknown.expose().as_bytes())]);
            assert!(matches!(outcome, Outcome::Deny { ref refusal, .. } if refusal.status == 401));
        }
        assert!(held.answers.is_empty());
        assert!(held.decoded.is_empty());
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

    thread_local! {
        /// `InVm`'s settings: one per VM, as the SDK keeps the default
        /// rules'.
        static MODE: RefCell<String> = RefCell::default();
    }

    /// Allows a key when its VM-wide setting `mode` is `allow`.
    #[derive(Default)]
    struct InVm;

    impl Decider for InVm {
        type Fault = String;

        fn decide(
            &mut self,
            _: &KeyRecord,
            _: &Identity,
            _: &CheckRequest,
            _: Timestamp,
        ) -> Result<Decision, String> {
            Ok(match MODE.with(|mode| mode.borrow().clone()).as_str() {
                "allow" => Decision::Allow(Vec::new()),
                _ => Decision::Deny {
                    code: DenyCode::Denied,
                    message: "mode".into(),
                },
            })
        }
    }

    impl Policy for InVm {
        fn configure(&mut self, config: &[(String, String)]) -> Result<(), String> {
            let mode = config.iter().find(|(name, _)| name == "mode");
            MODE.with(|kept| *kept.borrow_mut() = mode.map(|(_, v)| v.clone()).unwrap_or_default());
            Ok(())
        }
    }

    #[test]
    fn filters_of_one_vm_each_decide_under_their_own_settings() {
        // Two plugins in one Envoy VM: the one configured last must not
        // set the rules for the other.
        let (allowing, allowed) = snapshot_of(1, &[("mode", "allow")]);
        let (denying, denied) = snapshot_of(1, &[("mode", "deny")]);
        let mut first = Held::new(InVm);
        let mut second = Held::new(InVm);
        first.replace(Snapshot::open(allowing).unwrap());
        second.replace(Snapshot::open(denying).unwrap());
        for _ in 0..2 {
            let outcome = check(&mut first, &[("x-api-key", allowed.as_bytes())]);
            assert!(matches!(outcome, Outcome::Allow { .. }), "{outcome:?}");
            let outcome = check(&mut second, &[("x-api-key", denied.as_bytes())]);
            let Outcome::Deny { refusal, .. } = outcome else {
                panic!("allowed under the other filter's settings: {outcome:?}")
            };
            assert_eq!(refusal.status, 403);
        }
    }
}
