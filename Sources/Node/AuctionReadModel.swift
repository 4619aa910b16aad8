public import AuctionCore
public import AuctionRuntime
import HashTreeCollections
public import Metrics
public import Storage
import Synchronization

/// Every auction of the cluster, in memory on every node: the read side (CQRS). Fed by the
/// owners' event fan-out, it answers listings, views and leaderboards locally, without asking the
/// owner; each answer carries its `seq`, so a client knows how fresh it is.
///
/// Reads never wait for the writer: one actor applies events and, after each batch, publishes an
/// immutable ``ReadModelSnapshot`` whose indexes (by end time, by price per sale, ranked bidders)
/// are kept on apply, so a read is a lock-protected pointer copy plus a walk of a sorted index.
/// The snapshot is made of persistent structures (hash tries, chunked sorted arrays), so the
/// writer's next change copies only the paths it touches, never a whole collection: the cost of
/// applying a bid does not grow with the number of auctions or with the auction's history. The
/// read model keeps each auction's state, not its bids: per bid it keeps nothing but counters.
///
/// Invariant: an auction's state here only moves forward in seq; a gap (a missed push, an auction
/// first seen mid-log) is filled from the store before later events are applied.
public final class AuctionReadModel: Sendable {
    private let writer: ReadModelWriter
    private let published: PublishedSnapshot
    private let inbox = Mutex(Inbox())

    private struct Inbox: Sendable {
        var events: [StoredEvent] = []
        /// Whether a task is applying the inbox; it ends when it finds the inbox empty.
        var draining = false
    }
    /// Outbid, won, lost, extended, cancelled — derived here, as events are applied in order.
    public let notifications: NotificationHub
    /// The time of the newest pushed event applied (ms since 1970, 0 before the first): how far
    /// behind this node's reads are, `artpay_read_model_lag_seconds`.
    private let newestAppliedAt = Atomic<Int64>(0)
    private let clock: any EngineClock
    private let applyDelay: Timer
    private let archive: (any ArchiveStore)?
    /// How long after its end an archived lot stays here (listings of ended lots, leaderboards,
    /// a buyer's settlements).
    public let retention: Duration

    /// - Parameters:
    ///   - notifyFrom: notifications are derived for events from this time on; older ones (the
    ///     history a starting node catches up on) are applied silently.
    ///   - archive: where finished lots are kept; with it, lots archived more than `retention` ago
    ///     are neither loaded at start nor kept after.
    ///   - clock: what pushed events' times are compared with for `artpay_read_model_apply_delay_seconds`.
    public init(
        store: any EventStore, notifications: NotificationHub = NotificationHub(),
        notifyFrom: Timestamp = Timestamp(millisecondsSinceEpoch: 0), clock: any EngineClock = SystemClock(),
        metrics: any MetricsFactory = NOOPMetricsHandler.instance, archive: (any ArchiveStore)? = nil,
        retention: Duration = .seconds(7 * 86_400)
    ) {
        let published = PublishedSnapshot()
        self.published = published
        self.notifications = notifications
        self.clock = clock
        self.applyDelay = Timer(label: "artpay_read_model_apply_delay_seconds", factory: metrics)
        self.archive = archive
        self.retention = retention
        let skip = archive.map { Self.archivedLongAgo(in: $0, clock: clock, retention: retention) }
        self.writer = ReadModelWriter(
            store: store, notifications: notifications, notifyFrom: notifyFrom, skipArchived: skip, archive: archive
        ) { snapshot in
            published.value.withLock { $0 = snapshot }
        }
    }

    /// Catches up from the store on every log that grew since the last call and that pushes did not
    /// bring: auctions never pushed (created before this node's subscription reached their owner)
    /// and events a push missed — a partitioned node misses an auction's `closed`, after which no
    /// later event would reveal the gap. Call it now and then (the node does, every 2 s); it costs
    /// what changed since the last call, not what exists. A log found ahead of this model is read
    /// only if it is still ahead on the next call, so pushes in flight are not read twice.
    public func catchUp() async {
        await writer.catchUp()
    }

    /// Calls `observe` with the auctions whose logs were written under a newer epoch than any this
    /// model had seen for them (pushed or read from the store), after each applied batch.
    public func onNewerEpochs(_ observe: @escaping @Sendable ([(AuctionID, Epoch)]) -> Void) async {
        await writer.onNewerEpochs(observe)
    }

