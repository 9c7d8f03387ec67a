#!/usr/bin/env bash
# Sets up a fresh machine, builds everything and serves the broker on 127.0.0.1:3000
# with the default catalog. Extra arguments go to `spin-osb up`.
source "$(dirname "$0")/env.sh"
cd "$REPO_ROOT"
ensure_rust
build_host
build_app
if [ -z "${SPIN_VARIABLE_BROKER_PASSWORD:-}" ]; then
  export SPIN_VARIABLE_BROKER_PASSWORD=localdev
  echo "==> broker user 'broker', password 'localdev' (local default: set SPIN_VARIABLE_BROKER_PASSWORD for real use)"
fi
exec "$SPIN_OSB" up -f spin.toml --listen "${LISTEN:-127.0.0.1:3000}" "$@"
