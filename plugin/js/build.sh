#!/usr/bin/env bash
# Builds the JavaScript policy (policy.js, beside this script) into a keyhost
# policy component with componentize-js.
#
#     plugin/js/build.sh OUT.wasm [WIT_DIR]
#
# WIT_DIR defaults to the repository's wit/; the world is `policy`. All of
# the engine's optional features (stdio, random, clocks, http, fetch-event)
# are disabled: the policy needs none of them, and keyhost links no wasi:http.
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

# Run from tests/foreign so that node finds its node_modules.
(cd "$foreign" && node --input-type=module -e '
import { writeFile } from "node:fs/promises";
import { componentize } from "@bytecodealliance/componentize-js";
import { _setPreopens } from "@bytecodealliance/preview2-shim/filesystem";

const [sourcePath, witPath, out] = process.argv.slice(1);
// componentize-js reads the WIT through the WASI shim, which preopens
// nothing since preview2-shim 0.26: let it see the WIT directory.
_setPreopens({ [witPath]: witPath });
const { component } = await componentize({
  sourcePath,
  witPath,
  worldName: "policy",
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile(out, component);
' "$here/policy.js" "$wit" "$out")

echo "js policy: built $out; \`keyhost policy inspect $out\` shows its imports and whether keyhost loads it" >&2
