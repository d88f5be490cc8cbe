#!/usr/bin/env bash
# The demo: builds the plugins, starts Sluice with both pipelines on a private
# redis-server, sends 1,000 seed-shaped orders (a few invalid) and prints a checked
# summary. Installs what it needs first (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
scripts/build-plugins.sh
cargo run --quiet -p orders-payments -- "$@"
