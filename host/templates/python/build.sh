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
# PyPI dependencies (requirements.txt) go into build/vendor, pure Python only: a
# component cannot load a native extension module (.so), so a package that ships one is
# refused, named.
vendor=build/vendor
rm -rf "$vendor"
mkdir -p "$vendor"
if grep -qvE '^\s*(#|$)' requirements.txt 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check --no-compile \
        --target "$vendor" -r requirements.txt
    native=$(cd "$vendor" && find . -name '*.so' -o -name '*.pyd' | cut -d/ -f2 | sort -u | tr '\n' ' ')
    if [ -n "$native" ]; then
        echo "build.sh: requirements.txt brings native code, which a WebAssembly component cannot load: ${native}(in $vendor); use a pure-Python package instead" >&2
        exit 1
    fi
fi
python3 -c 'import sys, componentize_py; sys.exit(componentize_py.script())' \
    -d "$sdk/wit" -w "$world" componentize app -p . -p "$vendor" -p "$sdk/guest-sdk/python" \
    -o {{file}}.wasm >/dev/null
echo "built {{file}}.wasm"
