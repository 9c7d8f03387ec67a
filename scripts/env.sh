# Shared settings for the scripts in this folder; source it, don't run it.
# Build output lives outside the checkout (CI clones afresh each run; the cache survives),
# and `target` in the repo points at it so spin.toml's `source` paths work for Spin too.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/spin-osb/target}"
mkdir -p "$CARGO_TARGET_DIR"
if [ ! -e "$REPO_ROOT/target" ] || [ -L "$REPO_ROOT/target" ]; then
  ln -sfn "$CARGO_TARGET_DIR" "$REPO_ROOT/target"
fi
SPIN_OSB="$CARGO_TARGET_DIR/release/spin-osb"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian packages that are missing (one apt-get update per script run).
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

ensure_rust() {
  command -v cargo >/dev/null || { echo "cargo is required (https://rustup.rs)"; exit 1; }
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
  fi
}

build_host() {
  echo "==> building the spin-osb host"
  (cd "$REPO_ROOT" && cargo build --release --locked -p spin-osb-host)
}

build_app() {
  echo "==> building the broker's components"
  (cd "$REPO_ROOT" && "$SPIN_OSB" build -f spin.toml)
}
