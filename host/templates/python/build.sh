#!/usr/bin/env bash
# Builds {{file}}.wasm with componentize-py (installed by Sluice's scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk="$here/{{sdk}}"
cd "$here"
python3 -c 'import sys, componentize_py; sys.exit(componentize_py.script())' \
    -d "$sdk/wit" -w handler componentize app -p . -p "$sdk/guest-sdk/python" \
    -o {{file}}.wasm >/dev/null
echo "built {{file}}.wasm"
