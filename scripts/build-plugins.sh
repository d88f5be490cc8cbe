#!/usr/bin/env bash
# Builds every plugin in plugins/ for wasm32-wasip2 and copies the components to
# target/plugins/NAME.wasm (with '-' in NAME as '_', as cargo names them).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/plugins
packages=()
for dir in plugins/*/; do
    packages+=(-p "$(basename "$dir")")
done
CARGO_TARGET_DIR=$out cargo build --quiet --target wasm32-wasip2 --profile plugin "${packages[@]}"
cp "$out"/wasm32-wasip2/plugin/*.wasm "$out"/
