#!/usr/bin/env bash
# Contract fuzzing of the gateway's public document: start Redis,
# registry-svc, config-svc, health-svc and the gateway on loopback, mint an
# admin token, validate the gateway's /openapi.json as OpenAPI 3.1, run
# schemathesis against it through the gateway (with the token), then render
# /docs in headless Chromium and check that it lists every operation.
#
#   contract/gateway.sh
#
# Left out of the fuzzing: `/svc/...` (whatever a registered service
# answers) and `/admin/profile` (each call samples the CPU for seconds).
# See contract/GATEWAY.md.
#
# Environment (as contract/run.sh):
#   CONTRACT_MAX_EXAMPLES  examples per operation and phase (default 100)
#   CONTRACT_TIMEOUT       bound on the schemathesis run, in seconds (default 900)
#   CONTRACT_SEED          schemathesis seed, to replay a run
#   CONTRACT_CHECKS        comma-separated schemathesis checks (default below)
#   CONTRACT_VENV          where to install schemathesis when it is missing
#   CONTRACT_BROWSER       0 skips the Chromium check (default 1)
#   CHROMIUM               the browser binary (default: chromium on PATH)
#   CARGO_TARGET_DIR       where the binaries are built (default ./target)
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
VALIDATOR_VERSION=0.9.0
# As contract/run.sh: every check but `positive_data_acceptance` (a
# schema-valid body can rightly get a documented 422).
CHECKS=${CONTRACT_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection,missing_required_header,unsupported_method,allow_header_conformance,use_after_free,ensure_resource_availability}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONTRACT="$ROOT/contract"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT="$TARGET/contract/gateway"
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-100}
RUN_TIMEOUT=${CONTRACT_TIMEOUT:-900}
SECRET="contract-gateway-secret-$$-$RANDOM"

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf 'contract/gateway: %s\n' "$*" >&2; exit 1; }

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

# --- tools (as contract/run.sh) ----------------------------------------------

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

# --- processes ---------------------------------------------------------------

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

# Start binary `$1` on a free loopback port with extra flags; sets URL.
URL=
PREFIX="contract-gateway-$$"
start() {
    local binary=$1 port
    shift
    port=$(free_port)
    "$TARGET/debug/$binary" --addr "127.0.0.1:$port" \
        --redis-url "$REDIS_URL" --redis-prefix "$PREFIX" \
        --log-format json --log-filter warn "$@" \
        >>"$OUT/$binary.log" 2>&1 &
    pids+=($!)
    URL="http://127.0.0.1:$port"
    wait_for "$URL/readyz" || die "$binary did not become ready (see $OUT/$binary.log)"
}

# An HS256 JWT with scope `admin` (every scope), valid for two hours.
mint_token() {
    SECRET=$SECRET python3 - <<'EOF'
import base64, hashlib, hmac, json, os, time

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

now = int(time.time())
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = b64(json.dumps({"sub": "contract", "scope": "admin", "iat": now, "exp": now + 7200}).encode())
signing_input = f"{header}.{claims}".encode()
signature = hmac.new(os.environ["SECRET"].encode(), signing_input, hashlib.sha256).digest()
print(f"{header}.{claims}.{b64(signature)}")
EOF
}

put_json() {
    local path=$1 body=$2
    curl -fsS -o /dev/null --max-time 5 -X PUT -H "Authorization: Bearer $TOKEN" \
        -H 'content-type: application/json' --data "$body" "$GATEWAY$path" ||
        die "seeding PUT $path failed"
}

# The documents' examples (service `echo`, instance `echo-1`; namespace
# `echo`, key `log/level`) hold data, so operations answer 200, not only 404.
seed() {
    local closed
    closed=$(free_port) # nothing listens there: checks fail (critical)
    put_json /api/v1/registry/services/echo/instances/echo-1 \
        "{\"host\":\"127.0.0.1\",\"port\":$closed,\"ttl_seconds\":3600,\"check\":{\"type\":\"tcp\",\"interval_seconds\":1,\"timeout_ms\":200}}"
    put_json /api/v1/registry/services/echo/instances/echo-2 \
        "{\"host\":\"127.0.0.1\",\"port\":$closed,\"ttl_seconds\":3600,\"check\":{\"type\":\"http\",\"path\":\"/health\",\"interval_seconds\":1,\"timeout_ms\":200}}"
    put_json /api/v1/registry/services/echo/instances/echo-3 \
        "{\"host\":\"127.0.0.1\",\"port\":$closed,\"ttl_seconds\":3600}"
    put_json /api/v1/config/namespaces/echo/keys/log/level '{"value":"info"}'
    put_json /api/v1/config/namespaces/echo/keys/log/level \
        '{"value":"debug","message":"seeded by contract/gateway.sh"}'
    put_json /api/v1/config/namespaces/echo/schema '{"$comment":"any value"}'
    curl -s -o /dev/null --max-time 0.5 -H "Authorization: Bearer $TOKEN" \
        "$GATEWAY/api/v1/config/watch?namespace=echo&client_id=contract" || true
    # Let the first checks land, so explain answers carry a last check.
    for _ in $(seq 50); do
        if curl -fsS --max-time 1 -H "Authorization: Bearer $TOKEN" \
            "$GATEWAY/api/v1/health/services/echo/instances/echo-1" | grep -q '"last_check":{'; then
            break
        fi
        sleep 0.1
    done
}

