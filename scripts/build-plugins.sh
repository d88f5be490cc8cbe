#!/usr/bin/env bash
# Builds every plugin in plugins/ into a component at target/plugins/NAME.wasm (with '-'
# in NAME as '_') with `sluice build`, which reads each plugin's plugin.toml (language,
# entry, state prefixes, outbound hosts), builds it, and checks the component against it.
# Also the variants some tests and benches use: payments_tag_a.wasm, payments_tag_b.wasm
# (hot reload), payments_http.wasm (charges a provider), payments_state.wasm (handler
# state), payments_rounding.wasm (a changed rounding rule, for sluice diff), and other_world.wasm, which is deliberately not a handler (cargo alone builds it).
# scripts/setup.sh installs the tools; `sluice build` skips what is up to date.
#
# The sluice binary is $SLUICE, else this checkout's (built first, dev profile).
#
# With --demo, only the two Rust plugins the demo runs (payments, order-status), with
# cargo's progress shown, built by cargo directly: the demo builds Sluice after them.
set -euo pipefail
cd "$(dirname "$0")/.."

out=$PWD/target/plugins
if [ "${1:-}" = "--demo" ]; then
    # Before Sluice itself is built: cargo alone (what `sluice build` runs for Rust).
    CARGO_TARGET_DIR=$out cargo build --target wasm32-wasip2 --profile plugin -p payments -p order-status
    cp "$out"/wasm32-wasip2/plugin/payments.wasm "$out"/wasm32-wasip2/plugin/order_status.wasm "$out"/
    exit 0
fi
# The C plugins are held to no warnings.
export SLUICE_CFLAGS=${SLUICE_CFLAGS:--Werror}
if [ -z "${SLUICE:-}" ]; then
    cargo build --quiet -p sluice --bin sluice
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    SLUICE=$target_dir/debug/sluice
fi
# Rust plugins share one target directory (the outer `cargo test` holds the main one's
# lock); each variant has its own, so that switching features rebuilds nothing.
build() {
    local dir=$1 wasm=$2
    shift 2
    CARGO_TARGET_DIR=${target:-$out} "$SLUICE" build "plugins/$dir" --profile plugin --quiet \
        --out "$out/$wasm" "$@"
}

for dir in plugins/*/; do
    name=$(basename "$dir")
    [ "$name" = other-world ] && continue
    build "$name" "$(echo "$name" | tr - _).wasm"
done
for variant in tag-a tag-b http with-state rounding; do
    wasm=payments_$(echo "$variant" | sed 's/with-//; s/-/_/').wasm
    target=$out/$variant build payments "$wasm" --variant "$variant"
done

# Not a handler (it exports `run`): the test that a foreign world is refused loads it.
CARGO_TARGET_DIR=$out cargo build --quiet --target wasm32-wasip2 --profile plugin -p other-world
cp "$out"/wasm32-wasip2/plugin/other_world.wasm "$out"/
