#!/usr/bin/env bash
# Contract fuzzing: run schemathesis against each service's own
# /openapi.json, on loopback, with a Redis this script starts.
#
#   contract/run.sh [service ...]        (default: registry-svc health-svc config-svc)
#
# Checks: no 5xx, documented status codes, content types (problem+json on
# every error), response schemas and headers, invalid input refused, 405
# with `Allow` for undocumented methods. See contract/README.md.
#
# Environment:
#   CONTRACT_MAX_EXAMPLES  examples per operation and phase (default 100)
#   CONTRACT_TIMEOUT       hard bound per service, in seconds (default 600)
#   CONTRACT_SEED          schemathesis seed, to replay a run
#   CONTRACT_CHECKS        comma-separated schemathesis checks (default below)
#   CONTRACT_VENV          where to install schemathesis when it is missing
#   CARGO_TARGET_DIR       where the binaries are built (default ./target)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
VALIDATOR_VERSION=0.9.0
# Every check but `positive_data_acceptance`: the documents cannot express
# cross-field rules (a check's `timeout_ms` below its interval), so some
# schema-valid bodies are rightly refused with a documented 422.
CHECKS=${CONTRACT_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection,missing_required_header,unsupported_method,allow_header_conformance,use_after_free,ensure_resource_availability}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONTRACT="$ROOT/contract"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT="$TARGET/contract"
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-100}
SERVICE_TIMEOUT=${CONTRACT_TIMEOUT:-600}

services=("$@")
if [ ${#services[@]} -eq 0 ]; then
    services=(registry-svc health-svc config-svc)
fi

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'contract: %s\n' "$*" >&2; exit 1; }

# Every process this script starts, stopped (by pid) on exit.
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Poll `url` until it answers 2xx, for at most ~10 s.
wait_for() {
    local url=$1
    for _ in $(seq 100); do
        if curl -fsS -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# --- tools -------------------------------------------------------------------

# schemathesis and openapi-spec-validator at the pinned versions: the ones
# on PATH when they match, else a venv of our own.
ST=
VALIDATOR=
version_of() { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1; }
ensure_tools() {
    if [ "$(version_of schemathesis)" = "$SCHEMATHESIS_VERSION" ] &&
        [ "$(version_of openapi-spec-validator)" = "$VALIDATOR_VERSION" ]; then
        ST=$(command -v schemathesis)
        VALIDATOR=$(command -v openapi-spec-validator)
        return
    fi
    local venv=${CONTRACT_VENV:-$TARGET/contract-venv}
    if [ "$(version_of "$venv/bin/schemathesis")" != "$SCHEMATHESIS_VERSION" ] ||
        [ "$(version_of "$venv/bin/openapi-spec-validator")" != "$VALIDATOR_VERSION" ]; then
        log "installing schemathesis $SCHEMATHESIS_VERSION and openapi-spec-validator $VALIDATOR_VERSION into $venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check \
            "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$VALIDATOR_VERSION"
    fi
    ST="$venv/bin/schemathesis"
    VALIDATOR="$venv/bin/openapi-spec-validator"
}

# --- services ----------------------------------------------------------------

REDIS_URL=
start_redis() {
    command -v redis-server >/dev/null 2>&1 || die "redis-server not found"
    local port
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        >"$OUT/redis.log" 2>&1 &
    pids+=($!)
    REDIS_URL="redis://127.0.0.1:$port"
    for _ in $(seq 100); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then
            return
        fi
        sleep 0.1
    done
    die "redis-server did not start (see $OUT/redis.log)"
}

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
URL=
start_service() {
    local service=$1 prefix=$2 port
    port=$(free_port)
    # shellcheck disable=SC2046 # service_args prints flags, split on purpose
    "$TARGET/debug/$service" --addr "127.0.0.1:$port" \
        --redis-url "$REDIS_URL" --redis-prefix "$prefix" \
        --log-format json --log-filter warn $(service_args "$service") \
        >>"$OUT/$service.log" 2>&1 &
    pids+=($!)
    URL="http://127.0.0.1:$port"
    wait_for "$URL/readyz" || die "$service did not become ready (see $OUT/$service.log)"
}

put_json() {
    local base=$1 path=$2 body=$3
    curl -fsS -o /dev/null --max-time 5 -X PUT -H 'content-type: application/json' \
        --data "$body" "$base$path" || die "seeding PUT $path failed"
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
            for _ in $(seq 50); do
                if curl -fsS --max-time 1 "$url/v1/services/echo/instances/echo-1" |
                    grep -q '"last_check":{'; then
                    break
                fi
                sleep 0.1
            done
            ;;
        config-svc)
            # Two versions (history, rollback), a schema every value meets,
            # and one watcher's delivery (propagation status).
            put_json "$url" /v1/namespaces/echo/keys/log/level '{"value":"info"}'
            put_json "$url" /v1/namespaces/echo/keys/log/level \
                '{"value":"debug","message":"seeded by contract/run.sh"}'
            put_json "$url" /v1/namespaces/echo/schema '{"$comment":"any value"}'
            curl -s -o /dev/null --max-time 0.5 \
                "$url/v1/watch?namespace=echo&client_id=contract" || true
            for _ in $(seq 50); do
                if curl -fsS --max-time 1 "$url/v1/namespaces/echo/clients" |
                    grep -q '"client_id":"contract"'; then
                    break
                fi
                sleep 0.1
            done
            ;;
    esac
}

# --- run ---------------------------------------------------------------------

mkdir -p "$OUT"
ensure_tools
log "$("$ST" --version); openapi-spec-validator $(version_of "$VALIDATOR")"

build=()
for service in "${services[@]}"; do
    build+=(-p "$service")
done
if printf '%s\n' "${services[@]}" | grep -qx health-svc; then
    build+=(-p registry-svc) # seeds health-svc
fi
log "building ${services[*]}"
(cd "$ROOT" && cargo build --quiet "${build[@]}")

start_redis
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
    if curl -fsS --max-time 5 -o "$report/openapi.json" "$url/openapi.json" &&
        "$VALIDATOR" --schema 3.1 "$report/openapi.json"; then
        (
            cd "$report"
            SCHEMATHESIS_HOOKS="$CONTRACT/hooks.py" timeout --kill-after=10 "$SERVICE_TIMEOUT" \
                "$ST" --config-file "$CONTRACT/schemathesis.toml" --no-color \
                run "$url/openapi.json" \
                --checks "$CHECKS" \
                --max-examples "$MAX_EXAMPLES" \
                --generation-database none \
                --report junit --report-dir "$report" \
                ${CONTRACT_SEED:+--seed "$CONTRACT_SEED"}
        ) || status=$?
    else
        status=$?
    fi
    elapsed=$(($(date +%s) - started))
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
