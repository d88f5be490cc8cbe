#!/usr/bin/env bash
# Builds {{file}}.wasm with clang-19 + wasi-libc (Debian; installed by Sluice's
# scripts/setup.sh) and the sluice-c tool from the Sluice workspace.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk="$here/{{sdk}}"
cd "$here"
mkdir -p build
tools=${CARGO_TARGET_DIR:-build/tool}
cargo build --quiet --manifest-path "$sdk/Cargo.toml" -p sluice-c --target-dir "$tools"
# Bindings with every import a handler may use (state, wasi:http): a plugin imports only
# what it calls.
"$tools/debug/sluice-c" bindings --wit "$sdk/wit" --world stateful-http-handler --as handler --out build
"${CC:-clang-19}" --target=wasm32-wasi -mexec-model=reactor -O2 -s -Wall -Wextra \
    -I build -I "$sdk/guest-sdk/c" -o build/core.wasm \
    *.c "$sdk/guest-sdk/c/sluice.c" build/handler.c build/handler_component_type.o
"$tools/debug/sluice-c" component build/core.wasm -o {{file}}.wasm
echo "built {{file}}.wasm"
