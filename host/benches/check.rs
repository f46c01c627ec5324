//! The in-process rows of the speed goals: a whole check (format, SHA-256,
//! lookup, decision) through the default policy component, against the same
//! pipeline with the same rules compiled natively, at 1k, 100k and 1M keys.
//!
//!     cargo bench -p keyhost --bench check
//!
//! Registries come from `keyhost::synthetic` (the example
//! `synthetic_registry` writes the same ones to disk for bench/run.sh), and
//! each is built only when a benchmark that needs it runs, so a filter such
//! as `check/wasm/1000$` is quick. Each iteration checks the next of 64
//! secrets spread over the registry, so a large registry pays its cache
//! misses, and the policy gets a fresh instance for every check (an instance
//! serves one key). `check/wasm-one-key` checks one secret over and over,
//! on one reused instance: the difference is the price of a fresh instance.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Mutex, OnceLock};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keyhost::check::{CheckRequest, Decider, check};
use keyhost::native::NativeRules;
use keyhost::policy::{CompiledCache, Policy, PolicyEngine, PolicySlot, SandboxLimits};
use keyhost::registry::LoadedRegistry;
use keyhost::synthetic;
use keyhost::time::Timestamp;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const SAMPLES: usize = 64;

struct Fixture {
    checker: LoadedRegistry,
    secrets: Vec<String>,
}

/// The registry of `size` keys, built on first use and kept.
fn fixture(size: usize) -> &'static Fixture {
    static FIXTURES: OnceLock<Mutex<HashMap<usize, &'static Fixture>>> = OnceLock::new();
    let mut fixtures = FIXTURES.get_or_init(Default::default).lock().unwrap();
    fixtures.entry(size).or_insert_with(|| {
        let synthetic = synthetic::registry(size, SAMPLES);
        Box::leak(Box::new(Fixture {
            checker: LoadedRegistry::new(synthetic.registry),
            secrets: synthetic.secrets,
        }))
    })
}

fn request() -> CheckRequest {
    let mut request = synthetic::sample_request();
    request.now = Some(Timestamp::now());
    request
}

/// The default policy on the engine `keyhost serve` runs, which makes
/// instance after instance from a pool.
fn policy() -> Policy {
    let engine = PolicyEngine::serving(CompiledCache::disabled(), SandboxLimits::default())
        .expect("the policy engine starts");
    engine.load_default().expect("the default policy loads")
}

/// Checks the fixture's secrets in turn; every one must be allowed, so both
/// sides do the whole work.
fn bench_checks(c: &mut Criterion, name: &str, mut decider: impl Decider) {
    let request = request();
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        group.bench_function(BenchmarkId::new(name, size), |b| {
            let Fixture { checker, secrets } = fixture(size);
            for secret in secrets {
                assert!(
                    check(checker, &mut decider, secret, &request)
                        .unwrap()
                        .is_allow()
                );
            }
            let mut next = 0;
            b.iter(|| {
                let secret = &secrets[next % secrets.len()];
                next += 1;
                check(checker, &mut decider, black_box(secret), &request).unwrap()
            })
        });
    }
    group.finish();
}

/// One secret over and over: the instance is reused between checks.
fn bench_one_key(c: &mut Criterion) {
    let request = request();
    let mut slot = PolicySlot::new(policy(), Vec::new());
    let Fixture { checker, secrets } = fixture(SIZES[0]);
    let secret = &secrets[0];
    assert!(
        check(checker, &mut slot, secret, &request)
            .unwrap()
            .is_allow()
    );
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("wasm-one-key", SIZES[0]), |b| {
        b.iter(|| check(checker, &mut slot, black_box(secret), &request).unwrap())
    });
    group.finish();
}

fn checks(c: &mut Criterion) {
    bench_one_key(c);
    bench_checks(c, "wasm", PolicySlot::new(policy(), Vec::new()));
    bench_checks(
        c,
        "native",
        NativeRules::new(&[]).expect("default settings"),
    );
}

criterion_group!(benches, checks);
criterion_main!(benches);
