#!/usr/bin/env bash
# Builds every plugin in plugins/ into a component at target/plugins/NAME.wasm (with '-'
# in NAME as '_'): the Rust ones with cargo for wasm32-wasip2 (plus the test variants
# payments_tag_a.wasm and payments_tag_b.wasm), the JavaScript ones (plugins/NAME-js/NAME.js)
# with componentize-js, the Python ones (plugins/*-python/app.py) with componentize-py, the
# C ones (plugins/*-c/*.c) with clang-19 and guest-sdk/c/tool (`sluice-c`). A JS plugin that
# calls `fetch(`, or a Python one that imports sluice_http, is built for world http-handler
# (it sends HTTP requests); C plugins are built from bindings that include wasi:http, and
# import it only if they call it.
# scripts/setup.sh installs the tools. JS, Python and C components are rebuilt only when a
# source is newer.
#
# With --demo, only the two Rust plugins the demo runs (payments, order-status), with
# cargo's progress shown.
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/plugins
if [ "${1:-}" = "--demo" ]; then
    CARGO_TARGET_DIR=$out cargo build --target wasm32-wasip2 --profile plugin -p payments -p order-status
    cp "$out"/wasm32-wasip2/plugin/payments.wasm "$out"/wasm32-wasip2/plugin/order_status.wasm "$out"/
    exit 0
