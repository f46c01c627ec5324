#!/usr/bin/env bash
# Reproduces every row of keyhost's speed goals on this machine and prints a
# markdown table of the ratios, with the min/median/max of each side and the
# peak memory of `serve` and of a CLI check at 1M keys.
#
#     bench/run.sh
#
# Each ratio is measured in one run on one machine; absolute times on shared
# machines mean little. Installs hyperfine, wrk and nginx from Debian's
# packages when they are missing; builds keyhost in release mode; writes
# registries of 10k and 1M keys (and their sample secrets) in bench/work/ the
# first time, with `cargo run --release --example synthetic_registry`.
# Takes about 15 minutes after the release build. `bench/run.sh replicas`
# runs only the rows of replicas sharing state through Redis;
# `bench/run.sh gate` only those of the gate under `wasmtime serve`;
# `bench/run.sh filters` only those of the filters in Envoy and Traefik;
# `bench/run.sh writes` only the two `create` rows (and the check at 10k
# keys the second is measured against); `bench/run.sh contract` only the
# candidate shapes of contract 0.2's call and serve with the Python policy;
# `bench/run.sh serve` only serve's own cost against its floors (bare
# hyper, serve's middleware alone) and the auth_request and ext_authz
# ceilings.
set -euo pipefail
only="${1:-all}"
cd "$(dirname "$0")/.."
root="$PWD"
work="$root/bench/work"
mkdir -p "$work"
say() { echo "bench: $*" >&2; }

missing=()
for tool in hyperfine wrk curl; do command -v "$tool" >/dev/null || missing+=("$tool"); done
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || missing+=(nginx)
[ -x /usr/bin/time ] || missing+=(time)
command -v redis-server >/dev/null || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

say "building keyhost and the registry generator (release)"
cargo build --release --bin keyhost --example synthetic_registry --example gate_floor
kh="$root/target/release/keyhost"

