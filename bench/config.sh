#!/usr/bin/env bash
# bench/config.sh: config-svc against etcd (its JSON gateway, /v3/...), in one
# run: reads/s and writes/s of 1 KiB values over 1,000 keys, and watch
# fan-out latency with 1,000 watchers (SSE vs etcd watch streams).
#
# Durability is matched: Redis runs with appendonly + appendfsync everysec
# (the compose default); etcd fsyncs its WAL on every write, which it cannot
# turn off in 3.4, so its writes pay more. Said next to the numbers.
#
# The watch client is config-svc's `watch_load` example (Rust, built here):
# WATCHERS streams split over client threads, PUTS writes INTERVAL_MS apart,
# each event's arrival taken from the kernel's receive time at the watcher's
# socket (and when the client read it); TURNS runs of each peer, alternating.
# Each turn runs three times: with the client reading at once (its reads
# compete with the server for the same cores); with its reads deferred
# DEFER_MS past each write (writes DEFER_MS + 40 ms apart), as if the
# watchers ran on other machines; and so again with IDLE_WATCHERS more
# watchers of another namespace, which no write concerns.
#
# config-svc runs with HTTP_CPU_AFFINITY=auto (its threads pinned to a CPU
# each, as nginx's `worker_cpu_affinity auto`): unpinned, the kernel often
# stacks both threads on one CPU for the whole fan-out (bench/RESULTS.md).
# etcd (Go) has no such setting; it runs as it comes.
#
#   bash bench/config.sh      # DURATION=10s CONNECTIONS=32 WATCHERS=1000 PUTS=40 INTERVAL_MS=50 DEFER_MS=60 IDLE_WATCHERS=5000 TURNS=3
#   WATCH_ONLY=1 bash bench/config.sh   # the watch fan-out part alone
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
WATCHERS=${WATCHERS:-1000}
PUTS=${PUTS:-40}
INTERVAL_MS=${INTERVAL_MS:-50}
DEFER_MS=${DEFER_MS:-60}
IDLE_WATCHERS=${IDLE_WATCHERS:-5000}
TURNS=${TURNS:-3}
WATCH_ONLY=${WATCH_ONLY:-0}
ulimit -n 65536 2>/dev/null || ulimit -n 8192 2>/dev/null || true

need wrk:wrk redis-server:redis-server curl:curl etcd:etcd-server python3:python3
build_release config-svc
if [[ ${BENCH_NO_BUILD:-0} != 1 ]]; then
  log "building the watch client: config-svc's watch_load example"
  (cd "$ROOT" && cargo build --release --locked -p config-svc --example watch_load >&2)
fi

REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync everysec --dir "$WORK" >/dev/null
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
CFG_PORT=$(free_port) ETCD_PORT=$(free_port) ETCD_PEER=$(free_port)
CONFIG_ADDR=127.0.0.1:$CFG_PORT REDIS_URL=redis://127.0.0.1:$REDIS_PORT MCP_REDIS_PREFIX=bench LOG_FORMAT=json RUST_LOG=warn \
  HTTP_CPU_AFFINITY=${HTTP_CPU_AFFINITY:-auto} \
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
if [[ $WATCH_ONLY != 1 ]]; then
  # Writes first (they also create the keys the reads need).
  M_PUT=$(WRK_SCRIPT=$BENCH_DIR/cfg_put.lua wrk_run mcp-writes "$MCP" -t1 -c"$CONNECTIONS" -d"$DURATION")
  E_PUT=$(WRK_SCRIPT=$BENCH_DIR/etcd_put.lua wrk_run etcd-writes "$ETCD" -t1 -c"$CONNECTIONS" -d"$DURATION")
  M_GET=$(WRK_SCRIPT=$BENCH_DIR/cfg_get.lua wrk_run mcp-reads "$MCP" -t1 -c"$CONNECTIONS" -d"$DURATION")
  E_GET=$(WRK_SCRIPT=$BENCH_DIR/etcd_get.lua wrk_run etcd-reads "$ETCD" -t1 -c"$CONNECTIONS" -d"$DURATION")
fi

