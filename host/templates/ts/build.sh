#!/usr/bin/env bash
# Builds {{file}}.wasm with componentize-js (installed by Sluice's scripts/setup.sh). A
# TypeScript entry ({{name}}.ts) or npm dependencies (package.json) are bundled first with
# esbuild (Sluice's pinned copy), so `import { z } from "zod"` works after `npm install zod`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
sdk="$here/{{sdk}}"
cd "$here"
# componentize-js resolves imports from the current directory and cannot reach above it:
# build in build/ with the sources and Sluice's sluice.js side by side.
rm -rf build
mkdir -p build
shopt -s nullglob
sources=(./*.js ./*.ts)
cp "${sources[@]}" build/
cp "$sdk/guest-sdk/js/sluice.js" "$sdk/guest-sdk/js/state.js" build/
# A handler that imports ./state.js (handler state) is built for the world that has it;
# its pipeline must then declare `state` prefixes.
# One that exports handlePacked (the SDK's `packed`) or handleBatch (`batch`) takes a share
# of a batch in one call.
# Comments do not count: only export and import statements are looked for.
exports() { grep -Eq "^\s*export\s+((const|let|var|function|async\s+function)\s+$1\b|\{[^}]*\b$1\b)" "${sources[@]}"; }
world=handler
if exports handlePacked; then
    world=packed-batch-handler
elif exports handleBatch; then
    world=batch-handler
fi
grep -Eq "^[^/]*\bfrom\s*['\"]\./state\.js['\"]|^\s*import\s*['\"]\./state\.js['\"]" "${sources[@]}" && world=stateful-handler
# A handler that calls `fetch` gets wasi:http: its pipeline must grant the hosts it calls
# (allowed_outbound_hosts). The others are built without it.
disable=(--disable http fetch-event)
if grep -Eq "^[^/]*\bfetch\s*\(" "${sources[@]}"; then
    disable=(--disable fetch-event)
fi
entry={{name}}.js
if [ -f {{name}}.ts ] || [ -f package.json ]; then
    [ -f {{name}}.ts ] && source_entry={{name}}.ts || source_entry={{name}}.js
    # One ES module with the npm packages inside; the WIT imports stay imports.
    "$sdk/guest-sdk/js/node_modules/.bin/esbuild" "build/$source_entry" --bundle \
        --format=esm --platform=neutral --main-fields=module,main \
        --external:'sluice:*' --external:'wasi:*' --log-level=warning \
        --outfile=build/bundle.js
    entry=bundle.js
fi
cd build
"$sdk/guest-sdk/js/node_modules/.bin/componentize-js" "$entry" --wit "$sdk/wit" \
    --world-name "$world" "${disable[@]}" -o "$here/{{file}}.wasm" >/dev/null
echo "built {{file}}.wasm (world $world)"
