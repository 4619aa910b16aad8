import AuctionCore
import AuctionRuntime
import Storage

/// What the read model knows of every auction, and the rules by which events change it — no store,
/// no clock, no tasks, like `Auction`: ``ReadModelWriter`` reads the store and hands the events
/// here, and a test drives it with events alone.
///
/// Invariant: an auction's state here only moves forward in seq, either one event at a time
/// (``step(_:_:)``) or replaced whole by a replay of its log from the first event (``install(_:)``)
/// that reached further than what is known.
struct ReadModelProjection: Sendable {
    /// What the read model knows of one auction: its state at `seq`, without bid receipts.
    struct Projected: Sendable {
        var seq: Int64 = 0
        var state: AuctionState?
    }

    private(set) var auctions: [AuctionID: Projected] = [:]
    /// Lots forgotten once archived, with the seq they were at: a later event of one (a refund)
    /// brings it back silently, and a catch-up does not load it again for nothing.
    private(set) var evicted: [AuctionID: Int64] = [:]
    private var standings: [AuctionID: AuctionStandings] = [:]
    /// What readers see once the writer publishes it.
    private(set) var snapshot = ReadModelSnapshot()
    /// The newest epoch each auction's log was written under, as far as applied here.
    private var epochs: [AuctionID: Epoch] = [:]
    /// Auctions whose epoch rose since the last ``takeChanges()``, with the new epoch.
    private var raised: [(AuctionID, Epoch)] = []
    /// A settlement event was applied since the last ``takeChanges()``.
    private var settlementsChanged = false
    /// Notifications are derived for events from this time on; older ones are applied silently.
    let notifyFrom: Timestamp

    init(notifyFrom: Timestamp) {
        self.notifyFrom = notifyFrom
    }

    /// The seq known of `id` (0: nothing).
    func seq(of id: AuctionID) -> Int64 { auctions[id]?.seq ?? 0 }

    /// The seq this model has of `id`, or had when it let the lot go.
    func known(_ id: AuctionID) -> Int64 { auctions[id]?.seq ?? evicted[id] ?? 0 }

    func isEvicted(_ id: AuctionID) -> Bool { evicted[id] != nil }

    /// Records a lot left out (archived long ago) at `seq` without loading it; a lot known here stays.
    mutating func leaveOut(_ id: AuctionID, at seq: Int64) {
        guard auctions[id] == nil else { return }
        evicted[id] = seq
    }

    /// Forgets that `id` was let go, so it can be loaded again.
    mutating func bringBack(_ id: AuctionID) {
        evicted[id] = nil
    }

    /// The epochs that rose and whether a settlement changed, since the last call.
    mutating func takeChanges() -> (raised: [(AuctionID, Epoch)], settlementsChanged: Bool) {
        defer {
            raised = []
            settlementsChanged = false
        }
        return (raised, settlementsChanged)
    }

    private mutating func note(_ epoch: Epoch, of id: AuctionID) {
        guard epoch > epochs[id] ?? Epoch(0) else { return }
        epochs[id] = epoch
        raised.append((id, epoch))
    }

    /// Applies `event` if it is the next one of its auction, with its notifications; false otherwise.
    /// The published entry is recomputed by ``index(_:)``, once per batch.
    mutating func step(_ event: StoredEvent, _ notes: inout [BidderNotification]) -> Bool {
        let id = event.auction
        guard event.seq == seq(of: id) + 1 else { return false }
        let previousLeader = auctions[id]?.state?.leader?.bidderId
        do {
            // In place: `advance` leaves the state unchanged when it throws.
            try AuctionState.advance(
                &auctions[id, default: Projected()].state, with: event.event, auction: id, seq: event.seq)
        } catch {
            if auctions[id]?.state == nil { auctions[id] = nil }
            return false
        }
        auctions[id]!.seq = event.seq
        note(event.epoch, of: id)
        switch event.event {
        case .bidAccepted(let bid):
            fold(bidder: bid.bidderId, price: bid.price, in: id)
            snapshot.recentBids[id, default: BidsPerMinute()].record(bid.at)
        case .boughtNow(let purchase):
            fold(bidder: purchase.bidderId, price: purchase.price, in: id)
        case .settlement:
            settlementsChanged = true
        case .created, .extended, .closed, .cancelled:
            break
        }
        if let state = auctions[id]?.state {
            notes += state.notifications(
                auction: id, seq: event.seq, after: event.event, previousLeader: previousLeader,
                bidders: standings[id]?.byBidder.keys ?? [:].keys
            ).filter { $0.at >= notifyFrom }
        }
        return true
    }