# watch_row PEER READS TARGET PORT PID [watch_load args...]: one run as a table row.
watch_row() {
  local peer=$1 reads=$2 target=$3 port=$4 pid=$5 out="$WORK/watch-$3.txt" report read client server
  shift 5
  "$BIN/examples/watch_load" "$target" "$port" --server-pid "$pid" --watchers "$WATCHERS" \
    --puts "$PUTS" "$@" >"$out" 2>&1 || { log "watch_load $target failed:"; cat "$out" >&2; return 1; }
  report=$(grep '^REPORT ' "$out") read=$(grep '^READ ' "$out")
  client=$(sed -n 's/.*client CPU.*(\([0-9.]*\) µs per delivery).*/\1/p' "$out")
  server=$(sed -n 's/.*server CPU.*(\([0-9.]*\) µs per delivery).*/\1/p' "$out")
  set -- $report; local row="| $peer | $reads | $2 | $3 | $4 | $5 | $6"
  set -- $read; echo "$row | $5 | $server | $client |"
}
WATCH_ROWS=()
for _ in $(seq "$TURNS"); do
  for peer in "mcp config-svc (SSE)|mcp|$CFG_PORT|$CFG_PID" "etcd (watch stream)|etcd|$ETCD_PORT|$ETCD_PID"; do
    IFS='|' read -r name target port pid <<<"$peer"
    WATCH_ROWS+=("$(watch_row "$name" "at once" "$target" "$port" "$pid" --interval-ms "$INTERVAL_MS")")
    WATCH_ROWS+=("$(watch_row "$name" "$DEFER_MS ms later" "$target" "$port" "$pid" \
      --interval-ms $((DEFER_MS + 40)) --defer-reads-ms "$DEFER_MS")")
    if ((IDLE_WATCHERS > 0)); then
      WATCH_ROWS+=("$(watch_row "$name" "$DEFER_MS ms later, +$IDLE_WATCHERS idle" "$target" "$port" "$pid" \
        --interval-ms $((DEFER_MS + 40)) --defer-reads-ms "$DEFER_MS" --idle-watchers "$IDLE_WATCHERS")")
    fi
  done
done

{
  echo "### bench/config — $(machine_line)"
  echo
  if [[ $WATCH_ONLY != 1 ]]; then
    echo "\`bash bench/config.sh\` (1 KiB values over 1,000 keys, wrk -t1 -c$CONNECTIONS -d$DURATION; Redis with AOF everysec, etcd 3.4 fsyncing every write)"
    echo
    echo "| operation | req/s | p50 ms | p99 ms | p99.9 ms | requests | errors |"
    echo "|---|---|---|---|---|---|---|"
    for row in "$M_PUT" "$E_PUT" "$M_GET" "$E_GET"; do
      set -- $row
      echo "| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"
    done
    echo
  fi
  echo "Watch fan-out, $WATCHERS watchers x $PUTS writes, $TURNS turns (config-svc with HTTP_CPU_AFFINITY=${HTTP_CPU_AFFINITY:-auto}; config-svc's \`watch_load\`; latency = arrival at the watcher's socket minus write start; client reads at once (writes $INTERVAL_MS ms apart) or $DEFER_MS ms after each write (writes $((DEFER_MS + 40)) ms apart); \"+N idle\": N more watchers of a namespace no write touches; \"read p99\" = when the client's read returned; CPU per delivery over the writes, as the kernel charges it to the process (softirq work, such as the loopback receive path, may be left out)):"
  echo
  echo "| peer | client reads | delivered | expected | p50 ms | p99 ms | max ms | read p99 ms | server CPU µs | client CPU µs |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${WATCH_ROWS[@]}"
  if [[ $WATCH_ONLY != 1 ]]; then
    set -- $M_PUT; MW=$2; set -- $E_PUT; EW=$2; set -- $M_GET; MR=$2; set -- $E_GET; ER=$2
    awk -v mw="$MW" -v ew="$EW" -v mr="$MR" -v er="$ER" 'BEGIN { printf "\nratio mcp/etcd: writes/s %.2f, reads/s %.2f\n", mw / ew, mr / er }'
  fi
} | tee "$WORK/result.md"
[[ ${BENCH_APPEND:-1} == 1 ]] && { echo; cat "$WORK/result.md"; echo; } >>"$BENCH_DIR/RESULTS.md"
