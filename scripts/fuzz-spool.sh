#!/usr/bin/env bash
# Builds and runs the spool's segment-reader fuzz target briefly.
#
#   FUZZ_SECONDS=N   how long to fuzz (default 30)
#
# Installs cargo-fuzz from crates.io when it is missing. cargo-fuzz needs a
# nightly compiler (sanitizer flags): it uses the rustup `nightly` toolchain
# when there is one, otherwise the stable one with RUSTC_BOOTSTRAP=1.
# A crash leaves its input in fuzz/artifacts/segment_reader/ and fails.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

toolchain=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    export RUSTC_BOOTSTRAP=1
fi

mkdir -p fuzz/corpus/segment_reader
echo "== cargo fuzz build segment_reader"
cargo "${toolchain[@]}" fuzz build segment_reader
echo "== cargo fuzz run segment_reader for ${seconds} s"
cargo "${toolchain[@]}" fuzz run segment_reader \
    fuzz/corpus/segment_reader fuzz/seeds/segment_reader \
    -- -max_total_time="${seconds}" -max_len=4096
echo "fuzz-spool: no crash in ${seconds} s"
