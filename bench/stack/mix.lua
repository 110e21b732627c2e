-- wrk script for bench/stack/load.py: a realistic read mix through nginx over TLS, as many
-- clients as there are read keys in FFE_KEYS_FILE (one a line, sent in turn as bearer tokens:
-- the API limits each key to api.rate_limit requests a minute), and a per-second timeline of
-- answers and errors that done() prints as one JSON line (FFE_RESULT ...) for the bench.
-- FFE_RATE, when set: at most that many requests a second per connection (wrk's delay()).
--
-- Weights (out of 20): what dashboards and bots poll most comes up most.
paths = {
    "/health/live", "/health/ready",
    "/api/v1/portfolio", "/api/v1/portfolio", "/api/v1/portfolio", "/api/v1/portfolio",
    "/api/v1/positions", "/api/v1/positions", "/api/v1/positions",
    "/api/v1/analysis/SP500", "/api/v1/analysis/SP500", "/api/v1/analysis/SP500",
    "/api/v1/decisions?limit=20", "/api/v1/decisions?limit=20", "/api/v1/decisions?limit=20",
    "/api/v1/status", "/api/v1/status",
    "/api/v1/fills?limit=20", "/api/v1/orders?limit=20", "/api/v1/jobs?limit=20",
}

-- FFE_PATHS (comma-separated), when set, replaces the mix: one route alone, for profiling.
if os.getenv("FFE_PATHS") then
    paths = {}
    for path in string.gmatch(os.getenv("FFE_PATHS"), "[^,]+") do
        table.insert(paths, path)
    end
end

local threads = {}
local counter = 0

function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

function init(args)
    local keys = {}
    for line in io.lines(os.getenv("FFE_KEYS_FILE")) do
        if #line > 0 then
            table.insert(keys, line)
        end
    end
    -- Every (path, key) pair made once: request() only picks the next one.
    requests = {}
    for k = 1, #keys do
        for n = 1, #paths do
            local headers = { Authorization = "Bearer " .. keys[k] }
            table.insert(requests, wrk.format("GET", paths[n], headers))
        end
    end
    i = (id or 0) * 7919 -- threads start at different places in the list
    local rate = tonumber(os.getenv("FFE_RATE") or "")
    pause = rate and rate > 0 and math.floor(1000 / rate) or nil
    ok = {} -- second -> answers with 2xx/3xx
    bad = {} -- second -> other answers
    statuses = {} -- status -> count, for the non-2xx/3xx ones
end

function request()
    i = i + 1
    return requests[(i % #requests) + 1]
end

-- Defined only with FFE_RATE: wrk times every request of a script that has delay().
if os.getenv("FFE_RATE") then
    function delay()
        return pause
    end
end

function response(status, headers, body)
    local second = os.time()
    if status >= 200 and status < 400 then
        ok[second] = (ok[second] or 0) + 1
    else
        bad[second] = (bad[second] or 0) + 1
        statuses[status] = (statuses[status] or 0) + 1
    end
end

local function merge(into, from)
    for k, v in pairs(from or {}) do
        into[k] = (into[k] or 0) + v
    end
end

local function encode(t)
    local parts = {}
    for k, v in pairs(t) do
        table.insert(parts, string.format('"%s":%d', tostring(k), v))
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
    local all_ok, all_bad, all_status = {}, {}, {}
    for _, thread in ipairs(threads) do
        merge(all_ok, thread:get("ok"))
        merge(all_bad, thread:get("bad"))
        merge(all_status, thread:get("statuses"))
    end
    local e = summary.errors
    io.write(string.format(
        'FFE_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"status_errors":%d,' ..
        '"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
        '"ok_by_second":%s,"bad_by_second":%s,"bad_statuses":%s}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.timeout, e.status,
        latency:percentile(50), latency:percentile(90), latency:percentile(95),
        latency:percentile(99), latency.max, latency.mean,
        encode(all_ok), encode(all_bad), encode(all_status)))
end
