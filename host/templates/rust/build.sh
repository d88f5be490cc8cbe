#!/usr/bin/env bash
# Builds {{file}}.wasm (needs the wasm32-wasip2 Rust target: rustup target add wasm32-wasip2).
set -euo pipefail
cd "$(dirname "$0")"
cargo build --quiet --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{file}}.wasm" {{file}}.wasm
echo "built {{file}}.wasm"
