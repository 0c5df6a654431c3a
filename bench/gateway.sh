#!/usr/bin/env bash
# bench/gateway.sh: the gateway doing all its policy work (JWT verification,
# scope check, rate limiting with a high limit, circuit breaking, discovery
# routing) against nginx as a plain reverse proxy and HAProxy doing the same
# policy work (HS256 `jwt_verify`, an `exp` check, a per-subject
# `http_req_rate` stick table, `observe layer7`), all in front of the same
# upstream, in one run, at two load shapes (wrk 1 thread/32 connections and
# 2 threads/64 connections), each peer measured in alternating turns and
# reported as its median (SHAPE_TURNS, 3). Also the upstream called
# directly, for added latency, and the same gateway again once a
# per-service policy is stored for the benchmarked service (config-svc,
# namespace `gateway`), for what the policy engine costs (at the first
# shape).
#
#   bash bench/gateway.sh            # DURATION=10s SHAPES="1:32 2:64" (threads:connections) SHAPE_TURNS=3 to change the load
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
SHAPES=${SHAPES:-1:32 2:64}
THREADS=${SHAPES%%:*} CONNECTIONS=${SHAPES#*:}; CONNECTIONS=${CONNECTIONS%% *}

need wrk:wrk nginx:nginx-light haproxy:haproxy redis-server:redis-server curl:curl
build_release registry-svc config-svc gateway

UPSTREAM_PORT=$(free_port) PROXY_PORT=$(free_port) REG_PORT=$(free_port) GW_PORT=$(free_port) CFG_PORT=$(free_port) HAPROXY_PORT=$(free_port)
# Two nginx processes: one is the upstream (a fixed 200), the other the
# plain reverse proxy with a keep-alive pool to it (the peer, no policy work).
nginx_conf() { # NAME SERVER-BLOCK WORKERS
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1/nginx.conf" <<CONF
worker_processes $3;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/$1; proxy_temp_path $WORK/$1;
  fastcgi_temp_path $WORK/$1; uwsgi_temp_path $WORK/$1; scgi_temp_path $WORK/$1;
  upstream app { server 127.0.0.1:$UPSTREAM_PORT; keepalive 64; }
  $2
}
CONF
  nginx -c "$WORK/$1/nginx.conf" -g 'daemon off;' >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
}
nginx_conf upstream "server { listen 127.0.0.1:$UPSTREAM_PORT; location / { return 200 \"ok\\n\"; } }" 1
UPSTREAM_PID=${PIDS[-1]}
nginx_conf proxy "server { listen 127.0.0.1:$PROXY_PORT; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" 2
NGINX_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"
wait_http "http://127.0.0.1:$PROXY_PORT/"

SECRET=bench-secret-bench-secret-bench-secret
# HAProxy doing the gateway's work: the HS256 signature and `exp` of the
# bearer token (401 otherwise), a per-subject request rate in a stick table
# with a limit as high as the gateway's (429 above it), layer-7 error
# observation that marks the server down after 5 errors (the breaker), a
# keep-alive pool to the upstream. Two threads, as the gateway's two workers.
mkdir -p "$WORK/haproxy"
cat >"$WORK/haproxy/haproxy.cfg" <<CONF
global
  nbthread 2
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 5s
frontend gw
  bind 127.0.0.1:$HAPROXY_PORT
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str HS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$SECRET") -m int 1 }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
  http-request track-sc0 var(txn.sub) table per_subject
  http-request deny deny_status 429 if { sc_http_req_rate(0,per_subject) gt 10000000 }
  default_backend app
backend per_subject
  stick-table type string len 64 size 100k expire 60s store http_req_rate(1s)
backend app
  http-reuse always
  server app 127.0.0.1:$UPSTREAM_PORT check inter 5s observe layer7 error-limit 5 on-error mark-down
CONF
haproxy -c -q -f "$WORK/haproxy/haproxy.cfg" || { log "haproxy refuses its configuration"; exit 1; }
haproxy -f "$WORK/haproxy/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=${PIDS[-1]}