    /// Calls `observe` after each published batch that applied a settlement event (the settlement
    /// driver starts the next step then instead of at its next poll).
    public func onSettlementEvents(_ observe: @escaping @Sendable () -> Void) async {
        await writer.onSettlementEvents(observe)
    }

    /// Applies pushed events (any order, duplicates allowed) and publishes the new snapshot.
    public func apply(_ events: [StoredEvent]) async {
        await writer.apply(events)
    }

    /// Queues pushed events to be applied in the order offered, without waiting: the owners'
    /// fan-out calls this for every durable batch. Batches that queue up while the writer is busy
    /// are applied together (one snapshot published for all of them).
    public func offer(_ events: [StoredEvent]) {
        guard !events.isEmpty else { return }
        let startDraining = inbox.withLock { inbox in
            inbox.events += events
            if inbox.draining { return false }
            inbox.draining = true
            return true
        }
        guard startDraining else { return }
        Task { await self.drainInbox() }
    }

    private func drainInbox() async {
        while true {
            let batch = inbox.withLock { inbox in
                let batch = inbox.events
                inbox.events = []
                if batch.isEmpty { inbox.draining = false }
                return batch
            }
            if batch.isEmpty { return }
            await writer.apply(batch)
            noteApplied(batch)
        }
    }

    /// The time of the newest pushed event applied, if any was: now minus it is how stale this
    /// node's reads may be (on a cluster without bids it grows, and means nothing more).
    public var newestAppliedEventAt: Timestamp? {
        let milliseconds = newestAppliedAt.load(ordering: .relaxed)
        return milliseconds == 0 ? nil : Timestamp(millisecondsSinceEpoch: milliseconds)
    }

    private func noteApplied(_ batch: [StoredEvent]) {
        guard let newest = batch.compactMap({ Self.time(of: $0.event) }).max() else { return }
        _ = newestAppliedAt.max(newest.millisecondsSinceEpoch, ordering: .relaxed)
        let delay = clock.now().millisecondsSinceEpoch - newest.millisecondsSinceEpoch
        // Owners' clocks may run ahead of this one: a negative delay is recorded as none.
        applyDelay.record(duration: .milliseconds(max(0, delay)))
    }

    /// When an auction event happened on its owner; extensions (which carry the new end) and
    /// settlement steps are not timed here.
    private static func time(of event: AuctionEvent) -> Timestamp? {
        switch event {
        case .created(let created): created.at
        case .bidAccepted(let bid): bid.at
        case .boughtNow(let purchase): purchase.at
        case .closed(let closed): closed.at
        case .cancelled(let cancelled): cancelled.at
        case .extended, .settlement: nil
        }
    }

    /// The heads of lots archived at their last seq and over for longer than `retention`.
    private static func archivedLongAgo(
        in archive: any ArchiveStore, clock: any EngineClock, retention: Duration
    ) -> ReadModelWriter.SkipArchived {
        { @Sendable heads in
            let horizon = clock.now().advanced(by: .zero - retention)
            let marks: [AuctionID: ArchivedMark] = (try? await archive.archivedMarks(of: heads.map(\.auction))) ?? [:]
            var skipped = Set<AuctionID>()
            for head in heads {
                if let mark = marks[head.auction], mark.seq >= head.lastSeq, mark.endedAt < horizon {
                    skipped.insert(head.auction)
                }
            }
            return skipped
        }
    }

    /// Forgets the lots that ended more than `retention` before `now`, are finished, and are in the
    /// archive at the seq known here: a node keeps the lots in play and those recently over, not
    /// every lot it ever saw (an older lot is read from its log and the archive). How many went.
    public func evictArchived(now: Timestamp) async -> Int {
        guard let archive else { return 0 }
        let candidates = snapshot.finished(endedBefore: now.advanced(by: .zero - retention))
        var removed = 0
        for start in stride(from: 0, to: candidates.count, by: 500) {
            let chunk = Array(candidates[start..<Swift.min(start + 500, candidates.count)])
            guard let marks = try? await archive.archivedMarks(of: chunk) else { break }
            removed += await writer.evict(marks.mapValues(\.seq))
        }
        return removed
    }

    /// The latest published state: consistent within itself, never blocked by the writer.
    public var snapshot: ReadModelSnapshot {
        published.value.withLock { $0 }
    }

    public func summary(of id: AuctionID) -> AuctionSummary? { snapshot.summary(of: id) }

    public func list(_ filter: (AuctionSummary) -> Bool, limit: Int) -> [AuctionSummary] {
        snapshot.list(filter, limit: limit)
    }

