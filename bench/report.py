"""Prints bench/run.sh's results as a markdown table.

    python3 bench/report.py WORK_DIR CRITERION_DIR

Each row is a ratio of two sides measured in the same run, with each side's
min / median / max: per check for the criterion rows, per process for the
hyperfine rows, requests per second over the wrk rounds for the HTTP rows.
Where both sides were measured in the same interleaved rounds (wrk, and the
CPU read during them), the ratio is the median of the rounds' ratios: the
two sides of a round ran seconds apart, so drift in the machine's speed
between rounds (up to a third on this shared machine) cancels out.
Otherwise it is the ratio of the medians.
"""

import json
import statistics
import sys
from pathlib import Path

work, criterion = Path(sys.argv[1]), Path(sys.argv[2])


def spread(values, rounds=None):
    """min, median, max, and the value of each round when there are rounds."""
    return min(values), statistics.median(values), max(values), rounds


def ratio_of(ours, theirs):
    if ours[3] and theirs[3] and len(ours[3]) == len(theirs[3]):
        return statistics.median(a / b for a, b in zip(ours[3], theirs[3]))
    return ours[1] / theirs[1]


def criterion_side(name, size):
    """Nanoseconds per check, one value per criterion sample."""
    sample = json.loads((criterion / "check" / name / str(size) / "new" / "sample.json").read_text())
    return spread([t / n for t, n in zip(sample["times"], sample["iters"])])


def contract_side(name):
    """Nanoseconds per call of a contract candidate (host/benches/contracts.rs)."""
    sample = json.loads((criterion / "contract" / name / "new" / "sample.json").read_text())
    return spread([t / n for t, n in zip(sample["times"], sample["iters"])])


def hyperfine_side(file):
    """Milliseconds per process."""
    result = json.loads((work / file).read_text())["results"][0]
    return tuple(result[k] * 1000 for k in ("min", "median", "max")) + (None,)


def wrk_side(name):
    """Requests per second, one value per round."""
    values = [float(v) for v in (work / f"wrk-{name}.txt").read_text().split()]
    return spread(values, values)


def latency_side(name):
    """The 99th percentile of latency in µs, one value per round."""
    values = [float(v) for v in (work / f"p99-{name}.txt").read_text().split()]
    return spread(values, values)


def cpu_side(name):
    """Core-µs per request, one value per round."""
    values = [float(v) for v in (work / f"cpu-filter-{name}.txt").read_text().split()]
    return spread(values, values)


def size_side(file):
    """Bytes, one value."""
    value = float((work / file).read_text().split()[0])
    return value, value, value, None


def kib_as_mib_side(file):
    """MiB, from one figure in KiB."""
    value = int((work / file).read_text().split()[0]) / 1024
    return value, value, value, None


def show(side, unit):
    digits = 0 if unit in ("req/s", "bytes", "µs") else 1 if unit in ("ns", "core-µs") else 2
    return " / ".join(f"{v:,.{digits}f}" for v in side[:3]) + f" {unit}"


def row(what, goal, sense, limit, ours, theirs, unit):
    """A row, or None when this run did not measure one of its sides."""
    try:
        return what, goal, sense, limit, ours(), theirs(), unit
    except FileNotFoundError:
        return None