start_redis
export REDIS_URL MCP_REDIS_PREFIX=bench LOG_FORMAT=json RUST_LOG=warn
REGISTRY_ADDR=127.0.0.1:$REG_PORT start registry "$BIN/registry-svc" >/dev/null
wait_http "http://127.0.0.1:$REG_PORT/readyz"
CONFIG_ADDR=127.0.0.1:$CFG_PORT start config "$BIN/config-svc" >/dev/null
wait_http "http://127.0.0.1:$CFG_PORT/readyz"
start_gateway() { # NAME PORT [WRAPPER...]: the gateway under test, optionally under a wrapper (valgrind)
  local name=$1 port=$2; shift 2
  GATEWAY_ADDR=127.0.0.1:$port REGISTRY_URL=http://127.0.0.1:$REG_PORT \
    CONFIG_URL=http://127.0.0.1:$CFG_PORT HEALTH_URL=http://127.0.0.1:$REG_PORT \
    JWT_SECRET=$SECRET RATE_LIMIT_MODE=local RATE_LIMIT_RPS=10000000 RATE_LIMIT_BURST=10000000 \
    CB_FAILURE_THRESHOLD=5 CB_OPEN_SECONDS=10 UPSTREAM_TIMEOUT_MS=5000 \
    start "$name" "$@" "$BIN/gateway" >/dev/null
}
start_gateway gateway "$GW_PORT"
GW_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$GW_PORT/readyz"

TOKEN=$(hs256_token "$SECRET" bench "admin")
AUTH=(-H "Authorization: Bearer $TOKEN")
# The upstream, registered without a check: passing while its lease lives.
curl -fsS -X PUT "${INTERNAL_AUTH[@]}" "http://127.0.0.1:$REG_PORT/v1/services/bench/instances/bench-1" \
  -H 'content-type: application/json' \
  -d "{\"host\":\"127.0.0.1\",\"port\":$UPSTREAM_PORT,\"ttl_seconds\":3600}" >/dev/null
for _ in $(seq 100); do
  curl -fsS -o /dev/null "${AUTH[@]}" "http://127.0.0.1:$GW_PORT/svc/bench/" && break; sleep 0.05
done
curl -fsS "${AUTH[@]}" "http://127.0.0.1:$GW_PORT/svc/bench/" | grep -q ok || { log "gateway does not route to the upstream"; exit 1; }

