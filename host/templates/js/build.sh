#!/usr/bin/env bash
# Builds {{file}}.wasm with componentize-js (installed by Sluice's scripts/setup.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk="$here/{{sdk}}"
# componentize-js resolves relative imports from the current directory.
cd "$here"
"$sdk/guest-sdk/js/node_modules/.bin/componentize-js" {{name}}.js --wit "$sdk/wit" \
    --world-name handler --disable http fetch-event -o {{file}}.wasm >/dev/null
echo "built {{file}}.wasm"
