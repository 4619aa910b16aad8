-- The Redis + Lua design of `artpay bench http`: one bid, decided and stored atomically inside
-- Redis (EVALSHA), with the proxy-bidding rules of `Auction.decideBid` in
-- Sources/AuctionCore/Auction.swift. Run with `appendfsync always`, so an answer is only sent once
-- the write is fsynced.
--
-- KEYS[1]: the auction, a hash: currency, starting, reserve (optional), opensAt, endsAt (ms),
--          extension (ms, 0 = no soft close), seller, status (running), price, leader, leaderBid,
--          leaderMax, seq, bids.
-- KEYS[2]: the auction's bids, a hash: bid id -> "bidder|maximum|seq|outcome|price".
-- ARGV: bid id, bidder id, maximum (minor units), currency, now (ms since 1970).
--
-- Answers {"placed"|"replayed", outcome, price, minimumNextBid, the bid's seq, bids, leader, maximum, endsAt}
-- or {"rejected", code, figure} (figure: the minimum, the leader's current maximum, or 0).

local bidId, bidder, maximum, currency, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local a = redis.call('HMGET', KEYS[1], 'currency', 'starting', 'reserve', 'opensAt', 'endsAt', 'extension',
    'seller', 'status', 'price', 'leader', 'leaderBid', 'leaderMax', 'seq', 'bids')
if not a[1] then return { 'rejected', 'auction_not_found', 0 } end
local starting, reserve = tonumber(a[2]), tonumber(a[3])
local opensAt, endsAt, extension = tonumber(a[4]), tonumber(a[5]), tonumber(a[6])
local seller, status = a[7], a[8]
local price, leader, leaderBid, leaderMax = tonumber(a[9]), a[10], a[11], tonumber(a[12])
local seq, bids = tonumber(a[13]), tonumber(a[14])

-- IncrementTable.standard(for: .eur): (from, increment) in cents.
local tiers = { 0, 5, 100, 25, 500, 50, 2500, 100, 10000, 250, 25000, 500, 50000, 1000, 100000, 2500,
    250000, 5000, 500000, 10000 }
local function increment(at)
    local result = tiers[2]
    for i = 1, #tiers, 2 do
        if tiers[i] <= at then result = tiers[i + 1] else break end
    end
    return result
end
local function minimumNext(p, l)
    if not l then return starting end
    return p + increment(p)
end

-- An earlier acceptance of this bid id: its receipt, nothing recorded; other content is a conflict.
local previous = redis.call('HGET', KEYS[2], bidId)
if previous then
    local pBidder, pMax, pSeq, pOutcome, pPrice = string.match(previous, '^(.*)|(%d+)|(%d+)|(%a+)|(%d+)$')
    if pBidder ~= bidder or tonumber(pMax) ~= maximum then return { 'rejected', 'bid_id_conflict', 0 } end
    return { 'replayed', pOutcome, tonumber(pPrice), minimumNext(price, leader), tonumber(pSeq), bids, leader or '',
        maximum, endsAt }
end

if currency ~= a[1] then return { 'rejected', 'currency_mismatch', 0 } end
if not maximum or maximum <= 0 then return { 'rejected', 'invalid_amount', 0 } end
if maximum > 1000000000000000 then return { 'rejected', 'amount_too_large', 0 } end
if status ~= 'running' then return { 'rejected', 'auction_closed', 0 } end
if now < opensAt then return { 'rejected', 'auction_not_open', 0 } end
if now >= endsAt then return { 'rejected', 'auction_closed', 0 } end
if bidder == seller then return { 'rejected', 'seller_cannot_bid', 0 } end

local newPrice, newLeader, newLeaderBid, newMax
if leader and leader == bidder then
    -- The leader raises their own maximum: the price stays (unless the reserve is now reached).
    if maximum <= leaderMax then return { 'rejected', 'maximum_not_above_current', leaderMax } end
    newPrice, newLeader, newLeaderBid, newMax = price, bidder, bidId, maximum
else
    local minimum = minimumNext(price, leader)
    if maximum < minimum then return { 'rejected', 'below_minimum', minimum } end
    if leader then
        if maximum > leaderMax then
            -- The challenger takes the lead at one increment over the old leader's maximum.
            newPrice = math.min(maximum, leaderMax + increment(leaderMax))
            newLeader, newLeaderBid, newMax = bidder, bidId, maximum
        else
            -- The leader's proxy answers; on equal maxima the earlier bid keeps the lead.
            newPrice = math.min(leaderMax, maximum + increment(maximum))
            newLeader, newLeaderBid, newMax = leader, leaderBid, leaderMax
        end
    else
        newPrice, newLeader, newLeaderBid, newMax = starting, bidder, bidId, maximum
    end
end
if reserve and newMax >= reserve and newPrice < reserve then newPrice = reserve end

seq = seq + 1
local bidSeq = seq
bids = bids + 1
local outcome = newLeaderBid == bidId and 'leading' or 'outbid'
local fields = { 'price', newPrice, 'leader', newLeader, 'leaderBid', newLeaderBid, 'leaderMax', newMax,
    'seq', seq, 'bids', bids }
-- Soft close: a bid within the extension window moves the end to now + window.
if extension > 0 and now + extension > endsAt then
    endsAt = now + extension
    seq = seq + 1
    fields[#fields + 1] = 'endsAt'
    fields[#fields + 1] = endsAt
    fields[10] = seq
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('HSET', KEYS[2], bidId, string.format('%s|%d|%d|%s|%d', bidder, maximum, bidSeq, outcome, newPrice))
return { 'placed', outcome, newPrice, newPrice + increment(newPrice), bidSeq, bids, newLeader, maximum, endsAt }