# HAProxy checks the token as the gateway does: no token is a 401, a good one passes.
[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HAPROXY_PORT/") == 401 ]] || { log "haproxy lets a request without a token through"; exit 1; }
curl -fsS "${AUTH[@]}" "http://127.0.0.1:$HAPROXY_PORT/" | grep -q ok || { log "haproxy does not pass a valid token"; exit 1; }

# Warm up the proxies, then measure each in turn with the same load.
wrk -t1 -c8 -d2s "${AUTH[@]}" "http://127.0.0.1:$GW_PORT/svc/bench/" >/dev/null
wrk -t1 -c8 -d2s "http://127.0.0.1:$PROXY_PORT/" >/dev/null
wrk -t1 -c8 -d2s "${AUTH[@]}" "http://127.0.0.1:$HAPROXY_PORT/" >/dev/null

measure() { # NAME URL PID...
  local name=$1 url=$2; shift 2
  local before after line
  before=$(cpu_ticks "$@")
  line=$(wrk_run "$name" "$url" -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "${AUTH[@]}")
  after=$(cpu_ticks "$@")
  set -- $line
  echo "$line $(us_per_request $((after - before)) "$6")"
}
# A peer's row over several turns: the median of each figure (req/s, p50,
# p99, p99.9, CPU per request), requests and errors summed.
median_row() { # ROW...
  printf '%s\n' "$@" | awk '
    { name = $1; n = NR; for (i = 2; i <= 8; i++) v[i, n] = $i + 0 }
    END {
      printf "%s", name
      for (i = 2; i <= 8; i++) {
        if (i == 6 || i == 7) { s = 0; for (r = 1; r <= n; r++) s += v[i, r]; printf " %d", s; continue }
        for (r = 1; r <= n; r++) a[r] = v[i, r]
        for (x = 1; x <= n; x++) for (y = x + 1; y <= n; y++) if (a[y] < a[x]) { t = a[x]; a[x] = a[y]; a[y] = t }
        m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
        printf (i == 2 ? " %.0f" : i == 8 ? " %.1f" : " %.3f"), m
      }
      print ""
    }'
}
# Every peer at every load shape, in SHAPE_TURNS turns (3 unless set) whose
# order alternates (direct, nginx, HAProxy, gateway, then the reverse), so a
# shared machine that speeds up or slows down during the run favours no one;
# each row is the peer's median over its turns. The shapes' tables are
# printed at the end.
SHAPE_TURNS=${SHAPE_TURNS:-3}
TARGETS=(direct nginx haproxy gateway)
REVERSED=()
for ((i = ${#TARGETS[@]} - 1; i >= 0; i--)); do REVERSED+=("${TARGETS[i]}"); done
declare -A URL_OF=([direct]="http://127.0.0.1:$UPSTREAM_PORT/" [nginx]="http://127.0.0.1:$PROXY_PORT/"
  [haproxy]="http://127.0.0.1:$HAPROXY_PORT/" [gateway]="http://127.0.0.1:$GW_PORT/svc/bench/")
declare -A PID_OF=([direct]=$UPSTREAM_PID [nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [gateway]=$GW_PID)
SHAPE_TABLES=""
for shape in $SHAPES; do
  THREADS=${shape%%:*} CONNECTIONS=${shape#*:}
  declare -A ROWS=()
  for turn in $(seq "$SHAPE_TURNS"); do
    order=("${TARGETS[@]}")
    ((turn % 2)) || order=("${REVERSED[@]}")
    for target in "${order[@]}"; do
      row=$(measure "$target" "${URL_OF[$target]}" "${PID_OF[$target]}")
      ROWS[$target]+="$row"$'\n'
      [[ $target == gateway ]] && LAST_GATEWAY=$row
    done
  done
  for target in "${TARGETS[@]}"; do
    mapfile -t rows < <(printf '%s' "${ROWS[$target]}")
    ROWS[$target]=$(median_row "${rows[@]}")
  done
  S_DIRECT=${ROWS[direct]} S_NGINX=${ROWS[nginx]} S_HAPROXY=${ROWS[haproxy]} S_GATEWAY=${ROWS[gateway]}
  SHAPE_TABLES+=$(
    echo
    echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, median of $SHAPE_TURNS alternating turns (requests and errors: all turns):"
    echo
    echo "| target | req/s | p50 ms | p99 ms | p99.9 ms | requests | errors | CPU µs/req (proxy) |"
    echo "|---|---|---|---|---|---|---|---|"
    for row in "$S_DIRECT" "$S_NGINX" "$S_HAPROXY" "$S_GATEWAY"; do
      set -- $row
      echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 |"
    done
    set -- $S_NGINX; n=$2
    set -- $S_HAPROXY; h=$2 h99=$4
    set -- $S_GATEWAY; g=$2 g99=$4
    awk -v g="$g" -v n="$n" -v h="$h" -v g9="$g99" -v h9="$h99" 'BEGIN {
      printf "\ngateway/nginx req/s %.2f; gateway/haproxy req/s %.2f, p99 %.2f\n", g / n, g / h, g9 / h9 }'
  )$'\n'
  # The first shape's medians are the ones the policy comparison below
  # prints beside; its last gateway turn starts the gateway's best there.
  [[ -n ${DIRECT:-} ]] || { DIRECT=$S_DIRECT NGINX=$S_NGINX GATEWAY=$LAST_GATEWAY; FIRST_THREADS=$THREADS FIRST_CONNECTIONS=$CONNECTIONS; }
done
THREADS=$FIRST_THREADS CONNECTIONS=$FIRST_CONNECTIONS

# The same gateway with a policy for `bench`: every field that does work on
# each request (per-service limit, timeout, retries, breaker, header rules,
# methods, body size), none that would change the answer. Measured in turns
# with the policy stored and removed (best of each), so a machine that gets
# busier during the run does not count as the policy's cost (TURNS=3).
POLICY_URL="http://127.0.0.1:$CFG_PORT/v1/namespaces/gateway/keys/services/bench"
policy_seen() { # yes|no [PORT]: until that gateway's answer shows the policy's response header, or stops showing it
  local want=$1 port=${2:-$GW_PORT}
  for _ in $(seq 200); do
    if curl -fsS -D - -o /dev/null "${AUTH[@]}" "http://127.0.0.1:$port/svc/bench/" | grep -qi '^x-served-by: mcp'; then
      [[ $want == yes ]] && return 0
    else
      [[ $want == no ]] && return 0
    fi
    sleep 0.05
  done
  log "the gateway on $port did not $([[ $want == yes ]] && echo apply || echo drop) the policy"; exit 1
}
store_policy() {
  curl -fsS -o /dev/null -X PUT "${INTERNAL_AUTH[@]}" -H 'content-type: application/json' "$POLICY_URL" \
    -d '{"value":{"rate_limit":{"rps":1000000,"burst":1000000,"key":"subject"},"timeout_ms":5000,
         "retries":{"attempts":2,"on":["connect_error"]},"circuit_breaker":{"failure_threshold":5,"open_seconds":10},
         "request_headers":{"set":{"x-env":"bench"}},"response_headers":{"set":{"x-served-by":"mcp"}},
         "methods":["GET","HEAD"],"max_body_bytes":1048576}}'
  policy_seen yes
  wrk -t1 -c8 -d2s "${AUTH[@]}" "http://127.0.0.1:$GW_PORT/svc/bench/" >/dev/null
}
remove_policy() {
  curl -fsS -o /dev/null -X DELETE "${INTERNAL_AUTH[@]}" "$POLICY_URL"
  policy_seen no
  wrk -t1 -c8 -d2s "${AUTH[@]}" "http://127.0.0.1:$GW_PORT/svc/bench/" >/dev/null
}
best() { # the row with more req/s
  local a=($1) b=($2)
  awk -v x="${a[1]}" -v y="${b[1]}" 'BEGIN { exit !(x >= y) }' && echo "$1" || echo "$2"
}
TURNS=${TURNS:-3}
store_policy
POLICY=$(measure gateway+policy "http://127.0.0.1:$GW_PORT/svc/bench/" "$GW_PID")
for _ in $(seq 2 "$TURNS"); do
  remove_policy
  GATEWAY=$(best "$GATEWAY" "$(measure gateway "http://127.0.0.1:$GW_PORT/svc/bench/" "$GW_PID")")
  store_policy
  POLICY=$(best "$POLICY" "$(measure gateway+policy "http://127.0.0.1:$GW_PORT/svc/bench/" "$GW_PID")")
done

# The same comparison in instructions, which a busy machine does not change:
# a second gateway under callgrind, counters zeroed and dumped around a
# fixed load with and without the policy (user-space instructions per
# request; the kernel's share, the same loopback I/O either way, is not in it).
INSTRUCTIONS=""
if command -v valgrind >/dev/null 2>&1 && [[ ${CALLGRIND:-1} == 1 ]]; then
  CG_PORT=$(free_port)
  start_gateway gateway-callgrind "$CG_PORT" valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.%p"
  CG_PID=${PIDS[-1]}
  wait_http "http://127.0.0.1:$CG_PORT/readyz" 120
  count_instructions() { # NAME: user-space instructions per request of the callgrind gateway over 5 s of load
    local name=$1 before after requests ir
    policy_seen "$([[ $name == gateway+policy ]] && echo yes || echo no)" "$CG_PORT"
    wrk -t1 -c4 -d2s "${AUTH[@]}" "http://127.0.0.1:$CG_PORT/svc/bench/" >/dev/null
    callgrind_control -z "$CG_PID" >/dev/null
    requests=$(wrk -t1 -c4 -d5s "${AUTH[@]}" "http://127.0.0.1:$CG_PORT/svc/bench/" | awk '/requests in/ {print $1}')
    callgrind_control -d "$CG_PID" >/dev/null
    ir=$(cat "$WORK"/callgrind.$CG_PID.* 2>/dev/null | awk '/^(summary|totals):/ {v = $2} END {print v + 0}')
    rm -f "$WORK"/callgrind.$CG_PID.*
    awk -v ir="$ir" -v r="$requests" 'BEGIN { printf "%.1f", ir / r / 1000 }'
  }
  P_IR=$(count_instructions gateway+policy)
  remove_policy
  G_IR=$(count_instructions gateway)
  INSTRUCTIONS="instructions per request (callgrind, user space): gateway ${G_IR}k, gateway+policy ${P_IR}k ($(awk -v g="$G_IR" -v p="$P_IR" 'BEGIN { printf "%+.1f%%", (p / g - 1) * 100 }'))"
fi

{
  echo "### bench/gateway — $(machine_line)"
  echo
  echo "\`bash bench/gateway.sh\`: every peer at each load shape (HTTP/1.1 keep-alive, same nginx upstream; haproxy = HS256 jwt_verify + exp + per-subject stick table + observe layer7)"
  echo "$SHAPE_TABLES"
  echo
  echo "Policy engine (wrk -t$THREADS -c$CONNECTIONS -d$DURATION; direct and nginx: the medians above; gateway and gateway+policy: best of $TURNS, measured in turns):"
  echo
  echo "| target | req/s | p50 ms | p99 ms | p99.9 ms | requests | errors | CPU µs/req (proxy) |"
  echo "|---|---|---|---|---|---|---|---|"
  for row in "$DIRECT" "$NGINX" "$GATEWAY" "$POLICY"; do
    set -- $row
    echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 |"
  done
  set -- $NGINX; N_RPS=$2 N_P50=$3 N_P99=$4
  set -- $GATEWAY; G_RPS=$2 G_P50=$3 G_P99=$4
  set -- $DIRECT; D_P50=$3
  set -- $GATEWAY; G_CPU=$8
  set -- $POLICY; P_RPS=$2 P_CPU=$8
  awk -v g="$G_RPS" -v n="$N_RPS" -v gp="$G_P50" -v np="$N_P50" -v g9="$G_P99" -v n9="$N_P99" -v d="$D_P50" -v p="$P_RPS" \
    -v gc="$G_CPU" -v pc="$P_CPU" 'BEGIN {
    printf "\nratio gateway/nginx: req/s %.2f, p50 %.2f, p99 %.2f; added p50 latency over direct: gateway %.3f ms, nginx %.3f ms\n",
      g / n, gp / np, g9 / n9, gp - d, np - d
    printf "policy engine: gateway+policy/gateway req/s %.3f (%.1f%% throughput change with a policy stored), CPU per request %+.1f%%\n",
      p / g, (p / g - 1) * 100, (pc / gc - 1) * 100 }'
  [[ -n $INSTRUCTIONS ]] && echo "$INSTRUCTIONS"
  echo "(CPU µs/req: direct = the upstream nginx; nginx = the proxy nginx alone; haproxy = haproxy alone; gateway = the gateway process alone.)"
} | tee "$WORK/result.md"
echo
log "append to bench/RESULTS.md with: cat >> bench/RESULTS.md (the table above)"
if [[ ${BENCH_APPEND:-1} == 1 ]]; then
  { echo; cat "$WORK/result.md"; echo; } >>"$BENCH_DIR/RESULTS.md"
fi
