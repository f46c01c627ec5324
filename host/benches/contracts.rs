//! What one `validate` call costs in each candidate shape for the next
//! major contract (keyhost:policy 0.2), on the same decision: the default
//! rules (`keyhost-policy-rules`) on the synthetic registry's key, its
//! identity and the sample request, all allowed after every rule has run.
//!
//!     cargo bench -p keyhost --bench contracts
//!
//! The shapes are in bench/contracts/wit/candidates.wit; the guest is
//! bench/contracts (and bench/contracts-bump, the same source with a bump
//! arena as its allocator), built by host/build.rs. Each function times one
//! call on one reused instance, host-side preparation included (what the
//! host must do per call: borrow its records, encode a buffer, look up
//! the request's terms):
//!
//! - `records`: today's shape, three records of strings and lists;
//! - `records-bump`: the same, into a guest whose allocator is a bump arena
//!   that starts over after each call;
//! - `buffer`: one `list<u8>` in the layout of bench/contracts/src/wire.rs,
//!   read in place by the guest;
//! - `lazy`: a borrowed `call` resource whose getters the guest calls only
//!   for the fields the rules reach;
//! - `interned`: scopes, services and CIDRs given once to `configure`, and
//!   indices into them in each call (the registry's are interned ahead, as
//!   a registry would keep them; the request's looked up per call);
//! - `floor`: a call that passes nothing and returns an empty `allow`: what
//!   any async call into an instance costs before its arguments;
//! - `native`: `rules::decide` called directly, no WebAssembly at all.
//!
//! The engine is configured as `keyhost serve`'s (async calls, epoch
//! interruption with a deadline far away, the pooling allocator, WASI p2
//! linked asynchronously over keyhost's empty `Sandbox`), but without its
//! memory limiter and the epoch ticker, which do not act on a short call.
//! Before timing, every candidate must agree with `rules::decide` on the
//! allowed call and on denying variants (disabled, leaked, expired, wrong
//! service, address, scope), so each does the real work.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_executor::block_on;
use keyhost::check::CheckRequest;
use keyhost::iam::{IdentityKind, KeyKind};
use keyhost::policy::{Sandbox, SandboxLimits};
use keyhost::registry::{Identity, KeyRecord};
use keyhost::synthetic;
use keyhost::time::Timestamp;
use keyhost_policy_rules as rules;
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};
use wasmtime_wasi::{WasiCtxView, WasiView};

mod bindings {
    //! Host types generated from bench/contracts/wit.
    wasmtime::component::bindgen!({
        path: "../bench/contracts/wit",
        world: "candidates",
        ownership: Borrowing { duplicate_if_necessary: true },
        imports: { default: trappable },
        exports: { default: async },
        with: { "keyhost:candidates/call-facts.call": crate::CallFacts },
    });
}

// The guest's view of the rules and its buffer layout, compiled here too:
// the first to check it against `rules::decide`, the second to encode.
#[path = "../../bench/contracts/src/views.rs"]
mod views;
// The guest's half (the decoder) is only used to check the layout.
#[allow(dead_code)]
#[path = "../../bench/contracts/src/wire.rs"]
mod wire;

use bindings::exports::keyhost::candidates::interned;
use bindings::keyhost::candidates::{call_facts, types as wit};

const CONTRACTS: &str = concat!(env!("KEYHOST_POLICY_DIR"), "/keyhost_bench_contracts.wasm");
const CONTRACTS_BUMP: &str = concat!(
    env!("KEYHOST_POLICY_DIR"),
    "/keyhost_bench_contracts_bump.wasm"
);

/// One call's data: a key, its identity and a request, and what
/// `rules::decide` says of them.
struct Case {
    what: &'static str,
    key: KeyRecord,
    identity: Identity,
    /// The identity's rights, as keyhost hands a policy its scopes.
    identity_scopes: Vec<String>,
    request: CheckRequest,
    now: i64,
    expected: Result<(), rules::Deny>,
    /// The key's texts as indices into [`Vocabulary`], made ahead.
    interned: InternedKey,
}

#[derive(Default)]
struct InternedKey {
    service: Option<u32>,
    scopes: Vec<u32>,
    allowed_ips: Vec<u32>,
    identity_scopes: Vec<u32>,
}

