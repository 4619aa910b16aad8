-- wrk script of `artpay bench http`: closed-loop bidders over HTTP, one wrk per node.
--
--   wrk -t1 -c21 -d10s --timeout 20s -s bids.lua http://127.0.0.1:8100 -- \
--       TOKENS AUCTIONS BOARD RUN SPREAD FIRST_BIDDER CONNECTIONS_PER_THREAD [PACE [HONOUR_RETRY_AFTER]]
--
-- TOKENS: one bearer token per line; thread t (from 0) of this wrk bids as bidders
--   FIRST_BIDDER + t * CONNECTIONS_PER_THREAD + 1, + 2, ... of the file.
-- AUCTIONS: one auction id per line; each bid goes to a uniformly random one of them.
-- BOARD: the price board, a file of 8-byte doubles (one per auction, 0 = not seen yet), shared by
--   every thread of every wrk through mmap (LuaJIT ffi): the highest "minimum next bid" any answer
--   has shown, as a live stream would show every bidder. Races between writers only make an entry
--   briefly lower than it could be; the board is advice, the server decides.
-- RUN: a prefix that makes bid ids unique across runs, wrks and designs.
-- SPREAD: a bid offers the board's minimum plus 0..SPREAD increments (the standard EUR table of
--   Sources/AuctionCore/IncrementTable.swift).
-- PACE: milliseconds a connection waits after an answer before its next bid, for loads below the
--   peak. Only used when the harness appends a `delay()` (a delayed copy of this script): wrk
--   delays every request once a script defines delay(), even by 0 ms.
-- HONOUR_RETRY_AFTER: 1 makes the bidders behave like the project's clients: after a 503 with
--   `Retry-After: N`, a request waits N seconds before it goes out (also through the harness's
--   `delay()`). As wrk does not say which connection a request leaves on, the wait falls on the
--   thread's next request rather than on the refused connection's — the same number of waits.
--
-- wrk's Lua API does not say which connection a request or an answer belongs to. With several
-- connections per thread (`-t1 -c21`, the default of `artpay bench http`: half the CPU per request
-- of one thread per connection) the thread's bidders take turns per request, so each has about one
-- bid in flight, and a 422 can only teach the board when there is one auction (201 answers name
-- their auction; on many auctions the board learns from the 201s of every connection). With one
-- connection per thread (-t = -c) each connection is a fixed bidder and every answer is matched to
-- its request.
--
-- Counts per thread: 201 accepted, 422 rejected, anything else failed (by status). done() prints
-- one line `ARTPAY-WRK {json}` with the counts, wrk's socket errors, the duration and the latency
-- distribution as quantiles (microseconds), for the harness to merge across wrks.

local ffi = require("ffi")
ffi.cdef [[
    int open(const char *path, int flags, int mode);
    int close(int fd);
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);
]]

local STARTING = 1000
-- (from, increment) in euro cents: IncrementTable.standard(for: .eur).
local TIERS = {
    { 0, 5 }, { 100, 25 }, { 500, 50 }, { 2500, 100 }, { 10000, 250 },
    { 25000, 500 }, { 50000, 1000 }, { 100000, 2500 }, { 250000, 5000 }, { 500000, 10000 },
}

local function increment(price)
    local result = TIERS[1][2]
    for i = 1, #TIERS do
        if TIERS[i][1] <= price then result = TIERS[i][2] else break end
    end
    return result
end

-- Main state: hands each thread its index; collects the counts at the end.
local threads = {}

