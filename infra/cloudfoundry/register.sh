#!/usr/bin/env bash
# Registers spin-osb with Cloud Foundry, or updates the registration, and makes every
# service of its catalog available. Idempotent: run it again after a catalog change.
#
#   BROKER_PASSWORD=... infra/cloudfoundry/register.sh [options] BROKER_URL
#
#   --name NAME        broker name in CF (default spin-osb)
#   --username USER    basic-auth user (default $BROKER_USERNAME, else broker)
#   --space-scoped     register for the targeted space only (space developers may do this;
#                      its plans are visible in that space, so no service access is enabled)
#   --org ORG          enable service access for ORG only (default: every org)
#   --no-enable        register/update only, leave service access alone
#
# Needs: cf CLI v7 or newer, logged in and targeted (`cf login`, `cf target -o ORG -s SPACE`
# for --space-scoped); curl and jq. The broker must be reachable from here and from the Cloud
# Controller. The password never appears on a command line: cf reads it from
# CF_BROKER_PASSWORD.
#
# What it does:
#   1. GET BROKER_URL/v2/catalog with the credentials (fails early on a wrong URL/password)
#      and reads the service names;
#   2. `cf create-service-broker NAME USER URL [--space-scoped]`, or, when `cf service-brokers`
#      already lists NAME, `cf update-service-broker NAME USER URL` (CF re-reads the catalog);
#   3. unless --space-scoped/--no-enable: `cf enable-service-access SERVICE -b NAME [-o ORG]`
#      for every service of the catalog.
set -euo pipefail

NAME=spin-osb
USERNAME="${BROKER_USERNAME:-broker}"
SPACE_SCOPED=0
ORG=""
ENABLE=1
URL=""
CF="${CF:-cf}"

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME="${2:?--name needs a value}"; shift 2 ;;
    --username) USERNAME="${2:?--username needs a value}"; shift 2 ;;
    --space-scoped) SPACE_SCOPED=1; shift ;;
    --org) ORG="${2:?--org needs a value}"; shift 2 ;;
    --no-enable) ENABLE=0; shift ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [ -z "$URL" ] || usage; URL="$1"; shift ;;
  esac
done
[ -n "$URL" ] || usage
URL="${URL%/}"
if [ -z "${BROKER_PASSWORD:-}" ]; then
  echo "BROKER_PASSWORD must be set (the broker's basic-auth password)" >&2
  exit 2
fi
for tool in "$CF" curl jq; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 2; }
done

echo "==> reading the catalog of $URL"
catalog="$(curl -fsS --max-time 60 -u "$USERNAME:$BROKER_PASSWORD" \
  -H 'X-Broker-API-Version: 2.17' "$URL/v2/catalog")" || {
  echo "GET $URL/v2/catalog failed: check the URL and the credentials" >&2
  exit 1
}
mapfile -t services < <(jq -r '.services[].name' <<<"$catalog")
[ "${#services[@]}" -gt 0 ] || { echo "the catalog lists no services" >&2; exit 1; }
echo "    services: ${services[*]}"

export CF_BROKER_PASSWORD="$BROKER_PASSWORD"
brokers="$("$CF" service-brokers)"   # fails here when not logged in
if awk -v name="$NAME" '$1 == name { found = 1 } END { exit !found }' <<<"$brokers"; then
  echo "==> updating service broker $NAME"
  "$CF" update-service-broker "$NAME" "$USERNAME" "$URL"
else
  echo "==> creating service broker $NAME"
  args=(create-service-broker "$NAME" "$USERNAME" "$URL")
  [ "$SPACE_SCOPED" = 1 ] && args+=(--space-scoped)
  "$CF" "${args[@]}"
fi

if [ "$SPACE_SCOPED" = 1 ]; then
  echo "==> space-scoped: the plans are visible in the targeted space, no access to enable"
elif [ "$ENABLE" = 1 ]; then
  for service in "${services[@]}"; do
    echo "==> enabling service access to $service"
    args=(enable-service-access "$service" -b "$NAME")
    [ -n "$ORG" ] && args+=(-o "$ORG")
    "$CF" "${args[@]}"
  done
fi
echo "==> done; see the offerings with: $CF marketplace"
