import AuctionCore
import Foundation

/// The Redis + Lua design: a private `redis-server` (AOF with `appendfsync always`: a write is
/// fsynced before its reply), the bid script of scripts/bench-http/place-bid.redis.lua, auctions
/// as hashes.
enum RedisBids {
    /// Starts `redis-server` in `directory` on a free port; returns its pid and port once it
    /// answers PING (polled, with a deadline).
    static func startServer(
        binary: String, directory: String, children: BenchChildren
    ) async throws -> (pid: pid_t, port: Int) {
        let port = try LocalNetwork.freePort("127.0.0.1")
        let pid = try children.start(
            "redis-server", binary,
            [
                "--port", "\(port)", "--bind", "127.0.0.1", "--dir", directory, "--appendonly", "yes",
                "--appendfsync", "always", "--save", "", "--daemonize", "no", "--protected-mode", "no",
            ], log: directory + "/redis.log")
        try await LocalNetwork.waitUntil("redis-server answers on port \(port)", seconds: 20) {
            guard !children.hasExited(pid),
                let connection = try? await RedisConnection.connect(host: "127.0.0.1", port: port)
            else { return false }
            defer { Task { await connection.close() } }
            return (try? await connection.send(["PING"], timeout: .seconds(2))) == .simple("PONG")
        }
        return (pid, port)
    }

    /// Loads the bid script; its SHA1 for EVALSHA.
    static func loadScript(_ pool: RedisPool, path: String) async throws -> String {
        let source = try String(contentsOfFile: path, encoding: .utf8)
        guard let sha = try await pool.call(["SCRIPT", "LOAD", source]).string else {
            throw RedisError("SCRIPT LOAD gave no SHA")
        }
        return sha
    }

    /// Creates the auctions (open now, closing in a day, no soft close), as the nodes' would be.
    static func createAuctions(_ pool: RedisPool, ids: [String], seller: String, starting: Int64 = 1_000)
        async throws
    {
        let now = Int64(Date().timeIntervalSince1970 * 1_000)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, id) in ids.enumerated() {
                group.addTask {
                    _ = try await pool.call([
                        "HSET", "auction:\(id)", "currency", "EUR", "starting", "\(starting)", "opensAt", "\(now)",
                        "endsAt", "\(now + 86_400_000)", "extension", "0", "seller", seller, "status", "running",
                        "price", "\(starting)", "seq", "1", "bids", "0",
                    ])
                }
                if index % 64 == 63 { try await group.waitForAll() }
            }
            try await group.waitForAll()
        }
    }

    /// The script's answer as a decision: {"placed"|"replayed", outcome, price, minimumNextBid, seq,
    /// bids, leader, maximum, endsAt} or {"rejected", code, figure}.
    static func decision(_ reply: RESPValue, bidId: String, currency: Currency) throws -> BaselineDecision {
        guard case .array(let items?) = reply, let kind = items.first?.string else {
            throw RedisError("unexpected reply \(reply)")
        }
        if kind == "rejected" {
            guard items.count >= 3, let code = items[1].string, let figure = items[2].integer else {
                throw RedisError("unexpected reply \(reply)")
            }
            let money = Money(minorUnits: figure, currency: currency)
            switch code {
            case "auction_not_found": return .rejected(.auctionNotFound)
            case "bid_id_conflict": return .rejected(.bidIdConflict(BidID(rawValue: bidId)!))
            case "currency_mismatch": return .rejected(.currencyMismatch(expected: .eur))
            case "invalid_amount": return .rejected(.invalidAmount)
            case "amount_too_large": return .rejected(.amountTooLarge(limitMinorUnits: Money.maximumMinorUnits))
            case "auction_not_open": return .rejected(.notOpenYet(opensAt: Timestamp(millisecondsSinceEpoch: figure)))
            case "auction_closed": return .rejected(.auctionClosed)
            case "seller_cannot_bid": return .rejected(.sellerCannotBid)
            case "maximum_not_above_current": return .rejected(.maximumNotAboveCurrent(currentMaximum: money))
            case "below_minimum": return .rejected(.belowMinimum(minimum: money))
            default: throw RedisError("unknown rejection \(code)")
            }
        }
        guard kind == "placed" || kind == "replayed", items.count >= 9, let outcome = items[1].string,
            let price = items[2].integer, let minimum = items[3].integer, let seq = items[4].integer,
            let bids = items[5].integer, let leader = items[6].string, let maximum = items[7].integer
        else { throw RedisError("unexpected reply \(reply)") }
        return .placed(
            BaselinePlaced(
                outcome: outcome, replayed: kind == "replayed", seq: seq, maximum: maximum, price: price,
                minimumNextBid: minimum, leaderId: leader, bidCount: Int(bids)))
    }

    /// One bid straight to Redis (no HTTP): the direct measurement, and what the HTTP server calls.
    static func place(
        _ pool: RedisPool, sha: String, auction: String, bidId: String, bidder: String, maximum: Int64,
        currency: Currency
    ) async throws -> BaselineDecision {
        let now = Int64(Date().timeIntervalSince1970 * 1_000)
        let reply = try await pool.call([
            "EVALSHA", sha, "2", "auction:\(auction)", "bids:\(auction)", bidId, bidder, "\(maximum)", currency.code,
            "\(now)",
        ])
        return try decision(reply, bidId: bidId, currency: currency)
    }

    /// Closed-loop bidders calling the script directly, with the same price board as the engine's
    /// in-process run: what Redis + Lua does without HTTP in front.
    static func runDirect(
        _ pool: RedisPool, sha: String, ids: [String], bidders: Int, duration: Duration, run: String
    ) async -> LoadResult {
        let board = PriceBoard(starting: 1_000, spread: bidders, increments: .standard(for: .eur))
        return await runLoad(bidders: bidders, duration: duration) { bidder, iteration in
            let auction = ids.count == 1 ? 0 : Int.random(in: 0..<ids.count)
            do {
                let decision = try await place(
                    pool, sha: sha, auction: ids[auction], bidId: "\(run)-\(bidder)-\(iteration)",
                    bidder: "bidder-\(bidder)", maximum: board.nextMaximum(auction: auction), currency: .eur)
                switch decision {
                case .placed(let placed):
                    board.learn(auction: auction, minimum: placed.minimumNextBid)
                    return .accepted
                case .rejected(.belowMinimum(let minimum)):
                    board.learn(auction: auction, minimum: minimum.minorUnits)
                    return .rejected
                case .rejected(.maximumNotAboveCurrent(let current)):
                    board.learn(auction: auction, minimum: current.minorUnits + 1)
                    return .rejected
                case .rejected:
                    return .rejected
                }
            } catch {
                return .failed
            }
        }
    }
}
