#!/usr/bin/env bash
# Long fuzzing, beyond the corpus replay that `cargo test` runs on stable
# (tests/it/fuzz_corpora.rs). Needs nightly and cargo-fuzz, which it installs
# when missing. New inputs the fuzzer keeps land in fuzz/corpus/TARGET.
#
#     fuzz/run.sh [SECONDS] [TARGET...]     # default: 600 s each, every target
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(key_format registry_load auth_headers)
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds"
done