/// The scopes, services and CIDRs of all cases, for `interned`.
#[derive(Default)]
struct Vocabulary {
    words: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocabulary {
    fn intern(&mut self, word: &str) -> u32 {
        if let Some(&index) = self.index.get(word) {
            return index;
        }
        let index = u32::try_from(self.words.len()).expect("a small vocabulary");
        self.words.push(word.to_string());
        self.index.insert(word.to_string(), index);
        index
    }

    fn term<'a>(&self, text: Option<&'a str>) -> Option<interned::Term<'a>> {
        text.map(|text| match self.index.get(text) {
            Some(&index) => interned::Term::Known(index),
            None => interned::Term::Unknown(text),
        })
    }
}

/// The host side of the `call` resource: which case a call is about.
pub struct CallFacts(&'static Case);

/// A store's data: keyhost's empty WASI sandbox, and the `call` resources.
struct Host {
    sandbox: Sandbox,
    table: ResourceTable,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        self.sandbox.ctx()
    }
}

fn fixture() -> (&'static [Case], Vocabulary) {
    let synthetic = synthetic::registry(1, 1);
    let key = synthetic.registry.keys[0].clone();
    let identity = synthetic.registry.identities[0].clone();
    let mut request = synthetic::sample_request();
    let now = Timestamp::now();
    request.now = Some(now);

    let mut cases = vec![("allowed", key.clone(), request.clone())];
    let mut variant = |what, change: &dyn Fn(&mut KeyRecord, &mut CheckRequest)| {
        let (mut key, mut request) = (key.clone(), request.clone());
        change(&mut key, &mut request);
        cases.push((what, key, request));
    };
    variant("disabled", &|key, _| key.disabled = true);
    variant("leaked", &|key, _| key.leaked = true);
    variant("expired", &|key, _| {
        key.expires_at = Some(Timestamp(now.0 - 1))
    });
    variant("wrong service", &|key, _| {
        key.kind = KeyKind::ServiceSpecific;
        key.service = Some("db".into());
    });
    variant("address", &|_, request| {
        request.source_ip = Some("203.0.113.9".into())
    });
    variant("scope", &|_, request| request.scope = Some("write".into()));
    variant("unknown scope", &|_, request| {
        request.scope = Some("admin".into())
    });

    let identity_scopes: Vec<String> = identity.rights().map(String::from).collect();
    let mut vocabulary = Vocabulary::default();
    vocabulary.intern(rules::CLASSIC_INFRASTRUCTURE);
    let cases: Vec<Case> = cases
        .into_iter()
        .map(|(what, key, request)| {
            let mut intern = |list: &[String]| -> Vec<u32> {
                list.iter().map(|word| vocabulary.intern(word)).collect()
            };
            let interned = InternedKey {
                scopes: intern(&key.scopes),
                allowed_ips: intern(&key.allowed_ips),
                identity_scopes: intern(&identity_scopes),
                service: key.service.as_deref().map(|s| vocabulary.intern(s)),
            };
            let expected = rules::decide(
                &rules::Settings::default(),
                &rules_key(&key),
                &identity_scopes,
                &rules_request(&request, now.0),
            );
            Case {
                what,
                key,
                identity: identity.clone(),
                identity_scopes: identity_scopes.clone(),
                request,
                now: now.0,
                expected,
                interned,
            }
        })
        .collect();
    assert!(cases[0].expected.is_ok(), "the sample call is allowed");
    assert!(cases[1..].iter().all(|case| case.expected.is_err()));
    (cases.leak(), vocabulary)
}

fn rules_key(key: &KeyRecord) -> rules::Key<'_> {
    rules::Key {
        kind: rules_kind(key.kind),
        service: key.service.as_deref(),
        scopes: &key.scopes,
        allowed_ips: &key.allowed_ips,
        expires_at: key.expires_at.map(|t| t.0),
        disabled: key.disabled,
        leaked: key.leaked,
    }
}

fn rules_request(request: &CheckRequest, now: i64) -> rules::Request<'_> {
    rules::Request {
        service: request.service.as_deref(),
        scope: request.scope.as_deref(),
        source_ip: request.source_ip.as_deref(),
        now,
    }
}

fn rules_kind(kind: KeyKind) -> rules::KeyKind {
    match kind {
        KeyKind::User => rules::KeyKind::User,
        KeyKind::ServiceId => rules::KeyKind::ServiceId,
        KeyKind::ClassicInfrastructure => rules::KeyKind::ClassicInfrastructure,
        KeyKind::ServiceSpecific => rules::KeyKind::ServiceSpecific,
    }
}

