import AuctionCore
import Synchronization

/// What each simulated bidder last learned about each auction's minimum next bid, so its next bid
/// is plausible (as a real client would use the price it was shown).
final class BidderMemory: Sendable {
    private struct Key: Hashable {
        var bidder: Int
        var auction: Int
    }

    private let minimums = Mutex<[Key: Int64]>([:])
    private let starting: Int64
    private let spread: Int64
    private let increments: IncrementTable

    /// Bidders offer the minimum they know plus 0 to `spread` increments: concurrent bidders all
    /// know the same, soon stale, minimum, and a spread as wide as the crowd keeps most bids valid.
    init(starting: Int64, spread: Int, increments: IncrementTable) {
        self.starting = starting
        self.spread = Int64(spread)
        self.increments = increments
    }

    func learn(bidder: Int, auction: Int, minimum: Int64) {
        minimums.withLock { $0[Key(bidder: bidder, auction: auction)] = minimum }
    }

    /// The maximum the bidder offers next.
    func nextMaximum(bidder: Int, auction: Int) -> Int64 {
        let minimum = minimums.withLock { $0[Key(bidder: bidder, auction: auction)] } ?? starting
        return minimum + Int64.random(in: 0...spread) * increments.increment(at: minimum)
    }
}
