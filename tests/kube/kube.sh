#!/usr/bin/env bash
# A real, single-machine Kubernetes control plane for the test suites: Debian's etcd-server,
# and kube-apiserver + kube-controller-manager v1.20.2 built from Debian's own `kubernetes`
# source package by build-kube-apiserver.sh (once, into the cache). Loopback only.
# No kubelet and no scheduler run: tests play the kubelet by patching pod status.
#
#   kube.sh build                 build the binaries into the cache (idempotent, ~10 min once)
#   kube.sh start                 start etcd + apiserver + controller-manager (reuses a healthy one)
#   kube.sh stop                  stop them
#   kube.sh apiserver PORT        run one more apiserver on PORT in the foreground, same etcd
#                                 and credentials (tests kill and restart it)
#   kube.sh cluster NAME PORT     start (or reuse) a second, separate control plane on
#                                 127.0.0.2:PORT: its own CA, certificate and tokens, its own
#                                 storage (etcd prefix /clusters/NAME of the same etcd) and
#                                 controller-manager; needs `start` first. Prints its env file.
#
# After `start`, $RUN/env holds KUBE_API_URL, KUBE_CA_FILE, KUBE_ADMIN_TOKEN,
# KUBE_RESTRICTED_TOKEN (authenticated, no RBAC grants) and KUBE_BROKER_TOKEN (the identity
# of infra/kubernetes' ServiceAccount spin-osb/spin-osb, with whatever RBAC that grants).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="${KUBE_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spin-osb/k8s/bin}"
RUN="${KUBE_RUN_DIR:-${TMPDIR:-/tmp}/spin-osb-kube-$(id -u)}"
ETCD_PORT="${ETCD_PORT:-23790}"
SECURE_PORT="${KUBE_SECURE_PORT:-16443}"
ADMIN_TOKEN=spin-osb-test-admin
RESTRICTED_TOKEN=spin-osb-test-restricted
BROKER_TOKEN=spin-osb-test-broker

# ready PORT [HOST CA TOKEN]: whether that apiserver answers /readyz.
ready() {
  curl -fsS --max-time 2 --cacert "${3:-$RUN/pki/ca.crt}" -H "Authorization: Bearer ${4:-$ADMIN_TOKEN}" \
    "https://${2:-127.0.0.1}:$1/readyz" >/dev/null 2>&1
}

# make_pki DIR NAME SAN ADMIN BROKER [RESTRICTED]: a cluster's own CA, API certificate
# (subjectAltName SAN), ServiceAccount keys and static tokens, once.
make_pki() {
  local dir="$1" name="$2" san="$3" admin="$4" broker="$5" restricted="${6:-}"
  mkdir -p "$dir"
  [ -f "$dir/ca.crt" ] && [ -f "$dir/tokens.csv" ] && return 0
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=$name" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf 'subjectAltName=%s\n' "$san" > san.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile san.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    {
      echo "$admin,admin,admin,system:masters"
      [ -z "$restricted" ] || echo "$restricted,restricted,restricted"
      echo "$broker,system:serviceaccount:spin-osb:spin-osb,spin-osb-sa,\"system:serviceaccounts,system:serviceaccounts:spin-osb\""
    } > tokens.csv
  )
}

pki() {
  make_pki "$RUN/pki" spin-osb-test-ca "IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc" \
    "$ADMIN_TOKEN" "$BROKER_TOKEN" "$RESTRICTED_TOKEN"
}

# apiserver_args PORT [HOST PKI_DIR ETCD_PREFIX]
apiserver_args() {
  local host="${2:-127.0.0.1}" pki="${3:-$RUN/pki}"
  echo --etcd-servers "http://127.0.0.1:$ETCD_PORT" --etcd-prefix "${4:-/registry}" \
    --bind-address "$host" --secure-port "$1" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc --api-audiences https://kubernetes.default.svc \
    --authorization-mode RBAC --service-cluster-ip-range 10.0.0.0/24 --advertise-address "$host" \
    --disable-admission-plugins ServiceAccount --allow-privileged=true
}

# controller_manager DIR PKI_DIR CONTROLLERS: in the background, its pid in DIR/kcm.pid.
controller_manager() {
  "$BIN/kube-controller-manager" --kubeconfig "$1/kubeconfig" --leader-elect=false \
    --port 0 --secure-port 0 \
    --service-account-private-key-file "$2/sa.key" --root-ca-file "$2/ca.crt" \
    --controllers "$3" >"$1/kcm.log" 2>&1 &
  echo $! > "$1/kcm.pid"
}