fn wit_kind(kind: KeyKind) -> wit::KeyKind {
    match kind {
        KeyKind::User => wit::KeyKind::User,
        KeyKind::ServiceId => wit::KeyKind::ServiceId,
        KeyKind::ClassicInfrastructure => wit::KeyKind::ClassicInfrastructure,
        KeyKind::ServiceSpecific => wit::KeyKind::ServiceSpecific,
    }
}

fn wit_identity_kind(identity: &Identity) -> wit::IdentityKind {
    match identity.kind() {
        IdentityKind::User => wit::IdentityKind::User,
        IdentityKind::ServiceId => wit::IdentityKind::ServiceId,
    }
}

/// A guest's decision in the rules' terms, to compare with `rules::decide`.
fn verdict(decision: wit::Decision) -> Result<(), rules::Deny> {
    let deny = match decision {
        wit::Decision::Allow(info) => {
            assert!(info.is_empty(), "the default rules add no information");
            return Ok(());
        }
        wit::Decision::Deny(deny) => deny,
    };
    let code = match deny.code {
        wit::DenyCode::Disabled => rules::DenyCode::Disabled,
        wit::DenyCode::Expired => rules::DenyCode::Expired,
        wit::DenyCode::Leaked => rules::DenyCode::Leaked,
        wit::DenyCode::WrongService => rules::DenyCode::WrongService,
        wit::DenyCode::InsufficientScope => rules::DenyCode::InsufficientScope,
        wit::DenyCode::IpNotAllowed => rules::DenyCode::IpNotAllowed,
        wit::DenyCode::Denied => rules::DenyCode::Denied,
        other => panic!("the rules never give {other:?}"),
    };
    Err(rules::Deny::new(code, deny.message))
}

impl call_facts::Host for Host {}
impl wit::Host for Host {}

/// The getters read the case the handle stands for; a handle the host did
/// not give traps.
impl call_facts::HostCall for Host {
    fn key_kind(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<wit::KeyKind> {
        Ok(wit_kind(self.table.get(&call)?.0.key.kind))
    }
    fn key_service(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&call)?.0.key.service.clone())
    }
    fn key_scopes(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&call)?.0.key.scopes.clone())
    }
    fn allowed_ips(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&call)?.0.key.allowed_ips.clone())
    }
    fn expires_at(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Option<i64>> {
        Ok(self.table.get(&call)?.0.key.expires_at.map(|t| t.0))
    }
    fn disabled(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&call)?.0.key.disabled)
    }
    fn leaked(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&call)?.0.key.leaked)
    }
    fn identity_scopes(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Vec<String>> {
        Ok(self.table.get(&call)?.0.identity_scopes.clone())
    }
    fn request_service(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&call)?.0.request.service.clone())
    }
    fn request_scope(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&call)?.0.request.scope.clone())
    }
    fn source_ip(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&call)?.0.request.source_ip.clone())
    }
    fn now(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<i64> {
        Ok(self.table.get(&call)?.0.now)
    }
    fn drop(&mut self, call: Resource<CallFacts>) -> wasmtime::Result<()> {
        self.table.delete(call)?;
        Ok(())
    }
}

/// An engine as `keyhost serve`'s (see the module doc), and its linker.
fn engine() -> (Engine, Linker<Host>) {
    let mut pool = PoolingAllocationConfig::default();
    // Room for the two components' instances, and not for 1000 (the
    // default would reserve terabytes of address space).
    pool.total_component_instances(8)
        .total_core_instances(64)
        .total_memories(16)
        .total_tables(64)
        .total_stacks(8)
        .max_memory_size(SandboxLimits::default().memory_bytes);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(512 << 10)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .async_stack_zeroing(true);
    let engine = Engine::new(&config).expect("the engine starts");
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("WASI links");
    bindings::Candidates::add_to_linker::<Host, HasSelf<Host>>(&mut linker, |host| host)
        .expect("the call resource links");
    (engine, linker)
}

/// One live instance of a candidates component, with its store.
struct Guest {
    store: Store<Host>,
    candidates: bindings::Candidates,
    /// The `buffer` candidate's encoding space, kept between calls as a
    /// host would keep it with the instance.
    buffer: Vec<u8>,
}

