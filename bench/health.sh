#!/usr/bin/env bash
# bench/health.sh: how many checks per second one health-svc replica sustains
# against 10,000 instances with HTTP checks every second (demand: 10,000/s)
# on an nginx upstream. Reads `health_checks_total` from /metrics over a window.
#
#   bash bench/health.sh      # INSTANCES=10000 WINDOW=10 HEALTH_CONCURRENCY (service default)
source "$(dirname "$0")/lib.sh"
export INSTANCES=${INSTANCES:-10000}
WINDOW=${WINDOW:-10}

need wrk:wrk nginx:nginx-light redis-server:redis-server curl:curl
build_release registry-svc health-svc
export UPSTREAM_PORT=$(free_port)
mkdir -p "$WORK/up"
cat >"$WORK/up/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/up/nginx.pid;
error_log $WORK/up/error.log warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path $WORK/up; proxy_temp_path $WORK/up;
  fastcgi_temp_path $WORK/up; uwsgi_temp_path $WORK/up; scgi_temp_path $WORK/up;
  server { listen 127.0.0.1:$UPSTREAM_PORT; location / { return 200 "ok\n"; } } }
CONF
nginx -c "$WORK/up/nginx.conf" -g 'daemon off;' >"$WORK/up.log" 2>&1 &
PIDS+=($!)
start_redis
REG_PORT=$(free_port) HEALTH_PORT=$(free_port)
export REDIS_URL MCP_REDIS_PREFIX=bench LOG_FORMAT=json RUST_LOG=warn
REGISTRY_ADDR=127.0.0.1:$REG_PORT start registry "$BIN/registry-svc" >/dev/null
wait_http "http://127.0.0.1:$REG_PORT/readyz"
wait_http "http://127.0.0.1:$UPSTREAM_PORT/"

# Register the fleet with 1 s HTTP checks (each id once: wrk stops when all are in).
CHECK=http INTERVAL=1 WRK_SCRIPT=$BENCH_DIR/register.lua wrk_run register "http://127.0.0.1:$REG_PORT" -t1 -c16 -d5s >/dev/null
COUNT=$(redis-cli -p "$REDIS_PORT" zcard bench:reg:leases)
[[ $COUNT -ge $INSTANCES ]] || { log "only $COUNT of $INSTANCES registered"; exit 1; }

HEALTH_ADDR=127.0.0.1:$HEALTH_PORT start health "$BIN/health-svc" >/dev/null
HEALTH_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$HEALTH_PORT/readyz"
checks() { curl -fsS "http://127.0.0.1:$HEALTH_PORT/metrics" | awk '/^health_checks_total\{/ {s += $NF} END {printf "%d", s}'; }
sleep 5   # ramp-up: the first interval spreads the checks
C0=$(checks); T0=$(cpu_ticks "$HEALTH_PID")
sleep "$WINDOW"
C1=$(checks); T1=$(cpu_ticks "$HEALTH_PID")
PASSING=$(curl -fsS "${INTERNAL_AUTH[@]}" "http://127.0.0.1:$HEALTH_PORT/v1/summary" | python3 -c 'import json,sys; print(sum(s["passing"] for s in json.load(sys.stdin)["services"]))')

{
  echo "### bench/health — $(machine_line)"
  echo
  echo "\`bash bench/health.sh\` ($COUNT instances, HTTP checks every 1 s against one nginx, one health-svc replica, ${WINDOW}s window after 5 s ramp-up)"
  echo
  awk -v c="$((C1 - C0))" -v w="$WINDOW" -v n="$COUNT" -v t="$((T1 - T0))" -v hz="$(getconf CLK_TCK)" -v p="$PASSING" 'BEGIN {
    printf "| checks/s sustained | demand/s | CPU per check | instances passing |\n|---|---|---|---|\n| %.0f | %d | %.1f µs | %d |\n",
      c / w, n, (c > 0 ? t * 1e6 / hz / c : 0), p }'
} | tee "$WORK/result.md"
[[ ${BENCH_APPEND:-1} == 1 ]] && { echo; cat "$WORK/result.md"; echo; } >>"$BENCH_DIR/RESULTS.md"
