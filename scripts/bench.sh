#!/usr/bin/env bash
# Builds the spin-osb host, the trivial `hello` test component and the benchmark, then
# compares spin-osb serving the component with the same handler on native hyper
# (loopback only). Extra arguments go to `spin-osb-bench`, e.g.
#   scripts/bench.sh --requests 5000 --concurrency 8 --quiet-host
# (`scripts/bench.sh --help` lists them.)
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
ensure_rust
build_host
echo "==> building the hello test component"
cargo build --release --locked --target wasm32-wasip2 -p test-hello
echo "==> building spin-osb-bench"
cargo build --release --locked -p spin-osb-bench
echo "==> running spin-osb-bench"
# Defaults (--host-bin target/release/spin-osb, --app tests/apps/bench/spin.toml) are
# relative to the repo root, where `target` points at $CARGO_TARGET_DIR.
exec "$CARGO_TARGET_DIR/release/spin-osb-bench" "$@"
