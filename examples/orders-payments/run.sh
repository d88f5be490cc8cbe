#!/usr/bin/env bash
# The demo: builds the plugins, starts Sluice with both pipelines on a private
# redis-server, sends 1,000 seed-shaped orders (a few invalid) and prints a checked
# summary. Installs only what it needs first (scripts/setup.sh --demo): redis-server and
# the wasm32-wasip2 target; the test tools (browsers, clang, Node, componentize-py) are
# left to scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "demo [1/3]: installing redis-server and the wasm32-wasip2 target (if missing)"
scripts/setup.sh --demo
echo "demo [2/3]: building the payments and order-status plugins"
scripts/build-plugins.sh --demo
echo "demo [3/3]: building Sluice and the demo (the first time: a few minutes, most of it wasmtime)"
cargo run -p orders-payments -- "$@"
