#!/usr/bin/env bash
# Runs every test of the workspace: installs what they need first (scripts/setup.sh).
# Tests start their own redis-server processes on free ports and build the plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace "$@"
