public import AuctionCore
public import Storage
import Synchronization

/// Every auction of the cluster, in memory on every node: the read side (CQRS). Fed by the
/// owners' event fan-out, it answers listings, views and leaderboards locally, without asking the
/// owner; each answer carries its `seq`, so a client knows how fresh it is.
///
/// Reads never wait for the writer: one actor applies events and, after each batch, publishes an
/// immutable ``ReadModelSnapshot`` whose indexes (by end time, by price per sale, ranked bidders)
/// are kept on apply, so a read is a lock-protected pointer copy plus a walk of a sorted index.
///
/// Invariant: an auction's state here only moves forward in seq; a gap (a missed push, an auction
/// first seen mid-log) is filled from the store before later events are applied.
public final class AuctionReadModel: Sendable {
    private let writer: ReadModelWriter
    private let published: PublishedSnapshot
    /// Outbid, won, lost, extended, cancelled — derived here, as events are applied in order.
    public let notifications: NotificationHub

    /// - Parameter notifyFrom: notifications are derived for events from this time on; older ones
    ///   (the history a starting node catches up on) are applied silently.
    public init(
        store: any EventStore, notifications: NotificationHub = NotificationHub(),
        notifyFrom: Timestamp = Timestamp(millisecondsSinceEpoch: 0)
    ) {
        let published = PublishedSnapshot()
        self.published = published
        self.notifications = notifications
        self.writer = ReadModelWriter(store: store, notifications: notifications, notifyFrom: notifyFrom) { snapshot in
            published.value.withLock { $0 = snapshot }
        }
    }

    /// Loads every auction that has a log and is not here yet: at start, and again now and then —
    /// an auction whose every event was written before this node's subscription reached the owner
    /// (a node that just joined) is never pushed, and no later event would reveal the gap.
    public func loadMissing() async {
        await writer.loadMissing()
    }

    /// Applies pushed events (any order, duplicates allowed) and publishes the new snapshot.
    public func apply(_ events: [StoredEvent]) async {
        await writer.apply(events)
    }

    /// The latest published state: consistent within itself, never blocked by the writer.
    public var snapshot: ReadModelSnapshot {
        published.value.withLock { $0 }
    }

    public func summary(of id: AuctionID) -> AuctionSummary? { snapshot.summary(of: id) }

    public func list(_ filter: (AuctionSummary) -> Bool, limit: Int) -> [AuctionSummary] {
        snapshot.list(filter, limit: limit)
    }

    public func topBidders(of id: AuctionID, limit: Int) -> (summary: AuctionSummary, standings: [BidderStanding])? {
        snapshot.topBidders(of: id, limit: limit)
    }

    public func highestPrices(inSale sale: SaleID, limit: Int) -> [AuctionSummary] {
        snapshot.highestPrices(inSale: sale, limit: limit)
    }

    public func mostActive(since: Timestamp, limit: Int) -> [(summary: AuctionSummary, recentBids: Int)] {
        snapshot.mostActive(since: since, limit: limit)
    }
}

/// The one place a snapshot is swapped: readers copy it out under the lock, the writer swaps it.
final class PublishedSnapshot: Sendable {
    let value = Mutex(ReadModelSnapshot())
}

/// One bidder's standing in an auction: the highest visible price one of their bids reached (for
/// the leader, the current price) — never their secret maximum.
public struct BidderStanding: Sendable, Hashable {
    public var bidderId: UserID
    public var highestPrice: Money
    public var bids: Int
}

/// An immutable view of every auction with the indexes the read endpoints walk. Value semantics:
/// the writer mutates its own copy and publishes it whole.
public struct ReadModelSnapshot: Sendable {
    struct Entry: Sendable {
        var summary: AuctionSummary
        /// The leader first, then by highest price reached, then by bidder id.
        var ranked: [BidderStanding]
    }

    struct EndKey: Comparable, Sendable {
        var endsAt: Timestamp
        var id: AuctionID
        static func < (a: Self, b: Self) -> Bool { (a.endsAt, a.id) < (b.endsAt, b.id) }
    }

    /// Highest price first, then auction id.
    struct PriceKey: Comparable, Sendable {
        var price: Int64
        var id: AuctionID
        static func < (a: Self, b: Self) -> Bool { (a.price, b.id) > (b.price, a.id) }
    }

    var entries: [AuctionID: Entry] = [:]
    var byEnd = SortedArray<EndKey>()
    var bySalePrice: [SaleID: SortedArray<PriceKey>] = [:]
    /// When each auction's bids of the last hour (before its newest bid) were placed, oldest first.
    var recentBids: [AuctionID: [Timestamp]] = [:]

    public var count: Int { entries.count }

    public func summary(of id: AuctionID) -> AuctionSummary? { entries[id]?.summary }

