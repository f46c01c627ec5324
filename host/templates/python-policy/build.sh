#!/usr/bin/env bash
# Builds policy.py into policy.wasm, a keyhost policy component, with the
# componentize-py that requirements.txt pins (installed into .venv the first
# time, and again when requirements.txt changes). Needs python3 with venv.
set -euo pipefail
cd "$(dirname "$0")"
if ! cmp -s requirements.txt .venv/.keyhost-installed 2>/dev/null; then
  echo "installing componentize-py into .venv" >&2
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt >&2
  cp requirements.txt .venv/.keyhost-installed
fi
# componentize-py runs the app in its own CPython to snapshot it, and that
# CPython writes __pycache__ next to the sources: build from a copy.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp ./*.py "$work/"
echo "building policy.wasm from policy.py against wit/" >&2
.venv/bin/componentize-py --quiet -d wit -w policy componentize policy \
  --python-path "$work" --output policy.wasm
echo "built policy.wasm; test it: keyhost policy test policy.wasm vectors/default-policy.json" >&2