# Replicas: one serve with --state redis://… against the same serve without
# it, and three replicas behind nginx against one, on a registry with one key
# whose rate limit (too large to reach) is checked on every request: in
# Redis, leased 64 uses at a time.
replica_rows() {
  local rw="$work/replicas" base=18490 pids=()
  rm -rf "$rw" && mkdir -p "$rw"
  export KEYHOST_REGISTRY="$rw/keys.toml" KEYHOST_CACHE_DIR="$work/cache"
  "$kh" init >/dev/null
  "$kh" identity add user:bench >/dev/null
  local key
  key="$("$kh" create --as user:bench --name bench --rate-limit 1000000000/1s)"
  redis-server --port $((base + 9)) --bind 127.0.0.1 --save "" --appendonly no >"$rw/redis.log" 2>&1 &
  pids+=($!)
  local state="redis://127.0.0.1:$((base + 9))/0"
  start_serve() { # PORT ARGS...
    local port=$1; shift
    "$kh" serve --listen "127.0.0.1:$port" "$@" >"$rw/serve-$port.out" 2>"$rw/serve-$port.log" &
    pids+=($!)
    for _ in $(seq 1 100); do grep -q listening "$rw/serve-$port.out" 2>/dev/null && return; sleep 0.1; done
    say "serve on $port did not start"; cat "$rw/serve-$port.log" >&2; exit 1
  }
  start_serve $base
  start_serve $((base + 1)) --state "$state"
  start_serve $((base + 2)) --state "$state" --primary "http://127.0.0.1:$((base + 1))"
  start_serve $((base + 3)) --state "$state" --primary "http://127.0.0.1:$((base + 1))"
  cat >"$rw/nginx.conf" <<NGINX
daemon off;
user $(id -un);
worker_processes auto;
pid $rw/nginx.pid;
error_log $rw/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $rw/body;
    proxy_temp_path $rw/proxy;
    fastcgi_temp_path $rw/fastcgi;
    uwsgi_temp_path $rw/uwsgi;
    scgi_temp_path $rw/scgi;
    upstream one { server 127.0.0.1:$((base + 1)); keepalive 64; }
    upstream three {
        server 127.0.0.1:$((base + 1)); server 127.0.0.1:$((base + 2)); server 127.0.0.1:$((base + 3));
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$((base + 5));
        location / { proxy_pass http://one; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
    server {
        listen 127.0.0.1:$((base + 6));
        location / { proxy_pass http://three; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
NGINX
  "$nginx_bin" -c "$rw/nginx.conf" -p "$rw" 2>>"$rw/nginx-error.log" &
  pids+=($!)
  sleep 1
  local round side url out
  rm -f "$work"/wrk-replica-*.txt
  for round in 1 2 3; do
    say "replica wrk round $round of 3"
    for side in "local:$base/auth" "redis:$((base + 1))/auth" "nginx-one:$((base + 5))/auth" "nginx-three:$((base + 6))/auth"; do
      url="http://127.0.0.1:${side#*:}"
      out="$(wrk -t2 -c16 -d8s -H "X-API-Key: $key" "$url")"
      if grep -q "Non-2xx" <<<"$out"; then say "$side: some responses were not 2xx"; echo "$out" >&2; exit 1; fi
      awk '/Requests\/sec/ {print $2}' <<<"$out" >>"$work/wrk-replica-${side%%:*}.txt"
    done
  done
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  unset KEYHOST_REGISTRY
}
# The gate (keyhost gate build) under `wasmtime serve`, in front of the echo
# app the tests use: against the bare app served the same way, with instance
# reuse and at one instance per request; a 100k-key snapshot against a
# 1k-key one; and the build itself at 100k keys. Every request goes through
# every rule (service, scope, the client address from X-Forwarded-For).
#
# The floors (bench/floor, composed by the gate_floor example the way
# `keyhost gate build --app` composes): `pass` hands the host's request
# untouched to the app, the least any component in front of an app costs;
# `headers` hands it on through the gate's virtual HTTP types with the key
# out and three identity headers in, as the gate does on an allow, and
# checks nothing. Six interleaved rounds of 4 s; a ratio is the median of
# the rounds' ratios.
gate_rows() {
  local gw="$work/gate" base=18470 pids=()
  local wasmtime="$root/target/foreign/venv/bin/wasmtime"
  local app="$root/target/policies/wasm32-wasip2/release/keyhost_echo_app.wasm"
  "$root/tests/foreign/setup.sh"
  mkdir -p "$gw"
  registries 1000 100000
  local gate_args=(--app "$app" --service billing --scope read --client-ip-header x-forwarded-for)
  say "gate rows: keyhost gate build with 100k keys (hyperfine)"
  hyperfine -N --warmup 1 --runs 5 --export-json "$work/gate-build-100k.json" \
    "$kh --registry $work/100000.toml gate build -o $gw/gate-100k.wasm ${gate_args[*]}" >&2
  "$kh" --registry "$work/1000.toml" gate build -o "$gw/gate-1k.wasm" "${gate_args[@]}" >&2
  local floor="$root/target/floor" face
  for face in pass headers; do
    CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 cargo build -q --release \
      --target wasm32-wasip2 -p keyhost-bench-floor --features "${face/headers/gate}" --target-dir "$floor/gate-$face"
    "$root/target/release/examples/gate_floor" -o "$gw/floor-$face.wasm" --app "$app" \
      --middleware "$floor/gate-$face/wasm32-wasip2/release/keyhost_bench_floor.wasm"
  done
  local secret_1k secret_100k
  secret_1k="$(head -n 1 "$work/1000.secrets")"
  secret_100k="$(head -n 1 "$work/100000.secrets")"
  serve_wasm() { # PORT WASM ARGS...
    local port=$1 wasm=$2; shift 2
    "$wasmtime" serve --addr "127.0.0.1:$port" "$@" "$wasm" >"$gw/serve-$port.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$port/" && return; sleep 0.1; done
    say "wasmtime serve on $port did not start"; cat "$gw/serve-$port.log" >&2; exit 1
  }
  # The bare app is built with Rust's std, which imports wasi:cli beyond the
  # proxy world (the gate's support component answers those): `-S cli`.
  serve_wasm $base "$app" -S cli --max-instance-reuse-count 128
  serve_wasm $((base + 1)) "$gw/gate-1k.wasm" --max-instance-reuse-count 128
  serve_wasm $((base + 2)) "$app" -S cli
  serve_wasm $((base + 3)) "$gw/gate-1k.wasm"
  serve_wasm $((base + 4)) "$gw/gate-100k.wasm"
  # What copy-on-write data buys: the same, with memories copied instead.
  serve_wasm $((base + 5)) "$gw/gate-100k.wasm" -O memory-init-cow=n
  serve_wasm $((base + 6)) "$gw/floor-pass.wasm" -S cli --max-instance-reuse-count 128
  serve_wasm $((base + 7)) "$gw/floor-headers.wasm" -S cli --max-instance-reuse-count 128
  serve_wasm $((base + 8)) "$gw/floor-pass.wasm" -S cli
  serve_wasm $((base + 9)) "$gw/floor-headers.wasm" -S cli
  # The gate really checks: the key passes, a wrong one is refused.
  local got
  for expected in "200 $secret_1k $((base + 1))" "200 $secret_100k $((base + 4))" "401 kh_usr_wrong $((base + 3))"; do
    read -r want key port <<<"$expected"
    got="$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" -H 'X-Forwarded-For: 10.1.2.3' "http://127.0.0.1:$port/")"
    [ "$got" = "$want" ] || { say "the gate on $port answered $got, not $want"; exit 1; }
  done
  local round side out
  rm -f "$work"/wrk-gate-*.txt
  for round in 1 2 3 4 5 6; do
    say "gate wrk round $round of 6"
    for side in "app-reuse:$base:$secret_1k" "gate-reuse:$((base + 1)):$secret_1k" \
      "floor-pass-reuse:$((base + 6)):$secret_1k" "floor-headers-reuse:$((base + 7)):$secret_1k" \
      "app-fresh:$((base + 2)):$secret_1k" "gate-fresh:$((base + 3)):$secret_1k" \
      "floor-pass-fresh:$((base + 8)):$secret_1k" "floor-headers-fresh:$((base + 9)):$secret_1k" \
      "gate-fresh-100k:$((base + 4)):$secret_100k" "gate-fresh-100k-copied:$((base + 5)):$secret_100k"; do
      IFS=: read -r name port key <<<"$side"
      out="$(wrk -t2 -c16 -d4s -H "X-API-Key: $key" -H 'X-Forwarded-For: 10.1.2.3' "http://127.0.0.1:$port/")"
      if grep -q "Non-2xx" <<<"$out"; then say "$name: some responses were not 2xx"; echo "$out" >&2; exit 1; fi
      awk '/Requests\/sec/ {print $2}' <<<"$out" >>"$work/wrk-gate-$name.txt"
    done
  done
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}

# The filters inside Envoy (proxy-wasm) and Traefik (http-wasm), in front of
# nginx's `return 200`: Envoy with the filter against the same Envoy without
# auth and against Envoy's ext_authz to keyhost serve (the snippet of
# docs/src/guides/envoy.md), with the CPU each adds per request read from /proc (proxy,
# keyhost and upstream together, less bare Envoy's); the filter with a
# 100k-key snapshot against a 1k-key one (both fetched live from keyhost
# serve); Traefik with the plugin against the same Traefik without it; and
# the snapshot endpoint's size and cost at 100k keys.
#
# Each side's auth path gets one core of its own: the proxy (and, for
# ext_authz, keyhost serve) on core 1, wrk and the upstream on core 0.
# Unpinned, the scheduler shares both cores between the client and the
# sides differently from one side to the next (ext_authz's keyhost serve
# spills onto the client's core), and the rows moved by 10% or more from
# run to run. Nine short rounds, interleaved, so that drift in the
# machine's speed falls on every side alike.
filter_rows() {
  local fw="$work/filters" base=18500
  local proxy_core=(taskset -c 1) client_core=(taskset -c 0)
  pids=() # global: the EXIT trap reads it
  local venv="$root/target/foreign/venv"
  "$root/tests/foreign/setup.sh"
  rm -rf "$fw" && mkdir -p "$fw/www"
  registries 1000 100000
  local secret_1k secret_100k
  secret_1k="$(head -n 1 "$work/1000.secrets")"
  secret_100k="$(head -n 1 "$work/100000.secrets")"
  local up=$base serve_1k=$((base + 1)) serve_100k=$((base + 2))
  cat >"$fw/nginx.conf" <<NGINX
daemon off;
worker_processes 1;
pid $fw/nginx.pid;
error_log $fw/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $fw/body;
    proxy_temp_path $fw/proxy;
    fastcgi_temp_path $fw/fastcgi;
    uwsgi_temp_path $fw/uwsgi;
    scgi_temp_path $fw/scgi;
    server { listen 127.0.0.1:$up; location / { return 200 "ok\n"; } }
}
NGINX
  # Whatever this function starts stops with the script, however it ends.
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
  "${client_core[@]}" "$nginx_bin" -c "$fw/nginx.conf" -p "$fw" 2>>"$fw/nginx-error.log" &
  local nginx_pid=$!
  pids+=("$nginx_pid")
  local credential="" keys
  for keys in 1000 100000; do
    "$kh" --registry "$work/$keys.toml" replica revoke bench >/dev/null 2>&1 || true
  done
  credential="$("$kh" --registry "$work/1000.toml" replica add bench)"
  local credential_100k
  credential_100k="$("$kh" --registry "$work/100000.toml" replica add bench)"
  start_keyhost() { # PORT KEYS
    "${proxy_core[@]}" "$kh" --registry "$work/$2.toml" serve --listen "127.0.0.1:$1" >"$fw/serve-$1.out" 2>"$fw/serve-$1.log" &
    pids+=($!)
    eval "serve_pid_$1=$!"
    for _ in $(seq 1 600); do grep -q listening "$fw/serve-$1.out" 2>/dev/null && return; sleep 0.2; done
    say "keyhost serve on $1 did not start"; cat "$fw/serve-$1.log" >&2; exit 1
  }
  start_keyhost $serve_1k 1000
  start_keyhost $serve_100k 100000
  local keyhost_pid
  eval "keyhost_pid=\$serve_pid_$serve_1k"
  # The snapshot endpoint at 100k keys: its size, a full fetch and a
  # "not modified" one.
  local snap_url="http://127.0.0.1:$serve_100k/v1/snapshot"
  curl -s -o "$fw/snapshot-100k" -D "$fw/snapshot-100k.headers" -H "Authorization: Bearer $credential_100k" "$snap_url"
  stat -c %s "$fw/snapshot-100k" >"$work/snapshot-100k-bytes.txt"
  local etag
  etag="$(awk 'tolower($1) == "etag:" {print $2}' "$fw/snapshot-100k.headers" | tr -d '\r')"
  hyperfine -N --warmup 2 --runs 20 --export-json "$work/snapshot-fetch-100k.json" \
    "curl -s -o /dev/null -H 'Authorization: Bearer $credential_100k' $snap_url" >&2
  hyperfine -N --warmup 5 --runs 100 --export-json "$work/snapshot-304-100k.json" \
    "curl -s -o /dev/null -H 'Authorization: Bearer $credential_100k' -H 'If-None-Match: $etag' $snap_url" >&2

  cluster() { # NAME PORT
    printf '  - { name: %s, type: STATIC, connect_timeout: 1s, load_assignment: { cluster_name: %s, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %s } } } }] }] } }\n' "$1" "$1" "$2"
  }
  envoy() { # NAME PORT KEYHOST_PORT CREDENTIAL FILTERS...
    local name=$1 port=$2 keyhost=$3 cred=$4; shift 4
    {
      cat <<YAML
# A 100k-key snapshot is larger than Envoy's default limit on the answer to
# a filter's HTTP call.
layered_runtime:
  layers:
  - name: static
    static_layer: { http.async_response_buffer_limit: 268435456 }
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: $port } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: true
          route_config:
            virtual_hosts:
            - { name: app, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: app } }] }
          http_filters:
YAML
      printf '%s\n' "$@"
      echo "          - { name: envoy.filters.http.router, typed_config: { \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }"
      echo "  clusters:"
      cluster app "$up"
      cluster keyhost "$keyhost"
    } >"$fw/envoy-$name.yaml"
    KEYHOST_REPLICA_CREDENTIAL="$cred" "${proxy_core[@]}" "$venv/bin/envoy" -c "$fw/envoy-$name.yaml" \
      --concurrency 1 -l error --disable-hot-restart >"$fw/envoy-$name.log" 2>&1 &
    pids+=($!)
    eval "envoy_pid_$name=$!"
  }
  local wasm="$fw/keyhost.wasm"
  "$kh" --registry "$work/1000.toml" export envoy --wasm "$wasm" >&2
  wasm_filter() { # NAME FILE CONFIGURATION: a proxy-wasm filter in Envoy's V8
    cat <<YAML
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: $1
                root_id: $1
                failure_policy: FAIL_CLOSED
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: '$3'
                vm_config:
                  vm_id: $1
                  runtime: envoy.wasm.runtime.v8
                  code: { local: { filename: $2 } }
                  environment_variables: { host_env_keys: [KEYHOST_REPLICA_CREDENTIAL] }
YAML
  }
  # The keyhost filter, live from the cluster.
  local live='{"service": "billing", "scope": "read", "trust_source_address": true, "registry": {"live": {"cluster": "keyhost"}}}'
  local ext_authz
  ext_authz="$(cat <<YAML
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              allowed_headers:
                patterns: [{ exact: authorization }, { exact: x-api-key }, { exact: x-forwarded-for }]
              http_service:
                server_uri: { uri: 127.0.0.1:$serve_1k, cluster: keyhost, timeout: 0.25s }
                path_prefix: /auth
                authorization_request:
                  headers_to_add: [{ key: x-keyhost-service, value: billing }, { key: x-keyhost-scope, value: read }]
                authorization_response:
                  allowed_upstream_headers:
                    patterns: [{ prefix: x-keyhost- }]
