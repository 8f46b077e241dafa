-- wrk script shared by every HTTP benchmark run.
-- BENCH_PATH: request target; an absolute URL for a forward proxy (absolute-form), a path otherwise.
-- BENCH_HOST: Host header (the origin's host:port for a forward proxy).
-- BENCH_CLOSE=1: one request per connection.
local path = os.getenv("BENCH_PATH")
if path and path ~= "" then wrk.path = path end
local host = os.getenv("BENCH_HOST")
if host and host ~= "" then wrk.headers["Host"] = host end
if os.getenv("BENCH_CLOSE") == "1" then wrk.headers["Connection"] = "close" end

-- One machine-readable line; run.sh parses it (latencies in microseconds).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d p50_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
