import AuctionCore
import Logging
import PostgresNIO

/// (c) The design users would otherwise write: one PostgreSQL transaction per bid that locks the
/// auction row (`SELECT … FOR UPDATE`), applies the same proxy-bidding rules in the application,
/// inserts the bid and updates the row. Same bidders, same rules, same server as the engine.
enum RowLockBaseline {
    struct Rejected: Error {
        var minimum: Int64
    }

    static let increments = IncrementTable.standard(for: .eur)

    static func run(
        client: PostgresClient, run: String, auctions: Int, bidders: Int, duration: Duration
    ) async throws -> LoadResult {
        let logger = Logger(label: "artpay.bench.baseline")
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
        let ids = (0..<auctions).map { "\(run)-a\($0)" }
        try await client.query(
            "INSERT INTO bench_auctions (id, starting, price) SELECT unnest(\(ids)::text[]), 1000, 1000")
        let board = PriceBoard(starting: 1_000, spread: bidders, increments: .standard(for: .eur))
        return await runLoad(bidders: bidders, duration: duration) { bidder, iteration in
            let auction = auctions == 1 ? 0 : Int.random(in: 0..<auctions)
            let bidderId = "bidder-\(bidder)"
            let maximum = board.nextMaximum(auction: auction)
            do {
                let minimum = try await client.withTransaction(logger: logger) { connection -> Int64 in
                    let rows = try await connection.query(
                        """
                        SELECT starting, price, leader_id, leader_max FROM bench_auctions
                        WHERE id = \(ids[auction]) FOR UPDATE
                        """, logger: logger)
                    var current: (Int64, Int64, String?, Int64?)?
                    for try await row in rows.decode((Int64, Int64, String?, Int64?).self) { current = row }
                    guard let (starting, price, leaderId, leaderMax) = current else { throw Rejected(minimum: 0) }
                    let (newPrice, newLeader, newMax) = try decide(
                        starting: starting, price: price, leaderId: leaderId, leaderMax: leaderMax, bidder: bidderId,
                        maximum: maximum)
                    let bidId = "\(run)-\(bidder)-\(iteration)"
                    try await connection.query(
                        """
                        INSERT INTO bench_bids (bid_id, auction_id, bidder_id, maximum, price_after)
                        VALUES (\(bidId), \(ids[auction]), \(bidderId), \(maximum), \(newPrice))
                        """, logger: logger)
                    try await connection.query(
                        """
                        UPDATE bench_auctions SET price = \(newPrice), leader_id = \(newLeader), leader_max = \(newMax),
                            leader_bid_id = CASE WHEN \(newLeader) = \(bidderId) THEN \(bidId) ELSE leader_bid_id END,
                            bid_count = bid_count + 1
                        WHERE id = \(ids[auction])
                        """, logger: logger)
                    return newPrice + increments.increment(at: newPrice)
                }
                board.learn(auction: auction, minimum: minimum)
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
            guard maximum > leaderMax else { throw Rejected(minimum: leaderMax + 1) }
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