impl Guest {
    async fn new(
        engine: &Engine,
        linker: &Linker<Host>,
        path: &str,
        vocabulary: &Vocabulary,
    ) -> Guest {
        let component = Component::from_file(engine, path).expect("the component compiles");
        let pre = bindings::CandidatesPre::new(linker.instantiate_pre(&component).expect("links"))
            .expect("exports the candidates world");
        let mut store = Store::new(
            engine,
            Host {
                sandbox: Sandbox::new(&SandboxLimits::default()),
                table: ResourceTable::new(),
            },
        );
        // No ticker advances the epoch here: the deadline is never reached,
        // but the checks for it stay compiled in, as in `serve`.
        store.set_epoch_deadline(1 << 40);
        let candidates = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiates");
        let words: Vec<&str> = vocabulary.words.iter().map(String::as_str).collect();
        candidates
            .keyhost_candidates_interned()
            .call_configure(&mut store, &words)
            .await
            .expect("configure");
        Guest {
            store,
            candidates,
            buffer: Vec::new(),
        }
    }

    /// `records`: the records borrowed from the host's own, as
    /// host/src/policy/v0_1.rs does for each call.
    async fn records(&mut self, case: &Case) -> wit::Decision {
        let (key, identity, request) = (&case.key, &case.identity, &case.request);
        let key_scopes: Vec<&str> = key.scopes.iter().map(String::as_str).collect();
        let allowed_ips: Vec<&str> = key.allowed_ips.iter().map(String::as_str).collect();
        let identity_scopes: Vec<&str> = identity.rights().collect();
        let attributes: Vec<(&str, &str)> = request
            .attributes
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let key = wit::KeyRecord {
            id: &key.id,
            name: &key.name,
            kind: wit_kind(key.kind),
            owner: key.owner.as_str(),
            service: key.service.as_deref(),
            scopes: &key_scopes,
            allowed_ips: &allowed_ips,
            created_at: key.created_at.0,
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
            locked: key.locked,
        };
        let identity = wit::Identity {
            iam_id: identity.iam_id.as_str(),
            kind: wit_identity_kind(identity),
            owner: identity.owner.as_ref().map(|owner| owner.as_str()),
            scopes: &identity_scopes,
        };
        let request = wit::Request {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            method: request.method.as_deref(),
            path: request.path.as_deref(),
            attributes: &attributes,
            now: case.now,
        };
        self.candidates
            .keyhost_candidates_records()
            .call_validate(&mut self.store, key, identity, request)
            .await
            .expect("records.validate")
    }

    /// `buffer`: the call encoded into the kept buffer.
    async fn buffer(&mut self, case: &Case) -> wit::Decision {
        let mut buffer = std::mem::take(&mut self.buffer);
        encode(case, &mut buffer);
        let decision = self.raw_buffer(&buffer).await;
        self.buffer = buffer;
        decision
    }

    async fn raw_buffer(&mut self, bytes: &[u8]) -> wit::Decision {
        self.candidates
            .keyhost_candidates_buffer()
            .call_validate(&mut self.store, bytes)
            .await
            .expect("buffer.validate")
    }

    /// `lazy`: a `call` resource for the duration of the call.
    async fn lazy(&mut self, case: &'static Case) -> wit::Decision {
        let call = self
            .store
            .data_mut()
            .table
            .push(CallFacts(case))
            .expect("room in the table");
        let rep = call.rep();
        let decision = self
            .candidates
            .keyhost_candidates_lazy()
            .call_validate(&mut self.store, Resource::new_borrow(rep))
            .await
            .expect("lazy.validate");
        self.store
            .data_mut()
            .table
            .delete(call)
            .expect("the call resource is the host's");
        decision
    }

    /// `interned`: the key's indices made ahead, the request's terms looked
    /// up now.
    async fn interned(&mut self, case: &Case, vocabulary: &Vocabulary) -> wit::Decision {
        let (key, identity, request) = (&case.key, &case.identity, &case.request);
        let attributes: Vec<(&str, &str)> = request
            .attributes
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let key = interned::KeyRecord {
            id: &key.id,
            name: &key.name,
            kind: wit_kind(key.kind),
            owner: key.owner.as_str(),
            service: case.interned.service,
            scopes: &case.interned.scopes,
            allowed_ips: &case.interned.allowed_ips,
            created_at: key.created_at.0,
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
            locked: key.locked,
        };
        let identity = interned::Identity {
            iam_id: identity.iam_id.as_str(),
            kind: wit_identity_kind(identity),
            owner: identity.owner.as_ref().map(|owner| owner.as_str()),
            scopes: &case.interned.identity_scopes,
        };
        let request = interned::Request {
            service: vocabulary.term(request.service.as_deref()),
            scope: vocabulary.term(request.scope.as_deref()),
            source_ip: request.source_ip.as_deref(),
            method: request.method.as_deref(),
            path: request.path.as_deref(),
            attributes: &attributes,
            now: case.now,
        };
        self.call_interned(key, identity, request).await
    }

