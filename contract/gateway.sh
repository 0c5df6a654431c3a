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
#   CONTRACT_CHECKS        comma-separated schemathesis checks (default in contract/lib.sh)
#   CONTRACT_VENV          where to install schemathesis when it is missing
#   CONTRACT_PREPARE_ONLY  1: install the tools and build the binaries, then stop
#   (.ci/run then runs the script with loopback only)
#   CONTRACT_BROWSER       0 skips the Chromium check (default 1)
#   CHROMIUM               the browser binary (default: chromium on PATH)
#   CARGO_TARGET_DIR       where the binaries are built (default ./target)
set -euo pipefail

NAME=contract/gateway
# shellcheck source=contract/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OUT="$TARGET/contract/gateway"
RUN_TIMEOUT=${CONTRACT_TIMEOUT:-900}
# At least 32 bytes (the gateway refuses a shorter JWT_SECRET).
SECRET="contract-gateway-secret-$$-$RANDOM-0123456789abcdef"

# --- processes ---------------------------------------------------------------

# Start binary `$1` on a free loopback port with extra flags; sets URL.
PREFIX="contract-gateway-$$"
start() {
    local binary=$1
    shift
    start_binary "$binary" "$PREFIX" "$@"
}

# An HS256 JWT with scope `admin` (every scope), valid for two hours.
mint_token() {
    mint_hs256 "$SECRET" '{"sub": "contract", "scope": "admin"}'
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
    wait_for_match '"last_check":{' -H "Authorization: Bearer $TOKEN" \
        "$GATEWAY/api/v1/health/services/echo/instances/echo-1"
}

# --- run ---------------------------------------------------------------------

started_all=$(date +%s)
mkdir -p "$OUT"
rm -f "$OUT"/*.log
ensure_tools

log "building registry-svc config-svc health-svc gateway"
(cd "$ROOT" && cargo build --quiet -p registry-svc -p config-svc -p health-svc -p gateway)
[ "${CONTRACT_PREPARE_ONLY:-0}" = 1 ] && exit 0

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
fuzz "$GATEWAY" "$OUT" "$RUN_TIMEOUT" \
    -H "Authorization: Bearer $TOKEN" \
    --exclude-path-regex '^/svc/' --exclude-path /admin/profile ||
    status=$?
fuzz_elapsed=$(($(date +%s) - started))
[ "$status" -eq 124 ] && echo "contract/gateway: schemathesis timed out after ${RUN_TIMEOUT}s" >&2

# The fuzzer registered whatever hosts it invented: prove that neither the
# probes nor the proxy connected anywhere but loopback.
egress_status=0
assert_loopback_only "$HEALTH" || egress_status=1
assert_loopback_only "$GATEWAY" -H "Authorization: Bearer $TOKEN" || egress_status=1

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
        # No name leaves the browser (every lookup but loopback fails inside
        # Chromium) and none of its background services run: the pages are
        # on 127.0.0.1 and nothing else may be reached.
        chromium_flags=(--headless --no-sandbox --disable-gpu --disable-dev-shm-usage
            --no-first-run --user-data-dir="$OUT/chromium-profile"
            --no-proxy-server --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"
            --disable-background-networking --disable-component-update --disable-sync
            --disable-default-apps --disable-domain-reliability --no-pings
            --disable-client-side-phishing-detection --disable-features=OptimizationHints,MediaRouter,Translate)
        browse() {
            timeout --kill-after=5 60 "$CHROMIUM" "${chromium_flags[@]}" \
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
        if [ "$browser_status" -eq 0 ]; then
            # The console (/ui) signs in from the fragment, loads its modules
            # under its CSP and renders the services from the API.
            log "gateway: /ui in headless Chromium"
            timeout --kill-after=5 60 "$CHROMIUM" "${chromium_flags[@]}" \
                --virtual-time-budget=5000 --dump-dom "$GATEWAY/ui/#token=$TOKEN&view=services" \
                >"$OUT/ui.html" 2>>"$OUT/chromium.log" || browser_status=$?
            if [ "$browser_status" -eq 0 ] && ! grep -q 'data-view="services"' "$OUT/ui.html"; then
                echo "ui: the services view did not render (DOM $OUT/ui.html)" >&2
                browser_status=1
            fi
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
echo "gateway /docs and /ui in Chromium: $browser_note"
if [ "$egress_status" -eq 0 ]; then
    echo "egress: health-svc and the gateway connected to loopback only"
else
    echo "egress: FAILED: a connection outside loopback (see above)"
fi
echo "total: $(($(date +%s) - started_all))s"
[ "$status" -eq 0 ] && [ "$browser_status" -eq 0 ] && [ "$egress_status" -eq 0 ]
