#!/usr/bin/env bash
# Installs what Sluice's demo and tests need, skipping what is already there:
# redis-server (Debian package) and the wasm32-wasip2 Rust target (plus rustfmt and
# clippy for the checks). Safe to run again.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v redis-server >/dev/null 2>&1; then
    echo "setup: installing redis-server"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # Debian starts a system-wide instance; Sluice runs its own on free ports.
    as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        rustup component add "$component"
    fi
done
