#!/usr/bin/env bash
# bench/registry.sh: registry-svc with 10,000 instances (100 services x 100)
# heart-beating at a 10 s interval (a steady ~1,000 heartbeats/s in the
# background): registrations/s, heartbeats/s and discovery lookups/s at full
# load, with p99, and Redis memory per instance. Lookups run fenced (the
# default: one round trip learns Redis's revision, then memory answers) and
# with ?stale (memory alone), beside nginx serving the same ~24 KB body from
# a file on the same machine, under the same background; the three are
# measured in turns (best of TURNS each), so a machine that gets busier
# during the run does not favour one of them.
#
#   bash bench/registry.sh      # DURATION=10s CONNECTIONS=32 INSTANCES=10000 TURNS=3
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
export INSTANCES=${INSTANCES:-10000}
TURNS=${TURNS:-3}

need wrk:wrk redis-server:redis-server curl:curl nginx:nginx-light
build_release registry-svc
start_redis
REG_PORT=$(free_port)
REGISTRY_ADDR=127.0.0.1:$REG_PORT REDIS_URL=$REDIS_URL MCP_REDIS_PREFIX=bench LOG_FORMAT=json RUST_LOG=warn \
  start registry "$BIN/registry-svc" >/dev/null
SERVICE_PIDS=("${PIDS[0]}" "${PIDS[-1]}") # Redis and registry-svc: the CPU a lookup costs
wait_http "http://127.0.0.1:$REG_PORT/readyz"
URL=http://127.0.0.1:$REG_PORT
mem() { redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
# measure NAME URL SCRIPT PID... (LOOKUP_QUERY passes through): the wrk_run
# row plus the CPU µs per request those processes used.
measure() {
  local name=$1 url=$2 script=$3; shift 3
  local before after line
  before=$(cpu_ticks "$@")
  line=$(WRK_SCRIPT=$BENCH_DIR/$script wrk_run "$name" "$url" -t1 -c"$CONNECTIONS" -d"$DURATION")
  after=$(cpu_ticks "$@")
  set -- $line
  echo "$line $(us_per_request $((after - before)) "$6")"
}
best() { # the row with more req/s (the first when one is empty)
  local a=($1) b=($2)
  [[ -z ${b[*]:-} ]] && { echo "$1"; return; }
  [[ -z ${a[*]:-} ]] && { echo "$2"; return; }
  awk -v x="${a[1]}" -v y="${b[1]}" 'BEGIN { exit !(x >= y) }' && echo "$1" || echo "$2"
}

MEM0=$(mem)
REGISTER=$(measure registrations "$URL" register.lua "${SERVICE_PIDS[@]}")
COUNT=$(redis-cli -p "$REDIS_PORT" zcard bench:reg:leases)
[[ $COUNT -ge $INSTANCES ]] || { log "only $COUNT of $INSTANCES instances registered"; exit 1; }
MEM1=$(mem)
STREAM=$(redis-cli -p "$REDIS_PORT" xlen bench:reg:events)
redis-cli -p "$REDIS_PORT" memory usage bench:reg:events >/dev/null || true
EVENTS_MEM=$(redis-cli -p "$REDIS_PORT" memory usage bench:reg:events samples 0)

# The fleet's steady heartbeats (10,000 / 10 s) run under every measurement below.
PACE_MS=10 WRK_SCRIPT=$BENCH_DIR/heartbeat.lua BENCH_DIR=$BENCH_DIR \
  wrk -t1 -c10 -d600s -s "$BENCH_DIR/heartbeat.lua" "$URL" >"$WORK/background.txt" 2>&1 &
BG=$!; PIDS+=($BG)
sleep 1
HEARTBEAT=$(measure heartbeats "$URL" heartbeat.lua "${SERVICE_PIDS[@]}")

# The peer: nginx serving the body of one lookup from a file (page cache,
# sendfile, keep-alive), one worker per core, same wrk script and background.
mkdir -p "$WORK/nginx/www"
curl -fsS "${INTERNAL_AUTH[@]}" "$URL/v1/services/svc-0/instances?healthy=true" -o "$WORK/nginx/www/lookup.json"
BODY_BYTES=$(stat -c %s "$WORK/nginx/www/lookup.json")
# nginx's workers drop root: let them reach the body (mktemp made $WORK 0700).
chmod a+x "$WORK" "$WORK/nginx" "$WORK/nginx/www" && chmod a+r "$WORK/nginx/www/lookup.json"
NGINX_PORT=$(free_port)
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on; tcp_nopush on;
  keepalive_requests 10000000;
  open_file_cache max=16; open_file_cache_valid 60s;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx;
  fastcgi_temp_path $WORK/nginx; uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/nginx/www;
    location / { default_type application/json; try_files /lookup.json =404; }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
NGINX_PID=$!
wait_http "http://127.0.0.1:$NGINX_PORT/"

LOOKUP='' STALE='' NGINX=''
for _ in $(seq "$TURNS"); do
  LOOKUP=$(best "$LOOKUP" "$(LOOKUP_QUERY='healthy=true' measure lookups "$URL" lookup.lua "${SERVICE_PIDS[@]}")")
  STALE=$(best "$STALE" "$(LOOKUP_QUERY='healthy=true&stale' measure lookups-stale "$URL" lookup.lua "${SERVICE_PIDS[@]}")")
  NGINX=$(best "$NGINX" "$(measure nginx-lookups "http://127.0.0.1:$NGINX_PORT" lookup.lua "$NGINX_PID")")
done
kill "$BG" 2>/dev/null || true

{
  echo "### bench/registry — $(machine_line)"
  echo
  echo "\`bash bench/registry.sh\` ($INSTANCES instances in 100 services, wrk -t1 -c$CONNECTIONS -d$DURATION each; lookups = \`GET /v1/services/{s}/instances?healthy=true\` returning 100 instances ($BODY_BYTES bytes), fenced, then with \`&stale\`; nginx-lookups = nginx serving that body from a file; the three lookups best of $TURNS turns; a paced background of ~1,000 heartbeats/s under the heartbeat and lookup runs)"
  echo
  echo "| operation | req/s | p50 ms | p99 ms | p99.9 ms | requests | errors | CPU µs/req |"
  echo "|---|---|---|---|---|---|---|---|"
  for row in "$REGISTER" "$HEARTBEAT" "$LOOKUP" "$STALE" "$NGINX"; do
    set -- $row
    echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 |"
  done
  echo
  echo "(CPU µs/req: registry-svc plus Redis for the registry's rows, nginx for nginx's; the background heartbeats count in them.)"
  awk -v f="${LOOKUP#* }" -v s="${STALE#* }" -v n="${NGINX#* }" 'BEGIN {
    split(f, F, " "); split(s, S, " "); split(n, N, " ");
    if (N[1] > 0) printf "\nlookups/nginx req/s: fenced %.2f, stale %.2f\n", F[1] / N[1], S[1] / N[1] }'
  awk -v m0="$MEM0" -v m1="$MEM1" -v n="$COUNT" -v ev="$EVENTS_MEM" -v xl="$STREAM" 'BEGIN {
    printf "\nRedis memory: %.0f bytes per instance in all (%d instances, %.1f MiB), of which the event stream (%d events kept) is %.1f MiB; %.0f bytes per instance without it.\n",
      (m1 - m0) / n, n, (m1 - m0) / 1048576, xl, ev / 1048576, (m1 - m0 - ev) / n }'
} | tee "$WORK/result.md"
[[ ${BENCH_APPEND:-1} == 1 ]] && { echo; cat "$WORK/result.md"; echo; } >>"$BENCH_DIR/RESULTS.md"