# --- run ---------------------------------------------------------------------

started_all=$(date +%s)
mkdir -p "$OUT"
rm -f "$OUT"/*.log
ensure_tools
log "$("$ST" --version); openapi-spec-validator $(version_of "$VALIDATOR")"

log "building registry-svc config-svc health-svc gateway"
(cd "$ROOT" && cargo build --quiet -p registry-svc -p config-svc -p health-svc -p gateway)

start_redis
start registry-svc
REGISTRY=$URL
start config-svc --client-status-interval 100ms
CONFIG=$URL
start health-svc
HEALTH=$URL
# A generous rate limit: every answer carries RateLimit-*, no example gets 429.
start gateway --registry-url "$REGISTRY" --config-url "$CONFIG" --health-url "$HEALTH" \
    --jwt-secret "$SECRET" --rate-limit-rps 100000 --rate-limit-burst 100000
GATEWAY=$URL
TOKEN=$(mint_token)
seed

status=0
log "gateway: schemathesis (max examples $MAX_EXAMPLES per operation and phase)"
started=$(date +%s)
if curl -fsS --max-time 5 -o "$OUT/openapi.json" "$GATEWAY/openapi.json" &&
    "$VALIDATOR" --schema 3.1 "$OUT/openapi.json"; then
    (
        cd "$OUT"
        SCHEMATHESIS_HOOKS="$CONTRACT/hooks.py" timeout --kill-after=10 "$RUN_TIMEOUT" \
            "$ST" --config-file "$CONTRACT/schemathesis.toml" --no-color \
            run "$GATEWAY/openapi.json" \
            -H "Authorization: Bearer $TOKEN" \
            --exclude-path-regex '^/svc/' --exclude-path /admin/profile \
            --checks "$CHECKS" \
            --max-examples "$MAX_EXAMPLES" \
            --generation-database none \
            --report junit --report-dir "$OUT" \
            ${CONTRACT_SEED:+--seed "$CONTRACT_SEED"}
    ) || status=$?
else
    status=$?
fi
fuzz_elapsed=$(($(date +%s) - started))
[ "$status" -eq 124 ] && echo "contract/gateway: schemathesis timed out after ${RUN_TIMEOUT}s" >&2

# --- the docs page in a headless browser ---------------------------------------

browser_status=0
browser_note="skipped (CONTRACT_BROWSER=0)"
if [ "${CONTRACT_BROWSER:-1}" != 0 ]; then
    CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
    if [ -z "$CHROMIUM" ]; then
        browser_status=1
        browser_note="FAILED: no chromium (apt-get install -y --no-install-recommends chromium)"
    else
        log "gateway: /docs in headless Chromium"
        started=$(date +%s)
        browse() {
            timeout --kill-after=5 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu \
                --disable-dev-shm-usage --no-first-run --user-data-dir="$OUT/chromium-profile" \
                --virtual-time-budget=10000 "$@" "$GATEWAY/docs" 2>>"$OUT/chromium.log"
        }
        browse --dump-dom >"$OUT/docs.html" || browser_status=$?
        browse --window-size=1280,4000 --screenshot="$OUT/docs.png" >/dev/null || true
        cp -f "$OUT/docs.png" /tmp/gateway-docs.png 2>/dev/null || true
        if [ "$browser_status" -eq 0 ]; then
            # Every documented operation is one `opblock` whose id ends in its
            # operationId (`operations-{tag}-{operationId}`).
            python3 - "$OUT/openapi.json" "$OUT/docs.html" <<'EOF' || browser_status=$?
import json, re, sys

document = json.load(open(sys.argv[1]))
dom = open(sys.argv[2], encoding="utf-8").read()
expected = {
    operation["operationId"]
    for item in document["paths"].values()
    for operation in item.values()
}
rendered = set(re.findall(r'id="operations-[^"]*?-([A-Za-z0-9_]+)"', dom))
blocks = len(re.findall(r'class="opblock opblock-', dom))
missing = sorted(expected - rendered)
print(f"docs: {blocks} operation blocks rendered, {len(expected)} documented")
if missing or blocks < len(expected):
    print(f"docs: not rendered: {missing}", file=sys.stderr)
    sys.exit(1)
EOF
        fi
        browser_elapsed=$(($(date +%s) - started))
        if [ "$browser_status" -eq 0 ]; then
            browser_note="passed in ${browser_elapsed}s (screenshot $OUT/docs.png, /tmp/gateway-docs.png)"
        else
            browser_note="FAILED (exit $browser_status) in ${browser_elapsed}s; DOM $OUT/docs.html, log $OUT/chromium.log"
        fi
    fi
fi

log "summary"
if [ "$status" -eq 0 ]; then
    echo "gateway schemathesis: passed in ${fuzz_elapsed}s"
else
    echo "gateway schemathesis: FAILED (exit $status) in ${fuzz_elapsed}s; logs in $OUT"
fi
echo "gateway /docs in Chromium: $browser_note"
echo "total: $(($(date +%s) - started_all))s"
[ "$status" -eq 0 ] && [ "$browser_status" -eq 0 ]
