import AuctionCore
import Synchronization

/// The price board the simulated bidders read before bidding: the highest "minimum next bid" any
/// reply has shown for each auction, as a live stream would show every bidder. Concurrent bidders
/// still read the same, soon stale, minimum — the contention a hot lot really has.
final class PriceBoard: Sendable {
    private let minimums = Mutex<[Int: Int64]>([:])
    private let starting: Int64
    private let spread: Int64
    private let increments: IncrementTable

    /// Bidders offer the board's minimum plus 0 to `spread` increments; a spread as wide as the
    /// crowd keeps most concurrent bids valid.
    init(starting: Int64, spread: Int, increments: IncrementTable) {
        self.starting = starting
        self.spread = Int64(spread)
        self.increments = increments
    }

    func learn(auction: Int, minimum: Int64) {
        minimums.withLock { $0[auction] = max($0[auction] ?? starting, minimum) }
    }

    /// The maximum a bidder offers next on `auction`.
    func nextMaximum(auction: Int) -> Int64 {
        let minimum = minimums.withLock { $0[auction] } ?? starting
        return minimum + Int64.random(in: 0...spread) * increments.increment(at: minimum)
    }
}