    public func running(endingBy horizon: Timestamp, limit: Int) -> [AuctionSummary] {
        snapshot.running(endingBy: horizon, limit: limit)
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

    public func settlement(of id: AuctionID) -> Settlement? { snapshot.settlements[id] }

    /// The settlement paid through the provider's `intent` (a refund's webhook names only that).
    public func settlement(withIntent intent: String) -> Settlement? {
        let snapshot = snapshot
        // A later round pays through another intent: the old one no longer names the settlement.
        return snapshot.settlementByIntent[intent].flatMap { snapshot.settlements[$0] }
            .flatMap { $0.intent?.rawValue == intent ? $0 : nil }
    }

    /// Settlements not finished yet (what the owners' settlement drivers look at).
    public var settlementsInProgress: [Settlement] { Array(snapshot.unfinishedSettlements.values) }

    /// The settlements `user` is the buyer of, or has a second-chance offer in, newest lots last.
    public func settlements(of user: UserID) -> [Settlement] {
        let snapshot = snapshot
        return (snapshot.settlementsByUser[user] ?? []).compactMap { snapshot.settlements[$0] }
            .sorted { $0.auctionId < $1.auctionId }
    }

    /// Every settlement, optionally only those in `phase`, at most `limit`, by auction id.
    public func settlements(in phase: Settlement.Phase?, limit: Int) -> [Settlement] {
        let snapshot = snapshot
        let ids = phase.map { snapshot.settlementsByPhase[$0] ?? ChunkedSortedArray() } ?? snapshot.settlementIds
        return ids.prefix(limit).compactMap { snapshot.settlements[$0] }
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

/// A standing in an auction's ranking: ordered by the highest price the bidder's own bids reached,
/// highest first, then by bidder id; two are equal when they rank the same (a bidder has one).
struct RankedStanding: Comparable, Sendable {
    var standing: BidderStanding

    static func < (a: Self, b: Self) -> Bool {
        (a.standing.highestPrice.minorUnits, b.standing.bidderId.rawValue)
            > (b.standing.highestPrice.minorUnits, a.standing.bidderId.rawValue)
    }

    static func == (a: Self, b: Self) -> Bool {
        a.standing.highestPrice.minorUnits == b.standing.highestPrice.minorUnits
            && a.standing.bidderId == b.standing.bidderId
    }
}

/// The bidders of one auction, by bidder and ranked, kept in step one bid at a time: a bid moves
/// its bidder's one standing (a binary search and one chunk of the ranking), so its cost does not
/// grow with the bidders a lot has, and the ranking a snapshot publishes shares all other chunks.
struct AuctionStandings: Sendable {
    private(set) var byBidder: [UserID: BidderStanding] = [:]
    private(set) var ranking = ChunkedSortedArray<RankedStanding>()

    /// Records a bid of `bidder` that reached `price`.
    mutating func record(_ bidder: UserID, _ price: Money) {
        let before = byBidder[bidder]
        var after = before ?? BidderStanding(bidderId: bidder, highestPrice: price, bids: 0)
        after.highestPrice = max(after.highestPrice, price)
        after.bids += 1
        byBidder[bidder] = after
        if let before { ranking.remove(RankedStanding(standing: before)) }
        ranking.insert(RankedStanding(standing: after))
    }
}

/// An immutable view of every auction with the indexes the read endpoints walk. Value semantics:
/// the writer mutates its own copy and publishes it whole; every collection in it is persistent
/// (a copy shares structure with the original), so publishing costs O(1) and the writer's next
/// change copies only what it touches.
public struct ReadModelSnapshot: Sendable {
    /// One auction's published view. A class: the hash trie copies the entries of a node it changes,
    /// and an entry is then one reference, not a summary's many strings.
    final class Entry: Sendable {
        let summary: AuctionSummary
        /// Every bidder by the highest price their own bids reached, then by bidder id.
        let ranking: ChunkedSortedArray<RankedStanding>
        /// The leader's standing at the current price (the proxy raised it on their behalf): listed
        /// first, whatever their own bids reached.
        let leader: BidderStanding?

        init(summary: AuctionSummary, ranking: ChunkedSortedArray<RankedStanding>, leader: BidderStanding?) {
            self.summary = summary
            self.ranking = ranking
            self.leader = leader
        }
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

    var entries: TreeDictionary<AuctionID, Entry> = [:]
    var byEnd = ChunkedSortedArray<EndKey>()
    /// The running auctions alone, by end: what the owners' close sweep reads, every few seconds,
    /// only up to its horizon — however many auctions the cluster holds or has closed.
    var runningByEnd = ChunkedSortedArray<EndKey>()
    var bySalePrice: TreeDictionary<SaleID, ChunkedSortedArray<PriceKey>> = [:]
    /// Bids per minute of the last hour (before its newest bid) of each auction that has bids.
    var recentBids: TreeDictionary<AuctionID, BidsPerMinute> = [:]
    /// Every sold lot's settlement, and those not finished yet apart: the settlement drivers scan
    /// only these, however many lots were ever sold.
    var settlements: TreeDictionary<AuctionID, Settlement> = [:]
    var unfinishedSettlements: TreeDictionary<AuctionID, Settlement> = [:]
    /// The lots each user is the buyer of, or has a second-chance offer in (`/v1/me/settlements`).
    var settlementsByUser: TreeDictionary<UserID, TreeSet<AuctionID>> = [:]
    /// The lot each provider payment intent pays for (a refund's webhook names only the intent).
    var settlementByIntent: TreeDictionary<String, AuctionID> = [:]
    /// Every lot with a settlement, and those in each phase, by auction id (the admin's list).
    var settlementIds = ChunkedSortedArray<AuctionID>()
    var settlementsByPhase: TreeDictionary<Settlement.Phase, ChunkedSortedArray<AuctionID>> = [:]

    /// Records `settlement` as the lot's current one, keeping every index of settlements in step:
    /// what a request reads costs what it returns, not how many lots were ever sold.
    mutating func setSettlement(_ settlement: Settlement) {
        let id = settlement.auctionId
        let previous = settlements[id]
        guard previous != settlement else { return }
        settlements[id] = settlement
        unfinishedSettlements[id] = settlement.phase?.isFinished == false ? settlement : nil
        if previous == nil { settlementIds.insert(id) }
        if previous?.phase != settlement.phase {
            if let phase = previous?.phase { settlementsByPhase[phase]?.remove(id) }
            if let phase = settlement.phase { settlementsByPhase[phase, default: ChunkedSortedArray()].insert(id) }
        }
        let before = previous.map(Self.parties) ?? []
        let after = Self.parties(of: settlement)
        for user in before.subtracting(after) {
            settlementsByUser[user]?.remove(id)
            if settlementsByUser[user]?.isEmpty == true { settlementsByUser[user] = nil }
        }
        for user in after.subtracting(before) { settlementsByUser[user, default: []].insert(id) }
        if let intent = settlement.intent?.rawValue { settlementByIntent[intent] = id }
    }

    fileprivate static func parties(of settlement: Settlement) -> Set<UserID> {
        Set([settlement.buyerId, settlement.offer?.bidderId].compactMap { $0 })
    }

    public var count: Int { entries.count }

    public func summary(of id: AuctionID) -> AuctionSummary? { entries[id]?.summary }

    /// Auctions matching `filter`, soonest end first, at most `limit`.
    public func list(_ filter: (AuctionSummary) -> Bool, limit: Int) -> [AuctionSummary] {
        var found: [AuctionSummary] = []
        for key in byEnd {
            guard found.count < limit else { break }
            if let summary = entries[key.id]?.summary, filter(summary) { found.append(summary) }
        }
        return found
    }

    /// Running auctions that end by `horizon`, soonest first, at most `limit`.
    public func running(endingBy horizon: Timestamp, limit: Int) -> [AuctionSummary] {
        var found: [AuctionSummary] = []
        for key in runningByEnd {
            guard found.count < limit, key.endsAt <= horizon else { break }
            if let summary = entries[key.id]?.summary { found.append(summary) }
        }
        return found
    }

    /// The bidders of `id`, the leader first, then by the highest price their bids reached.
    public func topBidders(of id: AuctionID, limit: Int) -> (summary: AuctionSummary, standings: [BidderStanding])? {
        guard let entry = entries[id] else { return nil }
        var standings: [BidderStanding] = []
        standings.reserveCapacity(min(limit, entry.ranking.count))
        if let leader = entry.leader, limit > 0 { standings.append(leader) }
        for ranked in entry.ranking {
            guard standings.count < limit else { break }
            if ranked.standing.bidderId != entry.leader?.bidderId { standings.append(ranked.standing) }
        }
        return (entry.summary, standings)
    }

    /// The auctions of `sale` by visible price, highest first.
    public func highestPrices(inSale sale: SaleID, limit: Int) -> [AuctionSummary] {
        guard let index = bySalePrice[sale] else { return [] }
        return index.prefix(limit).compactMap { entries[$0.id]?.summary }
    }

    /// Auctions by the number of bids accepted since `since` (counted in whole minutes: the bids of
    /// the minute `since` falls in count), most first (ties: soonest end).
    public func mostActive(since: Timestamp, limit: Int) -> [(summary: AuctionSummary, recentBids: Int)] {
        var top: [(summary: AuctionSummary, recentBids: Int)] = []
        func ranksBefore(
            _ a: (summary: AuctionSummary, recentBids: Int), _ b: (summary: AuctionSummary, recentBids: Int)
        ) -> Bool {
            (a.recentBids, b.summary.endsAt, b.summary.auctionId) > (
                b.recentBids, a.summary.endsAt, a.summary.auctionId
            )
        }
        for (id, bids) in recentBids {
            let recent = bids.count(since: since)
            guard recent > 0, let summary = entries[id]?.summary else { continue }
            let candidate = (summary: summary, recentBids: recent)
            if top.count == limit, let worst = top.last, !ranksBefore(candidate, worst) { continue }
            let position = top.partitioningIndex { !ranksBefore($0, candidate) }
            top.insert(candidate, at: position)
            if top.count > limit { top.removeLast() }
        }
        return top
    }

    /// Replaces the indexed view of one auction.
    mutating func set(
        _ id: AuctionID, summary: AuctionSummary, ranking: ChunkedSortedArray<RankedStanding> = .init(),
        leader: BidderStanding? = nil
    ) {
        let old = entries.updateValue(Entry(summary: summary, ranking: ranking, leader: leader), forKey: id)?.summary
        if old?.endsAt != summary.endsAt {
            if let old { byEnd.remove(EndKey(endsAt: old.endsAt, id: id)) }
            byEnd.insert(EndKey(endsAt: summary.endsAt, id: id))
        }
        let wasRunning = old.flatMap { $0.status == .running ? EndKey(endsAt: $0.endsAt, id: id) : nil }
        let isRunning = summary.status == .running ? EndKey(endsAt: summary.endsAt, id: id) : nil
        if wasRunning != isRunning {
            if let wasRunning { runningByEnd.remove(wasRunning) }
            if let isRunning { runningByEnd.insert(isRunning) }
        }
        if old?.saleId != summary.saleId || old?.price != summary.price {
            if let old, let sale = old.saleId {
                bySalePrice[sale]?.remove(PriceKey(price: old.price.minorUnits, id: id))
            }
            if let sale = summary.saleId {
                bySalePrice[sale, default: ChunkedSortedArray()].insert(
                    PriceKey(price: summary.price.minorUnits, id: id))
            }
        }
    }
}

extension ReadModelSnapshot {
    /// Lots that ended before `horizon` and to which nothing more happens by itself: closed unsold,
    /// cancelled, or sold with a finished settlement. Oldest first.
    public func finished(endedBefore horizon: Timestamp) -> [AuctionID] {
        var found: [AuctionID] = []
        for key in byEnd {
            guard key.endsAt < horizon else { break }
            guard let summary = entries[key.id]?.summary else { continue }
            switch summary.status {
            case .running: continue
            case .cancelled, .closed(.unsold): found.append(key.id)
            case .closed(.sold): if settlements[key.id]?.phase?.isFinished == true { found.append(key.id) }
            }
        }
        return found
    }

    /// Forgets `id` and every index entry of it (an archived lot): what a read costs and what a node
    /// keeps stay those of the lots still in play.
    mutating func remove(_ id: AuctionID) {
        guard let old = entries.removeValue(forKey: id)?.summary else { return }
        byEnd.remove(EndKey(endsAt: old.endsAt, id: id))
        if old.status == .running { runningByEnd.remove(EndKey(endsAt: old.endsAt, id: id)) }
        if let sale = old.saleId {
            bySalePrice[sale]?.remove(PriceKey(price: old.price.minorUnits, id: id))
            if bySalePrice[sale]?.count == 0 { bySalePrice[sale] = nil }
        }
        recentBids[id] = nil
        guard let settlement = settlements.removeValue(forKey: id) else { return }
        unfinishedSettlements[id] = nil
        settlementIds.remove(id)
        if let phase = settlement.phase {
            settlementsByPhase[phase]?.remove(id)
            if settlementsByPhase[phase]?.count == 0 { settlementsByPhase[phase] = nil }
        }
        for user in Self.parties(of: settlement) {
            settlementsByUser[user]?.remove(id)
            if settlementsByUser[user]?.isEmpty == true { settlementsByUser[user] = nil }
        }
        if let intent = settlement.intent?.rawValue, settlementByIntent[intent] == id {
            settlementByIntent[intent] = nil
        }
    }
}

/// How many bids an auction accepted in each minute of the hour before its newest bid: what "most
/// active" counts. A ring of 61 counts, allocated with the auction's first bid, so what the read
/// model keeps per auction is the same however busy the auction is and however long it runs (the
/// per-second entries this replaced grew for an hour: up to 58 KB for a busy auction, and a copy
/// of them on each change after a publish).
struct BidsPerMinute: Sendable {
    /// Minutes kept before the newest one.
    static let window: Int64 = 60
    private static let slots = Int(window) + 1
    private var counts: [UInt32] = []
    /// The minute of the newest bid.
    private var newest: Int64 = 0

    var isEmpty: Bool { counts.isEmpty }

    static func minute(of time: Timestamp) -> Int64 {
        let milliseconds = time.millisecondsSinceEpoch
        return milliseconds >= 0 ? milliseconds / 60_000 : -((-milliseconds + 59_999) / 60_000)
    }

    mutating func record(_ time: Timestamp) {
        let minute = Self.minute(of: time)
        if counts.isEmpty {
            counts = Array(repeating: 0, count: Self.slots)
            newest = minute
        }
        if minute > newest {
            // The minutes in between had no bid; a jump of over an hour clears the ring.
            for step in 1...min(minute - newest, Self.window + 1) { counts[Self.slot(newest + step)] = 0 }
            newest = minute
        }
        // Bids arrive in log order, so at most a late one lands in an earlier minute.
        guard minute >= newest - Self.window else { return }
        counts[Self.slot(minute)] &+= 1
    }

    /// Bids in the minutes from the one `since` falls in on.
    func count(since: Timestamp) -> Int {
        guard !counts.isEmpty else { return 0 }
        let first = max(Self.minute(of: since), newest - Self.window)
        guard first <= newest else { return 0 }
        return (first...newest).reduce(0) { $0 + Int(counts[Self.slot($1)]) }
    }

    private static func slot(_ minute: Int64) -> Int {
        Int(((minute % Int64(slots)) + Int64(slots)) % Int64(slots))
    }
}

/// A sorted collection kept as a list of sorted chunks of bounded size: the indexes of
/// ``ReadModelSnapshot``. Why not one sorted array: a snapshot and the writer share the storage,
/// so the writer's first change after a publish would copy the whole array — O(auctions) per
/// batch. Here a change copies the list of chunk references and one chunk.
struct ChunkedSortedArray<Element: Comparable & Sendable>: Sendable, Sequence {
    private var chunks: [[Element]] = []
    private(set) var count = 0
    /// A chunk is split in two when it grows beyond twice this.
    let chunkSize: Int

    init(chunkSize: Int = 64) {
        precondition(chunkSize > 0)
        self.chunkSize = chunkSize
    }

    /// The chunk `element` belongs in: the first whose last element is not below it (or the last).
    private func chunkIndex(for element: Element) -> Int {
        Swift.min(chunks.partitioningIndex { $0.last! >= element }, chunks.count - 1)
    }

    mutating func insert(_ element: Element) {
        count += 1
        guard !chunks.isEmpty else {
            chunks = [[element]]
            return
        }
        let index = chunkIndex(for: element)
        chunks[index].insert(element, at: chunks[index].partitioningIndex { $0 >= element })
        if chunks[index].count > 2 * chunkSize {
            let upper = Array(chunks[index][chunkSize...])
            chunks[index].removeSubrange(chunkSize...)
            chunks.insert(upper, at: index + 1)
        }
    }

    mutating func remove(_ element: Element) {
        guard !chunks.isEmpty else { return }
        let index = chunkIndex(for: element)
        let position = chunks[index].partitioningIndex { $0 >= element }
        guard position < chunks[index].count, chunks[index][position] == element else { return }
        count -= 1
        if chunks[index].count == 1 {
            chunks.remove(at: index)
        } else {
            chunks[index].remove(at: position)
        }
    }

    func makeIterator() -> FlattenSequence<[[Element]]>.Iterator {
        chunks.joined().makeIterator()
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

/// The single writer of the read model: reads the store and hands events to its
/// ``ReadModelProjection`` in seq order per auction, and publishes the projection's snapshot after
/// every batch. Only IO and ordering live here; what an event does is the projection's.
actor ReadModelWriter {
    private var projection: ReadModelProjection
    /// Where the last catch-up stopped reading the store's log heads.
    private var cursor = LogCursor.start
    /// Logs the last catch-up found ahead of this model, with the seq they ended at.
    private var lagging: [AuctionID: Int64] = [:]
    private var catchingUp = false
    private var caughtUpOnce = false
    private let store: any EventStore
    private let notifications: NotificationHub
    private let publish: @Sendable (ReadModelSnapshot) -> Void
    private var observeEpochs: (@Sendable ([(AuctionID, Epoch)]) -> Void)?
    private var observeSettlements: (@Sendable () -> Void)?

    /// Which of a page of log heads to leave out of the first catch-up: lots archived long enough
    /// ago (the read model would only load them to forget them).
    typealias SkipArchived = @Sendable ([LogHead]) async -> Set<AuctionID>
    private let skipArchived: SkipArchived?
    /// Where a lot whose live log was compacted keeps its bids (for its standings).
    private let archive: (any ArchiveStore)?
    /// Log heads read per page of a catch-up.
    private static let headsPerPage = 1_000
    /// Events of each log a starting catch-up reads together with the other logs of its page (one
    /// read per page); a longer log's rest is read by itself.
    private static let eventsPerLogInPage: Int64 = 64

    init(
        store: any EventStore, notifications: NotificationHub, notifyFrom: Timestamp, skipArchived: SkipArchived?,
        archive: (any ArchiveStore)? = nil, publish: @escaping @Sendable (ReadModelSnapshot) -> Void
    ) {
        self.projection = ReadModelProjection(notifyFrom: notifyFrom)
        self.store = store
        self.notifications = notifications
        self.skipArchived = skipArchived
        self.archive = archive
        self.publish = publish
    }

    func onNewerEpochs(_ observe: @escaping @Sendable ([(AuctionID, Epoch)]) -> Void) {
        observeEpochs = observe
    }

    func onSettlementEvents(_ observe: @escaping @Sendable () -> Void) {
        observeSettlements = observe
    }

    /// Publishes the snapshot, and tells the observers which logs another writer may have taken
    /// and whether a settlement moved.
    private func publishChanges() {
        publish(projection.snapshot)
        let changes = projection.takeChanges()
        if changes.settlementsChanged { observeSettlements?() }
        if !changes.raised.isEmpty { observeEpochs?(changes.raised) }
    }

    func catchUp() async {
        // One catch-up at a time: a slow one (a first one over many logs) is not started twice.
        guard !catchingUp else { return }
        catchingUp = true
        defer { catchingUp = false }
        var notes: [BidderNotification] = []
        var touched: Set<AuctionID> = []
        let overdue = lagging
        lagging = [:]
        for (id, lastSeq) in overdue where lastSeq > projection.known(id) {
            if projection.isEvicted(id) {
                projection.bringBack(id)
                await reload(id, through: lastSeq)
            } else if await fill(id, through: lastSeq, &notes) {
                touched.insert(id)
            }
        }
        // The first catch-up loads what exists; later ones read what changed since.
        let starting = !caughtUpOnce
        while true {
            guard let page = try? await store.logHeads(after: cursor, limit: Self.headsPerPage) else { break }
            cursor = page.next
            let skipped = starting ? await skipArchived?(page.heads) ?? [] : []
            for head in page.heads where skipped.contains(head.auction) {
                projection.leaveOut(head.auction, at: head.lastSeq)
            }
            let ahead = page.heads.filter { $0.lastSeq > projection.known($0.auction) }
            if starting {
                await load(ahead)
            } else {
                for head in ahead { lagging[head.auction] = head.lastSeq }
            }
            if page.heads.count < Self.headsPerPage {
                caughtUpOnce = true
                break
            }
        }
        for id in touched { projection.index(id) }
        publishChanges()
        notifications.publish(notes)
    }

    /// Loads the logs of `heads` whole, as a starting node does: the first events of all of them in
    /// one read (``EventStore/logs(of:through:)``), then the rest of each longer log by itself —
    /// a page of logs costs its events, not a round trip per log. A log that cannot be read with
    /// the others (compacted, or the read failed) is loaded by itself.
    private func load(_ heads: [LogHead]) async {
        guard !heads.isEmpty else { return }
        let events =
            (try? await store.logs(of: heads.map(\.auction), through: Self.eventsPerLogInPage)) ?? []
        var logs: [AuctionID: ArraySlice<StoredEvent>] = [:]
        var start = events.startIndex
        while start < events.endIndex {
            let auction = events[start].auction
            var end = start + 1
            while end < events.endIndex, events[end].auction == auction { end += 1 }
            logs[auction] = events[start..<end]
            start = end
        }
        for head in heads {
            var replay = ReadModelProjection.Replay(head.auction)
            for event in logs[head.auction] ?? [] where !replay.add(event) {
                replay = ReadModelProjection.Replay(head.auction)
                break
            }
            await reload(continuing: replay, through: head.lastSeq)
        }
    }

    /// Applies the logged events of `id` after what is known here, through `lastSeq`, one by one with
    /// their notifications — also for an auction first seen mid-log, so its bidders miss nothing.
    /// Whether anything changed.
    private func fill(_ id: AuctionID, through lastSeq: Int64, _ notes: inout [BidderNotification]) async -> Bool {
        var changed = false
        while projection.seq(of: id) < lastSeq {
            let current = projection.seq(of: id)
            guard
                let missing = try? await store.events(
                    of: id, after: current, limit: Swift.min(Int(lastSeq - current), 1_000)),
                !missing.isEmpty
            else { break }
            for event in missing where projection.step(event, &notes) { changed = true }
            // The actor may interleave at each await: stop when nothing moved.
            if projection.seq(of: id) == current { break }
        }
        return changed
    }

    func apply(_ events: [StoredEvent]) async {
        var touched: Set<AuctionID> = []
        var notes: [BidderNotification] = []
        for event in events.sorted(by: { ($0.auction, $0.seq) < ($1.auction, $1.seq) }) {
            let id = event.auction
            if event.seq <= projection.known(id) { continue }
            if projection.isEvicted(id) {
                projection.bringBack(id)
                await reload(id, through: event.seq - 1)
            }
            // A missed push (or an auction first seen mid-log): fill the gap from the log event by
            // event, so its notifications are not lost either.
            if event.seq > projection.seq(of: id) + 1, await fill(id, through: event.seq - 1, &notes) {
                touched.insert(id)
            }
            if projection.step(event, &notes) {
                touched.insert(id)
            } else if event.seq > projection.seq(of: id) {
                await reload(id, through: event.seq)
            }
        }
        for id in touched { projection.index(id) }
        publishChanges()
        notifications.publish(notes)
    }

    /// Forgets the lots of `archived` (id → the seq the archive holds) that are finished and not
    /// past that seq here; how many. Publishes when any went.
    func evict(_ archived: [AuctionID: Int64]) -> Int {
        let removed = projection.evict(archived)
        for id in removed { lagging[id] = nil }
        if !removed.isEmpty { publish(projection.snapshot) }
        return removed.count
    }

    /// Replaces what is known of `id` with its whole log through `lastSeq` (see
    /// ``ReadModelProjection/Replay``); keeps what was known when the log cannot be read whole now.
    private func reload(_ id: AuctionID, through lastSeq: Int64) async {
        await reload(continuing: ReadModelProjection.Replay(id), through: lastSeq)
    }

    /// `reload`, from what `replay` already holds of the log.
    private func reload(continuing replay: ReadModelProjection.Replay, through lastSeq: Int64) async {
        var replay = replay
        let id = replay.auction
        while replay.seq < lastSeq {
            let page: [StoredEvent]
            do {
                page = try await store.events(of: id, after: replay.seq, limit: 1_000)
            } catch .compacted {
                await reloadCompacted(id)
                return
            } catch {
                break
            }
            guard !page.isEmpty else { break }
            for event in page where !replay.add(event) { return }
        }
        projection.install(replay)
    }

    /// `reload` for a lot whose live log was compacted (it starts at its last snapshot): the state
    /// from the store's snapshot and tail, the standings from the bids in its archived record.
    private func reloadCompacted(_ id: AuctionID) async {
        guard let auction = try? await store.load(id).restore(id), let state = auction.state,
            auction.seq > projection.seq(of: id)
        else { return }
        var bids: [(bidder: UserID, price: Money)] = []
        if let record = try? await archive?.archivedAuction(id) {
            for bid in record.bids {
                guard let bidder = UserID(rawValue: bid.bidderId) else { continue }
                bids.append((bidder, Money(minorUnits: bid.price, currency: state.terms.currency)))
            }
        }
        projection.installCompacted(id, state: state, seq: auction.seq, bids: bids)
    }
}