stop() {
  for dir in "$RUN"/clusters/*/; do
    [ -d "$dir" ] || continue
    for p in kcm apiserver; do
      if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
    done
  done
  for p in kcm apiserver etcd; do
    if [ -f "$RUN/$p.pid" ]; then kill "$(cat "$RUN/$p.pid")" 2>/dev/null || true; rm -f "$RUN/$p.pid"; fi
  done
}

# A second cluster: nothing shared with the first but the etcd process (another key prefix).
second_cluster() {
  local name="$1" port="$2" host=127.0.0.2
  local dir="$RUN/clusters/$name"
  local admin="spin-osb-test-$name-admin" broker="spin-osb-test-$name-broker"
  make_pki "$dir/pki" "spin-osb-test-$name-ca" "IP:$host" "$admin" "$broker"
  if ! ready "$port" "$host" "$dir/pki/ca.crt" "$admin"; then
    for p in kcm apiserver; do
      if [ -f "$dir/$p.pid" ]; then kill "$(cat "$dir/$p.pid")" 2>/dev/null || true; rm -f "$dir/$p.pid"; fi
    done
    # shellcheck disable=SC2046
    "$BIN/kube-apiserver" $(apiserver_args "$port" "$host" "$dir/pki" "/clusters/$name") \
      >"$dir/apiserver.log" 2>&1 &
    echo $! > "$dir/apiserver.pid"
    cat > "$dir/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster: {server: "https://$host:$port", certificate-authority: "$dir/pki/ca.crt"}
users:
- name: admin
  user: {token: $admin}
contexts:
- name: $name
  context: {cluster: $name, user: admin, namespace: default}
current-context: $name
KC
    local up=""
    for _ in $(seq 1 240); do
      if ready "$port" "$host" "$dir/pki/ca.crt" "$admin"; then up=1; break; fi
      sleep 0.5
    done
    if [ -z "$up" ]; then
      echo "kube-apiserver of cluster $name did not become ready; end of its log:" >&2
      tail -30 "$dir/apiserver.log" >&2
      exit 1
    fi
    controller_manager "$dir" "$dir/pki" 'namespace,garbagecollector,serviceaccount,deployment,replicaset,statefulset'
  fi
  cat > "$dir/env" <<ENV
KUBE_API_URL=https://$host:$port
KUBE_CA_FILE=$dir/pki/ca.crt
KUBE_ADMIN_TOKEN=$admin
KUBE_BROKER_TOKEN=$broker
KUBE_RUN_DIR=$dir
ENV
  echo "$dir/env"
}

start() {
  [ -x "$BIN/kube-apiserver" ] || "$HERE/build-kube-apiserver.sh" "$BIN" >/dev/null
  command -v etcd >/dev/null || { echo "etcd is missing (apt-get install etcd-server)" >&2; exit 1; }
  pki
  if ready "$SECURE_PORT"; then write_env; echo "$RUN/env"; return 0; fi
  stop
  cd "$RUN"
  rm -rf "$RUN/etcd-data"
  etcd --name spin-osb-test --data-dir "$RUN/etcd-data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT+1))" \
    --initial-cluster "spin-osb-test=http://127.0.0.1:$((ETCD_PORT+1))" \
    --unsafe-no-fsync >"$RUN/etcd.log" 2>&1 &
  echo $! > "$RUN/etcd.pid"
  # shellcheck disable=SC2046
  "$BIN/kube-apiserver" $(apiserver_args "$SECURE_PORT") >"$RUN/apiserver.log" 2>&1 &
  echo $! > "$RUN/apiserver.pid"
  cat > "$RUN/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://127.0.0.1:$SECURE_PORT", certificate-authority: "$RUN/pki/ca.crt"}
users:
- name: admin
  user: {token: $ADMIN_TOKEN}
contexts:
- name: test
  context: {cluster: test, user: admin, namespace: default}
current-context: test
KC
  for _ in $(seq 1 240); do
    if ready "$SECURE_PORT"; then
      controller_manager "$RUN" "$RUN/pki" '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-csrsigning,-csrapproving,-csrcleaner,-bootstrapsigner,-tokencleaner,-ttl'
      write_env
      echo "$RUN/env"
      return 0
    fi
    sleep 0.5
  done
  echo "kube-apiserver did not become ready; end of its log:" >&2
  tail -30 "$RUN/apiserver.log" >&2
  exit 1
}

write_env() {
  cat > "$RUN/env" <<ENV
KUBE_API_URL=https://127.0.0.1:$SECURE_PORT
KUBE_CA_FILE=$RUN/pki/ca.crt
KUBE_ADMIN_TOKEN=$ADMIN_TOKEN
KUBE_RESTRICTED_TOKEN=$RESTRICTED_TOKEN
KUBE_BROKER_TOKEN=$BROKER_TOKEN
KUBE_RUN_DIR=$RUN
KUBE_BIN_DIR=$BIN
ENV
}

case "${1:-}" in
  build) "$HERE/build-kube-apiserver.sh" "$BIN" ;;
  start) start ;;
  stop) stop ;;
  cluster)
    ready "$SECURE_PORT" || { echo "start the first cluster first (kube.sh start)" >&2; exit 1; }
    second_cluster "${2:?name}" "${3:?port}" ;;
  apiserver)
    pki
    # shellcheck disable=SC2046
    exec "$BIN/kube-apiserver" $(apiserver_args "${2:?port}") ;;
  *) echo "usage: $0 build|start|stop|apiserver PORT|cluster NAME PORT" >&2; exit 2 ;;
esac
