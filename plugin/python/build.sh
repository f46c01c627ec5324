#!/usr/bin/env bash
# Builds the Python default policy (policy.py) into a keyhost policy component:
#
#   plugin/python/build.sh OUT.wasm [WIT_DIR [APP.py]]
#
# WIT_DIR defaults to the repository's wit/; APP.py to policy.py beside this
# script (the tests build a sandbox probe the same way). componentize-py generates the
# `wit_world` bindings for world `policy` while it builds, so none are kept
# in the tree, and nothing is written inside plugin/.
set -euo pipefail
if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  echo "usage: $0 OUT.wasm [WIT_DIR [APP.py]]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$1"
wit="${2:-$root/wit}"
app="${3:-$here/policy.py}"
if [ ! -e "$wit" ]; then
  echo "$0: no WIT at $wit" >&2
  exit 2
fi

"$root/tests/foreign/setup.sh"

# componentize-py runs the app in its own CPython to snapshot it, and that
# CPython writes __pycache__ next to the sources: build from a copy.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$app" "$work/"
module="$(basename "$app" .py)"

echo "python policy: building $out from $app" >&2
"$root/target/foreign/venv/bin/componentize-py" --quiet -d "$wit" -w policy \
  componentize "$module" --python-path "$work" --output "$out"
