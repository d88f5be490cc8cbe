#!/usr/bin/env bash
# Builds the book (docs/, mdBook) and checks every relative link and #anchor in the
# built HTML (and the README's links to files of the repository): a page that links to a
# missing page or heading fails. The reference pages
# under docs/src/reference/ are checked against the code by
# `cargo test -p sluice --test suite reference::`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v mdbook >/dev/null 2>&1; then
    echo "check-docs: mdbook is not installed; run scripts/setup.sh (cargo install mdbook)" >&2
    exit 1
fi
# mdbook exits 0 after some errors (an {{#include}} of a missing file): its log decides.
log=$(mdbook build docs 2>&1) || { echo "$log" >&2; exit 1; }
echo "$log"
if grep -q "ERROR" <<<"$log"; then
    echo "check-docs: mdbook reported an error building the book (above)" >&2
    exit 1
fi
python3 scripts/check-links.py target/book README.md