    async fn call_interned(
        &mut self,
        key: interned::KeyRecord<'_>,
        identity: interned::Identity<'_>,
        request: interned::Request<'_>,
    ) -> wit::Decision {
        self.candidates
            .keyhost_candidates_interned()
            .call_validate(&mut self.store, key, identity, request)
            .await
            .expect("interned.validate")
    }

    /// `floor`: an async call with no arguments, and an empty `allow`.
    async fn floor(&mut self) -> wit::Decision {
        self.candidates
            .keyhost_candidates_floor()
            .call_validate(&mut self.store)
            .await
            .expect("floor.validate")
    }

    async fn arena(&mut self) -> Option<bindings::exports::keyhost::candidates::arena::ArenaStats> {
        self.candidates
            .keyhost_candidates_arena()
            .call_stats(&mut self.store)
            .await
            .expect("arena.stats")
    }
}

/// The call in the layout of bench/contracts/src/wire.rs.
fn encode(case: &Case, out: &mut Vec<u8>) {
    let (key, identity, request) = (&case.key, &case.identity, &case.request);
    wire::encode(
        out,
        &wire::KeyFields {
            id: &key.id,
            name: &key.name,
            kind: rules_kind(key.kind),
            owner: key.owner.as_str(),
            service: key.service.as_deref(),
            scopes: &key.scopes,
            allowed_ips: &key.allowed_ips,
            created_at: key.created_at.0,
            expires_at: key.expires_at.map(|t| t.0),
            disabled: key.disabled,
            leaked: key.leaked,
            locked: key.locked,
        },
        &wire::IdentityFields {
            iam_id: identity.iam_id.as_str(),
            service_id: identity.kind() == IdentityKind::ServiceId,
            owner: identity.owner.as_ref().map(|owner| owner.as_str()),
            scopes: &case.identity_scopes,
        },
        &wire::RequestFields {
            service: request.service.as_deref(),
            scope: request.scope.as_deref(),
            source_ip: request.source_ip.as_deref(),
            method: request.method.as_deref(),
            path: request.path.as_deref(),
            attributes: &request.attributes,
            now: case.now,
        },
    )
    .expect("short texts");
}

/// Natively: the guest's view of the rules agrees with `rules::decide` on
/// every case (through the buffer layout), and the decoder refuses every
/// cut or bit flip of a buffer without panicking.
fn check_native(cases: &[Case]) {
    let mut buffer = Vec::new();
    for case in cases {
        encode(case, &mut buffer);
        let call = wire::decode(&buffer).expect("a buffer the encoder wrote");
        let settings = rules::Settings::default();
        assert_eq!(
            views::decide(&settings, &call),
            case.expected,
            "views::decide on {}",
            case.what
        );
    }
    encode(&cases[0], &mut buffer);
    for end in 0..buffer.len() {
        assert!(
            wire::decode(&buffer[..end]).is_err(),
            "a buffer cut at {end}"
        );
    }
    for at in 0..buffer.len() {
        for bit in 0..8 {
            let mut flipped = buffer.clone();
            flipped[at] ^= 1 << bit;
            let _ = black_box(
                wire::decode(&flipped)
                    .map(|call| views::decide(&rules::Settings::default(), &call).is_ok()),
            );
        }
    }
}

/// Through the component: every shape gives `rules::decide`'s decision on
/// every case, and refuses what it cannot read.
async fn check_guest(guest: &mut Guest, cases: &'static [Case], vocabulary: &Vocabulary) {
    let mut buffer = Vec::new();
    for case in cases {
        let what = case.what;
        assert_eq!(
            verdict(guest.records(case).await),
            case.expected,
            "records, {what}"
        );
        assert_eq!(
            verdict(guest.buffer(case).await),
            case.expected,
            "buffer, {what}"
        );
        assert_eq!(
            verdict(guest.lazy(case).await),
            case.expected,
            "lazy, {what}"
        );
        assert_eq!(
            verdict(guest.interned(case, vocabulary).await),
            case.expected,
            "interned, {what}"
        );
    }
    let refused =
        |decision| matches!(verdict(decision), Err(deny) if deny.code == rules::DenyCode::Denied);
    encode(&cases[0], &mut buffer);
    buffer.push(0);
    assert!(
        refused(guest.raw_buffer(&buffer).await),
        "a buffer with a byte too many"
    );
    assert!(
        refused(guest.raw_buffer(&[0xff; 7]).await),
        "a buffer of junk"
    );
    let case = &cases[0];
    let past = u32::try_from(vocabulary.words.len()).unwrap();
    let key = interned::KeyRecord {
        id: &case.key.id,
        name: &case.key.name,
        kind: wit_kind(case.key.kind),
        owner: case.key.owner.as_str(),
        service: None,
        scopes: &[past],
        allowed_ips: &[],
        created_at: 0,
        expires_at: None,
        disabled: false,
        leaked: false,
        locked: false,
    };
    let identity = interned::Identity {
        iam_id: case.identity.iam_id.as_str(),
        kind: wit_identity_kind(&case.identity),
        owner: None,
        scopes: &[],
    };
    let request = interned::Request {
        service: None,
        scope: None,
        source_ip: None,
        method: None,
        path: None,
        attributes: &[],
        now: case.now,
    };
    assert!(
        refused(guest.call_interned(key, identity, request).await),
        "an index past the vocabulary"
    );
}

