#!/usr/bin/env bash
# Builds the spin-osb host, the broker's components, the trivial `hello` test component and
# the benchmark, then (loopback only) compares spin-osb serving `hello` with the same
# handler on native hyper, and runs the broker's OSB workloads (catalog, last_operation,
# provision/bind cycles, 100,000 stored instances, component sizes, first start) next to
# the gateway-only floor. Extra arguments go to `spin-osb-bench`, e.g.
#   scripts/bench.sh --requests 5000 --concurrency 8 --quiet-host
# (`scripts/bench.sh --help` lists them.)
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
ensure_rust
build_host
build_app
echo "==> building the hello test component"
cargo build --release --locked --target wasm32-wasip2 -p test-hello
echo "==> building spin-osb-bench"
cargo build --release --locked -p spin-osb-bench
echo "==> running spin-osb-bench"
# Defaults (--host-bin target/release/spin-osb, --app tests/apps/bench/spin.toml) are
# relative to the repo root, where `target` points at $CARGO_TARGET_DIR.
exec "$CARGO_TARGET_DIR/release/spin-osb-bench" "$@"
