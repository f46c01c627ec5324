//! The in-process rows of the speed goals: a whole check (format, SHA-256,
//! lookup, decision) through the default policy component, against the same
//! pipeline with the same rules compiled natively, at 1k, 100k and 1M keys.
//!
//!     cargo bench -p keyhost --bench check
//!
//! Registries come from `keyhost::synthetic`, which the example
//! `synthetic_registry` writes to disk for the process rows (bench/run.sh).
//! Each iteration checks the next of 64 secrets spread over the registry, so
//! a large registry pays its cache misses.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use keyhost::check::{CheckRequest, Checker, Decider};
use keyhost::native::NativeRules;
use keyhost::policy::{CompiledCache, PolicyEngine, PolicySlot, SandboxLimits};
use keyhost::synthetic;
use keyhost::time::Timestamp;

const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];
const SAMPLES: usize = 64;

fn run(
    checker: &Checker,
    decider: &mut impl Decider,
    secrets: &[String],
    request: &CheckRequest,
) -> impl FnMut() -> bool {
    let mut next = 0;
    move || {
        let secret = &secrets[next % secrets.len()];
        next += 1;
        checker
            .check(decider, black_box(secret), request)
            .is_allow()
    }
}

fn checks(c: &mut Criterion) {
    let engine = PolicyEngine::new(CompiledCache::disabled(), SandboxLimits::default())
        .expect("the policy engine starts");
    let policy = engine.load_default().expect("the default policy loads");
    let mut request = synthetic::sample_request();
    request.now = Some(Timestamp::now());

    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(1));
    for size in SIZES {
        let synthetic = synthetic::registry(size, SAMPLES);
        let checker = Checker::new(synthetic.registry);
        let mut wasm = PolicySlot::new(policy.clone(), Vec::new());
        let mut native = NativeRules::new(&[]).expect("default settings");
        for secret in &synthetic.secrets {
            // Both sides must be doing the whole work: every sample is allowed.
            assert!(checker.check(&mut wasm, secret, &request).is_allow());
            assert!(checker.check(&mut native, secret, &request).is_allow());
        }
        let mut wasm_check = run(&checker, &mut wasm, &synthetic.secrets, &request);
        group.bench_function(BenchmarkId::new("wasm", size), |b| b.iter(&mut wasm_check));
        let mut native_check = run(&checker, &mut native, &synthetic.secrets, &request);
        group.bench_function(BenchmarkId::new("native", size), |b| {
            b.iter(&mut native_check)
        });
    }
    group.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);
