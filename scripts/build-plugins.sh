#!/usr/bin/env bash
# Builds every plugin in plugins/ for wasm32-wasip2 and copies the components to
# target/plugins/NAME.wasm (with '-' in NAME as '_', as cargo names them), plus the
# test variants payments_tag_a.wasm and payments_tag_b.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/plugins
packages=()
for dir in plugins/*/; do
    packages+=(-p "$(basename "$dir")")
done
CARGO_TARGET_DIR=$out cargo build --quiet --target wasm32-wasip2 --profile plugin "${packages[@]}"
cp "$out"/wasm32-wasip2/plugin/*.wasm "$out"/

# Variants of the payments plugin for the hot-reload tests.
for tag in a b; do
    CARGO_TARGET_DIR=$out/tag-$tag cargo build --quiet --target wasm32-wasip2 --profile plugin -p payments --features tag-$tag
    cp "$out"/tag-$tag/wasm32-wasip2/plugin/payments.wasm "$out"/payments_tag_$tag.wasm
done
