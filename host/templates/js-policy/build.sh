#!/usr/bin/env bash
# Builds policy.js into policy.wasm, a keyhost policy component, with the
# componentize-js that package.json pins (installed into node_modules the
# first time, and again when package.json changes). Needs Node.js 20+.
set -euo pipefail
cd "$(dirname "$0")"
if ! cmp -s package.json node_modules/.keyhost-installed 2>/dev/null; then
  echo "installing componentize-js into node_modules" >&2
  npm install --no-audit --no-fund --silent >&2
  cp package.json node_modules/.keyhost-installed
fi
echo "building policy.wasm from policy.js against wit/" >&2
node build.mjs policy.js wit policy.wasm
echo "built policy.wasm; test it: keyhost policy test policy.wasm vectors/default-policy.json" >&2
