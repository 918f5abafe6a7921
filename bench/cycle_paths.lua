-- wrk script: every connection cycles through the paths in $PATH_LIST for the whole run (-d);
-- done() prints one JSON line with requests/s, latency percentiles (ms) and errors.
local paths = {}
local next_index = 1

function init(args)
  for line in io.lines(os.getenv("PATH_LIST")) do table.insert(paths, line) end
end

function request()
  local path = paths[next_index]
  next_index = next_index % #paths + 1
  return wrk.format("GET", path)
end

function done(summary, latency, requests)
  io.write(string.format('{"n": %d, "seconds": %.3f, "p50": %.3f, "p99": %.3f, "errors": %d, "non2xx": %d}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, summary.errors.status))
end
