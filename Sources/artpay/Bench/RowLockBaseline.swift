import AuctionCore
import Logging
import PostgresNIO

/// (c) The design users would otherwise write: one PostgreSQL transaction per bid that locks the
/// auction row (`SELECT … FOR UPDATE`), applies the same proxy-bidding rules in the application,
/// inserts the bid and updates the row. Same bidders, same rules, same server as the engine.
/// `place` is the whole design; the in-process run below and `artpay bench baseline-server
/// --design rowlock` (the same over HTTP) both call it.
enum RowLockBaseline {
    struct Rejected: Error {
        /// The lowest maximum that would have been accepted (0: no such auction).
        var minimum: Int64
        /// Set when the leader's own raise was not above their maximum (`maximum_not_above_current`).
        var currentMaximum: Int64?
    }

    /// An accepted bid: the auction row after it.
    struct Placed: Sendable {
        var price: Int64
        var leaderId: String
        var leaderMaximum: Int64
        var bidCount: Int
        var minimumNextBid: Int64
    }

    static let increments = IncrementTable.standard(for: .eur)

    static func createTables(_ client: PostgresClient) async throws {
        try await client.query(
            """
            CREATE TABLE IF NOT EXISTS bench_auctions (
                id text PRIMARY KEY, starting bigint NOT NULL, price bigint NOT NULL, leader_id text,
                leader_bid_id text, leader_max bigint, bid_count integer NOT NULL DEFAULT 0)
            """)
        try await client.query(
            """
            CREATE TABLE IF NOT EXISTS bench_bids (
                bid_id text PRIMARY KEY, auction_id text NOT NULL, bidder_id text NOT NULL, maximum bigint NOT NULL,
                price_after bigint NOT NULL, placed_at timestamptz NOT NULL DEFAULT now())
            """)
    }

    static func createAuctions(_ client: PostgresClient, ids: [String], starting: Int64 = 1_000) async throws {
        try await client.query(
            "INSERT INTO bench_auctions (id, starting, price) SELECT unnest(\(ids)::text[]), \(starting), \(starting)")
    }

    /// One bid, one transaction: lock the row, decide, insert the bid, update the row, commit.
    /// Throws `Rejected` (inside a `PostgresTransactionError`) for a rule rejection.
    static func place(
        client: PostgresClient, logger: Logger, auctionId: String, bidId: String, bidderId: String, maximum: Int64
    ) async throws -> Placed {
        try await client.withTransaction(logger: logger) { connection -> Placed in
            let rows = try await connection.query(
                """
                SELECT starting, price, leader_id, leader_max, bid_count FROM bench_auctions
                WHERE id = \(auctionId) FOR UPDATE
                """, logger: logger)
            var current: (Int64, Int64, String?, Int64?, Int)?
            for try await row in rows.decode((Int64, Int64, String?, Int64?, Int).self) { current = row }
            guard let (starting, price, leaderId, leaderMax, bidCount) = current else { throw Rejected(minimum: 0) }
            let (newPrice, newLeader, newMax) = try decide(
                starting: starting, price: price, leaderId: leaderId, leaderMax: leaderMax, bidder: bidderId,
                maximum: maximum)
            try await connection.query(
                """
                INSERT INTO bench_bids (bid_id, auction_id, bidder_id, maximum, price_after)
                VALUES (\(bidId), \(auctionId), \(bidderId), \(maximum), \(newPrice))
                """, logger: logger)
            try await connection.query(
                """
                UPDATE bench_auctions SET price = \(newPrice), leader_id = \(newLeader), leader_max = \(newMax),
                    leader_bid_id = CASE WHEN \(newLeader) = \(bidderId) THEN \(bidId) ELSE leader_bid_id END,
                    bid_count = bid_count + 1
                WHERE id = \(auctionId)
                """, logger: logger)
            return Placed(
                price: newPrice, leaderId: newLeader, leaderMaximum: newMax, bidCount: bidCount + 1,
                minimumNextBid: newPrice + increments.increment(at: newPrice))
        }
    }

    static func run(
        client: PostgresClient, run: String, auctions: Int, bidders: Int, duration: Duration
    ) async throws -> LoadResult {
        let logger = Logger(label: "artpay.bench.baseline")
        try await createTables(client)
        let ids = (0..<auctions).map { "\(run)-a\($0)" }
        try await createAuctions(client, ids: ids)
        let board = PriceBoard(starting: 1_000, spread: bidders, increments: .standard(for: .eur))
        return await runLoad(bidders: bidders, duration: duration) { bidder, iteration in
            let auction = auctions == 1 ? 0 : Int.random(in: 0..<auctions)
            do {
                let placed = try await place(
                    client: client, logger: logger, auctionId: ids[auction], bidId: "\(run)-\(bidder)-\(iteration)",
                    bidderId: "bidder-\(bidder)", maximum: board.nextMaximum(auction: auction))
                board.learn(auction: auction, minimum: placed.minimumNextBid)
                return .accepted
            } catch let error as PostgresTransactionError {
                guard let rejected = error.closureError as? Rejected else { return .failed }
                board.learn(auction: auction, minimum: rejected.minimum)
                return .rejected
            } catch {
                return .failed
            }
        }
    }

    /// eBay-style proxy bidding on the row's columns: (new price, leader, leader's maximum).
    static func decide(
        starting: Int64, price: Int64, leaderId: String?, leaderMax: Int64?, bidder: String, maximum: Int64
    ) throws -> (Int64, String, Int64) {
        guard let leaderId, let leaderMax else {
            guard maximum >= starting else { throw Rejected(minimum: starting) }
            return (starting, bidder, maximum)
        }
        if leaderId == bidder {
            guard maximum > leaderMax else { throw Rejected(minimum: leaderMax + 1, currentMaximum: leaderMax) }
            return (price, bidder, maximum)
        }
        let minimum = price + increments.increment(at: price)
        guard maximum >= minimum else { throw Rejected(minimum: minimum) }
        if maximum > leaderMax {
            return (min(maximum, leaderMax + increments.increment(at: leaderMax)), bidder, maximum)
        }
        return (min(leaderMax, maximum + increments.increment(at: maximum)), leaderId, leaderMax)
    }
}