YAML
)"
  # The floor: the same Envoy with a filter that checks nothing
  # (bench/floor), and with one that only makes a check's header calls.
  local floor="$root/target/floor"
  for abi in proxy-wasm http-wasm; do
    CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 cargo build -q --release \
      --target wasm32-wasip1 -p keyhost-bench-floor --features "$abi" --target-dir "$floor/$abi"
  done
  envoy bare $((base + 10)) $serve_1k ""
  local floor_wasm="$floor/proxy-wasm/wasm32-wasip1/release/keyhost_bench_floor.wasm"
  envoy empty $((base + 14)) $serve_1k "" "$(wasm_filter floor "$floor_wasm" empty)"
  envoy headers $((base + 15)) $serve_1k "" "$(wasm_filter floor "$floor_wasm" headers)"
  envoy filter $((base + 11)) $serve_1k "$credential" "$(wasm_filter keyhost "$wasm" "$live")"
  envoy filter100k $((base + 12)) $serve_100k "$credential_100k" "$(wasm_filter keyhost "$wasm" "$live")"
  envoy extauthz $((base + 13)) $serve_1k "" "$ext_authz"

  # Traefik: one process, the same router with and without the plugin, on
  # two entry points.
  local tf="$fw/traefik"
  mkdir -p "$tf/dynamic"
  "$kh" --registry "$work/1000.toml" export traefik --plugins "$tf/plugins-local" \
    --config "$tf/dynamic/keyhost.yml" --service billing --scope read >&2
  mkdir -p "$tf/plugins-local/src/floor"
  cp "$floor/http-wasm/wasm32-wasip1/release/keyhost_bench_floor.wasm" "$tf/plugins-local/src/floor/plugin.wasm"
  printf 'displayName: floor\ntype: middleware\nruntime: wasm\nsummary: checks nothing\ntestData: {}\n' \
    >"$tf/plugins-local/src/floor/.traefik.yml"
  cat >"$tf/traefik.yml" <<YAML
