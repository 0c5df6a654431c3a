#!/usr/bin/env bash
# bench/footprint.sh: start-up time to ready (/readyz 200, or the peer's own
# health answer) and idle resident memory of each MCP binary, beside redis,
# nginx and etcd started the same way.
#
#   bash bench/footprint.sh
source "$(dirname "$0")/lib.sh"
need redis-server:redis-server nginx:nginx-light etcd:etcd-server curl:curl
build_release registry-svc config-svc health-svc gateway
start_redis
export REDIS_URL MCP_REDIS_PREFIX=bench LOG_FORMAT=json RUST_LOG=warn

now_ms() { date +%s%3N; }
rss_kib() { local t=0 p; for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do t=$((t + $(awk '/^VmRSS/ {print $2}' /proc/$p/status))); done; echo $t; }

row() { # NAME READY-URL CMD...: start, time to ready, RSS after 2 s idle.
  local name=$1 url=$2; shift 2
  local t0 t1 pid
  t0=$(now_ms)
  pid=$(start "$name" "$@")
  wait_http "$url" 30
  t1=$(now_ms)
  sleep 2
  printf '| %s | %d | %.1f |\n' "$name" $((t1 - t0)) "$(awk -v k="$(rss_kib "$pid")" 'BEGIN {print k / 1024}')"
  kill "$pid" 2>/dev/null || true
}

P=$(free_port); R=$(free_port)
{
  echo "### bench/footprint — $(machine_line)"
  echo
  echo "\`bash bench/footprint.sh\` (release builds; time from exec to the first 200 on the readiness URL, polled every 50 ms; RSS after 2 s idle)"
  echo
  echo "| process | start to ready ms | idle RSS MiB |"
  echo "|---|---|---|"
  REGISTRY_ADDR=127.0.0.1:$R row registry-svc "http://127.0.0.1:$R/readyz" "$BIN/registry-svc"
  P=$(free_port); CONFIG_ADDR=127.0.0.1:$P row config-svc "http://127.0.0.1:$P/readyz" "$BIN/config-svc"
  P=$(free_port); HEALTH_ADDR=127.0.0.1:$P row health-svc "http://127.0.0.1:$P/readyz" "$BIN/health-svc"
  P=$(free_port); GATEWAY_ADDR=127.0.0.1:$P REGISTRY_URL=http://127.0.0.1:9 CONFIG_URL=http://127.0.0.1:9 HEALTH_URL=http://127.0.0.1:9 \
    JWT_SECRET=footprint-secret-footprint-secret row gateway "http://127.0.0.1:$P/readyz" "$BIN/gateway"
  P=$(free_port); mkdir -p "$WORK/ng"
  printf 'worker_processes 1; pid %s/ng/pid; error_log %s/ng/err warn; events {} http { access_log off; client_body_temp_path %s/ng; proxy_temp_path %s/ng; fastcgi_temp_path %s/ng; uwsgi_temp_path %s/ng; scgi_temp_path %s/ng; server { listen 127.0.0.1:%s; location / { return 200; } } }\n' \
    "$WORK" "$WORK" "$WORK" "$WORK" "$WORK" "$WORK" "$WORK" "$P" >"$WORK/ng.conf"
  row "nginx (peer)" "http://127.0.0.1:$P/" nginx -c "$WORK/ng.conf" -g 'daemon off;'
  P=$(free_port); Q=$(free_port)
  row "etcd (peer)" "http://127.0.0.1:$P/health" etcd --name fp --data-dir "$WORK/etcd" --listen-client-urls "http://127.0.0.1:$P" \
    --advertise-client-urls "http://127.0.0.1:$P" --listen-peer-urls "http://127.0.0.1:$Q" --initial-advertise-peer-urls "http://127.0.0.1:$Q" \
    --initial-cluster "fp=http://127.0.0.1:$Q" --log-level error
  printf '| redis-server (shared state) | n/a | %.1f |\n' "$(awk -v k="$(rss_kib "${PIDS[0]}")" 'BEGIN {print k / 1024}')"
} | tee "$WORK/result.md"
[[ ${BENCH_APPEND:-1} == 1 ]] && { echo; cat "$WORK/result.md"; echo; } >>"$BENCH_DIR/RESULTS.md"
