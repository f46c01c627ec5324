#!/usr/bin/env bash
# Builds the JavaScript policy (policy.js, beside this script) into a keyhost
# policy component with componentize-js.
#
#     plugin/js/build.sh OUT.wasm [WIT_DIR]
#
# WIT_DIR defaults to the repository's wit/. build.mjs, beside this script,
# is the build itself; `keyhost policy new --lang js` gives a new policy
# project a copy of it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
foreign="$root/tests/foreign"

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUT.wasm [WIT_DIR]" >&2
  exit 2
fi
out="$(realpath -m "$1")"
wit="$(realpath -e "${2:-$root/wit}")"

"$foreign/setup.sh"
echo "js policy: building $out from $here/policy.js against $wit (componentize-js)" >&2
mkdir -p "$(dirname "$out")"

# build.mjs is read from stdin so that node resolves its imports from
# tests/foreign's node_modules, where it runs.
(cd "$foreign" && node --input-type=module - "$here/policy.js" "$wit" "$out" <"$here/build.mjs")

echo "js policy: built $out; \`keyhost policy inspect $out\` shows its imports and whether keyhost loads it" >&2
