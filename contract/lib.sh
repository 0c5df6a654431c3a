# Shared by contract/run.sh and contract/gateway.sh (sourced, not run): the
# pinned tools, process bookkeeping, free ports, HS256 tokens (the internal
# secret every binary shares), Redis, starting a binary and waiting for it,
# and the validate-then-fuzz step.
#
# The sourcing script sets NAME (the prefix of `die` messages) first, and
# OUT (where logs and reports go) before it starts anything.
# shellcheck shell=bash

SCHEMATHESIS_VERSION=4.32.5
VALIDATOR_VERSION=0.9.0
# Every check but `positive_data_acceptance`: the documents cannot express
# cross-field rules (a check's `timeout_ms` below its interval), so some
# schema-valid bodies are rightly refused with a documented 422.
# Not `use_after_free`: config-svc keeps a key's history readable after the
# key is deleted (issue 4 asks for it), and schemathesis's inferred links pair
# `DELETE …/keys/{key}` with `GET …/keys/{key}/history`, so whether it fires
# depended on the seed. Deletes are covered by the services' own tests.
CHECKS=${CONTRACT_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance,negative_data_rejection,missing_required_header,unsupported_method,allow_header_conformance,ensure_resource_availability}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CONTRACT="$ROOT/contract"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-100}

log() { printf '\n== %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$NAME" "$*" >&2; exit 1; }

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

# Poll `curl -fsS --max-time 1` with the arguments after `$1` until what it
# answers matches `$1`, for at most ~5 s; never fails (the data is a nicety).
wait_for_match() {
    local pattern=$1
    shift
    for _ in $(seq 50); do
        if curl -fsS --max-time 1 "$@" | grep -q "$pattern"; then
            break
        fi
        sleep 0.1
    done
}

# --- tools -------------------------------------------------------------------

# schemathesis and openapi-spec-validator at the pinned versions: the ones
# on PATH when they match, else a venv of our own. Logs the versions.
ST=
VALIDATOR=
version_of() { "$1" --version 2>/dev/null | grep -oE '[0-9]+\.[0-9]+\.[0-9]+' | head -1; }
ensure_tools() {
    if [ "$(version_of schemathesis)" = "$SCHEMATHESIS_VERSION" ] &&
        [ "$(version_of openapi-spec-validator)" = "$VALIDATOR_VERSION" ]; then
        ST=$(command -v schemathesis)
        VALIDATOR=$(command -v openapi-spec-validator)
    else
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
    fi
    log "$("$ST" --version); openapi-spec-validator $(version_of "$VALIDATOR")"
}

# --- credentials -------------------------------------------------------------

# MCP_INTERNAL_SECRET of every binary this script starts (at least 32 bytes).
INTERNAL_SECRET="contract-internal-secret-$$-$RANDOM-0123456789abcdef"

# An HS256 JWT signed with secret `$1` whose claims are the JSON object `$2`
# plus `iat` (now) and `exp` (in two hours).
mint_hs256() {
    SECRET=$1 CLAIMS=$2 python3 - <<'EOF'
import base64, hashlib, hmac, json, os, time

def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

now = int(time.time())
claims = dict(json.loads(os.environ["CLAIMS"]), iat=now, exp=now + 7200)
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps(claims).encode())
signing_input = f"{header}.{body}".encode()
signature = hmac.new(os.environ["SECRET"].encode(), signing_input, hashlib.sha256).digest()
print(f"{header}.{body}.{b64(signature)}")
EOF
}

# The credential the gateway mints for the services (README: Security
# model), with scope `admin`: what a direct call to a service needs.
internal_token() {
    mint_hs256 "$INTERNAL_SECRET" \
        '{"iss": "mcp-gateway", "aud": "mcp-internal", "sub": "contract", "scope": "admin"}'
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

# Start binary `$1` on a free loopback port under Redis prefix `$2`, with
# the flags that follow; waits until it is ready and sets URL.
#
# Every binary that connects to registered addresses (registry-svc refuses
# them early, health-svc probes them, the gateway proxies to them) is
# confined to loopback with no DNS lookup of registered names: the fuzzer
# registers whatever hosts it invents, and nothing may leave 127.0.0.0/8.
URL=
LOOPBACK_ONLY=(--egress-allow-cidrs 127.0.0.0/8 --egress-allow-hostnames false)
start_binary() {
    local binary=$1 prefix=$2 port
    shift 2
    port=$(free_port)
    local egress=()
    [ "$binary" = config-svc ] || egress=("${LOOPBACK_ONLY[@]}")
    "$TARGET/debug/$binary" --addr "127.0.0.1:$port" \
        --redis-url "$REDIS_URL" --redis-prefix "$prefix" \
        --internal-secret "$INTERNAL_SECRET" \
        --log-format json --log-filter warn "${egress[@]}" "$@" \
        >>"$OUT/$binary.log" 2>&1 &
    pids+=($!)
    URL="http://127.0.0.1:$port"
    wait_for "$URL/readyz" || die "$binary did not become ready (see $OUT/$binary.log)"
}

# Fail unless every connection `$1` (a base URL; curl flags may follow)
# made to a registered address went to loopback: its `*_connects_total`
# counters have no `destination="other"` sample above zero. Prints what it saw.
assert_loopback_only() {
    local url=$1 metrics
    shift
    metrics=$(curl -fsS --max-time 5 "$@" "$url/metrics") || {
        echo "$NAME: cannot read $url/metrics" >&2
        return 1
    }
    local seen
    seen=$(grep -E '^(health_probe|gateway_upstream)_connects_total|_refused_total' <<<"$metrics" || true)
    echo "egress at $url: ${seen:-no connection to a registered address}" | tr '\n' ' ' >&2
    echo >&2
    if grep -E '_connects_total\{destination="other"\} [1-9]' <<<"$metrics" >/dev/null; then
        echo "$NAME: $url connected outside loopback" >&2
        return 1
    fi
}

# --- fuzzing -----------------------------------------------------------------

# Fetch `$1/openapi.json` into directory `$2` and validate it as OpenAPI 3.1,
# then fuzz it with schemathesis for at most `$3` seconds (the flags that
# follow go to `schemathesis run`), reporting JUnit into `$2`. Returns the
# first failure's status (124: schemathesis timed out).
fuzz() {
    local url=$1 report=$2 bound=$3
    shift 3
    curl -fsS --max-time 5 -o "$report/openapi.json" "$url/openapi.json" &&
        "$VALIDATOR" --schema 3.1 "$report/openapi.json" || return
    (
        cd "$report"
        SCHEMATHESIS_HOOKS="$CONTRACT/hooks.py" timeout --kill-after=10 "$bound" \
            "$ST" --config-file "$CONTRACT/schemathesis.toml" --no-color \
            run "$url/openapi.json" \
            "$@" \
            --checks "$CHECKS" \
            --max-examples "$MAX_EXAMPLES" \
            --generation-database none \
            --report junit --report-dir "$report" \
            ${CONTRACT_SEED:+--seed "$CONTRACT_SEED"}
    )
}
