#!/usr/bin/env bash
# Contract fuzzing: run schemathesis against each service's own
# /openapi.json, on loopback, with a Redis this script starts.
#
#   contract/run.sh [service ...]        (default: registry-svc health-svc config-svc)
#
# Checks: no 5xx, documented status codes, content types (problem+json on
# every error), response schemas and headers, invalid input refused, 405
# with `Allow` for undocumented methods. See contract/README.md. Every
# request carries an internal credential this script mints (the services
# answer only the gateway; without it they answer the documented 401).
#
# Environment:
#   CONTRACT_MAX_EXAMPLES  examples per operation and phase (default 100)
#   CONTRACT_TIMEOUT       hard bound per service, in seconds (default 600)
#   CONTRACT_SEED          schemathesis seed, to replay a run
#   CONTRACT_CHECKS        comma-separated schemathesis checks (default in contract/lib.sh)
#   CONTRACT_VENV          where to install schemathesis when it is missing
#   CONTRACT_PREPARE_ONLY  1: install the tools and build the binaries, then stop
#   (.ci/run then runs the script with loopback only)
#   CARGO_TARGET_DIR       where the binaries are built (default ./target)
set -euo pipefail

NAME=contract
# shellcheck source=contract/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT="$TARGET/contract"
SERVICE_TIMEOUT=${CONTRACT_TIMEOUT:-600}

services=("$@")
if [ ${#services[@]} -eq 0 ]; then
    services=(registry-svc health-svc config-svc)
fi

# --- services ----------------------------------------------------------------

# Flags a service needs beyond the common ones (add the gateway here).
service_args() {
    case $1 in
        registry-svc | health-svc) ;;
        # Propagation status written often, so the seeded watcher shows up.
        config-svc) echo --client-status-interval 100ms ;;
        *) ;;
    esac
}

# Start `$1` on a free loopback port under Redis prefix `$2`; sets URL.
start_service() {
    # shellcheck disable=SC2046 # service_args prints flags, split on purpose
    start_binary "$1" "$2" $(service_args "$1")
}

# The services answer only the gateway: every call here carries the
# internal credential the gateway would mint (scope `admin`).
INTERNAL_TOKEN=
AUTH=()

put_json() {
    local base=$1 path=$2 body=$3
    curl -fsS -o /dev/null --max-time 5 -X PUT -H 'content-type: application/json' \
        "${AUTH[@]}" --data "$body" "$base$path" || die "seeding PUT $path failed"
}

# Data each service should hold before it is fuzzed, so operations answer
# 200 for the documented examples (service `echo`, instance `echo-1`;
# namespace `echo`, key `log/level`), not only 404.
seed() {
    local service=$1 prefix=$2 url=$3
    case $service in
        registry-svc)
            put_json "$url" /v1/services/echo/instances/echo-1 \
                '{"host":"127.0.0.1","port":9000,"ttl_seconds":3600}'
            ;;
        health-svc)
            # health-svc reads what registry-svc writes: register through a
            # registry-svc on the same prefix. The checks probe a loopback
            # port nothing listens on, so they fail (critical).
            local closed registry
            closed=$(free_port)
            start_service registry-svc "$prefix"
            registry=$URL
            put_json "$registry" /v1/services/echo/instances/echo-1 \
                "{\"host\":\"127.0.0.1\",\"port\":$closed,\"ttl_seconds\":3600,\"check\":{\"type\":\"tcp\",\"interval_seconds\":1,\"timeout_ms\":200}}"
            put_json "$registry" /v1/services/echo/instances/echo-2 \
                "{\"host\":\"127.0.0.1\",\"port\":$closed,\"ttl_seconds\":3600,\"check\":{\"type\":\"http\",\"path\":\"/health\",\"interval_seconds\":1,\"timeout_ms\":200}}"
            put_json "$registry" /v1/services/echo/instances/echo-3 \
                "{\"host\":\"127.0.0.1\",\"port\":$closed,\"ttl_seconds\":3600}"
            # Let the first checks land, so explain answers carry a last check.
            wait_for_match '"last_check":{' "${AUTH[@]}" "$url/v1/services/echo/instances/echo-1"
            ;;
        config-svc)
            # Two versions (history, rollback), a schema every value meets,
            # and one watcher's delivery (propagation status).
            put_json "$url" /v1/namespaces/echo/keys/log/level '{"value":"info"}'
            put_json "$url" /v1/namespaces/echo/keys/log/level \
                '{"value":"debug","message":"seeded by contract/run.sh"}'
            put_json "$url" /v1/namespaces/echo/schema '{"$comment":"any value"}'
            curl -s -o /dev/null --max-time 0.5 "${AUTH[@]}" \
                "$url/v1/watch?namespace=echo&client_id=contract" || true
            wait_for_match '"client_id":"contract"' "${AUTH[@]}" "$url/v1/namespaces/echo/clients"
            ;;
    esac
}

# --- run ---------------------------------------------------------------------

mkdir -p "$OUT"
ensure_tools

build=()
for service in "${services[@]}"; do
    build+=(-p "$service")
done
if printf '%s\n' "${services[@]}" | grep -qx health-svc; then
    build+=(-p registry-svc) # seeds health-svc
fi
log "building ${services[*]}"
(cd "$ROOT" && cargo build --quiet "${build[@]}")
[ "${CONTRACT_PREPARE_ONLY:-0}" = 1 ] && exit 0

start_redis
INTERNAL_TOKEN=$(internal_token)
AUTH=(-H "Authorization: Bearer $INTERNAL_TOKEN")
failed=()
summary=()
for service in "${services[@]}"; do
    [ -x "$TARGET/debug/$service" ] || die "no binary $TARGET/debug/$service"
    log "$service"
    report="$OUT/$service"
    rm -rf "$report" && mkdir -p "$report"
    : >"$OUT/$service.log"
    prefix="contract-$service-$$"
    start_service "$service" "$prefix"
    url=$URL
    seed "$service" "$prefix" "$url"
    started=$(date +%s)
    status=0
    # The document itself must be valid OpenAPI 3.1, then it is fuzzed.
    fuzz "$url" "$report" "$SERVICE_TIMEOUT" "${AUTH[@]}" || status=$?
    elapsed=$(($(date +%s) - started))
    if [ "$service" = health-svc ]; then
        assert_loopback_only "$url" || status=1
    fi
    if [ "$status" -eq 0 ]; then
        summary+=("$service: passed in ${elapsed}s")
    else
        [ "$status" -eq 124 ] && echo "contract: $service: timed out after ${SERVICE_TIMEOUT}s" >&2
        summary+=("$service: FAILED (exit $status) in ${elapsed}s; service log: $OUT/$service.log")
        failed+=("$service")
    fi
done

log "summary"
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || exit 1