global: { checkNewVersion: false, sendAnonymousUsage: false }
log: { level: ERROR, noColor: true }
entryPoints:
  bare: { address: "127.0.0.1:$((base + 20))" }
  auth: { address: "127.0.0.1:$((base + 21))" }
  empty: { address: "127.0.0.1:$((base + 22))" }
  headers: { address: "127.0.0.1:$((base + 23))" }
providers: { file: { directory: ./dynamic, watch: true } }
experimental: { localPlugins: { keyhost: { moduleName: keyhost }, floor: { moduleName: floor } } }
YAML
  cat >"$tf/dynamic/app.yml" <<YAML
http:
  routers:
    bare: { entryPoints: [bare], rule: "PathPrefix(\`/\`)", service: app }
    auth: { entryPoints: [auth], rule: "PathPrefix(\`/\`)", service: app, middlewares: [keyhost] }
    empty: { entryPoints: [empty], rule: "PathPrefix(\`/\`)", service: app, middlewares: [floor-empty] }
    headers: { entryPoints: [headers], rule: "PathPrefix(\`/\`)", service: app, middlewares: [floor-headers] }
  middlewares:
    floor-empty: { plugin: { floor: { mode: empty } } }
    floor-headers: { plugin: { floor: { mode: headers } } }
  services:
    app: { loadBalancer: { servers: [ { url: "http://127.0.0.1:$up" } ] } }