rows = [
    row("in-process check, WASM default policy vs native rules, 100k keys", "≤ 1.5×", "le", 1.5,
        lambda: criterion_side("wasm", 100_000), lambda: criterion_side("native", 100_000), "ns"),
    row("in-process check (WASM), 1M keys vs 1k keys", "≤ 1.2×", "le", 1.2,
        lambda: criterion_side("wasm", 1_000_000), lambda: criterion_side("wasm", 1_000), "ns"),
    row("`keyhost check` process, 10k keys, warm cache vs `sha256sum`", "≤ 3×", "le", 3.0,
        lambda: hyperfine_side("cli-10000.json"), lambda: hyperfine_side("sha256sum.json"), "ms"),
    row("`keyhost check` process, 1M keys vs 10k keys", "≤ 2×", "le", 2.0,
        lambda: hyperfine_side("cli-1000000.json"), lambda: hyperfine_side("cli-10000.json"), "ms"),
    row("`keyhost serve` /auth vs nginx `return 200` (wrk)", "≥ 60%", "ge", 0.6,
        lambda: wrk_side("serve"), lambda: wrk_side("nginx-plain"), "req/s"),
    row("nginx `auth_request` → keyhost vs the same nginx without auth (a static file)", "≥ 40%", "ge", 0.4,
        lambda: wrk_side("nginx-auth"), lambda: wrk_side("nginx-static"), "req/s"),
    row("`keyhost serve` ready (first `/healthz` 200) with 1M keys, from a built snapshot", "≤ 2 s", "abs", 2.0,
        lambda: size_side("serve-ready-1m.txt"), lambda: None, "s"),
    row("`keyhost serve` ready (first `/healthz` 200) with 1M keys, from the TOML alone", "≤ 30 s", "abs", 30.0,
        lambda: size_side("serve-ready-1m-toml.txt"), lambda: None, "s"),
    row("`keyhost serve` peak RSS with 1M keys, under wrk load", "≤ 512 MiB", "abs", 512.0,
        lambda: kib_as_mib_side("serve-rss.txt"), lambda: None, "MiB"),
    row("`keyhost serve` /auth, 1M keys vs 1k keys (wrk)", "≥ 0.9×", "ge", 0.9,
        lambda: wrk_side("serve"), lambda: wrk_side("serve-1k"), "req/s"),
    row("one `keyhost create` at 1M keys vs at 10k keys", "≤ 3×", "le", 3.0,
        lambda: hyperfine_side("create-1000000.json"), lambda: hyperfine_side("create-10000.json"), "ms"),
    row("one `keyhost create` at 10k keys vs `keyhost check` at 10k keys", "≤ 3×", "le", 3.0,
        lambda: hyperfine_side("create-10000.json"), lambda: hyperfine_side("cli-10000.json"), "ms"),
    row("one replica with `--state redis://…` vs the same without it (a key with a large rate limit, wrk -c16)", "≥ 70%", "ge", 0.7,
        lambda: wrk_side("replica-redis"), lambda: wrk_side("replica-local"), "req/s"),
    row("three replicas behind nginx vs one replica behind the same nginx", "report", "report", None,
        lambda: wrk_side("replica-nginx-three"), lambda: wrk_side("replica-nginx-one"), "req/s"),
    row("gate in front of the echo app under `wasmtime serve --max-instance-reuse-count 128` vs the bare app the same way",
        "≥ 80%", "ge", 0.8, lambda: wrk_side("gate-gate-reuse"), lambda: wrk_side("gate-app-reuse"), "req/s"),
    row("the same at `wasmtime serve`'s default, one instance per request", "≥ 60%", "ge", 0.6,
        lambda: wrk_side("gate-gate-fresh"), lambda: wrk_side("gate-app-fresh"), "req/s"),
    row("gate with a 100k-key snapshot vs a 1k-key snapshot (one instance per request)", "≥ 0.9×", "ge", 0.9,
        lambda: wrk_side("gate-gate-fresh-100k"), lambda: wrk_side("gate-gate-fresh"), "req/s"),
    row("gate with a 100k-key snapshot, memories copied (`-O memory-init-cow=n`) vs mapped copy-on-write", "report", "report", None,
        lambda: wrk_side("gate-gate-fresh-100k-copied"), lambda: wrk_side("gate-gate-fresh-100k"), "req/s"),
    row("floor, instances reused: a component that hands the request untouched to the app vs the bare app", "report", "report", None,
        lambda: wrk_side("gate-floor-pass-reuse"), lambda: wrk_side("gate-app-reuse"), "req/s"),
    row("floor, instances reused: a gate that checks nothing but hands on with the gate's headers (virtual HTTP types) vs the bare app", "report", "report", None,
        lambda: wrk_side("gate-floor-headers-reuse"), lambda: wrk_side("gate-app-reuse"), "req/s"),
    row("gate vs that header floor, instances reused: keyhost's own share", "report", "report", None,
        lambda: wrk_side("gate-gate-reuse"), lambda: wrk_side("gate-floor-headers-reuse"), "req/s"),
    row("floor, one instance per request: the untouched hand-on vs the bare app", "report", "report", None,
        lambda: wrk_side("gate-floor-pass-fresh"), lambda: wrk_side("gate-app-fresh"), "req/s"),
    row("floor, one instance per request: the header floor vs the bare app", "report", "report", None,
        lambda: wrk_side("gate-floor-headers-fresh"), lambda: wrk_side("gate-app-fresh"), "req/s"),
    row("gate vs the header floor, one instance per request: keyhost's own share", "report", "report", None,
        lambda: wrk_side("gate-gate-fresh"), lambda: wrk_side("gate-floor-headers-fresh"), "req/s"),
    row("`keyhost gate build` with 100k keys", "≤ 2 s", "abs", 2000.0,
        lambda: hyperfine_side("gate-build-100k.json"), lambda: None, "ms"),
    row("Envoy + keyhost filter vs the same Envoy without auth (nginx `return 200` upstream)", "≥ 75%", "ge", 0.75,
        lambda: wrk_side("filter-envoy-filter"), lambda: wrk_side("filter-envoy-bare"), "req/s"),
    row("Envoy + keyhost filter vs Envoy `ext_authz` → `keyhost serve`", "≥ 2×", "ge-times", 2.0,
        lambda: wrk_side("filter-envoy-filter"), lambda: wrk_side("filter-envoy-extauthz"), "req/s"),
    row("CPU the filter adds per request vs the CPU `ext_authz` → `keyhost serve` adds (proxy, keyhost and upstream, less bare Envoy)",
        "≤ 1/5", "le", 0.2,
        lambda: cpu_side("envoy-filter-added"), lambda: cpu_side("envoy-extauthz-added"), "core-µs"),
    row("Traefik + keyhost plugin vs the same Traefik without it", "≥ 90%", "ge", 0.9,
        lambda: wrk_side("filter-traefik-plugin"), lambda: wrk_side("filter-traefik-bare"), "req/s"),
    row("floor: Envoy + a filter that checks nothing (bench/floor, `empty`) vs the same Envoy without it", "report", "report", None,
        lambda: wrk_side("filter-envoy-empty"), lambda: wrk_side("filter-envoy-bare"), "req/s"),
    row("floor: Envoy + a filter that only makes a check's calls (all headers, the peer; remove one, set three) vs without it", "report", "report", None,
        lambda: wrk_side("filter-envoy-headers"), lambda: wrk_side("filter-envoy-bare"), "req/s"),
    row("Envoy + keyhost filter vs Envoy + the calls floor: keyhost's own share", "report", "report", None,
        lambda: wrk_side("filter-envoy-filter"), lambda: wrk_side("filter-envoy-headers"), "req/s"),
    row("CPU the calls floor adds per request vs the CPU the keyhost filter adds", "report", "report", None,
        lambda: cpu_side("envoy-headers-added"), lambda: cpu_side("envoy-filter-added"), "core-µs"),
    row("CPU the empty filter adds per request vs the CPU the keyhost filter adds", "report", "report", None,
        lambda: cpu_side("envoy-empty-added"), lambda: cpu_side("envoy-filter-added"), "core-µs"),
    row("floor: Traefik + a plugin that checks nothing vs the same Traefik without it", "report", "report", None,
        lambda: wrk_side("filter-traefik-empty"), lambda: wrk_side("filter-traefik-bare"), "req/s"),
    row("floor: Traefik + a plugin that only makes a check's calls (header names, the key, method, URI, peer; remove one, set three) vs without it", "report", "report", None,
        lambda: wrk_side("filter-traefik-headers"), lambda: wrk_side("filter-traefik-bare"), "req/s"),
    row("Traefik + keyhost plugin vs Traefik + the calls floor: keyhost's own share", "report", "report", None,
        lambda: wrk_side("filter-traefik-plugin"), lambda: wrk_side("filter-traefik-headers"), "req/s"),
    row("filter with a 100k-key snapshot vs a 1k-key snapshot (both live from keyhost serve)", "≥ 0.9×", "ge", 0.9,
        lambda: wrk_side("filter-envoy-filter-100k"), lambda: wrk_side("filter-envoy-filter"), "req/s"),
    row("`GET /v1/snapshot` at 100k keys: the snapshot's size", "report", "abs-report", None,
        lambda: size_side("snapshot-100k-bytes.txt"), lambda: None, "bytes"),
    row("`GET /v1/snapshot` at 100k keys: a whole fetch (curl, made once per registry, then sent)", "report", "abs-report", None,
        lambda: hyperfine_side("snapshot-fetch-100k.json"), lambda: None, "ms"),
    row("`GET /v1/snapshot` at 100k keys: an unchanged registry (304)", "report", "abs-report", None,
        lambda: hyperfine_side("snapshot-304-100k.json"), lambda: None, "ms"),
]
rows += [
    row(f"contract 0.2 candidates, one reused instance: {what} vs records (the shape 0.2 keeps)",
        "report", "report", None, lambda name=name: contract_side(name), lambda: contract_side("records"), "ns")
    for name, what in [
        ("buffer", "one pre-encoded buffer"),
        ("interned", "scopes, services and CIDRs interned through `configure`"),
        ("records-bump", "records into a bump arena reset per call"),
        ("lazy", "a resource with lazy getters"),
        ("native", "the rules called natively"),
    ]
]
rows.append(
    row("`keyhost serve` /auth with the Python policy vs with the Rust default policy (1k keys, wrk)", "report", "report", None,
        lambda: wrk_side("serve-python"), lambda: wrk_side("serve-rust"), "req/s"))