    /// Auctions matching `filter`, soonest end first, at most `limit`.
    public func list(_ filter: (AuctionSummary) -> Bool, limit: Int) -> [AuctionSummary] {
        var found: [AuctionSummary] = []
        for key in byEnd.elements {
            guard found.count < limit else { break }
            if let summary = entries[key.id]?.summary, filter(summary) { found.append(summary) }
        }
        return found
    }

    /// The bidders of `id`, the leader first, then by the highest price their bids reached.
    public func topBidders(of id: AuctionID, limit: Int) -> (summary: AuctionSummary, standings: [BidderStanding])? {
        guard let entry = entries[id] else { return nil }
        return (entry.summary, Array(entry.ranked.prefix(limit)))
    }

    /// The auctions of `sale` by visible price, highest first.
    public func highestPrices(inSale sale: SaleID, limit: Int) -> [AuctionSummary] {
        (bySalePrice[sale]?.elements.prefix(limit) ?? []).compactMap { entries[$0.id]?.summary }
    }

    /// Auctions by the number of bids accepted since `since`, most first (ties: soonest end).
    public func mostActive(since: Timestamp, limit: Int) -> [(summary: AuctionSummary, recentBids: Int)] {
        var top: [(summary: AuctionSummary, recentBids: Int)] = []
        func ranksBefore(
            _ a: (summary: AuctionSummary, recentBids: Int), _ b: (summary: AuctionSummary, recentBids: Int)
        ) -> Bool {
            (a.recentBids, b.summary.endsAt, b.summary.auctionId) > (
                b.recentBids, a.summary.endsAt, a.summary.auctionId
            )
        }
        for (id, times) in recentBids {
            guard let last = times.last, last >= since else { continue }
            let recent = times.count - times.partitioningIndex { $0 >= since }
            guard let summary = entries[id]?.summary else { continue }
            let candidate = (summary: summary, recentBids: recent)
            if top.count == limit, let worst = top.last, !ranksBefore(candidate, worst) { continue }
            let position = top.partitioningIndex { !ranksBefore($0, candidate) }
            top.insert(candidate, at: position)
            if top.count > limit { top.removeLast() }
        }
        return top
    }

    /// Replaces the indexed view of one auction.
    mutating func set(_ id: AuctionID, summary: AuctionSummary, ranked: [BidderStanding]) {
        if let old = entries[id]?.summary {
            byEnd.remove(EndKey(endsAt: old.endsAt, id: id))
            if let sale = old.saleId { bySalePrice[sale]?.remove(PriceKey(price: old.price.minorUnits, id: id)) }
        }
        entries[id] = Entry(summary: summary, ranked: ranked)
        byEnd.insert(EndKey(endsAt: summary.endsAt, id: id))
        if let sale = summary.saleId {
            bySalePrice[sale, default: SortedArray()].insert(PriceKey(price: summary.price.minorUnits, id: id))
        }
    }
}

/// A sorted array with binary-search insert and remove: the indexes of ``ReadModelSnapshot``.
struct SortedArray<Element: Comparable & Sendable>: Sendable {
    private(set) var elements: [Element] = []

    mutating func insert(_ element: Element) {
        elements.insert(element, at: elements.partitioningIndex { $0 >= element })
    }

    mutating func remove(_ element: Element) {
        let index = elements.partitioningIndex { $0 >= element }
        if index < elements.count, elements[index] == element { elements.remove(at: index) }
    }
}

extension RandomAccessCollection {
    /// The first index whose element satisfies `belongsInSecondPartition`, which must be false for a
    /// prefix of the collection and true for the rest (binary search).
    func partitioningIndex(where belongsInSecondPartition: (Element) -> Bool) -> Index {
        var low = startIndex
        var count = distance(from: startIndex, to: endIndex)
        while count > 0 {
            let half = count / 2
            let middle = index(low, offsetBy: half)
            if belongsInSecondPartition(self[middle]) {
                count = half
            } else {
                low = index(after: middle)
                count -= half + 1
            }
        }
        return low
    }
}