/// Times `$call` on `$guest` in the group `contract`, the whole batch in
/// one `block_on` (a macro, not a closure returning a boxed future, so that
/// neither an executor's setup nor a box is timed with the call).
macro_rules! time_guest {
    ($c:expr, $name:expr, $call:expr) => {{
        let mut group = $c.benchmark_group("contract");
        group.throughput(Throughput::Elements(1));
        group.bench_function($name, |b| {
            b.iter_custom(|iterations| {
                block_on(async {
                    let start = Instant::now();
                    for _ in 0..iterations {
                        black_box($call.await);
                    }
                    start.elapsed()
                })
            })
        });
        group.finish();
    }};
}

fn contracts(c: &mut Criterion) {
    let (cases, vocabulary) = fixture();
    let vocabulary: &'static Vocabulary = Box::leak(Box::new(vocabulary));
    check_native(cases);
    let (engine, linker) = engine();
    let mut plain = block_on(Guest::new(&engine, &linker, CONTRACTS, vocabulary));
    let mut bump = block_on(Guest::new(&engine, &linker, CONTRACTS_BUMP, vocabulary));
    block_on(async {
        check_guest(&mut plain, cases, vocabulary).await;
        check_guest(&mut bump, cases, vocabulary).await;
        assert_eq!(verdict(plain.floor().await), Ok(()));
        assert!(plain.arena().await.is_none());
        // The arena serves the calls and starts over after each one.
        let before = bump.arena().await.expect("the bump component has an arena");
        for _ in 0..1000 {
            bump.records(&cases[0]).await;
        }
        let after = bump.arena().await.expect("an arena");
        assert!(
            after.arena > before.arena,
            "the arena serves the calls: {after:?}"
        );
        assert_eq!(after.fallback, 0, "the arena never fills: {after:?}");
        assert_eq!(
            after.live, 0,
            "a call leaves nothing in the arena: {after:?}"
        );
        assert!(
            after.resets >= before.resets + 1000,
            "it starts over each call: {after:?}"
        );
        // What each shape makes the guest allocate per allowed call (the
        // arena counts them): most of the cost the shapes differ by.
        macro_rules! allocations {
            ($call:expr) => {{
                let before = bump.arena().await.expect("an arena").arena;
                $call.await;
                bump.arena().await.expect("an arena").arena - before
            }};
        }
        let allowed = &cases[0];
        let counts = [
            ("records", allocations!(bump.records(allowed))),
            ("buffer", allocations!(bump.buffer(allowed))),
            ("lazy", allocations!(bump.lazy(allowed))),
            ("interned", allocations!(bump.interned(allowed, vocabulary))),
            ("floor", allocations!(bump.floor())),
        ];
        eprintln!("guest allocations per allowed call: {counts:?}");
    });

    let allowed = &cases[0];
    time_guest!(c, "records", plain.records(allowed));
    time_guest!(c, "records-bump", bump.records(allowed));
    time_guest!(c, "buffer", plain.buffer(allowed));
    time_guest!(c, "lazy", plain.lazy(allowed));
    time_guest!(c, "interned", plain.interned(allowed, vocabulary));
    time_guest!(c, "floor", plain.floor());

    let settings = rules::Settings::default();
    let mut group = c.benchmark_group("contract");
    group.throughput(Throughput::Elements(1));
    group.bench_function("native", |b| {
        b.iter(|| {
            let case = black_box(allowed);
            rules::decide(
                &settings,
                &rules_key(&case.key),
                &case.identity_scopes,
                &rules_request(&case.request, case.now),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, contracts);
criterion_main!(benches);
