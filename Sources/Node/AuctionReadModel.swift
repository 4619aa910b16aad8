public import AuctionCore
public import Storage

/// Every auction of the cluster, in memory on every node: the read side (CQRS). Fed by the
/// owners' event fan-out, it answers listings and views locally, without asking the owner;
/// each answer carries its `seq`, so a client knows how fresh it is.
///
/// Invariant: an auction's state here only moves forward in seq; a gap (a missed push, an auction
/// first seen mid-log) is filled from the store before later events are applied.
public actor AuctionReadModel {
    private var auctions: [AuctionID: Auction] = [:]
    /// When each auction's bids of the last hour were placed, oldest first: "most active" without
    /// scanning every receipt.
    private var recentBids: [AuctionID: [Timestamp]] = [:]
    private let store: any EventStore

    public init(store: any EventStore) {
        self.store = store
    }

    /// Loads every auction that has a log (call once at start; live events keep it current).
    public func bootstrap() async {
        var after: AuctionID?
        while true {
            guard let page = try? await store.auctionIDs(after: after, limit: 500), !page.isEmpty else { return }
            for id in page where auctions[id] == nil { await reload(id) }
            after = page.last
            if page.count < 500 { return }
        }
    }

    /// Applies pushed events (any order, duplicates allowed).
    public func apply(_ events: [StoredEvent]) async {
        for event in events.sorted(by: { ($0.auction, $0.seq) < ($1.auction, $1.seq) }) {
            let current = auctions[event.auction]?.seq ?? 0
            if event.seq <= current { continue }
            if event.seq == current + 1, var auction = auctions[event.auction] ?? (current == 0 ? Auction(id: event.auction) : nil),
                (try? auction.apply(event.event)) != nil
            {
                auctions[event.auction] = auction
                if case .bidAccepted(let bid) = event.event { noteBid(event.auction, at: bid.at) }
            } else {
                await reload(event.auction)
            }
        }
    }

    private func reload(_ id: AuctionID) async {
        guard let loaded = try? await store.load(id).restore(id), loaded.state != nil else { return }
        if loaded.seq > (auctions[id]?.seq ?? 0) {
            auctions[id] = loaded
            recentBids[id] = (loaded.state?.receipts.values.map(\.at) ?? []).sorted()
            noteBid(id, at: nil)
        }
    }

    /// Records a bid time and forgets those older than an hour before the newest.
    private func noteBid(_ id: AuctionID, at time: Timestamp?) {
        var times = recentBids[id] ?? []
        if let time { times.append(time) }
        if let newest = times.last {
            let cutoff = newest.advanced(by: .seconds(-3_600))
            if let keep = times.firstIndex(where: { $0 >= cutoff }), keep > 0 { times.removeFirst(keep) }
        }
        recentBids[id] = times
    }

    public func summary(of id: AuctionID) -> AuctionSummary? {
        auctions[id]?.summary
    }

    /// Auctions matching `filter`, soonest end first, at most `limit`.
    public func list(_ filter: (AuctionSummary) -> Bool, limit: Int) -> [AuctionSummary] {
        auctions.values.compactMap(\.summary).filter(filter)
            .sorted { ($0.endsAt, $0.auctionId) < ($1.endsAt, $1.auctionId) }
            .prefix(limit).map { $0 }
    }

    public var count: Int { auctions.count }

    /// One bidder's standing in an auction: the highest visible price one of their bids reached (for
    /// the leader, the current price).
    public struct Standing: Sendable, Hashable {
        public var bidderId: UserID
        public var highestPrice: Money
        public var bids: Int
    }

    /// The bidders of `id`, the leader first, then by the highest price their bids reached (never
    /// by their secret maxima).
    public func topBidders(of id: AuctionID, limit: Int) -> (summary: AuctionSummary, standings: [Standing])? {
        guard let auction = auctions[id], let state = auction.state, let summary = auction.summary else { return nil }
        var standings: [UserID: Standing] = [:]
        for receipt in state.receipts.values {
            var standing = standings[receipt.bidderId] ?? Standing(bidderId: receipt.bidderId, highestPrice: receipt.price, bids: 0)
            standing.highestPrice = max(standing.highestPrice, receipt.price)
            standing.bids += 1
            standings[receipt.bidderId] = standing
        }
        let leader = state.leader?.bidderId
        // The leader stands at the current price, which the proxy raised on their behalf.
        if let leader, var standing = standings[leader] {
            standing.highestPrice = max(standing.highestPrice, state.price)
            standings[leader] = standing
        }
        let ranked = standings.values.sorted {
            ($0.bidderId == leader ? 1 : 0, $0.highestPrice.minorUnits, $1.bidderId.rawValue)
                > ($1.bidderId == leader ? 1 : 0, $1.highestPrice.minorUnits, $0.bidderId.rawValue)
        }
        return (summary, Array(ranked.prefix(limit)))
    }

    /// The auctions of `sale` by visible price, highest first (within the sale's currencies).
    public func highestPrices(inSale sale: SaleID, limit: Int) -> [AuctionSummary] {
        auctions.values.compactMap(\.summary).filter { $0.saleId == sale }
            .sorted { ($0.price.minorUnits, $1.auctionId) > ($1.price.minorUnits, $0.auctionId) }
            .prefix(limit).map { $0 }
    }

    /// Auctions by the number of bids accepted since `since`, most first (ties: soonest end).
    public func mostActive(since: Timestamp, limit: Int) -> [(summary: AuctionSummary, recentBids: Int)] {
        recentBids.compactMap { id, times -> (AuctionSummary, Int)? in
            let recent = times.count - (times.firstIndex { $0 >= since } ?? times.count)
            guard recent > 0, let summary = auctions[id]?.summary else { return nil }
            return (summary, recent)
        }
        .sorted { ($1.1, $0.0.endsAt) < ($0.1, $1.0.endsAt) }
        .prefix(limit).map { (summary: $0.0, recentBids: $0.1) }
    }
}