rows += [
    row("`keyhost serve` /auth (one key, the default policy) vs bare hyper", "≥ 75%", "ge", 0.75,
        lambda: wrk_side("serve-keyhost"), lambda: wrk_side("serve-hyper"), "req/s"),
    row("`keyhost serve` /auth vs serve's own stack answering 200 without a check", "≥ 85%", "ge", 0.85,
        lambda: wrk_side("serve-keyhost"), lambda: wrk_side("serve-stack"), "req/s"),
    row("floor: serve's own stack answering 200 vs bare hyper", "report", "report", None,
        lambda: wrk_side("serve-stack"), lambda: wrk_side("serve-hyper"), "req/s"),
    row("nginx `auth_request` → keyhost vs nginx `auth_request` → nginx `return 200`", "≥ 85%", "ge", 0.85,
        lambda: wrk_side("serve-nginx-auth-keyhost"), lambda: wrk_side("serve-nginx-auth-nginx"), "req/s"),
    row("Envoy `ext_authz` → keyhost vs Envoy `ext_authz` → nginx `return 200`", "≥ 85%", "ge", 0.85,
        lambda: wrk_side("serve-envoy-authz-keyhost"), lambda: wrk_side("serve-envoy-authz-nginx"), "req/s"),
    row("`keyhost serve` p99 latency vs bare hyper's, same load", "≤ 2×", "le", 2.0,
        lambda: latency_side("serve-keyhost"), lambda: latency_side("serve-hyper"), "µs"),
    row("`keyhost serve` /auth with `--decision-log` vs without", "≥ 90%", "ge", 0.9,
        lambda: wrk_side("serve-keyhost-logged"), lambda: wrk_side("serve-keyhost"), "req/s"),
]
rows = [r for r in rows if r is not None]

