#!/usr/bin/env bash
# Shared helpers for the benchmark scripts: build, start things on loopback,
# wait for readiness, measure, clean up. Sourced, not run.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
WORK=$(mktemp -d /tmp/mcp-bench.XXXXXX)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
PIDS=()

# Whatever a benchmark registers, the proxy and the probes connect to
# loopback only and never look a name up (read by the gateway, registry-svc
# and health-svc; the other binaries have no such setting and ignore them).
# Address settings from the caller's shell are dropped for the same reason.
export EGRESS_ALLOW_CIDRS=127.0.0.0/8 EGRESS_ALLOW_HOSTNAMES=false
unset REGISTRY_URL CONFIG_URL HEALTH_URL JWT_JWKS_URL OTEL_EXPORTER_OTLP_ENDPOINT

log() { printf '==> %s\n' "$*" >&2; }

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Install Debian packages that are missing (peers and load generators).
need() {
  local missing=()
  for pair in "$@"; do
    local cmd=${pair%%:*} pkg=${pair##*:}
    command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build_release() {
  # BENCH_NO_BUILD=1 measures the release binaries already built (say, while
  # the working tree has changes that are not meant to be measured).
  [[ ${BENCH_NO_BUILD:-0} == 1 ]] && { log "using the release binaries in $BIN"; return; }
  log "building release binaries: $*"
  (cd "$ROOT" && cargo build --release --locked $(printf -- '-p %s ' "$@") >&2)
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start NAME CMD...: run in the background, log to $WORK/NAME.log, remember the pid.
start() {
  local name=$1; shift
  "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  echo $!
}

# wait_http URL [seconds]: until URL answers 200.
wait_http() {
  local url=$1 limit=${2:-20} i=0
  until curl -fsS -o /dev/null "$url" 2>/dev/null; do
    i=$((i + 1))
    if ((i > limit * 20)); then log "timeout waiting for $url"; return 1; fi
    sleep 0.05
  done
}

start_redis() {
  REDIS_PORT=$(free_port)
  start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >/dev/null
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
}

# cpu_ticks PID...: user+system clock ticks used so far by these processes and their children.
cpu_ticks() {
  local total=0 pid
  for pid in "$@" $(for p in "$@"; do pgrep -P "$p" || true; done); do
    [[ -r /proc/$pid/stat ]] && total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# us_per_request TICKS REQUESTS: CPU microseconds per request.
us_per_request() { awk -v t="$1" -v r="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (r > 0) printf "%.1f", t * 1e6 / hz / r; else print "n/a" }'; }

# The services answer only the gateway: every binary gets this secret, and a
# direct call carries MCP_INTERNAL_AUTH (the internal credential the gateway
# mints, scope admin; read by the wrk scripts and the watch_load client).
export MCP_INTERNAL_SECRET=bench-internal-secret-bench-internal-secret

# internal_token: a one-hour internal credential (README: Security model).
internal_token() {
  python3 - "$MCP_INTERNAL_SECRET" <<'PY'
import base64, hashlib, hmac, json, sys, time
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = {"iss": "mcp-gateway", "aud": "mcp-internal", "sub": "bench", "scope": "admin",
          "iat": now, "exp": now + 3600}
body = b64(json.dumps(claims).encode())
sig = b64(hmac.new(sys.argv[1].encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
}
MCP_INTERNAL_AUTH="Bearer $(internal_token)"
export MCP_INTERNAL_AUTH
INTERNAL_AUTH=(-H "Authorization: $MCP_INTERNAL_AUTH")

# hs256_token SECRET SUB SCOPES: a one-hour HS256 JWT (python3 standard library only).
hs256_token() {
  python3 - "$@" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, sub, scope = sys.argv[1:4]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
now = int(time.time())
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps({"sub": sub, "scope": scope, "iat": now, "exp": now + 3600}).encode())
sig = b64(hmac.new(secret.encode(), head + b"." + body, hashlib.sha256).digest())
print((head + b"." + body + b"." + sig).decode())
PY
}

# machine_line: what the numbers were measured on.
machine_line() {
  printf '%s, %s cores, %s, %s' "$(date -u +%Y-%m-%d)" "$(nproc)" \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')" "$(uname -r)"
}

# wrk_run NAME URL [wrk args...]: prints "name rps p50_ms p99_ms p999_ms requests errors".
# WRK_SCRIPT picks a request script (which must dofile report.lua); default: plain GETs.
wrk_run() {
  local name=$1 url=$2; shift 2
  BENCH_DIR=$BENCH_DIR wrk --latency -s "${WRK_SCRIPT:-$BENCH_DIR/report.lua}" "$@" "$url" >"$WORK/wrk-$name.txt" 2>&1 || true
  local line
  line=$(grep '^REPORT ' "$WORK/wrk-$name.txt" | tail -1)
  if [[ -z $line ]]; then
    log "wrk produced no report for $name:"; cat "$WORK/wrk-$name.txt" >&2; return 1
  fi
  echo "$name ${line#REPORT }"
}
