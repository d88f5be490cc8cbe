#!/usr/bin/env bash
# Builds {{file}}.wasm with componentize-py (installed by Sluice's scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk="$here/{{sdk}}"
cd "$here"
# A handler that imports sluice_state (handler state) is built for the world that has
# it; its pipeline must then declare `state` prefixes.
# The others take a share of a batch in one call (world batch-handler: the SDK's Handler
# implements handle_batch).
world=batch-handler
grep -q "import sluice_state" ./*.py && world=stateful-handler
# A handler that imports sluice_http sends HTTP requests: world http-handler (its
# pipeline must grant the hosts it calls, allowed_outbound_hosts).
grep -q "import sluice_http" ./*.py && world=http-handler
python3 -c 'import sys, componentize_py; sys.exit(componentize_py.script())' \
    -d "$sdk/wit" -w "$world" componentize app -p . -p "$sdk/guest-sdk/python" \
    -o {{file}}.wasm >/dev/null
echo "built {{file}}.wasm"
