-- wrk script: each thread requests its share of the paths in $TILE_LIST once, then stops and
-- prints THREAD_DONE (wrk itself waits out -d; bench_tiles.py interrupts it when all are done).
-- done() prints one JSON line with the latency percentiles (ms).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  paths = {}
  local index = 0
  for line in io.lines(os.getenv("TILE_LIST")) do
    if index % counter_total() == id then table.insert(paths, line) end
    index = index + 1
  end
  sent, received = 0, 0
end

function counter_total() return tonumber(os.getenv("WRK_THREADS")) end

function request()
  sent = sent + 1
  local path = paths[((sent - 1) % #paths) + 1]
  return wrk.format("GET", path)
end

function response(status, headers, body)
  received = received + 1
  if status ~= 200 and status ~= 204 then errors_seen = (errors_seen or 0) + 1 end
  if received == #paths then
    io.write("THREAD_DONE\n")
    io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  io.write(string.format('{"n": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f, "errors": %d, "bytes": %d}\n',
    summary.requests, latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, summary.errors.status + summary.errors.connect + summary.errors.read, summary.bytes))
end
