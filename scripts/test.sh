#!/usr/bin/env bash
# Sets up a fresh machine and runs every test: unit tests, the host's end-to-end suite
# (real wasm components, SQLite and a local redis-server) and the broker's end-to-end
# suites against `spin-osb up`, including a real kube-apiserver + etcd + controller-manager
# (built once from Debian's kubernetes source package into ~/.cache/spin-osb/k8s) and the
# BOSH director simulator. Extra arguments go to `cargo test`.
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
ensure_rust
apt_install redis-server etcd-server curl openssl jq xz-utils prometheus
echo "==> kube-apiserver v1.20.2 (built once into the cache; ~10 min the first time)"
"$REPO_ROOT/tests/kube/kube.sh" build >/dev/null
"$REPO_ROOT/tests/kube/kube.sh" start >/dev/null
# The multi-cluster suite's second control plane (tests/e2e/tests/kubernetes_clusters.rs
# reuses it, port 16543); started here, like the first, so that it outlives no test run.
"$REPO_ROOT/tests/kube/kube.sh" cluster east 16543 >/dev/null
trap '"$REPO_ROOT/tests/kube/kube.sh" stop' EXIT
echo "==> real Spin CLI (for the real-Spin suite), when the project's Spin build is here"
if [ -x "$REPO_ROOT/../shared/spin/install.sh" ]; then
  SPIN_OSB_REAL_SPIN="$("$REPO_ROOT/../shared/spin/install.sh")"
  export SPIN_OSB_REAL_SPIN
else
  echo "    not available: tests/e2e/tests/real_spin.rs will skip (it fails under CI=true)"
fi
build_host
build_app
echo "==> building test components"
cargo build --release --locked --target wasm32-wasip2 -p test-probe -p test-misbehaving
echo "==> running tests"
# Every process a test starts inherits this marker; whatever still carries it once the
# tests are done was left running by a test (a broker, a Spin, a redis-server, a
# simulator): the run fails, naming it, and the leftovers are stopped.
marker="test-run-$$-$RANDOM"
status=0
SPIN_OSB_TEST_RUN="$marker" cargo test --release --locked --no-fail-fast "$@" || status=$?
leftovers="$(grep -lsz "^SPIN_OSB_TEST_RUN=$marker\$" /proc/[0-9]*/environ \
  | sed 's#/proc/\([0-9]*\)/environ#\1#' || true)"
if [ -n "$leftovers" ]; then
  echo "!!> processes started by tests are still running after the tests ended:" >&2
  for pid in $leftovers; do ps -o pid=,args= -p "$pid" >&2 || true; done
  kill $leftovers 2>/dev/null || true
  status=1
fi
exit "$status"