YAML
  (cd "$tf" && GOMAXPROCS=1 exec "${proxy_core[@]}" "$venv/bin/traefik" --configFile=traefik.yml >"$tf/traefik.log" 2>&1) &
  pids+=($!)

  # Every side really checks: the key passes, a wrong one is refused.
  local got want key port
  for expected in "200 $secret_1k $((base + 10))" "200 $secret_1k $((base + 11))" \
    "200 $secret_100k $((base + 12))" "200 $secret_1k $((base + 13))" "401 kh_usr_wrong $((base + 11))" \
    "401 kh_usr_wrong $((base + 13))" "200 $secret_1k $((base + 20))" "200 $secret_1k $((base + 21))" \
    "401 kh_usr_wrong $((base + 21))" "200 - $((base + 14))" "200 - $((base + 15))" "200 - $((base + 22))" \
    "200 - $((base + 23))"; do
    read -r want key port <<<"$expected"
    for _ in $(seq 1 300); do
      got="$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" -H 'X-Forwarded-For: 10.1.2.3' "http://127.0.0.1:$port/" || true)"
      [ "$got" = "$want" ] && break
      sleep 0.2
    done
    [ "$got" = "$want" ] || { say "port $port answered $got, not $want"; tail -n 5 "$fw"/*.log >&2; exit 1; }
  done

  # CPU ticks of processes (all their threads): user + system.
  ticks() { local pid total=0; for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done; echo "$total"; }
  local hz nginx_workers
  hz="$(getconf CLK_TCK)"
  nginx_workers="$(pgrep -P "$nginx_pid" | tr '\n' ' ')"
  local round side name port key procs before after out requests
  rm -f "$work"/wrk-filter-*.txt "$work"/cpu-filter-*.txt
  for round in $(seq 1 9); do
    say "filter wrk round $round of 9"
    for side in "envoy-bare:$((base + 10)):$secret_1k" "envoy-filter:$((base + 11)):$secret_1k" \
      "envoy-filter-100k:$((base + 12)):$secret_100k" "envoy-extauthz:$((base + 13)):$secret_1k" \
      "traefik-bare:$((base + 20)):$secret_1k" "traefik-plugin:$((base + 21)):$secret_1k" \
      "envoy-empty:$((base + 14)):$secret_1k" "envoy-headers:$((base + 15)):$secret_1k" \
      "traefik-empty:$((base + 22)):$secret_1k" "traefik-headers:$((base + 23)):$secret_1k"; do
      IFS=: read -r name port key <<<"$side"
      case "$name" in
        envoy-bare) procs="$envoy_pid_bare $nginx_pid $nginx_workers" ;;
        envoy-filter) procs="$envoy_pid_filter $nginx_pid $nginx_workers" ;;
        envoy-empty) procs="$envoy_pid_empty $nginx_pid $nginx_workers" ;;
        envoy-headers) procs="$envoy_pid_headers $nginx_pid $nginx_workers" ;;
        envoy-extauthz) procs="$envoy_pid_extauthz $nginx_pid $nginx_workers $keyhost_pid" ;;
        *) procs="" ;;
      esac
      # Untimed first: Traefik drops a plugin's idle instances and makes
      # them again at the next burst (each reads its settings whole), so
      # every side is measured with its instances made.
      "${client_core[@]}" wrk -t1 -c32 -d1s -H "X-API-Key: $key" -H 'X-Forwarded-For: 10.1.2.3' "http://127.0.0.1:$port/" >/dev/null
      # shellcheck disable=SC2086
      [ -n "$procs" ] && before="$(ticks $procs)"
      out="$("${client_core[@]}" wrk -t1 -c32 -d3s -H "X-API-Key: $key" -H 'X-Forwarded-For: 10.1.2.3' "http://127.0.0.1:$port/")"
      if grep -q "Non-2xx" <<<"$out"; then say "$name: some responses were not 2xx"; echo "$out" >&2; exit 1; fi
      awk '/Requests\/sec/ {print $2}' <<<"$out" >>"$work/wrk-filter-$name.txt"
      if [ -n "$procs" ]; then
        # shellcheck disable=SC2086
        after="$(ticks $procs)"
        requests="$(awk '/requests in/ {print $1}' <<<"$out")"
        # core-µs per request
        echo "$(( (after - before) * 1000000 / hz / requests ))" >>"$work/cpu-filter-$name.txt"
      fi
    done
  done
  python3 - "$work" <<'PY'
import sys
from pathlib import Path
work = Path(sys.argv[1])
read = lambda name: [float(v) for v in (work / f"cpu-filter-{name}.txt").read_text().split()]
bare = read("envoy-bare")
for name in ("envoy-filter", "envoy-extauthz", "envoy-empty", "envoy-headers"):
    added = [max(side - base, 0.1) for side, base in zip(read(name), bare)]
    (work / f"cpu-filter-{name}-added.txt").write_text("\n".join(f"{v:.1f}" for v in added) + "\n")
PY
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  trap - EXIT
  for keys in 1000 100000; do
    "$kh" --registry "$work/$keys.toml" replica revoke bench >/dev/null 2>&1 || true
  done
}

# Synthetic registries of each size in $@, made once.
registries() {
  local keys
  for keys in "$@"; do
    if [ ! -s "$work/$keys.secrets" ]; then
      rm -f "$work/$keys.toml" "$work/$keys.secrets"
      "$root/target/release/examples/synthetic_registry" --keys "$keys" \
        --registry "$work/$keys.toml" --secrets "$work/$keys.secrets"
    fi
  done
}

# The write rows: one `keyhost create` at 10k and at 1M keys, on copies of
# the registries (a write of keys alone, which goes to the changes file
# beside them), and the check at 10k keys they are measured against.
write_rows() {
  say "write rows: one keyhost create at 10k and at 1M keys (on copies of the registries)"
  registries 10000 1000000
  export KEYHOST_CACHE_DIR="$work/cache"
  local keys copy secret
  for keys in 10000 1000000; do
    copy="$work/create-$keys.toml"
    cp "$work/$keys.toml" "$copy"
    chmod 600 "$copy"
    # A user of its own: the synthetic users hold as many keys as they may.
    # (Not a write of keys alone: the registry file is written whole, and
    # its snapshot kept.)
    "$kh" --registry "$copy" identity add user:creator >/dev/null
    hyperfine -N --warmup 2 --runs 10 --export-json "$work/create-$keys.json" \
      "$kh --registry $copy create --as user:creator --name bench" >&2
    rm -f "$copy" "$copy".*
  done
  if [ "$only" = writes ]; then
    secret="$(head -n 1 "$work/10000.secrets")"
    KEYHOST_KEY="$secret" "$kh" --registry "$work/10000.toml" "${check_args[@]}" >/dev/null
    KEYHOST_KEY="$secret" hyperfine -N --warmup 20 --runs 300 --export-json "$work/cli-10000.json" \
      "$kh --registry $work/10000.toml ${check_args[*]}" >&2
  fi
}

# Each side runs three rounds of 8 s, interleaved, after a warm-up.
wrk_round() { # NAME URL [KEY]
  local out
  out="$(wrk -t2 -c32 -d8s -H "X-API-Key: ${3:-$secret}" "$2")"
  if grep -q "Non-2xx" <<<"$out"; then
    say "$1: some responses were not 2xx:"; echo "$out" >&2; exit 1
  fi
  awk '/Requests\/sec/ {print $2}' <<<"$out" >>"$work/wrk-$1.txt"
}

# The shapes contract 0.2's call was chosen from, each making the default
# rules' decision on one reused instance (host/benches/contracts.rs); and
# serve with the Python default policy against the Rust one.
contract_rows() {
  say "contract 0.2 candidates: cargo bench --bench contracts"
  cargo bench -p keyhost --bench contracts -- --noplot >&2
  registries 1000
  local python_policy="$work/python-policy.wasm" rust_port=18490 python_port=18491 pids=()
  "$root/plugin/python/build.sh" "$python_policy"
  local secret_1k
  secret_1k="$(head -n 1 "$work/1000.secrets")"
  for side in "rust $rust_port" "python $python_port --policy $python_policy"; do
    read -r name port policy_args <<<"$side"
    # shellcheck disable=SC2086 # policy_args is "--policy FILE" or empty
    "$kh" --registry "$work/1000.toml" serve --listen "127.0.0.1:$port" $policy_args \
      >"$work/serve-$name.out" 2>"$work/serve-$name.log" &
    pids+=($!)
  done
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
  for port in $rust_port $python_port; do
    # The Python component (18 MB) is compiled on its first start.
    until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ]; do
      sleep 0.2
    done
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $secret_1k" "http://127.0.0.1:$port/auth")" = 200 ] ||
      { say "serve on $port refused its key"; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: kh_usr_wrong" "http://127.0.0.1:$port/auth")" = 401 ] ||
      { say "serve on $port allowed a wrong key"; exit 1; }
    wrk -t2 -c32 -d2s -H "X-API-Key: $secret_1k" "http://127.0.0.1:$port/auth" >/dev/null
  done
  rm -f "$work"/wrk-serve-rust.txt "$work"/wrk-serve-python.txt
  for round in 1 2 3; do
    say "serve with the Python and the Rust policy: wrk round $round of 3"
    wrk_round serve-rust "http://127.0.0.1:$rust_port/auth" "$secret_1k"
    wrk_round serve-python "http://127.0.0.1:$python_port/auth" "$secret_1k"
  done
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  trap - EXIT
}

# serve's own cost: `keyhost serve` /auth (1k keys, one key, the default
# policy) against two floors on the same hyper, axum and tokio
# (bench/serve-floor: bare hyper answering an empty 200, and serve's own
# accept loop and middleware answering 200 without a check), with the
# decision log on and off; nginx `auth_request` and Envoy `ext_authz` to
# keyhost against the same to nginx's `return 200` (the ceiling of any
# backend of theirs). wrk -t2 -c32, unpinned, three interleaved rounds of
# 4 s; p99 latency beside bare hyper's.
serve_rows() {
  local sw="$work/serve" base=18540 pids=()
  local venv="$root/target/foreign/venv"
  "$root/tests/foreign/setup.sh"
  rm -rf "$sw" && mkdir -p "$sw/www"
  printf 'ok\n' >"$sw/www/index.html"
  registries 1000
  cargo build -q --release -p keyhost-bench-serve-floor
  local secret_1k up=$base hyper=$((base + 1)) stack=$((base + 2)) serve=$((base + 3)) logged=$((base + 4))
  local ngx_nginx=$((base + 5)) ngx_keyhost=$((base + 6)) envoy_nginx=$((base + 7)) envoy_keyhost=$((base + 8))
  secret_1k="$(head -n 1 "$work/1000.secrets")"
  trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
  started() { # PORT LOG: waits for the first line that names the address
    for _ in $(seq 1 300); do grep -q listening "$2" 2>/dev/null && return; sleep 0.1; done
    say "the server on $1 did not start"; cat "$2" >&2; exit 1
  }
  "$root/target/release/bare-hyper" "127.0.0.1:$hyper" >"$sw/hyper.out" 2>&1 &
  pids+=($!); started $hyper "$sw/hyper.out"
  "$root/target/release/serve-stack" "127.0.0.1:$stack" >"$sw/stack.out" 2>&1 &
  pids+=($!); started $stack "$sw/stack.out"
  "$kh" --registry "$work/1000.toml" serve --listen "127.0.0.1:$serve" >"$sw/serve.out" 2>"$sw/serve.log" &
  pids+=($!); started $serve "$sw/serve.out"
  "$kh" --registry "$work/1000.toml" serve --listen "127.0.0.1:$logged" \
    --decision-log "$sw/decisions.jsonl" >"$sw/logged.out" 2>"$sw/logged.log" &
  pids+=($!); started $logged "$sw/logged.out"
  auth_location() { # UPSTREAM: nginx's auth_request snippet, to that upstream
    cat <<NGINX
        location = /_auth {
            internal;
            proxy_pass http://$1/auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
        location / { auth_request /_auth; root $sw/www; }
NGINX
  }
  cat >"$sw/nginx.conf" <<NGINX
daemon off;
user $(id -un);
worker_processes auto;
pid $sw/nginx.pid;
error_log $sw/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $sw/body;
    proxy_temp_path $sw/proxy;
    fastcgi_temp_path $sw/fastcgi;
    uwsgi_temp_path $sw/uwsgi;
    scgi_temp_path $sw/scgi;
    upstream nginx { server 127.0.0.1:$up; keepalive 64; }
    upstream keyhost { server 127.0.0.1:$serve; keepalive 64; }
    server { listen 127.0.0.1:$up; location / { return 200; } }
    server { listen 127.0.0.1:$ngx_nginx; $(auth_location nginx) }
    server { listen 127.0.0.1:$ngx_keyhost; $(auth_location keyhost) }
}
NGINX
  "$nginx_bin" -c "$sw/nginx.conf" -p "$sw" 2>>"$sw/nginx-error.log" &
  pids+=($!)
  envoy_ext_authz() { # PORT AUTH_PORT
    cat >"$sw/envoy-$1.yaml" <<YAML
static_resources:
  listeners:
  - name: main
    address: { socket_address: { address: 127.0.0.1, port_value: $1 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          use_remote_address: true
          route_config:
            virtual_hosts:
            - { name: app, domains: ["*"], routes: [{ match: { prefix: "/" }, route: { cluster: app } }] }
          http_filters:
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              allowed_headers:
                patterns: [{ exact: authorization }, { exact: x-api-key }, { exact: x-forwarded-for }]
              http_service:
                server_uri: { uri: 127.0.0.1:$2, cluster: auth, timeout: 0.25s }
                path_prefix: /auth
                authorization_response:
                  allowed_upstream_headers:
                    patterns: [{ prefix: x-keyhost- }]
          - { name: envoy.filters.http.router, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router } }
  clusters:
  - { name: app, type: STATIC, connect_timeout: 1s, load_assignment: { cluster_name: app, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $up } } } }] }] } }
  - { name: auth, type: STATIC, connect_timeout: 1s, load_assignment: { cluster_name: auth, endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } } }] }] } }
YAML
    "$venv/bin/envoy" -c "$sw/envoy-$1.yaml" --concurrency 2 -l error --disable-hot-restart \
      >"$sw/envoy-$1.log" 2>&1 &
    pids+=($!)
  }
  envoy_ext_authz $envoy_nginx $up
  envoy_ext_authz $envoy_keyhost $serve
  local sides=("hyper:$hyper/" "stack:$stack/auth" "keyhost:$serve/auth" "keyhost-logged:$logged/auth"
    "nginx-auth-nginx:$ngx_nginx/" "nginx-auth-keyhost:$ngx_keyhost/"
    "envoy-authz-nginx:$envoy_nginx/" "envoy-authz-keyhost:$envoy_keyhost/")
  local side url code
  for side in "${sides[@]}"; do
    url="http://127.0.0.1:${side#*:}"
    for _ in $(seq 1 100); do
      code="$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $secret_1k" "$url")"
      [ "$code" = 200 ] && break; sleep 0.1
    done
    [ "$code" = 200 ] || { say "${side%%:*} answered $code, not 200"; exit 1; }
    [[ "${side%%:*}" == *keyhost* ]] && { [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: kh_usr_wrong" "$url")" != 200 ] ||
      { say "${side%%:*} let a wrong key through"; exit 1; }; }
    wrk -t2 -c32 -d1s -H "X-API-Key: $secret_1k" "$url" >/dev/null
  done
  rm -f "$work"/wrk-serve-*.txt "$work"/p99-serve-*.txt
  local round out
  for round in 1 2 3; do
    say "serve rows: wrk round $round of 3"
    for side in "${sides[@]}"; do
      out="$(wrk -t2 -c32 -d4s --latency -H "X-API-Key: $secret_1k" "http://127.0.0.1:${side#*:}")"
      if grep -q "Non-2xx" <<<"$out"; then say "${side%%:*}: some responses were not 2xx"; echo "$out" >&2; exit 1; fi
      awk '/Requests\/sec/ {print $2}' <<<"$out" >>"$work/wrk-serve-${side%%:*}.txt"
      # wrk prints the 99th percentile as 1.23ms, 456.78us or 1.02s: in µs.
      awk '$1 == "99%" { v = $2; u = 1; if (v ~ /ms$/) u = 1000; else if (v ~ /us$/) u = 1; else if (v ~ /s$/) u = 1000000;
        sub(/[a-z]+$/, "", v); print v * u }' <<<"$out" >>"$work/p99-serve-${side%%:*}.txt"
    done
  done
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  trap - EXIT
}

check_args=(check --service billing --scope read --ip 10.1.2.3)
case "$only" in
  all) ;;
  replicas) replica_rows ;;
  gate) gate_rows ;;
  filters) filter_rows ;;
  writes) write_rows ;;
  contract) contract_rows ;;
  serve) serve_rows ;;
  *) say "usage: bench/run.sh [replicas|gate|filters|writes|contract|serve]"; exit 2 ;;
esac
if [ "$only" != all ]; then
  python3 "$root/bench/report.py" "$work" "$root/target/criterion"
  exit 0
fi

registries 1000 10000 1000000
export KEYHOST_CACHE_DIR="$work/cache"

say "in-process rows: cargo bench --bench check (1k, 100k, 1M keys)"
cargo bench -p keyhost --bench check -- --noplot >&2

say "process rows: hyperfine"
for keys in 10000 1000000; do
  secret="$(head -n 1 "$work/$keys.secrets")"
  # Warm the compiled-policy cache and the registry index first.
  KEYHOST_KEY="$secret" "$kh" --registry "$work/$keys.toml" "${check_args[@]}" >/dev/null
  KEYHOST_KEY="$secret" hyperfine -N --warmup 20 --runs 300 --export-json "$work/cli-$keys.json" \
    "$kh --registry $work/$keys.toml ${check_args[*]}" >&2
  if [ "$keys" = 10000 ]; then
    printf '%s\n' "$secret" >"$work/key.txt"
    hyperfine -N --warmup 20 --runs 300 --export-json "$work/sha256sum.json" \
      "sha256sum $work/key.txt" >&2
  fi
done
secret="$(head -n 1 "$work/1000000.secrets")"
KEYHOST_KEY="$secret" /usr/bin/time -f '%M' -o "$work/cli-1m-rss.txt" \
  "$kh" --registry "$work/1000000.toml" "${check_args[@]}" >/dev/null

write_rows

say "HTTP rows: keyhost serve (1M keys), nginx, wrk"
serve_port=18480 plain_port=18481 auth_port=18482 static_port=18483 small_port=18484
# Seconds from starting serve on the 1M-key registry (with the cache folder
# $1) to its first /healthz 200, into the file $2; serve runs on as
# $serve_pid.
serve_ready() { # CACHE_DIR OUT
  local started
  started=$(date +%s.%N)
  KEYHOST_CACHE_DIR="$1" "$kh" --registry "$work/1000000.toml" serve \
    --listen "127.0.0.1:$serve_port" >"$work/serve.out" 2>"$work/serve.log" &
  serve_pid=$!
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$serve_port/healthz")" = 200 ]; do
    kill -0 "$serve_pid" 2>/dev/null || { cat "$work/serve.log" >&2; exit 1; }
    sleep 0.05
  done
  awk -v from="$started" -v to="$(date +%s.%N)" 'BEGIN { printf "%.2f\n", to - from }' >"$2"
}
# From the TOML alone: a cache folder with no snapshot in it.
rm -rf "$work/cache-empty"
say "serve from the TOML alone (1M keys)"
serve_ready "$work/cache-empty" "$work/serve-ready-1m-toml.txt"
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
rm -rf "$work/cache-empty"
# From the snapshot the checks above left in the cache; it serves the
# rows below, and its peak memory is theirs.
say "serve from its snapshot (1M keys)"
serve_ready "$KEYHOST_CACHE_DIR" "$work/serve-ready-1m.txt"
ngx="$work/nginx"
mkdir -p "$ngx/www"
printf 'ok\n' >"$ngx/www/index.html"
cat >"$ngx/nginx.conf" <<NGINX
daemon off;
# Workers read the static file from bench/work, which may sit in a private
# folder: they run as the user who runs the benchmark.
user $(id -un);
worker_processes auto;
pid $ngx/nginx.pid;
error_log $ngx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $ngx/body;
    proxy_temp_path $ngx/proxy;
    fastcgi_temp_path $ngx/fastcgi;
    uwsgi_temp_path $ngx/uwsgi;
    scgi_temp_path $ngx/scgi;
    upstream keyhost { server 127.0.0.1:$serve_port; keepalive 64; }
    server {
        listen 127.0.0.1:$plain_port;
        location / { return 200 "ok\n"; }
    }
    # The same content with and without auth: a static file, which nginx
    # serves after the access phase where auth_request runs (a `return`
    # would answer before it, and skip the auth).
    server {
        listen 127.0.0.1:$static_port;
        location / { root $ngx/www; }
    }
    server {
        listen 127.0.0.1:$auth_port;
        location = /_keyhost {
            internal;
            proxy_pass http://keyhost/auth;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
        location / {
            auth_request /_keyhost;
            root $ngx/www;
        }
    }
}
NGINX
"$nginx_bin" -c "$ngx/nginx.conf" -p "$ngx" 2>>"$ngx/error.log" &
nginx_pid=$!
small_pid=
cleanup() { kill "$serve_pid" "$nginx_pid" $small_pid 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

rm -f "$work"/wrk-*.txt
# The auth really runs: the key passes and a wrong one is refused.
http_status() { curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $1" "$2"; }
for expected in "200 $secret http://127.0.0.1:$static_port/" "200 $secret http://127.0.0.1:$auth_port/" \
  "401 kh_usr_wrong http://127.0.0.1:$auth_port/"; do
  read -r want key url <<<"$expected"
  got="$(http_status "$key" "$url")"
  [ "$got" = "$want" ] || { say "$url answered $got, not $want"; cat "$ngx/error.log" >&2; exit 1; }
done
# The same serve over 1k keys, for the 1M-vs-1k row.
secret_1k="$(head -n 1 "$work/1000.secrets")"
"$kh" --registry "$work/1000.toml" serve --listen "127.0.0.1:$small_port" \
  >"$work/serve-1k.out" 2>"$work/serve-1k.log" &
small_pid=$!
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$small_port/healthz")" = 200 ]; do
  kill -0 "$small_pid" 2>/dev/null || { cat "$work/serve-1k.log" >&2; exit 1; }
  sleep 0.05
done
[ "$(http_status "$secret_1k" "http://127.0.0.1:$small_port/auth")" = 200 ] ||
  { say "serve over 1k keys refused its key"; exit 1; }
wrk -t2 -c32 -d2s -H "X-API-Key: $secret_1k" "http://127.0.0.1:$small_port/auth" >/dev/null
for url in "http://127.0.0.1:$serve_port/auth" "http://127.0.0.1:$plain_port/" \
  "http://127.0.0.1:$static_port/" "http://127.0.0.1:$auth_port/"; do
  wrk -t2 -c32 -d2s -H "X-API-Key: $secret" "$url" >/dev/null
done
for round in 1 2 3; do
  say "wrk round $round of 3"
  wrk_round serve "http://127.0.0.1:$serve_port/auth"
  wrk_round serve-1k "http://127.0.0.1:$small_port/auth" "$secret_1k"
  wrk_round nginx-plain "http://127.0.0.1:$plain_port/"
  wrk_round nginx-static "http://127.0.0.1:$static_port/"
  wrk_round nginx-auth "http://127.0.0.1:$auth_port/"
done
awk '/VmHWM/ {print $2}' "/proc/$serve_pid/status" >"$work/serve-rss.txt"
cleanup
trap - EXIT
replica_rows
gate_rows
filter_rows
contract_rows
serve_rows

python3 "$root/bench/report.py" "$work" "$root/target/criterion"
