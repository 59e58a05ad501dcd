-- wrk reporter for scripts/bench/hello.sh: one machine-readable line after
-- wrk's own output, so the script need not parse wrk's human units.
--   RESULT <requests> <duration_us> <p50_us> <p99_us> <errors> <non_2xx>
-- errors counts connect/read/write failures and timeouts; a wrong status is
-- in non_2xx (wrk counts status >= 400 there).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
