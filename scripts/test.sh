#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: unit tests, the host's end-to-end suite
# (real wasm components, SQLite and a local redis-server) and the broker's end-to-end
# suites against `spin-osb up`. Extra arguments go to `cargo test`.
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
ensure_rust
apt_install redis-server
build_host
build_app
echo "==> building test components"
cargo build --release --locked --target wasm32-wasip2 -p test-probe
echo "==> running tests"
cargo test --release --locked --no-fail-fast "$@"
