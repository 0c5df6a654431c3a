#!/usr/bin/env bash
# bench/config.sh: config-svc against etcd (its JSON gateway, /v3/...), in one
# run: reads/s and writes/s of 1 KiB values over 1,000 keys, and watch
# notification latency with 1,000 watchers (SSE vs etcd watch streams).
#
# Durability is matched: Redis runs with appendonly + appendfsync everysec
# (the compose default); etcd fsyncs its WAL on every write, which it cannot
# turn off in 3.4, so its writes pay more. Said next to the numbers.
#
#   bash bench/config.sh      # DURATION=10s CONNECTIONS=32 WATCHERS=1000 PUTS=20
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WATCHERS=${WATCHERS:-1000}
PUTS=${PUTS:-20}
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

need wrk:wrk redis-server:redis-server curl:curl etcd:etcd-server python3:python3
build_release config-svc

REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir "$WORK" >/dev/null
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
CFG_PORT=$(free_port) ETCD_PORT=$(free_port) ETCD_PEER=$(free_port)
CONFIG_ADDR=127.0.0.1:$CFG_PORT REDIS_URL=redis://127.0.0.1:$REDIS_PORT MCP_REDIS_PREFIX=bench LOG_FORMAT=json RUST_LOG=warn \
  start config "$BIN/config-svc" >/dev/null
CFG_PID=${PIDS[-1]}
start etcd etcd --name bench --data-dir "$WORK/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
  --initial-cluster "bench=http://127.0.0.1:$ETCD_PEER" --log-level error >/dev/null
ETCD_PID=${PIDS[-1]}
wait_http "http://127.0.0.1:$CFG_PORT/readyz"
wait_http "http://127.0.0.1:$ETCD_PORT/health"

MCP=http://127.0.0.1:$CFG_PORT ETCD=http://127.0.0.1:$ETCD_PORT
# Writes first (they also create the keys the reads need).
M_PUT=$(WRK_SCRIPT=$BENCH_DIR/cfg_put.lua wrk_run mcp-writes "$MCP" -t1 -c"$CONNECTIONS" -d"$DURATION")
E_PUT=$(WRK_SCRIPT=$BENCH_DIR/etcd_put.lua wrk_run etcd-writes "$ETCD" -t1 -c"$CONNECTIONS" -d"$DURATION")
M_GET=$(WRK_SCRIPT=$BENCH_DIR/cfg_get.lua wrk_run mcp-reads "$MCP" -t1 -c"$CONNECTIONS" -d"$DURATION")
E_GET=$(WRK_SCRIPT=$BENCH_DIR/etcd_get.lua wrk_run etcd-reads "$ETCD" -t1 -c"$CONNECTIONS" -d"$DURATION")
M_WATCH=$(python3 "$BENCH_DIR/watch_latency.py" mcp "$CFG_PORT" "$WATCHERS" "$PUTS" | grep '^REPORT')
E_WATCH=$(python3 "$BENCH_DIR/watch_latency.py" etcd "$ETCD_PORT" "$WATCHERS" "$PUTS" | grep '^REPORT')

{
  echo "### bench/config — $(machine_line)"
  echo
  echo "\`bash bench/config.sh\` (1 KiB values over 1,000 keys, wrk -t1 -c$CONNECTIONS -d$DURATION; Redis with AOF everysec, etcd 3.4 fsyncing every write)"
  echo
  echo "| operation | req/s | p50 ms | p99 ms | p99.9 ms | requests | errors |"
  echo "|---|---|---|---|---|---|---|"
  for row in "$M_PUT" "$E_PUT" "$M_GET" "$E_GET"; do
    set -- $row
    echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"
  done
  echo
  echo "Watch latency, $WATCHERS watchers x $PUTS writes (arrival minus write start):"
  echo
  echo "| peer | delivered | expected | p50 ms | p99 ms | max ms |"
  echo "|---|---|---|---|---|---|"
  set -- $M_WATCH; echo "| mcp config-svc (SSE) | $2 | $3 | $4 | $5 | $6 |"
  set -- $E_WATCH; echo "| etcd (watch stream) | $2 | $3 | $4 | $5 | $6 |"
  set -- $M_PUT; MW=$2; set -- $E_PUT; EW=$2; set -- $M_GET; MR=$2; set -- $E_GET; ER=$2
  awk -v mw="$MW" -v ew="$EW" -v mr="$MR" -v er="$ER" 'BEGIN { printf "\nratio mcp/etcd: writes/s %.2f, reads/s %.2f\n", mw / ew, mr / er }'
} | tee "$WORK/result.md"
[[ ${BENCH_APPEND:-1} == 1 ]] && { echo; cat "$WORK/result.md"; echo; } >>"$BENCH_DIR/RESULTS.md"
