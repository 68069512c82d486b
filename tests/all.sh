#!/usr/bin/env bash
# Runs every test: Rust unit and integration tests, a smoke run of the benchmark harness,
# then the interop tests against real clients (slixmpp, xmpp.js, go-sendxmpp, coturn),
# which this script installs when missing (a Python venv, npm packages, apt).
# `cargo test` alone stays fast and self-contained.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test"
cargo test --all-targets

echo "== benchmark harness smoke run (debug build: proves it runs, measures nothing)"
bash bench/run.sh --smoke --debug

echo "== floor smoke run (bench/floor: the TLS server that does no XMPP, for bench/compare.sh)"
bash bench/floor/smoke.sh

echo "== interop"
bash tests/interop/run.sh