function setup(thread)
    thread:set("thread_index", #threads)
    table.insert(threads, thread)
end

-- Thread state. Globals read by done() through thread:get.
accepted, rejected, failed = 0, 0, 0
statuses = {}

local bidders, auctions, auctionIndex = {}, {}, {}
local board
local run, spread, host = "", 0, ""
local counter, turn = 0, 0
local single = true
local pending = 0
pace = 0
-- Waits owed to 503 answers (HONOUR_RETRY_AFTER), in milliseconds, oldest first; read by delay().
retryWaits = {}
local honourRetryAfter = false

local function lines(path)
    local result = {}
    for line in io.lines(path) do
        if #line > 0 then result[#result + 1] = line end
    end
    return result
end

function init(args)
    local tokens = lines(args[1])
    auctions = lines(args[2])
    for i, id in ipairs(auctions) do auctionIndex[id] = i - 1 end
    local fd = ffi.C.open(args[3], 2, 0) -- O_RDWR
    assert(fd >= 0, "cannot open the price board " .. args[3])
    local mapped = ffi.C.mmap(nil, 8 * #auctions, 3, 1, fd, 0) -- PROT_READ|PROT_WRITE, MAP_SHARED
    assert(ffi.cast("intptr_t", mapped) ~= -1, "cannot map the price board")
    ffi.C.close(fd)
    board = ffi.cast("double *", mapped)
    run = args[4]
    spread = tonumber(args[5])
    local first = tonumber(args[6] or "0")
    local perThread = tonumber(args[7] or "1")
    local index = thread_index or 0
    single = perThread == 1
    pace = tonumber(args[8] or "0")
    honourRetryAfter = args[9] == "1"
    for i = 1, perThread do
        local n = first + index * perThread + i
        bidders[#bidders + 1] = "Bearer " .. tokens[((n - 1) % #tokens) + 1]
    end
    host = wrk.host .. ":" .. wrk.port
    math.randomseed(os.time() * 1000 + index * 7919 + first)
end

local function learn(auction, minimum)
    if minimum and board[auction] < minimum then board[auction] = minimum end
end

function request()
    local auction = 0
    if #auctions > 1 then auction = math.random(0, #auctions - 1) end
    pending = auction
    local minimum = board[auction]
    if minimum < STARTING then minimum = STARTING end
    local maximum = minimum + math.random(0, spread) * increment(minimum)
    counter = counter + 1
    turn = turn % #bidders + 1
    local body = string.format('{"bidId":"%s.%d.%d","maximum":%.0f,"currency":"EUR"}',
        run, thread_index or 0, counter, maximum)
    return "POST /v1/auctions/" .. auctions[auction + 1] .. "/bids HTTP/1.1\r\nHost: " .. host ..
        "\r\nAuthorization: " .. bidders[turn] ..
        "\r\nContent-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
end

function response(status, headers, body)
    if status == 201 then
        accepted = accepted + 1
        local auction = pending
        if not single then
            auction = auctionIndex[body:match('"auction":%s*{.-"id":%s*"([^"]+)"')]
        end
        if auction then learn(auction, tonumber(body:match('"minimumNextBid":%s*(%d+)'))) end
    elseif status == 422 then
        rejected = rejected + 1
        if single or #auctions == 1 then
            local minimum = body:match('"minimum":%s*"?(%d+)')
            if minimum then
                learn(pending, tonumber(minimum))
            else
                local current = body:match('"currentMaximum":%s*"?(%d+)')
                if current then learn(pending, tonumber(current) + 1) end
            end
        end
    else
        failed = failed + 1
        if status == 503 and honourRetryAfter then
            local seconds = tonumber(headers["Retry-After"] or headers["retry-after"] or "1") or 1
            retryWaits[#retryWaits + 1] = seconds * 1000
        end
        local key = tostring(status)
        statuses[key] = (statuses[key] or 0) + 1
    end
end

function done(summary, latency, requests)
    local a, r, f = 0, 0, 0
    local byStatus = {}
    for _, thread in ipairs(threads) do
        a = a + thread:get("accepted")
        r = r + thread:get("rejected")
        f = f + thread:get("failed")
        for status, count in pairs(thread:get("statuses")) do
            byStatus[status] = (byStatus[status] or 0) + count
        end
    end
    local parts = {}
    for status, count in pairs(byStatus) do parts[#parts + 1] = string.format('"%s":%d', status, count) end
    -- Quantiles every 0.1 % up to 99 %, then every 0.01 %: enough to merge p50 and p99 across wrks.
    local quantiles = {}
    for i = 1, 989 do quantiles[#quantiles + 1] = string.format("%d", latency:percentile(i / 10)) end
    for i = 9900, 9999 do quantiles[#quantiles + 1] = string.format("%d", latency:percentile(i / 100)) end
    local e = summary.errors
    io.write(string.format(
        'ARTPAY-WRK {"requests":%d,"durationMicros":%d,"accepted":%d,"rejected":%d,"failed":%d,' ..
        '"statuses":{%s},"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
        '"latencyMax":%d,"latencyP50":%d,"latencyP99":%d,"quantiles":[%s]}\n',
        summary.requests, summary.duration, a, r, f, table.concat(parts, ","),
        e.connect, e.read, e.write, e.timeout, latency.max, latency:percentile(50), latency:percentile(99),
        table.concat(quantiles, ",")))
end
