#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, then the interop tests against real
# clients (slixmpp, xmpp.js, go-sendxmpp), which this script installs when missing
# (a Python venv, npm packages, apt). `cargo test` alone stays fast and self-contained.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --all-targets

echo "== interop"
bash tests/interop/run.sh
