-- wrk reporter: one machine-readable line after the run.
-- REPORT <req/s> <p50 ms> <p99 ms> <p99.9 ms> <requests> <errors (non-2xx/3xx + socket)>
done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  io.write(string.format("REPORT %.0f %.3f %.3f %.3f %d %d\n",
    summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, summary.requests, errors))
end