fi
packages=()
for dir in plugins/*/; do
    [ -f "$dir/Cargo.toml" ] && packages+=(-p "$(basename "$dir")")
done
CARGO_TARGET_DIR=$out cargo build --quiet --target wasm32-wasip2 --profile plugin "${packages[@]}"
cp "$out"/wasm32-wasip2/plugin/*.wasm "$out"/

# Variants of the payments plugin for the hot-reload tests.
for tag in a b; do
    CARGO_TARGET_DIR=$out/tag-$tag cargo build --quiet --target wasm32-wasip2 --profile plugin -p payments --features tag-$tag
    cp "$out"/tag-$tag/wasm32-wasip2/plugin/payments.wasm "$out"/payments_tag_$tag.wasm
done

# The variant that charges a payment provider over HTTP (world http-handler).
CARGO_TARGET_DIR=$out/with-http cargo build --quiet --target wasm32-wasip2 --profile plugin -p payments --features http
cp "$out"/with-http/wasm32-wasip2/plugin/payments.wasm "$out"/payments_http.wasm

# The benchmark's stateful variant of payments (handler state on every order).
CARGO_TARGET_DIR=$out/with-state cargo build --quiet --target wasm32-wasip2 --profile plugin -p payments --features with-state
cp "$out"/with-state/wasm32-wasip2/plugin/payments.wasm "$out"/payments_state.wasm

# Whether $1 is missing or older than any file given after it.
stale() {
    local target=$1
    shift
    [ ! -f "$target" ] && return 0
    for source in "$@"; do
        [ "$source" -nt "$target" ] && return 0
    done
    return 1
}

for dir in plugins/*-js/; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir" | tr - _)
    # The entry module is named after the plugin: plugins/payments-js/payments.js.
    main="$dir$(basename "$dir" -js).js"
    # A plugin that uses handler state (imports guest-sdk/js/state.js) is built for the
    # world that imports it; the others import only what every handler gets.
    # One that exports handlePacked (the SDK's `packed`) or handleBatch (`batch`) takes a
    # batch in one call, packed first; state wins (pipelines with state call `handle` per
    # entry).
    world=handler
    # Comments do not count: only export and import statements are looked for.
    exports() { grep -Eq "^\s*export\s+((const|let|var|function|async\s+function)\s+$1\b|\{[^}]*\b$1\b)" "$dir"*.js; }
    if exports handlePacked; then world=packed-batch-handler
    elif exports handleBatch; then world=batch-handler
    fi
    grep -Eq "^[^/]*\bfrom\s*['\"][./]*guest-sdk/js/state\.js['\"]|^\s*import\s*['\"][./]*guest-sdk/js/state\.js['\"]" "$dir"*.js && world=stateful-handler
    # One that calls `fetch(` (outside comments) sends HTTP requests: componentize-js's
    # `http` feature, world http-handler (one entry per call).
    disabled=(http fetch-event)
    if grep -Eq "^\s*[^/ ].*\bfetch\(" "$dir"*.js; then
        world=http-handler
        disabled=(fetch-event)
    fi
    # A module may re-export another plugin's (plugins/echo-lists-js): that one counts too.
    mapfile -t deps < <(grep -ho "\.\./[a-z0-9-]*/[a-z0-9-]*\.js" "$dir"*.js | sed "s#^\.\./#plugins/#")
    if stale "$out/$name.wasm" "$dir"*.js "${deps[@]}" guest-sdk/js/*.js wit/*.wit; then
        echo "build-plugins: $name (componentize-js, world $world)"
        guest-sdk/js/node_modules/.bin/componentize-js "$main" --wit wit --world-name "$world" \
            --disable "${disabled[@]}" -o "$out/$name.wasm" >/dev/null
    fi
done

# TypeScript plugins (plugins/NAME-ts/NAME.ts): bundled by esbuild into one module (the
# SDK, other plugins' modules and npm packages inside; the WIT imports left as imports),
# then built like the JavaScript ones.
for dir in plugins/*-ts/; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir" | tr - _)
    main="$dir$(basename "$dir" -ts).ts"
    world=handler
    grep -Eq "^\s*export\s+(const|function)\s+handlePacked\b" "$main" && world=packed-batch-handler
    mapfile -t deps < <(grep -ho "\.\./[a-z0-9-]*/[a-z0-9-]*\.js" "$main" | sed "s#^\.\./#plugins/#")
    if stale "$out/$name.wasm" "$dir"*.ts "${deps[@]}" guest-sdk/js/*.js wit/*.wit; then
        echo "build-plugins: $name (esbuild + componentize-js, world $world)"
        mkdir -p "$out/ts"
        guest-sdk/js/node_modules/.bin/esbuild "$main" --bundle --format=esm --platform=neutral \
            --external:'sluice:*' --external:'wasi:*' --log-level=warning --outfile="$out/ts/$name.js"
        guest-sdk/js/node_modules/.bin/componentize-js "$out/ts/$name.js" --wit wit --world-name "$world" \
            --disable http fetch-event -o "$out/$name.wasm" >/dev/null
    fi
done

for dir in plugins/*-python/; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir" | tr - _)
    # The SDK's Handler implements handle-batch too: a plugin without state takes a batch
    # in one call.
    world=batch-handler
    grep -q "import sluice_state" "$dir"*.py && world=stateful-handler
    # One that sends HTTP requests (sluice_http) is built for world http-handler, which
    # has no handle-batch.
    grep -Eq "^\s*(import|from) sluice_http\b" "$dir"*.py && world=http-handler
    # A module may come from another plugin (plugins/payments-http-python names
    # ../payments-python/payments_order.py): that directory goes on the path too.
    mapfile -t deps < <(grep -ho "\.\./[a-z0-9-]*-python/[a-z0-9_]*\.py" "$dir"*.py | sed "s#^\.\./#plugins/#" | sort -u)
    paths=()
    for dep in "${deps[@]}"; do paths+=(-p "$(dirname "$dep")"); done
    if stale "$out/$name.wasm" "$dir"*.py "${deps[@]}" guest-sdk/python/*.py wit/*.wit; then
        echo "build-plugins: $name (componentize-py, world $world)"
        python3 -c 'import sys, componentize_py; sys.exit(componentize_py.script())' \
            -d wit -w "$world" componentize app -p "$dir" "${paths[@]}" -p guest-sdk/python \
            -o "$out/$name.wasm" >/dev/null
    fi
done

c_dirs=(plugins/*-c/)
if [ -d "${c_dirs[0]}" ]; then
    cc=${SLUICE_CC:-clang-19}
    command -v "$cc" >/dev/null || { echo "build-plugins: $cc not found: run scripts/setup.sh" >&2; exit 1; }
    CARGO_TARGET_DIR=$out/tools cargo build --quiet -p sluice-c
    tool=$out/tools/debug/sluice-c
    bindings=$out/c-bindings
    # The world with state and wasi:http, named `handler` (the C SDK's names): clang and
    # wasm-ld drop the state and HTTP imports of a plugin that never calls them.
    "$tool" bindings --wit wit --world stateful-http-handler --as handler --out "$bindings"
    for dir in "${c_dirs[@]}"; do
        name=$(basename "$dir" | tr - _)
        # Headers included from another plugin (#include "../payments-c/order.h") count too.
        mapfile -t deps < <(grep -ho "\.\./[a-z0-9-]*/[a-z0-9_-]*\.h" "$dir"*.c | sed "s#^\.\./#plugins/#")
        if stale "$out/$name.wasm" "$dir"*.[ch] "${deps[@]}" guest-sdk/c/sluice.[ch] guest-sdk/c/tool/src/*.rs wit/*.wit; then
            echo "build-plugins: $name (clang)"
            "$cc" --target=wasm32-wasi -mexec-model=reactor -O2 -s -Wall -Wextra -Werror \
                -I "$bindings" -I guest-sdk/c -o "$bindings/$name.core.wasm" \
                "$dir"*.c guest-sdk/c/sluice.c "$bindings/handler.c" "$bindings/handler_component_type.o"
            "$tool" component "$bindings/$name.core.wasm" -o "$out/$name.wasm"
        fi
    done
fi