    /// A log replayed off to the side from its first event, to replace what is known of its
    /// auction at once (``install(_:)``): the standings and recent bids need every bid, and the
    /// store's snapshots keep old bids only as fingerprints. Sends no notifications: these events
    /// are history, or were notified when first seen.
    struct Replay: Sendable {
        let auction: AuctionID
        private(set) var seq: Int64 = 0
        fileprivate private(set) var state: AuctionState?
        fileprivate private(set) var standing = AuctionStandings()
        fileprivate private(set) var recent = BidsPerMinute()
        fileprivate private(set) var newestEpoch: Epoch?

        init(_ auction: AuctionID) {
            self.auction = auction
        }

        /// Adds the next event of the log; false, changing nothing, when `event` is not the next
        /// one or does not apply (a corrupt log: the replay is then not to be installed).
        mutating func add(_ event: StoredEvent) -> Bool {
            guard event.auction == auction, event.seq == seq + 1,
                (try? AuctionState.advance(&state, with: event.event, auction: auction, seq: event.seq)) != nil
            else { return false }
            seq = event.seq
            newestEpoch = max(newestEpoch ?? event.epoch, event.epoch)
            switch event.event {
            case .bidAccepted(let bid):
                record(bid.bidderId, bid.price)
                recent.record(bid.at)
            case .boughtNow(let purchase):
                record(purchase.bidderId, purchase.price)
            case .created, .extended, .closed, .cancelled, .settlement:
                break
            }
            return true
        }

        fileprivate mutating func record(_ bidder: UserID, _ price: Money) {
            standing.record(bidder, price)
        }
    }

    /// Replaces what is known of the replay's auction with it, when it reached further; whether it did.
    @discardableResult
    mutating func install(_ replay: Replay) -> Bool {
        let id = replay.auction
        if let epoch = replay.newestEpoch { note(epoch, of: id) }
        guard let state = replay.state, replay.seq > seq(of: id) else { return false }
        auctions[id] = Projected(seq: replay.seq, state: state)
        standings[id] = replay.standing
        snapshot.recentBids[id] = replay.recent.isEmpty ? nil : replay.recent
        index(id)
        return true
    }

    /// Replaces what is known of a lot whose live log was compacted (it starts at its last
    /// snapshot) with `state` at `seq`, and its standings from `bids` (the archived record's).
    mutating func installCompacted(
        _ id: AuctionID, state: AuctionState, seq: Int64, bids: [(bidder: UserID, price: Money)]
    ) {
        guard seq > self.seq(of: id) else { return }
        var replay = Replay(id)
        for bid in bids { replay.record(bid.bidder, bid.price) }
        auctions[id] = Projected(seq: seq, state: state)
        standings[id] = replay.standing
        index(id)
    }

    /// Forgets the lots of `archived` (id → the seq the archive holds) that are finished and not
    /// past that seq here; the ones that went.
    mutating func evict(_ archived: [AuctionID: Int64]) -> [AuctionID] {
        var removed: [AuctionID] = []
        for (id, archivedSeq) in archived {
            guard let projected = auctions[id], projected.seq <= archivedSeq, let state = projected.state else {
                continue
            }
            switch state.status {
            case .running: continue
            case .closed(.sold): guard state.settlement?.phase?.isFinished == true else { continue }
            case .closed(.unsold), .cancelled: break
            }
            auctions[id] = nil
            standings[id] = nil
            epochs[id] = nil
            evicted[id] = projected.seq
            snapshot.remove(id)
            removed.append(id)
        }
        return removed
    }

    private mutating func fold(bidder: UserID, price: Money, in id: AuctionID) {
        standings[id, default: AuctionStandings()].record(bidder, price)
    }

    /// Recomputes the published entry of `id`: its summary, its ranking (shared, not copied) and
    /// its leader's standing at the current price.
    mutating func index(_ id: AuctionID) {
        guard let projected = auctions[id], let state = projected.state else { return }
        let standings = standings[id] ?? AuctionStandings()
        var leader = state.leader.flatMap { standings.byBidder[$0.bidderId] }
        if let standing = leader { leader?.highestPrice = max(standing.highestPrice, state.price) }
        snapshot.set(
            id, summary: state.summary(auction: id, seq: projected.seq), ranking: standings.ranking, leader: leader)
        if let settlement = state.settlement { snapshot.setSettlement(settlement) }
    }
}