/// The single writer of the read model: applies events in seq order per auction, keeps the
/// per-bidder standings, and publishes a snapshot after every batch.
actor ReadModelWriter {
    private var auctions: [AuctionID: Auction] = [:]
    private var standings: [AuctionID: [UserID: BidderStanding]] = [:]
    private var snapshot = ReadModelSnapshot()
    private let store: any EventStore
    private let notifications: NotificationHub
    private let notifyFrom: Timestamp
    private let publish: @Sendable (ReadModelSnapshot) -> Void

    init(
        store: any EventStore, notifications: NotificationHub, notifyFrom: Timestamp,
        publish: @escaping @Sendable (ReadModelSnapshot) -> Void
    ) {
        self.store = store
        self.notifications = notifications
        self.notifyFrom = notifyFrom
        self.publish = publish
    }

    func loadMissing() async {
        var after: AuctionID?
        while true {
            guard let page = try? await store.auctionIDs(after: after, limit: 500), !page.isEmpty else { break }
            for id in page where auctions[id] == nil { await reload(id) }
            publish(snapshot)
            after = page.last
            if page.count < 500 { break }
        }
    }

    func apply(_ events: [StoredEvent]) async {
        var touched: Set<AuctionID> = []
        var notes: [BidderNotification] = []
        for event in events.sorted(by: { ($0.auction, $0.seq) < ($1.auction, $1.seq) }) {
            let id = event.auction
            if event.seq <= auctions[id]?.seq ?? 0 { continue }
            // A missed push (or an auction first seen mid-log): fill the gap from the log event by
            // event, so its notifications are not lost either. (The actor may interleave at each
            // await, so the seq is read again after it.)
            while event.seq > (auctions[id]?.seq ?? 0) + 1 {
                let current = auctions[id]?.seq ?? 0
                guard
                    let missing = try? await store.events(
                        of: id, after: current, limit: min(Int(event.seq - current - 1), 1_000)),
                    !missing.isEmpty
                else { break }
                for earlier in missing where step(earlier, &notes) { touched.insert(id) }
                if auctions[id]?.seq ?? 0 == current { break }
            }
            if step(event, &notes) {
                touched.insert(id)
            } else if event.seq > auctions[id]?.seq ?? 0 {
                await reload(id)
            }
        }
        for id in touched { index(id) }
        publish(snapshot)
        notifications.publish(notes)
    }

    /// Applies `event` if it is the next one of its auction, with its notifications; false otherwise.
    private func step(_ event: StoredEvent, _ notes: inout [BidderNotification]) -> Bool {
        let current = auctions[event.auction]?.seq ?? 0
        guard event.seq == current + 1,
            var auction = auctions[event.auction] ?? (current == 0 ? Auction(id: event.auction) : nil)
        else { return false }
        let previousLeader = auction.state?.leader?.bidderId
        guard (try? auction.apply(event.event)) != nil else { return false }
        auctions[event.auction] = auction
        switch event.event {
        case .bidAccepted(let bid):
            fold(receiptOf: bid.bidId, in: event.auction)
            noteBids(event.auction, at: [bid.at])
        case .boughtNow(let purchase):
            fold(receiptOf: purchase.bidId, in: event.auction)
        default: break
        }
        notes += auction.notifications(
            after: event.event, previousLeader: previousLeader, bidders: (standings[event.auction] ?? [:]).keys
        ).filter { $0.at >= notifyFrom }
        return true
    }

    private func reload(_ id: AuctionID) async {
        guard let loaded = try? await store.load(id).restore(id), let state = loaded.state,
            loaded.seq > (auctions[id]?.seq ?? 0)
        else { return }
        auctions[id] = loaded
        standings[id] = [:]
        for receipt in state.receipts.values { fold(receipt, in: id) }
        snapshot.recentBids[id] = nil
        noteBids(id, at: state.receipts.values.map(\.at).sorted())
        index(id)
    }

    private func fold(receiptOf bid: BidID, in id: AuctionID) {
        if let receipt = auctions[id]?.state?.receipts[bid] { fold(receipt, in: id) }
    }

    private func fold(_ receipt: BidReceipt, in id: AuctionID) {
        var standing =
            standings[id]?[receipt.bidderId]
            ?? BidderStanding(bidderId: receipt.bidderId, highestPrice: receipt.price, bids: 0)
        standing.highestPrice = max(standing.highestPrice, receipt.price)
        standing.bids += 1
        standings[id, default: [:]][receipt.bidderId] = standing
    }

    /// Records bid times (oldest first) and forgets those older than an hour before the newest.
    private func noteBids(_ id: AuctionID, at times: [Timestamp]) {
        var kept = snapshot.recentBids[id] ?? []
        kept.append(contentsOf: times)
        if let newest = kept.last {
            let cutoff = newest.advanced(by: .seconds(-3_600))
            let keep = kept.partitioningIndex { $0 >= cutoff }
            if keep > 0 { kept.removeFirst(keep) }
        }
        snapshot.recentBids[id] = kept.isEmpty ? nil : kept
    }

    /// Recomputes the published entry of `id`: its summary and ranked bidders.
    private func index(_ id: AuctionID) {
        guard let auction = auctions[id], let state = auction.state, let summary = auction.summary else { return }
        var byBidder = standings[id] ?? [:]
        let leader = state.leader?.bidderId
        // The leader stands at the current price, which the proxy raised on their behalf.
        if let leader, var standing = byBidder[leader] {
            standing.highestPrice = max(standing.highestPrice, state.price)
            byBidder[leader] = standing
        }
        let ranked = byBidder.values.sorted {
            ($0.bidderId == leader ? 1 : 0, $0.highestPrice.minorUnits, $1.bidderId.rawValue)
                > ($1.bidderId == leader ? 1 : 0, $1.highestPrice.minorUnits, $0.bidderId.rawValue)
        }
        snapshot.set(id, summary: summary, ranked: ranked)
    }
}