print("| what | goal | keyhost side (min / median / max) | baseline (min / median / max) | ratio | met |")
print("|---|---|---|---|---|---|")
for what, goal, sense, limit, ours, theirs, unit in rows:
    if sense in ("abs", "abs-report"):
        # An absolute goal, or a figure, on one side: no baseline, no ratio.
        met = "—" if sense == "abs-report" else "yes" if ours[1] <= limit else "**no**"
        print(f"| {what} | {goal} | {show(ours, unit)} | — | — | {met} |")
        continue
    ratio = ratio_of(ours, theirs)
    if sense == "report":
        met = "—"
    else:
        met = "yes" if (ratio <= limit if sense == "le" else ratio >= limit) else "**no**"
    shown = f"{ratio:.2f}×" if sense in ("le", "ge-times") else f"{ratio:.0%}"
    print(f"| {what} | {goal} | {show(ours, unit)} | {show(theirs, unit)} | {shown} | {met} |")

if (work / "serve-rss.txt").exists() and (work / "cli-1m-rss.txt").exists():
    serve_rss = int((work / "serve-rss.txt").read_text().split()[0])
    cli_rss = int((work / "cli-1m-rss.txt").read_text().split()[-1])
    print()
    print(f"Peak memory (RSS): `keyhost serve` with 1M keys {serve_rss / 1024:,.0f} MiB; "
          f"`keyhost check` with 1M keys {cli_rss / 1024:,.1f} MiB.")
